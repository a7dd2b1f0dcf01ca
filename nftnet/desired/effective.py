"""The effective config: what `apply -f` declared, plus what runtime commands changed.

Rules, documented in the README ("Runtime changes and apply"):
- runtime networks, runtime endpoints and ports published at runtime survive `apply -f`;
- `apply -f` makes everything its file declares true again, so a declared port unpublished
  at runtime comes back;
- a file that declares a name, a subnet or a bridge already taken at runtime is refused
  (exit 2), naming who holds it (people, or a driver such as ``docker``).
"""

from __future__ import annotations

import bisect
import copy
import json
from collections.abc import Iterable
from dataclasses import replace
from ipaddress import IPv4Network, IPv6Network
from typing import Any

from nftnet import records
from nftnet.config.load import parse_config
from nftnet.config.model import Config, Origin
from nftnet.errors import ConfigError
from nftnet.records import config_entry

Problem = tuple[tuple[str | int, ...], str]
Subnet = IPv4Network | IPv6Network


def merge(declared: dict[str, Any], runtime: dict[str, Any]) -> dict[str, Any]:
    """The effective config (file format) of a declared config and the runtime changes."""
    out = copy.deepcopy(declared)
    networks = out.setdefault("networks", {}) or {}
    endpoints = out.setdefault("endpoints", {}) or {}
    out["networks"], out["endpoints"] = networks, endpoints
    clashes = [f"networks.{n}: {_name_clash(n, runtime['networks'][n])}"
               for n in runtime["networks"] if n in networks]
    clashes += [f"endpoints.{n}: endpoint {n} was attached at runtime (nftnet endpoint detach "
                "it first)" for n in runtime["endpoints"] if n in endpoints]
    if clashes:
        raise ConfigError(clashes)
    networks.update({n: config_entry(e) for n, e in runtime["networks"].items()})
    for name, ep in runtime["endpoints"].items():
        endpoints[name] = config_entry(ep)
    for name, specs in runtime["publish"].items():
        if name in endpoints:
            endpoints[name]["publish"] = [*(endpoints[name].get("publish") or []), *specs]
    for name, specs in runtime["unpublish"].items():
        if name in endpoints:
            endpoints[name]["publish"] = [p for p in endpoints[name].get("publish") or []
                                          if p not in specs]
    return out


def after_apply(runtime: dict[str, Any], declared: dict[str, Any]) -> dict[str, Any]:
    """Runtime changes as they stand once a new file is applied: unpublishing of declared
    ports is forgotten, and ports published on endpoints the file dropped go with them."""
    kept = copy.deepcopy(runtime)
    kept["unpublish"] = {}
    names = set(declared.get("endpoints") or {}) | set(kept["endpoints"])
    kept["publish"] = {k: v for k, v in kept["publish"].items() if k in names}
    return kept


def effective_config(declared: dict[str, Any], runtime: dict[str, Any],
                     origin: Origin | None = None) -> Config:
    """The config the kernel should hold: the declared file plus runtime changes. ``origin``,
    the declared file's, locates problems of its user_rules (runtime changes have none)."""
    config = parse_config(json.dumps(merge(declared, runtime)), "config + runtime changes")
    return replace(config, origin=origin)


def _name_clash(name: str, raw: dict[str, Any]) -> str:
    holder = records.owner(raw)
    if holder is None:
        return f"network {name} was created at runtime (nftnet network rm it first)"
    return (f"network {name} is held by {holder} at runtime (it follows {holder}'s own "
            "network of that name): give the file's network another name")


def runtime_clashes(declared: Config, runtime: dict[str, Any]) -> list[Problem]:
    """What a file declares that runtime changes hold already: a network or endpoint name,
    a bridge, a subnet overlapping a runtime network's; each problem on the file's field,
    naming the holder. A driver's entries follow its runtime (Docker's networks), so the
    file must give way, whoever came first."""
    problems: list[Problem] = []
    held = runtime["networks"]
    for name in declared.networks:
        if name in held:
            problems.append((("networks", name), _name_clash(name, held[name])))
    for name in declared.endpoints:
        if name in runtime["endpoints"]:
            raw = runtime["endpoints"][name]
            problems.append((("endpoints", name), f"endpoint {name} was attached at runtime "
                             "(nftnet endpoint detach it first)" if records.owner(raw) is None
                             else f"endpoint {name} is {records.holder(raw)} at runtime: give "
                             "the file's endpoint another name"))
    bridges = {records.network_bridge(n, e): n for n, e in held.items()}
    spans = _Spans((s, n) for n, e in held.items() for s in records.network_subnets(e))
    for name, net in declared.networks.items():
        if name in held:
            continue
        if (other := bridges.get(net.bridge)) is not None:
            problems.append((("networks", name, "bridge"), f"bridge {net.bridge} is already "
                             f"used by network {other}, {records.holder(held[other])}"))
        for mine in (net.subnet4, net.subnet6):
            for theirs, other in spans.overlapping(mine) if mine is not None else ():
                problems.append((("networks", name, "subnets"), f"{mine} overlaps {theirs} "
                                 f"of network {other}, {records.holder(held[other])}"))
    return problems


class _Spans:
    """Subnets that do not overlap one another (runtime networks'), sorted, so that those
    overlapping one more are found by bisection: a thousand networks on each side cost
    milliseconds, not a million comparisons."""

    def __init__(self, items: Iterable[tuple[Subnet, str]]) -> None:
        self.items = sorted(items, key=lambda item: _span(item[0]))
        self.starts = [_span(s)[:2] for s, _ in self.items]

    def overlapping(self, subnet: Subnet) -> list[tuple[Subnet, str]]:
        version, start, end = _span(subnet)
        i = bisect.bisect_right(self.starts, (version, start))
        out = []
        if i and self.items[i - 1][0].version == version and self.items[i - 1][0].overlaps(
                subnet):  # type: ignore[arg-type]
            out.append(self.items[i - 1])  # the one that starts at or before, if it holds it
        while i < len(self.items) and self.starts[i] <= (version, end):
            out.append(self.items[i])  # those that start inside it
            i += 1
        return out


def _span(subnet: Subnet) -> tuple[int, int, int]:
    return subnet.version, int(subnet.network_address), int(subnet.broadcast_address)
