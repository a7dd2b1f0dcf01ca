"""Staying right over time: check, restore, teardown."""

from __future__ import annotations

import json
import sys

import click

from nftnet.api import Engine
from nftnet.cli.commands import OUTPUT
from nftnet.cli.format import format_report
from nftnet.errors import EXIT_RUNTIME, NftnetError


@click.command("check")
@OUTPUT
@click.pass_obj
def check_cmd(engine: Engine, output: str) -> None:
    """Compare the kernel with what nftnet last applied: exit 0 in sync, 1 on drift.

    Reports a missing table, chains, rules and set or map elements that differ (the desired
    table is built in a throwaway network namespace and listed by the same kernel), bridges
    missing or down or whose addresses are not the config's gateways, sysctls such as IP
    forwarding switched off, and runtime endpoints whose veth is gone or off its bridge.
    Warns about other firewalls' forward chains with policy drop, which drop what nftnet
    lets through, and prints the one rule that makes them honour nftnet's mark (warnings do
    not change the exit code). Changes nothing.
    """
    report = engine.check()
    if report is None:
        click.echo(json.dumps({"applied": False}) if output == "json" else
                   "nothing applied yet: nothing to check")
        return
    click.echo(json.dumps(report.to_json(), indent=1) if output == "json" else
               format_report(report))
    if not report.in_sync:
        raise click.exceptions.Exit(EXIT_RUNTIME)


@click.command("restore")
@click.pass_obj
def restore_cmd(engine: Engine) -> None:
    """Put back what nftnet last applied: after `nft flush ruleset`, a reboot, a restart of
    nftables.service or a partial deletion. Idempotent.

    Bridges, sysctls and the whole table come back in one transaction; the user chain keeps
    its live rules, or gets back the rules it had at nftnet's last change where it is gone
    (a run with nothing to restore records the live ones for next time). Runtime endpoints'
    veths go back on their bridge; those whose veth is gone cannot be restored: they are
    reported, and restore exits 1, as for anything else it cannot mend. Exits 0 when nothing
    was applied yet, so that it can run at every boot.
    """
    lines, unrestored = engine.restore()
    click.echo("\n".join(lines))
    if unrestored:
        raise click.exceptions.Exit(EXIT_RUNTIME)


@click.command("teardown")
@click.option("-y", "--yes", is_flag=True, help="Do not ask (for scripts).")
@click.option("--keep-bridges", is_flag=True, help="Keep the bridges and veths nftnet made; "
              "containers on them stay connected, without nftnet's firewall.")
@click.pass_obj
def teardown_cmd(engine: Engine, yes: bool, keep_bridges: bool) -> None:
    """Remove everything nftnet made, after saying what and asking.

    Removes the veths of runtime endpoints, the bridges nftnet created (never adopted ones),
    IP forwarding where nftnet switched it on, table inet nftnet and the state; links first,
    so that no container is ever reachable without the firewall. The user chain's rules are
    first saved to a file beside the state directory, in nft syntax; its path is printed.
    Other tables are never touched. Without a terminal, --yes is required (exit 2).
    """
    plan = engine.teardown_plan(keep_bridges)
    if plan.empty:
        engine.forget()
        click.echo("nothing to tear down")
        return
    click.echo("nftnet teardown removes:")
    click.echo("\n".join(plan.lines(engine.state_dir)))
    if not yes:
        if not sys.stdin.isatty():
            raise click.UsageError("not run from a terminal: add --yes to tear down "
                                   "without being asked")
        if not click.confirm("Remove all of this?"):
            raise NftnetError("nothing removed")
    saved, lines = engine.teardown(plan)
    if saved is not None:
        click.echo(f"saved the user chain's {len(plan.user_rules)} rule(s) to {saved}")
    click.echo("\n".join(lines))
