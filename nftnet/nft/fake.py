"""``FakeNft``: an nftables ruleset in memory, an ``NftBackend`` for the engine's unit tests.

A batch is applied command by command to a copy of the tables, kept only if every command
succeeds (else TransactionError, as from the kernel, and nothing changed); the generation
moves on with each batch that changed something, as the kernel's does (adding a table or an
element present already changes nothing; adding a chain or a set does). Listings are in
libnftables' JSON shape: handles per table in creation order, counters at zero, sets' comments
left out (nft 1.0.6 does not list them). tests/kernel/test_fake_kernel.py sends the same
batches to the kernel and compares.

It models tables, chains (base and regular), rules, sets and maps (fake_tables.py,
fake_sets.py) with the verbs add, flush and delete, and the references the kernel checks: a
rule's ``@set``, a ``jump``/``goto`` (also in a verdict map) to a chain that must exist and
be a regular chain; a chain or set in use cannot be deleted. It does not check what rules say
(any expression is taken), types beyond a rough check of elements, or the inet family's
hooks; it raises NotImplementedError for what it does not model (insert, replace, create,
rule positions, flowtables and stateful objects, set flags other than interval).
``FakeScratch`` stands in for the scratch kernel (nft/scratch.py).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator

from nftnet import names
from nftnet.errors import TransactionError
from nftnet.nft.backend import (
    TABLE_SPEC,
    USER_CHAIN_SPEC,
    RuleProblem,
    Rules,
    refused,
    user_chain_rules,
)
from nftnet.nft.fake_sets import Refused
from nftnet.nft.fake_tables import STEPS, Chain, Table, Work
from nftnet.nft.fake_text import SyntaxRefused, parse_rule, render_rule
from nftnet.nft.objects import Json, Rule
from nftnet.nft.transaction import Transaction

_NAMESPACES = itertools.count(1)


class FakeNft:
    """One network namespace's ruleset, in memory; ``committed`` holds each batch it applied."""

    def __init__(self) -> None:
        self.tables: dict[tuple[str, str], Table] = {}
        self.committed: list[Json] = []
        self._last_table = 0
        self._namespace = next(_NAMESPACES)
        self._generation = 1

    def run(self, batch: Json) -> None:
        """As the kernel's; the error names the first command refused by libnftables, or if
        none, the first refused by the kernel (which libnftables checks the batch before)."""
        batch = json.loads(json.dumps(batch))  # what the kernel gets is a copy
        work = Work({k: t.copy() for k, t in self.tables.items()}, self._last_table)
        changed, kernel_error = False, None
        for cmd in batch["nftables"]:
            if "metainfo" in cmd:
                continue
            (verb, obj), = cmd.items()
            (kind, body), = obj.items()
            step = STEPS.get((verb, kind))
            if step is None:
                raise NotImplementedError(f"FakeNft does not model {verb} {kind}")
            try:
                work.next((verb, kind, body["family"], body.get("table", ""), body.get("name", "")))
                changed |= step(work, kind, body)
            except Refused as e:
                if not e.by_kernel:
                    raise refused(f"Error: {e}\n{json.dumps(cmd)}") from None
                kernel_error = kernel_error or f"Error: {e}\n{json.dumps(cmd)}"
        try:
            work.next(())
        except Refused as e:
            raise refused(f"Error: {e}") from None
        if kernel_error:
            raise refused(kernel_error)
        self.tables, self._last_table = work.tables, work.last_table
        self.committed.append(batch)
        if changed:
            self._generation += 1

    def list(self, what: str = TABLE_SPEC) -> list[Json] | None:
        kind, *spec = what.split()
        if kind == "chains" and not spec:
            out = [_chain_json(t, c) for t in self.tables.values() for c in t.chains.values()]
        elif kind == "table" and len(spec) == 2:
            table = self.tables.get((spec[0], spec[1]))
            out = None if table is None else list(_table_json(table))
        elif kind == "chain" and len(spec) == 3:
            table = self.tables.get((spec[0], spec[1]))
            chain = table.chains.get(spec[2]) if table else None
            out = None if table is None or chain is None else [
                _chain_json(table, chain), *_rules_json(table, chain)]
        else:
            raise NotImplementedError(f"FakeNft does not list {what!r}")
        return None if out is None else json.loads(json.dumps(out))

    def chain_rules_text(self, chain: str, table: str = names.TABLE_REF
                         ) -> Rules | None:
        """As the kernel's, but rules outside fake_text.py's subset of nft show as JSON."""
        family, _, name = table.partition(" ")
        found = self.tables.get((family, name))
        if found is None or chain not in found.chains:
            return None
        return [(r["handle"], render_rule(r["expr"], r.get("comment")))
                for r in found.chains[chain].rules]

    def generation(self) -> str | None:
        """``fake:NAMESPACE:N``: the same form as the kernel's token, so generation.follows
        works on it."""
        return f"fake:{self._namespace}:{self._generation}"


# -- listings -----------------------------------------------------------------------------


def _table_json(table: Table) -> Iterator[Json]:
    yield {"table": {"family": table.family, "name": table.name, "handle": table.handle}}
    for s in table.sets.values():
        yield {s.kind: s.listed(table.family, table.name)}
    for chain in table.chains.values():
        yield _chain_json(table, chain)
    for chain in table.chains.values():
        yield from _rules_json(table, chain)


def _chain_json(table: Table, chain: Chain) -> Json:
    return {"chain": {"family": table.family, "table": table.name, "name": chain.name,
                      "handle": chain.handle, **(chain.base or {})}}


def _rules_json(table: Table, chain: Chain) -> Iterator[Json]:
    for rule in chain.rules:
        yield {"rule": {"family": table.family, "table": table.name, "chain": chain.name}
               | rule}



class FakeScratch:
    """A ``Scratch`` in memory: each call builds its batch in a fresh FakeNft.

    User rules are parsed by fake_text.py: its subset of nft as nft parses it, any other text
    taken as one opaque expression that only the fakes accept. A rule is refused for text nft
    refuses for sure (an empty rule, two commands, a quote left open, a port beyond 65535), and
    where FakeNft refuses adding it to the user chain (a set or a chain that is not there).
    """

    def parse_user_rules(self, batch: Json, rules: list[str]
                         ) -> tuple[list[Json], dict[int, RuleProblem]]:
        nft = FakeNft()
        nft.run(batch)
        problems: dict[int, RuleProblem] = {}
        for i, text in enumerate(rules):
            try:
                tx = Transaction()
                tx.add(Rule(names.USER_CHAIN, tuple(parse_rule(text))))
                nft.run(tx.to_json())
            except SyntaxRefused as e:
                problems[i] = RuleProblem(True, str(e))
            except TransactionError as e:  # FakeNft.run's "Error: ..." line
                problems[i] = RuleProblem(True, str(e).splitlines()[1])
        return user_chain_rules(nft.list(USER_CHAIN_SPEC)), problems

    def listing(self, batch: Json) -> list[Json]:
        nft = FakeNft()
        nft.run(batch)
        return nft.list() or []
