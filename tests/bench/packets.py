"""Section 3: per-packet cost, as new TCP connections per second to the LAST published port.

What differs between the sizes compared is the ruleset, and only that. Each contender gets ONE
tests.lab.Lab for all sizes: a host namespace with the bridges (and gateway addresses) of the
largest size, a LAN namespace, and one container per size, the endpoint of that size's last
published port (the last rule of iptables' linear chains), each serving on port 80. Between
runs only the ruleset is swapped, to the very ruleset of that size the other sections load:
  nftnet    `nft -j -f` of its rendered batch (`nftnet render`), the table deleted and made
            anew in the same transaction, as a fresh `nftnet apply` of that config leaves it
            (the Lab itself is set up by `nftnet apply` of the largest config)
  iptables  `iptables-restore` of the iptables-save export (it replaces filter and nat whole)

A run: the same client in the LAN namespace makes WARM unmeasured connects, then up to
--connects (for at most --run-seconds) to 192.168.77.1:PORT, one at a time: connect(), wait for
the server's close, close; the server in the container accepts and closes. Client and server
are pinned to the same CPU, so one connection is all work on that CPU, softirqs included (across
two CPUs, wake-ups made two runs of one ruleset differ by 5-15%). A run yields its conn/s (all
connects over its wall time), connect() latencies, and its typical rate: 1 / the median time
of one connection. Other processes taking the CPU for a while stretch some connections and
move conn/s by 10% and more; the median connection stays within about 1%.

Runs are paired in time: per contender and round the sequence is B, n1, B, n2, B, ... (B the
smallest size, the others reversed every other round; contenders alternate first), and each
size's ratio is its typical rate over the mean of the two B runs around it; the table gives
the median over rounds and the quartiles. Each B run over the B run before it (the same
ruleset, one run apart) shows the method's own noise.

Only section 3, for given sizes (root): ``python -m tests.bench.packets --sizes 1,10000,50000
[--rounds 25] [--connects 500] [--run-seconds 2] [--cpu N]``; prints the section's table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TypeVar

from tests.bench.common import (
    BenchError,
    Target,
    Workload,
    await_rtnl,
    in_ns,
    make_bridges,
    median,
    nftnet_argv,
    prepare,
    run_in,
)
from tests.lab import Lab, LabError

CONTENDERS = ("nftnet", "iptables")
PYTHON = [sys.executable, "-I", "-S"]
ATTEMPTS = 3  # to make a Lab or a container, the rtnl lock being busy
T = TypeVar("T")
WARM = 20  # unmeasured connects at the start of every run (first packets after a swap)
SERVER = """
import os, socket, sys
os.sched_setaffinity(0, {int(sys.argv[2])})
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(4096)
print("READY", flush=True)
while True:
    c, _ = s.accept()
    c.close()
"""
CLIENT = """
import json, os, socket, sys, time
dst, port, count, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
warm, cpu = int(sys.argv[5]), int(sys.argv[6])
os.sched_setaffinity(0, {cpu})

def connect():
    s = socket.socket()
    s.settimeout(2)
    t = time.perf_counter()
    try:
        s.connect((dst, port))
        took = time.perf_counter() - t
        s.recv(1)
        return took
    except OSError:
        return None
    finally:
        s.close()

warm_fails = sum(connect() is None for _ in range(warm))
lat, cycles, fails = [], [], 0
start = now = time.perf_counter()
while len(lat) + fails < count and now - start < limit:
    took = connect()
    cycles.append(time.perf_counter() - now)
    now += cycles[-1]
    if took is None:
        fails += 1
    else:
        lat.append(took)
print(json.dumps({"elapsed": now - start, "fails": fails, "warm_fails": warm_fails,
                  "lat": lat, "cycles": cycles}))
"""


@dataclass
class PacketResult:
    """Per (size, contender): each run's connections per second (all of them over the run's
    wall time), its typical rate (1 / the median connection's time) and all connect latencies;
    per round, each size's typical rate over the mean of the base-size runs just before and
    after (base_drift: each base run's over the one before)."""

    base: int = 1
    rounds: int = 0
    cpu: int = 0
    topology: str = ""  # what every Lab holds, for the report
    rates: dict[tuple[int, str], list[float]] = field(default_factory=dict)
    typical: dict[tuple[int, str], list[float]] = field(default_factory=dict)
    latencies: dict[tuple[int, str], list[float]] = field(default_factory=dict)
    ratios: dict[tuple[int, str], list[float]] = field(default_factory=dict)
    base_drift: dict[str, list[float]] = field(default_factory=dict)  # base run over previous
    fails: int = 0

    def rate(self, n: int, contender: str) -> float:
        return median(self.rates.get((n, contender), []))

    def paired(self, n: int, contender: str) -> list[float]:
        """Rate at n over that of the base size around it, round by round (1.0 at the base)."""
        if n == self.base:
            return [1.0] * self.rounds
        return self.ratios.get((n, contender), [])

    def latency_ms(self, n: int, contender: str, q: float) -> float:
        lat = sorted(self.latencies.get((n, contender), []))
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1e3 if lat else float("nan")


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """(first quartile, median, third quartile); nan without values."""
    if len(values) < 2:
        v = values[0] if values else float("nan")
        return v, v, v
    q1, q2, q3 = statistics.quantiles(values, n=4)
    return q1, q2, q3


def default_cpu() -> int:
    """The highest-numbered CPU this process may use."""
    return max(os.sched_getaffinity(0))


def _server(stack: contextlib.ExitStack, ns: str, port: int, cpu: int) -> None:
    """Start the accept-and-close server in ns on ``cpu``; killed when the stack closes."""
    proc = subprocess.Popen(in_ns(ns, [*PYTHON, "-c", SERVER, str(port), str(cpu)]),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    stack.callback(proc.wait)
    stack.callback(lambda: os.killpg(proc.pid, signal.SIGKILL) if proc.poll() is None else None)
    assert proc.stdout is not None
    stack.callback(proc.stdout.close)
    ready, _, _ = select.select([proc.stdout], [], [], 10)
    if not ready or proc.stdout.readline().strip() != "READY":
        raise BenchError(f"server in {ns} did not start")


def _swap_batch(wl: Workload, tmp: Path) -> Path:
    """nftnet's rendered batch for wl, prefixed with a delete of the table (one transaction:
    the table is made anew, as on a host nftnet never configured)."""
    items = json.loads(wl.batch_path.read_text())["nftables"]
    table = next(i["add"]["table"] for i in items if "table" in i.get("add", {}))
    head = [i for i in items[:1] if "metainfo" in i]
    body = items[len(head):]
    path = tmp / f"packets-swap-{wl.ports}.json"
    path.write_text(json.dumps({"nftables": [*head, {"add": {"table": table}},
                                             {"delete": {"table": table}}, *body]}))
    return path


def _patiently(make: Callable[[int], T]) -> T:
    """make(attempt), after the kernel finished tearing down namespaces deleted before (other
    benchmarks' too: a Lab gives `ip netns add` 10 s); tried ATTEMPTS times on LabError."""
    for attempt in range(ATTEMPTS):
        await_rtnl()
        try:
            return make(attempt)
        except LabError:
            if attempt == ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


class Bed:
    """One contender's Lab: the largest size's bridges, a serving container for every size's
    last published port, and any size's ruleset loadable in its place."""

    def __init__(self, stack: contextlib.ExitStack, contender: str, workloads: list[Workload],
                 tmp: Path, cpu: int) -> None:
        self.contender = contender
        self.cpu = cpu
        self.lab = _patiently(lambda attempt: stack.enter_context(Lab()))
        big = max(workloads, key=lambda wl: wl.ports)
        host = self.lab.host
        if contender == "nftnet":
            self.swaps = {wl.ports: _swap_batch(wl, tmp) for wl in workloads}
            run_in(host, nftnet_argv(tmp / "packets-state", "apply", "-f", str(big.config_path)))
        else:
            make_bridges(host, big)
            self.lab.sysctl(host, "net.ipv4.ip_forward", "1")
            self.exports = {wl.ports: wl.export_path for wl in workloads}
            with open(big.export_path) as f:
                run_in(host, ["iptables-restore"], stdin=f)
        self.loaded = big.ports
        targets = {(wl.last.bridge, wl.last.ipv4): wl for wl in reversed(workloads)}
        for wl in targets.values():  # sizes with the same last endpoint share its container
            t = wl.last
            if (t.bridge, t.subnet) not in big.bridges:
                raise BenchError(f"packets: {t.bridge} {t.subnet} is not a bridge of {big.ports}")
            ns = _patiently(lambda attempt, t=t, name=f"t{wl.ports}": self._container(
                f"{name}r{attempt}" if attempt else name, t))
            _server(stack, ns, 80, cpu)
        self.containers = len(targets)

    def _container(self, name: str, t: Target) -> str:
        """A container at t; if that fails half-way, its namespace is deleted at once (its
        address must not linger on the bridge)."""
        known = len(self.lab.namespaces)
        try:
            return self.lab.container(name, t.bridge, t.ipv4, t.gateway)
        except LabError:
            for ns in self.lab.namespaces[known:]:
                subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
            del self.lab.namespaces[known:]
            raise

    def load(self, n: int) -> None:
        """Put the ruleset of size n in place (nothing if it already is)."""
        if n == self.loaded:
            return
        if self.contender == "nftnet":
            run_in(self.lab.host, ["nft", "-j", "-f", str(self.swaps[n])])
        else:
            with open(self.exports[n]) as f:
                run_in(self.lab.host, ["iptables-restore"], stdin=f)
        self.loaded = n

    def connect_loop(self, port: int, count: int, limit: float, warm: int = WARM) -> dict:
        """Run the client in the LAN namespace; its JSON report."""
        argv = [*PYTHON, "-c", CLIENT, Lab.HOST_IP4, str(port), str(count), str(limit),
                str(warm), str(self.cpu)]
        return json.loads(run_in(self.lab.lan, argv).stdout)


def run(workloads: list[Workload], rounds: int, count: int, limit: float, tmp: Path,
        log: Callable[[str], None], cpu: int | None = None) -> PacketResult:
    """Section 3 for workloads (the smallest is the base): see the module's docstring."""
    workloads = sorted(workloads, key=lambda wl: wl.ports)
    by_size = {wl.ports: wl for wl in workloads}
    base, others = workloads[0].ports, [wl.ports for wl in workloads[1:]]
    big = workloads[-1]
    cpu = default_cpu() if cpu is None else cpu
    result = PacketResult(base=base, rounds=rounds, cpu=cpu,
                          topology=f"{big.networks:,} bridges (those of {big.ports:,} ports)")

    def measure(bed: Bed, n: int) -> float:
        bed.load(n)
        report = bed.connect_loop(by_size[n].last_port, count, limit)
        if report["warm_fails"] or not report["lat"]:
            raise BenchError(f"packets {n} {bed.contender}: {report['warm_fails']} of {WARM} "
                             f"warm-up connects failed, {len(report['lat'])} connected")
        key = (n, bed.contender)
        typical = 1 / median(report["cycles"])
        result.fails += report["fails"]
        result.rates.setdefault(key, []).append(len(report["lat"]) / report["elapsed"])
        result.typical.setdefault(key, []).append(typical)
        result.latencies.setdefault(key, []).extend(report["lat"])
        return typical

    with contextlib.ExitStack() as stack:
        beds = {}
        for c in CONTENDERS:
            start = time.monotonic()
            beds[c] = Bed(stack, c, workloads, tmp, cpu)
            log(f"  packets: {c} Lab up ({result.topology}, {beds[c].containers} containers) in "
                f"{time.monotonic() - start:.1f}s")
        for r in range(rounds):
            order = CONTENDERS if r % 2 == 0 else CONTENDERS[::-1]
            sizes = others if r % 2 == 0 else others[::-1]
            for c in order:
                before = measure(beds[c], base)
                for n in sizes:
                    rate = measure(beds[c], n)
                    after = measure(beds[c], base)
                    result.ratios.setdefault((n, c), []).append(rate / ((before + after) / 2))
                    result.base_drift.setdefault(c, []).append(after / before)
                    before = after
            log(f"  packets round {r + 1}/{rounds}: "
                + "; ".join(f"{c} " + ", ".join(f"{n:,} {result.ratios[(n, c)][-1]:.2f}"
                                                for n in others) for c in CONTENDERS))
    return result


def _sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds the with/finally blocks that delete namespaces


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.bench.packets",
                                description="Section 3 of the benchmark on its own.")
    p.add_argument("--sizes", default="1,10000,50000",
                   help="published ports, comma-separated; the smallest is the base")
    p.add_argument("--rounds", type=int, default=25)
    p.add_argument("--connects", type=int, default=500, help="connects per run, at most")
    p.add_argument("--run-seconds", type=float, default=2.0, help="seconds per run, at most")
    p.add_argument("--cpu", type=int, help="CPU of client and server (default: the last)")
    args = p.parse_args(argv)
    sizes = sorted({int(s.replace("_", "")) for s in args.sizes.split(",")})
    if os.geteuid() != 0:
        print("python -m tests.bench.packets needs root (network namespaces)", file=sys.stderr)
        return 1
    from tests.bench.report import packets_lines  # report imports this module

    signal.signal(signal.SIGTERM, _sigterm)
    start = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - start:7.1f}s] {message}", file=sys.stderr, flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="nftnet-bench-"))
    try:
        log(f"preparing configs, renders and exports for {sizes}")
        workloads = [prepare(n, tmp) for n in sizes]
        result = run(workloads, args.rounds, args.connects, args.run_seconds, tmp, log, args.cpu)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("\n".join(packets_lines(result, sizes)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
