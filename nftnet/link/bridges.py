"""The only module that talks to pyroute2 about links: bridges and their addresses.

Links and addresses are dumped once per call and indexed, never looked up one name at a time:
with a thousand bridges, per-name lookups (each a full dump filtered in Python) are quadratic.

Every change (create, address, up, delete) is a pyroute2 message sent on a pyroute2 socket;
the messages go in batches and their ACKs are read back by sequence number, since pyroute2's
one-request-at-a-time path costs more than the kernel's work with a thousand bridges. pyroute2
decodes every error. Reading needs no pyroute2: a dump is read raw on a plain netlink socket and
only index, name, flags, kind and address are decoded (pyroute2's full decoding of a thousand
bridges takes ~0.45 s, this ~25 ms), so an apply that changes no link never imports pyroute2
(~75 ms of start-up).
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
from ipaddress import IPv4Interface, IPv6Interface
from typing import TYPE_CHECKING, Any

from nftnet import crash, netlink
from nftnet.errors import LinkError

if TYPE_CHECKING:
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

IFA_F_NODAD = 0x02
IFF_UP = 0x1

# rtnetlink constants (linux/netlink.h, linux/rtnetlink.h, linux/if_link.h, linux/if_addr.h)
_NETLINK_ROUTE = 0
_NLM_F_DUMP, _NLM_F_EXCL, _NLM_F_CREATE = 0x300, 0x200, 0x400
_RTM_NEWLINK, _RTM_DELLINK, _RTM_GETLINK, _RTM_NEWADDR, _RTM_GETADDR = 16, 17, 18, 20, 22
_IFLA_IFNAME, _IFLA_LINKINFO, _IFLA_EXT_MASK, _IFLA_INFO_KIND = 3, 18, 29, 1
_RTEXT_FILTER_SKIP_STATS = 1 << 3  # older kernels ignore it; it only trims the dump
_IFA_ADDRESS = 1

_HEAD = netlink.HEADER.size
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBI")  # ifaddrmsg: family, prefixlen, flags, scope, index

# ACKs are queued on the socket before send() returns; each costs about 1 KiB of receive buffer,
# so a chunk must stay well below the smallest buffer a default sysctl allows (~416 KiB).
_CHUNK = 128
_SEQ_BASE = 0x40000000  # far from the sequence numbers pyroute2 allocates for itself
_DUMP_TRIES = 5


@dataclass(frozen=True)
class BridgeSpec:
    """A bridge as nftnet wants it: name, gateway addresses with prefix, MTU."""

    name: str
    addresses: tuple[IPv4Interface | IPv6Interface, ...]
    mtu: int


@dataclass(frozen=True)
class LinkState:
    """What nftnet needs to know of a link: enough to adopt, check or delete it."""

    index: int
    up: bool
    kind: str | None
    addresses: frozenset[str]


@dataclass(frozen=True)
class _Request:
    """One rtnetlink request of a batch: a pyroute2 message (ifinfmsg or ifaddrmsg) with its
    fields and attributes set; ``what`` names it in errors."""

    what: str
    msg_type: int
    flags: int
    msg: Any


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
        for kind, start, end in netlink.attrs(data, off + _HEAD + _IFADDR.size, off + length):
            if kind == _IFA_ADDRESS:
                addrs[index].add(f"{socket.inet_ntop(family, data[start:end])}/{prefixlen}")
                break
    out = {}
    request = _IFINFO.pack(0, 0, 0, 0, 0) + netlink.attr(_IFLA_EXT_MASK,
                                                 netlink.U32.pack(_RTEXT_FILTER_SKIP_STATS))
    for data, off, length in _dump(sock, _RTM_GETLINK, request):
        _, _, index, flags, _ = _IFINFO.unpack_from(data, off + _HEAD)
        name = kind_name = None
        for kind, start, end in netlink.attrs(data, off + _HEAD + _IFINFO.size, off + length):
            if kind == _IFLA_IFNAME:
                name = data[start:end].split(b"\0", 1)[0].decode()
            elif kind == _IFLA_LINKINFO:
                for sub, s_start, s_end in netlink.attrs(data, start, end):
                    if sub == _IFLA_INFO_KIND:
                        kind_name = data[s_start:s_end].split(b"\0", 1)[0].decode()
        if name is not None:
            out[name] = LinkState(index, bool(flags & IFF_UP), kind_name,
                                  frozenset(addrs.get(index, ())))
    return out


def observe() -> dict[str, LinkState]:
    """Every link in this namespace, by name."""
    with _reader() as sock:
        return _snapshot(sock)


def _link_msg(index: int, up: bool, attrs: list[tuple[str, Any]]) -> Any:
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

    msg = ifinfmsg()
    msg["index"] = index
    msg["flags"] = msg["change"] = IFF_UP if up else 0
    msg["attrs"] = attrs
    return msg


def _create(spec: BridgeSpec) -> _Request:
    # IFF_UP in the request: the bridge comes up as it is made, with no second request
    msg = _link_msg(0, True, [("IFLA_IFNAME", spec.name), ("IFLA_MTU", spec.mtu),
                              ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "bridge")]})])
    return _Request(f"cannot create bridge {spec.name}", _RTM_NEWLINK,
                    _NLM_F_CREATE | _NLM_F_EXCL, msg)


def _add_address(name: str, index: int, addr: IPv4Interface | IPv6Interface) -> _Request:
    # the attributes pyroute2's addr("add") sends: IFA_LOCAL too for IPv4, NODAD for IPv6
    from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg

    msg = ifaddrmsg()
    msg["family"] = socket.AF_INET if addr.version == 4 else socket.AF_INET6
    msg["prefixlen"] = addr.network.prefixlen
    msg["index"] = index
    ip = str(addr.ip)
    msg["attrs"] = [("IFA_ADDRESS", ip), ("IFA_FLAGS", IFA_F_NODAD if addr.version == 6 else 0)]
    if addr.version == 4:
        msg["attrs"].append(("IFA_LOCAL", ip))
    return _Request(f"cannot add address {addr} to {name}", _RTM_NEWADDR,
                    _NLM_F_CREATE | _NLM_F_EXCL, msg)


def _set_up(name: str, index: int) -> _Request:
    return _Request(f"cannot bring {name} up", _RTM_NEWLINK, 0, _link_msg(index, True, []))


def _delete(name: str, index: int = 0) -> _Request:
    # by index when known; by name for links whose index was never read back
    attrs = [] if index else [("IFLA_IFNAME", name)]
    return _Request(f"cannot delete {name}", _RTM_DELLINK, 0, _link_msg(index, False, attrs))


def _unsettled(specs: list[BridgeSpec], links: dict[str, LinkState]
               ) -> list[tuple[BridgeSpec, LinkState, list[IPv4Interface | IPv6Interface]]]:
    """The existing bridges of ``specs`` that miss addresses (listed) or are down."""
    out = []
    for spec in specs:
        seen = links[spec.name]
        missing = [a for a in spec.addresses if str(a) not in seen.addresses]
        if missing or not seen.up:
            out.append((spec, seen, missing))
    return out


def _settle(specs: list[BridgeSpec], links: dict[str, LinkState]) -> list[_Request]:
    """The requests that add the missing addresses and bring the links up."""
    requests = []
    for spec, seen, missing in _unsettled(specs, links):
        requests += [_add_address(spec.name, seen.index, a) for a in missing]
        if not seen.up:
            requests.append(_set_up(spec.name, seen.index))
    return requests


def _failures(requests: Sequence[_Request], results: Sequence[NetlinkError | None],
              ignore: int | None = None) -> list[str]:
    return [f"{req.what}: {_describe(err)}" for req, err in zip(requests, results, strict=True)
            if err is not None and err.code != ignore]


def ensure_bridges(specs: Iterable[BridgeSpec]) -> list[str]:
    """Create missing bridges, add missing addresses, bring all up; return the names created.

    An existing bridge is adopted: nothing is removed from it. Raises LinkError (after
    deleting what this call created) when a name is taken by a link that is not a bridge or
    when the kernel refuses a bridge, an address or bringing a link up.
    """
    specs = list(specs)
    links = observe()
    taken = [s.name for s in specs if s.name in links and links[s.name].kind != "bridge"]
    if taken:
        raise LinkError(f"{taken[0]} exists and is not a bridge; nftnet will not adopt it")
    new = [s for s in specs if s.name not in links]
    if not new and not _unsettled(specs, links):
        return []  # nothing to change: pyroute2 not even imported
    created: list[str] = []
    unsure: list[str] = []  # sent for creation, outcome not read (interrupted)
    with _ipr() as ipr:
        try:
            if new:
                unsure = [s.name for s in new]
                requests = [_create(s) for s in new]
                results = _send_batch(ipr, requests)
                created = [s.name for s, err in zip(new, results, strict=True) if err is None]
                unsure = []
                crash.point("bridges-created")
                if problems := _failures(requests, results):
                    raise LinkError("; ".join(problems))
                links = observe()
            requests = _settle(specs, links)
            if problems := _failures(requests, _send_batch(ipr, requests)):
                raise LinkError("; ".join(problems))
        except BaseException as e:
            from pyroute2.netlink.exceptions import NetlinkError

            undone = _undo(ipr, created, unsure)
            if isinstance(e, (LinkError, NetlinkError, OSError)):
                text = f"{e}" if isinstance(e, LinkError) else f"netlink: {e}"
                raise LinkError("; ".join([text, *undone])) from None
            raise
    return created


def _undo(ipr: IPRoute, created: list[str], unsure: list[str]) -> list[str]:
    """Delete the bridges this call made (and those whose creation went unconfirmed, where a
    missing link is no error); return what could not be deleted."""
    from pyroute2.netlink.exceptions import NetlinkError

    requests = [_delete(name) for name in created + unsure]
    try:
        results = _send_batch(ipr, requests)
    except (NetlinkError, OSError) as e:
        return [f"could not delete {', '.join(created + unsure)}: {e}"]
    confirmed = _failures(requests[:len(created)], results[:len(created)])
    return confirmed + _failures(requests[len(created):], results[len(created):],
                                 ignore=errno.ENODEV)


def delete_links(names: Iterable[str]) -> None:
    """Delete the named links that exist; every one is tried before a failure is raised."""
    links = observe()
    requests = [_delete(name, links[name].index) for name in dict.fromkeys(names)
                if name in links]
    if not requests:
        return
    with _ipr() as ipr:
        if problems := _failures(requests, _send_batch(ipr, requests), ignore=errno.ENODEV):
            raise LinkError("; ".join(problems))
