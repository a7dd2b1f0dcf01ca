"""Set and map elements: everything the config says, as data the static rules look up."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from nftnet import names as N
from nftnet.compile import expr as E
from nftnet.config.model import Config, Network, PortMapping
from nftnet.config.publish import expand

Elements = dict[str, list[Any]]


def owned_mappings(config: Config) -> list[tuple[str, PortMapping]]:
    """Every published port with the endpoint that holds it, in a stable order."""
    out = [
        (ep.name, m)
        for ep in config.endpoints.values()
        for spec in ep.publish
        for m in expand(spec, ep, config.networks[ep.network])
    ]
    return sorted(out, key=lambda owned: sort_key(owned[1]))


def mappings(config: Config) -> list[PortMapping]:
    """Every published port of every endpoint, in a stable order."""
    return [m for _, m in owned_mappings(config)]


def sort_key(m: PortMapping) -> tuple[int, str, str, int]:
    return m.family, str(m.host_ip), m.proto, m.host_port


def network_elements(networks: Iterable[Network], out: Elements) -> None:
    """Add the elements that stand for ``networks``."""
    for net in networks:
        out[N.BRIDGES].append(net.bridge)
        if net.internal:
            out[N.INTERNAL].append(net.bridge)
        verdict = E.ACCEPT if net.icc else E.jump(N.ICC_OFF)
        out[N.SAME_BRIDGE].append([E.concat_value(net.bridge, net.bridge), verdict])
        for v, subnet in ((4, net.subnet4), (6, net.subnet6)):
            if subnet is None:
                continue
            out[N.SUBNETS.format(v=v)].append(E.prefix(subnet))
            if net.masquerade and not net.internal:
                out[N.MASQUERADE.format(v=v)].append(E.prefix(subnet))


def port_elements(maps: Iterable[PortMapping], out: Elements) -> None:
    """Add the map elements that publish ``maps``."""
    for m in maps:
        if m.host_ip is None:
            key = E.concat_value(m.proto, m.host_port)
            addr_map, port_map = N.PUBANY_ADDR, N.PUBANY_PORT
        else:
            key = E.concat_value(str(m.host_ip), m.proto, m.host_port)
            addr_map, port_map = N.PUB_ADDR, N.PUB_PORT
        out[addr_map.format(v=m.family)].append([key, str(m.container_ip)])
        out[port_map.format(v=m.family)].append([key, m.container_port])


def elements(config: Config) -> Elements:
    """Elements per set or map name; sets with nothing in them are absent."""
    out: Elements = defaultdict(list)
    network_elements(config.networks.values(), out)
    port_elements(mappings(config), out)
    return dict(out)
