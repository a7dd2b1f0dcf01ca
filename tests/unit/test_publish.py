"""Docker's -p syntax: parsing, and expansion to per-port mappings (property-based)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nftnet.config.model import Endpoint, Network
from nftnet.config.publish import expand, parse_publish

NET = Network("n", "br-n")
EP = Endpoint("e", "n", IPv4Address("10.0.0.2"), IPv6Address("fd00::2"))


@pytest.mark.parametrize(
    ("text", "host_ip", "host", "ctr", "proto"),
    [
        ("8080:80", None, (8080, 8080), (80, 80), "tcp"),
        ("127.0.0.1:8081:81", IPv4Address("127.0.0.1"), (8081, 8081), (81, 81), "tcp"),
        ("5353:53/udp", None, (5353, 5353), (53, 53), "udp"),
        ("9000-9002:9000-9002", None, (9000, 9002), (9000, 9002), "tcp"),
        ("[fd00::1]:8443:443/tcp", IPv6Address("fd00::1"), (8443, 8443), (443, 443), "tcp"),
        ("7:7/sctp", None, (7, 7), (7, 7), "sctp"),
    ],
)
def test_parse(text: str, host_ip: object, host: tuple, ctr: tuple, proto: str) -> None:
    spec = parse_publish(text)
    assert (spec.host_ip, spec.host_ports, spec.container_ports, spec.proto) == (
        host_ip, host, ctr, proto)


@pytest.mark.parametrize("text", ["", "80", ":80", "a:80", "1.2.3.4:80", "fd00::1:80:80",
                                  "[1.2.3.4]:80:80", "80:80/tcpx", "80-79:80-79", "1:2:3:4"])
def test_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_publish(text)


ports = st.integers(1, 65535)


@given(lo=ports, size=st.integers(0, 50), ctr_lo=ports, proto=st.sampled_from(["tcp", "udp",
       "sctp"]), ip=st.sampled_from(["", "127.0.0.1:", "[fd00::1]:", "0.0.0.0:", "[::]:"]))
def test_expand_matches_ranges(lo: int, size: int, ctr_lo: int, proto: str, ip: str) -> None:
    hi, ctr_hi = lo + size, ctr_lo + size
    text = f"{ip}{lo}-{hi}:{ctr_lo}-{ctr_hi}/{proto}"
    if hi > 65535 or ctr_hi > 65535:
        with pytest.raises(ValueError):
            parse_publish(text)
        return
    spec = parse_publish(text)
    maps = expand(spec, EP, NET.host_binding_ipv4)
    families = 2 if ip in ("", "[::]:") and ip != "[::]:" else 1
    assert len(maps) == (size + 1) * families
    for m in maps:
        assert m.container_port - ctr_lo == m.host_port - lo
        assert m.proto == proto
        assert m.container_ip == (EP.ipv4 if m.family == 4 else EP.ipv6)
        assert (m.host_ip is None) == (ip in ("", "0.0.0.0:", "[::]:"))


def test_specific_host_binding_publishes_ipv4_only() -> None:
    net = Network("n", "br-n", host_binding_ipv4=IPv4Address("192.168.77.1"))
    maps = expand(parse_publish("8080:80"), EP, net.host_binding_ipv4)
    assert [(m.family, str(m.host_ip)) for m in maps] == [(4, "192.168.77.1")]


def test_family_the_endpoint_lacks() -> None:
    with pytest.raises(ValueError, match="needs an IPv6 address"):
        expand(parse_publish("[fd00::1]:1:1"), Endpoint("e", "n", IPv4Address("10.0.0.2")),
               NET.host_binding_ipv4)
