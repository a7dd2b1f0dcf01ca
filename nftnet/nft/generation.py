"""The kernel's ruleset generation id, read over nfnetlink with pyroute2.

Every committed nftables batch in the namespace bumps it, so an unchanged id since nftnet's
last apply proves the table is untouched without listing tens of thousands of elements.
"""

from __future__ import annotations

from pyroute2.netlink import NLM_F_REQUEST
from pyroute2.netlink.nfnetlink.nftsocket import NFT_MSG_GETGEN, NFTSocket, nft_gen_msg


def generation() -> int | None:
    """The current generation id; None if it cannot be read (then callers list the table)."""
    try:
        sock = NFTSocket()
    except OSError:
        return None
    try:
        replies = sock.request_get(nft_gen_msg(), msg_type=NFT_MSG_GETGEN,
                                   msg_flags=NLM_F_REQUEST)
        return int(replies[0].get_attr("NFTA_GEN_ID"))
    except Exception:  # any netlink trouble just means "unknown": fall back to a listing
        return None
    finally:
        sock.close()
