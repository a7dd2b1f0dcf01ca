"""``nftnet daemon --docker`` against Docker's own iptables, side by side, with N ports already
published (ranges on containers of at most 1,000 ports each).

Two dockerds of the same binary run at once, each in a throwaway namespace with a LAN
namespace joined to it (tests/docker_env.py, tests/docker_daemon.py): one with
``--iptables=false --ip6tables=false --userland-proxy=false`` followed by the daemon, one
with iptables on (``--userland-proxy=false`` too). For each size, rounds of ``docker run -d
-p PORT:80`` (busybox httpd) alternate between the two; each measures:

- returned -> answer: from ``docker run -d`` returning to the port answering an HTTP request
  from the LAN (any answer of httpd's; a thread in the LAN namespace connects every
  millisecond, each try waiting 10 ms for the answer: dockerd itself holds the host port's
  socket and never answers); and invoked -> answer, from the moment ``docker run`` was
  started (Docker's iptables rules are programmed before the container starts, so within
  the run);
- event -> kernel (the daemon only): from the container's ``start`` event (its ``timeNano``)
  to the daemon's commit that follows it, as nftables' own notification announces it (a
  thread in dockerd's namespace subscribed to NFNLGRP_NFTABLES, counting commits by the
  daemon's pid only);
- the daemon's resident memory (VmRSS) after the rounds.

Run as root: ``python -m tests.bench.daemon [--sizes 10,1000,10000] [--rounds 20]
[--docker-max 1000]``. Docker's own is measured up to ``--docker-max`` ports already there:
Docker 20.10 programs three iptables rules per port, one process each, and takes minutes
beyond. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory

from nftnet.nft.monitor import Monitor
from tests.docker_daemon import Daemon, Lan, wait_for
from tests.docker_env import FLAGS, HTTPD, DockerEnv, unavailable_reason
from tests.lab import in_netns

RANGE = 1000  # ports per pre-published container
FIRST = 20000  # the pre-published ranges start here
PROBE_PORT = 40000  # the measured containers' host ports start here
GET = b"GET / HTTP/1.0\r\n\r\n"  # any answer of httpd's (404 here) is an answer


@dataclass
class Side:
    """One dockerd, its LAN, and what was measured on it."""

    env: DockerEnv
    lan: Lan
    daemon: Daemon | None = None
    answer: dict[int, list[float]] = field(default_factory=dict)  # size -> seconds
    whole: dict[int, list[float]] = field(default_factory=dict)  # from `docker run` started
    kernel: dict[int, list[float]] = field(default_factory=dict)
    rss: dict[int, int] = field(default_factory=dict)  # size -> KiB
    commits: list[int] = field(default_factory=list)  # time_ns of the daemon's commits
    starts: dict[str, int] = field(default_factory=dict)  # container id -> start timeNano
    there: int = 0  # ports published now
    runs: int = 0


def answered(lan: Lan, port: int, timeout: float = 30.0) -> float:
    """time.time() when host port ``port`` first answers HTTP from the LAN."""
    def poll() -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(
                    (Lan.HOST4, port), timeout=0.01) as s:
                s.sendall(GET)
                s.settimeout(0.01)
                if s.recv(64).startswith(b"HTTP/"):
                    return time.time()
            time.sleep(0.001)
        raise TimeoutError(f"port {port} did not answer within {timeout} s")
    return in_netns(lan.ns, poll)


def follow_commits(side: Side, stop: threading.Event) -> None:
    """Record the time of every commit the daemon makes in its namespace."""
    def follow() -> None:
        with Monitor() as monitor:
            while not stop.is_set():
                batch = monitor.read(0.2)
                for notice in batch.notices if batch else ():
                    if notice.ends_batch and side.daemon is not None and side.daemon.proc \
                            is not None and notice.pid == side.daemon.proc.pid:
                        side.commits.append(time.time_ns())
    threading.Thread(target=lambda: in_netns(side.env.ns, follow), daemon=True).start()


def follow_starts(side: Side, stop: threading.Event) -> None:
    """Record each container's start event time."""
    import docker

    def follow() -> None:
        client = docker.APIClient(base_url=side.env.url, version="auto")
        stream = client.events(decode=True, filters={"type": ["container"], "event": ["start"]})
        for event in stream:
            side.starts[event["id"]] = int(event["timeNano"])
            if stop.is_set():
                break
    threading.Thread(target=follow, daemon=True).start()


def publish(side: Side, size: int) -> None:
    """Containers holding ranges until ``size`` ports are published (the daemon holds them)."""
    while side.there < size:
        count = min(RANGE, size - side.there)
        first = FIRST + side.there
        spec = f"{first}-{first + count - 1}:{first}-{first + count - 1}"
        side.env.docker("run", "-d", "--name", f"pre{side.there}", "-p", spec, "bb", "sleep",
                        "1000000", timeout=1800)
        side.there += count
    if side.daemon is not None:
        wait_for(lambda: held_ports(side) >= size, timeout=600, step=0.2)


def held_ports(side: Side) -> int:
    out = side.env.ns_run("nft", "-j", "list", "map", "inet", "nftnet", "pubany4-port",
                          check=False)
    return out.count('"concat"')


def one_round(side: Side, size: int) -> None:
    port = PROBE_PORT + side.runs
    name = f"m{side.runs}"
    side.runs += 1
    invoked = time.time()
    cid = (side.env.docker("run", "-d", "--name", name, "-p", f"{port}:80", "bb", *HTTPD)
           or "").strip()
    returned = time.time()
    answer = answered(side.lan, port)
    side.answer.setdefault(size, []).append(answer - returned)
    side.whole.setdefault(size, []).append(answer - invoked)
    if side.daemon is not None:
        start = wait_for(lambda: side.starts.get(cid), timeout=10)
        commit = wait_for(lambda: next((c for c in side.commits if c > start), None), 10)
        side.kernel.setdefault(size, []).append((commit - start) / 1e9)
    side.env.docker("rm", "-f", name)
    if side.daemon is not None:  # the unregister done before the next round
        wait_for(lambda: held_ports(side) <= size, timeout=30, step=0.02)


def rss_kib(daemon: Daemon) -> int:
    assert daemon.proc is not None
    for line in Path(f"/proc/{daemon.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ms(values: list[float] | None) -> str:
    if not values:
        return "-"  # not measured
    return f"{statistics.median(values) * 1000:.1f} / {quantile(values, 0.99) * 1000:.1f}"


@contextlib.contextmanager
def sides(tmp: Path) -> Iterator[tuple[Side, Side]]:
    with contextlib.ExitStack() as stack:
        ours_env = stack.enter_context(DockerEnv(FLAGS))
        theirs_env = stack.enter_context(DockerEnv(("--userland-proxy=false",)))
        ours = Side(ours_env, stack.enter_context(Lan(ours_env)))
        theirs = Side(theirs_env, stack.enter_context(Lan(theirs_env)))
        ours.daemon = Daemon(ours_env, tmp)
        stack.callback(ours.daemon.kill)
        ours.daemon.start("--log-level", "warning", wait=False)
        wait_for(lambda: ours_env.ns_run("nft", "list", "tables", check=False).count(
            "nftnet"), timeout=30)
        stop = threading.Event()
        stack.callback(stop.set)
        for side in (ours, theirs):
            follow_starts(side, stop)
        follow_commits(ours, stop)
        time.sleep(0.5)  # the followers subscribed
        yield ours, theirs


def run(sizes: list[int], rounds: int, docker_max: int) -> str:
    with TemporaryDirectory(prefix="nftnet-bench-daemon-") as tmp, sides(Path(tmp)) as (
            ours, theirs):
        for size in sizes:
            contenders = [ours] + ([theirs] if size <= docker_max else [])
            for side in contenders:
                start = time.monotonic()
                publish(side, size)
                print(f"{size} ports published {'with the daemon' if side.daemon else 'by Docker'}"
                      f" in {time.monotonic() - start:.1f} s", file=sys.stderr)
            for _ in range(rounds):
                for side in contenders:
                    one_round(side, size)
            assert ours.daemon is not None
            ours.rss[size] = rss_kib(ours.daemon)
        rows = ["| ports there | daemon event -> kernel | returned -> answer: nftnet daemon "
                "| returned -> answer: Docker's iptables | invoked -> answer: nftnet daemon | "
                "invoked -> answer: Docker's iptables | daemon RSS (MiB) |",
                "|---:|---:|---:|---:|---:|---:|---:|"]
        rows += [f"| {size:,} | {ms(ours.kernel.get(size))} | {ms(ours.answer.get(size))} | "
                 f"{ms(theirs.answer.get(size))} | {ms(ours.whole.get(size))} | "
                 f"{ms(theirs.whole.get(size))} | {ours.rss[size] / 1024:.0f} |"
                 for size in sizes]
        return "\n".join([*rows, "", f"Milliseconds, p50 / p99 of {rounds} rounds per size and "
                          "contender (p99 of so few is close to their maximum); returned: "
                          "`docker run -d` returned; invoked: it was started. Docker's own: "
                          f"'-' above {docker_max:,} ports."])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.bench.daemon",
                                description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="10,1000", help="ports already published (default "
                   "10,1000)")
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--docker-max", type=int, default=1000,
                   help="largest size Docker's own iptables is measured at")
    args = p.parse_args(argv)
    if reason := unavailable_reason():
        print(f"cannot run: {reason}", file=sys.stderr)
        return 1
    sizes = sorted(int(s) for s in args.sizes.split(","))
    print(run(sizes, args.rounds, args.docker_max))
    return 0


if __name__ == "__main__":
    sys.exit(main())
