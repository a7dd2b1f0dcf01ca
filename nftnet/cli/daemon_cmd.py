"""``nftnet daemon``: a resident process that a container runtime drives (Docker Engine)."""

from __future__ import annotations

import importlib

import click

from nftnet.api import Engine

# The runtimes a daemon follows: their driver's entry, loaded by name when the daemon starts
# (as main.py loads commands), so that `--help` pays for no SDK.
DRIVERS = {"docker": "nftnet.drivers.docker.daemon:run"}

# The exit codes, for --help without importing the driver (its SDK loads on first use).
EXIT_CODES = """\b
Exit codes:
  0    stopped by SIGTERM; the firewall stays as it is
  1    cannot run: the state directory or nftables is unusable
  2    invalid arguments
  3    unexpected error (traceback in STATE_DIR/error.log)
  4    dockerd writes its own firewall rules or runs the userland proxy (the log
       says why and the fix); nothing was changed
  5    another nftnet daemon runs on this state directory
  130  stopped by SIGINT (Ctrl-C); the firewall stays as it is
"""


@click.command("daemon", epilog=EXIT_CODES)
@click.option("--docker", "docker_url", is_flag=False, flag_value="", default=None,
              metavar="[URL]", help="Follow the Docker Engine at URL (default: DOCKER_HOST, "
              "else unix:///var/run/docker.sock). dockerd must run with --iptables=false "
              "--ip6tables=false --userland-proxy=false.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info", show_default=True, help="Log lines on stderr, each with its "
              "syslog priority (<6>) for journald.")
@click.option("--default-bridge-masquerade/--no-default-bridge-masquerade", default=True,
              show_default=True, help="Masquerade Docker's default network (docker0), as "
              "dockerd's --ip-masq does (dockerd reports it off whenever --iptables=false).")
@click.pass_obj
def daemon_cmd(engine: Engine, docker_url: str | None, log_level: str,
               default_bridge_masquerade: bool) -> int:
    """Keep the firewall in line with a container runtime, and heal it.

    With --docker: reads every bridge network and running container of dockerd and makes
    nftnet hold exactly them in one transaction (networks on Docker's bridges, endpoints on
    Docker's veths, published ports as Docker bound them), then follows dockerd's events,
    each changing only what it concerns. Reconnects (and resyncs) when dockerd restarts.
    Always: after a `nft flush ruleset` or the deletion of any of nftnet's objects, puts
    nftnet's table back within a second, with the user chain as it last was.

    SIGHUP resyncs; SIGTERM stops (the firewall stays as it is). One daemon per state
    directory; `nftnet status` says whether it runs and what it follows.
    """
    if docker_url is None:
        raise click.UsageError("say what to follow: --docker [URL]")
    module, _, name = DRIVERS["docker"].partition(":")
    run = getattr(importlib.import_module(module), name)
    return int(run(engine, docker_url or None, log_level, default_bridge_masquerade))
