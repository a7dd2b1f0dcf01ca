"""Section 1: programming the whole set, each contender in a fresh throwaway namespace.

  floor      `nft -j -f` of nftnet's rendered batch (process start included)
  txn        nftnet's transaction: its libnftables call for that batch, timed in-process
  apply      the whole `nftnet apply` process, bridges already there with their addresses, up
             (the others do no link work either)
  apply+br   the same, creating the bridges too
  again      `nftnet apply` of the same file again, nothing changed since (after an untimed
             apply that made the bridges): what proves "no changes"
  restore    `iptables-restore` of nftnet's iptables-save export
  stack      a Python process that only imports click, marshmallow and the nftables binding:
             the least any `apply` of this stack (the brief's CLI and validator) can cost
  per call   one `iptables` process per rule, as Docker does (up to a size; see docker.py)
"""

from __future__ import annotations

import shutil
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.bench import docker
from tests.bench.common import (
    Workload,
    await_rtnl,
    make_bridges,
    netns,
    nftnet_argv,
    run_in,
)

STACK = "import click, marshmallow, nftables"
_TIME_BATCH = """
import json, sys, time
from nftnet.nft.libnft import LibNft
batch = json.load(open(sys.argv[1]))
nft = LibNft()
t = time.perf_counter(); nft.run(batch); print(time.perf_counter() - t)
"""


@dataclass
class PerCall:
    """A real one-process-per-rule replay: total seconds and each call's (rules, seconds)."""

    seconds: float
    calls: int
    points: list[tuple[int, float]]


@dataclass
class ProgramResult:
    times: dict[int, dict[str, list[float]]] = field(default_factory=dict)
    per_call: dict[int, PerCall] = field(default_factory=dict)


def _apply(wl: Workload, ns: str, tmp: Path, bridges_first: bool, again: bool = False
           ) -> float:
    if bridges_first:  # as they are after an apply: the others program the firewall only too
        make_bridges(ns, wl)
    state = tmp / f"state-{uuid.uuid4().hex[:8]}"
    argv = nftnet_argv(state, "apply", "-f", str(wl.config_path))
    try:
        if again:
            run_in(ns, argv)
        return run_in(ns, argv).seconds
    finally:
        shutil.rmtree(state, ignore_errors=True)


def _restore(wl: Workload, ns: str) -> float:
    with open(wl.export_path) as export:
        return run_in(ns, ["iptables-restore"], stdin=export).seconds


def _contenders(wl: Workload, tmp: Path) -> dict[str, Callable[[str], float]]:
    return {
        "floor": lambda ns: run_in(ns, ["nft", "-j", "-f", str(wl.batch_path)]).seconds,
        "txn": lambda ns: float(run_in(ns, [sys.executable, "-c", _TIME_BATCH,
                                            str(wl.batch_path)]).stdout),
        "apply": lambda ns: _apply(wl, ns, tmp, bridges_first=True),
        "apply+br": lambda ns: _apply(wl, ns, tmp, bridges_first=False),
        "again": lambda ns: _apply(wl, ns, tmp, bridges_first=False, again=True),
        "restore": lambda ns: _restore(wl, ns),
        "stack": lambda ns: run_in(ns, [sys.executable, "-c", STACK]).seconds,
    }


def per_call(wl: Workload) -> PerCall:
    """Replay the export one `iptables` process per rule in a fresh namespace."""
    replay = docker.calls(wl.export_path.read_text())
    points = []
    with netns() as ns:
        for call in replay:
            points.append((call.table_rules, run_in(ns, call.argv).seconds))
    return PerCall(sum(s for _, s in points), len(replay), points)


def run(workloads: list[Workload], rounds: int, per_call_max: int, tmp: Path,
        log: Callable[[str], None]) -> ProgramResult:
    """All contenders, alternating within each round (order rotated), fresh namespace each."""
    result = ProgramResult()
    for r in range(rounds):
        for wl in workloads:
            bodies = list(_contenders(wl, tmp).items())
            shift = r % len(bodies)
            times = result.times.setdefault(wl.ports, {name: [] for name, _ in bodies})
            for name, body in bodies[shift:] + bodies[:shift]:
                await_rtnl()  # no contender timed while the one before's bridges go
                with netns() as ns:
                    times[name].append(body(ns))
            if r == 0 and wl.ports <= per_call_max:
                log(f"  program {wl.ports}: one iptables process per rule ...")
                result.per_call[wl.ports] = per_call(wl)
            log(f"  program {wl.ports} round {r + 1}/{rounds}: "
                + ", ".join(f"{k} {v[-1]:.3f}s" for k, v in times.items()))
    return result
