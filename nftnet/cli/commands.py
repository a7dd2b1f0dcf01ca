"""The core subcommands: apply, plan, render, status."""

from __future__ import annotations

import json
import sys

import click

from nftnet.api import Engine, load_config
from nftnet.cli.format import apply_lines, format_status

CONFIG = click.option("-f", "--file", "path", required=True, type=click.Path(dir_okay=False,
                      allow_dash=True), help="Config file (YAML or JSON, at most 64 MiB; - for "
                      "stdin).")
OUTPUT = click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table",
                      show_default=True, help="table for people, json for scripts.")


@click.command("apply")
@CONFIG
@click.option("--dry-run", is_flag=True, help="Validate and show what would change; change "
              "nothing.")
@click.pass_obj
def apply_cmd(engine: Engine, path: str, dry_run: bool) -> None:
    """Make the kernel match the config, atomically.

    Creates missing bridges (existing ones are adopted, never deleted), switches on IP
    forwarding if needed, and replaces everything in table inet nftnet in one transaction.
    The user chain keeps hand-added rules unless the config has a user_rules key. Applying
    the same config again changes nothing and says so.
    """
    click.echo("\n".join(apply_lines(engine.apply_file(path, dry_run=dry_run))))


@click.command("plan")
@CONFIG
@click.pass_obj
def plan_cmd(engine: Engine, path: str) -> None:
    """Show what `apply` would change (same as apply --dry-run)."""
    lines = apply_lines(engine.apply_file(path, dry_run=True))
    click.echo("\n".join(lines[1:] if len(lines) > 1 else lines))


@click.command("render")
@CONFIG
@click.option("--format", "fmt", type=click.Choice(["json", "nft"]), default="json",
              show_default=True, help="json: exactly the batch apply sends (load it with "
              "`nft -j -f`); nft: the table it builds, in nft syntax.")
@click.pass_obj
def render_cmd(engine: Engine, path: str, fmt: str) -> None:
    """Print the ruleset for a config without applying it; needs no root.

    User rules and the nft format are handled by nft itself in a private, throwaway network
    namespace (unshare), so nothing on the host changes.
    """
    config = load_config(path)
    if fmt == "json":
        json.dump(engine.render(config), sys.stdout, indent=1)
        click.echo()
    else:
        click.echo(engine.render_text(config), nl=False)


@click.command("status")
@OUTPUT
@click.pass_obj
def status_cmd(engine: Engine, output: str) -> None:
    """Networks, endpoints, published ports and counters of what is applied."""
    status = engine.status()
    if output == "json":
        click.echo(json.dumps(status, indent=1))
    else:
        click.echo(format_status(status))
