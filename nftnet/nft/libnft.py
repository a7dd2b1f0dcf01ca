"""The only module that talks to libnftables: the kernel's ``NftBackend`` (nft/backend.py).

One ``run`` is one ``json_cmd`` call, i.e. one netlink batch that the kernel commits whole or
not at all.
"""

from __future__ import annotations

import json
import re

import nftables

from nftnet import names
from nftnet.errors import TransactionError
from nftnet.nft import generation
from nftnet.nft.backend import TABLE_SPEC, Rules, refused
from nftnet.nft.objects import Json

# A rule line of `nft -a list chain`: two tabs, the rule, then its handle (the last one: a
# comment may contain "# handle").
_RULE_LINE = re.compile(r"^\t\t(.*) # handle (\d+)$", re.MULTILINE)
_WORDS = {"table": 2, "chain": 3}  # after the kind: family, (table,) name
_NAME = re.compile(r"[\w./-]+$")  # a name nft 1.0.6 takes unquoted


class LibNft:
    def __init__(self) -> None:
        self._nft = nftables.Nftables()
        self._nft.set_json_output(True)
        self._nft.set_handle_output(False)
        self._generation = generation.Reader()

    def run(self, batch: Json) -> None:
        """Apply a batch; raise TransactionError with libnftables' message if it is refused."""
        rc, _, err = self._nft.cmd(json.dumps(batch, separators=(",", ":")))
        if rc != 0:
            raise refused(err)

    def run_text(self, commands: str) -> str:
        """Apply nft text commands (used for user rules, which people write in nft syntax);
        what they print (a list command does) is returned."""
        rc, out, err = self._nft.cmd(commands)
        if rc != 0:
            raise TransactionError(err.strip())
        return str(out)

    def list(self, what: str = TABLE_SPEC) -> list[Json] | None:
        """The kernel's JSON listing of ``what``; None when it does not exist."""
        rc, out, err = self._nft.cmd(f"list {what}")
        if rc != 0:
            return self._absent(what, err)
        objects: list[Json] = json.loads(out)["nftables"]
        return objects[1:]  # drop metainfo

    def list_text(self, what: str = TABLE_SPEC) -> str:
        rc, out, err = self._text(f"list {what}")
        if rc != 0:
            raise TransactionError(f"cannot list {what}: {err.strip()}")
        return str(out)

    def chain_rules_text(self, chain: str, table: str = names.TABLE_REF
                         ) -> Rules | None:
        """(handle, rule in nft syntax) for each rule of ``chain`` in ``table``, in order;
        None when the chain (or the table) does not exist."""
        what = f"chain {table} {chain}"
        rc, out, err = self._text(f"list {what}", handles=True)
        if rc != 0:
            return self._absent(what, err)
        return [(int(handle), rule) for rule, handle in _RULE_LINE.findall(out)]

    def generation(self) -> str | None:
        """The kernel's token for this namespace (nft/generation.py), on a socket kept
        open."""
        return self._generation.read()

    def _text(self, command: str, handles: bool = False) -> tuple[int, str, str]:
        """``command`` with nft text output (and handles) instead of JSON."""
        self._nft.set_json_output(False)
        self._nft.set_handle_output(handles)
        try:
            rc, out, err = self._nft.cmd(command)
        finally:
            self._nft.set_json_output(True)
            self._nft.set_handle_output(False)
        return rc, out, err

    def _absent(self, what: str, err: str) -> None:
        """None if the table or chain ``what`` names is not in a listing of them all; else
        TransactionError with ``err``, why listing it failed.

        libnftables 1.0.6 says "not found" only in its message (its errno is stale: 11 after
        a failed lookup of its cache), so a listing that succeeds decides, not the wording.
        """
        kind, *spec = what.split()
        if len(spec) == _WORDS.get(kind) and all(_NAME.match(word) for word in spec):
            rc, out, _ = self._nft.cmd(f"list {kind}s")
            if rc == 0 and spec not in [_spec(o[kind]) for o in json.loads(out)["nftables"]
                                        if kind in o]:
                return None
        raise TransactionError(f"cannot list {what}: {err.strip()}")


def _spec(obj: Json) -> list[str]:
    """The words naming a listed table or chain: family, (table,) name."""
    return [obj["family"], *([obj["table"]] if "table" in obj else []), obj["name"]]
