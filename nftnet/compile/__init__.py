"""The pure compiler: a validated config (and host facts) in, one transaction out."""

from __future__ import annotations

from collections.abc import Sequence

from nftnet.compile.elements import elements
from nftnet.compile.ruleset import BASE_CHAINS, REGULAR_CHAINS, USER, HostFacts, rules, sets
from nftnet.config.model import Config
from nftnet.nft.objects import Elements, Json, Table, user_rule
from nftnet.nft.transaction import Transaction

__all__ = ["HostFacts", "compile_config"]


def compile_config(
    config: Config, host: HostFacts, user_rules: Sequence[Json | list[Json]] | None = None
) -> Transaction:
    """The whole desired table as one batch that replaces what nftnet owns, atomically.

    Chains and sets are added (a no-op when present) and flushed, then refilled; the table is
    never flushed, so the user chain keeps hand-added rules unless ``user_rules`` (rules as
    nft listed them, see ``user_rule``) is given, in which case it is replaced by exactly
    those. They come last: they may name nftnet's sets, which nft must know first.
    """
    tx = Transaction()
    tx.add(Table())
    for chain in (*BASE_CHAINS, *REGULAR_CHAINS):
        tx.add(chain)
        tx.flush(chain)
    tx.add(USER)
    if user_rules is not None:
        tx.flush(USER)
    elems = elements(config)
    for s in sets():
        tx.add(s)
        tx.flush(s)
        if elems.get(s.name):
            tx.add(Elements(s.name, tuple(elems[s.name])))
    for rule in rules(host):
        tx.add(rule)
    for recorded in user_rules or ():
        tx.add(user_rule(recorded))
    return tx
