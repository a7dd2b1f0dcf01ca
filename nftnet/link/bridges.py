"""The only module that talks to pyroute2: bridges, their addresses, and container veths."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv6Interface

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from nftnet.errors import LinkError

IFA_F_NODAD = 0x02


@dataclass(frozen=True)
class BridgeSpec:
    """A bridge as nftnet wants it: name, gateway addresses with prefix, MTU."""

    name: str
    addresses: tuple[IPv4Interface | IPv6Interface, ...]
    mtu: int


@dataclass(frozen=True)
class BridgeState:
    exists: bool
    up: bool = False
    kind: str | None = None
    addresses: frozenset[str] = frozenset()


@contextmanager
def _ipr() -> Iterator[IPRoute]:
    try:
        with IPRoute() as ipr:
            yield ipr
    except NetlinkError as e:
        raise LinkError(f"netlink: {e}") from None


def _index(ipr: IPRoute, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def observe(name: str) -> BridgeState:
    """What the kernel has under ``name`` now."""
    with _ipr() as ipr:
        idx = _index(ipr, name)
        if idx is None:
            return BridgeState(False)
        link = ipr.get_links(idx)[0]
        info = link.get_attr("IFLA_LINKINFO")
        kind = info.get_attr("IFLA_INFO_KIND") if info else None
        addrs = frozenset(
            f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}" for a in ipr.get_addr(index=idx)
        )
        return BridgeState(True, bool(link["flags"] & 1), kind, addrs)


def ensure_bridge(spec: BridgeSpec) -> bool:
    """Create (if missing), address and bring up a bridge; True when nftnet created it.

    An existing bridge is adopted: missing addresses are added, nothing is removed.
    Raises LinkError when the name is taken by an interface that is not a bridge.
    """
    created = False
    with _ipr() as ipr:
        idx = _index(ipr, spec.name)
        if idx is None:
            ipr.link("add", ifname=spec.name, kind="bridge", mtu=spec.mtu)
            idx = _index(ipr, spec.name)
            created = True
        else:
            info = ipr.get_links(idx)[0].get_attr("IFLA_LINKINFO")
            if not info or info.get_attr("IFLA_INFO_KIND") != "bridge":
                raise LinkError(f"{spec.name} exists and is not a bridge; nftnet will not adopt it")
        have = {f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}" for a in ipr.get_addr(index=idx)}
        for addr in spec.addresses:
            if str(addr) not in have:
                family = socket.AF_INET if addr.version == 4 else socket.AF_INET6
                ipr.addr("add", index=idx, address=str(addr.ip), prefixlen=addr.network.prefixlen,
                         family=family, flags=IFA_F_NODAD if addr.version == 6 else 0)
        ipr.link("set", index=idx, state="up")
    return created


def delete_link(name: str) -> bool:
    """Delete an interface if present; True when something was deleted."""
    with _ipr() as ipr:
        idx = _index(ipr, name)
        if idx is None:
            return False
        ipr.link("del", index=idx)
        return True

