"""The tables of ``FakeNft`` (nft/fake.py) and the commands of a batch that change them.

Each command checks what the kernel checks (that its table, chain or set exists, that a chain
or set deleted is not in use, that jumps go to regular chains), raises Refused with the
kernel's message if not, and says whether it changed anything: the kernel's generation moves
on only then (adding a table or an element present already changes nothing; adding a chain or
a set records an update all the same).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from nftnet.nft.fake_sets import FakeSet, Refused
from nftnet.nft.objects import Json

ENOENT = "Could not process rule: No such file or directory"
_HOOK = ("type", "hook", "prio")


@dataclass
class Chain:
    name: str
    handle: int
    base: Json | None  # type, hook, prio and policy of a base chain
    rules: list[Json] = field(default_factory=list)  # {"handle", "comment"?, "expr"}


@dataclass
class Table:
    family: str
    name: str
    handle: int
    chains: dict[str, Chain] = field(default_factory=dict)
    sets: dict[str, FakeSet] = field(default_factory=dict)
    last_handle: int = 0

    def new_handle(self) -> int:
        self.last_handle += 1
        return self.last_handle

    def copy(self) -> Table:
        """A copy for a batch to change: new containers; the JSON it holds is never changed."""
        return replace(self, chains={n: replace(c, rules=list(c.rules))
                                     for n, c in self.chains.items()},
                       sets={n: replace(s, elems=dict(s.elems), given=[], added=set())
                             for n, s in self.sets.items()})

    def chain(self, name: str) -> Chain:
        if name not in self.chains:
            raise Refused(ENOENT)
        return self.chains[name]

    def set(self, name: str, kind: str | None = None) -> FakeSet:
        found = self.sets.get(name)
        if found is None or kind not in (None, found.kind):
            raise Refused("No such file or directory")
        return found

    def base_chains(self) -> dict[str, bool]:
        return {n: c.base is not None for n, c in self.chains.items()}

    def jumps(self, skip: str | None = None) -> set[str]:
        """Chains that rules (but those of ``skip``) or verdict maps jump or go to."""
        out = {t for c in self.chains.values() if c.name != skip for r in c.rules
               for t in _targets(r["expr"])}
        return out.union(*(s.references() for s in self.sets.values()))


# -- the commands: each changes the tables of a batch, says whether it changed anything ------


@dataclass
class Work:
    """The tables as a batch changes them."""

    tables: dict[tuple[str, str], Table]
    last_table: int  # the handle of the table made last
    previous: tuple[str, ...] = ()  # the command before: verb, kind, family, table, name
    adding: FakeSet | None = None  # the interval set it added to

    def next(self, command: tuple[str, ...]) -> None:
        """Before ``command``: the end of an add to an interval set that it does not go on."""
        if self.adding is not None and command != self.previous:
            adding, self.adding = self.adding, None
            adding.check_overlaps()
        self.previous = command

    def table(self, body: Json) -> Table:
        found = self.tables.get((body["family"], body.get("table", body.get("name"))))
        if found is None:
            raise Refused("No such file or directory")
        return found


def _add_table(work: Work, kind: str, body: Json) -> bool:
    if set(body) - {"family", "name"}:
        raise NotImplementedError(f"FakeNft does not model table flags: {body}")
    if (body["family"], body["name"]) in work.tables:
        return False
    work.last_table += 1
    work.tables[body["family"], body["name"]] = Table(body["family"], body["name"],
                                                        work.last_table)
    return True


def _delete_table(work: Work, kind: str, body: Json) -> bool:
    work.table(body)
    del work.tables[body["family"], body["name"]]
    return True


def _add_chain(work: Work, kind: str, body: Json) -> bool:
    table = work.table(body)
    base = {k: body[k] for k in (*_HOOK, "policy") if k in body} if "hook" in body else None
    old = table.chains.get(body["name"])
    if old is None:
        table.chains[body["name"]] = Chain(body["name"], table.new_handle(), base)
    elif base is not None:
        if old.base is None or any(old.base[k] != base[k] for k in _HOOK):
            raise Refused("Could not process rule: Operation not supported")
        old.base = base  # the policy may change
    return True  # the kernel records an update even where nothing differs


def _flush_chain(work: Work, kind: str, body: Json) -> bool:
    chain = work.table(body).chain(body["name"])
    had, chain.rules = bool(chain.rules), []
    return had


def _delete_chain(work: Work, kind: str, body: Json) -> bool:
    table = work.table(body)
    table.chain(body["name"])
    if body["name"] in table.jumps(skip=body["name"]):
        raise Refused("Could not process rule: Device or resource busy")
    del table.chains[body["name"]]
    return True


def _add_rule(work: Work, kind: str, body: Json) -> bool:
    if set(body) - {"family", "table", "chain", "expr", "comment"}:
        raise NotImplementedError(f"FakeNft adds rules at the end only: {body}")
    table = work.table(body)
    if body["chain"] not in table.chains:
        raise Refused("No such file or directory")
    for name in _set_refs(body["expr"]):
        table.set(name)
    bases = table.base_chains()
    for target in _targets(body["expr"]):
        if target not in bases:
            raise Refused(ENOENT)
        if bases[target]:
            raise Refused("Could not process rule: Operation not supported")
    rule = {"handle": table.new_handle()} | ({"comment": body["comment"]} if "comment" in body
                                             else {})
    table.chains[body["chain"]].rules.append(rule | {"expr": _zero_counters(body["expr"])})
    return True


def _delete_rule(work: Work, kind: str, body: Json) -> bool:
    chain = work.table(body).chain(body["chain"])
    kept = [r for r in chain.rules if r["handle"] != body.get("handle")]
    if len(kept) == len(chain.rules):
        raise Refused(ENOENT)
    chain.rules = kept
    return True


def _add_set(work: Work, kind: str, body: Json) -> bool:
    table = work.table(body)
    new = FakeSet.from_body(kind, body, 0)
    old = table.sets.get(new.name)
    if old is not None and not old.same_definition(new):
        raise Refused("Could not process rule: File exists")
    if old is None:
        new.handle = table.new_handle()
        table.sets[new.name] = old = new
    if body.get("elem"):
        work.adding = old if old.interval else None
        old.add(body["elem"], table.base_chains())
    return True  # the kernel records an update even where nothing differs


def _flush_set(work: Work, kind: str, body: Json) -> bool:
    found = work.table(body).set(body["name"], kind)
    had, found.elems = bool(found.elems), {}
    return had


def _delete_set(work: Work, kind: str, body: Json) -> bool:
    table = work.table(body)
    table.set(body["name"])
    if any(body["name"] in _set_refs(r["expr"]) for c in table.chains.values() for r in c.rules):
        raise Refused("Could not process rule: Device or resource busy")
    del table.sets[body["name"]]
    return True


def _add_element(work: Work, kind: str, body: Json) -> bool:
    table = work.table(body)
    found = table.set(body["name"])
    work.adding = found if found.interval else None
    return found.add(body["elem"], table.base_chains())


def _delete_element(work: Work, kind: str, body: Json) -> bool:
    work.table(body).set(body["name"]).delete(body["elem"])
    return True


STEPS: dict[tuple[str, str], Callable[[Work, str, Json], bool]] = {
    ("add", "table"): _add_table, ("delete", "table"): _delete_table,
    ("add", "chain"): _add_chain, ("flush", "chain"): _flush_chain,
    ("delete", "chain"): _delete_chain,
    ("add", "rule"): _add_rule, ("delete", "rule"): _delete_rule,
    **{(verb, kind): step for kind in ("set", "map") for verb, step in
       (("add", _add_set), ("flush", _flush_set), ("delete", _delete_set))},
    ("add", "element"): _add_element, ("delete", "element"): _delete_element,
}


def _walk(obj: Any) -> Iterator[Any]:
    yield obj
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _walk(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _walk(v)


def _set_refs(expr: list[Any]) -> set[str]:
    return {o[1:] for o in _walk(expr) if isinstance(o, str) and o.startswith("@")}


def _targets(expr: list[Any]) -> set[str]:
    return {o[verb]["target"] for o in _walk(expr) if isinstance(o, dict)
            for verb in ("jump", "goto") if isinstance(o.get(verb), dict)}


def _zero_counters(expr: list[Any]) -> list[Any]:
    return [{"counter": {"packets": 0, "bytes": 0}} if e == {"counter": None} else e
            for e in expr]
