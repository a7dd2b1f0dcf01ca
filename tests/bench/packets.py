"""Section 3: per-packet cost, as new TCP connections per second to the LAST published port.

For each size and contender a tests.lab.Lab: a host namespace holding the ruleset (nftnet's,
or the iptables export with the same bridges and forwarding on), a LAN namespace and one
container namespace, the endpoint of the last published port (the last rule of iptables'
linear chains). The same client loop in the LAN namespace connects to 192.168.77.1:PORT,
waits for the server's close, and records connect() latency; the server in the container
accepts and closes. All Labs are up at once and short runs alternate between them, many
rounds: the machine's load drifts, so sizes are compared run by run within a round (paired).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.bench.common import BenchError, Workload, await_rtnl, make_bridges, nftnet_argv, run_in
from tests.lab import Lab

CONTENDERS = ("nftnet", "iptables")
PYTHON = [sys.executable, "-I", "-S"]
SERVER = """
import socket, sys
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
import json, socket, sys, time
dst, port, count, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
lat, fails = [], 0
start = time.perf_counter()
while len(lat) + fails < count and time.perf_counter() - start < limit:
    s = socket.socket()
    s.settimeout(2)
    t = time.perf_counter()
    try:
        s.connect((dst, port))
        lat.append(time.perf_counter() - t)
        s.recv(1)
    except OSError:
        fails += 1
    finally:
        s.close()
print(json.dumps({"elapsed": time.perf_counter() - start, "fails": fails, "lat": lat}))
"""


@dataclass
class PacketResult:
    """Per (size, contender): connections per second of each round's run, and all latencies."""

    rates: dict[tuple[int, str], list[float]] = field(default_factory=dict)
    latencies: dict[tuple[int, str], list[float]] = field(default_factory=dict)
    fails: int = 0

    def paired(self, n: int, base: int, contender: str) -> list[float]:
        """Rate at n over rate at ``base``, round by round (runs close in time)."""
        return [a / b for a, b in zip(self.rates[(n, contender)], self.rates[(base, contender)],
                                      strict=True)]


def _server(stack: contextlib.ExitStack, ns: str, port: int) -> None:
    """Start the accept-and-close server in ns; killed when the stack closes."""
    proc = subprocess.Popen(["ip", "netns", "exec", ns, *PYTHON, "-c", SERVER, str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    stack.callback(proc.wait)
    stack.callback(lambda: os.killpg(proc.pid, signal.SIGKILL) if proc.poll() is None else None)
    assert proc.stdout is not None
    stack.callback(proc.stdout.close)
    ready, _, _ = select.select([proc.stdout], [], [], 10)
    if not ready or proc.stdout.readline().strip() != "READY":
        raise BenchError(f"server in {ns} did not start")


def _lab(stack: contextlib.ExitStack, wl: Workload, contender: str, tmp: Path) -> Lab:
    """A Lab with the contender's ruleset for wl and a serving target container."""
    lab = stack.enter_context(Lab())
    if contender == "nftnet":
        run_in(lab.host, nftnet_argv(tmp / f"packets-{wl.ports}", "apply", "-f",
                                     str(wl.config_path)))
    else:
        make_bridges(lab.host, wl, addresses=True)
        lab.sysctl(lab.host, "net.ipv4.ip_forward", "1")
        with open(wl.export_path) as f:
            run_in(lab.host, ["iptables-restore"], stdin=f)
    target = wl.last
    ns = lab.container("target", target.bridge, target.ipv4, target.gateway)
    _server(stack, ns, 80)
    return lab


def connect_loop(lab: Lab, port: int, count: int, limit: float) -> dict:
    """Run the client in the LAN namespace; its JSON report."""
    argv = [*PYTHON, "-c", CLIENT, Lab.HOST_IP4, str(port), str(count), str(limit)]
    return json.loads(run_in(lab.lan, argv).stdout)


def run(workloads: list[Workload], rounds: int, count: int, limit: float, tmp: Path,
        log: Callable[[str], None]) -> PacketResult:
    result = PacketResult()
    await_rtnl()  # a Lab gives each of its commands 30 s
    with contextlib.ExitStack() as stack:
        labs = {(wl.ports, c): (_lab(stack, wl, c, tmp), wl.last_port)
                for c in CONTENDERS for wl in workloads}  # a contender's sizes run back to back
        for key, (lab, port) in labs.items():
            warm = connect_loop(lab, port, 20, 10)
            if warm["fails"]:
                raise BenchError(f"packets {key}: {warm['fails']} of 20 warm-up connects failed")
        log("  packets: all Labs up and answering")
        for r in range(rounds):
            keys = list(labs) if r % 2 == 0 else list(labs)[::-1]
            for key in keys:
                lab, port = labs[key]
                report = connect_loop(lab, port, count, limit)
                result.fails += report["fails"]
                result.rates.setdefault(key, []).append(len(report["lat"]) / report["elapsed"])
                result.latencies.setdefault(key, []).extend(report["lat"])
            log(f"  packets round {r + 1}/{rounds} done")
    return result
