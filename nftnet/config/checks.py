"""Checks that span several fields or sections: overlaps, membership, uniqueness.

Each returns (path, message) pairs so that the loader can point at the offending key.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from ipaddress import IPv4Network, IPv6Network

from nftnet.config.model import Config, Endpoint, IPAddress, Network
from nftnet.config.publish import expand
from nftnet.desired.ports import PortIndex, clash_message, holder_name

Problem = tuple[tuple[str | int, ...], str]


def _networks(config: Config, new: Collection[str]) -> Iterator[Problem]:
    seen_bridges: dict[str, str] = {}
    # ``new`` last, so that a bridge it shares is reported on it.
    for name in sorted(config.networks, key=lambda n: n in new):
        net = config.networks[name]
        if net.bridge in seen_bridges:
            yield ("networks", name, "bridge"), (
                f"bridge {net.bridge} is already used by network {seen_bridges[net.bridge]}"
            )
        seen_bridges[net.bridge] = name
        for subnet, gateway, key in (
            (net.subnet4, net.gateway4, "gateway"),
            (net.subnet6, net.gateway6, "gateway6"),
        ):
            if subnet is not None and gateway is not None and (msg := host_problem(gateway,
                                                                                    subnet)):
                yield ("networks", name, key), f"gateway {gateway} {msg}"
    yield from _overlaps(config, new)


def _overlaps(config: Config, new: Collection[str]) -> Iterator[Problem]:
    """CIDRs nest or are disjoint, so sorted by start each can only overlap the widest
    earlier one still open: O(n log n) for thousands of networks. A clash is reported on the
    later of the two, or on ``new`` when it is one of them."""
    spans = sorted(
        (s.version, int(s.network_address), -int(s.broadcast_address), name, s)
        for name, net in config.networks.items()
        for s in (net.subnet4, net.subnet6)
        if s is not None
    )
    open_: tuple[int, int, str, IPv4Network | IPv6Network] | None = None
    for version, start, neg_end, name, subnet in spans:
        if open_ and open_[0] == version and start <= open_[1]:
            (here, mine), (there, theirs) = sorted(
                ((name, subnet), (open_[2], open_[3])), key=lambda side: side[0] not in new)
            yield ("networks", here, "subnets"), f"{mine} overlaps {theirs} of network {there}"
            continue
        open_ = (version, -neg_end, name, subnet)


def host_problem(addr: IPAddress, subnet: IPv4Network | IPv6Network) -> str | None:
    """Why ``addr`` cannot be a host address in ``subnet``, or None."""
    if addr not in subnet:
        return f"is outside the subnet {subnet}"
    if addr == subnet.network_address:
        return f"is the network address of {subnet}"
    if subnet.version == 4 and addr == subnet.broadcast_address:
        return f"is the broadcast address of {subnet}"
    return None


def _endpoint_addresses(name: str, ep: Endpoint, net: Network) -> Iterator[Problem]:
    if ep.ipv4 is None and ep.ipv6 is None:
        yield ("endpoints", name), "an endpoint needs ipv4, ipv6 or both"
    for addr, subnet, gateway, key in (
        (ep.ipv4, net.subnet4, net.gateway4, "ipv4"),
        (ep.ipv6, net.subnet6, net.gateway6, "ipv6"),
    ):
        if addr is None:
            continue
        if subnet is None:
            yield ("endpoints", name, key), f"network {net.name} has no {key} subnet"
        elif msg := host_problem(addr, subnet):
            yield ("endpoints", name, key), f"{addr} {msg} of network {net.name}"
        elif addr == gateway:
            yield ("endpoints", name, key), f"{addr} is the gateway of network {net.name}"


def _endpoints(config: Config) -> Iterator[Problem]:
    owners: dict[IPAddress, str] = {}
    bound = PortIndex()
    for name, ep in config.endpoints.items():
        net = config.networks.get(ep.network)
        if net is None:
            known = ", ".join(sorted(config.networks)) or "none"
            yield ("endpoints", name, "network"), f"no network {ep.network!r} (known: {known})"
            continue
        yield from _endpoint_addresses(name, ep, net)
        for addr, key in ((ep.ipv4, "ipv4"), (ep.ipv6, "ipv6")):
            if addr is not None:
                if addr in owners:
                    yield ("endpoints", name, key), f"{addr} is already used by {owners[addr]}"
                owners.setdefault(addr, f"endpoint {name}")
        if ep.publish and net.internal:
            yield ("endpoints", name, "publish"), (
                f"network {net.name} is internal: nothing on it can be published"
            )
            continue
        for i in range(len(ep.publish)):
            yield from _publish(config, name, i, ep, net, bound)


def _publish(
    config: Config,
    name: str,
    index: int,
    ep: Endpoint,
    net: Network,
    bound: PortIndex,
) -> Iterator[Problem]:
    path = ("endpoints", name, "publish", index)
    spec = ep.publish[index]
    try:
        mappings = expand(spec, ep, net.host_binding_ipv4)
    except ValueError as e:
        yield path, str(e)
        return
    for m in mappings:
        clash = bound.holder(m)
        if clash is not None:
            yield path, clash_message(m, clash)
            return
        bound.claim(m, holder_name(name, spec))


def check_config(config: Config, new: str | Collection[str] = ()) -> list[Problem]:
    """Every cross-field problem in ``config``; empty when it is consistent. A clash between
    two networks is reported on ``new`` where it is one of them: the network (or networks,
    a driver's sync) a runtime change adds to what is there, which holds its names and
    subnets already."""
    fresh = {new} if isinstance(new, str) else set(new)
    return [*_networks(config, fresh), *_endpoints(config)]
