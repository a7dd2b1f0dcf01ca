"""What runtime commands and drivers added to the declared config, as typed records with one
JSON form, read and written here only (the state directory stores them; nothing else reads
their keys).

Entries are stored as they were validated when they were made (networks in the config file's
format, endpoints with their addresses and ``-p`` texts), so reading them back needs neither
marshmallow nor the full loader: a ``port publish`` reads one endpoint and its network.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from nftnet.config.model import ANY_IPV4, Endpoint
from nftnet.config.publish import parse_publish

# The file-format keys of an endpoint entry; the rest of RuntimeEndpoint is runtime-only.
ENTRY_KEYS = ("network", "ipv4", "ipv6", "publish")


@dataclass
class RuntimeEndpoint:
    """An endpoint made at runtime, by ``endpoint attach`` (nftnet made its veth, and deletes
    it on detach) or by a driver that registered an interface someone else made (``owns_link``
    False: nftnet never deletes it)."""

    network: str
    ipv4: str | None = None
    ipv6: str | None = None
    publish: list[str] = field(default_factory=list)
    host_ifname: str | None = None  # the host end on the bridge
    netns: str | None = None  # attach only: the container's namespace file
    ifname: str | None = None  # attach only: the interface name inside
    owns_link: bool = True
    owner: str | None = None  # None: people (the CLI); else the driver that holds it

    def entry(self) -> dict[str, Any]:
        """The endpoint in the config file's format."""
        out: dict[str, Any] = {"network": self.network}
        out |= {k: v for k in ("ipv4", "ipv6") if (v := getattr(self, k)) is not None}
        return out | {"publish": list(self.publish)}

    def to_json(self) -> dict[str, Any]:
        defaults = RuntimeEndpoint("")
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name == "network" or getattr(self, f.name) != getattr(defaults, f.name)}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> RuntimeEndpoint:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})


@dataclass
class RuntimeNetwork:
    """A network made at runtime: its entry in the config file's format, and who holds it."""

    entry: dict[str, Any]
    owner: str | None = None

    @property
    def bridge(self) -> str | None:
        """The bridge named in the entry (None: the default name, from the loader)."""
        return self.entry.get("bridge")

    @property
    def host_binding(self) -> IPv4Address:
        """``host_binding_ipv4``: all that publishing needs of a network."""
        binding = self.entry.get("host_binding_ipv4")
        return IPv4Address(binding) if binding else ANY_IPV4

    def to_json(self) -> dict[str, Any]:
        return {"entry": self.entry} | ({"owner": self.owner} if self.owner else {})

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> RuntimeNetwork:
        if "entry" not in raw:  # written before networks had owners: the bare entry
            return cls(dict(raw))
        return cls(dict(raw["entry"]), raw.get("owner"))


def endpoint_model(name: str, entry: dict[str, Any]) -> Endpoint:
    """An endpoint entry nftnet stored (validated when it was applied or attached) as the
    model, without marshmallow, whose import alone costs more than a ``port publish``."""
    return Endpoint(
        name, entry["network"],
        IPv4Address(entry["ipv4"]) if entry.get("ipv4") else None,
        IPv6Address(entry["ipv6"]) if entry.get("ipv6") else None,
        tuple(parse_publish(str(p)) for p in entry.get("publish") or ()),
    )
