"""Plain records for the nftables objects nftnet writes, and their libnftables JSON form.

Objects do not know their table: the transaction supplies family and table when rendering, so
the compiler never repeats them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nftnet import names

Json = dict[str, Any]


@dataclass(frozen=True)
class Table:
    kind = "table"

    def body(self) -> Json:
        return {}


@dataclass(frozen=True)
class Chain:
    """A chain; base chains give type, hook and priority (policy is always accept)."""

    kind = "chain"
    name: str
    type: str | None = None
    hook: str | None = None
    priority: int | None = None
    comment: str | None = None

    def body(self) -> Json:
        out: Json = {"name": self.name}
        if self.hook is not None:
            out |= {"type": self.type, "hook": self.hook, "prio": self.priority, "policy": "accept"}
        return out


@dataclass(frozen=True)
class Rule:
    """A rule; ``handle``, in an insert, is the rule it goes before (in an add: after)."""

    kind = "rule"
    chain: str
    expr: tuple[Json, ...]
    comment: str | None = None
    handle: int | None = None

    def body(self) -> Json:
        out: Json = {"chain": self.chain, "expr": list(self.expr)}
        if self.comment:
            out["comment"] = self.comment
        if self.handle is not None:
            out["handle"] = self.handle
        return out


def user_rule(recorded: Json | list[Json], handle: int | None = None) -> Rule:
    """A rule of the user chain from the body nft listed for it (``expr``, ``comment``; any
    ``text`` is for messages), or from a bare expression list, as states recorded before
    comments were kept."""
    if isinstance(recorded, list):
        return Rule(names.USER_CHAIN, tuple(recorded), handle=handle)
    return Rule(names.USER_CHAIN, tuple(recorded["expr"]), recorded.get("comment"), handle)


@dataclass(frozen=True)
class Set:
    """A set, or a map when ``data`` names the value type ("verdict" for a verdict map)."""

    name: str
    type: tuple[str, ...]
    data: str | None = None
    interval: bool = False
    comment: str | None = None

    @property
    def kind(self) -> str:
        return "set" if self.data is None else "map"

    def body(self) -> Json:
        kind = self.type[0] if len(self.type) == 1 else list(self.type)
        out: Json = {"name": self.name, "type": kind}
        if self.data is not None:
            out["map"] = self.data
        if self.interval:
            out["flags"] = ["interval"]
        if self.comment:
            out["comment"] = self.comment
        return out


@dataclass(frozen=True)
class Elements:
    """Elements of one set or map; map elements are ``[key, value]`` pairs."""

    kind = "element"
    set: str
    items: tuple[Any, ...]

    def body(self) -> Json:
        return {"name": self.set, "elem": list(self.items)}


NftObject = Table | Chain | Rule | Set | Elements
