"""The network config on stdin, parsed into a ``Request`` for the plugin's body (pure).

A chained plugin's config is its own entry of the runtime's conflist, given the list's
``name`` and ``cniVersion``, the ``runtimeConfig`` of the capabilities it declares
(``portMappings``), ``prevResult`` (the previous plugin's result: ADD; the cached one: CHECK,
DEL) and, for GC, ``cni.dev/valid-attachments``. It never sees the bridge plugin's keys (its
``bridge``, its ``ipam``): the bridge, the veth, the addresses and the gateways come from
``prevResult``, as the bridge plugin lists them: ``interfaces`` [bridge, host veth, container
interface (with ``sandbox``)], ``ips`` pointing at the container interface.

Each command reads only what it needs: DEL needs no ``prevResult`` and reads none of the
plugin's own keys, so that the cleanup of an attachment never fails on the config.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
    ip_address,
    ip_interface,
    ip_network,
)
from typing import Any, Final, TypeVar, cast

from nftnet.config.model import IPAddress, Proto
from nftnet.drivers.cni.engine import Attachment, Endpoint, Network, PortMap
from nftnet.drivers.cni.spec import (
    DECODING_FAILURE,
    ID,
    INVALID_CONFIG,
    UNSUPPORTED_FIELD,
    CniError,
    Env,
    ifname_problem,
)

Subnet = IPv4Network | IPv6Network
Address = IPv4Interface | IPv6Interface
T = TypeVar("T")

# nftnet-cni's own keys: nftnet's network options, where its state is, and two overrides.
OWN_KEYS: Final = frozenset({"icc", "masquerade", "internal", "stateDir", "bridge", "subnets"})
# Keys the spec (and libcni) may put in any plugin's config.
SPEC_KEYS: Final = frozenset({
    "cniVersion", "cniVersions", "name", "type", "args", "dns", "capabilities", "runtimeConfig",
    "prevResult", "cni.dev/valid-attachments", "cni.dev/attachments"})
# libcni sends GC's list under both names (the spec's first draft used the second).
ATTACHMENT_KEYS: Final = ("cni.dev/valid-attachments", "cni.dev/attachments")
HINTS: Final = {
    "ipMasq": "nftnet masquerades by the plugin's own key masquerade (true by default); "
              "give the bridge plugin ipMasq false",
    "ipam": "nftnet-cni runs no IPAM plugin: ipam belongs to the bridge plugin",
}
PROTOCOLS: Final = ("tcp", "udp", "sctp")


@dataclass(frozen=True)
class Request:
    """One invocation, parsed: what the plugin's body hands the engine."""

    command: str
    version: str
    network_name: str
    state_dir: str | None  # the config's stateDir; None: NFTNET_STATE_DIR or the default
    attachment: Attachment | None = None  # ADD, CHECK, DEL
    network: Network | None = None  # ADD, CHECK
    endpoint: Endpoint | None = None  # ADD, CHECK
    ports: tuple[PortMap, ...] = ()  # ADD, CHECK
    prev_result: Mapping[str, Any] | None = None  # ADD: printed back as the result
    valid: frozenset[Attachment] = frozenset()  # GC


def decode(data: bytes) -> dict[str, Any]:
    """The config as a JSON object; CniError 6 when it is not one."""
    try:
        conf = json.loads(data)
    except ValueError as e:  # UnicodeDecodeError and JSONDecodeError alike
        raise CniError(DECODING_FAILURE, "cannot decode the network config", str(e)) from None
    if not isinstance(conf, dict):
        raise CniError(DECODING_FAILURE, "the network config is not a JSON object",
                       f"got {type(conf).__name__}")
    return conf


def parse_request(env: Env, conf: Mapping[str, Any], version: str) -> Request:
    """The request of ``env.command`` with ``conf`` (decoded, its version negotiated); CniError
    2 for a key nftnet-cni does not take, 7 naming every other problem."""
    name = conf.get("name")
    if not isinstance(name, str) or not ID.match(name):
        raise CniError(INVALID_CONFIG, f"invalid network name {name!r}",
                       "name must start with a letter or digit and hold only letters, "
                       "digits, '_', '.' and '-'")
    problems: list[str] = []
    state_dir = _state_dir(conf, problems)
    base = Request(command=env.command, version=version, network_name=name,
                   state_dir=state_dir)
    if env.command == "DEL":
        return _done(replace(base, attachment=Attachment(env.container_id, env.ifname)),
                     problems)
    _reject_unknown(conf)
    if env.command == "GC":
        return _done(replace(base, valid=_valid_attachments(conf, problems)), problems)
    if env.command == "STATUS":
        return _done(base, problems)
    network, endpoint = _attachment(conf, env, name, problems)
    ports = _ports(conf, problems)
    prev = conf.get("prevResult")
    return _done(replace(base, attachment=Attachment(env.container_id, env.ifname),
                          network=network, endpoint=endpoint, ports=ports,
                          prev_result=prev if isinstance(prev, dict) else None), problems)


def _done(request: Request, problems: list[str]) -> Request:
    if problems:
        raise CniError(INVALID_CONFIG, f"invalid network config: {problems[0]}",
                       "; ".join(problems))
    return request


def _reject_unknown(conf: Mapping[str, Any]) -> None:
    """CniError 2 naming the first key neither the spec nor nftnet-cni defines, and its value."""
    for key, value in conf.items():
        if key not in OWN_KEYS | SPEC_KEYS:
            raise CniError(UNSUPPORTED_FIELD, f"unsupported field {key!r}: "
                           f"{json.dumps(value)[:200]}",
                           HINTS.get(key, f"nftnet-cni's own keys: {', '.join(sorted(OWN_KEYS))}"))


# -- the plugin's own keys -----------------------------------------------------------------

def _flag(conf: Mapping[str, Any], key: str, default: bool, problems: list[str]) -> bool:
    value = conf.get(key, default)
    if not isinstance(value, bool):
        problems.append(f"{key}: must be true or false, not {json.dumps(value)}")
        return default
    return value


def _state_dir(conf: Mapping[str, Any], problems: list[str]) -> str | None:
    value = conf.get("stateDir")
    if value is not None and not (isinstance(value, str) and value.startswith("/")):
        problems.append(f"stateDir: must be an absolute path, not {json.dumps(value)}")
        return None
    return value


def _subnets(conf: Mapping[str, Any], problems: list[str]) -> list[Subnet] | None:
    """The ``subnets`` override (the network's subnets when the addresses' prefixes are not
    theirs), or None."""
    raw = conf.get("subnets")
    if raw is None:
        return None
    if not isinstance(raw, list) or not raw:
        problems.append("subnets: must be a list of one IPv4 and/or one IPv6 CIDR")
        return None
    out: list[Subnet] = []
    for i, text in enumerate(raw):
        try:
            out.append(ip_network(text))
        except (TypeError, ValueError) as e:
            problems.append(f"subnets[{i}]: {e}")
    return out if _one_per_family("subnets", out, problems) else None


def _one_per_family(what: str, items: list[Subnet] | list[Address], problems: list[str]) -> bool:
    families = [i.version for i in items]
    if len(set(families)) < len(families):
        problems.append(f"{what}: nftnet holds at most one IPv4 and one IPv6 per network")
        return False
    return True


# -- runtimeConfig -------------------------------------------------------------------------

def _ports(conf: Mapping[str, Any], problems: list[str]) -> tuple[PortMap, ...]:
    """``runtimeConfig.portMappings`` (capability ``portMappings``, the shape portmap takes)."""
    runtime = conf.get("runtimeConfig") or {}
    raw = runtime.get("portMappings") if isinstance(runtime, dict) else None
    if raw is None:
        return ()
    if not isinstance(raw, list):
        problems.append("runtimeConfig.portMappings: must be a list")
        return ()
    ports = (_port(entry, f"runtimeConfig.portMappings[{i}]", problems)
             for i, entry in enumerate(raw))
    return tuple(p for p in ports if p is not None)


def _port(raw: Any, path: str, problems: list[str]) -> PortMap | None:
    if not isinstance(raw, dict):
        problems.append(f"{path}: must be an object with hostPort and containerPort")
        return None
    before = len(problems)
    host_port, container_port = (_port_number(raw, key, path, problems)
                                 for key in ("hostPort", "containerPort"))
    protocol = raw.get("protocol") or "tcp"
    if not isinstance(protocol, str) or protocol.lower() not in PROTOCOLS:
        problems.append(f"{path}.protocol: must be one of {', '.join(PROTOCOLS)}, "
                        f"not {json.dumps(protocol)}")
    host_ip: IPAddress | None = None
    if raw.get("hostIP"):
        try:
            host_ip = ip_address(raw["hostIP"])
        except (TypeError, ValueError):
            problems.append(f"{path}.hostIP: {json.dumps(raw['hostIP'])} is not an IP address")
    if len(problems) > before:
        return None
    return PortMap(host_port=host_port, container_port=container_port,
                   protocol=cast(Proto, protocol.lower()), host_ip=host_ip)


def _port_number(raw: Mapping[str, Any], key: str, path: str, problems: list[str]) -> int:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        problems.append(f"{path}.{key}: must be a port number 1-65535, not {json.dumps(value)}")
        return 0
    return value


def _valid_attachments(conf: Mapping[str, Any], problems: list[str]) -> frozenset[Attachment]:
    """GC's ``cni.dev/valid-attachments``: absent is an error, never "keep nothing"."""
    key = next((k for k in ATTACHMENT_KEYS if k in conf), None)
    raw = conf.get(key) if key else None
    if not isinstance(raw, list):
        problems.append(f"{ATTACHMENT_KEYS[0]}: GC needs the list of attachments to keep")
        return frozenset()
    out = set()
    for i, entry in enumerate(raw):
        ok = isinstance(entry, dict) and all(
            isinstance(entry.get(k), str) and entry[k] for k in ("containerID", "ifname"))
        if not ok:
            problems.append(f"{key}[{i}]: must be an object with containerID and ifname")
            continue
        out.add(Attachment(entry["containerID"], entry["ifname"]))
    return frozenset(out)


# -- prevResult ----------------------------------------------------------------------------

def _attachment(conf: Mapping[str, Any], env: Env, name: str,
                problems: list[str]) -> tuple[Network | None, Endpoint | None]:
    """The network and the endpoint that ``prevResult`` describes, with nftnet's options."""
    icc, masquerade, internal = (_flag(conf, key, default, problems) for key, default in
                                 (("icc", True), ("masquerade", True), ("internal", False)))
    override = _subnets(conf, problems)
    topology = _topology(conf.get("prevResult"), env.ifname, _bridge_key(conf, problems),
                         problems)
    if topology is None:
        return None, None
    bridge, veth, mine = topology
    subnets = override or [address.network for address, _ in mine]
    if not _fit(mine, subnets, problems):
        return None, None
    addresses = {address.version: address.ip for address, _ in mine}
    gateways = {address.version: gateway for address, gateway in mine}
    network = Network(name=name, bridge=bridge,
                      subnet4=_of(IPv4Network, subnets), subnet6=_of(IPv6Network, subnets),
                      gateway4=_of(IPv4Address, [gateways.get(4)]),
                      gateway6=_of(IPv6Address, [gateways.get(6)]),
                      icc=icc, masquerade=masquerade, internal=internal)
    endpoint = Endpoint(attachment=Attachment(env.container_id, env.ifname), netns=env.netns,
                        host_ifname=veth, ipv4=_of(IPv4Address, [addresses.get(4)]),
                        ipv6=_of(IPv6Address, [addresses.get(6)]))
    return network, endpoint


def _of(kind: type[T], items: Iterable[object]) -> T | None:
    """The item of type ``kind`` (one per family at most), or None."""
    return next((item for item in items if isinstance(item, kind)), None)


def _bridge_key(conf: Mapping[str, Any], problems: list[str]) -> str | None:
    value = conf.get("bridge")
    if value is not None and (not isinstance(value, str) or ifname_problem(value)):
        problems.append(f"bridge: {json.dumps(value)} is not an interface name")
        return None
    return value


def _topology(prev: Any, ifname: str, bridge: str | None, problems: list[str]
              ) -> tuple[str, str, list[tuple[Address, IPAddress | None]]] | None:
    """The bridge, the veth's host end, and the container's addresses with their gateways."""
    if prev is None:
        problems.append("prevResult is missing: nftnet-cni is a chained plugin, to be listed "
                        "after bridge in a conflist")
        return None
    if not isinstance(prev, dict):
        problems.append("prevResult: must be a result object")
        return None
    interfaces = _interfaces(prev, problems)
    ips = None if interfaces is None else _ips(prev, len(interfaces), problems)
    if interfaces is None or ips is None:
        return None
    pair = _bridge_and_veth(interfaces, bridge, problems)
    sandbox = next((i for i, iface in enumerate(interfaces)
                    if iface["name"] == ifname and iface.get("sandbox")), None)
    if sandbox is None:
        problems.append(f"prevResult.interfaces: no interface {ifname} in a sandbox")
        return None
    mine = [(address, gateway) for address, gateway, index in ips
            if index is None or index == sandbox]
    if not mine:
        problems.append(f"prevResult.ips: no address for {ifname}")
        return None
    if pair is None or not _one_per_family("prevResult.ips", [a for a, _ in mine], problems):
        return None
    return pair[0], pair[1], mine


def _interfaces(prev: Mapping[str, Any], problems: list[str]) -> list[dict[str, Any]] | None:
    raw = prev.get("interfaces")
    if not isinstance(raw, list):
        problems.append("prevResult.interfaces: missing; the bridge plugin lists the bridge, "
                        "the veth and the container's interface")
        return None
    for i, iface in enumerate(raw):
        if not (isinstance(iface, dict) and isinstance(iface.get("name"), str)
                and not ifname_problem(iface["name"])
                and isinstance(iface.get("sandbox", ""), str)):
            problems.append(f"prevResult.interfaces[{i}]: must be an object with an interface "
                            "name and, for a container's, a sandbox path")
            return None
    return raw


def _ips(prev: Mapping[str, Any], count: int,
         problems: list[str]) -> list[tuple[Address, IPAddress | None, int | None]] | None:
    """``prevResult.ips`` as (address with prefix, gateway, interface index)."""
    raw = prev.get("ips", [])
    if not isinstance(raw, list):
        problems.append("prevResult.ips: must be a list")
        return None
    out = []
    for i, ip in enumerate(raw):
        path = f"prevResult.ips[{i}]"
        try:
            address = ip_interface(ip["address"])
            gateway = ip_address(ip["gateway"]) if ip.get("gateway") else None
        except (KeyError, TypeError, ValueError):
            problems.append(f"{path}: must hold an address in CIDR notation and an optional "
                            "gateway address")
            return None
        index = ip.get("interface")
        if index is not None and (isinstance(index, bool) or not isinstance(index, int)
                                  or not 0 <= index < count):
            problems.append(f"{path}.interface: {json.dumps(index)} is no index into "
                            "prevResult.interfaces")
            return None
        if str(ip.get("version", address.version)) != str(address.version) or (
                gateway is not None and gateway.version != address.version):
            problems.append(f"{path}: version, address and gateway must be of one family")
            return None
        out.append((address, gateway, index))
    return out


def _bridge_and_veth(interfaces: list[dict[str, Any]], bridge: str | None,
                     problems: list[str]) -> tuple[str, str] | None:
    """The bridge and the veth's host end: the host interfaces (those without a sandbox) in
    the bridge plugin's order, [bridge, veth], or the one besides the ``bridge`` key's."""
    host = [iface["name"] for iface in interfaces if not iface.get("sandbox")]
    if bridge is not None:
        others = [name for name in host if name != bridge]
        if bridge in host and len(others) == 1:
            return bridge, others[0]
    elif len(host) == 2:
        return host[0], host[1]
    problems.append(f"prevResult.interfaces: cannot tell the bridge and the veth from host "
                    f"interfaces {host}" + ("" if bridge else "; name the bridge with the "
                                            "plugin's bridge key"))
    return None


def _fit(mine: list[tuple[Address, IPAddress | None]], subnets: list[Subnet],
         problems: list[str]) -> bool:
    """Every address is in the subnet of its family, every gateway another address of it."""
    before = len(problems)
    by_version = {s.version: s for s in subnets}
    for address, gateway in mine:
        subnet = by_version.get(address.version)
        if subnet is None or address.ip not in subnet:
            problems.append(f"prevResult.ips: {address.ip} is in none of the subnets "
                            f"{', '.join(str(s) for s in subnets)}")
        elif gateway is not None and (gateway not in subnet or gateway == address.ip):
            problems.append(f"prevResult.ips: gateway {gateway} must be another address "
                            f"of {subnet}")
    return len(problems) == before
