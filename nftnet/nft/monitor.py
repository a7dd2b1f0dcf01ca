"""nftables' own change notifications (netlink group NFNLGRP_NFTABLES), read raw.

Every committed batch is announced object by object (NEWTABLE, DELCHAIN, NEWRULE, DELSETELEM,
...: ``nft monitor`` shows them), each message naming its table's family and name, then with
NEWGEN carrying the new generation id. The daemon only needs to know whether a batch touched
nftnet's table, so a message is read down to its type, family and table name; anything else
is skipped. A plain socket, as in generation.py: no library on this path.

A socket that overflowed (ENOBUFS: a large batch came faster than it was read) lost some
notifications; ``Monitor.read`` then says ``lost``, and the caller must assume the worst.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

from nftnet import names, netlink
from nftnet.nft.generation import NETLINK_NETFILTER, NFNL_SUBSYS_NFTABLES, NFT_MSG_NEWGEN

NFNLGRP_NFTABLES = 7
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
SO_RCVBUFFORCE = 33
RCVBUF = 8 << 20  # bytes: room for the notifications of a batch of tens of thousands of elements
NFT_TABLE_ATTR = 1  # NFTA_{TABLE_NAME,CHAIN_TABLE,RULE_TABLE,SET_TABLE,SET_ELEM_LIST_TABLE,...}
FAMILIES = {1: "inet", 2: "ip", 3: "arp", 5: "netdev", 7: "bridge", 10: "ip6"}
_NFGENMSG = 4  # family, version, resource id


NFTA_GEN_PROC_PID, NFTA_GEN_PROC_NAME = 2, 3


@dataclass(frozen=True)
class Notice:
    """One notification: its NFT_MSG_* type, family (nft's name) and table (None for NEWGEN
    and what names none); NEWGEN, which ends a batch, says which process committed it."""

    kind: int
    family: str
    table: str | None
    pid: int | None = None
    process: str | None = None

    @property
    def ends_batch(self) -> bool:
        return self.kind == NFT_MSG_NEWGEN

    @property
    def touches_nftnet(self) -> bool:
        """Whether it concerns nftnet's table (a flush of the ruleset deletes it too)."""
        return self.family == names.FAMILY and self.table == names.TABLE


def parse(data: bytes) -> list[Notice]:
    """The nftables notifications in one datagram (others are skipped); a run of alike ones
    (same kind, family and table: a batch's thousands of elements) is one notice, told from
    the one before by its first bytes alone, so that following a large commit costs its
    reader (the daemon, healing meanwhile) little."""
    out = []
    last = b""  # type, family and table attribute of the last notice, as they came
    for off, length, kind, _, _ in netlink.messages(data):
        if kind >> 8 != NFNL_SUBSYS_NFTABLES or length < netlink.HEADER.size + _NFGENMSG:
            continue
        body = off + netlink.HEADER.size
        first = body + _NFGENMSG
        size, first_type = netlink.ATTR.unpack_from(data, first) if first + netlink.ATTR.size <= \
            off + length else (0, 0)
        raw = data[off + 4:off + 6] + data[body:body + 1] + data[first:first + size]
        if raw == last:
            continue
        family = FAMILIES.get(data[body], str(data[body]))
        attrs = {attr: data[start:end] for attr, start, end in netlink.attrs(
            data, first, min(off + length, len(data)))}
        if kind & 0xFF == NFT_MSG_NEWGEN:
            pid, name = attrs.get(NFTA_GEN_PROC_PID), attrs.get(NFTA_GEN_PROC_NAME)
            out.append(Notice(NFT_MSG_NEWGEN, family, None,
                              int.from_bytes(pid, "big") if pid and len(pid) == 4 else None,
                              _text(name) if name else None))
            last = b""
        else:
            table = attrs.get(NFT_TABLE_ATTR)
            out.append(Notice(kind & 0xFF, family, None if table is None else _text(table)))
            last = raw if first_type & 0x3FFF == NFT_TABLE_ATTR else b""  # the table told it
    return out


def _text(value: bytes) -> str:
    return value.split(b"\0", 1)[0].decode(errors="replace")


@dataclass(frozen=True)
class Batch:
    """What one read brought: the notices, and whether some were lost before them
    (ENOBUFS)."""

    notices: list[Notice]
    lost: bool = False


class Monitor:
    """A socket subscribed to nftables' notifications in this network namespace."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            try:  # as root past net.core.rmem_max; else what the sysctl allows
                self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
            except OSError:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            self.sock.bind((0, 0))
            self.sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, NFNLGRP_NFTABLES)
        except BaseException:
            self.sock.close()
            raise

    def read(self, timeout: float | None = None) -> Batch | None:
        """The next datagram's notifications (blocking, up to ``timeout`` seconds: None when
        nothing came). OSError when the socket fails otherwise."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 20)
        except TimeoutError:
            return None
        except OSError as e:
            if e.errno == errno.ENOBUFS:
                return Batch([], lost=True)
            raise
        return Batch(parse(data))

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
