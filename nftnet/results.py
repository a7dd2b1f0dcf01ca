"""What the engine's calls return: typed results that drivers read and the CLI formats
(cli/format.py), instead of lines for a terminal."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Interface, IPv6Interface

from nftnet.config.model import PortMapping


@dataclass
class ApplyResult:
    """An apply or a plan: whether anything changes, and the changes in words (a first
    apply lists everything as added)."""

    changed: bool
    dry_run: bool
    changes: tuple[str, ...] = ()


@dataclass
class PortChange:
    """Ports one call published (``added``) or took away (``removed``), one mapping per host
    binding."""

    endpoint: str
    added: tuple[PortMapping, ...] = ()
    removed: tuple[PortMapping, ...] = ()


@dataclass
class EndpointChange:
    """An endpoint made (``added``), replaced or removed: its network, the addresses it
    holds (with their prefix), its host interface, and the ports that changed with it."""

    name: str
    network: str
    added: bool
    addresses: tuple[IPv4Interface | IPv6Interface, ...] = ()
    host_ifname: str | None = None
    ports: PortChange | None = None


@dataclass
class NetworkChange:
    """A network made (``added``) or removed, with the endpoints removed along with it and
    a note for each bridge nftnet kept although it was listed as its own."""

    name: str
    added: bool
    changed: bool = True  # False: it was already there (or already gone), as asked
    endpoints: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)


def source(owners: Mapping[str, str | None], name: str) -> str:
    """Where a network or endpoint comes from, as listings show it: "config" (the file; absent
    from ``owners``, which maps runtime entries to their owner), "runtime" (people's runtime
    commands: owner None), or the driver that holds it ("docker", "cni")."""
    if name not in owners:
        return "config"
    return owners[name] or "runtime"


@dataclass(frozen=True)
class Refusal:
    """An entry a driver's sync asked for that nftnet does not hold, and why (a name, subnet,
    bridge, address or port someone else holds; an entry nftnet's schema refuses)."""

    kind: str  # "network" or "endpoint"
    name: str
    reason: str


@dataclass(frozen=True)
class SyncResult:
    """What a driver's sync changed of what nftnet holds for it (names), and what it could
    not hold. ``changed`` is False when nftnet held exactly that already (nothing was sent
    to the kernel)."""

    changed: bool
    networks_added: tuple[str, ...] = ()
    networks_removed: tuple[str, ...] = ()
    endpoints_added: tuple[str, ...] = ()
    endpoints_removed: tuple[str, ...] = ()
    endpoints_replaced: tuple[str, ...] = ()
    networks_replaced: tuple[str, ...] = ()
    refused: tuple[Refusal, ...] = ()
