"""One `nftnet port publish`, timed as a whole process (interpreter start and imports
included), with 10 and with 20,000 ports already published, side by side.

Run as root: ``python -m tests.bench.publish [ROUNDS]``. Each size gets its own throwaway
network namespace and state; the publishes alternate between the two, and medians and their
ratio are printed. Target (issue 3): ratio under 1.5.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from tests.bench.scale import scale_config

SIZES = {"10 ports": (1, 1, 10), "20,000 ports": (1000, 10000, 20000)}


def main(argv: list[str]) -> None:
    rounds = int(argv[0]) if argv else 7
    tmp = Path(tempfile.mkdtemp(prefix="nftnet-bench-"))
    spaces = {name: f"nb{uuid.uuid4().hex[:8]}" for name in SIZES}
    times: dict[str, list[float]] = {name: [] for name in SIZES}
    try:
        for name, size in SIZES.items():
            ns = spaces[name]
            subprocess.run(["ip", "netns", "add", ns], check=True)
            cfg = tmp / f"{ns}.json"
            cfg.write_text(json.dumps(scale_config(*size)))
            subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-m", "nftnet",
                            "--state-dir", str(tmp / ns), "apply", "-f", str(cfg)], check=True,
                           capture_output=True)
        for i in range(rounds):
            for name, ns in spaces.items():
                argv_ = ["ip", "netns", "exec", ns, sys.executable, "-m", "nftnet",
                         "--state-dir", str(tmp / ns), "port", "publish", "e0",
                         f"{60000 + i}:80"]
                start = time.perf_counter()
                subprocess.run(argv_, check=True, capture_output=True)
                times[name].append(time.perf_counter() - start)
    finally:
        for ns in spaces.values():
            subprocess.run(["ip", "netns", "del", ns], check=False)
        subprocess.run(["rm", "-rf", str(tmp)], check=False)
    small, big = (statistics.median(times[n]) for n in SIZES)
    print(f"one `nftnet port publish`, whole process, median of {rounds}")
    for name in SIZES:
        print(f"  with {name:<14} already published: {statistics.median(times[name]):.3f} s")
    print(f"  ratio: {big / small:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
