"""The ``nftnet`` command: parses arguments, dispatches, and maps errors to exit codes."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

import click

from nftnet.api import DEFAULT_DIR, Engine
from nftnet.errors import EXIT_BUG, EXIT_INTERRUPTED, NftnetError

# Each command's module is imported only when that command runs (or help lists it): a
# `port publish` must not pay for marshmallow, pyroute2 and the compiler at start-up.
COMMANDS = {
    "apply": "nftnet.cli.commands:apply_cmd",
    "plan": "nftnet.cli.commands:plan_cmd",
    "render": "nftnet.cli.commands:render_cmd",
    "status": "nftnet.cli.commands:status_cmd",
    "check": "nftnet.cli.lifecycle_cmds:check_cmd",
    "restore": "nftnet.cli.lifecycle_cmds:restore_cmd",
    "teardown": "nftnet.cli.lifecycle_cmds:teardown_cmd",
    "endpoint": "nftnet.cli.runtime_cmds:endpoint_group",
    "port": "nftnet.cli.runtime_cmds:port_group",
    "network": "nftnet.cli.runtime_cmds:network_group",
    "user": "nftnet.cli.user_cmd:user_group",
    "daemon": "nftnet.cli.daemon_cmd:daemon_cmd",
}
PLUGIN_GROUP = "nftnet.commands"  # compat's import and export; nftnet never imports compat


def _plugins() -> dict[str, str]:
    from importlib.metadata import entry_points

    return {p.name: p.value for p in entry_points(group=PLUGIN_GROUP)}


class LazyGroup(click.Group):
    """Commands by import path, loaded on first use; plugins looked up only when a name is
    not one of nftnet's own (entry-point discovery alone costs tens of milliseconds)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS | _plugins())

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name) or _plugins().get(cmd_name)
        if target is None:
            return None
        module, _, attr = target.partition(":")
        command: click.Command = getattr(importlib.import_module(module), attr)
        return command

EPILOG = """\b
Exit codes:
  0  done (or nothing to do)
  1  runtime or kernel failure; nothing was half-applied
  2  invalid input: config or arguments (each problem names its field)
  3  unexpected error (traceback in STATE_DIR/error.log)
"""


@click.group(cls=LazyGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--state-dir", envvar="NFTNET_STATE_DIR", default=DEFAULT_DIR, show_default=True,
              type=click.Path(file_okay=False), help="Where nftnet keeps what it applied "
              "(env NFTNET_STATE_DIR).")
@click.version_option(package_name="nftnet")
@click.pass_context
def cli(ctx: click.Context, state_dir: str) -> None:
    """Container-network firewall on nftables: Docker's bridge networking (published ports,
    masquerade, isolation, icc, DOCKER-USER) as one atomic transaction in table inet nftnet.

    Start with `nftnet render -f config.yaml` (no root needed), then `nftnet apply -f
    config.yaml`.
    """
    ctx.obj = Engine(state_dir)



def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code instead of raising."""
    try:
        # A command's click.exceptions.Exit(code) comes back as the result (check's drift: 1).
        result = cli.main(args=list(argv) if argv is not None else None, standalone_mode=False)
    except click.exceptions.Exit as e:
        return int(e.exit_code)
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except click.Abort:
        click.echo("aborted", err=True)
        return EXIT_INTERRUPTED
    except NftnetError as e:
        click.echo(f"nftnet: error: {e}", err=True)
        return e.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception:
        import traceback  # only for a bug: 5 ms of every command's start-up otherwise

        where = Engine(_state_dir_arg(argv)).state_dir.log_error(traceback.format_exc())
        click.echo(f"nftnet: unexpected error ({sys.exc_info()[1]!r}); "
                   f"details in {where or 'stderr'}", err=True)
        if where is None:
            traceback.print_exc()
        return EXIT_BUG
    return result if isinstance(result, int) else 0


def _state_dir_arg(argv: Sequence[str] | None) -> str:
    import os

    args = list(argv if argv is not None else sys.argv[1:])
    for i, a in enumerate(args):
        if a == "--state-dir" and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--state-dir="):
            return a.split("=", 1)[1]
    return os.environ.get("NFTNET_STATE_DIR", DEFAULT_DIR)


def entry() -> None:
    sys.exit(main())
