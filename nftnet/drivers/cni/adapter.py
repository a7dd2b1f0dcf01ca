"""nftnet-cni's engine: the plugin's ``Engine`` protocol (engine.py) on nftnet's facade.

The mapping, written once here:
- the CNI network is an nftnet runtime network owned by the plugin's owner ("cni"), named
  ``network_name`` (``cni-`` and the CNI name: people's and Docker's networks keep their
  names), on the bridge the bridge plugin made: nftnet adopts it, never creates or deletes
  it. Its subnets and gateways are prevResult's; a subnet without a gateway is refused, as
  nftnet routes, publishes and masquerades through the bridge's address (its schema would
  otherwise put the subnet's first host address on the bridge, which an IPAM plugin may have
  given a container);
- an attachment is an endpoint owned by "cni" named ``endpoint_name`` (unique per network,
  container id and interface, and read back by GC), registered on the veth the bridge plugin
  made, with ``portMappings`` as ``-p`` texts (``publish_texts``);
- ADD is one engine call and one transaction: the endpoint registered with its ports (map
  elements), and where nftnet lacks the network, the network made with it (a full
  transaction); refused, it applies nothing. DEL and GC unregister, and the network goes
  with its last endpoint: nftnet then holds nothing of a CNI network without containers, so
  its subnet is free again for a changed conflist or a config file, and ``podman rm`` leaves
  nothing behind.

Every change waits for nftnet's lock at most ``lock_timeout`` seconds (env
``NFTNET_LOCK_TIMEOUT``, default 30): runtimes run plugins in parallel, and a runtime that
waits for ever is worse than CNI's "try again later".
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from ipaddress import IPv4Address, IPv6Address, ip_network
from typing import TYPE_CHECKING, Any, Final

from nftnet import api
from nftnet.drivers.cni.engine import Attachment, Endpoint, Network, PortMap, Readiness
from nftnet.drivers.cni.spec import INVALID_ENVIRONMENT, CniError
from nftnet.errors import ConfigError, NftnetError

if TYPE_CHECKING:
    from nftnet.check import Finding
    from nftnet.state import State

PREFIX: Final = "cni-"  # of nftnet's name for a CNI network
LOCK_TIMEOUT_ENV: Final = "NFTNET_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT: Final = 30.0  # seconds
_KEPT = re.compile(r"[A-Za-z0-9-]")  # characters ``_escape`` keeps as they are
_ESCAPED = re.compile(r"(?:_[0-9a-f]{2})+")


# -- names and values: the mapping ---------------------------------------------------------

def network_name(cni_network: str) -> str:
    """nftnet's name for CNI network ``cni_network`` (a valid CNI name is a valid nftnet one)."""
    return PREFIX + cni_network


def endpoint_name(cni_network: str, attachment: Attachment) -> str:
    """nftnet's name for an attachment: ``NETWORK.CONTAINERID.IFNAME``, the network's and the
    interface's names escaped so that they hold no dot (``_escape``): unique per (network,
    container id, interface), which is CNI's key, and read back by ``attachment_of``."""
    return (f"{_escape(cni_network)}.{attachment.container_id}."
            f"{_escape(attachment.ifname)}")


def attachment_of(cni_network: str, name: str) -> Attachment | None:
    """The attachment ``endpoint_name`` named ``name``; None for a name it cannot have made."""
    head = f"{_escape(cni_network)}."
    container_id, dot, ifname = name.removeprefix(head).rpartition(".")
    if not name.startswith(head) or not dot or not container_id:
        return None
    return Attachment(container_id, _unescape(ifname))


def _escape(text: str) -> str:
    """``text`` in letters, digits and ``-``, every other character as ``_xx`` per UTF-8 byte
    (an interface name may hold almost anything; an nftnet name only ``A-Za-z0-9_.-``)."""
    return "".join(c if _KEPT.fullmatch(c) else "".join(f"_{b:02x}" for b in c.encode())
                   for c in text)


def _unescape(text: str) -> str:
    return _ESCAPED.sub(lambda m: bytes.fromhex(m[0].replace("_", "")).decode(
        errors="replace"), text)


def network_entry(network: Network) -> dict[str, Any]:
    """The CNI network as an nftnet network entry (the config file's format); ConfigError for
    a subnet without a gateway."""
    subnets = [(s, g, key) for s, g, key in ((network.subnet4, network.gateway4, "gateway"),
                                              (network.subnet6, network.gateway6, "gateway6"))
               if s is not None]
    problems = [f"prevResult.ips: no gateway for {s}: nftnet routes, publishes and masquerades "
                "through the bridge's address; give the IPAM plugin a gateway and the bridge "
                "plugin isGateway: true" for s, g, _ in subnets if g is None]
    if problems:
        raise ConfigError(problems)
    return {"bridge": network.bridge, "subnets": [str(s) for s, _, _ in subnets],
            **{key: str(g) for _, g, key in subnets},
            "icc": network.icc, "masquerade": network.masquerade, "internal": network.internal}


def publish_text(port: PortMap) -> str:
    """A ``portMappings`` entry as nftnet's ``-p`` text: ``[HOST_IP:]HOST:CONTAINER/PROTO``, an
    IPv6 host address in brackets; without hostIP, every host address (both families)."""
    host = "" if port.host_ip is None else (
        f"[{port.host_ip}]:" if isinstance(port.host_ip, IPv6Address) else f"{port.host_ip}:")
    return f"{host}{port.host_port}:{port.container_port}/{port.protocol}"


def publish_texts(ports: Iterable[PortMap]) -> list[str]:
    """The ``-p`` texts of ``ports``, in order, each once (a runtime may repeat an entry)."""
    return list(dict.fromkeys(publish_text(p) for p in ports))


def binding_keys(ports: Iterable[PortMap]) -> set[str]:
    """The host bindings of ``ports`` as nftnet's element listings (``nftnet check``) write
    their keys: ``PROTO . PORT`` for every address, ``ADDRESS . PROTO . PORT`` for one."""
    return {f"{p.protocol} . {p.host_port}" if p.host_ip is None or p.host_ip.is_unspecified
            else f"{p.host_ip} . {p.protocol} . {p.host_port}" for p in ports}


def lock_timeout(environ: Mapping[str, str]) -> float:
    """The bounded wait for nftnet's lock: ``NFTNET_LOCK_TIMEOUT`` seconds, else 30; CniError
    4 for a value that is no number of seconds."""
    text = environ.get(LOCK_TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_LOCK_TIMEOUT
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise CniError(INVALID_ENVIRONMENT, f"{LOCK_TIMEOUT_ENV} {text!r}: must be a number of "
                       "seconds (0 or more)")
    return seconds


# -- the engine ----------------------------------------------------------------------------

class CniEngine:
    """``engine.Engine`` on ``nftnet.api.Engine`` for one state directory."""

    def __init__(self, state_dir: str, lock_timeout_s: float | None = None) -> None:
        self.api = api.Engine(state_dir, lock_timeout=lock_timeout(os.environ)
                              if lock_timeout_s is None else lock_timeout_s)

    def add(self, owner: str, network: Network, endpoint: Endpoint,
            ports: Sequence[PortMap]) -> None:
        name, entry = network_name(network.name), network_entry(network)
        try:
            self.api.register(endpoint_name(network.name, endpoint.attachment), name,
                              owner=owner, publish=publish_texts(ports),
                              ipv4=_text(endpoint.ipv4), ipv6=_text(endpoint.ipv6),
                              host_ifname=endpoint.host_ifname, network_entry=entry)
        except ConfigError as e:
            held = self._network(name)
            if held is None or held.get("owner") != owner or held == {**entry, "owner": owner}:
                raise
            raise ConfigError([f"network {name} is held by nftnet with other settings: "
                               + ", ".join(_differences(held, {**entry, "owner": owner}))
                               + "; it keeps them while it has containers"]) from e

    def delete(self, owner: str, network: str, attachment: Attachment) -> None:
        self.api.unregister(endpoint_name(network, attachment), owner)
        self._remove_if_unused(owner, network_name(network))

    def check(self, owner: str, network: Network, endpoint: Endpoint,
              ports: Sequence[PortMap]) -> list[str]:
        state = self._state()  # first: check() would make a missing state directory
        report = None if state is None else self.api.check()
        if state is None or report is None:
            return [f"nftnet holds nothing in {self.api.state_dir.path}"]
        problems = self._records(owner, state, network, endpoint, ports)
        ep_name = endpoint_name(network.name, endpoint.attachment)
        mine = _Concerns(ep_name, network.bridge, binding_keys(ports),
                         {str(s) for s in (network.subnet4, network.subnet6) if s})
        return problems + [f"nftnet check: {f}" for f in report.drift if mine(f)]

    def gc(self, owner: str, network: str, valid: frozenset[Attachment]) -> list[Attachment]:
        name = network_name(network)
        keep = {endpoint_name(network, a) for a in valid}
        state = self._state()
        if state is None:
            return []
        owners = self.api.owners(state)["endpoints"]
        stale = sorted(n for n, e in state.runtime["endpoints"].items()
                       if e.get("network") == name and owners.get(n) == owner and n not in keep)
        removed = [attachment_of(network, n) for n in stale
                   if self.api.unregister(n, owner) is not None]
        self._remove_if_unused(owner, name)
        return [a for a in removed if a is not None]

    def status(self, owner: str, network: str) -> Readiness:
        try:
            state = self._state()
        except NftnetError as e:
            return Readiness(f"nftnet's state cannot be read: {e}")
        try:
            chains = self.api.chains()
        except (NftnetError, OSError, ImportError) as e:
            return Readiness(f"nftables cannot be used: {e}")
        has_table = any(c.get("chain", {}).get("family") == "inet"
                        and c["chain"].get("table") == "nftnet" for c in chains)
        if state is not None and not has_table and (state.runtime["networks"]
                                                    or state.config.get("networks")):
            return Readiness("table inet nftnet is gone: nftnet restore puts it back",
                             limited=True)
        return Readiness()

    # -- networks --------------------------------------------------------------------------

    def _state(self) -> State | None:
        """The state as last committed, read without the lock: a hint for choosing calls,
        each of which the engine decides again under its lock. None when nothing is applied
        (or there is no state directory)."""
        return self.api.state_dir.load()

    def _network(self, name: str) -> dict[str, Any] | None:
        """The runtime network entry ``name`` as the state holds it, or None."""
        state = self._state()
        return None if state is None else state.runtime["networks"].get(name)

    def _remove_if_unused(self, owner: str, name: str) -> None:
        """Remove ``owner``'s network ``name`` when no endpoint uses it. An ADD that came in
        meanwhile keeps it (the engine refuses, and the state then shows the endpoint)."""
        state = self._state()
        if state is None or self.api.owners(state)["networks"].get(name) != owner \
                or _users(state, name):
            return
        try:
            self.api.remove_network(name, owner=owner, missing_ok=True)
        except NftnetError:
            state = self._state()
            if state is None or not _users(state, name):
                raise

    # -- CHECK -----------------------------------------------------------------------------

    def _records(self, owner: str, state: State, network: Network, endpoint: Endpoint,
                 ports: Sequence[PortMap]) -> list[str]:
        """How the state's records of the network and the endpoint differ from the request."""
        name = network_name(network.name)
        held_net = state.runtime["networks"].get(name)
        ep_name = endpoint_name(network.name, endpoint.attachment)
        raw = state.runtime["endpoints"].get(ep_name)
        if held_net is None or raw is None:
            return [f"{what} {n} is gone" for what, n, held in (
                ("network", name, held_net), ("endpoint", ep_name, raw)) if held is None]
        out = [f"network {name}: {d}" for d in _differences(
            held_net, {**network_entry(network), "owner": owner})]
        want = {"network": name, "owner": owner, "ipv4": _text(endpoint.ipv4),
                "ipv6": _text(endpoint.ipv6), "host_ifname": endpoint.host_ifname}
        out += [f"endpoint {ep_name}: {key} is {raw.get(key)}, ADD made {value}"
                for key, value in want.items() if raw.get(key) != value]
        held_ports = _published(state, ep_name, raw)
        if sorted(held_ports) != sorted(publish_texts(ports)):
            out.append(f"endpoint {ep_name}: publishes {held_ports or 'nothing'}, ADD made "
                       f"{publish_texts(ports) or 'nothing'}")
        return out


class _Concerns:
    """Whether a finding of ``nftnet check`` concerns one attachment: every finding on the
    table's structure, sysctls or the state does (its container is as affected as any other);
    one on an endpoint, a bridge or an element only when it is this attachment's: its
    endpoint, its bridge, its ports' host bindings (``binding_keys``), its network's bridge
    and subnets. Findings that elements were cut short ("and N more") might be, so they do."""

    def __init__(self, endpoint: str, bridge: str, keys: set[str], subnets: set[str]) -> None:
        self.endpoint, self.bridge, self.keys, self.subnets = endpoint, bridge, keys, subnets

    def __call__(self, finding: Finding) -> bool:
        kind, _, what = finding.subject.partition(" ")
        if kind == "endpoint":
            return what == self.endpoint
        if kind == "bridge":
            return what == self.bridge
        verb, _, element = finding.problem.partition(": ")
        if kind not in ("map", "set") or verb not in ("element missing", "element added"):
            return True
        key, _, _ = element.partition(" : ")
        return key in self.keys or key in self.subnets or key.split(" . ")[0] == self.bridge


def _users(state: State, network: str) -> list[str]:
    """The endpoints on ``network``, declared or made at runtime."""
    return [n for source in (state.config.get("endpoints") or {}, state.runtime["endpoints"])
            for n, e in source.items() if e.get("network") == network]


def _published(state: State, name: str, raw: Mapping[str, Any]) -> list[str]:
    """What the runtime endpoint ``name`` publishes: its own list and what ``nftnet port
    publish`` and ``unpublish`` changed of it."""
    gone = state.runtime["unpublish"].get(name, [])
    return [p for p in raw.get("publish") or [] if p not in gone] + \
        state.runtime["publish"].get(name, [])


def _differences(held: Mapping[str, Any], want: Mapping[str, Any]) -> list[str]:
    """The settings of network entry ``held`` that differ from ``want``, in words."""
    return [f"{key} {_shown(held.get(key))} (this ADD: {_shown(want.get(key))})"
            for key in sorted(set(held) | set(want))
            if _normal(key, held.get(key)) != _normal(key, want.get(key))]


def _normal(key: str, value: Any) -> Any:
    """A setting as compared: subnets as networks (an entry may write them otherwise)."""
    if key == "subnets" and isinstance(value, list):
        return sorted(str(ip_network(v)) for v in value)
    return value


def _shown(value: Any) -> str:
    return "none" if value is None else ",".join(value) if isinstance(value, list) else \
        str(value).lower() if isinstance(value, bool) else str(value)


def _text(address: IPv4Address | IPv6Address | None) -> str | None:
    return None if address is None else str(address)
