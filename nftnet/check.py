"""``nftnet check``: whether the kernel still holds what nftnet last applied. Read-only.

nftnet's table is compared with the same table built from the state in a scratch network
namespace, kernel listing against kernel listing (so nothing depends on how nft prints),
chain by chain, rule by rule, element by element; links and sysctls with what the config
needs. Foreign firewalls that undo nftnet are named by ``coexist``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from difflib import SequenceMatcher
from typing import Any

from nftnet import coexist, names
from nftnet.apply import desired, unchanged_since
from nftnet.compile import HostFacts
from nftnet.config.model import Config
from nftnet.desired.effective import effective_config
from nftnet.desired.links import FORWARD_KEYS, bridge_specs, interface_sysctls, needs_forwarding
from nftnet.kernel import Kernel
from nftnet.link import model as link_model
from nftnet.nft.backend import TABLE_SPEC, NftBackend, user_chain_rules
from nftnet.nft.objects import Json
from nftnet.state import State, StateDir

SHOW_AT_MOST = 10  # elements shown per set and direction; the rest are counted


@dataclass(frozen=True)
class Finding:
    """One difference. ``fixable``: `nftnet restore` puts it right; ``recreate``: a chain
    restore deletes first, as the kernel cannot change a chain's hook or priority in place."""

    subject: str
    problem: str
    fixable: bool = True
    recreate: str | None = None

    def __str__(self) -> str:
        return f"{self.subject}: {self.problem}"


@dataclass
class Report:
    drift: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    foreign: list[coexist.ForeignDrop] = field(default_factory=list)

    @property
    def in_sync(self) -> bool:
        return not self.drift

    def to_json(self) -> Json:
        return {"in_sync": self.in_sync,
                "drift": [asdict(f) | {"message": str(f)} for f in self.drift],
                "notes": self.notes, "coexistence": [f.to_json() for f in self.foreign]}


def check(state_dir: StateDir, kernel: Kernel | None = None) -> Report | None:
    """The whole account; None when nothing is applied. Holds the lock, so that a change
    under way is never reported as drift."""
    kernel = kernel or Kernel()
    with state_dir.locked():
        state = state_dir.load()
        pending = state_dir.pending() is not None
        if state is None and not pending:
            return None
        report = inspect(state, kernel) if state is not None else Report()
        if pending:
            report.drift.insert(0, Finding("state", "a change was interrupted; restore "
                                                    "completes it"))
    report.foreign = coexist.foreign_drops(kernel.nft)
    return report


def inspect(state: State, kernel: Kernel, config: Config | None = None) -> Report:
    """How the kernel and the links differ from ``state`` (restore asks this too, with
    ``config``, the state's effective config, which it converges to: parsed once, as at
    10,000 ports a parse costs half a second)."""
    config = config or effective_config(state.config, state.runtime)
    report = Report()
    table_drift(state, config, kernel, report)
    report.drift += link_drift(state, config, kernel)
    return report


def recorded_host(state: State) -> HostFacts:
    """The host facts of nftnet's last change, so that check compares with what it applied."""
    return HostFacts(state.forwarding_enabled.get("4", False),
                     state.forwarding_enabled.get("6", False))


def table_drift(state: State, config: Config, kernel: Kernel, report: Report) -> None:
    nft = kernel.nft
    live = nft.list()
    if live is None:
        report.drift.append(Finding(TABLE_SPEC, "missing"))
        return
    if config.user_rules is None:
        report.notes.append(f"chain {names.USER_CHAIN}: {len(user_chain_rules(live))} rule(s), "
                            "people's (the config has no user_rules): not compared")
    if unchanged_since(state, nft):
        return  # no commit since nftnet's own: no scratch namespace needed
    want = _Index(kernel.scratch.listing(desired(config, state, recorded_host(state),
                                                 kernel).batch))
    have = _Index(live)
    report.drift += _chain_drift(want, have)
    report.notes += [f"chain {n}: not nftnet's, left alone" for n in have.chains
                     if n not in want.chains]
    for chain in want.chains:
        if chain in have.chains and (chain != names.USER_CHAIN or config.user_rules is not None):
            report.drift += _rule_drift(chain, want.rules[chain], have.rules[chain],
                                        _want_label(chain, want, config), _live_label(chain, nft))
    report.drift += _set_drift(want, have)
    report.notes += [f"{have.sets[n][0]} {n}: not nftnet's, left alone" for n in have.sets
                     if n not in want.sets]


def without_volatile(obj: Any) -> Any:
    """A listed object without what changes by itself or on every rewrite: handles, counters."""
    if isinstance(obj, dict):
        if "counter" in obj and len(obj) == 1:
            return {"counter": None}
        return {k: without_volatile(v) for k, v in obj.items() if k != "handle"}
    if isinstance(obj, list):
        return [without_volatile(v) for v in obj]
    return obj


class _Index:
    """A table listing by kind and name, without handles and counters."""

    def __init__(self, listing: list[Json]) -> None:
        self.chains: dict[str, Json] = {}
        self.sets: dict[str, tuple[str, Json, dict[str, str]]] = {}  # kind, definition, elems
        self.rules: dict[str, list[Json]] = defaultdict(list)
        for obj in listing:
            kind, body = next(iter(obj.items()))
            body = without_volatile(body)
            if kind == "chain":
                self.chains[body["name"]] = body
            elif kind in ("set", "map"):
                elems = body.pop("elem", [])
                self.sets[body["name"]] = (kind, body, {_key(e): _show(e) for e in elems})
            elif kind == "rule":
                self.rules[body["chain"]].append(body)


def _key(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True)


def _show(value: Any) -> str:
    """An element, or part of one, roughly as nft writes it."""
    if isinstance(value, list) and len(value) == 2:
        return f"{_show(value[0])} : {_show(value[1])}"
    if not isinstance(value, dict):
        return str(value)
    if "concat" in value:
        return " . ".join(_show(v) for v in value["concat"])
    if "prefix" in value:
        return f"{value['prefix']['addr']}/{value['prefix']['len']}"
    if "range" in value:
        return "-".join(_show(v) for v in value["range"])
    if "elem" in value:
        return _show(value["elem"]["val"])
    verb, arg = next(iter(value.items()))
    return verb if arg is None else f"{verb} {arg.get('target', arg)}"


def _hook(chain: Json) -> str:
    if "hook" not in chain:
        return "a regular chain"
    return (f"type {chain['type']} hook {chain['hook']} priority {chain['prio']} "
            f"policy {chain['policy']}")


def _chain_drift(want: _Index, have: _Index) -> list[Finding]:
    out = []
    for name, chain in want.chains.items():
        seen = have.chains.get(name)
        if seen is None:
            out.append(Finding(f"chain {name}", "missing"))
        elif seen != chain:
            out.append(Finding(f"chain {name}", f"is {_hook(seen)}; nftnet's is {_hook(chain)}",
                               recreate=name))
    return out


def _want_label(chain: str, want: _Index, config: Config) -> Callable[[int], str]:
    def label(i: int) -> str:
        rule = want.rules[chain][i]
        if "comment" in rule:
            return f'"{rule["comment"]}"'
        if chain == names.USER_CHAIN and config.user_rules and i < len(config.user_rules):
            return config.user_rules[i]
        return _key(rule["expr"])
    return label


def _live_label(chain: str, nft: NftBackend) -> Callable[[int, Json], str]:
    texts: list[str] = []

    def label(j: int, rule: Json) -> str:
        if "comment" in rule:
            return f'"{rule["comment"]}"'
        if not texts:  # listed once, and only when a rule of people's needs showing
            texts.extend(text for _, text in nft.chain_rules_text(chain) or [])
        return texts[j] if j < len(texts) else _key(rule["expr"])
    return label


def _rule_drift(chain: str, want: list[Json], have: list[Json], want_label: Callable[[int], str],
                live_label: Callable[[int, Json], str]) -> list[Finding]:
    """Rules missing, added, or changed or moved (a label on both sides), in chain order."""
    matcher = SequenceMatcher(a=[_key(r) for r in want], b=[_key(r) for r in have],
                              autojunk=False)
    gone: list[str] = []
    added: list[str] = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op != "equal":
            gone += [want_label(i) for i in range(i1, i2)]
            added += [live_label(j, have[j]) for j in range(j1, j2)]
    both = set(gone) & set(added)
    subject = f"chain {chain}"
    return [*(Finding(subject, f"rule changed or moved: {x}") for x in gone if x in both),
            *(Finding(subject, f"rule missing: {x}") for x in gone if x not in both),
            *(Finding(subject, f"rule added: {x}") for x in added if x not in both)]


def _set_drift(want: _Index, have: _Index) -> list[Finding]:
    out = []
    for name, (kind, definition, elems) in want.sets.items():
        subject = f"{kind} {name}"
        seen = have.sets.get(name)
        if seen is None:
            out.append(Finding(subject, "missing"))
        elif seen[:2] != (kind, definition):
            out.append(Finding(subject, "made again with another type or flags, which restore "
                               f"cannot change in place: nft delete {TABLE_SPEC}, then nftnet "
                               "restore", fixable=False))
        else:
            out += _element_drift(subject, elems, seen[2])
    return out


def _element_drift(subject: str, want: dict[str, str], have: dict[str, str]) -> list[Finding]:
    out = []
    for what, keys, source in (("missing", want.keys() - have.keys(), want),
                               ("added", have.keys() - want.keys(), have)):
        shown = sorted(source[k] for k in keys)
        out += [Finding(subject, f"element {what}: {text}") for text in shown[:SHOW_AT_MOST]]
        if len(shown) > SHOW_AT_MOST:
            out.append(Finding(subject, f"and {len(shown) - SHOW_AT_MOST} more elements {what}"))
    return out


def link_drift(state: State, config: Config, kernel: Kernel) -> list[Finding]:
    """Bridges (up, holding exactly the gateways: ``bridges.stale_addresses``), sysctls and
    runtime endpoints' veths (on their bridge, up, hairpin on) against what the config needs."""
    links = kernel.links.observe()
    out = []
    for spec in bridge_specs(config, state.runtime, state):
        seen = links.get(spec.name)
        subject = f"bridge {spec.name}"
        if seen is None:
            out.append(Finding(subject, "missing"))
            continue
        if not seen.up:
            out.append(Finding(subject, "down"))
        out += [Finding(subject, f"address {a} missing")
                for a in link_model.missing_addresses(spec, seen)]
        out += [Finding(subject, f"address {a} is no gateway of the config")
                for a in link_model.stale_addresses(spec, seen)]
    wanted = interface_sysctls(config) | {FORWARD_KEYS[v]: "1" for v in (4, 6)
                                          if needs_forwarding(config, v)}
    for key, value in wanted.items():
        now = kernel.links.read_sysctl(key)
        if now is not None and now != value:
            out.append(Finding(f"sysctl {key}", f"is {now}; nftnet needs {value}"))
    for name, ep in sorted(state.runtime["endpoints"].items()):
        veth = ep.get("host_ifname")
        if veth is None:  # registered by its addresses alone: no link of its own to check
            continue
        problems = link_model.port_problems(veth, config.networks[ep["network"]].bridge,
                                            links)
        if problems is None:
            out.append(Finding(f"endpoint {name}", f"its veth {veth} is gone, and restore "
                               "cannot make it again (its container may be gone too): "
                               f"nftnet endpoint detach {name}, then attach it anew",
                               fixable=False))
        out += [Finding(f"endpoint {name}", f"its veth {veth} {p}") for p in problems or ()]
    return out
