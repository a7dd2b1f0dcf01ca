"""``nftnet restore``: put back what nftnet last applied, after `nft flush ruleset`, a reboot, a
restart of nftables.service or a partial deletion; idempotent.

It asks ``check.inspect`` what differs and converges only then, through the same path as
apply: bridges, sysctls and the whole table in one transaction, the user chain's rules as
nftnet last recorded them where the chain is gone. Runtime endpoints' veths whose host end
survives (their bridge was deleted) go back on their bridge; a veth that is gone cannot be
made again (its container's namespace may be gone too): it is reported, and so is anything
else restore cannot mend, for the command to exit 1.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from nftnet.apply import Applier, unchanged_since
from nftnet.check import Finding, inspect
from nftnet.compile.ruleset import BASE_CHAINS, REGULAR_CHAINS, USER, sets
from nftnet.config.model import Config
from nftnet.desired.effective import effective_config
from nftnet.errors import NftnetError, TransactionError
from nftnet.nft.backend import USER_CHAIN_SPEC, NftBackend, user_chain
from nftnet.nft.objects import Chain, user_rule
from nftnet.nft.transaction import Transaction
from nftnet.state import State, StateDir


def restore(state_dir: StateDir, applier: Applier | None = None
            ) -> tuple[list[str], list[Finding]]:
    """Lines saying what was put back and what could not be, and the differences restore
    could not mend (the command exits 1 for them); NftnetError if the kernel refused nftnet's
    own table (then nothing changed)."""
    done = heal(state_dir, applier, always=True)
    assert done is not None
    return done


def heal(state_dir: StateDir, applier: Applier | None = None, always: bool = False
         ) -> tuple[list[str], list[Finding]] | None:
    """``restore``, unless the generation proves that nothing was committed since nftnet's
    own last change (None then, at the cost of one netlink request: the daemon asks after
    every commit that touched nftnet's table, its own included). Where nothing needs
    restoring, the generation is recorded once the comparison proved the kernel holds what
    nftnet applied (and nothing was committed meanwhile): the next runtime change then sends
    elements only again."""
    applier = applier or Applier(state_dir)
    with state_dir.locked():
        lines = ["completed an interrupted change"] if applier.recover() else []
        state = state_dir.load()
        if state is None:
            return [*lines, "nothing applied yet: nothing to restore"], []
        if not always and not lines and unchanged_since(state, applier.nft):
            return None
        before = applier.nft.generation()
        config = effective_config(state.config, state.runtime)
        try:
            drift = inspect(state, applier.kernel, config).drift
        except NftnetError as e:  # cannot compare (no scratch namespace): rewrite all the same
            drift = [Finding("kernel", f"not compared ({e}): everything rewritten")]
        fixable = [f for f in drift if f.fixable]
        if fixable:
            lines += ["restored:", *(f"  {f}" for f in fixable)]
            lines += _converge(applier, state, config, fixable)
        else:
            lines.append("nothing to restore: the kernel holds what nftnet last applied")
            proven = not drift and before is not None and applier.nft.generation() == before
            if proven:
                state.generation = before
            if record_user_chain(state_dir, state, applier.nft):
                lines.append(f"recorded the user chain's {len(state.user_chain or [])} rule(s)")
            elif proven:
                state_dir.save_generation(before)
        unfixable = [f for f in drift if not f.fixable]
        return lines + [f"cannot restore {f}" for f in unfixable], unfixable


def _converge(applier: Applier, state: State, config: Config, fixable: list[Finding]
              ) -> list[str]:
    nft = applier.nft
    recreate = [f.recreate for f in fixable if f.recreate]
    if recreate:  # rare (made again by hand with another hook): the rest keeps protecting
        tx = Transaction()
        for name in recreate:
            tx.flush(Chain(name))
            tx.delete(Chain(name))
        nft.run(tx.to_json())
    want = applier.desired(config, state)
    saved = state.user_chain if want.config.user_rules is None else None
    put_back = bool(saved) and nft.list(USER_CHAIN_SPEC) is None
    base = State(config=state.config, runtime=state.runtime)
    try:
        applier.converge(want, state, base)
    except TransactionError:
        if not put_back:
            raise
        # The recorded rules may use sets or chains of people's that went with the table:
        # nftnet's protections first, then each rule the kernel still takes.
        applier.converge(want, dataclasses.replace(state, user_chain=None), base)
        _put_back_one_by_one(applier, base, saved or [])
    return [f"  user chain: {len(saved or [])} rule(s) put back as nftnet last recorded them"
            ] if put_back else []


def _put_back_one_by_one(applier: Applier, base: State, saved: list[Any]) -> None:
    refused = []
    for recorded in saved:
        tx = Transaction()
        tx.add(user_rule(recorded))
        try:
            applier.nft.run(tx.to_json())
        except TransactionError as e:
            refused.append(_refusal(recorded, tx, e))
    base.user_chain = user_chain(applier.nft) or []
    applier.state_dir.save(base)
    if refused:
        raise NftnetError("nftnet's table is restored, but the kernel refused "
                          f"{len(refused)} of the user chain's recorded rules:\n"
                          + "\n".join(refused))


# What a recorded rule may name and restore makes again: nftnet's own sets and chains.
_NFTNET_NAMES = ({f"set @{s.name}" for s in sets()}
                 | {f"chain {c.name}" for c in (*BASE_CHAINS, *REGULAR_CHAINS, USER)})


def _refusal(recorded: Any, tx: Transaction, e: TransactionError) -> str:
    """The refused rule as nft listed it, nft's reason, and the sets and chains it names that
    are not nftnet's: people's, which nftnet does not record (their elements are people's
    data, and a stale copy would match what it no longer should)."""
    text = recorded.get("text") if isinstance(recorded, dict) else None
    lines = [f"  {text or tx.dumps()}", f"    {str(e).strip().splitlines()[-1]}"]
    foreign = sorted(_names(user_rule(recorded).expr) - _NFTNET_NAMES)
    if foreign:
        again = f"nft add rule {USER_CHAIN_SPEC.removeprefix('chain ')} {text or '...'}"
        lines.append(f"    it names {', '.join(foreign)}, which nftnet neither makes nor records: "
                     f"make {'them' if len(foreign) > 1 else 'it'} again, then {again}")
    return "\n".join(lines)


def _names(obj: Any) -> set[str]:
    """The named sets (``set @NAME``) and chains (``chain NAME``) a rule's JSON refers to."""
    if isinstance(obj, str):
        return {f"set {obj}"} if obj.startswith("@") else set()
    if isinstance(obj, dict):
        out = {f"chain {obj[v]['target']}" for v in ("jump", "goto")
               if isinstance(obj.get(v), dict)}
        return out.union(*(_names(v) for v in obj.values()))
    if isinstance(obj, list | tuple):
        return set().union(*(_names(v) for v in obj))
    return set()


def record_user_chain(state_dir: StateDir, state: State, nft: NftBackend) -> bool:
    """Keep the live user chain as what restore puts back after a flush: rules added by hand
    since nftnet's last change survive too (the nftables-bound unit runs this before a stop)."""
    if state.config.get("user_rules") is not None:
        return False
    live = user_chain(nft)
    if live is None or live == state.user_chain:
        return False
    state.user_chain = live
    state_dir.save(state)
    return True
