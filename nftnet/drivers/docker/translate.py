"""Docker Engine API inspect objects -> the networks and endpoints nftnet must hold (pure).

Input is what ``GET /networks/{id}`` and ``GET /containers/{id}/json`` return (Docker 20.10,
API 1.41, and later), as parsed JSON. Each option has Docker's meaning:

- networks of driver ``bridge`` only; every other driver is returned as ``Skipped``;
- bridge: ``com.docker.network.bridge.name``, else ``docker0`` for the default network, else
  ``br-`` and the first 12 hex digits of the network id;
- ``IPAM.Config[]``: one subnet per family (nftnet holds no more); the gateway is ``Gateway``,
  and when absent (Docker fills it in only after a restart) the address dockerd gave the
  bridge: the first address of ``IPRange``, or of the subnet, that is not the subnet's own;
- ``.enable_icc``, ``.enable_ip_masquerade``: Go booleans, true when absent. The default
  network reports ``enable_ip_masquerade=false`` whenever dockerd runs with
  ``--iptables=false`` (dockerd overrides ``--ip-masq`` then, whatever was asked), so its
  masquerade is the caller's ``default_bridge_masquerade``;
- ``.host_binding_ipv4`` (default 0.0.0.0), ``com.docker.network.driver.mtu`` (default 1500),
  ``Internal``, ``EnableIPv6`` (an IPv6 subnet counts only with it);
- addresses from ``NetworkSettings.Networks.<net>`` (the top-level fields are gone in API
  1.52); a network listed without an address is "pending": the container is starting (Docker
  sends ``connect`` before the addresses exist) or has stopped;
- published ports from ``NetworkSettings.Ports``, i.e. what Docker bound: random host ports
  resolved, ``host_binding_ipv4`` applied, one entry per family (``0.0.0.0`` and ``::`` may
  even get different random ports). They belong to the one endpoint Docker programs them on:
  its gateway endpoint (see ``_ports_network``), which changes on connect and disconnect.
  A binding of a family the endpoint has no address of (Docker lists ``::`` for IPv4-only
  containers on an IPv6-capable host) has nothing to forward to and is left out, as dockerd
  without the userland proxy forwards nothing there either.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
    ip_network,
)
from typing import Any, Literal

from marshmallow import ValidationError

from nftnet.config.dump import network_entry as config_network_entry
from nftnet.config.model import ANY_IPV4, Endpoint, IPAddress, Network, Proto, PublishSpec
from nftnet.config.publish import PROTOS, parse_publish
from nftnet.config.schema import NAME, check_ifname

Inspect = Mapping[str, Any]
Family = Literal[4, 6]

OPT = "com.docker.network.bridge."
OPT_NAME = OPT + "name"
OPT_ICC = OPT + "enable_icc"
OPT_MASQUERADE = OPT + "enable_ip_masquerade"
OPT_HOST_BINDING = OPT + "host_binding_ipv4"
OPT_DEFAULT = OPT + "default_bridge"
OPT_MTU = "com.docker.network.driver.mtu"
DEFAULT_BRIDGE = "docker0"
DEFAULT_MTU = 1500
SHORT_ID = 12  # Docker's short ids: br-<12 hex>, `docker ps`
_TRUE = ("1", "t", "T", "TRUE", "true", "True")  # Go's strconv.ParseBool
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


@dataclass(frozen=True)
class Skipped:
    """A Docker object nftnet leaves alone, and why (for ``status`` and the log)."""

    kind: Literal["network", "container", "endpoint", "port"]
    id: str
    name: str
    reason: str


@dataclass(frozen=True)
class DockerNetwork:
    """A Docker bridge network as nftnet holds it. ``name`` is nftnet's (see ``network_names``),
    ``docker_name`` Docker's; ``default`` marks Docker's default network (docker0)."""

    id: str
    docker_name: str
    name: str
    bridge: str
    subnet4: IPv4Network | None
    subnet6: IPv6Network | None
    gateway4: IPv4Address | None
    gateway6: IPv6Address | None
    icc: bool
    masquerade: bool
    internal: bool
    host_binding_ipv4: IPAddress
    mtu: int
    enable_ipv6: bool
    default: bool

    def as_network(self) -> Network:
        """nftnet's model of this network. Docker's ports carry their host address already,
        so a binding nftnet's model cannot hold (IPv6) is not needed there."""
        binding = self.host_binding_ipv4
        return Network(self.name, self.bridge, self.subnet4, self.subnet6, self.gateway4,
                       self.gateway6, self.icc, self.masquerade, self.internal,
                       binding if isinstance(binding, IPv4Address) else ANY_IPV4, self.mtu)


@dataclass(frozen=True)
class DockerPort:
    """One port Docker bound, for one family. ``host_ip`` None: every address of the family
    (Docker's ``0.0.0.0`` / ``::``), as in nftnet's ``PortMapping``."""

    family: Family
    proto: Proto
    host_port: int
    host_ip: IPAddress | None
    container_port: int

    @property
    def publish(self) -> str:
        """The nftnet ``-p`` entry, host address spelled out so no network default applies."""
        return self.through(self)

    def through(self, last: DockerPort) -> str:
        """The ``-p`` entry of the run of consecutive ports from this one to ``last``."""
        host = self.host_ip or (ANY_IPV4 if self.family == 4 else IPv6Address("::"))
        text = f"[{host}]" if self.family == 6 else str(host)
        ports = f"{self.host_port}:{self.container_port}" if last == self else \
            f"{self.host_port}-{last.host_port}:{self.container_port}-{last.container_port}"
        return f"{text}:{ports}/{self.proto}"

    def spec(self) -> PublishSpec:
        return parse_publish(self.publish)


@dataclass(frozen=True)
class DockerEndpoint:
    """One container on one Docker bridge network, named ``name`` in nftnet."""

    container_id: str
    container_name: str
    network_id: str
    network: str
    name: str
    ipv4: IPv4Address | None
    ipv6: IPv6Address | None
    ports: tuple[DockerPort, ...] = ()

    def as_endpoint(self) -> Endpoint:
        """nftnet's model of this endpoint, ports as explicit ``-p`` entries."""
        return Endpoint(self.name, self.network, self.ipv4, self.ipv6,
                        tuple(parse_publish(text) for text in publish_entries(self.ports)))


@dataclass(frozen=True)
class DockerContainer:
    """A container as inspect shows it: its endpoints on nftnet's networks, and the networks
    it is on without an address yet (or any more): ``pending``, by network id."""

    id: str
    name: str
    running: bool
    pid: int
    endpoints: tuple[DockerEndpoint, ...]
    pending: tuple[str, ...]


@dataclass(frozen=True)
class Snapshot:
    """Everything nftnet must hold for Docker at one moment, and what it leaves alone."""

    networks: tuple[DockerNetwork, ...]
    containers: tuple[DockerContainer, ...]
    skipped: tuple[Skipped, ...]

    @property
    def endpoints(self) -> tuple[DockerEndpoint, ...]:
        return tuple(ep for c in self.containers for ep in c.endpoints)


def network_entry(net: DockerNetwork) -> dict[str, Any]:
    """What nftnet holds for a Docker network, in the config file's format (``Engine.sync``)."""
    return config_network_entry(net.as_network())


def endpoint_entry(ep: DockerEndpoint) -> dict[str, Any]:
    """What nftnet holds for a container on a network (``Engine.sync``, ``register``): its
    addresses and ports as explicit ``-p`` entries; no host interface (Docker's veth is
    on the bridge, where nftnet leaves it)."""
    out: dict[str, Any] = {"network": ep.network}
    if ep.ipv4 is not None:
        out["ipv4"] = str(ep.ipv4)
    if ep.ipv6 is not None:
        out["ipv6"] = str(ep.ipv6)
    out["publish"] = publish_entries(ep.ports)
    return out


def publish_entries(ports: Iterable[DockerPort]) -> list[str]:
    """The ``-p`` entries of ``ports``: each run of consecutive host ports to consecutive
    container ports (same family, protocol and host address) one range entry, as it was asked
    (``-p 20000-20999:20000-20999``). Docker lists every port of a range, and nftnet's state,
    its journal and each parse of them (a heal's, a sync's) would grow with every one."""
    runs: list[list[DockerPort]] = []
    open_runs: dict[tuple[int, str, IPAddress | None, int], list[DockerPort]] = {}
    for p in sorted(ports, key=_port_order):
        key = (p.family, p.proto, p.host_ip, p.container_port - p.host_port)
        run = open_runs.get(key)
        if run is not None and run[-1].host_port + 1 == p.host_port:
            run.append(p)
        else:
            open_runs[key] = run = [p]
            runs.append(run)
    return [run[0].through(run[-1]) for run in runs]


class _Bad(ValueError):
    """Inspect data nftnet cannot use; the message says which field and why."""


def go_bool(value: object, field: str) -> bool:
    """A Docker option as Go's strconv.ParseBool reads it; _Bad otherwise."""
    if isinstance(value, bool):
        return value
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise _Bad(f"{field}: {value!r} is not a boolean")


def short_id(object_id: str) -> str:
    return object_id[:SHORT_ID]


def bridge_name(net: Inspect) -> str:
    """The bridge dockerd made for a bridge network (the name option, docker0, br-<id>)."""
    opts = net.get("Options") or {}
    if opts.get(OPT_NAME):
        return str(opts[OPT_NAME])
    if go_bool(opts.get(OPT_DEFAULT, "false"), OPT_DEFAULT):
        return DEFAULT_BRIDGE
    return f"br-{short_id(net['Id'])}"


def network_names(nets: Iterable[Inspect]) -> dict[str, str]:
    """nftnet's name for each bridge network, by id: Docker's name; ``<name>.<short id>`` when
    two networks share it (the Engine API allows that); the short id when it is no valid
    nftnet name. Depends on the whole list, so names come from a full listing."""
    bridges = [n for n in nets if n.get("Driver") == "bridge"]
    taken = Counter(str(n.get("Name")) for n in bridges)
    out = {}
    for n in bridges:
        nid, name = str(n.get("Id", "")), str(n.get("Name"))
        if not NAME.match(name):
            out[nid] = short_id(nid)
        else:
            out[nid] = name if taken[name] == 1 else f"{name}.{short_id(nid)}"
    return out


def endpoint_name(container: str, network: str, container_id: str) -> str:
    """nftnet's name for a container's endpoint on a network: ``<container>.<network>``.

    Container names are unique per daemon and network names per nftnet, but both may hold
    dots; a container name with a dot gets its short id appended, so that ``a.b`` on ``c``
    and ``a`` on ``b.c`` differ (``a.b.c.<id>`` and ``a.b.c``).
    """
    base = f"{container}.{network}"
    return f"{base}.{short_id(container_id)}" if "." in container else base


def translate_networks(nets: Iterable[Inspect], *, default_bridge_masquerade: bool = True
                       ) -> tuple[dict[str, DockerNetwork], list[Skipped]]:
    """The bridge networks nftnet holds (by Docker id), and the networks it leaves alone."""
    nets = list(nets)
    names = network_names(nets)
    out: dict[str, DockerNetwork] = {}
    skipped: list[Skipped] = []
    for net in nets:
        nid, docker_name = str(net.get("Id", "")), str(net.get("Name", ""))
        if net.get("Driver") != "bridge":
            skipped.append(Skipped("network", nid, docker_name,
                                   f"driver {net.get('Driver')}: not a bridge network"))
            continue
        try:
            out[nid] = _network(net, names[nid], default_bridge_masquerade)
        except (_Bad, KeyError, TypeError, ValueError, AttributeError) as e:
            skipped.append(Skipped("network", nid, docker_name, _reason(e)))
    return out, skipped


def _network(net: Inspect, name: str, default_bridge_masquerade: bool) -> DockerNetwork:
    opts = net.get("Options") or {}
    bridge = bridge_name(net)
    try:
        check_ifname(bridge)
    except ValidationError as e:
        raise _Bad(f"bridge: {e.messages[0]}") from None
    default = go_bool(opts.get(OPT_DEFAULT, "false"), OPT_DEFAULT)
    ipv6 = bool(net.get("EnableIPv6"))
    subnets, gateways = _ipam((net.get("IPAM") or {}).get("Config") or [], ipv6)
    if not subnets:
        raise _Bad("IPAM.Config: no subnet")
    masquerade = (default_bridge_masquerade if default
                  else go_bool(opts.get(OPT_MASQUERADE, "true"), OPT_MASQUERADE))
    binding = _address(opts.get(OPT_HOST_BINDING, "0.0.0.0"), OPT_HOST_BINDING)
    mtu = _int(opts.get(OPT_MTU, DEFAULT_MTU), OPT_MTU, 68, 65535)
    return DockerNetwork(
        id=str(net["Id"]), docker_name=str(net["Name"]), name=name, bridge=bridge,
        subnet4=subnets.get(4), subnet6=subnets.get(6),  # type: ignore[arg-type]
        gateway4=gateways.get(4), gateway6=gateways.get(6),  # type: ignore[arg-type]
        icc=go_bool(opts.get(OPT_ICC, "true"), OPT_ICC), masquerade=masquerade,
        internal=bool(net.get("Internal")), host_binding_ipv4=binding, mtu=mtu,
        enable_ipv6=ipv6, default=default)


def _ipam(configs: list[Inspect], ipv6: bool
          ) -> tuple[dict[int, IPv4Network | IPv6Network], dict[int, IPAddress]]:
    """Subnet and gateway per family; an IPv6 subnet counts only when IPv6 is enabled."""
    subnets: dict[int, IPv4Network | IPv6Network] = {}
    gateways: dict[int, IPAddress] = {}
    for i, conf in enumerate(configs):
        field = f"IPAM.Config[{i}]"
        subnet = ip_network(str(conf["Subnet"]), strict=False)
        if subnet.version == 6 and not ipv6:
            continue
        if subnet.version in subnets:
            raise _Bad(f"{field}: a second IPv{subnet.version} subnet ({subnet}); nftnet holds "
                       "one subnet per family")
        subnets[subnet.version] = subnet
        if conf.get("Gateway"):
            gateways[subnet.version] = _address(conf["Gateway"], f"{field}.Gateway")
        else:
            pool = ip_network(str(conf["IPRange"]), strict=False) if conf.get("IPRange") \
                else subnet
            first = pool.network_address
            gateways[subnet.version] = first + 1 if first == subnet.network_address else first
        if gateways[subnet.version] not in subnet:
            raise _Bad(f"{field}: gateway {gateways[subnet.version]} is outside {subnet}")
    return subnets, gateways


def translate_container(ctr: Inspect, networks: Mapping[str, DockerNetwork]
                        ) -> tuple[DockerContainer, list[Skipped]]:
    """A container's endpoints on ``networks`` (by Docker id), with its published ports on
    the endpoint Docker programs them on, and what of it nftnet leaves alone."""
    cid = str(ctr["Id"])
    name = container_name(ctr.get("Name"), cid)
    state = ctr.get("State") or {}
    attached = (ctr.get("NetworkSettings") or {}).get("Networks") or {}
    skipped: list[Skipped] = []
    endpoints: dict[str, DockerEndpoint] = {}
    pending: list[str] = []
    for docker_net, entry in attached.items():
        nid = str(entry.get("NetworkID") or "")
        net = networks.get(nid)
        if net is None:
            continue  # host, none, other drivers: the network's Skipped says so
        if not entry.get("IPAddress") and not entry.get("GlobalIPv6Address"):
            pending.append(nid)
            continue
        try:
            endpoints[nid] = _endpoint(cid, name, net, entry)
        except (_Bad, ValueError, TypeError) as e:
            skipped.append(Skipped("endpoint", cid, f"{name} on {docker_net}", _reason(e)))
    carrier = _ports_network(attached, networks)
    ports, bad = _ports((ctr.get("NetworkSettings") or {}).get("Ports") or {})
    skipped += [Skipped("port", cid, name, reason) for reason in bad]
    if ports and carrier in endpoints:
        ep = endpoints[carrier]
        fits = tuple(p for p in ports if (ep.ipv4 if p.family == 4 else ep.ipv6) is not None)
        endpoints[carrier] = replace(ep, ports=fits)
    elif ports:
        where = "no network that publishes (internal, or no address)" if carrier is None \
            else f"network {short_id(carrier)}, which nftnet does not hold"
        skipped.append(Skipped("port", cid, name, f"published ports on {where}"))
    return DockerContainer(cid, name, bool(state.get("Running")), int(state.get("Pid") or 0),
                           tuple(endpoints[n] for n in sorted(endpoints)),
                           tuple(sorted(pending))), skipped


def container_name(name: object, cid: str) -> str:
    """nftnet's name for a container: Docker's (without its ``/``), else its short id."""
    text = str(name or "").lstrip("/")
    return text if NAME.match(text) else short_id(cid)


def prepared_endpoint(net: DockerNetwork, network: Inspect, cid: str,
                      created: Inspect | None) -> DockerEndpoint | None:
    """A starting container's endpoint on ``net`` from the network's inspect, before the
    container's own inspect can tell (it blocks until the start is over): on ``connect``,
    ``Containers.<id>`` has the addresses already. Its ports, where the container's inspect
    at ``create`` (``created``) shows it on this one network: the fixed host ports of
    ``HostConfig.PortBindings`` (``HostIp`` empty: the network's ``host_binding_ipv4``), in
    families the endpoint has an address of; random ones and ranges are only known after the
    start, whose inspect corrects whatever differs. None when the network does not list the
    container (gone meanwhile) or lists no address; _Bad (a ValueError) for data out of
    place."""
    entry = (network.get("Containers") or {}).get(cid)
    if not entry:
        return None
    v4, v6 = (_in_subnet(str(entry.get(key) or "").partition("/")[0], subnet, key)
              for key, subnet in (("IPv4Address", net.subnet4), ("IPv6Address", net.subnet6)))
    if v4 is None and v6 is None:
        return None
    name = container_name((created or {}).get("Name") or entry.get("Name"), cid)
    ports: set[DockerPort] = set()
    attached = list(((created or {}).get("NetworkSettings") or {}).get("Networks") or {})
    if created is not None and attached == [net.docker_name] and not net.internal:
        asked = (created.get("HostConfig") or {}).get("PortBindings") or {}
        for key, bindings in asked.items():
            port_text, _, proto = str(key).partition("/")
            for b in bindings or []:
                if not str(b.get("HostPort") or "").isdigit() or int(b["HostPort"]) == 0:
                    continue  # random, or a range to pick from: known after the start
                host = b.get("HostIp") or str(net.host_binding_ipv4)
                ports.update(p for p in _binding(port_text, proto or "tcp", {**b, "HostIp": host})
                             if (v4 if p.family == 4 else v6) is not None)
    return DockerEndpoint(cid, name, net.id, net.name, endpoint_name(name, net.name, cid),
                          v4, v6, tuple(sorted(ports, key=_port_order)))  # type: ignore[arg-type]


def _endpoint(cid: str, name: str, net: DockerNetwork, entry: Inspect) -> DockerEndpoint:
    v4 = _in_subnet(entry.get("IPAddress"), net.subnet4, "IPAddress")
    v6 = _in_subnet(entry.get("GlobalIPv6Address"), net.subnet6, "GlobalIPv6Address")
    return DockerEndpoint(cid, name, net.id, net.name, endpoint_name(name, net.name, cid),
                          v4, v6)  # type: ignore[arg-type]


def _in_subnet(text: object, subnet: IPv4Network | IPv6Network | None, field: str
               ) -> IPAddress | None:
    if not text:
        return None
    addr = _address(text, field)
    if subnet is None or addr not in subnet:
        raise _Bad(f"{field}: {addr} is not in the network's subnet ({subnet or 'none'})")
    return addr


def _ports_network(attached: Mapping[str, Inspect], networks: Mapping[str, DockerNetwork]
                   ) -> str | None:
    """The network id of the endpoint Docker programs published ports on: the sandbox's
    gateway endpoint (libnetwork's endpoint heap): the higher ``GwPriority`` (API 1.48+,
    else 0), then not internal, then dual-stack, then Docker's network name. Verified with
    dockerd 20.10 and iptables: the DNAT moves on connect and disconnect as this says.
    (Docker 28+ may pick separate IPv4 and IPv6 gateway endpoints; not modelled.)"""
    def key(item: tuple[str, Inspect]) -> tuple[int, bool, bool, str]:
        docker_name, entry = item
        net = networks.get(str(entry.get("NetworkID") or ""))
        dual = bool(entry.get("IPAddress")) and bool(entry.get("GlobalIPv6Address"))
        return (-int(entry.get("GwPriority") or 0), net is not None and net.internal, not dual,
                docker_name)

    live = [(n, e) for n, e in attached.items()
            if e.get("IPAddress") or e.get("GlobalIPv6Address")]
    if not live:
        return None
    best = min(live, key=key)[1]
    net = networks.get(str(best.get("NetworkID") or ""))
    return None if net is not None and net.internal else str(best.get("NetworkID") or "")


def _ports(bound: Mapping[str, Any]) -> tuple[tuple[DockerPort, ...], list[str]]:
    """``NetworkSettings.Ports`` -> ports per family, and the bindings nftnet cannot hold.
    ``HostIp`` "" means every address of both families."""
    out: set[DockerPort] = set()
    bad: list[str] = []
    for key, bindings in bound.items():
        port_text, _, proto = str(key).partition("/")
        proto = proto or "tcp"
        for b in bindings or []:  # null: exposed, not published
            try:
                out.update(_binding(port_text, proto, b))
            except (_Bad, ValueError, TypeError, KeyError) as e:
                bad.append(f"{key} -> {b!r}: {_reason(e)}")
    return tuple(sorted(out, key=_port_order)), bad


def _binding(port_text: str, proto: str, b: Inspect) -> list[DockerPort]:
    if proto not in PROTOS:
        raise _Bad(f"protocol {proto!r} is not one of {', '.join(PROTOS)}")
    ctr = _int(port_text, "container port", 1, 65535)
    host = _int(b["HostPort"], "HostPort", 1, 65535)
    text = str(b.get("HostIp") or "")
    addrs = [IPv4Address(0), IPv6Address(0)] if not text else [_address(text, "HostIp")]
    ports = [DockerPort(a.version, proto, host,  # type: ignore[arg-type]
                        None if a.is_unspecified else a, ctr) for a in addrs]
    for p in ports:
        p.spec()  # nftnet's own refusals (::1) with its reason
    return ports


def _port_order(p: DockerPort) -> tuple[int, str, int, str, int]:
    return (p.family, p.proto, p.host_port, str(p.host_ip or ""), p.container_port)


def snapshot(nets: Iterable[Inspect], containers: Iterable[Inspect], *,
             default_bridge_masquerade: bool = True) -> Snapshot:
    """What nftnet must hold for a full listing of networks and of running containers."""
    networks, skipped = translate_networks(
        nets, default_bridge_masquerade=default_bridge_masquerade)
    out = []
    for ctr in containers:
        try:
            translated, more = translate_container(ctr, networks)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            skipped.append(Skipped("container", str(ctr.get("Id", "")),
                                   str(ctr.get("Name", "")).lstrip("/"), _reason(e)))
            continue
        out.append(translated)
        skipped += more
    return Snapshot(tuple(networks[n] for n in sorted(networks)),
                    tuple(sorted(out, key=lambda c: c.id)), tuple(skipped))


def _address(value: object, field: str) -> IPAddress:
    try:
        return ip_address(str(value))
    except ValueError:
        raise _Bad(f"{field}: {value!r} is not an IP address") from None


def _int(value: object, field: str, lo: int, hi: int) -> int:
    try:
        number = int(str(value))
    except ValueError:
        raise _Bad(f"{field}: {value!r} is not a number") from None
    if not lo <= number <= hi:
        raise _Bad(f"{field}: {number} is outside {lo}-{hi}")
    return number


def _reason(e: Exception) -> str:
    """The why of a skipped object: our own message, or the missing field."""
    if isinstance(e, KeyError):
        return f"unexpected inspect data: no field {e.args[0]!r}"
    if isinstance(e, _Bad):
        return str(e)
    return f"unexpected inspect data: {e}"
