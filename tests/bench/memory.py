"""Section 4: peak memory (max RSS) of whole processes at each size: `nftnet apply` (creating
the bridges), the floor `nft -j -f` of its batch (what libnftables alone needs for it), and one
`nftnet port publish` with the size's ports there.

Measured by /usr/bin/time, whose child is forked from a small process: a child forked
straight from the benchmark would start its high-water mark at the benchmark's own size.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.bench.common import Workload, netns, nftnet_argv, run_in

TIME = "/usr/bin/time"
PORT = 60999  # above every benchmark size's published ports


@dataclass(frozen=True)
class Peaks:
    """Max RSS in KiB of each process of one size."""

    apply: int
    floor: int
    publish: int


def _peak(ns: str, argv: list[str], report: Path) -> int:
    run_in(ns, [TIME, "-f", "%M", "-o", str(report), *argv])
    return int(report.read_text().split()[-1])


def peaks(wl: Workload, tmp: Path) -> Peaks:
    """The peaks of one size, each process in a fresh namespace (publish after the apply)."""
    state = Path(tempfile.mkdtemp(prefix="state-", dir=tmp))
    report = tmp / "time.out"
    try:
        with netns() as ns:
            apply = _peak(ns, nftnet_argv(state, "apply", "-f", str(wl.config_path)), report)
            publish = _peak(ns, nftnet_argv(state, "port", "publish", wl.first.endpoint,
                                            f"{PORT}:{PORT}"), report)
        with netns() as ns:
            floor = _peak(ns, ["nft", "-j", "-f", str(wl.batch_path)], report)
        return Peaks(apply, floor, publish)
    finally:
        shutil.rmtree(state, ignore_errors=True)


def run(workloads: list[Workload], tmp: Path) -> dict[int, Peaks]:
    """Peak RSS (KiB) of each process for each size."""
    return {wl.ports: peaks(wl, tmp) for wl in workloads}
