"""Section 2: one change with N ports already there.

nftnet: one `nftnet port publish e0 PORT:PORT`, timed as a whole process (interpreter start
and imports included), on top of `nftnet apply` of the N-port config. Docker: the three
`iptables -A` processes it runs for one port (nat DOCKER DNAT, filter DOCKER ACCEPT, nat
POSTROUTING hairpin MASQUERADE) on top of the loaded export; and, as Docker 20.10 really runs
them (libnetwork's ProgramRule), each -A after an `iptables -C` that looks for the rule. And a
Python process that only imports click: the least any command of a click CLI costs; and one
that only imports what a publish imports (``PUBLISH_IMPORTS``): the least a publish costs
without a resident process, which bounds issue 15's publish target. Every
size has its two namespaces up at once; publishes alternate between sizes and contenders, each
a port of its own (host and container port the same, so none of Docker's rules exists yet).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.bench import docker
from tests.bench.common import Workload, netns, nftnet_argv, run_in

FIRST_PORT = 60000  # above every benchmark size's published ports
CONTENDERS = ("publish", "triple", "checked", "click", "imports")
# every module `nftnet port publish` imports (python -X importtime shows them): the CLI, the
# command's module, the runtime engine, the nftables binding
PUBLISH_IMPORTS = ("import nftnet.cli.main, nftnet.cli.runtime_cmds, nftnet.runtime, "
                   "nftnet.nft.libnft")


@dataclass
class ChangeResult:
    publish: dict[int, list[float]] = field(default_factory=dict)
    triple: dict[int, list[float]] = field(default_factory=dict)
    checked: dict[int, list[float]] = field(default_factory=dict)  # each -A after its -C
    click: dict[int, list[float]] = field(default_factory=dict)  # `python -c "import click"`
    imports: dict[int, list[float]] = field(default_factory=dict)  # PUBLISH_IMPORTS alone
    # (rules already in the call's table, seconds) of every single iptables -A call
    calls: list[tuple[int, float]] = field(default_factory=list)


@dataclass(frozen=True)
class _Loaded:
    wl: Workload
    nft_ns: str
    ipt_ns: str
    state: Path
    tables: dict[str, int]


def _load(stack: contextlib.ExitStack, wl: Workload, tmp: Path) -> _Loaded:
    nft_ns, ipt_ns = stack.enter_context(netns()), stack.enter_context(netns())
    state = tmp / f"change-{wl.ports}"
    run_in(nft_ns, nftnet_argv(state, "apply", "-f", str(wl.config_path)))
    export = wl.export_path.read_text()
    with open(wl.export_path) as f:
        run_in(ipt_ns, ["iptables-restore"], stdin=f)
    return _Loaded(wl, nft_ns, ipt_ns, state, docker.table_sizes(export))


def _triple(loaded: _Loaded, port: int, result: ChangeResult, check: bool) -> float:
    """The three -A processes (each after its -C, as Docker runs them, if ``check``)."""
    total = 0.0
    for argv in docker.triple(loaded.wl.first, port, port):
        table = argv[2]
        if check:  # exit 1: no such rule yet, so Docker goes on to append it
            total += run_in(loaded.ipt_ns, [*argv[:3], "-C", *argv[4:]], ok=(1,)).seconds
        seconds = run_in(loaded.ipt_ns, argv).seconds
        result.calls.append((loaded.tables[table], seconds))
        loaded.tables[table] += 1
        total += seconds
    return total


def _one(item: _Loaded, contender: str, port: int, result: ChangeResult) -> None:
    n = item.wl.ports
    if contender in ("triple", "checked"):
        seconds = _triple(item, port, result, check=contender == "checked")
        getattr(result, contender).setdefault(n, []).append(seconds)
        return
    if contender in ("click", "imports"):
        code = "import click" if contender == "click" else PUBLISH_IMPORTS
        seconds = run_in(item.nft_ns, [sys.executable, "-c", code]).seconds
        getattr(result, contender).setdefault(n, []).append(seconds)
        return
    argv = nftnet_argv(item.state, "port", "publish", item.wl.first.endpoint, f"{port}:{port}")
    result.publish.setdefault(n, []).append(run_in(item.nft_ns, argv).seconds)


def run(workloads: list[Workload], rounds: int, tmp: Path,
        log: Callable[[str], None]) -> ChangeResult:
    result = ChangeResult()
    with contextlib.ExitStack() as stack:
        loaded = [_load(stack, wl, tmp) for wl in workloads]
        log("  change: all sizes loaded")
        for r in range(rounds):
            port = FIRST_PORT + r
            for item in loaded:
                for i in range(len(CONTENDERS)):
                    _one(item, CONTENDERS[(r + i) % len(CONTENDERS)], port + 100 * i, result)
            log(f"  change round {r + 1}/{rounds} done")
    return result
