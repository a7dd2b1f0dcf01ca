"""What a driver holds, made true in one go: ``Engine.sync``.

A driver that follows a runtime (``nftnet daemon --docker``) knows the runtime's whole truth
at moments: when it starts, after it reconnects, when a network comes or goes. ``sync`` makes
everything nftnet holds for that driver (its ``owner``) exactly that: networks on the bridges
the runtime made (adopted: nftnet neither creates nor deletes a bridge that exists) and
endpoints on the runtime's veths, with their ports; whatever the owner held and no longer
has goes. It is one full change (Applier.converge): journaled before it starts, links, then
one transaction, so that a sync killed at any instant is completed by the next command, and
a sync the kernel refuses leaves everything as it was.

What cannot be held is refused entry by entry, not wholesale: a runtime does not ask
nftnet's leave, so the rest of its truth must still be enforced. An entry is refused, with
its reason, when its name is the config file's or another holder's, when nftnet's schema
refuses it, or when its subnet, bridge, address or port clashes with what others hold (the
clash is always the owner's entry's: others were there first and are the file's or people's).
An endpoint on a refused network is refused too.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from nftnet import records
from nftnet.config.checks import check_config
from nftnet.config.document import format_path
from nftnet.config.model import Config, Endpoint, Network
from nftnet.errors import ConfigError
from nftnet.results import Refusal, SyncResult
from nftnet.state import State, empty_runtime

if TYPE_CHECKING:
    from nftnet.link.model import LinkState
    from nftnet.runtime import Runtime

Entry = dict[str, Any]
Lookup = Callable[[Iterable[str]], "dict[str, LinkState]"]  # LinkBackend.lookup
ENDPOINT_FIELDS = frozenset({"network", "ipv4", "ipv6", "publish", "host_ifname"})


def sync(runtime: Runtime, owner: str, networks: Mapping[str, Entry],
         endpoints: Mapping[str, Entry]) -> SyncResult:
    """Make what nftnet holds for ``owner`` exactly ``networks`` (name -> config entry) and
    ``endpoints`` (name -> ``network``, ``ipv4``, ``ipv6``, ``publish`` as -p texts and
    optionally ``host_ifname``, the host end of the runtime's veth), in one transaction.
    Nothing is sent when nftnet holds exactly that already. NftnetError when the kernel or
    the links refuse the change (nothing changed then)."""
    from nftnet.apply import desired, effective_config

    nets = {n: {**e, "owner": owner} for n, e in networks.items()}
    eps = {n: _endpoint_record(e, owner) for n, e in endpoints.items()}
    with runtime.state_dir.locked():
        runtime.recover()
        prev = runtime.state_dir.load()
        before = _owned(prev.runtime if prev is not None else empty_runtime(), owner)
        if before == (nets, eps) and (prev is not None or not nets):
            return SyncResult(False)
        state = copy.deepcopy(prev) if prev is not None else State(config={"version": 1})
        others = _others(state.runtime, owner, set(eps) | set(before[1]))
        base = effective_config(state.config, others)
        config, held_nets, held_eps, refused = _admit(base, state.config, others, nets, eps,
                                                      runtime.links.lookup)
        after = {"networks": {**others["networks"], **{n: nets[n] for n in held_nets}},
                 "endpoints": {**others["endpoints"], **{n: eps[n] for n in held_eps}},
                 "publish": others["publish"], "unpublish": others["unpublish"]}
        if (after == prev.runtime) if prev is not None else not held_nets:
            return SyncResult(False, refused=tuple(refused))
        state.runtime = after
        used = {net.bridge for net in config.networks.values()}
        drop = [b for n, e in before[0].items()
                if n not in held_nets and (b := records.network_bridge(n, e)) not in used]
        runtime.applier.converge(desired(config, prev), prev, state, drop)
        return _result(before, _owned(after, owner), refused)


def _endpoint_record(entry: Entry, owner: str) -> Entry:
    """The stored form of a driver's endpoint (``records.RuntimeEndpoint``); fields it does
    not know stay in, for ``_admit`` to refuse the endpoint with their names."""
    record = records.RuntimeEndpoint(
        str(entry.get("network")), entry.get("ipv4"), entry.get("ipv6"),
        list(entry.get("publish") or ()), entry.get("host_ifname"), owns_link=False,
        owner=owner).to_json()
    return {**{k: v for k, v in entry.items() if k not in ENDPOINT_FIELDS}, **record}


def _owned(runtime: Mapping[str, Any], owner: str) -> tuple[dict[str, Entry], dict[str, Entry]]:
    """The owner's networks and endpoints among runtime entries."""
    return tuple({n: e for n, e in runtime[kind].items() if records.owner(e) == owner}
                 for kind in ("networks", "endpoints"))  # type: ignore[return-value]


def _others(runtime: Mapping[str, Any], owner: str, names: set[str]) -> dict[str, Any]:
    """The runtime entries of everyone but ``owner`` (ports published at runtime on the
    owner's endpoints go: its endpoints carry their ports)."""
    out: dict[str, Any] = {kind: {n: e for n, e in runtime[kind].items()
                                  if records.owner(e) != owner}
                           for kind in ("networks", "endpoints")}
    for kind in ("publish", "unpublish"):
        out[kind] = {n: v for n, v in runtime[kind].items() if n not in names}
    return out


def _admit(base: Config, declared: Entry, others: Mapping[str, Any], nets: Mapping[str, Entry],
           eps: Mapping[str, Entry], lookup: Lookup
           ) -> tuple[Config, set[str], set[str], list[Refusal]]:
    """The effective config with the owner's entries that can be held added to ``base``
    (everyone else's), their names, and the refusals of the others. ``lookup`` finds the
    links endpoints name as their ``host_ifname``."""
    from nftnet.config.load import load_entry

    refused: list[Refusal] = []
    networks: dict[str, Network] = {}
    for name, entry in nets.items():
        why = _taken("networks", name, declared, others)
        net = None if why else _load(load_entry, "networks", name, entry)
        if isinstance(net, Network):
            networks[name] = net
        else:
            refused.append(Refusal("network", name, why or str(net)))
    endpoints: dict[str, Endpoint] = {}
    for name, entry in eps.items():
        why = _taken("endpoints", name, declared, others) or _endpoint_problem(
            name, entry, {**base.networks, **networks}, nets, lookup)
        ep = None if why else _load(load_entry, "endpoints", name, entry)
        if isinstance(ep, Endpoint):
            endpoints[name] = ep
        else:
            refused.append(Refusal("endpoint", name, why or str(ep)))
    while True:  # each round refuses at least one entry, or ends
        config = replace(base, networks={**base.networks, **networks},
                         endpoints={**base.endpoints, **endpoints})
        problems = check_config(config, new=set(networks))
        if not problems:
            return config, set(networks), set(endpoints), refused
        for path, message in problems:
            kind, name = path[0], str(path[1])
            why = f"{format_path(path)}: {message}"
            if kind == "networks" and name in nets:
                if networks.pop(name, None) is not None:
                    refused.append(Refusal("network", name, why))
                    for other in [e for e, ep in endpoints.items() if ep.network == name]:
                        del endpoints[other]
                        refused.append(Refusal("endpoint", other, f"network {name} is refused"))
            elif kind == "endpoints" and name in eps:
                if endpoints.pop(name, None) is not None:
                    refused.append(Refusal("endpoint", name, why))
            else:  # others' entries are consistent among themselves (``base`` parsed)
                raise ConfigError([f"{format_path(path)}: {message}"])


def _load(load_entry: Any, kind: str, name: str, entry: Entry) -> Network | Endpoint | str:
    """The entry validated on its own (the schema's refusal as the reason, if any)."""
    try:
        return load_entry(kind, name, records.config_entry(entry))  # type: ignore[no-any-return]
    except ConfigError as e:
        return "; ".join(e.problems)


def _taken(kind: str, name: str, declared: Entry, others: Mapping[str, Any]) -> str | None:
    """Why the owner cannot hold ``name``: the config file or someone else holds it."""
    if name in (declared.get(kind) or {}):
        return f"{kind[:-1]} {name} exists already (declared in the config file)"
    if name in others[kind]:
        return f"{kind[:-1]} {name} exists already ({records.holder(others[kind][name])})"
    return None


def _endpoint_problem(name: str, entry: Entry, networks: Mapping[str, Network],
                      asked: Mapping[str, Entry], lookup: Lookup) -> str | None:
    """What is wrong with an endpoint entry beyond the schema: a network nftnet does not
    hold (or refused), a host interface that is not on the network's bridge."""
    from nftnet.runtime import _on_bridge

    network = entry["network"]
    if network not in networks:
        return f"endpoint {name}: network {network} is " + (
            "refused" if network in asked else "not held by nftnet")
    if entry.get("ipv4") is None and entry.get("ipv6") is None:
        return f"endpoint {name}: an endpoint needs ipv4, ipv6 or both"
    if entry.get("host_ifname"):
        bridge = networks[network].bridge
        try:
            _on_bridge(lookup((entry["host_ifname"], bridge)), entry["host_ifname"], bridge,
                       lambda path: f"endpoint {name}: host interface")
        except ConfigError as e:
            return str(e)
    return None


def _result(before: tuple[dict[str, Entry], dict[str, Entry]],
            after: tuple[dict[str, Entry], dict[str, Entry]],
            refused: list[Refusal]) -> SyncResult:
    def diff(old: dict[str, Entry], new: dict[str, Entry]
             ) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
        return (tuple(sorted(set(new) - set(old))), tuple(sorted(set(old) - set(new))),
                tuple(sorted(n for n in set(old) & set(new) if old[n] != new[n])))

    (na, nr, nc), (ea, er, ec) = diff(before[0], after[0]), diff(before[1], after[1])
    return SyncResult(True, na, nr, ea, er, ec, nc, tuple(refused))
