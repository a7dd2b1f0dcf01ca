"""``FakeLinks``: a network namespace's links and sysctls in memory, a ``LinkBackend``
(link/backend.py) for the engine's unit tests.

Each call does what link/bridges.py, link/veth.py and link/sysctl.py make the kernel do, and
answers as they do: the same LinkState, LinkChanges and LinkError texts (the kernel's reasons
included); tests/kernel/test_link_fake_kernel.py sends the same calls to both and compares.
Like the kernel, it runs every request of a batch even after one failed, and ``ensure_bridges``
takes back what it changed when one did.

It models lo, bridges and veth pairs (one end may sit in a container namespace, by the path
of its file: ``add_namespace``), each with its MTU, up flag, addresses ("ip/prefix"), master
and hairpin, ifalias, and a container end's default routes; and the kernel's rules nftnet
meets: the MTU range; an IPv4 address twice (with the same prefix) or an IPv6 one twice (any
prefix); IPv6 disabled on an interface (its addresses gone, none taken); a primary IPv4
address taking its secondaries along (promote_secondaries off); a deleted bridge freeing its
ports, a deleted veth taking its peer, lo not deletable; a bridge's MTU following its ports
(the smallest port's, 1500 without); a veth's peer keeping the default MTU (link/veth.py gives
the MTU to the host end only); lo getting 127.0.0.1/8 and ::1/128 when it comes up. Sysctls
are a dict (``FRESH`` unless preset): an interface has its own keys, copied from
``conf/default`` when it appears and gone with it; a key that is not there reads None and
cannot be written, as br_netfilter's before it is loaded.

It does not model the addresses the kernel makes (IPv6 link-local), carrier, MACs, routes
other than the container end's default ones (a gateway is not checked), keys propagating
(ip_forward to each interface's forwarding, ``all`` to every interface), values the kernel
would refuse or normalise, or sysctls inside container namespaces; it raises
NotImplementedError for a port that is not a veth or a master that is not a bridge. The
helpers named after iproute2 commands (``ip_link_del``, ``ip_addr_add``...) and
``set_sysctl`` change things behind nftnet's back, as a person would.
"""

from __future__ import annotations

import errno
import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Interface, IPv6Interface, ip_address, ip_interface

from nftnet.errors import LinkError
from nftnet.link.model import (
    IP6_FORWARD,
    IP_FORWARD,
    MARK,
    BridgeSpec,
    LinkChanges,
    LinkState,
    VethSpec,
    iface,
    unsettled,
)

# What a fresh network namespace has of the sysctls nftnet reads and writes, and of the
# defaults each new interface takes its own from.
FRESH: dict[str, str] = {
    IP_FORWARD: "0", IP6_FORWARD: "0",
    iface(4, "default", "route_localnet"): "0", iface(4, "default", "promote_secondaries"): "0",
    iface(6, "default", "disable_ipv6"): "0",
}
MTU = range(68, 65536)  # a bridge's and a veth's: ETH_MIN_MTU to ETH_MAX_MTU
DEFAULT_MTU = 1500
LOOPBACK = ("127.0.0.1/8", "::1/128")
_TEXT = {errno.EEXIST: "File exists", errno.EINVAL: "Invalid argument",
         errno.EOPNOTSUPP: "Operation not supported", errno.EACCES: "Permission denied",
         errno.EADDRNOTAVAIL: "Cannot assign requested address"}


class _Refused(Exception):
    """The kernel's refusal of one request: its errno and, where it gives one, its reason."""

    def __init__(self, code: int, reason: str | None = None) -> None:
        super().__init__(code, reason)
        self.code, self.reason = code, reason

    def described(self) -> str:
        """As link/bridges.py words it: errno text (the kernel's reason)."""
        text = _TEXT[self.code]
        return f"{text} ({self.reason})" if self.reason else text

    def __str__(self) -> str:
        """As pyroute2's NetlinkError, which link/veth.py passes on: (errno, text)."""
        return str((self.code, _TEXT[self.code]))


class _NoFile(Exception):
    """A namespace file that is not there, in OSError's words."""


@dataclass(eq=False)
class FakeLink:
    """One link; ``netns`` None for the backend's namespace, else a namespace file's path."""

    name: str
    index: int
    kind: str | None  # "bridge", "veth"; None for lo
    mtu: int = DEFAULT_MTU
    up: bool = False
    addresses: list[str] = field(default_factory=list)  # "ip/prefix", in the order added
    master: int = 0
    hairpin: bool = False
    alias: str | None = None
    mtu_pinned: bool = False  # a bridge's MTU set after its creation: it stops following ports
    netns: str | None = None
    peer: FakeLink | None = field(default=None, repr=False)
    gateways: list[str] = field(default_factory=list)  # default routes by this link

    def state(self) -> LinkState:
        return LinkState(self.index, self.up, self.kind, frozenset(self.addresses), self.master,
                         self.hairpin, self.alias == MARK)


class FakeLinks:
    """The backend's namespace (``links``), the container namespaces (``namespaces``, by
    path) and the sysctls: ``FRESH`` with ``sysctls`` over it (a None value takes a key
    away), so a test can load br_netfilter (``dict.fromkeys(BRIDGE_NF, "1")``)."""

    def __init__(self, sysctls: Mapping[str, str | None] | None = None) -> None:
        merged = {**FRESH, **(sysctls or {})}
        self.sysctls: dict[str, str] = {k: v for k, v in merged.items() if v is not None}
        self.links: dict[str, FakeLink] = {}
        self.namespaces: dict[str, dict[str, FakeLink]] = {}
        self._indexes = itertools.count(1)
        self._new(None, "lo", None, 65536)

    # -- LinkBackend -----------------------------------------------------------------------

    def observe(self) -> dict[str, LinkState]:
        return {name: link.state() for name, link in self.links.items()}

    def lookup(self, names: Iterable[str]) -> dict[str, LinkState]:
        return {name: replace(self.links[name].state(), addresses=frozenset())
                for name in names if name in self.links}

    def ensure_bridges(self, specs: Iterable[BridgeSpec]) -> LinkChanges:
        specs = list(specs)
        links = self.observe()
        taken = [s.name for s in specs if s.name in links and links[s.name].kind != "bridge"]
        if taken:
            raise LinkError(f"{taken[0]} exists and is not a bridge; nftnet will not adopt it")
        new = [s for s in specs if s.name not in links]
        changes = LinkChanges()
        if not new and not unsettled(specs, links):
            return changes
        problems = []
        for spec in new:
            if problem := self._request(f"cannot create bridge {spec.name}",
                                        self._create_bridge, spec):
                problems.append(problem)
            else:
                changes.created.append(spec.name)
        if not problems:
            for name in changes.created:
                self.links[name].alias = MARK
            problems = self._settle(specs, self.observe(), changes)
        if problems:
            raise LinkError("; ".join(problems + self._revert(changes)))
        return changes

    def undo(self, changes: LinkChanges) -> None:
        if not (changes.created or changes.added or changes.removed):
            return
        if problems := self._revert(changes):
            raise LinkError("; ".join(problems))

    def plug_port(self, name: str, bridge: str) -> None:
        if bridge not in self.links:
            raise LinkError(f"bridge {bridge} does not exist (run nftnet apply)")
        if name not in self.links:
            raise LinkError(f"{name} does not exist")
        self._plug(self.links[name], self.links[bridge])

    def delete_links(self, names: Iterable[str]) -> list[str]:
        links = self.observe()
        existing = [name for name in dict.fromkeys(names) if name in links]
        problems = [problem for name in existing if links[name].marked and name in self.links
                    and (problem := self._request(f"cannot delete {name}", self._delete,
                                                  self.links[name]))]
        if problems:
            raise LinkError("; ".join(problems))
        return [name for name in existing if not links[name].marked]

    def attach_veth(self, spec: VethSpec) -> None:
        self.detach_veth(spec.host_ifname)  # a leftover of an attach that was killed half-way
        try:
            if spec.bridge not in self.links:
                raise LinkError(f"bridge {spec.bridge} does not exist (run nftnet apply)")
            host = self._new_veth(spec.host_ifname, f"{spec.host_ifname}p"[:15], spec.mtu)
            if spec.netns not in self.namespaces:
                raise _NoFile(f"[Errno 2] No such file or directory: {spec.netns!r}")
            assert host.peer is not None
            self._move(host.peer, spec.netns)
            self.plug_port(spec.host_ifname, spec.bridge)
            self._configure_inside(spec, host.peer)
        except (_Refused, _NoFile, LinkError) as e:
            self.detach_veth(spec.host_ifname)
            raise LinkError(f"cannot attach {spec.host_ifname}: {e}") from None

    def detach_veth(self, host_ifname: str) -> bool:
        link = self.links.get(host_ifname)
        if link is None:
            return False
        try:
            self._delete(link)
        except _Refused as e:
            raise LinkError(f"cannot delete {host_ifname}: {e}") from None
        return True

    def read_sysctl(self, key: str) -> str | None:
        return self.sysctls.get(key)

    def write_sysctl(self, key: str, value: str) -> None:
        if key not in self.sysctls:
            raise LinkError(f"cannot set sysctl {key}={value}: No such file or directory")
        self.set_sysctl(key, value)

    # -- behind nftnet's back, as a person with iproute2 ----------------------------------

    def add_namespace(self, path: str) -> None:
        """A container's network namespace, with its lo (down), at ``path``."""
        self.namespaces[path] = {}
        self._new(path, "lo", None, 65536)

    def del_namespace(self, path: str) -> None:
        """The namespace gone with its links (a veth's peer in this namespace goes too)."""
        for link in list(self.namespaces[path].values()):
            self._delete(link, force=True)
        del self.namespaces[path]

    def inside(self, path: str) -> dict[str, LinkState]:
        """``observe`` of the namespace at ``path``."""
        return {name: link.state() for name, link in self.namespaces[path].items()}

    def gateways(self, path: str) -> list[str]:
        """The gateways of the default routes in the namespace at ``path``."""
        return sorted(g for link in self.namespaces[path].values() for g in link.gateways)

    def ip_link_add(self, name: str, kind: str, peer: str | None = None, mtu: int = DEFAULT_MTU,
                    netns: str | None = None) -> None:
        """``ip link add NAME [mtu MTU] type bridge`` (down, no alias), or ``type veth peer
        name PEER`` (both ends here)."""
        if kind not in ("bridge", "veth") or (kind == "veth") != (peer is not None):
            raise NotImplementedError(f"FakeLinks does not model ip link add {kind}")
        try:
            if peer is None:
                self._check_new(netns, name, mtu)
                self._new(netns, name, kind, mtu)
            else:
                self._new_veth(name, peer, mtu, netns)
        except _Refused as e:
            raise LinkError(e.described()) from None

    def ip_link_del(self, name: str, netns: str | None = None) -> None:
        try:
            self._delete(self._ns(netns)[name])
        except _Refused as e:
            raise LinkError(e.described()) from None

    def ip_link_set(self, name: str, *, up: bool | None = None, master: str | None = None,
                    nomaster: bool = False, hairpin: bool | None = None,
                    alias: str | None = None, mtu: int | None = None,
                    netns: str | None = None) -> None:
        """``ip link set NAME up|down``, ``master BRIDGE``, ``nomaster``, ``type bridge_slave
        hairpin on|off``, ``alias TEXT`` ("" takes it away), ``mtu MTU``."""
        link = self._ns(netns)[name]
        if master is not None:
            self._enslave(link, self._ns(netns)[master])
        if nomaster:
            self._free(link)
        if mtu is not None:
            if mtu not in MTU:
                raise LinkError(_TEXT[errno.EINVAL])
            link.mtu, link.mtu_pinned = mtu, link.kind == "bridge"
            self._follow_ports(link.netns, link.master)
        if hairpin is not None:
            if not link.master:
                raise LinkError(_TEXT[errno.EOPNOTSUPP])
            link.hairpin = hairpin
        if up:
            self._set_up(link)
        elif up is not None:
            link.up = False
        if alias is not None:
            link.alias = alias or None

    def ip_addr_add(self, name: str, address: str, netns: str | None = None) -> None:
        try:
            self._add_address(self._ns(netns)[name], address)
        except _Refused as e:
            raise LinkError(e.described()) from None

    def ip_addr_del(self, name: str, address: str, netns: str | None = None) -> None:
        try:
            self._remove_address(self._ns(netns)[name], address)
        except _Refused as e:
            raise LinkError(e.described()) from None

    def set_sysctl(self, key: str, value: str | None) -> None:
        """Write ``key`` (made if absent), or take it away (None: unloading br_netfilter);
        an interface's ``disable_ipv6`` set to 1 takes its IPv6 addresses away."""
        if value is None:
            self.sysctls.pop(key, None)
            return
        self.sysctls[key] = value
        parts = key.split("/")
        if (parts[:3] == ["net", "ipv6", "conf"] and parts[4:] == ["disable_ipv6"]
                and value == "1" and parts[3] in self.links):
            link = self.links[parts[3]]
            link.addresses = [a for a in link.addresses if ip_interface(a).version != 6]

    # -- what bridges.py asks of the kernel ------------------------------------------------

    @staticmethod
    def _request(what: str, action: Callable[..., object], *args: object) -> str | None:
        """Run one request; the problem in link/bridges.py's words if the kernel refuses."""
        try:
            action(*args)
        except _Refused as e:
            return f"{what}: {e.described()}"
        return None

    def _settle(self, specs: list[BridgeSpec], links: dict[str, LinkState],
                changes: LinkChanges) -> list[str]:
        """As bridges.py's batch: stale addresses away, missing ones added, up, veths back."""
        problems = []
        for fix in unsettled(specs, links):
            name = fix.spec.name
            link = self.links[name]
            steps = [("removed", f"cannot remove address {a} from {name}", self._remove_address,
                      a) for a in fix.stale]
            steps += [("added", f"cannot add address {a} to {name}", self._add_address, str(a))
                      for a in fix.missing]
            for effect, what, action, addr in steps:
                if problem := self._request(what, action, link, addr):
                    problems.append(problem)
                else:
                    getattr(changes, effect).setdefault(name, []).append(addr)
            if not fix.seen.up:
                self._set_up(link)
            for port, _ in fix.ports:
                self._plug(self.links[port], link)
        return problems

    def _revert(self, changes: LinkChanges) -> list[str]:
        """As bridges.py's: the address changes on bridges this call did not make taken back,
        then the bridges it made deleted (one gone already is no problem)."""
        problems = []
        for bridge, addrs in changes.added.items():
            if bridge in self.links and bridge not in changes.created:
                problems += [p for a in addrs if (p := self._request(
                    f"cannot remove address {a} from {bridge}", self._remove_address,
                    self.links[bridge], a))]
        for bridge, addrs in changes.removed.items():
            if bridge in self.links and bridge not in changes.created:
                problems += [p for a in addrs if (p := self._request(
                    f"cannot add address {a} to {bridge}", self._add_address,
                    self.links[bridge], a))]
        problems += [p for name in changes.created if name in self.links and (
            p := self._request(f"cannot delete {name}", self._delete, self.links[name]))]
        return problems

    # -- the kernel ------------------------------------------------------------------------

    def _ns(self, netns: str | None) -> dict[str, FakeLink]:
        return self.links if netns is None else self.namespaces[netns]

    def _new(self, netns: str | None, name: str, kind: str | None, mtu: int) -> FakeLink:
        link = FakeLink(name, next(self._indexes), kind, mtu, netns=netns)
        self._ns(netns)[name] = link
        if netns is None:
            self._own_keys(name)
        return link

    def _own_keys(self, name: str) -> None:
        """An interface's sysctls, as ``conf/default`` has them now."""
        for v in (4, 6):
            default = iface(v, "default", "")
            self.sysctls |= {iface(v, name, k[len(default):]): value
                             for k, value in list(self.sysctls.items()) if k.startswith(default)}

    def _drop_keys(self, name: str) -> None:
        prefixes = (iface(4, name, ""), iface(6, name, ""))
        self.sysctls = {k: v for k, v in self.sysctls.items() if not k.startswith(prefixes)}

    def _check_new(self, netns: str | None, name: str, mtu: int) -> None:
        if mtu not in MTU:
            raise _Refused(errno.EINVAL, "mtu less than device minimum" if mtu < MTU.start
                           else "mtu greater than device maximum")
        if name in self._ns(netns):
            raise _Refused(errno.EEXIST)

    def _create_bridge(self, spec: BridgeSpec) -> None:
        self._check_new(None, spec.name, spec.mtu)
        self._new(None, spec.name, "bridge", spec.mtu).up = True

    def _new_veth(self, name: str, peer: str, mtu: int, netns: str | None = None) -> FakeLink:
        """A pair, down; the MTU (as link/veth.py asks) is the first end's only."""
        self._check_new(netns, name, mtu)
        self._check_new(netns, peer, DEFAULT_MTU)
        if name == peer:
            raise _Refused(errno.EEXIST)
        host = self._new(netns, name, "veth", mtu)
        host.peer = self._new(netns, peer, "veth", DEFAULT_MTU)
        host.peer.peer = host
        return host

    def _move(self, link: FakeLink, netns: str) -> None:
        """Into another namespace: down there, its own sysctls gone from here."""
        if link.name in self.namespaces[netns]:
            raise _Refused(errno.EEXIST)
        del self._ns(link.netns)[link.name]
        if link.netns is None:
            self._drop_keys(link.name)
        self._free(link)
        link.netns, link.up = netns, False
        self.namespaces[netns][link.name] = link

    def _delete(self, link: FakeLink, force: bool = False) -> None:
        """Gone with its peer; a bridge's ports left without a master; lo stays."""
        if link.kind is None and not force:
            raise _Refused(errno.EOPNOTSUPP)
        for one in (link, link.peer):
            if one is None or self._ns(one.netns).get(one.name) is not one:
                continue
            self._free(one)
            del self._ns(one.netns)[one.name]
            if one.netns is None:
                self._drop_keys(one.name)
            for port in self._ns(one.netns).values():
                if one.kind == "bridge" and port.master == one.index:
                    port.master, port.hairpin = 0, False

    def _enslave(self, port: FakeLink, bridge: FakeLink) -> None:
        if port.kind != "veth" or bridge.kind != "bridge":
            raise NotImplementedError("FakeLinks models only veths as ports, of bridges")
        if port.master != bridge.index:
            self._free(port)
            port.master, port.hairpin = bridge.index, False  # a new port: hairpin off
            self._follow_ports(port.netns, bridge.index)

    def _free(self, port: FakeLink) -> None:
        """Off its bridge, if on one."""
        if port.master:
            master, port.master, port.hairpin = port.master, 0, False
            self._follow_ports(port.netns, master)

    def _follow_ports(self, netns: str | None, index: int) -> None:
        """A bridge's MTU, unless set after its creation, is its smallest port's, or 1500
        without ports (the kernel's br_mtu_auto_adjust: IFLA_MTU at creation does not pin
        it)."""
        links = self._ns(netns).values()
        bridge = next((b for b in links if b.index == index and b.kind == "bridge"), None)
        if bridge is not None and not bridge.mtu_pinned:
            bridge.mtu = min((p.mtu for p in links if p.master == index), default=DEFAULT_MTU)

    def _plug(self, port: FakeLink, bridge: FakeLink) -> None:
        """bridges.py's two requests: on the bridge and up, then hairpin on."""
        self._enslave(port, bridge)
        self._set_up(port)
        port.hairpin = True

    def _set_up(self, link: FakeLink) -> None:
        if link.kind is None and not link.up:
            for addr in LOOPBACK:
                if addr not in link.addresses and not (ip_interface(addr).version == 6
                                                       and self._ipv6_disabled(link)):
                    link.addresses.append(addr)
        link.up = True

    def _ipv6_disabled(self, link: FakeLink) -> bool:
        return link.netns is None and self.sysctls.get(
            iface(6, link.name, "disable_ipv6")) == "1"

    def _add_address(self, link: FakeLink, address: str) -> None:
        addr = ip_interface(address)
        if addr.version == 6 and self._ipv6_disabled(link):
            raise _Refused(errno.EACCES, "ipv6: IPv6 is disabled on this device")
        if any(_same(addr, ip_interface(a)) for a in link.addresses):
            raise _Refused(errno.EEXIST, "ipv4: Address already assigned" if addr.version == 4
                           else "ipv6: address already assigned")
        link.addresses.append(str(addr))

    def _remove_address(self, link: FakeLink, address: str) -> None:
        """An IPv4 primary takes its secondaries (the later ones of its subnet) along unless
        the interface promotes them."""
        addr = ip_interface(address)
        if str(addr) not in link.addresses:
            raise _Refused(errno.EADDRNOTAVAIL, f"ipv{addr.version}: "
                           + ("Address not found" if addr.version == 4 else "address not found"))
        gone = {str(addr)}
        if addr.version == 4 and self.sysctls.get(
                iface(4, link.name, "promote_secondaries")) != "1":
            subnet = [a for a in link.addresses if ip_interface(a).network == addr.network]
            if subnet[0] == str(addr):
                gone |= set(subnet)
        link.addresses = [a for a in link.addresses if a not in gone]

    def _configure_inside(self, spec: VethSpec, peer: FakeLink) -> None:
        """link/veth.py's: renamed, addresses, up, lo up, default routes replaced."""
        inside = self.namespaces[spec.netns]
        if spec.ifname != peer.name:
            if spec.ifname in inside:
                raise _Refused(errno.EEXIST)
            inside[spec.ifname] = inside.pop(peer.name)
            peer.name = spec.ifname
        for addr in spec.addresses:
            self._add_address(peer, str(addr))
        self._set_up(peer)
        if "lo" in inside:
            self._set_up(inside["lo"])
        for gateway in spec.gateways:
            version = ip_address(gateway).version
            for link in inside.values():
                link.gateways = [g for g in link.gateways if ip_address(g).version != version]
            peer.gateways.append(gateway)


def _same(a: IPv4Interface | IPv6Interface, b: IPv4Interface | IPv6Interface) -> bool:
    """Whether the kernel takes ``a`` for ``b`` already on the link: an IPv4 address with the
    same prefix, an IPv6 address with any."""
    return a.ip == b.ip and (a.version == 6 or a.network.prefixlen == b.network.prefixlen)
