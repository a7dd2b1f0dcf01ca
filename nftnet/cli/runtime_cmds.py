"""Runtime commands: endpoints, ports and networks changed one at a time, without a rebuild.

The full config machinery is imported only by the commands that need it (see runtime.py)."""

from __future__ import annotations

import json
from typing import Any

import click

from nftnet.api import Engine, netns_path
from nftnet.cli.format import endpoint_lines, network_lines, port_lines
from nftnet.desired.plan import format_port
from nftnet.results import source

OUTPUT = click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table",
                      show_default=True, help="table for people, json for scripts.")


def _echo(lines: list[str]) -> None:
    click.echo("\n".join(lines))


def _table(rows: list[dict[str, Any]], output: str) -> None:
    if output == "json":
        click.echo(json.dumps(rows, indent=1))
        return
    if not rows:
        click.echo("(none)")
        return
    keys = list(rows[0])
    cells = [[k.upper() for k in keys]] + [[str(r[k] if r[k] is not None else "-")
                                            for k in keys] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(keys))]
    for c in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip())


@click.group("endpoint")
def endpoint_group() -> None:
    """Attach containers (network namespaces) to networks, detach them, list them."""


@endpoint_group.command("attach")
@click.argument("name")
@click.option("--network", required=True, help="Network to attach to.")
@click.option("--netns", help="Network namespace: a name under /run/netns or a path.")
@click.option("--pid", type=int, help="Or the namespace of this process.")
@click.option("--ipv4", default="auto", show_default=True, help="Address, or auto: the "
              "lowest free one.")
@click.option("--ipv6", default="auto", show_default=True, help="Address, or auto (only where "
              "the network has an IPv6 subnet).")
@click.option("--publish", "-p", multiple=True, help="Docker -p syntax, e.g. 8080:80/tcp; "
              "repeatable.")
@click.option("--ifname", default="eth0", show_default=True, help="Interface name inside.")
@click.pass_obj
def attach_cmd(engine: Engine, name: str, network: str, netns: str | None,
               pid: int | None, ipv4: str, ipv6: str, publish: tuple[str, ...],
               ifname: str) -> None:
    """Give a container a veth on NETWORK's bridge (hairpin on), an address, a default route
    via the gateway, and its published ports: one small transaction."""
    if (netns is None) == (pid is None):
        raise click.UsageError("give exactly one of --netns and --pid")
    path = netns_path(netns, pid)
    _echo(endpoint_lines(engine.attach(name, network, path, ipv4, ipv6, list(publish), ifname)))


@endpoint_group.command("detach")
@click.argument("name")
@click.pass_obj
def detach_cmd(engine: Engine, name: str) -> None:
    """Remove an attached endpoint: its veth, its ports, its address."""
    _echo(endpoint_lines(engine.detach(name)))


@endpoint_group.command("ls")
@OUTPUT
@click.pass_obj
def endpoint_ls(engine: Engine, output: str) -> None:
    """Every endpoint, declared in the config file or attached at runtime."""
    state, config = engine.effective()
    owners = engine.owners(state)["endpoints"]
    _table([{"name": e.name, "network": e.network, "ipv4": e.ipv4 and str(e.ipv4),
             "ipv6": e.ipv6 and str(e.ipv6), "source": source(owners, e.name),
             "ports": len(e.publish)} for e in config.endpoints.values()], output)


@click.group("port")
def port_group() -> None:
    """Publish and unpublish ports of any endpoint; list published ports."""


@port_group.command("publish")
@click.argument("endpoint")
@click.argument("specs", nargs=-1, required=True)
@click.pass_obj
def publish_cmd(engine: Engine, endpoint: str, specs: tuple[str, ...]) -> None:
    """Publish SPECS (Docker -p syntax: [HOST_IP:]HOST_PORT:CONTAINER_PORT[/PROTO])."""
    _echo(port_lines(engine.publish(endpoint, list(specs))))


@port_group.command("unpublish")
@click.argument("endpoint")
@click.argument("specs", nargs=-1, required=True)
@click.pass_obj
def unpublish_cmd(engine: Engine, endpoint: str, specs: tuple[str, ...]) -> None:
    """Stop publishing SPECS (as they were published)."""
    _echo(port_lines(engine.unpublish(endpoint, list(specs))))


@port_group.command("ls")
@OUTPUT
@click.pass_obj
def port_ls(engine: Engine, output: str) -> None:
    """Every published port, one row per host binding."""
    _, config = engine.effective()
    _table([{"port": format_port(m), "endpoint": name} for name, _, m in config.published],
           output)


@click.group("network")
def network_group() -> None:
    """Create, remove and list networks at runtime."""


@network_group.command("create")
@click.argument("name")
@click.option("--subnet", "subnets", multiple=True, required=True, help="CIDR; repeat for "
              "IPv4 and IPv6.")
@click.option("--bridge", help="Bridge name (default nft-NAME).")
@click.option("--icc/--no-icc", default=True, show_default=True, help="Containers on it may "
              "talk to each other.")
@click.option("--internal", is_flag=True, help="No traffic in or out of the bridge.")
@click.option("--no-masquerade", is_flag=True, help="Outbound traffic keeps container "
              "addresses.")
@click.pass_obj
def network_create(engine: Engine, name: str, subnets: tuple[str, ...], bridge: str | None,
                   icc: bool, internal: bool, no_masquerade: bool) -> None:
    """Create a network (bridge, addresses, sets) at runtime."""
    raw: dict[str, Any] = {"subnets": list(subnets), "icc": icc, "internal": internal,
                           "masquerade": not no_masquerade}
    if bridge:
        raw["bridge"] = bridge
    _echo(network_lines(engine.create_network(name, raw)))


@network_group.command("rm")
@click.argument("name")
@click.option("--force", is_flag=True, help="Detach its runtime endpoints first.")
@click.pass_obj
def network_rm(engine: Engine, name: str, force: bool) -> None:
    """Remove a network created at runtime (refused while endpoints use it)."""
    _echo(network_lines(engine.remove_network(name, force)))


@network_group.command("ls")
@OUTPUT
@click.pass_obj
def network_ls(engine: Engine, output: str) -> None:
    """Every network, declared or created at runtime."""
    state, config = engine.effective()
    owners = engine.owners(state)["networks"]
    _table([{"name": n.name, "bridge": n.bridge,
             "subnets": ",".join(str(s) for s in (n.subnet4, n.subnet6) if s),
             "icc": n.icc, "internal": n.internal, "masquerade": n.masquerade,
             "source": source(owners, n.name)}
            for n in config.networks.values()], output)
