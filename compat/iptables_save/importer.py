"""Docker's iptables rules -> an nftnet config in the file format, and what could not be mapped.

The rules are the truth about what Docker enforced, so they decide which networks, addresses
and ports exist. Inspect data (``docker network inspect``, ``docker inspect``, ``ip -j addr``)
only names things and fills in what rules cannot show: the subnet of a network without
MASQUERADE, gateways, MTUs, containers without published ports, and which IPv4 and IPv6
address belong to one container. Nothing is dropped silently: every rule that does not end up
in the config is returned as an ``Unmapped`` with its line and the reason.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from ipaddress import ip_address, ip_interface, ip_network
from typing import Any

from marshmallow import ValidationError

from compat.iptables_save.parse import DockerRules, Family, Net, Port, Rule, SaveFile, Unmapped
from nftnet.config.load import parse_config
from nftnet.config.model import IPAddress
from nftnet.config.schema import NAME, check_ifname
from nftnet.drivers.docker.translate import bridge_name
from nftnet.errors import ConfigError

NAMES_NOTE = ("networks are named after their bridges and endpoints after their addresses, "
              "gateways and MTUs are the defaults, and containers without published ports are "
              "left out (they leave no trace in the rules): --docker-inspect networks.json,"
              "containers.json supplies them")


@dataclass
class NetworkHint:
    name: str | None = None
    subnets: dict[int, Any] = field(default_factory=dict)
    gateways: dict[int, IPAddress] = field(default_factory=dict)
    host_binding_ipv4: str | None = None
    mtu: int | None = None


@dataclass(frozen=True)
class ContainerHint:
    """One container's addresses on one network."""

    name: str
    ipv4: IPAddress | None
    ipv6: IPAddress | None


@dataclass
class Hints:
    """What inspect data adds to the rules; each ``add`` takes one parsed JSON document."""

    networks: dict[str, NetworkHint] = field(default_factory=dict)  # by bridge name
    containers: set[ContainerHint] = field(default_factory=set)

    def add(self, source: str, doc: Any) -> None:
        """Take ``docker network inspect``, ``docker inspect`` or ``ip -j addr`` output."""
        first = doc[0] if isinstance(doc, list) and doc and isinstance(doc[0], dict) else {}
        kinds = {"IPAM": self._networks, "NetworkSettings": self._containers,
                 "ifname": self._links}
        reader = next((f for key, f in kinds.items() if key in first), None)
        if reader is None and doc != []:
            raise ConfigError([f"{source}: not the JSON of docker network inspect, docker "
                               "inspect or ip -j addr"])
        try:
            for item in doc:
                reader(item)  # type: ignore[misc]
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ConfigError([f"{source}: unexpected content ({e!r})"]) from None

    def _container(self, name: str, v4: str | None, v6: str | None) -> None:
        addrs = [ip_address(a.partition("/")[0]) if a else None for a in (v4, v6)]
        self.containers.add(ContainerHint(name.lstrip("/"), *addrs))

    def _networks(self, net: dict[str, Any]) -> None:
        if net["Driver"] != "bridge":
            return
        opts = net.get("Options") or {}
        bridge = bridge_name(net)
        hint = self.networks.setdefault(bridge, NetworkHint())
        hint.name = net["Name"]
        for conf in (net.get("IPAM") or {}).get("Config") or []:
            subnet = ip_network(conf["Subnet"])
            hint.subnets[subnet.version] = subnet
            if conf.get("Gateway"):
                hint.gateways[subnet.version] = ip_address(conf["Gateway"])
        hint.host_binding_ipv4 = opts.get("com.docker.network.bridge.host_binding_ipv4")
        hint.mtu = int(opts.get("com.docker.network.driver.mtu", 0)) or hint.mtu
        for ctr in (net.get("Containers") or {}).values():
            self._container(ctr["Name"], ctr.get("IPv4Address"), ctr.get("IPv6Address"))

    def _containers(self, ctr: dict[str, Any]) -> None:
        for net in ctr["NetworkSettings"]["Networks"].values():
            self._container(ctr["Name"], net.get("IPAddress"), net.get("GlobalIPv6Address"))

    def _links(self, link: dict[str, Any]) -> None:
        hint = self.networks.setdefault(link["ifname"], NetworkHint())
        hint.mtu = hint.mtu or link.get("mtu")
        for addr in link.get("addr_info") or []:
            if addr.get("scope") == "global":
                iface = ip_interface(f"{addr['local']}/{addr['prefixlen']}")
                hint.subnets.setdefault(iface.version, iface.network)
                hint.gateways.setdefault(iface.version, iface.ip)


@dataclass
class ImportResult:
    config: dict[str, Any]
    unmapped: list[Unmapped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class _Endpoint:
    container: str | None
    bridge: str
    addrs: dict[int, IPAddress] = field(default_factory=dict)
    ports: list[Port] = field(default_factory=list)


def import_rules(v4: SaveFile, v6: SaveFile | None = None, hints: Hints | None = None
                 ) -> ImportResult:
    """The nftnet config Docker's rules in ``v4`` (and ``v6``) stand for.

    Raises ConfigError when the result is not a valid config (say, a port published twice).
    """
    files: dict[Family, DockerRules] = {4: DockerRules(v4, 4).read()}
    if v6 is not None:
        files[6] = DockerRules(v6, 6).read()
    return _Builder(files, hints).build()


class _Builder:
    def __init__(self, files: dict[Family, DockerRules], hints: Hints | None) -> None:
        self.files, self.hints = files, hints or Hints()
        self.unmapped = [u for f in files.values() for u in f.unmapped]
        self.notes: list[str] = []
        self.nets: dict[str, dict[int, Net]] = {}  # bridge -> family -> what the rules show

    def build(self) -> ImportResult:
        for family, rules in self.files.items():
            for net in rules.nets.values():
                self._keep(family, rules, net)
        bridges = sorted(self.nets, key=self._age)
        names = {b: self._hint(b).name or b for b in bridges}
        config: dict[str, Any] = {
            "version": 1,
            "networks": {names[b]: self._network(b) for b in bridges},
            "endpoints": self._endpoints(names),
        }
        user = [nft for rules in self.files.values() for nft in rules.user]
        if user:
            config["user_rules"] = user
        self._notes(config)
        try:
            parse_config(json.dumps(config), "<imported config>")
        except ConfigError as e:
            raise ConfigError(["the imported config is not valid:", *e.problems]) from None
        self.unmapped.sort(key=lambda u: (u.source != self.files[4].save.source, u.line))
        return ImportResult(config, self.unmapped, self.notes)

    def _hint(self, bridge: str) -> NetworkHint:
        return self.hints.networks.get(bridge) or NetworkHint()

    def _age(self, bridge: str) -> tuple[int, int]:
        """Docker inserts each new network at the top: the first in the file is the newest."""
        family = min(self.nets[bridge])
        return family, -self.nets[bridge][family].rules[0].line

    def _keep(self, family: Family, rules: DockerRules, net: Net) -> None:
        """Keep one family's view of a bridge, or report its rules with why not."""
        net.subnet = net.subnet or self._hint(net.bridge).subnets.get(family)
        why = self._why_not(family, net)
        if why is None:
            self.nets.setdefault(net.bridge, {})[family] = net
        else:
            self._unmapped(rules, net.rules, why)

    def _why_not(self, family: Family, net: Net) -> str | None:
        other = self.nets.get(net.bridge, {}).get(4)
        try:
            check_ifname(net.bridge)
        except ValidationError as e:
            return f"{e.messages[0]}: not a bridge nftnet can manage"
        if net.subnet is None:
            return (f"bridge {net.bridge} has no MASQUERADE rule, so its IPv{family} subnet is "
                    "unknown: --docker-inspect networks.json (or `ip -j addr` output) supplies "
                    "it")
        if other and (other.icc, other.masquerade, other.internal) != (
                net.icc, net.masquerade, net.internal):
            return (f"bridge {net.bridge}: IPv6 rules differ from IPv4 ones in icc, masquerade "
                    "or internal; nftnet has one setting per network (the IPv4 one is kept)")
        return None

    def _network(self, bridge: str) -> dict[str, Any]:
        fams, hint = self.nets[bridge], self._hint(bridge)
        net = fams.get(4) or fams[6]
        out: dict[str, Any] = {"bridge": bridge, "subnets": [str(n.subnet) for n in
                                                             fams.values()]}
        for family, key in ((4, "gateway"), (6, "gateway6")):
            gateway = hint.gateways.get(family)
            if family in fams and gateway is not None and gateway in fams[family].subnet:
                out[key] = str(gateway)
        if not net.icc:
            out["icc"] = False
        if net.internal:
            out["internal"] = True
        elif not net.masquerade:
            out["masquerade"] = False
        if hint.host_binding_ipv4 not in (None, "0.0.0.0"):
            out["host_binding_ipv4"] = hint.host_binding_ipv4
        if hint.mtu not in (None, 1500):
            out["mtu"] = hint.mtu
        return out

    def _bridge_of(self, addr: IPAddress) -> str | None:
        return next((b for b, fams in self.nets.items() if addr.version in fams
                     and addr in fams[addr.version].subnet), None)

    def _endpoints(self, names: dict[str, str]) -> dict[str, Any]:
        eps: dict[tuple[Any, ...], _Endpoint] = {}
        for rules in self.files.values():
            self._ports(rules, eps)
        for ctr in self.hints.containers:
            for addr in (ctr.ipv4, ctr.ipv6):
                bridge = self._bridge_of(addr) if addr else None
                if bridge is not None:
                    self._endpoint(eps, bridge, addr)  # type: ignore[arg-type]
        counts = Counter(ep.container for ep in eps.values())
        return {
            _name(ep, counts, names[ep.bridge]): self._endpoint_body(ep, names[ep.bridge])
            for ep in sorted(eps.values(), key=lambda e: (names[e.bridge], sorted(e.addrs.items())))
        }

    def _endpoint(self, eps: dict[tuple[Any, ...], _Endpoint], bridge: str, addr: IPAddress
                  ) -> _Endpoint:
        ctr = next((c for c in self.hints.containers if addr in (c.ipv4, c.ipv6)), None)
        key = (ctr.name, bridge) if ctr else (None, bridge, addr)
        ep = eps.setdefault(key, _Endpoint(ctr.name if ctr else None, bridge))
        for a in (ctr.ipv4, ctr.ipv6) if ctr else (addr,):
            if a is not None and self._bridge_of(a) == bridge:
                ep.addrs[a.version] = a
            elif a is not None and a.version == 6 and 6 not in self.files:
                self._note("containers have IPv6 addresses in the inspect data, but no "
                           "ip6tables-save output was given (--ip6): IPv6 is left out")
        return ep

    def _ports(self, rules: DockerRules, eps: dict[tuple[Any, ...], _Endpoint]) -> None:
        """Each DNAT becomes a published port if its container is known and Docker let the
        traffic through; its ACCEPT and hairpin MASQUERADE rules are its companions."""
        used: set[tuple[Any, ...]] = set()
        failed: list[tuple[Port, str]] = []
        for port in rules.ports:
            bridge = self._bridge_of(port.ctr_ip)
            accept = ("accept", port.ctr_ip, port.proto, port.ctr_port)
            if bridge is None or port.bridge not in (None, bridge):
                on = f" (bridge {port.bridge})" if port.bridge else ""
                failed.append((port, f"{port.ctr_ip} is in the subnet of no imported "
                                     f"network{on}"))
            elif accept not in rules.companions:
                failed.append((port, "no ACCEPT rule in filter DOCKER lets this traffic "
                                     "through: Docker drops it, nftnet would not"))
            else:
                used |= {accept, ("hairpin", *accept[1:])}
                self._endpoint(eps, bridge, port.ctr_ip).ports.append(port)
        for port, why in failed:
            keys = {(kind, port.ctr_ip, port.proto, port.ctr_port) for kind in ("accept",
                                                                                 "hairpin")}
            self._unmapped(rules, [port.rule, *(rules.companions[k] for k in keys - used
                                                if k in rules.companions)], why)
            used |= keys
        self._unmapped(rules, [r for k, r in rules.companions.items() if k not in used],
                       "no DNAT rule publishes this container port; nftnet opens container "
                       "ports only through published host ports")

    def _unmapped(self, rules: DockerRules, lines: list[Rule], why: str) -> None:
        """Report each rule once: the first reason is the one that matters."""
        for r in lines:
            if (rules.save.source, r.line) not in {(u.source, u.line) for u in self.unmapped}:
                self.unmapped.append(Unmapped(rules.save.source, r.line, r.text, why))

    def _endpoint_body(self, ep: _Endpoint, network: str) -> dict[str, Any]:
        out: dict[str, Any] = {"network": network}
        out |= {f"ipv{v}": str(a) for v, a in sorted(ep.addrs.items())}
        binding = ip_address(self._hint(ep.bridge).host_binding_ipv4 or "0.0.0.0")
        publish = _publish(ep.ports, binding, 6 in ep.addrs)
        if publish:
            out["publish"] = publish
        return out

    def _note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def _notes(self, config: dict[str, Any]) -> None:
        sources = " and ".join(f.save.source for f in self.files.values())
        if not config["networks"] and "user_rules" not in config:
            self._note(f"no Docker rules in {sources} (dockerd --iptables=false?): nothing "
                       "to import")
        elif not self.hints.containers and not any(h.name for h in self.hints.networks.values()):
            self._note(NAMES_NOTE)  # no Docker inspect data (at most `ip -j addr` output)
        for bridge, hint in self.hints.networks.items():
            if hint.name is not None and bridge not in self.nets:
                self._note(f"network {hint.name} (bridge {bridge}) has no rules in {sources}: "
                           "left out, as Docker did not firewall it")


def _name(ep: _Endpoint, counts: Counter[str | None], network: str) -> str:
    """The container's name, qualified by the network when it has several endpoints; without
    inspect data, the address."""
    if ep.container is not None:
        return ep.container if counts[ep.container] == 1 else f"{ep.container}.{network}"
    name = str(next(iter(ep.addrs.values()))).replace(":", "-")
    return name if NAME.match(name) else f"ep{name}"


def _publish(ports: list[Port], binding: IPAddress, has_v6: bool) -> list[str]:
    """Publish entries that expand to exactly ``ports``: a wildcard port on both families is one
    plain entry, on one family only ``0.0.0.0:`` or ``[::]:``; runs of ports become ranges."""
    wild = {f: {(p.proto, p.host_port, p.ctr_port) for p in ports
                if p.family == f and p.host_ip is None} for f in (4, 6)}
    groups: dict[tuple[str, str], set[tuple[int, int]]] = {}
    for p in ports:
        key = (p.proto, p.host_port, p.ctr_port)
        both = binding.is_unspecified and (key in wild[4]) and (key in wild[6] or not has_v6)
        if p.family == 6 and p.host_ip is None and both:
            continue  # the plain IPv4 entry covers it
        if both or p.host_ip == binding:
            prefix = ""
        elif p.host_ip is None:
            prefix = "0.0.0.0:" if p.family == 4 else "[::]:"
        else:
            prefix = f"{p.host_ip}:" if p.family == 4 else f"[{p.host_ip}]:"
        groups.setdefault((prefix, p.proto), set()).add((p.host_port, p.ctr_port))
    out = []
    for (prefix, proto), pairs in sorted(groups.items()):
        suffix = "" if proto == "tcp" else f"/{proto}"
        out += [f"{prefix}{run}{suffix}" for run in _runs(sorted(pairs))]
    return out


def _runs(pairs: list[tuple[int, int]]) -> list[str]:
    """(9000, 9000), (9001, 9001) -> '9000-9001:9000-9001'; gaps start a new entry."""
    runs: list[list[tuple[int, int]]] = []
    for hp, cp in pairs:
        if runs and runs[-1][-1] == (hp - 1, cp - 1):
            runs[-1].append((hp, cp))
        else:
            runs.append([(hp, cp)])
    return [f"{r[0][0]}:{r[0][1]}" if len(r) == 1 else
            f"{r[0][0]}-{r[-1][0]}:{r[0][1]}-{r[-1][1]}" for r in runs]
