"""User rules written in another firewall's language, translated to nft by plugins.

nftnet keeps user rules as nft text. Other languages (compat's ``iptables``) come from installed
packages through the ``nftnet.rule_languages`` entry-point group, so nftnet never imports them.
A translator is ``fn(rule: str, family: str) -> str``: one nft rule for an ``inet`` chain that
matches only ``family``'s packets ("ip" or "ip6"), or ValueError with a message naming what it
cannot translate.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from importlib.metadata import EntryPoints

GROUP = "nftnet.rule_languages"
NFT = "nft"
FAMILIES = ("ip", "ip6")
Translator = Callable[[str, str], str]
# A user_rules entry as written: nft text, or {language: text[, family: ip|ip6]}.
Entry = str | Mapping[str, str]


def _entry_points(**match: str) -> EntryPoints:
    from importlib.metadata import entry_points  # on first use: its import costs ~8 ms

    return entry_points(**match)


def languages() -> list[str]:
    """nft and every installed language, sorted."""
    return sorted({NFT, *(ep.name for ep in _entry_points(group=GROUP))})


@cache
def _translator(language: str) -> Translator:
    found = _entry_points(group=GROUP, name=language)
    if not found:
        raise ValueError(f"unknown rule language '{language}' (installed: "
                         f"{', '.join(languages())})")
    fn: Translator = next(iter(found)).load()
    return fn


def to_nft(language: str, rule: str, family: str | None = None) -> str:
    """``rule`` in ``language`` as one nft rule; ValueError says why it cannot be."""
    if language == NFT:
        if family is not None:
            raise ValueError("family applies to translated rules only; an nft rule names its "
                             "own family (e.g. meta nfproto ipv6)")
        return rule
    if (family or "ip") not in FAMILIES:
        raise ValueError(f"unsupported family '{family}': expected ip or ip6")
    return _translator(language)(rule, family or "ip")


def entry_to_nft(entry: Entry) -> str:
    """One user_rules entry (see ``Entry``) as nft text."""
    if isinstance(entry, str):
        return entry
    ((language, rule),) = ((k, v) for k, v in entry.items() if k != "family")
    return to_nft(language, rule, entry.get("family"))
