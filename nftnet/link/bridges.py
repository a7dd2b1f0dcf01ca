"""The only module that talks to pyroute2 about links: bridges and their addresses.

Links and addresses are dumped once per call and indexed, never looked up one name at a time:
with a thousand bridges, per-name lookups (each a full dump filtered in Python) are quadratic.
"""

from __future__ import annotations

import socket
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv6Interface

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from nftnet.errors import LinkError

IFA_F_NODAD = 0x02
IFF_UP = 0x1


@dataclass(frozen=True)
class BridgeSpec:
    """A bridge as nftnet wants it: name, gateway addresses with prefix, MTU."""

    name: str
    addresses: tuple[IPv4Interface | IPv6Interface, ...]
    mtu: int


@dataclass(frozen=True)
class LinkState:
    index: int
    up: bool
    kind: str | None
    addresses: frozenset[str]


@contextmanager
def _ipr() -> Iterator[IPRoute]:
    try:
        with IPRoute() as ipr:
            yield ipr
    except NetlinkError as e:
        raise LinkError(f"netlink: {e}") from None


def _snapshot(ipr: IPRoute) -> dict[str, LinkState]:
    addrs: dict[int, set[str]] = defaultdict(set)
    for a in ipr.get_addr():
        addrs[a["index"]].add(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}")
    out = {}
    for link in ipr.get_links():
        info = link.get_attr("IFLA_LINKINFO")
        kind = info.get_attr("IFLA_INFO_KIND") if info else None
        out[link.get_attr("IFLA_IFNAME")] = LinkState(
            link["index"], bool(link["flags"] & IFF_UP), kind, frozenset(addrs[link["index"]])
        )
    return out


def observe() -> dict[str, LinkState]:
    """Every link in this namespace, by name."""
    with _ipr() as ipr:
        return _snapshot(ipr)


def ensure_bridges(specs: Iterable[BridgeSpec]) -> list[str]:
    """Create missing bridges, add missing addresses, bring all up; return the names created.

    An existing bridge is adopted: nothing is removed from it. Raises LinkError (after
    deleting what this call created) when a name is taken by a link that is not a bridge.
    """
    specs = list(specs)
    created: list[str] = []
    with _ipr() as ipr:
        try:
            links = _snapshot(ipr)
            for spec in specs:
                seen = links.get(spec.name)
                if seen is None:
                    ipr.link("add", ifname=spec.name, kind="bridge", mtu=spec.mtu)
                    created.append(spec.name)
                elif seen.kind != "bridge":
                    raise LinkError(f"{spec.name} exists and is not a bridge; nftnet will not "
                                    "adopt it")
            links = _snapshot(ipr) if created else links
            for spec in specs:
                _address_and_up(ipr, spec, links[spec.name])
        except (LinkError, NetlinkError) as e:
            for name in created:
                ipr.link("del", ifname=name)
            raise LinkError(str(e)) from None
    return created


def _address_and_up(ipr: IPRoute, spec: BridgeSpec, seen: LinkState) -> None:
    for addr in spec.addresses:
        if str(addr) not in seen.addresses:
            family = socket.AF_INET if addr.version == 4 else socket.AF_INET6
            ipr.addr("add", index=seen.index, address=str(addr.ip),
                     prefixlen=addr.network.prefixlen, family=family,
                     flags=IFA_F_NODAD if addr.version == 6 else 0)
    if not seen.up:
        ipr.link("set", index=seen.index, state="up")


def delete_links(names: Iterable[str]) -> None:
    """Delete the named links that exist."""
    with _ipr() as ipr:
        links = _snapshot(ipr)
        for name in names:
            if name in links:
                ipr.link("del", index=links[name].index)
