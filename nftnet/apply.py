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
from ipaddress import ip_interface
from typing import Any

from nftnet import crash, names
from nftnet.compile import HostFacts, compile_config
from nftnet.compile.elements import PORT_MAPS
from nftnet.config.dump import dump_config
from nftnet.config.load import located, parse_config
from nftnet.config.model import Config, Origin
from nftnet.desired.ports import PortIndex
from nftnet.effective import after_apply, merge, runtime_clashes
from nftnet.errors import ConfigError, NftnetError
from nftnet.link import bridges, sysctl
from nftnet.link import model as link_model
from nftnet.nft import scratch
from nftnet.nft.backend import NftBackend, user_chain
from nftnet.nft.generation import after_one_commit, generation
from nftnet.nft.libnft import LibNft
from nftnet.nft.objects import Elements, Json
from nftnet.plan import describe_changes
from nftnet.results import ApplyResult
from nftnet.runtime import veth_changes, veth_spec
from nftnet.state import State, StateDir, empty_runtime

FORWARD_KEYS = {4: sysctl.IP_FORWARD, 6: sysctl.IP6_FORWARD}


@dataclass
class Desired:
    """What one apply would send, and the facts it was computed from."""

    config: Config
    host: HostFacts
    batch: Json
    batch_hash: str  # of all but the published ports' elements (State.batch_hash)
    ports_hash: str  # of those
    forwarding_to_enable: list[int] = field(default_factory=list)


def needs_forwarding(config: Config, family: int) -> bool:
    return any(
        (n.subnet4 if family == 4 else n.subnet6) is not None and not n.internal
        for n in config.networks.values()
    )


def host_facts(config: Config, prev: State | None) -> tuple[HostFacts, list[int]]:
    """Guard flags, and the families whose forwarding nftnet must switch on now.

    A guard, once set because nftnet switched forwarding on, stays while nftnet's state does.
    """
    enabled = dict(prev.forwarding_enabled) if prev else {}
    to_enable = []
    for v in (4, 6):
        if needs_forwarding(config, v) and sysctl.read(FORWARD_KEYS[v]) == "0":
            to_enable.append(v)
            enabled[str(v)] = True
    return HostFacts(enabled.get("4", False), enabled.get("6", False)), to_enable


def user_rules_json(config: Config, host: HostFacts) -> list[Json] | None:
    """The user rules as nft lists them (``backend.rule_body``): parsed by nft itself inside
    nftnet's table (so they may use its sets), each proven to be exactly one rule
    (``scratch.one_rule``). ConfigError names each entry that is not, at its file line."""
    if not config.user_rules:
        return None if config.user_rules is None else []
    skeleton = compile_config(config, host, [])
    skeleton.ops = [(verb, replace(obj, items=obj.items[:scratch.SAMPLE])
                     if isinstance(obj, Elements) else obj) for verb, obj in skeleton.ops]
    parsed, problems = scratch.parse_user_rules(skeleton.to_json(), list(config.user_rules))
    if problems:
        raise ConfigError(located(config.origin, [
            (("user_rules", i), problem.describe(config.user_rules[i]))
            for i, problem in sorted(problems.items())]))
    return parsed


def desired(config: Config, prev: State | None, host: HostFacts | None = None) -> Desired:
    """What an apply of ``config`` sends; ``host`` given (as recorded, for check) instead of
    observed now."""
    to_enable: list[int] = []
    if host is None:
        host, to_enable = host_facts(config, prev)
    batch = compile_config(config, host, user_rules_json(config, host)).to_json()
    ports: list[Json] = []
    rest: list[Json] = []
    for op in batch["nftables"]:
        name = op.get("add", {}).get("element", {}).get("name")
        (ports if name in PORT_MAPS else rest).append(op)
    return Desired(config, host, batch, _digest(rest), _digest(ports), to_enable)


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


def unchanged_since(state: State) -> bool:
    """Whether the ruleset is exactly as nftnet's last change left it: no commit since, by
    anyone. Proven by the generation alone: listing a 50,000-element table costs seconds."""
    return state.generation is not None and generation() == state.generation


def bridge_specs(config: Config, runtime: dict[str, Any], state: State | None,
                 claim: Collection[str] = ()) -> list[bridges.BridgeSpec]:
    """The bridges ``config`` needs, each with the veths of the ``runtime`` endpoints on it,
    and, as ``state`` (nftnet's last change) records, whether nftnet created it (it then holds
    only the gateways) or which addresses nftnet added to it (the only ones it takes away);
    ``claim`` names those the change under way records as its own creations."""
    ports: dict[str, list[str]] = {}
    for ep in runtime["endpoints"].values():
        if ep.get("host_ifname"):
            ports.setdefault(config.networks[ep["network"]].bridge, []).append(ep["host_ifname"])
    created = set(state.created_bridges if state else ()) | set(claim)
    added = state.bridge_addresses if state else {}
    out = []
    for net in config.networks.values():
        addrs = tuple(
            ip_interface(f"{gw}/{subnet.prefixlen}")
            for gw, subnet in ((net.gateway4, net.subnet4), (net.gateway6, net.subnet6))
            if gw is not None and subnet is not None
        )
        out.append(bridges.BridgeSpec(net.bridge, addrs, net.mtu,
                                      tuple(sorted(ports.get(net.bridge, ()))),
                                      net.bridge in created,
                                      frozenset(added.get(net.bridge, ())),
                                      net.bridge in claim))
    return out


def links_in_place(config: Config, runtime: dict[str, Any], state: State | None) -> bool:
    """Whether the bridges, their addresses and the runtime endpoints' veths on them are as
    ``config`` needs: one raw dump, no pyroute2."""
    return bridges.settled(bridge_specs(config, runtime, state))


def added_addresses(prev: State | None, changes: bridges.LinkChanges) -> dict[str, list[str]]:
    """``State.bridge_addresses`` after ``changes``: what nftnet added, less what it took away."""
    out = {b: set(addrs) for b, addrs in (prev.bridge_addresses if prev else {}).items()}
    for bridge, addrs in changes.added.items():
        out.setdefault(bridge, set()).update(addrs)
    for bridge, addrs in changes.removed.items():
        out.get(bridge, set()).difference_update(addrs)
    return {b: sorted(addrs) for b, addrs in sorted(out.items()) if addrs}


def effective_config(declared: dict[str, Any], runtime: dict[str, Any],
                     origin: Origin | None = None) -> Config:
    """The config the kernel should hold: the declared file plus runtime changes. ``origin``,
    the declared file's, locates problems of its user_rules (runtime changes have none)."""
    config = parse_config(json.dumps(merge(declared, runtime)), "config + runtime changes")
    return replace(config, origin=origin)


class Applier:
    """Full applies: ``apply -f``, and completing or healing after runtime changes."""

    def __init__(self, state_dir: StateDir, nft: NftBackend | None = None) -> None:
        self.state_dir = state_dir
        self.nft: NftBackend = nft or LibNft()

    def apply(self, declared: Config, dry_run: bool = False) -> ApplyResult:
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
            want = desired(config, prev)
            drift = prev is not None and not unchanged_since(prev)
            if (prev is not None and not drift and holds(prev, want, declared_raw, runtime)
                    and links_in_place(config, runtime, prev)):
                return ApplyResult(False, dry_run)
            old = effective_config(prev.config, prev.runtime) if prev else None
            lines = describe_changes(old, config, kernel_drift=drift)
            if dry_run:
                return ApplyResult(True, True, tuple(lines))
            self.converge(want, prev, State(config=declared_raw, runtime=runtime))
            return ApplyResult(True, False, tuple(lines))

    def converge(self, want: Desired, prev: State | None, base: State,
                 drop: Collection[str] = ()) -> State:
        """Make links and the whole table match ``want`` and ``base``, completed, the state.

        ``base`` is recorded first as the pending change, with the bridges this change
        creates; runtime endpoints' veths follow ``base`` (made where new, deleted where gone)
        and ``drop`` names bridges nftnet made that ``base`` no longer needs. Links made here
        are undone if the kernel refuses the batch; links deleted go only once the kernel holds
        it. Killed at any step, the pending change is left for ``recover``.
        """
        changes: bridges.LinkChanges | None = None
        try:
            user_chain, batch = self._user_chain(want, prev)
            # a change a killed command left records the bridges it creates: they are its own
            claim = set(base.created_bridges) - set(prev.created_bridges if prev else ())
            specs = bridge_specs(want.config, base.runtime, prev, claim)
            planned = link_model.planned(specs, bridges.observe())
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
            before = generation()
            crash.point("nft-before")
            self.nft.run(batch)
        except NftnetError:  # the kernel does not hold the change: forget it
            self._undo(prev, base, want.forwarding_to_enable, changes)
            self.state_dir.abort()
            raise
        crash.point("nft-after")
        # the kernel holds the change: from here on it is completed, now or by recover
        self._remove_links(prev, base, want.config)
        base.generation = after_one_commit(before)
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
        return saved, compile_config(want.config, want.host, saved).to_json()

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
            want = desired(effective_config(after.config, after.runtime), after)
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
            self.converge(desired(effective_config(prev.config, prev.runtime), prev), prev,
                          copy.deepcopy(prev))
        except NftnetError as e:
            raise NftnetError(f"{message}\nand what nftnet applied before could not be put "
                              f"back either: {e}") from None
        raise NftnetError(message)

    def _links(self, want: Desired, prev: State | None, base: State,
               specs: list[bridges.BridgeSpec]) -> bridges.LinkChanges:
        """Bridges (their addresses, runtime endpoints' veths back on them), sysctls, IP
        forwarding and new runtime endpoints' veths; LinkError, with what this call changed of
        the bridges taken back."""
        changes = bridges.ensure_bridges(specs)
        crash.point("links")
        try:
            _set_interface_sysctls(want.config)
            for v in want.forwarding_to_enable:
                sysctl.write(FORWARD_KEYS[v], "1")
            crash.point("sysctls")
            make, _ = veth_changes(prev.runtime["endpoints"] if prev else {},
                                   base.runtime["endpoints"])
            if make:
                from nftnet.link import veth

                for name in make:
                    veth.attach(veth_spec(name, base.runtime["endpoints"][name], want.config))
                crash.point("veth-made")
        except NftnetError:
            bridges.undo(changes)
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
            from nftnet.link import veth

            for host_ifname in gone:
                veth.detach(host_ifname)
            _delete_bridges(dropped)
            crash.point("links-removed")

    def _undo(self, prev: State | None, base: State, forwarding: list[int],
              changes: bridges.LinkChanges | None = None) -> None:
        """Remove what ``_links`` made for the change from ``prev`` to ``base``: new runtime
        endpoints' veths, IP forwarding of ``forwarding``'s families, and ``changes`` to the
        bridges (where unknown, as for a change a killed command left: the bridges ``base``
        records and ``prev`` does not)."""
        for v in forwarding:
            sysctl.write(FORWARD_KEYS[v], "0")
        make, _ = veth_changes(prev.runtime["endpoints"] if prev else {},
                               base.runtime["endpoints"])
        if make:
            from nftnet.link import veth

            for name in make:
                veth.detach(base.runtime["endpoints"][name]["host_ifname"])
        if changes is not None:
            bridges.undo(changes)
        else:
            _delete_bridges(sorted(set(base.created_bridges)
                                   - set(prev.created_bridges if prev else ())))


def _delete_bridges(candidates: list[str]) -> None:
    """Delete those of ``candidates`` that are bridges: a name recorded before nftnet created the
    bridge may since be another link of someone else's, which stays."""
    if candidates:
        links = bridges.observe()
        bridges.delete_links(n for n in candidates if n in links and links[n].kind == "bridge")


def interface_sysctls(config: Config) -> dict[str, str]:
    """Per-bridge settings, and br_netfilter's for icc=false (as Docker does): key -> value."""
    out = {}
    for net in config.networks.values():
        if net.subnet6 is not None:
            out[sysctl.iface(6, net.bridge, "disable_ipv6")] = "0"
        if net.subnet4 is not None and not net.internal:
            # The host reaches ports published on 127.0.0.1 through a DNAT to the bridge.
            out[sysctl.iface(4, net.bridge, "route_localnet")] = "1"
    if any(not n.icc for n in config.networks.values()):
        out |= dict.fromkeys(sysctl.BRIDGE_NF, "1")
    return out


def _set_interface_sysctls(config: Config) -> None:
    for key, value in interface_sysctls(config).items():
        if key in sysctl.BRIDGE_NF and sysctl.read(key) is None:
            raise NftnetError(
                "icc: false needs br_netfilter, which is not loaded (modprobe br_netfilter)"
            )
        sysctl.write(key, value)
