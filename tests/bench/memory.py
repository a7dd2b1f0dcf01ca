"""Section 4: peak memory (max RSS) of the whole `nftnet apply` process, bridges included.

Measured by /usr/bin/time, whose child is forked from a small process: a child forked
straight from the benchmark would start its high-water mark at the benchmark's own size.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from tests.bench.common import Workload, netns, nftnet_argv, run_in

TIME = "/usr/bin/time"


def peak_kib(wl: Workload, tmp: Path) -> int:
    """Max RSS in KiB of one `nftnet apply` of the workload in a fresh namespace."""
    state = Path(tempfile.mkdtemp(prefix="state-", dir=tmp))
    report = tmp / "time.out"
    try:
        with netns() as ns:
            argv = [TIME, "-f", "%M", "-o", str(report),
                    *nftnet_argv(state, "apply", "-f", str(wl.config_path))]
            run_in(ns, argv)
        return int(report.read_text().split()[-1])
    finally:
        shutil.rmtree(state, ignore_errors=True)


def run(workloads: list[Workload], tmp: Path) -> dict[int, int]:
    """Peak RSS (KiB) of `nftnet apply` for each size."""
    return {wl.ports: peak_kib(wl, tmp) for wl in workloads}
