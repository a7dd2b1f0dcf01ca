"""The nftables kernel boundary as the engine sees it: a few calls, two implementations.

``LibNft`` (nft/libnft.py) is the kernel through libnftables; ``FakeNft`` (nft/fake.py) holds
a ruleset in memory, so that the engine's logic is tested without root, and the kernel tests
prove the fake (tests/kernel/test_fake_kernel.py). The scratch kernel (nft/scratch.py, a
module satisfying ``Scratch``) is nft's own parser in a throwaway namespace; ``FakeScratch``
(nft/fake.py) stands in for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from nftnet import names
from nftnet.errors import TransactionError
from nftnet.nft.objects import Json

TABLE_SPEC = f"table {names.TABLE_REF}"
USER_CHAIN_SPEC = f"chain {names.TABLE_REF} {names.USER_CHAIN}"
Rules = list[tuple[int, str]]  # (handle, rule in nft syntax), in chain order


class NftBackend(Protocol):
    """One network namespace's nftables ruleset."""

    def run(self, batch: Json) -> None:
        """Apply a libnftables JSON batch whole or not at all; TransactionError (saying why)
        if any command of it is refused, and then nothing changed."""

    def list(self, what: str = TABLE_SPEC) -> list[Json] | None:
        """The JSON objects of ``list WHAT`` (without metainfo), where ``what`` is ``table
        FAMILY NAME``, ``chain FAMILY TABLE NAME`` or ``chains`` (every table's); None when
        that table or chain does not exist; TransactionError if it cannot be listed."""

    def chain_rules_text(self, chain: str, table: str = names.TABLE_REF
                         ) -> Rules | None:
        """(handle, rule in nft syntax) of each rule of ``chain`` in ``table`` ("FAMILY
        NAME"), in order; None when the chain (or its table) does not exist."""

    def generation(self) -> str | None:
        """A token that changes with every committed batch (nft/generation.py); None if it
        cannot be read. ``generation.follows`` tells one commit apart from several."""


@dataclass(frozen=True)
class RuleProblem:
    """Why an entry is not a user rule: nft refused it (``refused``: nft's whole message), or
    nft read something else than exactly one rule from it (``message`` says what)."""

    refused: bool
    message: str

    def describe(self, rule: str) -> str:
        """The problem as a config error says it, after the entry's path."""
        if self.refused:
            return f"nft cannot use {rule!r}: {self.message.splitlines()[0]}"
        return f"{rule!r} is not one nft rule: {self.message}"


class Scratch(Protocol):
    """A throwaway kernel: what only nft itself can say, without touching the host."""

    def parse_user_rules(self, batch: Json, rules: list[str]
                         ) -> tuple[list[Json], dict[int, RuleProblem]]:
        """Each of ``rules`` (nft text) as the one rule nft makes of it in the user chain of
        the table ``batch`` builds (its body: ``rule_body``), and the problem of each entry
        that is not exactly one rule nft takes, by index."""

    def listing(self, batch: Json) -> list[Json]:
        """The table ``batch`` builds, as a fresh kernel lists it in JSON."""


def refused(detail: str) -> TransactionError:
    """The error of a refused batch, the same from every backend."""
    return TransactionError(f"the kernel refused the batch; nothing was changed:\n{detail}")


def rule_body(rule: Json) -> Json:
    """What a listed rule is, apart from where it is (family, table, chain, handle): its
    expressions and its comment, all that adding it again needs."""
    return {k: rule[k] for k in ("expr", "comment") if k in rule}


def user_chain_rules(listing: list[Json] | None) -> list[Json]:
    """The bodies (``rule_body``) of the user chain's rules in a table listing, in order."""
    return [
        rule_body(o["rule"])
        for o in listing or []
        if "rule" in o and o["rule"]["chain"] == names.USER_CHAIN
    ]


def user_chain(nft: NftBackend) -> list[Json] | None:
    """The user chain's rules as nftnet records them, to put back as the chain had them: each
    rule's body (``rule_body``) and, for messages, its nft text (``text``); None when the
    chain does not exist."""
    listing = nft.list(USER_CHAIN_SPEC)
    if listing is None:
        return None
    texts = dict(nft.chain_rules_text(names.USER_CHAIN) or [])
    return [rule_body(o["rule"]) | ({"text": texts[o["rule"]["handle"]]}
                                     if o["rule"].get("handle") in texts else {})
            for o in listing if "rule" in o]
