"""nftnet apply against the floor: `nft -j -f` of the very batch apply sends.

Run as root: ``python -m tests.bench.apply_floor [NETWORKS ENDPOINTS PORTS]``. Both run in fresh
throwaway network namespaces, alternating, and the ratio of medians is printed. No bridges are
created by nftnet here beyond what apply does itself (bridges count as part of apply's job).
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

import yaml

from tests.bench.scale import scale_config

ROUNDS = 3


def _netns() -> str:
    name = f"nb{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    return name


def _timed(ns: str, argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(["ip", "netns", "exec", ns, *argv], check=True, capture_output=True)
    return time.perf_counter() - start


def run(networks: int, endpoints: int, ports: int) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="nftnet-bench-"))
    cfg = tmp / "config.yaml"
    cfg.write_text(yaml.safe_dump(scale_config(networks, endpoints, ports)))
    batch = tmp / "batch.json"
    nftnet = [sys.executable, "-m", "nftnet", "--state-dir"]
    times: dict[str, list[float]] = {"nftnet apply": [], "nft -j -f (floor)": []}
    for _ in range(ROUNDS):
        ns = _netns()
        try:
            times["nftnet apply"].append(_timed(ns, [*nftnet, str(tmp / uuid.uuid4().hex),
                                                     "apply", "-f", str(cfg)]))
            rendered = subprocess.run(["ip", "netns", "exec", ns, *nftnet, str(tmp / "r"),
                                       "render", "-f", str(cfg)], check=True,
                                      capture_output=True, text=True).stdout
            batch.write_text(rendered)
        finally:
            subprocess.run(["ip", "netns", "del", ns], check=True)
        ns = _netns()
        try:
            times["nft -j -f (floor)"].append(_timed(ns, ["nft", "-j", "-f", str(batch)]))
        finally:
            subprocess.run(["ip", "netns", "del", ns], check=True)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv: list[str]) -> None:
    networks, endpoints, ports = (int(a) for a in argv) if argv else (1000, 10000, 20000)
    result = run(networks, endpoints, ports)
    apply_s, floor_s = result["nftnet apply"], result["nft -j -f (floor)"]
    print(json.dumps({"networks": networks, "endpoints": endpoints, "ports": ports,
                      "nftnet_apply_s": round(apply_s, 3), "floor_s": round(floor_s, 3),
                      "ratio": round(apply_s / floor_s, 2)}))


if __name__ == "__main__":
    main(sys.argv[1:])
