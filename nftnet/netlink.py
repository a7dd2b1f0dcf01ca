"""Netlink framing: headers, attributes, message walking. Bytes only, no sockets.

Shared by the two places that read netlink without a library, for speed: nft/generation.py
(one nfnetlink request per command) and link/bridges.py (link and address dumps, and the ACKs
of its batches of pyroute2 messages).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP_INTR = 0x1, 0x4, 0x10
NLA_TYPE_MASK = 0x3FFF  # attribute type without the nested and byte-order flags
HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port id
ATTR = struct.Struct("=HH")  # rtattr / nlattr: length, type
U32 = struct.Struct("=I")
ERRNO = struct.Struct("=i")  # the first field of an NLMSG_ERROR payload (0: an ACK)


def message(msg_type: int, flags: int, seq: int, body: bytes) -> bytes:
    return HEADER.pack(HEADER.size + len(body), msg_type, flags, seq, 0) + body


def attr(kind: int, payload: bytes) -> bytes:
    size = ATTR.size + len(payload)
    return ATTR.pack(size, kind) + payload + b"\0" * (-size % 4)


def attrs(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(type, payload start, payload end) of each attribute in data[start:end]."""
    while start + ATTR.size <= end:
        size, kind = ATTR.unpack_from(data, start)
        if size < ATTR.size:
            return
        yield kind & NLA_TYPE_MASK, start + ATTR.size, start + size
        start += (size + 3) & ~3


def pick(data: bytes, start: int, end: int, kinds: frozenset[int]) -> dict[int, tuple[int, int]]:
    """(payload start, payload end) of the attributes of ``kinds`` in data[start:end], by type
    (the last of a type given twice): ``attrs`` for the few of many (a link message holds
    about 40), a third of its cost."""
    out = {}
    unpack = ATTR.unpack_from
    while start + ATTR.size <= end:
        size, kind = unpack(data, start)
        if size < ATTR.size:
            break
        if kind & NLA_TYPE_MASK in kinds:
            out[kind & NLA_TYPE_MASK] = (start + ATTR.size, start + size)
        start += (size + 3) & ~3
    return out


def messages(data: bytes) -> Iterator[tuple[int, int, int, int, int]]:
    """(offset, length, type, flags, seq) of each netlink message in one datagram."""
    off = 0
    while off + HEADER.size <= len(data):
        length, kind, flags, seq, _ = HEADER.unpack_from(data, off)
        if length < HEADER.size:
            return
        yield off, length, kind, flags, seq
        off += (length + 3) & ~3
