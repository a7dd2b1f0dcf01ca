"""A throwaway kernel: run libnftables in a private network namespace of a child process.

nftnet uses it for what only nft itself can do and that must not touch the host: parsing the
user's rules (written in nft syntax) into JSON, and showing a batch as nft text, also without
root (``unshare -rn`` gives an unprivileged user its own empty ruleset).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from nftnet import names
from nftnet.errors import NftnetError
from nftnet.nft.objects import Json


def _request(payload: Json) -> Json:
    unshare = ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-rn"]
    cmd = [*unshare, sys.executable, "-m", "nftnet.nft.scratch"]
    try:
        proc = subprocess.run(cmd, input=json.dumps(payload), capture_output=True, text=True,
                              timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise NftnetError(f"cannot start a scratch network namespace: {e}") from None
    if proc.returncode != 0:
        raise NftnetError(
            "cannot use a scratch network namespace (unshare needs root or unprivileged user "
            f"namespaces): {proc.stderr.strip()}"
        )
    result: Json = json.loads(proc.stdout)
    return result


def parse_user_rules(batch: Json, rules: list[str]) -> tuple[list[list[Any]], dict[int, str]]:
    """JSON expressions of ``rules`` (nft text) inside the table ``batch`` builds.

    Returns (expressions, errors by rule index); rules may refer to nftnet's sets.
    """
    out = _request({"batch": batch, "user_rules": rules})
    return out["user_rules"], {int(k): v for k, v in out["errors"].items()}


def render_text(batch: Json) -> str:
    """The table ``batch`` builds, as the kernel lists it in nft syntax."""
    return str(_request({"batch": batch, "text": True})["text"])


def listing(batch: Json) -> list[Json]:
    """The table ``batch`` builds, as the kernel lists it in JSON: what the live table must
    list when it holds the same (check compares listing with listing, never with the batch)."""
    return list(_request({"batch": batch, "list": True})["listing"])


def _child(payload: Json) -> Json:
    from nftnet.nft.backend import user_chain_rules
    from nftnet.nft.libnft import LibNft

    nft = LibNft()
    nft.run(payload["batch"])
    out: Json = {"errors": {}, "user_rules": []}
    for i, rule in enumerate(payload.get("user_rules") or []):
        try:
            nft.run_text(f"add rule {names.FAMILY} {names.TABLE} {names.USER_CHAIN} {rule}")
        except NftnetError as e:
            out["errors"][i] = str(e).splitlines()[0] if str(e) else "nft cannot parse it"
    out["user_rules"] = user_chain_rules(nft.list(f"chain {names.FAMILY} {names.TABLE} "
                                                  f"{names.USER_CHAIN}"))
    if payload.get("text"):
        out["text"] = nft.list_text()
    if payload.get("list"):
        out["listing"] = nft.list()
    return out


if __name__ == "__main__":
    json.dump(_child(json.load(sys.stdin)), sys.stdout)
