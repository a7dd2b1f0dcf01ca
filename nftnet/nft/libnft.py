"""The only module that talks to libnftables.

One ``run`` is one ``json_cmd`` call, i.e. one netlink batch that the kernel commits whole or
not at all.
"""

from __future__ import annotations

import json
import re

import nftables

from nftnet import names
from nftnet.errors import TransactionError
from nftnet.nft.objects import Json

# A rule line of `nft -a list chain`: two tabs, the rule, then its handle (the last one: a
# comment may contain "# handle").
_RULE_LINE = re.compile(r"^\t\t(.*) # handle (\d+)$", re.MULTILINE)


class LibNft:
    def __init__(self) -> None:
        self._nft = nftables.Nftables()
        self._nft.set_json_output(True)
        self._nft.set_handle_output(False)

    def run(self, batch: Json) -> None:
        """Apply a batch; raise TransactionError with libnftables' message if it is refused."""
        rc, _, err = self._nft.cmd(json.dumps(batch, separators=(",", ":")))
        if rc != 0:
            raise TransactionError(f"the kernel refused the batch; nothing was changed:\n{err}")

    def run_text(self, commands: str) -> str:
        """Apply nft text commands (used for user rules, which people write in nft syntax);
        what they print (a list command does) is returned."""
        rc, out, err = self._nft.cmd(commands)
        if rc != 0:
            raise TransactionError(err.strip())
        return str(out)

    def list(self, what: str = f"table {names.FAMILY} {names.TABLE}") -> list[Json] | None:
        """The kernel's JSON listing of ``what``; None when it does not exist."""
        rc, out, err = self._nft.cmd(f"list {what}")
        if rc != 0:
            if "No such file or directory" in err:
                return None
            raise TransactionError(f"cannot list {what}: {err.strip()}")
        objects: list[Json] = json.loads(out)["nftables"]
        return objects[1:]  # drop metainfo

    def list_text(self, what: str = f"table {names.FAMILY} {names.TABLE}") -> str:
        self._nft.set_json_output(False)
        try:
            rc, out, err = self._nft.cmd(f"list {what}")
        finally:
            self._nft.set_json_output(True)
        if rc != 0:
            raise TransactionError(f"cannot list {what}: {err.strip()}")
        return str(out)

    def chain_rules_text(self, chain: str) -> list[tuple[int, str]] | None:
        """(handle, rule in nft syntax) for each rule of ``chain`` in nftnet's table, in order;
        None when the chain (or the table) does not exist."""
        self._nft.set_json_output(False)
        self._nft.set_handle_output(True)
        try:
            rc, out, err = self._nft.cmd(f"list chain {names.FAMILY} {names.TABLE} {chain}")
        finally:
            self._nft.set_json_output(True)
            self._nft.set_handle_output(False)
        if rc != 0:
            if "No such file or directory" in err:
                return None
            raise TransactionError(f"cannot list chain {chain}: {err.strip()}")
        return [(int(handle), rule) for rule, handle in _RULE_LINE.findall(out)]

    def user_chain(self) -> list[Json] | None:
        """The user chain's rules as nftnet records them, to put back as the chain had them:
        each rule's body (``rule_body``) and, for messages, its nft text (``text``); None
        when the chain does not exist."""
        listing = self.list(f"chain {names.FAMILY} {names.TABLE} {names.USER_CHAIN}")
        if listing is None:
            return None
        texts = dict(self.chain_rules_text(names.USER_CHAIN) or [])
        return [rule_body(o["rule"]) | ({"text": texts[o["rule"]["handle"]]}
                                         if o["rule"].get("handle") in texts else {})
                for o in listing if "rule" in o]


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
