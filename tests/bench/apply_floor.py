"""nftnet apply against the floor: `nft -j -f` of the very batch apply sends.

Run as root: ``python -m tests.bench.apply_floor [NETWORKS ENDPOINTS PORTS]`` (default 1,000 /
10,000 / 20,000). Each contender runs in a fresh throwaway network namespace, alternating,
ROUNDS times; medians and ratios to the floor are printed:
  floor            `nft -j -f batch.json` (process start included)
  nftnet batch     nftnet's libnftables call for the same batch, timed inside the process
  nftnet apply     the whole `nftnet apply` process: interpreter start, config validation,
                   compile, bridges adopted (created beforehand), batch, state
  nftnet apply+br  the same, creating the bridges too (1,000 bridges via netlink)
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from tests.bench.scale import scale_config

ROUNDS = 3
_TIME_BATCH = """
import json, sys, time
from nftnet.nft.libnft import LibNft
batch = json.load(open(sys.argv[1]))
nft = LibNft()
t = time.perf_counter(); nft.run(batch); print(time.perf_counter() - t)
"""


def in_netns(body: Callable[[str], float]) -> float:
    ns = f"nb{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        return body(ns)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=True)


def timed(ns: str, argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(["ip", "netns", "exec", ns, *argv], check=True, capture_output=True)
    return time.perf_counter() - start


def make_bridges(ns: str, config: dict) -> None:
    script = "".join(f"link add {n['bridge']} type bridge\n" for n in config["networks"].values())
    subprocess.run(["ip", "netns", "exec", ns, "ip", "-batch", "-"], input=script, text=True,
                   check=True)


def run(networks: int, endpoints: int, ports: int) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="nftnet-bench-"))
    config = scale_config(networks, endpoints, ports)
    cfg = tmp / "config.json"
    cfg.write_text(json.dumps(config))
    nftnet = [sys.executable, "-m", "nftnet", "--state-dir"]
    batch = tmp / "batch.json"
    rendered = subprocess.run([*nftnet, str(tmp / "r"), "render", "-f", str(cfg)], check=True,
                              capture_output=True, text=True).stdout
    batch.write_text(rendered)

    def apply(ns: str, bridges_first: bool) -> float:
        if bridges_first:
            make_bridges(ns, config)
        return timed(ns, [*nftnet, str(tmp / uuid.uuid4().hex), "apply", "-f", str(cfg)])

    def batch_only(ns: str) -> float:
        out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", _TIME_BATCH,
                              str(batch)], check=True, capture_output=True, text=True)
        return float(out.stdout)

    contenders: dict[str, Callable[[str], float]] = {
        "floor": lambda ns: timed(ns, ["nft", "-j", "-f", str(batch)]),
        "nftnet batch": batch_only,
        "nftnet apply": lambda ns: apply(ns, True),
        "nftnet apply+br": lambda ns: apply(ns, False),
    }
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(ROUNDS):
        for name, body in contenders.items():
            times[name].append(in_netns(body))
    subprocess.run(["rm", "-rf", str(tmp)], check=False)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv: list[str]) -> None:
    networks, endpoints, ports = (int(a) for a in argv) if argv else (1000, 10000, 20000)
    result = run(networks, endpoints, ports)
    floor = result["floor"]
    print(f"{networks} networks, {endpoints} endpoints, {ports} published ports; "
          f"median of {ROUNDS}")
    print(f"{'contender':<18}{'seconds':>9}{'x floor':>9}")
    for name, seconds in result.items():
        print(f"{name:<18}{seconds:>9.3f}{seconds / floor:>9.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
