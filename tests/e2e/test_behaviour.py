"""Every row of the reference behaviour table, with real traffic, IPv4 and IPv6.

One host namespace runs nftnet with five networks; a LAN namespace and container namespaces
send real connections and the servers report the source address that arrived.
See shared/reference/docker-20.10/README.md for Docker's column; nftnet's column is asserted.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab import Lab, unavailable_reason
from tests.nftnet_run import nftnet, write_config

pytestmark = pytest.mark.e2e

H4, H6, L4, L6 = Lab.HOST_IP4, Lab.HOST_IP6, Lab.LAN_IP4, Lab.LAN_IP6

NETWORKS = {
    "front": {"bridge": "br-front", "subnets": ["172.31.1.0/24", "fd00:1::/64"]},
    "back": {"bridge": "br-back", "subnets": ["172.31.2.0/24", "fd00:2::/64"]},
    "quiet": {"bridge": "br-quiet", "subnets": ["172.31.3.0/24", "fd00:3::/64"], "icc": False},
    "plain": {"bridge": "br-plain", "subnets": ["172.31.4.0/24", "fd00:4::/64"],
              "masquerade": False},
    "vault": {"bridge": "br-vault", "subnets": ["172.31.5.0/24", "fd00:5::/64"],
              "internal": True},
}
# name: (network, last byte, published ports, served ports)
CONTAINERS = {
    "web": ("front", 10, ["8080:80", "127.0.0.1:8081:81", "5353:53/udp", "9000-9002:9000-9002",
                          f"[{H6}]:8443:443", "9090:90"], [80, 81, 9001, 443, 90, 22]),
    "peer": ("front", 11, [], [80]),
    "other": ("back", 10, [], [80]),
    "qa": ("quiet", 10, ["8090:80"], [80]),
    "qb": ("quiet", 11, [], [80]),
    "plain": ("plain", 10, [], [80]),
    "va": ("vault", 10, [], [80]),
    "vb": ("vault", 11, [], [80]),
}
USER_RULES = ['iifname "eth0" meta l4proto tcp ct original proto-dst 9090 drop']


def addr(name: str, family: int) -> str:
    net, byte, _, _ = CONTAINERS[name]
    idx = list(NETWORKS).index(net) + 1
    return f"172.31.{idx}.{byte}" if family == 4 else f"fd00:{idx}::{byte}"


def config() -> dict:
    endpoints = {
        name: {"network": net, "ipv4": addr(name, 4), "ipv6": addr(name, 6), "publish": pub}
        for name, (net, _, pub, _) in CONTAINERS.items()
    }
    return {"version": 1, "networks": NETWORKS, "endpoints": endpoints, "user_rules": USER_RULES}


class World:
    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.ns: dict[str, str] = {}

    def probe(self, src: str, dst: str, port: int, proto: str = "tcp") -> str | None:
        src_ns = {"lan": self.lab.lan, "host": self.lab.host}.get(src) or self.ns[src]
        return self.lab.probe(src_ns, dst, port, proto)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    tmp: Path = tmp_path_factory.mktemp("behaviour")
    with Lab() as lab:
        nftnet(lab, "apply", "-f", str(write_config(tmp, config())), state_dir=tmp / "state")
        yield populate(lab)


def populate(lab: Lab) -> World:
    """The containers with their servers, LAN servers and LAN routes, on bridges that exist."""
    w = World(lab)
    for name, (net, _, _, served) in CONTAINERS.items():
        idx = list(NETWORKS).index(net) + 1
        w.ns[name] = lab.container(name, NETWORKS[net]["bridge"], addr(name, 4),
                                   f"172.31.{idx}.1", addr(name, 6), f"fd00:{idx}::1")
        for port in served:
            lab.serve(w.ns[name], port)
    lab.serve(w.ns["web"], 53, "udp")
    lab.serve(w.ns["web"], 9000, "udp")
    for net in range(1, len(NETWORKS) + 1):
        lab.lan_route(f"172.31.{net}.0/24")
        lab.lan_route(f"fd00:{net}::/64")
    lab.serve(lab.lan, 7000)
    lab.serve(lab.lan, 7001, "udp")
    return w


def host(family: int) -> str:
    return H4 if family == 4 else H6


def lan(family: int) -> str:
    return L4 if family == 4 else L6


FAMILIES = pytest.mark.parametrize("v", [4, 6])


@FAMILIES
def test_published_tcp_from_lan(world: World, v: int) -> None:
    assert world.probe("lan", host(v), 8080) == lan(v)


@FAMILIES
def test_published_udp_from_lan(world: World, v: int) -> None:
    assert world.probe("lan", host(v), 5353, "udp") == lan(v)


@FAMILIES
def test_published_range_from_lan(world: World, v: int) -> None:
    assert world.probe("lan", host(v), 9001) == lan(v)
    assert world.probe("lan", host(v), 9000, "udp") is None  # the range is tcp only


def test_published_on_one_ipv6_address(world: World) -> None:
    assert world.probe("lan", H6, 8443) == L6
    assert world.probe("lan", H4, 8443) is None


def test_loopback_publish_not_from_lan(world: World) -> None:
    assert world.probe("lan", H4, 8081) is None


@FAMILIES
def test_no_direct_route_to_unpublished_port(world: World, v: int) -> None:
    assert world.probe("lan", addr("web", v), 22) is None


@FAMILIES
def test_no_direct_route_to_published_port(world: World, v: int) -> None:
    """Docker 20.10 lets this through; Docker 28 and nftnet do not."""
    assert world.probe("lan", addr("web", v), 80) is None


@FAMILIES
def test_container_to_lan_is_masqueraded(world: World, v: int) -> None:
    assert world.probe("web", lan(v), 7000) == host(v)
    assert world.probe("web", lan(v), 7001, "udp") == host(v)


@FAMILIES
def test_no_masquerade_network_keeps_its_address(world: World, v: int) -> None:
    assert world.probe("plain", lan(v), 7000) == addr("plain", v)


@FAMILIES
def test_internal_network_cannot_reach_lan(world: World, v: int) -> None:
    assert world.probe("va", lan(v), 7000) is None
    assert world.probe("va", addr("web", v), 80) is None


@FAMILIES
def test_internal_network_containers_talk(world: World, v: int) -> None:
    assert world.probe("va", addr("vb", v), 80) == addr("va", v)


@FAMILIES
def test_same_network(world: World, v: int) -> None:
    assert world.probe("peer", addr("web", v), 80) == addr("peer", v)


@FAMILIES
def test_across_networks_blocked(world: World, v: int) -> None:
    assert world.probe("other", addr("web", v), 80) is None
    assert world.probe("web", addr("other", v), 80) is None


@FAMILIES
def test_icc_false(world: World, v: int) -> None:
    assert world.probe("qb", addr("qa", v), 80) is None


@FAMILIES
def test_icc_false_neighbour_published_port_is_public(world: World, v: int) -> None:
    """Docker 20.10 blocks this; moby#53713 calls that a bug; nftnet allows it."""
    assert world.probe("qb", host(v), 8090) is not None


@FAMILIES
def test_hairpin_own_published_port(world: World, v: int) -> None:
    assert world.probe("web", host(v), 8080) is not None


@FAMILIES
def test_same_network_peer_via_published_port(world: World, v: int) -> None:
    assert world.probe("peer", host(v), 8080) is not None


@FAMILIES
def test_other_network_via_published_port(world: World, v: int) -> None:
    """Blocked by Docker 20.10 without the userland proxy; public in nftnet, as in Docker 28."""
    assert world.probe("other", host(v), 8080) is not None


@FAMILIES
def test_host_to_its_own_published_port(world: World, v: int) -> None:
    assert world.probe("host", host(v), 8080) is not None


def test_host_to_loopback_published_ports(world: World) -> None:
    assert world.probe("host", "127.0.0.1", 8081) is not None
    assert world.probe("host", "127.0.0.1", 8080) is not None


@FAMILIES
def test_host_to_container_address(world: World, v: int) -> None:
    assert world.probe("host", addr("web", v), 80) is not None


@FAMILIES
def test_user_chain_matches_original_port(world: World, v: int) -> None:
    assert world.probe("lan", host(v), 9090) is None
    assert world.probe("lan", host(v), 8080) == lan(v)


def test_user_chain_rule_is_what_blocked(world: World) -> None:
    """Without the user rule the same port answers: the block above is the user chain's."""
    world.lab.run(world.lab.host, "nft", "flush", "chain", "inet", "nftnet", "user")
    try:
        assert world.probe("lan", H4, 9090) == L4
    finally:
        world.lab.run(world.lab.host, "nft", "add", "rule", "inet", "nftnet", "user",
                      *USER_RULES[0].split())
