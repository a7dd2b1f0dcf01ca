"""The imperative shell of ``nftnet apply``: links and sysctls, then one nftables batch.

Order matters for "nothing half-applied": everything that can be checked without changing the
host is checked first (config, user rules parsed by nft in a scratch namespace); bridges and
sysctls are set next and undone if the kernel then refuses the batch.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from typing import Any

from nftnet import applied, crash, names
from nftnet.compile import HostFacts, compile_config
from nftnet.compile.elements import PORT_MAPS
from nftnet.config.dump import dump_config
from nftnet.config.load import located
from nftnet.config.model import Config
from nftnet.desired.effective import after_apply, effective_config, runtime_clashes
from nftnet.desired.links import (
    FORWARD_KEYS,
    added_addresses,
    bridge_specs,
    interface_sysctls,
    needs_forwarding,
)
from nftnet.desired.plan import describe_changes
from nftnet.desired.ports import PortIndex
from nftnet.errors import ConfigError, NftnetError
from nftnet.kernel import Kernel
from nftnet.link import model as link_model
from nftnet.link.backend import LinkBackend
from nftnet.nft.backend import NftBackend, Scratch, user_chain
from nftnet.nft.generation import follows
from nftnet.nft.objects import Elements, Json, user_rule
from nftnet.nft.scratch import SAMPLE
from nftnet.nft.transaction import Transaction
from nftnet.results import ApplyResult
from nftnet.runtime import veth_changes, veth_spec
from nftnet.state import State, StateDir, empty_runtime


@dataclass
class Desired:
    """What one apply would send, and the facts it was computed from."""

    config: Config
    host: HostFacts
    batch: Json
    batch_hash: str  # of all but the published ports' elements (State.batch_hash)
    ports_hash: str  # of those
    forwarding_to_enable: list[int] = field(default_factory=list)
    compiled: Transaction | None = None  # the batch without user rules, to add others to


def host_facts(config: Config, prev: State | None, links: LinkBackend
               ) -> tuple[HostFacts, list[int]]:
    """Guard flags, and the families whose forwarding nftnet must switch on now.

    A guard, once set because nftnet switched forwarding on, stays while nftnet's state does.
    """
    enabled = dict(prev.forwarding_enabled) if prev else {}
    to_enable = []
    for v in (4, 6):
        if needs_forwarding(config, v) and links.read_sysctl(FORWARD_KEYS[v]) == "0":
            to_enable.append(v)
            enabled[str(v)] = True
    return HostFacts(enabled.get("4", False), enabled.get("6", False)), to_enable


def user_rules_json(config: Config, host: HostFacts, scratch: Scratch | None = None,
                    compiled: Transaction | None = None) -> list[Json] | None:
    """The user rules as nft lists them (``backend.rule_body``): parsed by nft itself inside
    nftnet's table (so they may use its sets; ``compiled``, the config's batch without its user
    rules, where the caller has it), each proven to be exactly one rule (``scratch.one_rule``).
    ConfigError names each entry that is not, at its file line."""
    if not config.user_rules:
        return None if config.user_rules is None else []
    if scratch is None:
        from nftnet.nft import scratch as scratch_module

        scratch = scratch_module
    compiled = compiled or compile_config(config, host, [])
    skeleton = Transaction(ops=[(verb, replace(obj, items=obj.items[:SAMPLE])
                                 if isinstance(obj, Elements) else obj)
                                for verb, obj in compiled.ops])
    parsed, problems = scratch.parse_user_rules(skeleton.to_json(), list(config.user_rules))
    if problems:
        raise ConfigError(located(config.origin, [
            (("user_rules", i), problem.describe(config.user_rules[i]))
            for i, problem in sorted(problems.items())]))
    return parsed


def with_user_rules(tx: Transaction, rules: list[Json] | list[list[Json]]) -> Json:
    """The batch of ``tx`` with ``rules`` (as nft listed them) added to the user chain last,
    where the compiler puts them: the config is compiled once."""
    out = Transaction(ops=list(tx.ops))
    for recorded in rules:
        out.add(user_rule(recorded))
    return out.to_json()


def desired(config: Config, prev: State | None, host: HostFacts | None = None,
            kernel: Kernel | None = None) -> Desired:
    """What an apply of ``config`` sends; ``host`` given (as recorded, for check) instead of
    observed now through ``kernel`` (this host's by default)."""
    kernel = kernel or Kernel()
    to_enable: list[int] = []
    if host is None:
        host, to_enable = host_facts(config, prev, kernel.links)
    tx = compile_config(config, host, None if config.user_rules is None else [])
    batch = with_user_rules(tx, user_rules_json(config, host, kernel.scratch, tx) or [])
    ports: list[Json] = []
    rest: list[Json] = []
    for op in batch["nftables"]:
        name = op.get("add", {}).get("element", {}).get("name")
        (ports if name in PORT_MAPS else rest).append(op)
    return Desired(config, host, batch, _digest(rest), _digest(ports), to_enable, tx)


def _digest(ops: list[Json]) -> str:
    # The compiler's output order is deterministic: no need to sort 100,000 keys to hash it.
    return hashlib.sha256(json.dumps(ops, separators=(",", ":")).encode()).hexdigest()


def holds(prev: State, want: Desired, declared: dict[str, Any], runtime: dict[str, Any]
          ) -> bool:
    """Whether the table nftnet's last change left is ``want`` (given no commit since): all
    but the published ports as the last full change hashed them; the ports as it hashed them
    too or, where runtime changes sent only their elements since, as the state records them,
    since an unchanged effective config compiles to the same ports."""
    if prev.batch_hash != want.batch_hash:
        return False
    if prev.ports_hash:
        return prev.ports_hash == want.ports_hash
    return prev.config == declared and prev.runtime == runtime


def unchanged_since(state: State, nft: NftBackend) -> bool:
    """Whether the ruleset is exactly as nftnet's last change left it: no commit since, by
    anyone. Proven by the generation alone: listing a 50,000-element table costs seconds."""
    return state.generation is not None and nft.generation() == state.generation


class Applier:
    """Full applies: ``apply -f``, and completing or healing after runtime changes."""

    def __init__(self, state_dir: StateDir, kernel: Kernel | None = None) -> None:
        self.state_dir = state_dir
        self.kernel = kernel or Kernel()

    @property
    def nft(self) -> NftBackend:
        return self.kernel.nft

    @property
    def links(self) -> LinkBackend:
        return self.kernel.links

    def desired(self, config: Config, prev: State | None) -> Desired:
        return desired(config, prev, kernel=self.kernel)

    def apply(self, declared: Config, dry_run: bool = False, digest: str | None = None
              ) -> ApplyResult:
        """Apply ``declared``; ``digest``: its file's (``applied.fingerprint``), recorded
        where the kernel, links and state end up as the file declares."""
        with self.state_dir.locked():
            self.recover()
            prev = self.state_dir.load()
            declared_raw = dump_config(declared)
            runtime = after_apply(prev.runtime, declared_raw) if prev else empty_runtime()
            if clashes := runtime_clashes(declared, runtime):  # at the file's lines
                raise ConfigError(located(declared.origin, clashes))
            has_runtime = any(runtime.values())
            config = (effective_config(declared_raw, runtime, declared.origin) if has_runtime
                      else declared)
            want = self.desired(config, prev)
            drift = prev is not None and not unchanged_since(prev, self.nft)
            if prev is not None and not drift and holds(prev, want, declared_raw, runtime):
                # the bridges, their addresses and the runtime endpoints' veths as ``config``
                # needs them: one raw dump (no pyroute2), which the proof records too
                specs, seen = bridge_specs(config, runtime, prev), self.links.observe()
                if link_model.settled(specs, seen):
                    if digest is not None:
                        self._record(digest, config, prev.generation, specs, seen)
                    return ApplyResult(False, dry_run)
            old = effective_config(prev.config, prev.runtime) if prev else None
            lines = describe_changes(old, config, kernel_drift=drift)
            if dry_run:
                return ApplyResult(True, True, tuple(lines))
            after = self.converge(want, prev, State(config=declared_raw, runtime=runtime))
            if digest is not None:
                self._record(digest, config, after.generation,
                             bridge_specs(config, after.runtime, after), self.links.observe())
            return ApplyResult(True, False, tuple(lines))

    def _record(self, digest: str, config: Config, generation: str | None,
                specs: list[link_model.BridgeSpec], links: dict[str, link_model.LinkState]
                ) -> None:
        """The proof that the file of ``digest`` holds (applied.py): the kernel at
        ``generation``, ``links`` as seen (settled) for ``specs``, the state final."""
        families = [v for v in (4, 6) if needs_forwarding(config, v)]
        applied.record(self.state_dir, digest, generation, specs, links, families)

    def converge(self, want: Desired, prev: State | None, base: State,
                 drop: Collection[str] = ()) -> State:
        """Make links and the whole table match ``want`` and ``base``, completed, the state.

        ``base`` is recorded first as the pending change, with the bridges this change
        creates; runtime endpoints' veths follow ``base`` (made where new, deleted where gone)
        and ``drop`` names bridges nftnet made that ``base`` no longer needs. Links made here
        are undone if the kernel refuses the batch; links deleted go only once the kernel holds
        it. Killed at any step, the pending change is left for ``recover``.
        """
        changes: link_model.LinkChanges | None = None
        try:
            user_chain, batch = self._user_chain(want, prev)
            # a change a killed command left records the bridges it creates: they are its own
            claim = set(base.created_bridges) - set(prev.created_bridges if prev else ())
            specs = bridge_specs(want.config, base.runtime, prev, claim)
            planned = link_model.planned(specs, self.links.observe())
            kept = (set(base.created_bridges) | set(prev.created_bridges if prev else ())
                    ) - set(drop)
            base.created_bridges = sorted(kept | set(planned.created))
            base.bridge_addresses = {b: a for b, a in added_addresses(prev, planned).items()
                                     if b not in drop}
            base.forwarding_enabled = {str(v): True for v in (4, 6)
                                       if getattr(want.host, f"guard_forward{v}")}
            base.batch_hash, base.ports_hash = want.batch_hash, want.ports_hash
            index = PortIndex.of(want.config.published)
            base.ports, base.specific = index.ports, index.specific
            base.user_chain = user_chain if want.config.user_rules is None else None
            self.state_dir.prepare(base)
            changes = self._links(want, prev, base, specs)
            before = self.nft.generation()
            crash.point("nft-before")
            self.nft.run(batch)
        except NftnetError:  # the kernel does not hold the change: forget it
            self._undo(prev, base, want.forwarding_to_enable, changes)
            self.state_dir.abort()
            raise
        crash.point("nft-after")
        # the kernel holds the change: from here on it is completed, now or by recover
        self._remove_links(prev, base, want.config)
        base.generation = follows(before, self.nft.generation())
        self.state_dir.finish(base)
        return base

    def _user_chain(self, want: Desired, prev: State | None) -> tuple[list[Any], Json]:
        """The user chain's rules to record (``LibNft.user_chain``), taken before the change,
        and the batch to send.

        Where the chain is gone (nft flush ruleset, a reboot) and the config leaves it to
        people, the batch puts back its rules as nftnet last recorded them; the hash stays
        that of ``want``, which only the config decides.
        """
        live = user_chain(self.nft)
        saved = prev.user_chain if prev and want.config.user_rules is None else None
        if live is not None or not saved:
            return live or [], want.batch
        compiled = want.compiled or compile_config(want.config, want.host)
        return saved, with_user_rules(compiled, saved)

    def recover(self) -> bool:
        """Complete a change a killed nftnet left pending: the kernel, the links and the state
        end up holding it. If that is no longer possible (the kernel refuses it, a bridge's
        name was taken meanwhile), roll it back instead, so that it blocks no later command,
        and raise. Call with the lock held; True if there was one."""
        pending = self.state_dir.pending()
        if pending is None:
            return False
        prev, after = pending
        try:
            self.complete(prev, after)
        except NftnetError as e:
            self._roll_back(prev, after, e)
        return True

    def complete(self, prev: State | None, after: State) -> State:
        """Converge to ``after``, a pending change from ``prev`` (begun, maybe half done);
        NftnetError, the change forgotten, if the kernel does not come to hold it."""
        try:
            want = self.desired(effective_config(after.config, after.runtime), after)
        except NftnetError:
            self.state_dir.abort()
            raise
        drop = set(prev.created_bridges if prev else ()) - set(after.created_bridges)
        return self.converge(want, prev, after, drop)

    def _roll_back(self, prev: State | None, after: State, error: NftnetError) -> None:
        """Forget a change ``recover`` cannot complete: the links and forwarding it made go,
        and the kernel is brought back to ``prev``; raises NftnetError saying so."""
        message = f"an interrupted change could not be completed and was rolled back: {error}"
        try:
            self._undo(prev, after, [int(v) for v in after.forwarding_enabled
                                     if prev is None or v not in prev.forwarding_enabled])
        except NftnetError as e:  # reported, but the change must not block every command
            message += f"\n(and some of its links could not be removed: {e})"
        self.state_dir.abort()
        if prev is None:
            raise NftnetError(f"{message}\n(nothing was applied before it; {names.FAMILY} "
                              f"{names.TABLE} is left as it got)")
        try:
            self.converge(self.desired(effective_config(prev.config, prev.runtime), prev), prev,
                          copy.deepcopy(prev))
        except NftnetError as e:
            raise NftnetError(f"{message}\nand what nftnet applied before could not be put "
                              f"back either: {e}") from None
        raise NftnetError(message)

    def _links(self, want: Desired, prev: State | None, base: State,
               specs: list[link_model.BridgeSpec]) -> link_model.LinkChanges:
        """Bridges (their addresses, runtime endpoints' veths back on them), sysctls, IP
        forwarding and new runtime endpoints' veths; LinkError, with what this call changed of
        the bridges taken back."""
        # a bridge's own settings first where it exists (IPv6 switched off by hand refuses
        # its IPv6 gateway), then all, new bridges' too
        _set_interface_sysctls(want.config, self.links, existing_only=True)
        changes = self.links.ensure_bridges(specs)
        crash.point("links")
        try:
            _set_interface_sysctls(want.config, self.links)
            for v in want.forwarding_to_enable:
                self.links.write_sysctl(FORWARD_KEYS[v], "1")
            crash.point("sysctls")
            make, _ = veth_changes(prev.runtime["endpoints"] if prev else {},
                                   base.runtime["endpoints"])
            for name in make:
                self.links.attach_veth(veth_spec(name, base.runtime["endpoints"][name],
                                                 want.config))
            if make:
                crash.point("veth-made")
        except NftnetError:
            self.links.undo(changes)
            raise
        return changes

    def _remove_links(self, prev: State | None, base: State, config: Config) -> None:
        """The veths of runtime endpoints ``base`` no longer has, and the bridges nftnet made
        that it no longer records (never one the config still uses)."""
        _, gone = veth_changes(prev.runtime["endpoints"] if prev else {},
                               base.runtime["endpoints"])
        used = {net.bridge for net in config.networks.values()}
        dropped = [b for b in prev.created_bridges if b not in base.created_bridges
                   and b not in used] if prev else []
        if gone or dropped:
            for host_ifname in gone:
                self.links.detach_veth(host_ifname)
            _delete_bridges(self.links, dropped)
            crash.point("links-removed")

    def _undo(self, prev: State | None, base: State, forwarding: list[int],
              changes: link_model.LinkChanges | None = None) -> None:
        """Remove what ``_links`` made for the change from ``prev`` to ``base``: new runtime
        endpoints' veths, IP forwarding of ``forwarding``'s families, and ``changes`` to the
        bridges (where unknown, as for a change a killed command left: the bridges ``base``
        records and ``prev`` does not)."""
        for v in forwarding:
            self.links.write_sysctl(FORWARD_KEYS[v], "0")
        make, _ = veth_changes(prev.runtime["endpoints"] if prev else {},
                               base.runtime["endpoints"])
        for name in make:
            self.links.detach_veth(base.runtime["endpoints"][name]["host_ifname"])
        if changes is not None:
            self.links.undo(changes)
        else:
            _delete_bridges(self.links, sorted(set(base.created_bridges)
                                               - set(prev.created_bridges if prev else ())))


def _delete_bridges(backend: LinkBackend, candidates: list[str]) -> None:
    """Delete those of ``candidates`` that are bridges: a name recorded before nftnet created the
    bridge may since be another link of someone else's, which stays."""
    if candidates:
        links = backend.observe()
        backend.delete_links(n for n in candidates if n in links and links[n].kind == "bridge")


def _set_interface_sysctls(config: Config, links: LinkBackend, existing_only: bool = False
                           ) -> None:
    """Write what ``interface_sysctls`` says; ``existing_only``: only the settings of links
    that exist already. NftnetError where icc: false needs br_netfilter and it is not there."""
    for key, value in interface_sysctls(config).items():
        now = links.read_sysctl(key)
        if key in link_model.BRIDGE_NF and now is None:
            raise NftnetError(
                "icc: false needs br_netfilter, which is not loaded (modprobe br_netfilter)"
            )
        if now is None and existing_only:
            continue
        if now != value:
            links.write_sysctl(key, value)
