"""The kernel's ruleset generation, read with one nfnetlink request (NFT_MSG_GETGEN).

Every committed nftables batch in the namespace bumps its id by one, so an id unchanged since
nftnet's own commit proves the table untouched without listing tens of thousands of elements.
The id restarts with every boot and differs per network namespace, so the token nftnet keeps
is ``BOOT_ID:NETNS_INODE:ID``: equal tokens mean the same ruleset in the same namespace.
A plain socket, not pyroute2: importing pyroute2 costs more than a whole ``port publish``.
"""

from __future__ import annotations

import os
import socket
import struct
from pathlib import Path

from nftnet import netlink

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_GETGEN = 16
NFT_MSG_NEWGEN = 15
NFTA_GEN_ID = 1
BOOT_ID = "/proc/sys/kernel/random/boot_id"
NETNS = "/proc/thread-self/ns/net"  # the calling thread's (setns is per thread)
_NFGENMSG = struct.Struct("=BBH")  # family, version, resource id (big-endian; 0 here)


def _request() -> bytes:
    return netlink.message(NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETGEN, netlink.NLM_F_REQUEST,
                           1, _NFGENMSG.pack(socket.AF_UNSPEC, 0, 0))


def parse_reply(data: bytes) -> int | None:
    """NFTA_GEN_ID of a NEWGEN reply; None for anything else (an error message, say)."""
    for off, length, kind, _, _ in netlink.messages(data):
        if kind != NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWGEN:
            return None
        body = off + netlink.HEADER.size + _NFGENMSG.size
        for attr, start, end in netlink.attrs(data, body, min(off + length, len(data))):
            if attr == NFTA_GEN_ID and end - start >= 4:
                return int.from_bytes(data[start:start + 4], "big")
    return None


class Reader:
    """Tokens read on one socket kept open, for a process that reads them change after change
    (the daemon): closing a netfilter netlink socket waits for the kernel to free what the
    last commit deleted (nf_tables flushes its destroy work, an RCU grace period of
    milliseconds, when such a socket is released), which each change that deletes elements
    would pay. The socket is opened anew when the calling thread is in another namespace, and
    after any failure."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._netns: int | None = None

    def read(self) -> str | None:
        """The current token; None if it cannot be read (then callers assume a change)."""
        try:
            netns = os.stat(NETNS).st_ino
            if self._sock is None or netns != self._netns:
                self.close()
                self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW,
                                           NETLINK_NETFILTER)
                self._netns = netns
                self._sock.settimeout(2)
                self._sock.bind((0, 0))
            self._sock.sendto(_request(), (0, 0))
            gen_id = parse_reply(self._sock.recv(os.sysconf("SC_PAGE_SIZE")))
            boot = Path(BOOT_ID).read_text().strip()
        except OSError:  # any trouble just means "unknown"; a late reply goes with the socket
            self.close()
            return None
        return None if gen_id is None else f"{boot}:{netns}:{gen_id}"

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def generation() -> str | None:
    """The current token, on a socket of its own; None if it cannot be read."""
    reader = Reader()
    try:
        return reader.read()
    finally:
        reader.close()


def follows(before: str | None, now: str | None) -> str | None:
    """``now``, if it is exactly one commit after ``before`` (same boot, same namespace);
    else None, as another program's commit may have come in between and touched the table."""
    if before is None or now is None:
        return None
    head, _, gen_id = before.rpartition(":")
    return now if now == f"{head}:{int(gen_id) + 1}" else None


def after_one_commit(before: str | None) -> str | None:
    """The token now, if exactly one commit (nftnet's own) happened since ``before``."""
    return follows(before, generation())
