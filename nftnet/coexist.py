"""Other firewalls on the host: nftnet never touches them, but names those that undo it.

An accept in nftnet's forward chain ends that chain only: a base chain of another table on the
same hook still sees the packet, and one with ``policy drop`` (an nft-only distro's ``inet
filter``, the FORWARD DROP that Docker leaves in iptables) drops what nftnet let through.
nftnet marks every packet it lets through with ``names.MARK_BIT``; one rule at the top of such
a chain honours the mark, and ``nftnet check`` prints it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from nftnet import names
from nftnet.errors import TransactionError
from nftnet.nft.backend import NftBackend

MARK = f"{names.MARK_BIT:#x}"
# The remedy as nft lists it, whether added with nft or with iptables' mark match.
_HONOURS = re.compile(rf"meta mark (?:and|&) {MARK} == {MARK}\b.*\baccept\b")
# Where packets carry the mark already: after nftnet's
# forward chain, or for the bridge family after br_netfilter (bridge priority 0), which runs
# the inet forward hooks.
_MARKED_FROM = {"bridge": 1}


@dataclass(frozen=True)
class ForeignDrop:
    """A base chain of another table on the forward hook with policy drop."""

    family: str
    table: str
    chain: str
    priority: int
    honoured: bool  # it already accepts packets that carry nftnet's mark

    @property
    def spec(self) -> str:
        return f"{self.family} {self.table} {self.chain}"

    @property
    def iptables(self) -> bool:
        """iptables-nft's own chain, best changed with iptables."""
        return self.family in ("ip", "ip6") and self.table == "filter" and self.chain == "FORWARD"

    @property
    def remedy(self) -> str:
        """The one rule that makes this chain accept what nftnet accepted."""
        if self.iptables:
            tool = "iptables" if self.family == "ip" else "ip6tables"
            return f"{tool} -I FORWARD -m mark --mark {MARK}/{MARK} -j ACCEPT"
        return f"nft insert rule {self.spec} meta mark and {MARK} == {MARK} accept"

    @property
    def marked_from(self) -> int:
        """The lowest priority at which this chain sees packets already marked."""
        return _MARKED_FROM.get(self.family, names.PRIO_FORWARD + 1)

    @property
    def too_early(self) -> bool:
        return self.priority < self.marked_from

    def message(self) -> str:
        what = "iptables' FORWARD chain" if self.iptables else "chain"
        head = f"{what} {self.spec} (policy drop, priority {self.priority})"
        if self.honoured and not self.too_early:
            return f"{head} accepts packets with nftnet's mark {MARK}: fine"
        text = f"{head} drops container traffic that nftnet lets through"
        if self.too_early:
            text += (f"; it sees packets before nftnet marks them: give it "
                     f"priority {self.marked_from} or later, and")
        return f"{text}; add this rule to it:\n    {self.remedy}"

    def to_json(self) -> dict[str, Any]:
        return {"chain": self.spec, "priority": self.priority, "iptables": self.iptables,
                "honoured": self.honoured, "too_early": self.too_early, "remedy": self.remedy,
                "message": self.message()}


def foreign_drops(nft: NftBackend) -> list[ForeignDrop]:
    """Every base chain outside nftnet's table on hook forward with policy drop, any family."""
    out = []
    for obj in nft.list("chains") or []:
        c = obj.get("chain", {})
        if c.get("hook") != "forward" or c.get("policy") != "drop":
            continue
        if (c["family"], c["table"]) == (names.FAMILY, names.TABLE):
            continue  # nftnet's own chain changed: drift, which check reports
        out.append(ForeignDrop(c["family"], c["table"], c["name"], int(c["prio"]),
                               _honours(nft, c)))
    return out


def _honours(nft: NftBackend, chain: dict[str, Any]) -> bool:
    try:
        rules = nft.chain_rules_text(chain["name"], f"{chain['family']} {chain['table']}")
    except TransactionError:  # a name nft 1.0.6 cannot parse (no quoting)
        return False
    return any(_HONOURS.search(text) for _, text in rules or [])  # None: gone meanwhile
