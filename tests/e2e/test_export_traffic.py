"""`nftnet export` output behaves like Docker 20.10 under real traffic.

The behaviour tests' config is exported with `nftnet export` (iptables-save and
ip6tables-save) and loaded with iptables-restore / ip6tables-restore into a Lab host whose
bridges and containers the Lab made itself, without nftnet. The assertions are the *Docker
20.10* column of shared/reference/docker-20.10/README.md, not nftnet's.

The host gets the settings dockerd makes outside iptables: forwarding, and bridge-nf-call-
iptables (dockerd loads br_netfilter; without it bridged traffic skips iptables and icc=false
would mean nothing). Rows that depend on anything else dockerd does are skipped, with why.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_behaviour import (
    H4,
    H6,
    L4,
    L6,
    NETWORKS,
    World,
    addr,
    config,
    host,
    lan,
    populate,
)
from tests.lab import Lab, unavailable_reason
from tests.nftnet_run import nftnet, write_config

pytestmark = pytest.mark.e2e

FAMILIES = pytest.mark.parametrize("v", [4, 6])
SYSCTLS = ("net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding",
           "net/bridge/bridge-nf-call-iptables", "net/bridge/bridge-nf-call-ip6tables")
# The export writes Docker's default layout, as in the reference captures: userland proxy on,
# so nat DOCKER starts with `-i BRIDGE -j RETURN` and a container reaches a published port via
# the host's address through docker-proxy, a process that no iptables rule can stand for.
NEEDS_PROXY = pytest.mark.skip(reason="Docker 20.10 serves this through its userland proxy "
                               "(the exported layout returns bridge traffic before DNAT)")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    tmp: Path = tmp_path_factory.mktemp("export")
    path = str(write_config(tmp, config()))
    with Lab() as lab:
        for fmt, restore in (("iptables-save", "iptables-restore"),
                             ("ip6tables-save", "ip6tables-restore")):
            text = nftnet(lab, "export", "--format", fmt, "-f", path, state_dir=tmp).stdout
            lab.run(lab.host, restore, input=text)
        for key in SYSCTLS:
            lab.sysctl(lab.host, key, "1")
        for idx, net in enumerate(NETWORKS.values(), 1):
            lab.bridge(net["bridge"], [f"172.31.{idx}.1/24", f"fd00:{idx}::1/64"])
        yield populate(lab)


@FAMILIES
def test_published_tcp_and_udp_from_lan(world: World, v: int) -> None:
    assert world.probe("lan", host(v), 8080) == lan(v)
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
def test_direct_route_to_published_port(world: World, v: int) -> None:
    """Docker 20.10's hole: DOCKER accepts the container port whatever the destination."""
    assert world.probe("lan", addr("web", v), 80) == lan(v)


@FAMILIES
def test_container_to_lan_is_masqueraded(world: World, v: int) -> None:
    assert world.probe("web", lan(v), 7000) == host(v)
    assert world.probe("web", lan(v), 7001, "udp") == host(v)


@FAMILIES
def test_no_masquerade_network_keeps_its_address(world: World, v: int) -> None:
    assert world.probe("plain", lan(v), 7000) == addr("plain", v)


@FAMILIES
def test_internal_network_cannot_leave(world: World, v: int) -> None:
    assert world.probe("va", lan(v), 7000) is None
    assert world.probe("va", addr("web", v), 80) is None


@pytest.mark.parametrize("v", [4, pytest.param(6, marks=pytest.mark.xfail(strict=True, reason=(
    "bridged IPv6 goes through ip6tables too, and STAGE-1's `! -d SUBNET -i BRIDGE -j DROP` "
    "drops the neighbour solicitations (to ff02::1:ff..): Docker's rules cut IPv6 between "
    "containers of an internal network; the reference table was measured over IPv4")))])
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
def test_icc_false_neighbour_published_port_blocked(world: World, v: int) -> None:
    assert world.probe("qb", host(v), 8090) is None


@NEEDS_PROXY
def test_hairpin_own_published_port(world: World) -> None:
    assert world.probe("web", H4, 8080) is not None


@NEEDS_PROXY
def test_same_network_peer_via_published_port(world: World) -> None:
    assert world.probe("peer", H4, 8080) is not None


@FAMILIES
def test_other_network_via_published_port_blocked(world: World, v: int) -> None:
    assert world.probe("other", host(v), 8080) is None


@FAMILIES
def test_host_to_its_own_published_port(world: World, v: int) -> None:
    assert world.probe("host", host(v), 8080) is not None


@pytest.mark.skip(reason="dockerd sets route_localnet=1 on its bridges for this; a sysctl, "
                  "which an iptables-save file cannot carry")
def test_host_to_loopback_published_port(world: World) -> None:
    assert world.probe("host", "127.0.0.1", 8081) is not None


@FAMILIES
def test_host_to_container_address(world: World, v: int) -> None:
    assert world.probe("host", addr("web", v), 80) is not None


@FAMILIES
def test_user_rule_blocks_original_port_only(world: World, v: int) -> None:
    assert world.probe("lan", host(v), 9090) is None
    assert world.probe("lan", host(v), 8080) == lan(v)


def test_user_rule_is_what_blocked(world: World) -> None:
    """With DOCKER-USER emptied the same port answers: the block above is the user rule's."""
    lab = world.lab
    saved = lab.run(lab.host, "iptables-save").stdout
    lab.run(lab.host, "iptables", "-F", "DOCKER-USER")
    try:
        assert world.probe("lan", H4, 9090) == L4
    finally:
        lab.run(lab.host, "iptables-restore", input=saved)
