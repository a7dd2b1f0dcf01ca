"""A transaction records operations; rendering turns them into one libnftables JSON batch.

Nothing touches the kernel here: ``Backend.run`` sends the whole batch in one ``json_cmd`` call,
which the kernel commits entirely or not at all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from nftnet import names
from nftnet.nft.objects import Json, NftObject

Verb = Literal["add", "insert", "flush", "delete"]


@dataclass
class Transaction:
    family: str = names.FAMILY
    table: str = names.TABLE
    ops: list[tuple[Verb, NftObject]] = field(default_factory=list)

    def add(self, obj: NftObject) -> None:
        self.ops.append(("add", obj))

    def insert(self, obj: NftObject) -> None:
        self.ops.append(("insert", obj))

    def flush(self, obj: NftObject) -> None:
        self.ops.append(("flush", obj))

    def delete(self, obj: NftObject) -> None:
        self.ops.append(("delete", obj))

    def to_json(self) -> Json:
        """The batch as libnftables JSON; deterministic for the same operations."""
        out: list[Any] = [{"metainfo": {"json_schema_version": 1}}]
        for verb, obj in self.ops:
            body = {"family": self.family, "table": self.table} | obj.body()
            if obj.kind == "table":
                body = {"family": self.family, "name": self.table}
            out.append({verb: {obj.kind: body}})
        return {"nftables": out}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=None, separators=(",", ":"))
