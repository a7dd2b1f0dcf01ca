"""``nftnet import iptables-save`` and ``nftnet export``: moving between Docker's iptables and
nftnet.

nftnet never imports compat: these commands reach the ``nftnet`` CLI through the
``nftnet.commands`` entry-point group. ``ctx.obj`` is nftnet's ``Engine`` (nftnet.api).
"""

from __future__ import annotations

import json
import sys

import click
import yaml

from compat.iptables_save.export import export_save
from compat.iptables_save.importer import Hints, import_rules
from compat.iptables_save.parse import parse_save
from nftnet.api import Engine, load_config
from nftnet.config.model import Config
from nftnet.errors import ConfigError

FILE = click.Path(dir_okay=False, allow_dash=True)


def _read(path: str) -> str:
    try:
        if path == "-":
            return sys.stdin.read()
        with open(path) as f:
            return f.read()
    except OSError as e:
        raise ConfigError([f"{path}: cannot read: {e.strerror}"]) from None


def load_hints(paths: str) -> Hints:
    """Inspect data from comma-separated JSON files (any mix of the three kinds)."""
    hints = Hints()
    for path in filter(None, paths.split(",")):
        try:
            doc = json.loads(_read(path))
        except json.JSONDecodeError as e:
            raise ConfigError([f"{path}:{e.lineno}: not JSON: {e.msg}"]) from None
        hints.add(path, doc)
    return hints


@click.group("import")
def import_group() -> None:
    """Write an nftnet config from another firewall's rules."""


@import_group.command("iptables-save")
@click.argument("path", metavar="FILE", type=FILE)
@click.option("--ip6", "path6", metavar="FILE6", type=FILE,
              help="ip6tables-save output of the same host, for IPv6.")
@click.option("--docker-inspect", "inspect", metavar="JSON[,JSON...]",
              help="`docker network inspect`, `docker inspect` and/or `ip -j addr` output: "
              "names, gateways, MTUs, subnets without MASQUERADE, containers without ports.")
@click.option("-o", "--output", default="-", type=FILE, help="Config file to write (default: "
              "stdout).")
@click.option("--strict", is_flag=True, help="Fail (exit 2) if any rule cannot be mapped.")
def import_save_cmd(path: str, path6: str | None, inspect: str | None, output: str,
                    strict: bool) -> None:
    """Turn a Docker host's iptables-save output into an nftnet config.

    Networks, endpoints, published ports and DOCKER-USER rules (as user_rules) come from the
    rules; whatever cannot be mapped is reported on stderr rule by rule, with its line and why.
    """
    v6 = parse_save(_read(path6), path6) if path6 else None
    hints = load_hints(inspect) if inspect else None
    result = import_rules(parse_save(_read(path), path), v6, hints)
    for item in result.unmapped:
        click.echo(str(item), err=True)
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    if strict and result.unmapped:
        raise ConfigError([f"{len(result.unmapped)} rule(s) not mapped (--strict)"])
    text = yaml.safe_dump(result.config, sort_keys=False, width=1 << 16)  # one rule, one line
    if output == "-":
        click.echo(text, nl=False)
        return
    try:
        with open(output, "w") as f:
            f.write(text)
    except OSError as e:
        raise ConfigError([f"{output}: cannot write: {e.strerror}"]) from None


def _applied(engine: Engine) -> Config:
    config = engine.declared()
    if config is None:
        raise click.UsageError(f"nothing is applied (no state in {engine.state_dir.path}): give "
                               "-f FILE")
    return config


@click.command("export")
@click.option("--format", "fmt", type=click.Choice(["iptables-save", "ip6tables-save"]),
              default="iptables-save", show_default=True, help="IPv4 or IPv6 rules.")
@click.option("-f", "--file", "path", type=FILE, help="Config file (default: what is applied).")
@click.pass_obj
def export_cmd(engine: Engine, fmt: str, path: str | None) -> None:
    """Print the iptables rules Docker 20.10 would have written for a config.

    Output loads with iptables-restore (or ip6tables-restore), e.g. in a test namespace; it
    shows Docker's behaviour, not nftnet's deliberate differences.
    """
    config = load_config(path) if path else _applied(engine)
    text, warnings = export_save(config, 4 if fmt == "iptables-save" else 6)
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(text, nl=False)
