"""The live user chain (Docker's DOCKER-USER) by hand: list, add and remove rules.

Changes go straight to the kernel, as ``iptables -I DOCKER-USER`` does; ``nftnet apply`` keeps
them unless the applied config has a user_rules key. Each change is recorded, so that
``nftnet restore`` puts it back after a flush.
"""

from __future__ import annotations

from dataclasses import dataclass

from nftnet import names
from nftnet.errors import ConfigError, NftnetError, TransactionError
from nftnet.nft import scratch
from nftnet.nft.backend import NftBackend, Rules
from nftnet.nft.objects import Json, Rule, user_rule
from nftnet.nft.transaction import Transaction
from nftnet.restore import record_user_chain
from nftnet.state import StateDir


@dataclass(frozen=True)
class RuleChange:
    """A rule added or removed: its position (1-based) and nft text as the kernel lists it;
    ``config_owns`` when the applied config sets user_rules, so that the next apply puts the
    chain back to those."""

    position: int
    rule: str
    config_owns: bool


def rules(nft: NftBackend) -> Rules:
    """(handle, nft text) of the chain's rules, in order; NftnetError without the table."""
    found = nft.chain_rules_text(names.USER_CHAIN)
    if found is None:
        raise NftnetError(f"table {names.TABLE_REF} does not exist: run nftnet apply "
                          "first")
    return found


def _one_rule(nft: NftBackend, rule: str) -> Json:
    """The rule nft makes of ``rule`` in a scratch copy of the live table (so that it may name
    people's sets too), proven to be one rule as user_rules entries are."""
    parsed, problems = scratch.parse_user_rules(scratch.copy_of(nft.list() or []), [rule])
    if 0 in problems:
        problem = problems[0]
        raise ConfigError([f"RULE: nft refuses {rule!r}:\n{problem.message}" if problem.refused
                           else f"RULE: one rule at a time: {problem.message}"])
    return parsed[0]


def _recorded(state_dir: StateDir, nft: NftBackend) -> bool:
    """Record the chain for restore; True where the config owns it instead."""
    state = state_dir.load()
    if state is not None and state.config.get("user_rules") is not None:
        return True
    if state is not None:
        record_user_chain(state_dir, state, nft)
    return False


def add(state_dir: StateDir, nft: NftBackend, rule: str, position: int | None) -> RuleChange:
    """Add ``rule`` (nft text) as rule ``position`` (None: last); ConfigError when nft refuses
    it or reads more than one rule from it, or the position is past the end."""
    with state_dir.locked():
        before = rules(nft)
        n = len(before) + 1 if position is None else position
        if n > len(before) + 1:
            raise ConfigError([f"--position {n}: the user chain has {len(before)} rule(s)"])
        parsed = _one_rule(nft, rule)
        tx = Transaction()
        if n > len(before):
            tx.add(user_rule(parsed))
        else:
            tx.insert(user_rule(parsed, handle=before[n - 1][0]))
        try:
            nft.run(tx.to_json())
        except TransactionError as e:
            raise ConfigError([f"RULE: nft refuses {rule!r}:\n{e}"]) from None
        old = {handle for handle, _ in before}
        added = next(text for handle, text in rules(nft) if handle not in old)
        return RuleChange(n, added, _recorded(state_dir, nft))


def remove(state_dir: StateDir, nft: NftBackend, n: int) -> RuleChange:
    """Remove rule ``n`` as ``rules`` numbers them; ConfigError when there is none."""
    with state_dir.locked():
        found = rules(nft)
        if n > len(found):
            raise ConfigError([f"N: no rule {n}: the user chain has {len(found)} rule(s)"])
        handle, text = found[n - 1]
        tx = Transaction()
        tx.delete(Rule(names.USER_CHAIN, (), handle=handle))
        nft.run(tx.to_json())
        return RuleChange(n, text, _recorded(state_dir, nft))
