"""nftnet against Docker-style iptables, side by side, at 1 to 50,000 published ports.

Run as root: ``python -m tests.bench [--quick]``. Prints the tables (markdown) and writes
``results.md`` and ``bench.png`` to tests/bench/results (--quick: a temporary directory). Sections:
  1. programming the whole set (program.py)     3. connections per second (packets.py)
  2. one change with N already there (change.py) 4. peak memory of `nftnet apply` (memory.py)
Everything runs in throwaway network namespaces, removed even on failure or SIGTERM.
``--quick`` (up to 1,000 ports, fewer rounds) is a smoke check of a couple of minutes.
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import os
import shutil
import signal
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import compat
import nftnet
from tests.bench import change, docker, memory, packets, plot, program
from tests.bench.common import prepare
from tests.bench.report import Results, machine, markdown

SIZES = [1, 100, 1000, 10000, 50000]
CHANGE_EXTRA = [10, 20000]  # the publish target compares 20,000 ports with 10
RESULTS = Path(__file__).resolve().parent / "results"
QUICK = Path(tempfile.gettempdir()) / "nftnet-bench-quick"  # never over the committed results


def _args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="sizes up to 1,000, fewer rounds")
    p.add_argument("--rounds", type=int, help="rounds of section 1; section 2 runs two more "
                   "(default 3; quick 2)")
    p.add_argument("--per-call-max", type=int,
                   help="largest size replayed one iptables process per rule for real "
                   "(default 10,000; quick 1,000); larger sizes are extrapolated")
    p.add_argument("--packet-rounds", type=int, help="rounds of section 3, each one run per "
                   "size and contender plus the 1-port runs between (default 25; quick 6)")
    p.add_argument("--connects", type=int, default=500, help="connects per run, at most "
                   "(default 500)")
    p.add_argument("--run-seconds", type=float, default=2.0, help="seconds per run, at most "
                   "(default 2)")
    p.add_argument("--note", default="", help="a line for results.md, e.g. the commit measured")
    p.add_argument("--out", type=Path, help="where results.md and bench.png go (default "
                   "tests/bench/results; quick: $TMPDIR/nftnet-bench-quick)")
    args = p.parse_args(argv)
    args.sizes = [n for n in SIZES if n <= 1000] if args.quick else SIZES
    args.change_sizes = sorted(set(args.sizes) | {n for n in CHANGE_EXTRA
                                                  if n <= max(args.sizes)})
    args.rounds = args.rounds or (2 if args.quick else 3)
    args.per_call_max = args.per_call_max or (1000 if args.quick else 10000)
    args.packet_rounds = args.packet_rounds or (6 if args.quick else 25)
    args.out = args.out or (QUICK if args.quick else RESULTS)
    return args


def _log(start: float) -> Callable[[str], None]:
    def log(message: str) -> None:
        print(f"[{time.monotonic() - start:7.1f}s] {message}", file=sys.stderr, flush=True)

    return log


def _sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds the with/finally blocks that delete namespaces


def compile_bytecode() -> None:
    """Byte-compile nftnet and its dependencies, as `pip install` does: where
    PYTHONDONTWRITEBYTECODE is set and nothing is compiled yet, every timed process would
    compile its imports from source again."""
    dirs = [Path(nftnet.__file__).parent, Path(compat.__file__).parent,
            Path(sysconfig.get_paths()["purelib"])]
    for d in dirs:
        compileall.compile_dir(d, quiet=2)


def measure(args: argparse.Namespace, tmp: Path) -> Results:
    log = _log(time.monotonic())
    compile_bytecode()
    log(f"preparing configs, renders and exports for {args.change_sizes}")
    loads = {n: prepare(n, tmp) for n in args.change_sizes}
    workloads = [loads[n] for n in args.sizes]
    replays = {n: docker.call_sizes(wl.export_path.read_text()) for n, wl in loads.items()}
    log("1. programming the whole set")
    prog = program.run(workloads, args.rounds, args.per_call_max, tmp, log)
    log("2. one change")
    chg = change.run([loads[n] for n in args.change_sizes], args.rounds + 2, tmp, log)
    log("3. connections per second")
    pkt = packets.run(workloads, args.packet_rounds, args.connects, args.run_seconds, tmp, log)
    log("4. peak memory")
    mem = memory.run(workloads, tmp)
    return Results(machine(), args.note, args.rounds, workloads, args.change_sizes, prog, chg, pkt,
                   args.sizes, mem, replays)


def main(argv: list[str]) -> int:
    args = _args(argv)
    if os.geteuid() != 0:
        print("python -m tests.bench needs root (network namespaces)", file=sys.stderr)
        return 1
    plotting = importlib.util.find_spec("matplotlib") is not None
    if not plotting:  # said before the minutes of measuring, not as a traceback after them
        print("no bench.png: matplotlib is missing (pip install '.[bench]')", file=sys.stderr)
    signal.signal(signal.SIGTERM, _sigterm)
    tmp = Path(tempfile.mkdtemp(prefix="nftnet-bench-"))
    try:
        res = measure(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    text = markdown(res)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text(text)
    wrote = [args.out / "results.md"]
    if plotting:
        plot.write(res, args.out / "bench.png")
        wrote.append(args.out / "bench.png")
    print(f"wrote {' and '.join(map(str, wrote))}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
