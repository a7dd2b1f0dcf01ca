"""What every benchmark section shares: throwaway namespaces, timed processes, workloads.

Processes enter a namespace through nsenter(1) (not `ip netns exec`, whose mount namespace
and /sys remount add milliseconds): the benchmark spawns them without a preexec_fn, so Python
uses vfork and a child's start costs the same however large the benchmark process is.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path
from typing import IO, Any

from tests.bench.scale import shape, sized_config

NS_PREFIX = "nbx"  # every namespace this package creates directly starts with this
NFTNET = [sys.executable, "-m", "nftnet"]


class BenchError(RuntimeError):
    """A benchmark step failed; the message carries the command and its stderr."""


@dataclass(frozen=True)
class Run:
    """One timed process: wall seconds and its output."""

    seconds: float
    stdout: str


@dataclass(frozen=True)
class Target:
    """The endpoint a benchmark aims at: name, network's bridge, address, gateway."""

    endpoint: str
    bridge: str
    ipv4: str
    gateway: str
    subnet: str


@dataclass(frozen=True)
class Workload:
    """The files of one size: config, nftnet's rendered batch, the iptables-save export."""

    ports: int
    networks: int
    endpoints: int
    bridges: tuple[tuple[str, str], ...]  # (bridge, subnet) of every network
    config_path: Path
    batch_path: Path
    export_path: Path
    first: Target  # e0, where changes publish
    last: Target  # the endpoint of the last published port
    last_port: int


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def in_ns(ns: str | None, argv: list[str]) -> list[str]:
    """argv run inside netns ``ns`` (as is if None)."""
    return ["nsenter", f"--net=/var/run/netns/{ns}", *argv] if ns else argv


def run_in(ns: str | None, argv: list[str], stdin: IO[Any] | None = None,
           ok: tuple[int, ...] = (0,)) -> Run:
    """Run argv (inside ``ns`` if given) to completion and time it.

    Exit statuses other than ``ok`` raise BenchError. No peak RSS here: a forked child's
    high-water mark starts at its parent's size (see memory.py).
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(in_ns(ns, argv), stdin=stdin or subprocess.DEVNULL, stdout=out,
                                stderr=err)
        proc.wait()
        seconds = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode not in ok:
        command = " ".join(argv[:6])
        raise BenchError(f"{command} ... exited {proc.returncode}: {stderr.strip()[-2000:]}")
    return Run(seconds, stdout)


def sh(*argv: str, input: str | None = None) -> str:
    """Run a setup command (not timed); raise BenchError with its stderr if it fails."""
    proc = subprocess.run(argv, input=input, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BenchError(f"{' '.join(argv[:6])} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


@contextlib.contextmanager
def netns() -> Iterator[str]:
    """A fresh, empty network namespace, deleted on exit whatever happened."""
    ns = f"{NS_PREFIX}{uuid.uuid4().hex[:10]}"
    sh("ip", "netns", "add", ns)
    try:
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def await_rtnl() -> None:
    """Block until the kernel has torn down the namespaces deleted before (idle waits of up to
    a minute for a thousand bridges, holding the lock every link change needs and keeping a
    core busy). The pause first lets a teardown just queued take that lock."""
    time.sleep(0.2)
    with netns() as ns:
        sh("ip", "-n", ns, "link", "set", "lo", "up")


def make_bridges(ns: str, workload: Workload) -> None:
    """The workload's bridges in ``ns`` as `nftnet apply` leaves them: gateway address, up."""
    lines = []
    for bridge, subnet in workload.bridges:
        gateway = next(IPv4Network(subnet).hosts())
        lines += [f"link add {bridge} type bridge", f"addr add {gateway}/24 dev {bridge}",
                  f"link set {bridge} up"]
    sh("ip", "-n", ns, "-batch", "-", input="\n".join(lines) + "\n")


def nftnet_argv(state_dir: Path, *args: str) -> list[str]:
    return [*NFTNET, "--state-dir", str(state_dir), *args]


def _target(config: dict[str, Any], endpoint: str) -> Target:
    ep = config["endpoints"][endpoint]
    net = config["networks"][ep["network"]]
    gateway = str(next(IPv4Network(net["subnet"]).hosts()))
    return Target(endpoint, net["bridge"], ep["ipv4"], gateway, net["subnet"])


def prepare(ports: int, tmp: Path) -> Workload:
    """Write the config, its rendered batch (`nftnet render`) and its iptables-save export."""
    networks, endpoints = shape(ports)
    config = sized_config(ports)
    base = tmp / f"p{ports}"
    base.mkdir(parents=True, exist_ok=True)
    config_path = base / "config.json"
    config_path.write_text(json.dumps(config))
    batch = sh(*nftnet_argv(base / "render-state", "render", "-f", str(config_path)))
    (base / "batch.json").write_text(batch)
    export = sh(sys.executable, "-m", "tests.bench.export", str(config_path))
    (base / "export.txt").write_text(export)
    last = f"e{endpoints - 1}"
    last_port = int(config["endpoints"][last]["publish"][-1].split(":")[0])
    bridges = tuple((n["bridge"], n["subnet"]) for n in config["networks"].values())
    return Workload(ports, networks, endpoints, bridges, config_path, base / "batch.json",
                    base / "export.txt", _target(config, "e0"), _target(config, last), last_port)
