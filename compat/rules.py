"""Translate DOCKER-USER style iptables rules to nft rule text for an `inet` table, and back.

Users bring their DOCKER-USER rules as iptables arguments; nftnet keeps them as nft rules and can
export them again in iptables-save form. Both directions go through one neutral form
(`compat.rules_model.Rule`), so `iptables_to_nft(nft_to_iptables(x)) == x` for what we emit.
Pure Python: no subprocess, no host lookups (numeric ports, fixed protocol table).
"""

from __future__ import annotations

from typing import get_args

from compat.rules_iptables import parse_iptables, render_iptables
from compat.rules_model import Family, RuleTranslationError
from compat.rules_nft import render_nft
from compat.rules_nft_parse import parse_nft

__all__ = ["Family", "RuleTranslationError", "iptables_to_nft", "nft_to_iptables"]


def iptables_to_nft(rule: str, family: Family = "ip") -> str:
    """iptables rule arguments (optionally after `-A CHAIN`) -> one nft rule for an inet chain.

    The result only matches `family`'s packets, as the iptables (ip) or ip6tables (ip6) rule did.
    """
    return render_nft(parse_iptables(rule, _family(family)))


def nft_to_iptables(rule: str, family: Family = "ip") -> str:
    """nft rule text (ours, `nft list`'s, or iptables-translate's) -> iptables-save arguments."""
    return render_iptables(parse_nft(rule, _family(family)))


def _family(family: str) -> Family:
    if family not in get_args(Family):
        raise RuleTranslationError(f"unsupported family '{family}': expected 'ip' or 'ip6'")
    return family  # type: ignore[return-value]
