"""Docker's ``-p`` syntax: parsing one entry, and expanding it into per-port mappings."""

from __future__ import annotations

import re
from functools import lru_cache
from ipaddress import IPv4Address, IPv6Address, ip_address

from nftnet.config.model import Endpoint, IPAddress, PortMapping, Proto, PublishSpec
from nftnet.errors import shown

PROTOS: tuple[Proto, ...] = ("tcp", "udp", "sctp")

_SPEC = re.compile(
    r"""^(?:(?P<ip>\[[^\]]*\]|[0-9.]+):)?     # optional host address, IPv6 in brackets
        (?P<host>[^:/]*):                     # host port or range (required by nftnet)
        (?P<ctr>[^:/]+)                       # container port or range
        (?:/(?P<proto>[a-z]+))?$""",
    re.VERBOSE,
)


def _port_range(text: str, what: str) -> tuple[int, int]:
    lo_text, sep, hi_text = text.partition("-")
    try:
        lo = int(lo_text)
        hi = int(hi_text) if sep else lo
    except ValueError:
        raise ValueError(f"{what} port {shown(text)} is not a number or a range like 9000-9002") \
            from None
    for port in (lo, hi):
        if not 1 <= port <= 65535:
            raise ValueError(f"{what} port {port} is outside 1-65535")
    if hi < lo:
        raise ValueError(f"{what} port range {shown(text)} ends before it starts")
    return lo, hi


@lru_cache(maxsize=256)  # a few addresses over thousands of entries (ip_address is slow)
def _host_ip(text: str | None) -> IPAddress | None:
    if text is None:
        return None
    try:
        addr = ip_address(text.strip("[]"))
    except ValueError:
        raise ValueError(f"host address {shown(text)} is not an IP address") from None
    if text.startswith("[") != isinstance(addr, IPv6Address):
        raise ValueError(f"host address {text!r}: write IPv6 addresses in brackets, IPv4 without")
    if isinstance(addr, IPv6Address) and addr.scope_id is not None:
        raise ValueError(f"host address {text!r}: a scope (%{addr.scope_id}) has no meaning here")
    if isinstance(addr, IPv6Address) and addr.is_loopback:
        raise ValueError(
            "cannot publish on ::1: the kernel does not DNAT IPv6 loopback traffic to another "
            "interface; publish on 127.0.0.1 or on a global IPv6 address"
        )
    return addr


def parse_publish(text: str) -> PublishSpec:
    """Parse ``[ip:]hostPort:containerPort[/proto]``; raise ValueError saying what is wrong.

    Unlike ``docker run -p 80``, the host port is required: a declarative config must not get
    a random port on every apply.
    """
    m = _SPEC.match(text.strip())
    if not m:
        raise ValueError(
            f"{shown(text)} is not of the form [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp|sctp]"
        )
    proto = m["proto"] or "tcp"
    if proto not in PROTOS:
        raise ValueError(f"protocol {shown(proto)} is not one of tcp, udp, sctp")
    if not m["host"]:
        raise ValueError(f"{shown(text)} has no host port; nftnet needs one (no random ports)")
    host_ports = _port_range(m["host"], "host")
    container_ports = _port_range(m["ctr"], "container")
    if host_ports[1] - host_ports[0] != container_ports[1] - container_ports[0]:
        raise ValueError(
            f"host range {m['host']} and container range {m['ctr']} have different sizes"
        )
    return PublishSpec(text, _host_ip(m["ip"]), host_ports, container_ports, proto)  # type: ignore[arg-type]


def expand(spec: PublishSpec, endpoint: Endpoint, binding: IPv4Address) -> list[PortMapping]:
    """The per-port, per-family mappings one entry stands for.

    Without a host address the entry follows ``binding``, the network's ``host_binding_ipv4``
    (all it needs of the network, so runtime commands need not rebuild one): on 0.0.0.0 it
    is published on every IPv4 address and, when the endpoint has IPv6, on every IPv6 address
    too (as Docker does with ip6tables); on a specific address, on that address only.
    Raises ValueError when the endpoint lacks the address family the entry needs.
    """
    targets: list[tuple[IPAddress | None, IPAddress]] = []
    if spec.host_ip is not None:
        ctr = endpoint.ipv4 if isinstance(spec.host_ip, IPv4Address) else endpoint.ipv6
        if ctr is None:
            fam = "IPv4" if isinstance(spec.host_ip, IPv4Address) else "IPv6"
            raise ValueError(f"publishing on {spec.host_ip} needs an {fam} address on the endpoint")
        wildcard = spec.host_ip.is_unspecified
        targets.append((None if wildcard else spec.host_ip, ctr))
    else:
        if endpoint.ipv4 is not None:
            targets.append((None if binding.is_unspecified else binding, endpoint.ipv4))
        if endpoint.ipv6 is not None and binding.is_unspecified:
            targets.append((None, endpoint.ipv6))
        if not targets:
            raise ValueError("the endpoint has no address this entry can be published to")
    offset = spec.container_ports[0] - spec.host_ports[0]
    return [
        PortMapping(
            4 if ctr.version == 4 else 6, host, spec.proto, port, ctr, port + offset
        )
        for host, ctr in targets
        for port in range(spec.host_ports[0], spec.host_ports[1] + 1)
    ]
