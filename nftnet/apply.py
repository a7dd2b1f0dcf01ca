"""The imperative shell of ``nftnet apply``: links and sysctls, then one nftables batch.

Order matters for "nothing half-applied": everything that can be checked without changing the
host is checked first (config, user rules parsed by nft in a scratch namespace); bridges and
sysctls are set next and undone if the kernel then refuses the batch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from ipaddress import ip_interface
from typing import Any

from nftnet import names
from nftnet.compile import HostFacts, compile_config
from nftnet.config.dump import dump_config
from nftnet.config.load import located, parse_config
from nftnet.config.model import Config, Origin
from nftnet.effective import after_apply, merge, port_key, wildcard_key
from nftnet.errors import ConfigError, NftnetError
from nftnet.link import bridges, sysctl
from nftnet.nft import scratch
from nftnet.nft.generation import after_one_commit, generation
from nftnet.nft.libnft import LibNft
from nftnet.nft.objects import Elements, Json
from nftnet.plan import describe_changes
from nftnet.state import State, StateDir, empty_runtime

FORWARD_KEYS = {4: sysctl.IP_FORWARD, 6: sysctl.IP6_FORWARD}
USER_CHAIN_SPEC = f"chain {names.FAMILY} {names.TABLE} {names.USER_CHAIN}"


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


def user_rules_json(config: Config, host: HostFacts) -> list[Json] | None:
    """The user rules as nft lists them (``libnft.rule_body``): parsed by nft itself inside
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
    # The compiler's output order is deterministic: no need to sort 100,000 keys to hash it.
    digest = hashlib.sha256(json.dumps(batch, separators=(",", ":")).encode()).hexdigest()
    return Desired(config, host, batch, digest, to_enable)


def unchanged_since(state: State) -> bool:
    """Whether the ruleset is exactly as nftnet's last change left it: no commit since, by
    anyone. Proven by the generation alone: listing a 50,000-element table costs seconds."""
    return state.generation is not None and generation() == state.generation


def bridge_specs(config: Config) -> list[bridges.BridgeSpec]:
    out = []
    for net in config.networks.values():
        addrs = tuple(
            ip_interface(f"{gw}/{subnet.prefixlen}")
            for gw, subnet in ((net.gateway4, net.subnet4), (net.gateway6, net.subnet6))
            if gw is not None and subnet is not None
        )
        out.append(bridges.BridgeSpec(net.bridge, addrs, net.mtu))
    return out


def links_in_place(config: Config) -> bool:
    links = bridges.observe()
    for spec in bridge_specs(config):
        seen = links.get(spec.name)
        if seen is None or not seen.up or not {str(a) for a in spec.addresses} <= seen.addresses:
            return False
    return True


@dataclass
class Result:
    changed: bool
    lines: list[str]


def effective_config(declared: dict[str, Any], runtime: dict[str, Any],
                     origin: Origin | None = None) -> Config:
    """The config the kernel should hold: the declared file plus runtime changes. ``origin``,
    the declared file's, locates problems of its user_rules (runtime changes have none)."""
    config = parse_config(json.dumps(merge(declared, runtime)), "config + runtime changes")
    return replace(config, origin=origin)


def port_index(config: Config) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Who holds each host binding, and the holders of bindings to one address by port
    (``State.ports``, ``State.specific``): runtime commands' clash checks without a re-parse."""
    ports: dict[str, str] = {}
    specific: dict[str, list[str]] = {}
    for name, spec, m in config.published:
        holder = ports[port_key(m)] = f"endpoint {name} ({spec.text})"
        if m.host_ip is not None:
            specific.setdefault(wildcard_key(m), []).append(holder)
    return ports, specific


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
            config = (effective_config(declared_raw, runtime, declared.origin) if has_runtime
                      else declared)
            want = desired(config, prev)
            drift = prev is not None and not unchanged_since(prev)
            if (prev is not None and not drift and prev.batch_hash == want.batch_hash
                    and links_in_place(config)):
                return Result(False, ["no changes: the kernel already matches the config"])
            old = effective_config(prev.config, prev.runtime) if prev else None
            lines = describe_changes(old, config, kernel_drift=drift)
            if dry_run:
                return Result(True, ["dry run, nothing applied; would change:", *lines])
            self.converge(want, prev, State(config=declared_raw, runtime=runtime))
            return Result(True, ["applied:", *lines])

    def converge(self, want: Desired, prev: State | None, base: State) -> State:
        """Make links and the whole table match ``want``; save ``base`` completed as the
        state. Links made here are undone if the kernel refuses the batch."""
        user_chain, batch = self._user_chain(want, prev)
        created = self._links(want)
        before = generation()
        try:
            self.nft.run(batch)
        except NftnetError:
            self._undo(want, created)
            raise
        base.forwarding_enabled = {str(v): True for v in (4, 6)
                                   if getattr(want.host, f"guard_forward{v}")}
        base.created_bridges = sorted(set(prev.created_bridges if prev else []) | set(created))
        base.batch_hash = want.batch_hash
        base.generation = after_one_commit(before)
        base.ports, base.specific = port_index(want.config)
        base.user_chain = user_chain if want.config.user_rules is None else None
        self.state_dir.save(base)
        self.state_dir.abort()
        return base

    def _user_chain(self, want: Desired, prev: State | None) -> tuple[list[Any], Json]:
        """The user chain's rules to record (``LibNft.user_chain``), taken before the change,
        and the batch to send.

        Where the chain is gone (nft flush ruleset, a reboot) and the config leaves it to
        people, the batch puts back its rules as nftnet last recorded them; the hash stays
        that of ``want``, which only the config decides.
        """
        live = self.nft.user_chain()
        saved = prev.user_chain if prev and want.config.user_rules is None else None
        if live is not None or not saved:
            return live or [], want.batch
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

    def _links(self, want: Desired) -> list[str]:
        created = bridges.ensure_bridges(bridge_specs(want.config))
        try:
            _set_interface_sysctls(want.config)
            for v in want.forwarding_to_enable:
                sysctl.write(FORWARD_KEYS[v], "1")
        except NftnetError:
            self._undo(want, created)
            raise
        return created

    def _undo(self, want: Desired, created: list[str]) -> None:
        for v in want.forwarding_to_enable:
            sysctl.write(FORWARD_KEYS[v], "0")
        bridges.delete_links(created)


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
