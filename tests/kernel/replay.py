"""One batch on a backend and what it then shows, so that the kernel and FakeNft compare.

``python -m tests.kernel.replay`` (in a namespace) runs LibNft: each line of stdin a batch,
each line of stdout what ``step`` says after it.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from nftnet import names
from nftnet.errors import TransactionError
from nftnet.nft.backend import USER_CHAIN_SPEC, NftBackend
from nftnet.nft.objects import Json


def step(nft: NftBackend, batch: Json) -> dict[str, Any]:
    """Run ``batch``: why it was refused (the kernel's errno), how many commits it made, and
    the listings nftnet reads, normalised."""
    before = nft.generation()
    reason = None
    try:
        nft.run(batch)
    except TransactionError as e:
        # The reason, whether libnftables found it or the kernel ("Could not process rule"),
        # without a hint ("; did you mean ...").
        found = re.search(r"Error: (?:Could not process rule: )?([^;\n]*)", str(e))
        reason = found.group(1) if found else str(e)
    now = nft.generation()
    assert before is not None and now is not None
    table = nft.list()
    ranks = ranks_of(table)
    seen = {"refused": reason, "commits": _count(now) - _count(before),
            "table": normalised(table, ranks), "chains": normalised(nft.list("chains"), ranks),
            "user": normalised(nft.list(USER_CHAIN_SPEC), ranks),
            "user_text": [(ranks.get(h, h), text)
                          for h, text in nft.chain_rules_text(names.USER_CHAIN) or []]}
    return json.loads(json.dumps(seen))  # as it comes from the child


def ranks_of(table: list[Json] | None) -> dict[int, int]:
    """Handle -> its rank in nftnet's table: the kernel spends handles on refused batches
    too, so only their order (the order of creation) is the same."""
    handles = sorted(body["handle"] for obj in table or [] for kind, body in obj.items()
                     if kind != "table")
    return {h: i for i, h in enumerate(handles, 1)}


def _count(token: str) -> int:
    return int(token.rpartition(":")[2])


def normalised(listing: list[Json] | None, ranks: dict[int, int]) -> list[Json] | None:
    """Handles ranked; without the table's handle (a counter of the namespace); elements
    sorted (a hash set lists in the kernel's order)."""
    if listing is None:
        return None
    out = []
    for obj in listing:
        (kind, body), = obj.items()
        body = dict(body)
        if kind == "table":
            body.pop("handle")
        elif (body["family"], body["table"]) == (names.FAMILY, names.TABLE):
            body["handle"] = ranks.get(body["handle"], body["handle"])
        if "elem" in body:
            body["elem"] = sorted(body["elem"], key=json.dumps)
        out.append({kind: body})
    return out


if __name__ == "__main__":
    from nftnet.nft.libnft import LibNft

    kernel = LibNft()
    for line in sys.stdin:
        print(json.dumps(step(kernel, json.loads(line))), flush=True)
