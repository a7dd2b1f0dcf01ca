"""What the links and sysctls should be for a config (pure): the bridges with their gateway
addresses and ports, the per-bridge and br_netfilter settings, IP forwarding."""

from __future__ import annotations

from collections.abc import Collection
from ipaddress import ip_interface
from typing import TYPE_CHECKING, Any

from nftnet.config.model import Config
from nftnet.link import model as link_model

if TYPE_CHECKING:
    from nftnet.state import State

FORWARD_KEYS = {4: link_model.IP_FORWARD, 6: link_model.IP6_FORWARD}


def needs_forwarding(config: Config, family: int) -> bool:
    return any(
        (n.subnet4 if family == 4 else n.subnet6) is not None and not n.internal
        for n in config.networks.values()
    )


def bridge_specs(config: Config, runtime: dict[str, Any], state: State | None,
                 claim: Collection[str] = ()) -> list[link_model.BridgeSpec]:
    """The bridges ``config`` needs, each with the veths of the ``runtime`` endpoints on it,
    and, as ``state`` (nftnet's last change) records, whether nftnet created it (it then holds
    only the gateways) or which addresses nftnet added to it (the only ones it takes away);
    ``claim`` names those the change under way records as its own creations."""
    ports: dict[str, list[str]] = {}
    for ep in runtime["endpoints"].values():
        if ep.get("host_ifname"):
            ports.setdefault(config.networks[ep["network"]].bridge, []).append(ep["host_ifname"])
    created = set(state.created_bridges if state else ()) | set(claim)
    added = state.bridge_addresses if state else {}
    out = []
    for net in config.networks.values():
        addrs = tuple(
            ip_interface(f"{gw}/{subnet.prefixlen}")
            for gw, subnet in ((net.gateway4, net.subnet4), (net.gateway6, net.subnet6))
            if gw is not None and subnet is not None
        )
        out.append(link_model.BridgeSpec(net.bridge, addrs, net.mtu,
                                      tuple(sorted(ports.get(net.bridge, ()))),
                                      net.bridge in created,
                                      frozenset(added.get(net.bridge, ())),
                                      net.bridge in claim))
    return out


def added_addresses(prev: State | None, changes: link_model.LinkChanges) -> dict[str, list[str]]:
    """``State.bridge_addresses`` after ``changes``: what nftnet added, less what it took away."""
    out = {b: set(addrs) for b, addrs in (prev.bridge_addresses if prev else {}).items()}
    for bridge, addrs in changes.added.items():
        out.setdefault(bridge, set()).update(addrs)
    for bridge, addrs in changes.removed.items():
        out.get(bridge, set()).difference_update(addrs)
    return {b: sorted(addrs) for b, addrs in sorted(out.items()) if addrs}


def interface_sysctls(config: Config) -> dict[str, str]:
    """Per-bridge settings, and br_netfilter's for icc=false (as Docker does): key -> value."""
    out = {}
    for net in config.networks.values():
        if net.subnet6 is not None:
            out[link_model.iface(6, net.bridge, "disable_ipv6")] = "0"
        if net.subnet4 is not None and not net.internal:
            # The host reaches ports published on 127.0.0.1 through a DNAT to the bridge.
            out[link_model.iface(4, net.bridge, "route_localnet")] = "1"
    if any(not n.icc for n in config.networks.values()):
        out |= dict.fromkeys(link_model.BRIDGE_NF, "1")
    return out
