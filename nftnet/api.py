"""The engine's one entry point, for the CLI, compat and the drivers (``nftnet daemon``,
``nftnet-cni``): every call takes what a user or a runtime asked, returns typed results
(results.py) and raises the typed errors of errors.py (ConfigError: the caller's input,
naming each field, nothing applied; other NftnetError: the host or the kernel refused,
nothing half-applied).

``Engine`` holds the state directory and the kernel boundary (``kernel.Kernel``: nftables,
links and sysctls, the scratch kernel; this host's by default, ``Kernel.fake()`` in tests).
Modules are imported on first use, so that a ``port publish`` pays for neither marshmallow,
pyroute2 nor the compiler.
"""

from __future__ import annotations

import json
import os
from contextlib import AbstractContextManager
from functools import cached_property
from typing import TYPE_CHECKING, Any

from nftnet.errors import NftnetError
from nftnet.kernel import Kernel
from nftnet.results import ApplyResult, EndpointChange, NetworkChange, PortChange, SyncResult
from nftnet.state import DEFAULT_DIR, State, StateDir

Json = dict[str, Any]  # a libnftables JSON object (nft.objects.Json)

if TYPE_CHECKING:
    from nftnet.apply import Applier
    from nftnet.check import Finding, Report
    from nftnet.coexist import ForeignDrop
    from nftnet.config.model import Config
    from nftnet.nft.backend import NftBackend, Rules
    from nftnet.nft.monitor import Monitor
    from nftnet.runtime import Runtime
    from nftnet.teardown import Plan
    from nftnet.user_chain import RuleChange

__all__ = ["DEFAULT_DIR", "Engine", "load_config", "netns_path"]


def netns_path(netns: str | None, pid: int | None) -> str:
    """The network namespace file of ``--netns NAME_OR_PATH`` or ``--pid PID``; ConfigError
    naming the option when it is none."""
    from nftnet.link.veth import netns_path as path

    return path(netns, pid)


def load_config(path: str) -> Config:
    """Read and validate a config file ("-" for standard input); ConfigError lists every
    problem with its file line and field."""
    from nftnet.config.load import load_config as load

    return load(path)


class Engine:
    """nftnet on one state directory and one network namespace's kernel."""

    def __init__(self, state_dir: str | os.PathLike[str] = DEFAULT_DIR,
                 kernel: Kernel | None = None, lock_timeout: float | None = None) -> None:
        """``lock_timeout``: how long a call waits at most for another command's lock
        (LockTimeout then); None, the CLI's: as long as it takes."""
        self.state_dir = StateDir(state_dir, lock_timeout)
        self.kernel = kernel or Kernel()

    @property
    def nft(self) -> NftBackend:
        """The nftables backend; libnftables is loaded on first use."""
        return self.kernel.nft

    @cached_property
    def _applier(self) -> Applier:
        from nftnet.apply import Applier

        return Applier(self.state_dir, self.kernel)

    @cached_property
    def _runtime(self) -> Runtime:
        from nftnet.runtime import Runtime

        return Runtime(self.state_dir, self._applier if "_applier" in self.__dict__ else None,
                       self.kernel)

    # -- the declared config ---------------------------------------------------------------

    def apply(self, config: Config, dry_run: bool = False) -> ApplyResult:
        """Make the kernel and the links match ``config`` plus the runtime changes, in one
        transaction; ``dry_run`` says what would change and changes nothing."""
        return self._applier.apply(config, dry_run=dry_run)

    def apply_file(self, path: str, dry_run: bool = False) -> ApplyResult:
        """``apply`` of the config file ``path`` ("-": standard input). The same text applied
        again, with nothing changed since (applied.py proves it), is not read as a config:
        "no changes" costs no validation. ConfigError as ``load_config``."""
        from nftnet.applied import fingerprint, unchanged
        from nftnet.config.document import read_text

        text = read_text(path)
        digest = fingerprint(text)
        if unchanged(self.state_dir, self.kernel, digest):
            return ApplyResult(False, dry_run)
        from nftnet.config.load import parse_config

        return self._applier.apply(parse_config(text, path), dry_run, digest)

    def render(self, config: Config) -> Json:
        """The batch an apply of ``config`` sends (needs no root; user rules are parsed by
        nft in a throwaway namespace)."""
        from nftnet.apply import desired

        return desired(config, self._readable_state(), kernel=self.kernel).batch

    def render_text(self, config: Config) -> str:
        """The table ``config`` makes, as nft lists it."""
        from nftnet.nft import scratch

        return scratch.render_text(self.render(config))  # nft's text: the real scratch only

    def _readable_state(self) -> State | None:
        from nftnet.errors import StateError

        try:
            return self.state_dir.load()
        except StateError:  # render works where the state is not readable (no root)
            return None

    # -- staying right ---------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Everything ``nftnet status`` shows, as plain data (its JSON output), with the
        daemon that follows a runtime on this state directory (``daemon``)."""
        from nftnet.status import collect_status

        return {**collect_status(self.state_dir, self.kernel), "daemon": self.daemon()}

    def check(self) -> Report | None:
        """How the kernel and the links differ from what nftnet applied; None when nothing
        is applied."""
        from nftnet.check import check

        return check(self.state_dir, self.kernel)

    def restore(self) -> tuple[list[str], list[str]]:
        """Put back what nftnet applied: (what was done, what could not be put back)."""
        from nftnet.restore import restore

        return restore(self.state_dir, self._applier)

    def heal(self) -> tuple[list[str], list[Finding]] | None:
        """``restore`` after a commit that touched nftnet's table; None, at the cost of one
        netlink request, when the generation proves it was nftnet's own last change. Where
        nothing is missing, the user chain is recorded as it now is (hand-added rules
        included: a later restore puts them back)."""
        from nftnet.restore import heal

        return heal(self.state_dir, self._applier)

    def watch(self) -> Monitor:
        """A subscription to nftables' change notifications in this network namespace
        (``Monitor.read``: which tables each commit touched)."""
        from nftnet.nft.monitor import Monitor

        return Monitor()

    def teardown_plan(self, keep_bridges: bool) -> Plan:
        """What teardown removes, as the state and the kernel say now."""
        from nftnet import teardown

        self._no_daemon("teardown")
        with self.state_dir.locked():
            return teardown.plan(self.state_dir, self.kernel, keep_bridges)

    def teardown(self, plan: Plan) -> tuple[str | None, list[str]]:
        """Remove what ``plan`` lists, the user chain's rules saved to a file first: (that
        file, or None when the chain had no rules; what was done)."""
        from nftnet import teardown

        self._no_daemon("teardown")
        with self.state_dir.locked():
            if teardown.plan(self.state_dir, self.kernel, plan.keep_links) != plan:
                raise NftnetError("what teardown would remove changed meanwhile; nothing "
                                  "removed: run it again")
            saved = teardown.save_user_rules(plan.user_rules, self.state_dir.path.resolve()
                                             .parent) if plan.user_rules else None
            return (None if saved is None else str(saved),
                    teardown.execute(plan, self.state_dir, self.kernel))

    def forget(self) -> None:
        """Remove the state directory where there is nothing to tear down."""
        with self.state_dir.locked():
            self.state_dir.remove()

    # -- runtime changes -------------------------------------------------------------------

    def create_network(self, name: str, entry: dict[str, Any], owner: str | None = None
                       ) -> NetworkChange:
        """A network at runtime (``entry`` in the config file's format); a driver (``owner``)
        asking again for the same network changes nothing."""
        return self._runtime.create_network(name, entry, owner)

    def remove_network(self, name: str, force: bool = False, owner: str | None = None,
                       missing_ok: bool = False) -> NetworkChange:
        return self._runtime.remove_network(name, force, owner, missing_ok)

    def attach(self, name: str, network: str, netns: str, ipv4: str, ipv6: str | None,
               publish: list[str], ifname: str) -> EndpointChange:
        """A container's veth on ``network``'s bridge, its address(es), route and ports."""
        return self._runtime.attach(name, network, netns, ipv4, ipv6, publish, ifname)

    def detach(self, name: str) -> EndpointChange:
        return self._runtime.detach(name)

    def register(self, name: str, network: str, *, owner: str, ipv4: str | None = None,
                 ipv6: str | None = None, publish: list[str] | None = None,
                 host_ifname: str | None = None, network_entry: dict[str, Any] | None = None
                 ) -> EndpointChange:
        """An endpoint on an interface a runtime made, in one transaction; with
        ``network_entry``, its network made in it too where ``owner`` holds none (see
        ``Runtime.register``)."""
        return self._runtime.register(name, network, ipv4=ipv4, ipv6=ipv6,
                                      publish=list(publish or ()), host_ifname=host_ifname,
                                      owner=owner, network_entry=network_entry)

    def unregister(self, name: str, owner: str) -> EndpointChange | None:
        """Remove what ``register`` made; None when it is gone already (no error)."""
        return self._runtime.unregister(name, owner)

    def sync(self, owner: str, networks: dict[str, dict[str, Any]],
             endpoints: dict[str, dict[str, Any]]) -> SyncResult:
        """Make everything ``owner`` holds exactly ``networks`` (name -> config entry, on
        bridges the runtime made) and ``endpoints`` (name -> ``network``, ``ipv4``, ``ipv6``,
        ``publish``, ``host_ifname``: as ``register`` takes them), removing what it no longer
        has, in one transaction; entries that cannot be held are refused one by one, with
        the reason (see owned.py)."""
        from nftnet.owned import sync

        return sync(self._runtime, owner, networks, endpoints)

    def publish(self, endpoint: str, specs: list[str]) -> PortChange:
        return self._runtime.publish(endpoint, specs)

    def unpublish(self, endpoint: str, specs: list[str]) -> PortChange:
        return self._runtime.unpublish(endpoint, specs)

    # -- reading ---------------------------------------------------------------------------

    def effective(self) -> tuple[State, Config]:
        """The state and the config the kernel should hold (declared plus runtime);
        NftnetError when nothing is applied."""
        from nftnet.desired.effective import effective_config

        with self.state_dir.locked():
            self._runtime.recover()
            state = self._runtime.state()
        return state, effective_config(state.config, state.runtime)

    def declared(self) -> Config | None:
        """The config file nftnet last applied (without runtime changes); None when nothing
        is applied."""
        from nftnet.config.load import parse_config

        state = self.state_dir.load()
        if state is None:
            return None
        return parse_config(json.dumps(state.config), str(self.state_dir.path / "state.json"))

    def owners(self, state: State) -> dict[str, dict[str, str | None]]:
        """Who holds each runtime network and endpoint ("networks"/"endpoints" -> name ->
        owner: None for people); declared ones are absent."""
        from nftnet import records

        return records.owners(state.runtime)

    def chains(self) -> list[Json]:
        """Every chain of every table, as libnftables lists them (drivers look for other
        firewalls' chains here: Docker's own, say)."""
        return self.nft.list("chains") or []

    def foreign_drops(self) -> list[ForeignDrop]:
        """Other firewalls' forward chains with policy drop, which drop what nftnet lets
        through (Docker's leftover FORWARD DROP, say), each with the rule that fixes it."""
        from nftnet.coexist import foreign_drops

        return foreign_drops(self.nft)

    # -- a driver's daemon (nftnet daemon) -------------------------------------------------

    def daemon_lock(self) -> AbstractContextManager[None]:
        """Held for as long as a daemon runs on this state directory: one per directory
        (DaemonRunning otherwise). nftnet's own lock is taken per change only."""
        return self.state_dir.daemon_lock()

    def record_daemon(self, info: dict[str, Any]) -> None:
        """The daemon's account of itself, for ``status`` (plain JSON data)."""
        self.state_dir.save_daemon(info)

    def daemon(self) -> dict[str, Any] | None:
        """What the daemon last recorded, with ``running``: whether one holds the daemon lock
        now; None when no daemon ever ran here."""
        running = self.state_dir.daemon_running()
        info = self.state_dir.daemon_info()
        if info is None and not running:
            return None
        return {**(info or {}), "running": running}

    def _no_daemon(self, what: str) -> None:
        """NftnetError while a daemon runs here: it would make again what ``what`` removes."""
        if self.state_dir.daemon_running():
            pid = (self.state_dir.daemon_info() or {}).get("pid", "?")
            raise NftnetError(f"nftnet daemon (pid {pid}) runs on {self.state_dir.path} and "
                              f"would make it all again: stop it first (systemctl stop "
                              f"nftnet-daemon), then {what}")

    # -- the user chain --------------------------------------------------------------------

    def user_rules(self) -> Rules:
        from nftnet import user_chain

        return user_chain.rules(self.nft)

    def user_add(self, rule: str, position: int | None = None) -> RuleChange:
        from nftnet import user_chain

        return user_chain.add(self.state_dir, self.nft, rule, position)

    def user_remove(self, n: int) -> RuleChange:
        from nftnet import user_chain

        return user_chain.remove(self.state_dir, self.nft, n)
