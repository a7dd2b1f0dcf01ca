"""Container interfaces through pyroute2: a veth pair from a bridge into a network namespace."""

from __future__ import annotations

import os
import socket

from pyroute2 import IPRoute, NetNS
from pyroute2.netlink.exceptions import NetlinkError

from nftnet.errors import LinkError
from nftnet.link import bridges
from nftnet.link.model import VethSpec as VethSpec

IFA_F_NODAD = 0x02


def netns_path(netns: str | None, pid: int | None) -> str:
    """The namespace file for ``--netns NAME_OR_PATH`` or ``--pid PID``; LinkError if absent."""
    if pid is not None:
        path = f"/proc/{pid}/ns/net"
    elif netns is not None:
        path = netns if "/" in netns else f"/run/netns/{netns}"
    else:
        raise LinkError("give --netns or --pid")
    if not os.path.exists(path):
        raise LinkError(f"no network namespace at {path}")
    return path


def attach(spec: VethSpec) -> None:
    """Create the pair, plug the host end into the bridge (``bridges.plug_port``: hairpin on)
    and configure the container end; on any failure the pair is deleted again and LinkError
    raised."""
    peer = f"{spec.host_ifname}p"[:15]
    detach(spec.host_ifname)  # a leftover of an attach that was killed half-way
    try:
        with IPRoute() as ipr:
            bridge = ipr.link_lookup(ifname=spec.bridge)
            if not bridge:
                raise LinkError(f"bridge {spec.bridge} does not exist (run nftnet apply)")
            ipr.link("add", ifname=spec.host_ifname, kind="veth", peer={"ifname": peer},
                     mtu=spec.mtu)
            fd = os.open(spec.netns, os.O_RDONLY)
            try:
                ipr.link("set", index=ipr.link_lookup(ifname=peer)[0], net_ns_fd=fd)
            finally:
                os.close(fd)
        bridges.plug_port(spec.host_ifname, spec.bridge)
        _configure_inside(spec, peer)
    except (NetlinkError, OSError, LinkError) as e:
        detach(spec.host_ifname)
        raise LinkError(f"cannot attach {spec.host_ifname}: {e}") from None


def _configure_inside(spec: VethSpec, peer: str) -> None:
    with NetNS(spec.netns) as ns:
        idx = ns.link_lookup(ifname=peer)[0]
        ns.link("set", index=idx, ifname=spec.ifname)
        for addr in spec.addresses:
            family = socket.AF_INET if addr.version == 4 else socket.AF_INET6
            ns.addr("add", index=idx, address=str(addr.ip), prefixlen=addr.network.prefixlen,
                    family=family, flags=IFA_F_NODAD if addr.version == 6 else 0)
        ns.link("set", index=idx, state="up")
        lo = ns.link_lookup(ifname="lo")
        if lo:
            ns.link("set", index=lo[0], state="up")
        for gateway in spec.gateways:
            family = socket.AF_INET6 if ":" in gateway else socket.AF_INET
            ns.route("replace", dst="default", gateway=gateway, oif=idx, family=family)


def detach(host_ifname: str) -> bool:
    """Delete the pair by its host end; True if it existed."""
    try:
        with IPRoute() as ipr:
            found = ipr.link_lookup(ifname=host_ifname)
            if found:
                ipr.link("del", index=found[0])
            return bool(found)
    except NetlinkError as e:
        raise LinkError(f"cannot delete {host_ifname}: {e}") from None
