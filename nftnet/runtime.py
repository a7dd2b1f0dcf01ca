"""Runtime changes: attach and detach endpoints, publish and unpublish ports, one at a time.

Each change touches only map elements and that endpoint's links, in one transaction, whatever
else is applied. The state is read raw and indexed (``State.ports``) so that a change costs
the same with 10 or 20,000 ports. Journal: the change is written first (the veth it makes
named in it), then the veth made, the kernel changed, a veth it deletes deleted, then the
change committed; a crash in between is completed by the next command.

Publishing and unpublishing are the commands scripts run most: their path imports neither
marshmallow (stored entries were validated when recorded) nor pyroute2 nor the full applier,
which the other commands import where they use them.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, ip_address, ip_interface
from typing import TYPE_CHECKING, Any

from nftnet import crash, records
from nftnet.compile.elements import port_elements
from nftnet.config.model import (
    Config,
    Endpoint,
    IPAddress,
    Network,
    PortMapping,
    PublishSpec,
)
from nftnet.config.publish import expand, parse_publish
from nftnet.desired import addresses as desired_addresses
from nftnet.desired.ports import PortIndex, clash_message, holder_name
from nftnet.errors import ConfigError, NftnetError
from nftnet.kernel import Kernel
from nftnet.nft.generation import follows
from nftnet.nft.objects import Elements
from nftnet.nft.transaction import Transaction
from nftnet.records import config_entry, endpoint_model, host_binding, made_veth
from nftnet.results import EndpointChange, NetworkChange, PortChange
from nftnet.state import State, StateDir, runtime_change

if TYPE_CHECKING:
    from nftnet.apply import Applier
    from nftnet.config.document import Path_
    from nftnet.link.backend import LinkBackend
    from nftnet.link.model import LinkState, VethSpec
    from nftnet.nft.backend import NftBackend

Label = Callable[["Path_"], str]  # a field's path as the command's user names it


@dataclass
class Step:
    """What one runtime change does: its transaction and result, and the veth it makes
    (attach), the host end of the veth it deletes (detach) or the runtime's veth it puts on
    its bridge with hairpin on (register)."""

    tx: Transaction
    result: Any
    make: VethSpec | None = None
    remove: str | None = None
    plug: tuple[str, str] | None = None  # a runtime's veth to put on its bridge: (veth, bridge)


class Runtime:
    def __init__(self, state_dir: StateDir, applier: Applier | None = None,
                 kernel: Kernel | None = None) -> None:
        self.state_dir = state_dir
        self._applier = applier
        self.kernel = applier.kernel if applier is not None else kernel or Kernel()

    @property
    def nft(self) -> NftBackend:
        """The nftables backend (libnftables, loaded on first use: the listing commands never
        need it)."""
        return self.kernel.nft

    @property
    def links(self) -> LinkBackend:
        return self.kernel.links

    @property
    def applier(self) -> Applier:
        """The full applier, for healing and network changes (imported on first use)."""
        if self._applier is None:
            from nftnet.apply import Applier

            self._applier = Applier(self.state_dir, self.kernel)
        return self._applier

    def recover(self) -> None:
        """Complete a change a killed nftnet left pending (file checks when there is none)."""
        if self.state_dir.pending() is not None:
            self.applier.recover()

    # -- reading ---------------------------------------------------------------------------

    def state(self) -> State:
        return _applied(self.state_dir.load())

    def entry(self, state: State, kind: str, name: str) -> tuple[dict[str, Any], bool]:
        """The raw entry and whether it was made at runtime; ConfigError if there is none."""
        if name in state.runtime[kind]:
            return state.runtime[kind][name], True
        declared = state.config.get(kind) or {}
        if name in declared:
            return declared[name], False
        raise ConfigError([f"no {kind[:-1]} {name!r}"])

    def endpoint(self, state: State, name: str) -> tuple[Endpoint, IPv4Address]:
        """The endpoint with its effective ports, and its network's host binding."""
        raw, _ = self.entry(state, "endpoints", name)
        net_raw, _ = self.entry(state, "networks", raw["network"])
        return endpoint_model(name, _published(state, name, raw)), host_binding(net_raw)

    # -- ports -----------------------------------------------------------------------------

    def publish(self, name: str, texts: list[str]) -> PortChange:
        """Publish ports of endpoint ``name``; ConfigError names a clash and its holder."""
        def change(state: State) -> Step:
            ep, binding = self.endpoint(state, name)
            maps = _claim(state, ep, binding, [_spec(t, i) for i, t in enumerate(texts)])
            raw, is_runtime = self.entry(state, "endpoints", name)
            target = raw.setdefault("publish", []) if is_runtime else \
                state.runtime["publish"].setdefault(name, [])
            for text in texts:
                _discard(state.runtime["unpublish"].get(name, []), text)
                target.append(text)
            return Step(_elements_tx(maps, "add"), PortChange(name, added=tuple(maps)))
        return self._change(name, change)

    def unpublish(self, name: str, texts: list[str]) -> PortChange:
        def change(state: State) -> Step:
            ep, binding = self.endpoint(state, name)
            raw, is_runtime = self.entry(state, "endpoints", name)
            maps: list[PortMapping] = []
            for i, text in enumerate(texts):
                spec = _spec(text, i)
                held = next((p for p in ep.publish if _same(p, spec)), None)
                if held is None:
                    raise ConfigError([f"publish[{i}]: endpoint {name} does not publish {text}"])
                maps += _release(state, expand(held, ep, binding))
                runtime_list = raw.get("publish", []) if is_runtime else \
                    state.runtime["publish"].get(name, [])
                if not _discard(runtime_list, held.text):
                    state.runtime["unpublish"].setdefault(name, []).append(held.text)
            return Step(_elements_tx(maps, "delete"), PortChange(name, removed=tuple(maps)))
        return self._change(name, change)

    # -- endpoints -------------------------------------------------------------------------

    def attach(self, name: str, network: str, netns: str, ipv4: str, ipv6: str | None,
               publish: list[str], ifname: str) -> EndpointChange:
        from marshmallow import ValidationError

        from nftnet.config.load import load_entry
        from nftnet.config.schema import check_ifname

        label = _option_label("endpoints", name, {"publish": publish})
        try:
            check_ifname(ifname)
        except ValidationError as e:
            raise ConfigError([f"{label(('ifname',))}: {e.messages[0]}"]) from None

        def change(state: State) -> Step:
            if name in state.runtime["endpoints"] or name in (state.config.get("endpoints")
                                                              or {}):
                raise ConfigError([f"endpoint {name!r} exists already"])
            net_raw, _ = self.entry(state, "networks", network)
            net = load_entry("networks", network, net_raw)
            assert isinstance(net, Network)
            found = desired_addresses.addresses(_used(state, net.name), net, ipv4, ipv6, label)
            raw = {"network": network, **found, "publish": publish}
            ep = load_entry("endpoints", name, raw, label)
            assert isinstance(ep, Endpoint)
            maps = _claim(state, ep, net.host_binding_ipv4, list(ep.publish),
                          lambda i: label(("endpoints", name, "publish", i)))
            entry = {**raw, "netns": netns, "ifname": ifname, "host_ifname": host_ifname(name)}
            state.runtime["endpoints"][name] = entry
            spec = _veth_spec(name, net, ep, entry)
            result = EndpointChange(name, network, True, spec.addresses, spec.host_ifname,
                                    PortChange(name, added=tuple(maps)))
            return Step(_elements_tx(maps, "add"), result, make=spec)
        return self._change(name, change)

    def detach(self, name: str) -> EndpointChange:
        def change(state: State) -> Step:
            raw, is_runtime = self.entry(state, "endpoints", name)
            if not is_runtime:
                raise ConfigError([f"endpoint {name} is declared in the config file; remove it "
                                   "there and apply"])
            ep, binding = self.endpoint(state, name)
            maps = _release(state, [m for spec in ep.publish for m in expand(spec, ep, binding)])
            del state.runtime["endpoints"][name]
            state.runtime["publish"].pop(name, None)
            result = EndpointChange(name, ep.network, False, host_ifname=raw.get("host_ifname"),
                                    ports=PortChange(name, removed=tuple(maps)))
            return Step(_elements_tx(maps, "delete"), result, remove=made_veth(raw))
        return self._change(name, change)

    def register(self, name: str, network: str, *, ipv4: str | None, ipv6: str | None,
                 publish: list[str], host_ifname: str | None, owner: str,
                 network_entry: dict[str, Any] | None = None) -> EndpointChange:
        """Register an endpoint on an interface someone else made (a driver's: Docker's veth,
        the CNI bridge plugin's), with the addresses its IPAM gave and its ports, in one
        transaction. The same name registered again by the same owner is replaced in that
        one transaction. nftnet never makes or deletes its link, but puts it as its own
        attach would (up, hairpin on: link/model.py) where it is not.

        With ``network_entry`` (the network's config entry), a network ``owner`` does not
        hold yet is made in the same transaction (a full one: its sets, its bridge adopted);
        one the owner holds with that entry is used as it is.

        ConfigError names what is wrong: a network that does not exist (or exists with other
        settings, or is someone else's), an address outside its subnet or held by another
        endpoint, a port held by another, ``host_ifname`` not on the network's bridge, a name
        held by someone else. Nothing is applied then."""
        from nftnet.config.load import load_entry
        from nftnet.link import model as link_model

        label = _option_label("endpoints", name, {"publish": publish})
        new_net = None if network_entry is None else load_entry(
            "networks", network, network_entry, _option_label("networks", network,
                                                              network_entry))

        def change(state: State) -> Step:
            old = state.runtime["endpoints"].get(name)
            if name in (state.config.get("endpoints") or {}) or (
                    old is not None and records.owner(old) != owner):
                holder = "the config file" if old is None else records.owner(old) or "people"
                raise ConfigError([f"endpoint {name!r} exists already (held by {holder})"])
            released: list[PortMapping] = []
            if old is not None:  # replaced: its ports go in the same transaction
                ep, binding = self.endpoint(state, name)
                released = _release(state, [m for spec in ep.publish
                                            for m in expand(spec, ep, binding)])
                del state.runtime["endpoints"][name]
                state.runtime["publish"].pop(name, None)
                state.runtime["unpublish"].pop(name, None)
            net_raw, _ = self.entry(state, "networks", network)
            net = load_entry("networks", network, config_entry(net_raw))
            assert isinstance(net, Network)
            if ipv4 is None and ipv6 is None:
                raise ConfigError([f"endpoint {name}: an endpoint needs ipv4, ipv6 or both"])
            found = desired_addresses.addresses(_used(state, net.name), net, ipv4, ipv6, label)
            raw = {"network": network, **found, "publish": publish}
            ep = load_entry("endpoints", name, raw, label)
            assert isinstance(ep, Endpoint)
            plug = None
            if host_ifname is not None:
                links = self.links.lookup((host_ifname, net.bridge))
                _on_bridge(links, host_ifname, net.bridge, label)
                if link_model.port_problems(host_ifname, net.bridge, links):
                    plug = (host_ifname, net.bridge)
            maps = _claim(state, ep, net.host_binding_ipv4, list(ep.publish),
                          lambda i: label(("endpoints", name, "publish", i)))
            state.runtime["endpoints"][name] = records.RuntimeEndpoint(
                network, raw.get("ipv4"), raw.get("ipv6"), publish, host_ifname,
                owns_link=False, owner=owner).to_json()
            tx = _elements_tx(released, "delete")
            tx.ops += _elements_tx(maps, "add").ops
            addresses = tuple(ip_interface(f"{a}/{s.prefixlen}") for a, s in (
                (ep.ipv4, net.subnet4), (ep.ipv6, net.subnet6)) if a is not None and s)
            result = EndpointChange(name, network, True, addresses, host_ifname,
                                    PortChange(name, tuple(maps), tuple(released)))
            return Step(tx, result, plug=plug)

        with self.state_dir.locked():
            self.recover()
            prev = self.state_dir.load()
            if new_net is None or _holds(prev, network, network_entry, owner):
                if prev is None:
                    raise NftnetError("nothing applied yet: run nftnet apply -f FILE first")
                return self._step(name, change, prev)  # type: ignore[no-any-return]
            assert isinstance(new_net, Network) and network_entry is not None
            return self._with_network(prev, new_net, {**network_entry, "owner": owner},
                                      name, change)

    def _with_network(self, prev: State | None, net: Network, entry: dict[str, Any],
                      endpoint: str, change: Callable[[State], Step]) -> Any:
        """``change`` (one endpoint's) with network ``net`` (stored as ``entry``) made for it,
        in one full change: the network's sets, links and the endpoint's elements in one
        transaction. Call with the lock held."""
        from dataclasses import replace

        state, there = self._before_network(prev, net.name)
        state.runtime["networks"][net.name] = entry
        step = change(state)
        endpoints = {n: e for n, e in there.endpoints.items() if n != endpoint}
        endpoints[endpoint] = endpoint_model(endpoint, state.runtime["endpoints"][endpoint])
        config = replace(there, networks={**there.networks, net.name: net},
                         endpoints=endpoints)
        self._make_network(state, prev, config, net.name,
                           _option_label("networks", net.name, entry))
        return step.result

    def unregister(self, name: str, owner: str) -> EndpointChange | None:
        """Remove an endpoint ``owner`` registered, with its ports; None (no error) when there
        is none, nothing is applied, or no state directory exists: a runtime's delete must
        succeed on what is gone already. Its link stays: it is the runtime's."""
        if not self.state_dir.path.exists():
            return None

        def change(state: State) -> Step:
            raw = state.runtime["endpoints"].get(name)
            if raw is None:
                raise _Gone  # another delete of it ran first
            if records.owner(raw) != owner:
                raise ConfigError([f"endpoint {name} is held by {records.owner(raw) or 'people'}"
                                   f", not by {owner}"])
            ep, binding = self.endpoint(state, name)
            maps = _release(state, [m for spec in ep.publish for m in expand(spec, ep, binding)])
            del state.runtime["endpoints"][name]
            state.runtime["publish"].pop(name, None)
            state.runtime["unpublish"].pop(name, None)
            result = EndpointChange(name, ep.network, False, host_ifname=raw.get("host_ifname"),
                                    ports=PortChange(name, removed=tuple(maps)))
            return Step(_elements_tx(maps, "delete"), result, remove=made_veth(raw))
        try:
            return self._change(name, change, gone_ok=True)  # type: ignore[no-any-return]
        except _Gone:
            return None

    # -- networks (rare: a full apply, so bridges, sysctls and sets all follow) -----------

    def create_network(self, name: str, raw: dict[str, Any], owner: str | None = None
                       ) -> NetworkChange:
        """Create network ``name`` from ``raw`` (its config entry); ConfigError names the
        option at fault and, for a clash, the network that holds the subnet or bridge."""
        from dataclasses import replace

        from nftnet.config.load import load_entry

        label = _option_label("networks", name, raw)
        net = load_entry("networks", name, raw, label)
        assert isinstance(net, Network)
        with self.state_dir.locked():
            self.recover()
            prev = self.state_dir.load()
            if owner is not None and _holds(prev, name, raw, owner):
                return NetworkChange(name, True, changed=False)  # a driver's repeat: as asked
            state, there = self._before_network(prev, name)
            state.runtime["networks"][name] = {**raw, **({"owner": owner} if owner else {})}
            self._make_network(state, prev, replace(there, networks={**there.networks,
                                                                     name: net}), name, label)
            return NetworkChange(name, True)

    def _before_network(self, prev: State | None, name: str) -> tuple[State, Config]:
        """The state to make network ``name`` in (a copy of ``prev``) and the effective config
        without it; ConfigError when a network of that name exists."""
        from nftnet.desired.effective import effective_config

        state = copy.deepcopy(prev) if prev else State(config={"version": 1})
        held = state.runtime["networks"].get(name)
        if held is not None or name in (state.config.get("networks") or {}):
            raise ConfigError([f"network {name!r} exists already"
                               + (f" (held by {records.owner(held)})"
                                  if held is not None and records.owner(held) else "")])
        return state, effective_config(state.config, state.runtime)

    def _make_network(self, state: State, prev: State | None, config: Config, name: str,
                      label: Label) -> None:
        """Converge to ``state``, whose effective config ``config`` adds network ``name``;
        ConfigError (nothing applied) names each problem of ``config``, the network's by
        ``label``."""
        from nftnet.config.checks import check_config

        if problems := check_config(config, new=name):
            raise ConfigError([f"{label(path)}: {message}" for path, message in problems])
        self._converge(state, prev, config)

    def remove_network(self, name: str, force: bool, owner: str | None = None,
                       missing_ok: bool = False) -> NetworkChange:
        """Remove a runtime network; ``force`` removes its runtime endpoints with it. A
        driver (``owner``) may remove only its own, and with ``missing_ok`` one that is gone
        already is no error."""
        from nftnet.link import model as link_model

        with self.state_dir.locked():
            self.recover()
            prev = self.state_dir.load()
            if missing_ok and (prev is None or name not in prev.runtime["networks"]):
                return NetworkChange(name, False, changed=False)
            prev = self.state()
            state = copy.deepcopy(prev)
            raw, is_runtime = self.entry(state, "networks", name)
            if is_runtime and records.owner(raw) != owner:
                raise ConfigError([f"network {name} is held by {records.owner(raw) or 'people'}"
                                   ", not by " + (owner or "people")])
            if not is_runtime:
                raise ConfigError([f"network {name} is declared in the config file; remove it "
                                   "there and apply"])
            users = sorted(n for src in (state.config.get("endpoints") or {},
                                         state.runtime["endpoints"])
                           for n, e in src.items() if e.get("network") == name)
            declared_users = [u for u in users if u not in state.runtime["endpoints"]]
            if declared_users or (users and not force):
                raise NftnetError(f"network {name} still has endpoints: {', '.join(users)} "
                                  "(detach them, or --force to detach runtime ones)")
            for user in users:  # their veths go with the change (Applier.converge)
                del state.runtime["endpoints"][user]
                state.runtime["publish"].pop(user, None)
            bridge = self.entry(state, "networks", name)[0].get("bridge") or f"nft-{name}"
            del state.runtime["networks"][name]
            self._converge(state, prev, drop=[bridge])
            seen = self.links.observe().get(bridge)
            notes = (f"kept bridge {bridge}: it lacks nftnet's mark (ifalias {link_model.MARK!r}), "
                     "so nftnet did not make it",
                     ) if bridge in prev.created_bridges and seen is not None and not seen.marked \
                else ()
            return NetworkChange(name, False, endpoints=tuple(users), notes=notes)

    def _converge(self, state: State, prev: State | None, config: Config | None = None,
                  drop: list[str] | None = None) -> None:
        """Make the kernel hold ``state``; ``config`` is its effective config where the caller
        has it already (a parse at 50,000 ports costs a second); ``drop`` names bridges nftnet
        made that ``state`` no longer needs."""
        from nftnet.desired.effective import effective_config

        if config is None:
            config = effective_config(state.config, state.runtime)
        self.applier.converge(self.applier.desired(config, prev), prev, state, drop or ())

    # -- the journal -----------------------------------------------------------------------

    def _change(self, endpoint: str, change: Callable[[State], Step], gone_ok: bool = False
                ) -> Any:
        """Apply one small change to ``endpoint`` under the lock, through the journal; heal
        first if needed. The state it leads to stays in memory for the next change (read
        again only if another command wrote the files meanwhile). ``gone_ok``: _Gone, not
        an error, when nothing is applied."""
        with self.state_dir.locked():
            self.recover()
            loaded = self.state_dir.load()
            if loaded is None and gone_ok:
                raise _Gone
            return self._step(endpoint, change, _applied(loaded))

    def _step(self, endpoint: str, change: Callable[[State], Step], state: State) -> Any:
        """``_change`` with the lock held and the state loaded. A change that sends nothing
        (a registration without ports) keeps the generation: it still proves the table
        nftnet's, so the next change stays one of elements."""
        before = self.nft.generation()
        fresh = state.generation is not None and before == state.generation
        step = change(state)
        self.state_dir.begin(runtime_change(state, endpoint))
        if not fresh:  # the kernel changed behind nftnet's back: rewrite the whole table
            pending = self.state_dir.pending()
            assert pending is not None
            self.applier.complete(*pending)  # links too
            return step.result
        try:
            self._links_and_kernel(step)
        except NftnetError:
            self.state_dir.abort()
            raise
        if step.remove is not None:  # the kernel holds the change: now or by recover
            self.links.detach_veth(step.remove)
            crash.point("links-removed")
        self.state_dir.commit(state)
        after = self.nft.generation()
        self.state_dir.save_generation(after if not step.tx.ops and after == before
                                       else follows(before, after))
        return step.result

    def _links_and_kernel(self, step: Step) -> None:
        """The veth ``step`` makes, then its transaction; the veth goes again if the kernel
        refuses it."""
        if step.make is not None:
            self.links.attach_veth(step.make)
            crash.point("veth-made")
        if step.plug is not None:  # not undone: it is where the veth belongs
            self.links.plug_port(*step.plug)
        try:
            crash.point("nft-before")
            if step.tx.ops:
                self.nft.run(step.tx.to_json())
            crash.point("nft-after")
        except NftnetError:
            if step.make is not None:
                self.links.detach_veth(step.make.host_ifname)
            raise


def _applied(state: State | None) -> State:
    if state is None:
        raise NftnetError("nothing applied yet: run nftnet apply -f FILE first")
    return state


def _spec(text: str, index: int) -> PublishSpec:
    try:
        return parse_publish(text)
    except ValueError as e:
        raise ConfigError([f"publish[{index}]: {e}"]) from None


def _same(a: PublishSpec, b: PublishSpec) -> bool:
    return (a.host_ip, a.host_ports, a.container_ports, a.proto) == (
        b.host_ip, b.host_ports, b.container_ports, b.proto)


def _discard(items: list[str], text: str) -> bool:
    if text in items:
        items.remove(text)
        return True
    return False


def _published(state: State, name: str, raw: dict[str, Any]) -> dict[str, Any]:
    """The endpoint entry with its effective publish list (declared, plus and minus runtime)."""
    gone = state.runtime["unpublish"].get(name, [])
    publish = [p for p in raw.get("publish") or [] if p not in gone]
    publish += state.runtime["publish"].get(name, [])
    return config_entry(raw) | {"publish": publish}


def _index(state: State) -> PortIndex:
    """The state's port index; what a change does to it is journaled (``runtime_change``)."""
    return PortIndex(state.ports, state.specific, state.changed_index)


def _claim(state: State, ep: Endpoint, binding: IPv4Address, specs: list[PublishSpec],
           label: Callable[[int], str] = "publish[{}]".format) -> list[PortMapping]:
    """Expand ``specs`` and record them in the port index; ConfigError on a clash, naming
    the spec by ``label(index)``."""
    index = _index(state)
    maps: list[PortMapping] = []
    for i, spec in enumerate(specs):
        try:
            expanded = expand(spec, ep, binding)
        except ValueError as e:
            raise ConfigError([f"{label(i)}: {e}"]) from None
        for m in expanded:
            if holder := index.holder(m):
                raise ConfigError([f"{label(i)}: {clash_message(m, holder)}"])
            index.claim(m, holder_name(ep.name, spec))
        maps += expanded
    return maps


def _release(state: State, maps: list[PortMapping]) -> list[PortMapping]:
    """Free the host bindings of ``maps`` in the port index."""
    index = _index(state)
    for m in maps:
        index.release(m)
    return maps


def _elements_tx(maps: list[PortMapping], verb: str) -> Transaction:
    out: dict[str, list[Any]] = defaultdict(list)
    port_elements(maps, out)
    tx = Transaction()
    for set_name, items in sorted(out.items()):
        (tx.add if verb == "add" else tx.delete)(Elements(set_name, tuple(items)))
    return tx


class _Gone(Exception):
    """What a change concerns is gone already: nothing to do (raised before any record)."""


def _on_bridge(links: dict[str, LinkState], host_ifname: str, bridge: str, label: Label
               ) -> None:
    """ConfigError unless link ``host_ifname`` exists and is a port of ``bridge``."""
    port, seen = links.get(host_ifname), links.get(bridge)
    if port is None:
        raise ConfigError([f"{label(('host_ifname',))}: no interface {host_ifname}"])
    if seen is None or port.master != seen.index:
        raise ConfigError([f"{label(('host_ifname',))}: {host_ifname} is not on bridge {bridge}"])


def _holds(state: State | None, network: str, entry: dict[str, Any] | None, owner: str) -> bool:
    """Whether ``owner`` holds runtime network ``network`` with config entry ``entry``."""
    held = None if state is None else state.runtime["networks"].get(network)
    return held is not None and records.owner(held) == owner and config_entry(held) == entry


def _used(state: State, network: str) -> set[IPAddress]:
    """The addresses endpoints of ``network`` hold, declared or made at runtime."""
    used: set[IPAddress] = set()
    for source in (state.config.get("endpoints") or {}, state.runtime["endpoints"]):
        for ep in source.values():
            if ep.get("network") == network:
                used |= {ip_address(ep[k]) for k in ("ipv4", "ipv6") if ep.get(k)}
    return used


def _option_label(kind: str, name: str, raw: dict[str, Any]) -> Label:
    """Names a field of a runtime command's entry (``raw``, as the command built it) as the
    user gave it: ``networks.b.subnets[0]`` is ``network b: --subnet 10.0.0.0/33``."""
    def label(path: Path_) -> str:
        if path[:2] == (kind, name):
            path = path[2:]
        elif path[:1] in (("networks",), ("endpoints",)):  # another entry's own problem
            from nftnet.config.document import format_path

            return format_path(path)
        who = f"{kind[:-1]} {name}"
        if not path:
            return f"{kind[:-1]} name {name!r}"
        key, index = path[0], path[1] if len(path) > 1 else None
        option = _OPTIONS.get(str(key), str(key))
        values = raw.get(str(key))
        if isinstance(index, int) and isinstance(values, list) and index < len(values):
            return f"{who}: {option} {values[index]}"
        return f"{who}: {option}"
    return label


_OPTIONS = {"subnets": "--subnet", "subnet": "--subnet", "bridge": "--bridge",
            "ipv4": "--ipv4", "ipv6": "--ipv6", "publish": "-p", "network": "--network",
            "ifname": "--ifname", "host_ifname": "host interface"}


def host_ifname(endpoint: str) -> str:
    """The host end of a runtime endpoint's veth: a name of its own, recorded at attach."""
    import hashlib  # only here: its OpenSSL load costs a `port publish` 2 ms

    return "nv" + hashlib.sha256(endpoint.encode()).hexdigest()[:11]


def veth_changes(before: dict[str, Any], after: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Runtime endpoints (name -> entry) before and after a change: the endpoints whose veth
    it makes, and the host ends of the veths it deletes."""
    make = [n for n, e in after.items()
            if made_veth(e) and made_veth(before.get(n, {})) != made_veth(e)]
    gone = [veth for n, e in before.items()
            if (veth := made_veth(e)) and made_veth(after.get(n, {})) != veth]
    return make, gone


def veth_spec(name: str, entry: dict[str, Any], config: Config) -> VethSpec:
    """The veth of runtime endpoint ``name`` (its state ``entry``) in an effective config."""
    ep = config.endpoints[name]
    return _veth_spec(name, config.networks[ep.network], ep, entry)


def _veth_spec(name: str, net: Network, ep: Endpoint, entry: dict[str, Any]) -> VethSpec:
    from nftnet.link.model import VethSpec  # attach only: a publish never needs it

    addrs = tuple(ip_interface(f"{a}/{s.prefixlen}") for a, s in ((ep.ipv4, net.subnet4),
                  (ep.ipv6, net.subnet6)) if a is not None and s is not None)
    gateways = tuple(str(g) for g, a in ((net.gateway4, ep.ipv4), (net.gateway6, ep.ipv6))
                     if g is not None and a is not None)
    return VethSpec(net.bridge, entry["host_ifname"], entry["netns"], entry["ifname"], net.mtu,
                    addrs, gateways)
