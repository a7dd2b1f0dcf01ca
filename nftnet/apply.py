"""The imperative shell of ``nftnet apply``: links and sysctls, then one nftables batch.

Order matters for "nothing half-applied": everything that can be checked without changing the
host is checked first (config, user rules parsed by nft in a scratch namespace); bridges and
sysctls are set next and undone if the kernel then refuses the batch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from ipaddress import ip_interface
from typing import Any

from nftnet.compile import HostFacts, compile_config
from nftnet.config.dump import dump_config
from nftnet.config.load import parse_config
from nftnet.config.model import Config
from nftnet.desired.ports import PortIndex
from nftnet.effective import after_apply, merge
from nftnet.errors import ConfigError, NftnetError
from nftnet.link import bridges, sysctl
from nftnet.nft import scratch
from nftnet.nft.backend import USER_CHAIN_SPEC, user_chain_rules
from nftnet.nft.generation import after_one_commit, generation
from nftnet.nft.libnft import LibNft
from nftnet.nft.objects import Json
from nftnet.plan import describe_changes
from nftnet.state import State, StateDir, empty_runtime

FORWARD_KEYS = {4: sysctl.IP_FORWARD, 6: sysctl.IP6_FORWARD}


@dataclass
class Desired:
    """What one apply would send, and the facts it was computed from."""

    config: Config
    host: HostFacts
    batch: Json
    batch_hash: str
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


def user_rules_json(config: Config, host: HostFacts) -> list[list[Any]] | None:
    """The user rules as JSON expressions, parsed by nft itself inside nftnet's table (so they
    may use its sets); ConfigError names the ones nft refuses."""
    if not config.user_rules:
        return None if config.user_rules is None else []
    skeleton = compile_config(config, host, []).to_json()
    parsed, errors = scratch.parse_user_rules(skeleton, list(config.user_rules))
    if errors:
        raise ConfigError(
            [f"user_rules[{i}]: nft cannot use {config.user_rules[i]!r}: {msg}"
             for i, msg in sorted(errors.items())]
        )
    return parsed


def desired(config: Config, prev: State | None, host: HostFacts | None = None) -> Desired:
    """What an apply of ``config`` sends; ``host`` given (as recorded, for check) instead of
    observed now."""
    to_enable: list[int] = []
    if host is None:
        host, to_enable = host_facts(config, prev)
    batch = compile_config(config, host, user_rules_json(config, host)).to_json()
    # The compiler's output order is deterministic: no need to sort 100,000 keys to hash it.
    digest = hashlib.sha256(json.dumps(batch, separators=(",", ":")).encode()).hexdigest()
    return Desired(config, host, batch, digest, to_enable)


def unchanged_since(state: State) -> bool:
    """Whether the ruleset is exactly as nftnet's last change left it: no commit since, by
    anyone. Proven by the generation alone: listing a 50,000-element table costs seconds."""
    return state.generation is not None and generation() == state.generation


def bridge_specs(config: Config, runtime: dict[str, Any], state: State | None
                 ) -> list[bridges.BridgeSpec]:
    """The bridges ``config`` needs, each with the veths of the ``runtime`` endpoints on it,
    and, as ``state`` (nftnet's last change) records, whether nftnet created it (it then holds
    only the gateways) or which addresses nftnet added to it (the only ones it takes away)."""
    ports: dict[str, list[str]] = {}
    for ep in runtime["endpoints"].values():
        ports.setdefault(config.networks[ep["network"]].bridge, []).append(ep["host_ifname"])
    created = set(state.created_bridges) if state else set()
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
                                      frozenset(added.get(net.bridge, ()))))
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


@dataclass
class Result:
    changed: bool
    lines: list[str]


def effective_config(declared: dict[str, Any], runtime: dict[str, Any]) -> Config:
    """The config the kernel should hold: the declared file plus runtime changes."""
    return parse_config(json.dumps(merge(declared, runtime)), "config + runtime changes")


class Applier:
    """Full applies: ``apply -f``, and completing or healing after runtime changes."""

    def __init__(self, state_dir: StateDir, nft: LibNft | None = None) -> None:
        self.state_dir = state_dir
        self.nft = nft or LibNft()

    def apply(self, declared: Config, dry_run: bool = False) -> Result:
        with self.state_dir.locked():
            self.recover()
            prev = self.state_dir.load()
            declared_raw = dump_config(declared)
            runtime = after_apply(prev.runtime, declared_raw) if prev else empty_runtime()
            has_runtime = any(runtime.values())
            config = effective_config(declared_raw, runtime) if has_runtime else declared
            want = desired(config, prev)
            drift = prev is not None and not unchanged_since(prev)
            if (prev is not None and not drift and prev.batch_hash == want.batch_hash
                    and links_in_place(config, runtime, prev)):
                return Result(False, ["no changes: the kernel already matches the config"])
            old = effective_config(prev.config, prev.runtime) if prev else None
            lines = describe_changes(old, config, kernel_drift=drift)
            if dry_run:
                return Result(True, ["dry run, nothing applied; would change:", *lines])
            self.converge(want, prev, State(config=declared_raw, runtime=runtime))
            return Result(True, ["applied:", *lines])

    def converge(self, want: Desired, prev: State | None, base: State) -> State:
        """Make links (bridges, their addresses, runtime endpoints' veths back on them) and
        the whole table match ``want``; save ``base`` completed as the state. Link changes
        made here are undone if the kernel refuses the batch."""
        user_chain, batch = self._user_chain(want, prev)
        changes = self._links(want, bridge_specs(want.config, base.runtime, prev))
        before = generation()
        try:
            self.nft.run(batch)
        except NftnetError:
            self._undo(want, changes)
            raise
        base.forwarding_enabled = {str(v): True for v in (4, 6)
                                   if getattr(want.host, f"guard_forward{v}")}
        base.created_bridges = sorted(set(prev.created_bridges if prev else [])
                                      | set(changes.created))
        base.bridge_addresses = added_addresses(prev, changes)
        base.batch_hash = want.batch_hash
        base.generation = after_one_commit(before)
        index = PortIndex.of(want.config.published)
        base.ports, base.specific = index.ports, index.specific
        base.user_chain = user_chain if want.config.user_rules is None else None
        self.state_dir.save(base)
        self.state_dir.abort()
        return base

    def _user_chain(self, want: Desired, prev: State | None) -> tuple[list[Any], Json]:
        """The user chain's rules to record, taken before the change, and the batch to send.

        Where the chain is gone (nft flush ruleset, a reboot) and the config leaves it to
        people, the batch puts back its rules as nftnet last recorded them; the hash stays
        that of ``want``, which only the config decides.
        """
        live = self.nft.list(USER_CHAIN_SPEC)
        saved = prev.user_chain if prev and want.config.user_rules is None else None
        if live is not None or not saved:
            return user_chain_rules(live), want.batch
        return saved, compile_config(want.config, want.host, saved).to_json()

    def recover(self) -> bool:
        """Complete a change a killed nftnet left pending: the kernel and the state end up
        holding it. Call with the lock held; True if there was one."""
        pending = self.state_dir.pending()
        if pending is None:
            return False
        prev = self.state_dir.load()
        config = effective_config(pending.config, pending.runtime)
        self.converge(desired(config, prev), prev, pending)
        return True

    def _links(self, want: Desired, specs: list[bridges.BridgeSpec]) -> bridges.LinkChanges:
        changes = bridges.ensure_bridges(specs)
        try:
            _set_interface_sysctls(want.config)
            for v in want.forwarding_to_enable:
                sysctl.write(FORWARD_KEYS[v], "1")
        except NftnetError:
            self._undo(want, changes)
            raise
        return changes

    def _undo(self, want: Desired, changes: bridges.LinkChanges) -> None:
        for v in want.forwarding_to_enable:
            sysctl.write(FORWARD_KEYS[v], "0")
        bridges.undo(changes)


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
