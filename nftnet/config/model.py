"""The validated config as frozen dataclasses: what the compiler and the link layer consume."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Final, Literal

Proto = Literal["tcp", "udp", "sctp"]
IPAddress = IPv4Address | IPv6Address
ANY_IPV4: Final = IPv4Address("0.0.0.0")


@dataclass(frozen=True)
class PublishSpec:
    """One Docker ``-p`` entry: host address (None: the default), host and container port ranges."""

    text: str
    host_ip: IPAddress | None
    host_ports: tuple[int, int]
    container_ports: tuple[int, int]
    proto: Proto


@dataclass(frozen=True)
class PortMapping:
    """One published port of one family, after defaults and ranges are expanded.

    ``host_ip`` None means every local address of that family (Docker's 0.0.0.0 / [::]).
    """

    family: Literal[4, 6]
    host_ip: IPAddress | None
    proto: Proto
    host_port: int
    container_ip: IPAddress
    container_port: int


@dataclass(frozen=True)
class Network:
    name: str
    bridge: str
    subnet4: IPv4Network | None = None
    subnet6: IPv6Network | None = None
    gateway4: IPv4Address | None = None
    gateway6: IPv6Address | None = None
    icc: bool = True
    masquerade: bool = True
    internal: bool = False
    host_binding_ipv4: IPv4Address = ANY_IPV4
    mtu: int = 1500


@dataclass(frozen=True)
class Endpoint:
    name: str
    network: str
    ipv4: IPv4Address | None = None
    ipv6: IPv6Address | None = None
    publish: tuple[PublishSpec, ...] = ()


@dataclass(frozen=True)
class Origin:
    """The text a config was read from, to give the file line of problems found only after
    loading (nft's verdict on user_rules, which needs a scratch namespace)."""

    source: str
    text: str = field(repr=False)


@dataclass(frozen=True)
class Config:
    """A whole nftnet config. ``user_rules`` None means "leave the user chain as it is".

    ``user_rules`` is nft text; ``user_rules_written`` keeps the entries as the file had them
    (``{iptables: ...}`` too) so that the config dumps back as written. It is not compared:
    the same nft rules make the same config; nor is ``origin``.
    """

    networks: dict[str, Network] = field(default_factory=dict)
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    user_rules: tuple[str, ...] | None = None
    user_rules_written: tuple[str | dict[str, str], ...] | None = field(default=None,
                                                                        compare=False)
    origin: Origin | None = field(default=None, compare=False, repr=False)

    @cached_property
    def published(self) -> list[tuple[str, PublishSpec, PortMapping]]:
        """Every published port with its endpoint's name and ``-p`` entry, in a stable order.

        Computed once per config (never changed once loaded): one apply needs it for the
        compiler, the plan and the port index, and at 50,000 ports each pass costs 0.1 s.
        """
        from nftnet.config.publish import expand  # publish.py builds on this module

        out = [(ep.name, spec, m) for ep in self.endpoints.values() for spec in ep.publish
               for m in expand(spec, ep, self.networks[ep.network].host_binding_ipv4)]
        out.sort(key=lambda p: (p[2].family, str(p[2].host_ip), p[2].proto, p[2].host_port))
        return out
