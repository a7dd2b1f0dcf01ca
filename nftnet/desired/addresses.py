"""Endpoint addresses: a requested one checked, "auto" allocated (pure)."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Network, IPv6Network
from typing import TYPE_CHECKING

from nftnet.config.checks import host_problem
from nftnet.config.model import IPAddress, Network
from nftnet.errors import ConfigError, NftnetError

if TYPE_CHECKING:
    from nftnet.config.document import Path_


def allocate(subnet: IPv4Network | IPv6Network, taken: set[IPAddress]) -> IPAddress:
    """The lowest host address of ``subnet`` not in ``taken``; NftnetError when none is left."""
    for host in subnet.hosts():
        if host not in taken:
            return host
    raise NftnetError(f"no free address left in {subnet}")


def addresses(used: set[IPAddress], net: Network, ipv4: str | None, ipv6: str | None,
              label: Callable[[Path_], str]) -> dict[str, str]:
    """Requested or allocated addresses on ``net`` (``used``: those its endpoints hold):
    "auto" takes the lowest free host address, never the gateway and never one in use; a
    requested one must be free and a host of the subnet. ConfigError names the option by
    ``label``."""
    from marshmallow import ValidationError

    from nftnet.config.schema import parse_ip

    taken = used | {a for a in (net.gateway4, net.gateway6) if a}
    out = {}
    for key, value, subnet in (("ipv4", ipv4, net.subnet4), ("ipv6", ipv6, net.subnet6)):
        if value == "auto" and subnet is not None:
            out[key] = str(allocate(subnet, taken))
        elif value not in (None, "auto"):
            try:
                addr = parse_ip(value, 4 if key == "ipv4" else 6)
            except ValidationError as e:
                raise ConfigError([f"{label((key,))}: {e.messages[0]}"]) from None
            problem = ("is already in use" if addr in taken else
                       f"is not in network {net.name}" if subnet is None else
                       host_problem(addr, subnet))
            if problem:
                raise ConfigError([f"{label((key,))}: {addr} {problem}"])
            out[key] = value
    return out
