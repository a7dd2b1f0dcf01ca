"""What runtime commands and drivers added to the declared config, as nftnet records them: the
one place that knows the keys of a runtime entry beyond the config file's.

A runtime network or endpoint is stored as its config entry (validated when it was made, so
reading it back needs neither marshmallow nor the full loader: a ``port publish`` reads one
endpoint and its network) plus keys of its own: who holds it (``owner``: None for people, the
CLI; a driver's name such as "docker" or "cni"), and for an endpoint its host interface and,
where nftnet made the veth (``endpoint attach``), the namespace and interface name inside.
An endpoint a driver registered on an interface someone else made (``owns_link`` false) never
has its link made or deleted by nftnet.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network
from typing import Any

from nftnet import names
from nftnet.config.model import ANY_IPV4, Endpoint
from nftnet.config.publish import parse_publish

Entry = dict[str, Any]
# Keys of a runtime entry that are not the config file's.
NETWORK_KEYS = ("owner",)
ENDPOINT_KEYS = ("owner", "host_ifname", "netns", "ifname", "owns_link")


@dataclass
class RuntimeEndpoint:
    """A runtime endpoint's record: its config entry's fields and its link's."""

    network: str
    ipv4: str | None = None
    ipv6: str | None = None
    publish: list[str] = field(default_factory=list)
    host_ifname: str | None = None  # the host end on the bridge
    netns: str | None = None  # attach only: the container's namespace file
    ifname: str | None = None  # attach only: the interface name inside
    owns_link: bool = True  # nftnet made the veth, and deletes it with the endpoint
    owner: str | None = None

    def to_json(self) -> Entry:
        """The stored form: the fields that differ from their defaults (network always)."""
        blank = RuntimeEndpoint("")
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name == "network" or getattr(self, f.name) != getattr(blank, f.name)}

    @classmethod
    def from_json(cls, raw: Entry) -> RuntimeEndpoint:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})


def config_entry(raw: Entry) -> Entry:
    """A stored runtime entry (network or endpoint) as its config file entry."""
    return {k: v for k, v in raw.items() if k not in ENDPOINT_KEYS}


def owner(raw: Entry) -> str | None:
    """Who holds a runtime entry: None for people, else the driver's name."""
    return raw.get("owner")


def owners(runtime: dict[str, Any]) -> dict[str, dict[str, str | None]]:
    """Who holds each runtime network and endpoint: "networks"/"endpoints" -> name -> owner."""
    return {kind: {n: owner(e) for n, e in runtime[kind].items()}
            for kind in ("networks", "endpoints")}


def holder(raw: Entry) -> str:
    """Who holds a runtime entry, in words for a message."""
    held_by = owner(raw)
    return f"held by {held_by}" if held_by else "created at runtime"


def network_bridge(name: str, raw: Entry) -> str:
    """A stored network's bridge (the config's default where the entry names none)."""
    return str(raw.get("bridge") or f"{names.DEFAULT_BRIDGE_PREFIX}{name}")


def network_subnets(raw: Entry) -> list[IPv4Network | IPv6Network]:
    """A stored network's subnets (``subnet`` or ``subnets``, validated when stored)."""
    texts = raw.get("subnets") or ([raw["subnet"]] if raw.get("subnet") else [])
    return [ip_network(str(t)) for t in texts]


def made_veth(raw: Entry) -> str | None:
    """The host end of a runtime endpoint's veth where nftnet made it (attach), else None:
    nftnet makes, re-makes and deletes only those."""
    return raw.get("host_ifname") if raw.get("owns_link", True) else None


def endpoint_model(name: str, entry: Entry) -> Endpoint:
    """An endpoint entry nftnet stored (validated when it was applied or attached) as the
    model, without marshmallow, whose import alone costs more than a ``port publish``."""
    return Endpoint(
        name, entry["network"],
        IPv4Address(entry["ipv4"]) if entry.get("ipv4") else None,
        IPv6Address(entry["ipv6"]) if entry.get("ipv6") else None,
        tuple(parse_publish(str(p)) for p in entry.get("publish") or ()),
    )


def host_binding(network_entry: Entry) -> IPv4Address:
    """A stored network's ``host_binding_ipv4``: all that publishing needs of it."""
    binding = network_entry.get("host_binding_ipv4")
    return IPv4Address(binding) if binding else ANY_IPV4
