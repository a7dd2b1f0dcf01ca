"""Set and map elements: everything the config says, as data the static rules look up."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from nftnet import names as N
from nftnet.compile import expr as E
from nftnet.config.model import Config, Network, PortMapping

Elements = dict[str, list[Any]]
# The maps ``port_elements`` fills: all that runtime changes of endpoints and ports send.
PORT_MAPS = frozenset(m.format(v=v) for m in (N.PUB_ADDR, N.PUB_PORT, N.PUBANY_ADDR,
                                              N.PUBANY_PORT) for v in (4, 6))


def owned_mappings(config: Config) -> list[tuple[str, PortMapping]]:
    """Every published port with the endpoint that holds it, in a stable order."""
    return [(name, m) for name, _, m in config.published]


def mappings(config: Config) -> list[PortMapping]:
    """Every published port of every endpoint, in a stable order."""
    return [m for _, _, m in config.published]


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
    # Tens of thousands of mappings: the map names and address texts are looked up once.
    text: dict[object, str] = {}
    targets: dict[tuple[bool, int], tuple[list[Any], list[Any]]] = {}
    for m in maps:
        wildcard = m.host_ip is None
        lists = targets.get((wildcard, m.family))
        if lists is None:
            addr_map, port_map = (N.PUBANY_ADDR, N.PUBANY_PORT) if wildcard else (
                N.PUB_ADDR, N.PUB_PORT)
            lists = targets[wildcard, m.family] = (out[addr_map.format(v=m.family)],
                                                   out[port_map.format(v=m.family)])
        key = E.concat_value(m.proto, m.host_port) if wildcard else \
            E.concat_value(str(m.host_ip), m.proto, m.host_port)
        ctr = text.get(m.container_ip) or text.setdefault(m.container_ip, str(m.container_ip))
        lists[0].append([key, ctr])
        lists[1].append([key, m.container_port])


def elements(config: Config) -> Elements:
    """Elements per set or map name; sets with nothing in them are absent."""
    out: Elements = defaultdict(list)
    network_elements(config.networks.values(), out)
    port_elements(mappings(config), out)
    return dict(out)
