"""The only module that talks to pyroute2 about links: bridges and their addresses.

Links and addresses are dumped once per call and indexed, never looked up one name at a time:
with a thousand bridges, per-name lookups (each a full dump filtered in Python) are quadratic.

Every change (create, mark, address, up, port, delete) is a pyroute2 message sent on a pyroute2
socket; the messages go in batches and their ACKs are read back by sequence number, since
pyroute2's one-request-at-a-time path costs more than the kernel's work with a thousand bridges.
pyroute2 decodes every error. Reading needs no pyroute2: a dump is read raw on a plain netlink
socket and only index, name, flags, kind, master, hairpin and address are decoded (pyroute2's
full decoding of a thousand bridges takes ~0.45 s, this ~25 ms), so an apply that changes no
link never imports pyroute2 (~75 ms of start-up).

What a bridge nftnet manages holds, and where the veths belong, is link/model.py's rule (the
types and rules live there, pure, and are re-exported here); where a bridge was deleted and
made again, its veths are put back.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv6Interface, ip_interface
from typing import TYPE_CHECKING, Any

from nftnet import crash, netlink
from nftnet.errors import LinkError
from nftnet.link import model
from nftnet.link.model import MARK as MARK
from nftnet.link.model import BridgeSpec as BridgeSpec
from nftnet.link.model import LinkChanges as LinkChanges
from nftnet.link.model import LinkState as LinkState
from nftnet.link.model import missing_addresses as missing_addresses
from nftnet.link.model import port_problems as port_problems
from nftnet.link.model import stale_addresses as stale_addresses
from nftnet.link.model import unsettled

if TYPE_CHECKING:
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

IFA_F_NODAD = 0x02
IFF_UP = 0x1

# rtnetlink constants (linux/netlink.h, linux/rtnetlink.h, linux/if_link.h, linux/if_addr.h)
_NETLINK_ROUTE = 0
_NLM_F_DUMP, _NLM_F_EXCL, _NLM_F_CREATE = 0x300, 0x200, 0x400
_RTM_NEWLINK, _RTM_DELLINK, _RTM_GETLINK = 16, 17, 18
_RTM_NEWADDR, _RTM_DELADDR, _RTM_GETADDR = 20, 21, 22
_IFLA_IFNAME, _IFLA_MASTER, _IFLA_LINKINFO, _IFLA_IFALIAS, _IFLA_EXT_MASK = 3, 10, 18, 20, 29
_LINK_ATTRS = frozenset({_IFLA_IFNAME, _IFLA_MASTER, _IFLA_LINKINFO, _IFLA_IFALIAS})
_IFLA_INFO_KIND, _IFLA_INFO_SLAVE_KIND, _IFLA_INFO_SLAVE_DATA = 1, 4, 5
_IFLA_BRPORT_MODE = 4  # in a bridge port's IFLA_INFO_SLAVE_DATA; 1 is hairpin
_RTEXT_FILTER_SKIP_STATS = 1 << 3  # older kernels ignore it; it only trims the dump
_IFA_ADDRESS, _IFA_LOCAL = 1, 2
_ADDR_ATTRS = frozenset({_IFA_ADDRESS, _IFA_LOCAL})
HAIRPIN = 1  # IFLA_BRPORT_MODE: let DNATed traffic leave by the port it came in by

_HEAD = netlink.HEADER.size
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBI")  # ifaddrmsg: family, prefixlen, flags, scope, index

# ACKs are queued on the socket before send() returns; each costs about 1 KiB of receive buffer,
# so a chunk must stay well below the smallest buffer a default sysctl allows (~416 KiB).
_CHUNK = 128
_SEQ_BASE = 0x40000000  # far from the sequence numbers pyroute2 allocates for itself
_DUMP_TRIES = 5
_IFNAMSIZ = 16  # with the final NUL: a longer name names no link


@dataclass(frozen=True)
class _Request:
    """One rtnetlink request of a batch: a pyroute2 message (ifinfmsg or ifaddrmsg) with its
    fields and attributes set; ``what`` names it in errors; ``effect`` is the address change
    it makes, for ``LinkChanges``: ("added" or "removed", bridge, "ip/prefix")."""

    what: str
    msg_type: int
    flags: int
    msg: Any
    effect: tuple[str, str, str] | None = None


@contextmanager
def _ipr() -> Iterator[IPRoute]:
    """A pyroute2 socket for changes; pyroute2 is imported here, on the first change."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        with IPRoute(ext_ack=True) as ipr:
            yield ipr
    except NetlinkError as e:
        raise LinkError(f"netlink: {e}") from None
    except OSError as e:
        raise LinkError(f"netlink: {e.strerror or e}") from None


@contextmanager
def _reader() -> Iterator[socket.socket]:
    """A plain rtnetlink socket for dumps."""
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_ROUTE) as sock:
            sock.bind((0, 0))
            yield sock
    except OSError as e:
        raise LinkError(f"netlink: {e.strerror or e}") from None


def _netlink_error(ipr: IPRoute, data: bytes, off: int, length: int) -> NetlinkError:
    """pyroute2's decoding of an error ACK, extended-ACK message included."""
    from pyroute2.netlink.exceptions import NetlinkError

    for msg in ipr.marshal.parse(data[off:off + length]):
        error = msg["header"].get("error")
        if isinstance(error, NetlinkError):
            return error
    (code,) = netlink.ERRNO.unpack_from(data, off + _HEAD)
    return NetlinkError(abs(code))


def _describe(error: NetlinkError) -> str:
    """'Invalid argument (mtu less than device minimum)': errno text plus the kernel's reason."""
    text = os.strerror(error.code)
    reason = error.args[1] if len(error.args) > 1 else None
    return f"{text} ({reason})" if reason and reason != text else text


def _send_batch(ipr: IPRoute, requests: Sequence[_Request]) -> list[NetlinkError | None]:
    """Send the requests in chunks and return each one's outcome, matched by sequence number.

    The kernel runs every message of a buffer even after one fails, so each outcome is real.
    """
    results: list[NetlinkError | None] = [None] * len(requests)
    for first in range(0, len(requests), _CHUNK):
        chunk = requests[first:first + _CHUNK]
        buf = bytearray()
        for i, req in enumerate(chunk, first):
            header = req.msg["header"]
            header["type"] = req.msg_type
            header["flags"] = req.flags | netlink.NLM_F_REQUEST | netlink.NLM_F_ACK
            header["sequence_number"] = _SEQ_BASE + i
            req.msg.encode()
            buf += req.msg.data
        ipr.send(bytes(buf))
        pending = set(range(_SEQ_BASE + first, _SEQ_BASE + first + len(chunk)))
        while pending:
            data = ipr.recv(65536)
            for off, length, kind, _, seq in netlink.messages(data):
                if kind != netlink.NLMSG_ERROR or seq not in pending:
                    continue  # a late answer to something else: not ours to judge
                pending.discard(seq)
                (code,) = netlink.ERRNO.unpack_from(data, off + _HEAD)
                if code:
                    results[seq - _SEQ_BASE] = _netlink_error(ipr, data, off, length)
    return results


def _dump(sock: socket.socket, msg_type: int, body: bytes) -> list[tuple[bytes, int, int]]:
    """Every (datagram, offset, length) of one dump, retried while the kernel says the listing
    changed under it (NLM_F_DUMP_INTR)."""
    for attempt in range(_DUMP_TRIES):
        seq = _SEQ_BASE - 1 - attempt
        sock.send(netlink.message(msg_type, netlink.NLM_F_REQUEST | _NLM_F_DUMP, seq, body))
        out: list[tuple[bytes, int, int]] = []
        interrupted = done = False
        while not done:
            data = sock.recv(1 << 20)
            for off, length, kind, flags, mseq in netlink.messages(data):
                if mseq != seq:
                    continue
                interrupted |= bool(flags & netlink.NLM_F_DUMP_INTR)
                if kind == netlink.NLMSG_DONE:
                    done = True
                elif kind == netlink.NLMSG_ERROR:
                    (code,) = netlink.ERRNO.unpack_from(data, off + _HEAD)
                    raise LinkError(f"netlink: cannot list links: {os.strerror(-code)}")
                else:
                    out.append((data, off, length))
        if not interrupted:
            break
    return out


def _snapshot(sock: socket.socket) -> dict[str, LinkState]:
    """Links and addresses from one raw dump each."""
    addrs: dict[int, set[str]] = defaultdict(set)
    for data, off, length in _dump(sock, _RTM_GETADDR, _IFADDR.pack(0, 0, 0, 0, 0)):
        family, prefixlen, _, _, index = _IFADDR.unpack_from(data, off + _HEAD)
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        found = netlink.pick(data, off + _HEAD + _IFADDR.size, off + length, _ADDR_ATTRS)
        # IPv4's own address is IFA_LOCAL (IFA_ADDRESS is the peer's on point-to-point links)
        span = found.get(_IFA_LOCAL) or found.get(_IFA_ADDRESS)
        if span is not None:
            addrs[index].add(f"{socket.inet_ntop(family, data[span[0]:span[1]])}/{prefixlen}")
    out = {}
    for data, off, length in _dump(sock, _RTM_GETLINK, _link_request()):
        if (found := _link(data, off, length, addrs)) is not None:
            out[found[0]] = found[1]
    return out


def _link_request(name: str | None = None) -> bytes:
    """An RTM_GETLINK body: every link (a dump), or the one named ``name``."""
    named = b"" if name is None else netlink.attr(_IFLA_IFNAME, name.encode() + b"\0")
    return _IFINFO.pack(0, 0, 0, 0, 0) + named + netlink.attr(
        _IFLA_EXT_MASK, netlink.U32.pack(_RTEXT_FILTER_SKIP_STATS))


def _link(data: bytes, off: int, length: int, addrs: dict[int, set[str]]
          ) -> tuple[str, LinkState] | None:
    """One RTM_NEWLINK message as (name, LinkState), its addresses from ``addrs``."""
    _, _, index, flags, _ = _IFINFO.unpack_from(data, off + _HEAD)
    found = netlink.pick(data, off + _HEAD + _IFINFO.size, off + length, _LINK_ATTRS)
    name = kind_name = slave_kind = alias = None
    master = mode = 0
    if (span := found.get(_IFLA_IFNAME)) is not None:
        name = data[span[0]:span[1]].split(b"\0", 1)[0].decode()
    if (span := found.get(_IFLA_IFALIAS)) is not None:
        alias = data[span[0]:span[1]].split(b"\0", 1)[0]
    if (span := found.get(_IFLA_MASTER)) is not None:
        (master,) = netlink.U32.unpack_from(data, span[0])
    if (span := found.get(_IFLA_LINKINFO)) is not None:
        for sub, s_start, s_end in netlink.attrs(data, *span):
            if sub == _IFLA_INFO_KIND:
                kind_name = data[s_start:s_end].split(b"\0", 1)[0].decode()
            elif sub == _IFLA_INFO_SLAVE_KIND:
                slave_kind = data[s_start:s_end].split(b"\0", 1)[0].decode()
            elif sub == _IFLA_INFO_SLAVE_DATA:
                mode = next((data[p] for a, p, _ in netlink.attrs(data, s_start, s_end)
                             if a == _IFLA_BRPORT_MODE), 0)
    if name is None:
        return None
    return name, LinkState(index, bool(flags & IFF_UP), kind_name,
                           frozenset(addrs.get(index, ())), master,
                           slave_kind == "bridge" and mode == HAIRPIN, alias == MARK.encode())


def observe() -> dict[str, LinkState]:
    """Every link in this namespace, by name."""
    with _reader() as sock:
        return _snapshot(sock)


def lookup(names: Iterable[str]) -> dict[str, LinkState]:
    """The links of ``names`` that exist, by name, without their addresses: one request each,
    no dump, so that it costs the same however many links the namespace holds (a CNI host's
    veths, one per container)."""
    wanted = {_SEQ_BASE - 1 - _DUMP_TRIES - i: name
              for i, name in enumerate(dict.fromkeys(names)) if 0 < len(name) < _IFNAMSIZ}
    out = {}
    with _reader() as sock:
        sock.send(b"".join(netlink.message(_RTM_GETLINK, netlink.NLM_F_REQUEST, seq,
                                           _link_request(name)) for seq, name in wanted.items()))
        while wanted:
            data = sock.recv(1 << 16)
            for off, length, kind, _, seq in netlink.messages(data):
                name = wanted.pop(seq, None)
                if name is None:
                    continue
                if kind == netlink.NLMSG_ERROR:
                    (code,) = netlink.ERRNO.unpack_from(data, off + _HEAD)
                    if -code != errno.ENODEV:
                        raise LinkError(f"netlink: cannot look up {name}: "
                                        f"{os.strerror(-code)}")
                elif (found := _link(data, off, length, {})) is not None:
                    out[found[0]] = found[1]
    return out


def _link_msg(index: int, up: bool, attrs: list[tuple[str, Any]]) -> Any:
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

    msg = ifinfmsg()
    msg["index"] = index
    msg["flags"] = msg["change"] = IFF_UP if up else 0
    msg["attrs"] = attrs
    return msg


def _machine_id() -> bytes:
    try:
        with open("/etc/machine-id", "rb") as f:
            return f.read(64).strip()
    except OSError:
        return b""


def _mac(name: str, host: bytes) -> str:
    """A locally administered unicast MAC for bridge ``name``, the same whenever this host
    makes it. Set at creation, it stays as ports come and go (a bridge without one takes its
    lowest port's), and a bridge deleted and made again has it back: the containers' neighbour
    entries for their gateway stay right (a changed MAC left them unable to reach it)."""
    import hashlib  # only here: its OpenSSL load would cost every observe 2 ms

    digest = hashlib.sha256(b"nftnet bridge\0" + host + b"\0" + name.encode()).digest()
    return ":".join(f"{b:02x}" for b in bytes([digest[0] & 0xFC | 0x02]) + digest[1:6])


def _create(spec: BridgeSpec, host: bytes) -> _Request:
    # IFF_UP in the request: the bridge comes up as it is made, with no second request
    msg = _link_msg(0, True, [("IFLA_IFNAME", spec.name), ("IFLA_MTU", spec.mtu),
                              ("IFLA_ADDRESS", _mac(spec.name, host)),
                              ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "bridge")]})])
    return _Request(f"cannot create bridge {spec.name}", _RTM_NEWLINK,
                    _NLM_F_CREATE | _NLM_F_EXCL, msg)


def _mark(name: str, index: int = 0) -> _Request:
    # the kernel ignores IFLA_IFALIAS in a request that creates a link: a second one sets it
    # (by name where the index is not known yet: right behind the creation, in its send)
    attrs = [("IFLA_IFALIAS", MARK)] if index else [("IFLA_IFNAME", name), ("IFLA_IFALIAS", MARK)]
    return _Request(f"cannot mark {name} as nftnet's", _RTM_NEWLINK, 0,
                    _link_msg(index, False, attrs))


def _address_msg(index: int, addr: IPv4Interface | IPv6Interface) -> Any:
    # the attributes pyroute2's addr("add") sends: IFA_LOCAL too for IPv4, NODAD for IPv6;
    # a deletion names the address with the same ones
    from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg

    msg = ifaddrmsg()
    msg["family"] = socket.AF_INET if addr.version == 4 else socket.AF_INET6
    msg["prefixlen"] = addr.network.prefixlen
    msg["index"] = index
    ip = str(addr.ip)
    msg["attrs"] = [("IFA_ADDRESS", ip), ("IFA_FLAGS", IFA_F_NODAD if addr.version == 6 else 0)]
    if addr.version == 4:
        msg["attrs"].append(("IFA_LOCAL", ip))
    return msg


def _add_address(name: str, index: int, addr: IPv4Interface | IPv6Interface) -> _Request:
    return _Request(f"cannot add address {addr} to {name}", _RTM_NEWADDR,
                    _NLM_F_CREATE | _NLM_F_EXCL, _address_msg(index, addr),
                    ("added", name, str(addr)))


def _remove_address(name: str, index: int, addr: IPv4Interface | IPv6Interface) -> _Request:
    return _Request(f"cannot remove address {addr} from {name}", _RTM_DELADDR, 0,
                    _address_msg(index, addr), ("removed", name, str(addr)))


def _set_up(name: str, index: int) -> _Request:
    return _Request(f"cannot bring {name} up", _RTM_NEWLINK, 0, _link_msg(index, True, []))


def _plug(name: str, index: int, bridge: str, bridge_index: int) -> list[_Request]:
    """Link ``name`` onto the bridge and up, then hairpin on (a port takes bridge-port
    settings only once it is one)."""
    port = {"attrs": [("IFLA_INFO_SLAVE_KIND", "bridge"),
                      ("IFLA_INFO_SLAVE_DATA", {"attrs": [("IFLA_BRPORT_MODE", HAIRPIN)]})]}
    return [_Request(f"cannot put {name} on {bridge}", _RTM_NEWLINK, 0,
                     _link_msg(index, True, [("IFLA_MASTER", bridge_index)])),
            _Request(f"cannot turn hairpin on for {name}", _RTM_NEWLINK, 0,
                     _link_msg(index, True, [("IFLA_LINKINFO", port)]))]


def _delete(name: str, index: int = 0) -> _Request:
    # by index when known; by name for links whose index was never read back
    attrs = [] if index else [("IFLA_IFNAME", name)]
    return _Request(f"cannot delete {name}", _RTM_DELLINK, 0, _link_msg(index, False, attrs))


def settled(specs: Iterable[BridgeSpec], links: dict[str, LinkState] | None = None) -> bool:
    """Whether every bridge of ``specs`` exists and is as it says (on one raw dump, so that
    an apply that changes no link never imports pyroute2)."""
    return model.settled(specs, observe() if links is None else links)


def _settle(specs: list[BridgeSpec], links: dict[str, LinkState]) -> list[_Request]:
    """The requests that take away stale addresses, then add the missing ones (an address
    may come back with another prefix), bring the links up and put the veths back."""
    requests = []
    for fix in unsettled(specs, links):
        name, index = fix.spec.name, fix.seen.index
        requests += [_remove_address(name, index, ip_interface(a)) for a in fix.stale]
        requests += [_add_address(name, index, a) for a in fix.missing]
        if not fix.seen.up:
            requests.append(_set_up(name, index))
        if fix.unmarked:
            requests.append(_mark(name, index))
        for port, seen in fix.ports:
            requests += _plug(port, seen.index, name, index)
    return requests


def _failures(requests: Sequence[_Request], results: Sequence[NetlinkError | None],
              ignore: int | None = None) -> list[str]:
    return [f"{req.what}: {_describe(err)}" for req, err in zip(requests, results, strict=True)
            if err is not None and err.code != ignore]


def _record(changes: LinkChanges, requests: Sequence[_Request],
            results: Sequence[NetlinkError | None]) -> None:
    """Note the address changes the kernel made."""
    for req, err in zip(requests, results, strict=True):
        if err is None and req.effect is not None:
            what, bridge, addr = req.effect
            getattr(changes, what).setdefault(bridge, []).append(addr)


def ensure_bridges(specs: Iterable[BridgeSpec]) -> LinkChanges:
    """Create missing bridges and make every one of ``specs`` as it says: stale addresses
    taken away (``stale_addresses``), missing ones added, the link up, its veths back on it
    with hairpin on (``port_problems``); return what changed.

    An existing bridge is adopted. Raises LinkError (after undoing what this call changed)
    when a name is taken by a link that is not a bridge or when the kernel refuses a bridge,
    an address, bringing a link up or a port.
    """
    specs = list(specs)
    links = observe()
    taken = [s.name for s in specs if s.name in links and links[s.name].kind != "bridge"]
    if taken:
        raise LinkError(f"{taken[0]} exists and is not a bridge; nftnet will not adopt it")
    new = [s for s in specs if s.name not in links]
    if not new and not unsettled(specs, links):
        return LinkChanges()  # nothing to change: pyroute2 not even imported
    changes = LinkChanges()
    unsure: list[str] = []  # sent for creation, outcome not read (interrupted)
    with _ipr() as ipr:
        try:
            if new:
                unsure = [s.name for s in new]
                host = _machine_id()
                # each bridge marked in the same send as it is made (pairs never straddle a
                # chunk): no kill leaves a bridge of nftnet's without its mark
                requests = [r for s in new for r in (_create(s, host), _mark(s.name))]
                results = _send_batch(ipr, requests)
                changes.created = [s.name for s, err in zip(new, results[::2], strict=True)
                                   if err is None]
                unsure = []
                crash.point("bridges-created")
                # a mark fails with its bridge: only the marks of bridges made are news
                marked = [(req, err) for req, err, made in zip(
                    requests[1::2], results[1::2], results[::2], strict=True) if made is None]
                if problems := _failures(requests[::2], results[::2]) + _failures(
                        [req for req, _ in marked], [err for _, err in marked]):
                    raise LinkError("; ".join(problems))
                links = observe()
            requests = _settle(specs, links)
            results = _send_batch(ipr, requests)
            _record(changes, requests, results)
            if problems := _failures(requests, results):
                raise LinkError("; ".join(problems))
        except BaseException as e:
            from pyroute2.netlink.exceptions import NetlinkError

            undone = _revert(ipr, changes, unsure)
            if isinstance(e, (LinkError, NetlinkError, OSError)):
                text = f"{e}" if isinstance(e, LinkError) else f"netlink: {e}"
                raise LinkError("; ".join([text, *undone])) from None
            raise
    return changes


def _revert(ipr: IPRoute, changes: LinkChanges, unsure: list[str]) -> list[str]:
    """Take back ``changes``: the addresses added to and removed from bridges this call did
    not make, then the bridges it made (and those whose creation went unconfirmed), where a
    link already gone is no error; return what could not be taken back."""
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        links = observe() if changes.added or changes.removed else {}
        requests = []
        for what, make in (("added", _remove_address), ("removed", _add_address)):
            for bridge, addrs in getattr(changes, what).items():
                if bridge in links and bridge not in changes.created:
                    requests += [make(bridge, links[bridge].index, ip_interface(a))
                                 for a in addrs]
        kept = len(requests)
        requests += [_delete(name) for name in changes.created + unsure]
        results = _send_batch(ipr, requests)
    except (NetlinkError, OSError, LinkError) as e:
        return [f"could not undo the link changes: {e}"]
    return _failures(requests[:kept], results[:kept]) + _failures(
        requests[kept:], results[kept:], ignore=errno.ENODEV)


def undo(changes: LinkChanges) -> None:
    """Take back what ``ensure_bridges`` changed, as when the kernel refused the batch it was
    made for; LinkError names what could not be taken back."""
    if not (changes.created or changes.added or changes.removed):
        return
    with _ipr() as ipr:
        if problems := _revert(ipr, changes, []):
            raise LinkError("; ".join(problems))


def plug_port(name: str, bridge: str) -> None:
    """Put the host end ``name`` of a container's veth on ``bridge``, up, with hairpin on (so
    that DNATed traffic may leave by the port it came in by): as attach leaves it and every
    converge puts it back. LinkError when either link is missing or the kernel refuses."""
    links = observe()
    if bridge not in links:
        raise LinkError(f"bridge {bridge} does not exist (run nftnet apply)")
    if name not in links:
        raise LinkError(f"{name} does not exist")
    requests = _plug(name, links[name].index, bridge, links[bridge].index)
    with _ipr() as ipr:
        if problems := _failures(requests, _send_batch(ipr, requests)):
            raise LinkError("; ".join(problems))


def delete_links(names: Iterable[str]) -> list[str]:
    """Delete the named links that exist and carry MARK; return those that exist without it,
    which are kept (nftnet did not make them, whatever a state file says). Every deletion is
    tried before a failure is raised."""
    links = observe()
    existing = [name for name in dict.fromkeys(names) if name in links]
    requests = [_delete(name, links[name].index) for name in existing if links[name].marked]
    if requests:
        with _ipr() as ipr:
            if problems := _failures(requests, _send_batch(ipr, requests), ignore=errno.ENODEV):
                raise LinkError("; ".join(problems))
    return [name for name in existing if not links[name].marked]
