"""A throwaway kernel: run libnftables in a private network namespace of a child process.

nftnet uses it for what only nft itself can do and that must not touch the host: parsing the
user's rules (written in nft syntax) into JSON, each proven to be exactly one rule before any
kernel that matters sees it (as JSON, never as the text), and showing a batch as nft text,
also without root (``unshare -rn`` gives an unprivileged user its own empty ruleset).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

from nftnet import names
from nftnet.errors import NftnetError, TransactionError
from nftnet.nft.backend import RuleProblem
from nftnet.nft.objects import Json

if TYPE_CHECKING:
    from nftnet.nft.libnft import LibNft

USER_CHAIN_SPEC = f"{names.TABLE_REF} {names.USER_CHAIN}"
# Elements kept of each set in a table rules are checked against: no rule needs any to be
# parsed, but one shows that an entry flushes the set or deletes from it (see one_rule), where
# all of them would make each of the listings one_rule compares slow for a large table.
SAMPLE = 1


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
    if "refused" in result:
        raise NftnetError(f"a scratch network namespace refused the table: {result['refused']}")
    return result


def parse_user_rules(batch: Json, rules: list[str]) -> tuple[list[Json], dict[int, RuleProblem]]:
    """Each of ``rules`` (nft text) as the one rule nft makes of it in the user chain of the
    table ``batch`` builds: its body as nft lists it (``backend.rule_body``); rules may name the
    table's sets. Returns (bodies of the rules that are, problems by index of the others)."""
    out = _request({"batch": batch, "user_rules": rules})
    return out["user_rules"], {int(k): RuleProblem(**v) for k, v in out["errors"].items()}


def copy_of(listing: list[Json]) -> Json:
    """A batch that makes a table such as a kernel ``listing`` shows, for a scratch namespace to
    check rules against: every object without handles and with its ``SAMPLE`` of elements
    (added once every chain a verdict may jump to exists), then every rule."""
    objects: list[Json] = []
    elements: list[Json] = []
    rules: list[Json] = []
    for obj in listing:
        ((kind, body),) = obj.items()
        body = {k: v for k, v in body.items() if k not in ("handle", "elem")}
        (rules if kind == "rule" else objects).append({"add": {kind: body}})
        if obj[kind].get("elem"):
            elements.append({"add": {"element": {
                **{k: body[k] for k in ("family", "table", "name")},
                "elem": obj[kind]["elem"][:SAMPLE]}}})
    return {"nftables": [{"metainfo": {"json_schema_version": 1}}, *objects, *elements, *rules]}


def render_text(batch: Json) -> str:
    """The table ``batch`` builds, as the kernel lists it in nft syntax."""
    return str(_request({"batch": batch, "text": True})["text"])


def listing(batch: Json) -> list[Json]:
    """The table ``batch`` builds, as the kernel lists it in JSON: what the live table must
    list when it holds the same (check compares listing with listing, never with the batch)."""
    return list(_request({"batch": batch, "list": True})["listing"])


class _NotOneRule(Exception):
    """nft read something else than exactly one rule from an entry."""


_SEPARATORS = "outside quotes, ';' and newlines end an nft command, '#' starts a comment"
TIME_LIMIT = 10  # seconds for nft to take one entry: a command such as monitor never returns


def one_rule(nft: LibNft, text: str) -> Json:
    """The rule nft makes of ``text`` at the end of the user chain, proven to be all nft read
    from it: nothing printed, nothing else changed in the whole ruleset (a rule of nftnet's
    before it in the chain, and the ``SAMPLE`` of each set, show flushes and deletions too),
    one more rule in the chain, and one of nftnet's added right after it on the same line (so
    '#' hid nothing). What stays unseen changes nothing here nor where only the body goes.
    Only the rule's body is used from here on, never ``text``; the chain is left as it was.
    Run it in a scratch namespace only: ``text`` may hold any nft commands.
    TransactionError: nft refused ``text``."""
    from nftnet.nft.backend import rule_body

    start, end = secrets.token_hex(8), secrets.token_hex(8)
    add = f"add rule {USER_CHAIN_SPEC} "
    nft.run_text(f'{add}counter comment "{start}"')
    listed = nft.list("ruleset") or []
    before = [_key(o) for o in listed]
    try:
        printed, whole = _bounded(nft, f'{add}{text}; {add}counter comment "{end}"'), True
    except TransactionError:  # nft's own message is about the entry alone, if it refuses it
        printed, whole = _bounded(nft, add + text), False
    after = [(o, _key(o)) for o in nft.list("ruleset") or []]
    old = set(before)
    made = [o["rule"] for o, key in after if key not in old and "rule" in o
            and (o["rule"]["family"], o["rule"]["table"], o["rule"]["chain"])
            == (names.FAMILY, names.TABLE, names.USER_CHAIN)]
    if printed.strip():
        raise _NotOneRule("nft runs a command in it that prints")
    if [key for o, key in after if o.get("rule") not in made] != before:
        raise _NotOneRule("nft does more with it than add one rule to the user chain")
    if not whole:
        raise _NotOneRule("nft takes it only at the end of its input")
    if not made or made[-1].get("comment") != end:
        raise _NotOneRule("nft reads part of it as a comment")
    if len(made) != 2:
        raise _NotOneRule(f"nft makes {len(made) - 1} rules of it")
    guard = next(o["rule"] for o in listed if o.get("rule", {}).get("comment") == start)
    nft.run_text("; ".join(f"delete rule {USER_CHAIN_SPEC} handle {r['handle']}"
                           for r in (guard, *made)))
    return rule_body(made[0])


def _key(obj: Json) -> str:
    return json.dumps(obj, sort_keys=True)


def _bounded(nft: LibNft, commands: str) -> str:
    """``nft.run_text`` within TIME_LIMIT: the alarm interrupts nft's wait, which then fails."""
    fired: list[int] = []
    signal.signal(signal.SIGALRM, lambda signum, _: fired.append(signum))
    signal.alarm(TIME_LIMIT)
    try:
        return nft.run_text(commands)
    except TransactionError:
        if fired:
            raise _NotOneRule(f"nft does not return from it within {TIME_LIMIT} s") from None
        raise
    finally:
        signal.alarm(0)


def _child(payload: Json) -> Json:
    from nftnet.nft.libnft import LibNft

    nft = LibNft()
    try:
        nft.run(payload["batch"])
    except TransactionError as e:  # a copy of a live table (copy_of) people made odd parts of
        return {"refused": str(e)}
    out: Json = {"errors": {}, "user_rules": []}
    for i, rule in enumerate(payload.get("user_rules") or []):
        try:
            out["user_rules"].append(one_rule(nft, rule))
        except TransactionError as e:
            out["errors"][i] = {"refused": True, "message": str(e) or "nft cannot parse it"}
        except _NotOneRule as e:
            out["errors"][i] = {"refused": False, "message": f"{e} ({_SEPARATORS})"}
            nft.run_text("flush ruleset")  # whatever else it did goes: the next starts afresh
            nft.run(payload["batch"])
    if payload.get("text"):
        out["text"] = nft.list_text()
    if payload.get("list"):
        out["listing"] = nft.list()
    return out


if __name__ == "__main__":
    json.dump(_child(json.load(sys.stdin)), sys.stdout)
