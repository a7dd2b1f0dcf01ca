"""``nftnet user``: the live user chain (Docker's DOCKER-USER), by hand, in nft or iptables.

Changes go straight to the kernel, as ``iptables -I DOCKER-USER`` does. ``nftnet apply`` keeps
them, unless the applied config has a user_rules key: then apply puts that list back.
"""

from __future__ import annotations

import json
import shlex
from typing import TYPE_CHECKING

import click

from nftnet.api import Engine
from nftnet.cli.commands import OUTPUT
from nftnet.config.rule_languages import FAMILIES, to_nft
from nftnet.errors import ConfigError

if TYPE_CHECKING:
    from nftnet.user_chain import RuleChange


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


def _nft_text(words: tuple[str, ...], iptables: bool, family: str | None) -> str:
    """The rule in nft syntax. nft joins its words with spaces; iptables gets them as argv."""
    argv = iptables and len(words) > 1
    text = shlex.join(words) if argv else " ".join(words)
    try:
        return to_nft("iptables" if iptables else "nft", text, family)
    except ValueError as e:
        raise ConfigError([f"RULE: {e}"]) from None


def _echo_change(verb: str, change: RuleChange) -> None:
    click.echo(f"{verb} rule {change.position}: {change.rule}")
    if change.config_owns:
        click.echo("note: the applied config sets user_rules, so the next `nftnet apply` puts "
                   "the user chain back to those", err=True)


@click.group("user")
def user_group() -> None:
    """The user chain: rules evaluated first for forwarded traffic (Docker's DOCKER-USER)."""


@user_group.command("ls")
@OUTPUT
@click.pass_obj
def ls_cmd(engine: Engine, output: str) -> None:
    """The user chain's rules in nft syntax, numbered as `add --position` and `rm` count."""
    rules = engine.user_rules()
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
def add_cmd(engine: Engine, words: tuple[str, ...], iptables: bool, family: str | None,
            position: int | None) -> None:
    """Add a rule to the user chain, in nft syntax (iptables with --iptables).

    Options go before the rule. nft checks the rule, in a scratch namespace first: if it
    refuses it, or reads more than one rule from it, nothing changes and the reason is shown
    (exit 2). The kernel then gets the rule nft made of it, not the text.
    """
    _echo_change("added as", engine.user_add(_nft_text(words, iptables, family), position))


@user_group.command("rm")
@click.argument("n", type=click.IntRange(min=1))
@click.pass_obj
def rm_cmd(engine: Engine, n: int) -> None:
    """Remove rule N (as `nftnet user ls` numbers them) from the user chain."""
    _echo_change("removed", engine.user_remove(n))
