"""Reading nftables' notifications (nft/monitor.py) from datagrams made by hand: a run of
alike notices (a batch's elements) is one notice, and nothing else is merged."""

from __future__ import annotations

import socket
import struct

from nftnet import netlink
from nftnet.nft.generation import NFNL_SUBSYS_NFTABLES, NFT_MSG_NEWGEN
from nftnet.nft.monitor import NFT_TABLE_ATTR, NFTA_GEN_PROC_NAME, NFTA_GEN_PROC_PID, parse

NEWSETELEM, DELSETELEM, NEWRULE = 12, 14, 6
INET = 1


def notice(kind: int, table: str, *more: bytes, family: int = INET) -> bytes:
    body = struct.pack("=BBH", family, 0, 0) + netlink.attr(NFT_TABLE_ATTR,
                                                            table.encode() + b"\0")
    return netlink.message(NFNL_SUBSYS_NFTABLES << 8 | kind, 0, 0, body + b"".join(more))


def newgen(pid: int) -> bytes:
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, 0) + netlink.attr(
        NFTA_GEN_PROC_PID, pid.to_bytes(4, "big")) + netlink.attr(NFTA_GEN_PROC_NAME, b"nft\0")
    return netlink.message(NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWGEN, 0, 0, body)


def test_a_run_of_alike_notices_is_one_and_nothing_else_is_merged() -> None:
    elements = [notice(NEWSETELEM, "nftnet", netlink.attr(2, f"s{i}".encode()))
                for i in range(1000)]
    data = b"".join([*elements, notice(NEWSETELEM, "other"), notice(NEWSETELEM, "nftnet"),
                     notice(DELSETELEM, "nftnet"), notice(NEWSETELEM, "nftnet", family=2),
                     notice(NEWRULE, "nftnet"), newgen(42), notice(NEWRULE, "nftnet")])
    got = [(n.kind, n.family, n.table, n.pid) for n in parse(data)]
    assert got == [(NEWSETELEM, "inet", "nftnet", None), (NEWSETELEM, "inet", "other", None),
                   (NEWSETELEM, "inet", "nftnet", None), (DELSETELEM, "inet", "nftnet", None),
                   (NEWSETELEM, "ip", "nftnet", None), (NEWRULE, "inet", "nftnet", None),
                   (NFT_MSG_NEWGEN, "0", None, 42),
                   (NEWRULE, "inet", "nftnet", None)]
