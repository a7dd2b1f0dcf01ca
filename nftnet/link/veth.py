"""Container interfaces through pyroute2: a veth pair from a bridge into a network namespace."""

from __future__ import annotations

import fcntl
import os
import socket
import stat

from pyroute2 import IPRoute, NetNS
from pyroute2.netlink.exceptions import NetlinkError

from nftnet.errors import ConfigError, LinkError
from nftnet.link import bridges
from nftnet.link.model import VethSpec as VethSpec

IFA_F_NODAD = 0x02
NS_GET_NSTYPE = 0xB703  # ioctl of an nsfs file: its CLONE_NEW* type (linux/nsfs.h, 4.11)
CLONE_NEWNET = 0x40000000


def netns_path(netns: str | None, pid: int | None) -> str:
    """The namespace file for ``--netns NAME_OR_PATH`` or ``--pid PID``; ConfigError naming
    the option unless it is a network namespace (checked before anything changes)."""
    if pid is not None:
        path = f"/proc/{pid}/ns/net"
        problem = _netns_problem(path)
        if problem and not os.path.exists(f"/proc/{pid}"):
            raise ConfigError([f"--pid: no process {pid} (no network namespace at {path})"])
        option = f"--pid {pid}"
    elif netns is not None:
        path = netns if "/" in netns else f"/run/netns/{netns}"
        problem, option = _netns_problem(path), "--netns"
    else:
        raise ConfigError(["give --netns or --pid"])
    if problem:
        raise ConfigError([f"{option}: no network namespace at {path} ({problem})"])
    return path


def _netns_problem(path: str) -> str | None:
    """Why ``path`` is not a network namespace, or None. Only a regular file is opened (a FIFO
    would block, a device may act on being opened); the kernel then names its type."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return "not a namespace file"
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as e:
        return e.strerror
    try:
        kind = fcntl.ioctl(fd, NS_GET_NSTYPE)
    except OSError:
        return "not a namespace file"
    finally:
        os.close(fd)
    return None if kind == CLONE_NEWNET else "a namespace of another kind"


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
