"""``nftnet daemon --docker`` against Docker's own iptables, side by side, with N ports already
published (ranges on containers of at most 1,000 ports each): issue 13's figures and targets.

Two dockerds of the same binary run at once, each in a throwaway namespace with a LAN
namespace joined to it (tests/docker_env.py, tests/docker_daemon.py): one with
``--iptables=false --ip6tables=false --userland-proxy=false`` followed by the daemon, one
with iptables on (``--userland-proxy=false`` too). For each size, rounds of ``docker run -d
-p PORT:80`` (busybox httpd) then ``docker rm -f`` alternate between the two; each measures:

- returned -> answer: from ``docker run -d`` returning to the port answering an HTTP request
  from the LAN (any answer of httpd's; a thread in the LAN namespace connects every
  millisecond, each try waiting 10 ms for the answer: dockerd itself holds the host port's
  socket and never answers), and whether its first try answered (the probe's own floor: a
  port there before ``docker run`` returned and an httpd listening answer it); invoked ->
  answer, from the moment ``docker run`` was started,
  and ``docker run`` itself (invoked -> returned: the least invoked -> answer can be);
- event -> kernel (the daemon only), as nftables' own notifications announce its commits (a
  thread in dockerd's namespace subscribed to NFNLGRP_NFTABLES, with each commit's pid):
  register, from the container's event the daemon acted on (the latest of its events, by
  ``timeNano``, before the daemon's first commit after its network ``connect``: the connect
  itself when the endpoint was prepared on it, the start where it was not) to that commit;
  unregister, from its ``die`` to the daemon's next commit. Also the daemon's own time for
  the change (its log line), and whether the port was in the kernel before ``docker run``
  returned;
- after the rounds: the daemon's resident memory (VmRSS), and flush -> healed: ``nft flush
  ruleset`` in dockerd's namespace, from that commit to the daemon's commit that puts
  nftnet's table back (its debounce, HEAL_QUIET, included), every port there again.

Run as root: ``python -m tests.bench.daemon [--sizes 10,1000,10000] [--rounds 30]
[--heals 3] [--docker-max 1000]``. Docker's own is measured up to ``--docker-max`` ports
already there: Docker 20.10 programs its iptables rules one process each, and takes minutes
beyond (the time it took to publish is printed). Prints a markdown table and the targets.
"""

from __future__ import annotations

import argparse
import contextlib
import re
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
from tests.bench.report import verdict
from tests.docker_daemon import Daemon, Lan, wait_for
from tests.docker_env import FLAGS, DockerEnv, unavailable_reason
from tests.image import HTTPD
from tests.lab import in_netns

RANGE = 1000  # ports per pre-published container
FIRST = 20000  # the pre-published ranges start here
PROBE_PORT = 40000  # the measured containers' host ports start here
GET = b"GET / HTTP/1.0\r\n\r\n"  # any answer of httpd's (404 here) is an answer
# the daemon's log lines of a probe's change, "register m3.bridge (4.2 ms)", and of a heal
CHANGE = re.compile(r"^<\d>(register|unregister) m\d+\.\S+ \(([\d.]+) ms\)$", re.M)
HEALED = re.compile(r"^<\d>(heal)ed after .* \((\d+) ms\): ", re.M)
TARGET_P99 = 0.020  # seconds: event -> kernel p99 at every N ...
TARGET_FLAT = 1.5  # ... and at the largest N within this factor of at the smallest
TARGET_RSS = 100 * 1024  # KiB at 10,000 ports
TARGET_HEAL = 1.0  # seconds


@dataclass
class Side:
    """One dockerd, its LAN, and what was measured on it (seconds, per size)."""

    env: DockerEnv
    lan: Lan
    daemon: Daemon | None = None
    answer: dict[int, list[float]] = field(default_factory=dict)  # from `docker run` returned
    whole: dict[int, list[float]] = field(default_factory=dict)  # from `docker run` started
    run: dict[int, list[float]] = field(default_factory=dict)  # `docker run` itself
    register: dict[int, list[float]] = field(default_factory=dict)  # event -> kernel
    unregister: dict[int, list[float]] = field(default_factory=dict)
    acted_on: dict[int, list[str]] = field(default_factory=dict)  # the register's event
    early: dict[int, list[float]] = field(default_factory=dict)  # answer, of those rounds
    # whose port was in the kernel before `docker run` returned
    first_try: dict[int, list[bool]] = field(default_factory=dict)  # answered the first try
    heal: dict[int, list[float]] = field(default_factory=dict)
    rss: dict[int, int] = field(default_factory=dict)  # KiB
    published_in: dict[int, float] = field(default_factory=dict)  # seconds, all N ports
    commits: list[tuple[int, int | None]] = field(default_factory=list)  # (time_ns, pid)
    events: dict[str, list[tuple[int, str]]] = field(default_factory=dict)  # cid ->
    there: int = 0  # ports published now
    runs: int = 0

    @property
    def pid(self) -> int | None:
        return None if self.daemon is None or self.daemon.proc is None else self.daemon.proc.pid

    def commit_after(self, ns: int, ours: bool = True) -> int | None:
        """time_ns of the first commit after ``ns``: the daemon's, or anyone else's."""
        return next((t for t, pid in list(self.commits) if t > ns and (pid == self.pid) == ours),
                    None)

    def event(self, cid: str, action: str) -> int | None:
        return next((t for t, a in list(self.events.get(cid, ())) if a == action), None)


def answered(lan: Lan, port: int, timeout: float = 30.0) -> tuple[float, int]:
    """time.time() when host port ``port`` first answers HTTP from the LAN, and the tries it
    took (1: it answered the first, the probe's own floor)."""
    def poll() -> tuple[float, int]:
        deadline, tries = time.monotonic() + timeout, 0
        while time.monotonic() < deadline:
            tries += 1
            with contextlib.suppress(OSError), socket.create_connection(
                    (Lan.HOST4, port), timeout=0.01) as s:
                s.sendall(GET)
                s.settimeout(0.01)
                if s.recv(64).startswith(b"HTTP/"):
                    return time.time(), tries
            time.sleep(0.001)
        raise TimeoutError(f"port {port} did not answer within {timeout} s")
    return in_netns(lan.ns, poll)


def follow_commits(side: Side, stop: threading.Event) -> None:
    """Record the time and the committing pid of every commit in dockerd's namespace."""
    def follow() -> None:
        with Monitor() as monitor:
            while not stop.is_set():
                batch = monitor.read(0.2)
                for notice in batch.notices if batch else ():
                    if notice.ends_batch:
                        side.commits.append((time.time_ns(), notice.pid))
    threading.Thread(target=lambda: in_netns(side.env.ns, follow), daemon=True).start()


def follow_events(side: Side, stop: threading.Event) -> None:
    """Record each container's events (and its network connects and disconnects) with their
    time: ``events[cid]`` = [(timeNano, action), ...]."""
    import docker

    def follow() -> None:
        client = docker.APIClient(base_url=side.env.url, version="auto")
        for event in client.events(decode=True, filters={"type": ["container", "network"]}):
            actor = event.get("Actor") or {}
            cid = (actor.get("Attributes") or {}).get("container") \
                if event.get("Type") == "network" else actor.get("ID")
            if cid:
                side.events.setdefault(cid, []).append((int(event["timeNano"]),
                                                        event.get("Action", "")))
            if stop.is_set():
                break
    threading.Thread(target=follow, daemon=True).start()


def publish(side: Side, size: int) -> None:
    """Containers holding ranges until ``size`` ports are published (the daemon holds them)."""
    start = time.monotonic()
    while side.there < size:
        count = min(RANGE, size - side.there)
        first = FIRST + side.there
        spec = f"{first}-{first + count - 1}:{first}-{first + count - 1}"
        side.env.docker("run", "-d", "--name", f"pre{side.there}", "-p", spec, "bb", "sleep",
                        "1000000", timeout=1800)
        side.there += count
    if side.daemon is not None:
        wait_for(lambda: held_ports(side) >= size, timeout=600, step=0.2)
    side.published_in[size] = sum(side.published_in.values()) + time.monotonic() - start
    print(f"{size:,} ports published {'with the daemon' if side.daemon else 'by Docker'} in "
          f"{side.published_in[size]:.1f} s", file=sys.stderr)


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
    answer, tries = answered(side.lan, port)
    side.first_try.setdefault(size, []).append(tries == 1)
    side.answer.setdefault(size, []).append(answer - returned)
    side.whole.setdefault(size, []).append(answer - invoked)
    side.run.setdefault(size, []).append(returned - invoked)
    if side.daemon is not None:
        connect = wait_for(lambda: side.event(cid, "connect"), timeout=10)
        commit = wait_for(lambda: side.commit_after(connect), timeout=10)
        when, action = max((e for e in side.events[cid] if e[0] < commit), default=(0, ""))
        side.register.setdefault(size, []).append((commit - when) / 1e9)
        side.acted_on.setdefault(size, []).append(action)
        if commit < returned * 1e9:
            side.early.setdefault(size, []).append(answer - returned)
    side.env.docker("rm", "-f", name)
    if side.daemon is not None:
        die = wait_for(lambda: side.event(cid, "die"), timeout=10)
        commit = wait_for(lambda: side.commit_after(die), timeout=10)
        side.unregister.setdefault(size, []).append((commit - die) / 1e9)
        wait_for(lambda: held_ports(side) <= size, timeout=30, step=0.02)


def flush_heal(side: Side, size: int) -> None:
    """``nft flush ruleset`` in dockerd's namespace (only nftnet's table is there), timed
    from that commit to the daemon's commit after it; every port there again before the next."""
    before = time.time_ns()
    side.env.ns_run("nft", "flush", "ruleset")
    flushed = wait_for(lambda: side.commit_after(before, ours=False), timeout=10)
    healed = wait_for(lambda: side.commit_after(flushed), timeout=10)
    side.heal.setdefault(size, []).append((healed - flushed) / 1e9)
    wait_for(lambda: held_ports(side) >= size, timeout=30, step=0.02)
    time.sleep(0.3)  # the next flush is a burst of its own


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
        ours.daemon.start("--log-level", "info", wait=False)
        wait_for(lambda: ours_env.ns_run("nft", "list", "tables", check=False).count(
            "nftnet"), timeout=30)
        stop = threading.Event()
        stack.callback(stop.set)
        follow_events(ours, stop)
        follow_commits(ours, stop)
        time.sleep(0.5)  # the followers subscribed
        yield ours, theirs


def changes(log: str) -> dict[str, list[float]]:
    """The daemon's own time for each probe container's change and each heal, by kind
    (seconds)."""
    out: dict[str, list[float]] = {"register": [], "unregister": [], "heal": []}
    for kind, took in CHANGE.findall(log) + HEALED.findall(log):
        out[kind].append(float(took) / 1000)
    return out


def run(sizes: list[int], rounds: int, heals: int, docker_max: int) -> str:
    with TemporaryDirectory(prefix="nftnet-bench-daemon-") as tmp, sides(Path(tmp)) as (
            ours, theirs):
        assert ours.daemon is not None
        own: dict[int, dict[str, list[float]]] = {}
        for size in sizes:
            contenders = [ours] + ([theirs] if size <= docker_max else [])
            for side in contenders:
                publish(side, size)
            seen = changes(ours.daemon.log())
            for _ in range(rounds):
                for side in contenders:
                    one_round(side, size)
            ours.rss[size] = rss_kib(ours.daemon)
            for _ in range(heals):
                flush_heal(ours, size)
            after = changes(ours.daemon.log())
            own[size] = {k: v[len(seen[k]):] for k, v in after.items()}
        return "\n".join([*table(ours, theirs, sizes, own, rounds, docker_max), "",
                          *targets(ours, theirs, sizes, docker_max)])


def table(ours: Side, theirs: Side, sizes: list[int], own: dict[int, dict[str, list[float]]],
          rounds: int, docker_max: int) -> list[str]:
    rows = ["| ports there | returned -> answer: nftnet daemon | returned -> answer: Docker's "
            "iptables | invoked -> answer: nftnet daemon | invoked -> answer: Docker's iptables "
            "| `docker run` itself: daemon / Docker's | event -> kernel: register | event -> "
            "kernel: unregister | the daemon's change: register / unregister / heal (p50) | "
            "flush -> healed | daemon RSS (MiB) |", "|" + "---:|" * 11]
    for n in sizes:
        run_p50 = " / ".join(f"{statistics.median(s.run[n]) * 1000:.0f}" if n in s.run else "-"
                             for s in (ours, theirs))
        own_p50 = " / ".join(f"{statistics.median(v) * 1000:.1f}" if v else "-"
                             for v in own[n].values())
        rows.append(f"| {n:,} | {ms(ours.answer.get(n))} | {ms(theirs.answer.get(n))} | "
                    f"{ms(ours.whole.get(n))} | {ms(theirs.whole.get(n))} | {run_p50} | "
                    f"{ms(ours.register.get(n))} | {ms(ours.unregister.get(n))} | {own_p50} | "
                    f"{ms(ours.heal.get(n))} | {ours.rss[n] / 1024:.0f} |")
    acted = {n: {a: ours.acted_on[n].count(a) for a in sorted(set(ours.acted_on[n]))}
             for n in sizes}
    capped = [n for n in sizes if n > docker_max]
    cost = max((n for n in theirs.published_in), default=None)
    notes = [
        "", f"Milliseconds, p50 / p99 of {rounds} rounds per size and contender (p99 of so few "
        "is close to their maximum); flush -> healed: of the flushes at that size. "
        "returned: `docker run -d` returned; invoked: it was started.",
        "- Register, the event acted on: " + "; ".join(
            f"{n:,}: " + ", ".join(f"{a} {k}" for a, k in acted[n].items()) for n in sizes)
        + ". Port in the kernel before `docker run` returned: " + ", ".join(
            f"{n:,}: {len(ours.early.get(n, []))}/{rounds} (returned -> answer of those: "
            f"{ms(ours.early.get(n))})" for n in sizes) + "."]
    if capped and cost is not None:
        where = ", ".join(f"{n:,}" for n in capped)
        notes.append(f"- Docker's own iptables is not measured at {where} ports (capped at "
                     f"{docker_max:,}): publishing its {cost:,} ports took it "
                     f"{theirs.published_in[cost]:.0f} s, against {ours.published_in[cost]:.1f} s "
                     "with the daemon, and each rule costs more the more its table holds.")
    return rows + notes


def targets(ours: Side, theirs: Side, sizes: list[int], docker_max: int) -> list[str]:
    """Issue 13's targets, each met or not with the numbers."""
    out = ["### Targets", ""]
    p99 = {n: [quantile(ours.register[n], 0.99), quantile(ours.unregister[n], 0.99)]
           for n in sizes}
    text = ", ".join(f"{n:,}: {r * 1000:.1f} / {u * 1000:.1f} ms" for n, (r, u) in p99.items())
    out.append(f"- event -> kernel p99 under 20 ms at every N (register / unregister): "
               f"{verdict(all(p < TARGET_P99 for v in p99.values() for p in v))} ({text})")
    lo, hi = min(sizes), max(sizes)
    if lo != hi:
        ratios = [h / lo_ for h, lo_ in zip(p99[hi], p99[lo], strict=True)]
        out.append(f"- event -> kernel p99 flat, at {hi:,} within {TARGET_FLAT}x of at {lo:,}: "
                   f"{verdict(all(r <= TARGET_FLAT for r in ratios))} (register "
                   f"{ratios[0]:.2f}x, unregister {ratios[1]:.2f}x)")
    for n in sizes:
        if n > docker_max:
            out.append(f"- returned -> answer faster than Docker's own iptables at {n:,}: "
                       f"{verdict(None)} (Docker's own capped at {docker_max:,})")
            continue
        mine, theirs_ = (statistics.median(s.answer[n]) for s in (ours, theirs))
        firsts = [sum(s.first_try[n]) for s in (ours, theirs)]
        tie = ("; a tie at the probe's floor: both answered the first try in every round"
               if firsts == [len(ours.first_try[n]), len(theirs.first_try[n])] else
               f"; answered the first try: {firsts[0]} / {firsts[1]} rounds")
        out.append(f"- returned -> answer faster than Docker's own iptables at {n:,} (p50): "
                   f"{verdict(mine < theirs_)} ({mine * 1000:.2f} ms vs {theirs_ * 1000:.2f} ms"
                   f"{tie})")
    if 10000 in ours.rss:
        rss = ours.rss[10000]
        out.append(f"- daemon RSS at 10,000 ports under 100 MiB: {verdict(rss < TARGET_RSS)} "
                   f"({rss / 1024:.0f} MiB)")
    else:
        out.append(f"- daemon RSS at 10,000 ports under 100 MiB: {verdict(None)}")
    heals = [h for v in ours.heal.values() for h in v]
    if heals:
        out.append(f"- a flush healed in under 1 s: {verdict(max(heals) < TARGET_HEAL)} "
                   f"(slowest of {len(heals)}: {max(heals) * 1000:.0f} ms)")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.bench.daemon",
                                description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="10,1000,10000", help="ports already published "
                   "(default 10,1000,10000)")
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--heals", type=int, default=3, help="flushes healed per size")
    p.add_argument("--docker-max", type=int, default=1000,
                   help="largest size Docker's own iptables is measured at")
    args = p.parse_args(argv)
    if reason := unavailable_reason():
        print(f"cannot run: {reason}", file=sys.stderr)
        return 1
    sizes = sorted(int(s) for s in args.sizes.split(","))
    print(run(sizes, args.rounds, args.heals, args.docker_max))
    return 0


if __name__ == "__main__":
    sys.exit(main())
