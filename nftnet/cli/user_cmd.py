"""``nftnet user``: the live user chain (Docker's DOCKER-USER), by hand, in nft or iptables.

Changes go straight to the kernel, as ``iptables -I DOCKER-USER`` does. ``nftnet apply`` keeps
them, unless the applied config has a user_rules key: then apply puts that list back.
"""

from __future__ import annotations

import json
import shlex

import click

from nftnet import names
from nftnet.cli.commands import OUTPUT
from nftnet.config.rule_languages import FAMILIES, to_nft
from nftnet.errors import ConfigError, NftnetError, TransactionError
from nftnet.nft import scratch
from nftnet.nft.libnft import LibNft
from nftnet.nft.objects import Json, user_rule
from nftnet.nft.transaction import Transaction
from nftnet.restore import record_user_chain
from nftnet.state import StateDir

CHAIN = f"{names.FAMILY} {names.TABLE} {names.USER_CHAIN}"
Rules = list[tuple[int, str]]  # (handle, nft text), in chain order


class _RuleCommand(click.Command):
    """Our options come first; every word from the first other one on is the rule, verbatim,
    so that an iptables rule's own options (``-i``, ``--dport``) need no ``--``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ours = {o: p for p in self.get_params(ctx) if isinstance(p, click.Option) for o in p.opts}
        i = 0
        while i < len(args) and (opt := ours.get(args[i].split("=", 1)[0])):
            i += 1 if opt.is_flag or "=" in args[i] else 2
        rule = args[i + 1:] if args[i:i + 1] == ["--"] else args[i:]
        return super().parse_args(ctx, [*args[:i], "--", *rule])


def _rules(nft: LibNft) -> Rules:
    rules = nft.chain_rules_text(names.USER_CHAIN)
    if rules is None:
        raise NftnetError(f"table {names.FAMILY} {names.TABLE} does not exist: run nftnet apply "
                          "first")
    return rules


def _nft_text(words: tuple[str, ...], iptables: bool, family: str | None) -> str:
    """The rule in nft syntax. nft joins its words with spaces; iptables gets them as argv."""
    argv = iptables and len(words) > 1
    text = shlex.join(words) if argv else " ".join(words)
    try:
        return to_nft("iptables" if iptables else "nft", text, family)
    except ValueError as e:
        raise ConfigError([f"RULE: {e}"]) from None


def _one_rule(nft: LibNft, rule: str) -> Json:
    """The rule nft makes of ``rule`` in a scratch copy of the live table (so that it may name
    people's sets too), proven to be one rule as user_rules entries are."""
    parsed, problems = scratch.parse_user_rules(scratch.copy_of(nft.list() or []), [rule])
    if 0 in problems:
        problem = problems[0]
        raise ConfigError([f"RULE: nft refuses {rule!r}:\n{problem.message}" if problem.refused
                           else f"RULE: one rule at a time: {problem.message}"])
    return parsed[0]


def _after_change(state_dir: StateDir, nft: LibNft) -> None:
    """Record the chain so that `nftnet restore` puts this change back after a flush; or,
    where the config owns the chain, say that the next apply undoes it."""
    state = state_dir.load()
    if state is not None and state.config.get("user_rules") is not None:
        click.echo("note: the applied config sets user_rules, so the next `nftnet apply` puts "
                   "the user chain back to those", err=True)
    elif state is not None:
        record_user_chain(state_dir, state, nft)


@click.group("user")
def user_group() -> None:
    """The user chain: rules evaluated first for forwarded traffic (Docker's DOCKER-USER)."""


@user_group.command("ls")
@OUTPUT
def ls_cmd(output: str) -> None:
    """The user chain's rules in nft syntax, numbered as `add --position` and `rm` count."""
    rules = _rules(LibNft())
    if output == "json":
        click.echo(json.dumps([{"position": i, "handle": handle, "rule": rule}
                               for i, (handle, rule) in enumerate(rules, 1)], indent=1))
        return
    for i, (_, rule) in enumerate(rules, 1):
        click.echo(f"{i:>3}  {rule}")


@user_group.command("add", cls=_RuleCommand)
@click.argument("words", metavar="RULE...", nargs=-1, required=True)
@click.option("--iptables", is_flag=True, help="RULE is iptables arguments, e.g. -i eth0 ! -s "
              "192.168.1.1 -j DROP.")
@click.option("--family", type=click.Choice(FAMILIES), help="With --iptables: an iptables (ip, "
              "the default) or ip6tables (ip6) rule.")
@click.option("--position", metavar="N", type=click.IntRange(min=1),
              help="Insert as rule N (1: first); default: last.")
@click.pass_obj
def add_cmd(state_dir: StateDir, words: tuple[str, ...], iptables: bool, family: str | None,
            position: int | None) -> None:
    """Add a rule to the user chain, in nft syntax (iptables with --iptables).

    Options go before the rule. nft checks the rule, in a scratch namespace first: if it
    refuses it, or reads more than one rule from it, nothing changes and the reason is shown
    (exit 2). The kernel then gets the rule nft made of it, not the text.
    """
    rule = _nft_text(words, iptables, family)
    nft = LibNft()
    with state_dir.locked():
        before = _rules(nft)
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
        added = next(text for handle, text in _rules(nft) if handle not in old)
        click.echo(f"added as rule {n}: {added}")
        _after_change(state_dir, nft)


@user_group.command("rm")
@click.argument("n", type=click.IntRange(min=1))
@click.pass_obj
def rm_cmd(state_dir: StateDir, n: int) -> None:
    """Remove rule N (as `nftnet user ls` numbers them) from the user chain."""
    nft = LibNft()
    with state_dir.locked():
        rules = _rules(nft)
        if n > len(rules):
            raise ConfigError([f"N: no rule {n}: the user chain has {len(rules)} rule(s)"])
        handle, text = rules[n - 1]
        nft.run_text(f"delete rule {CHAIN} handle {handle}")
        click.echo(f"removed rule {n}: {text}")
        _after_change(state_dir, nft)
