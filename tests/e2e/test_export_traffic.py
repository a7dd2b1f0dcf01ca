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

from tests.e2e.behaviour import H4, L4, NETWORKS, Row, World, cases, check, config, populate
from tests.lab import Lab, unavailable_reason
from tests.nftnet_run import nftnet, write_config

pytestmark = pytest.mark.e2e

SYSCTLS = ("net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding",
           "net/bridge/bridge-nf-call-iptables", "net/bridge/bridge-nf-call-ip6tables")


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


@pytest.mark.parametrize(("row", "v"), cases("docker"))
def test_row(world: World, row: Row, v: int) -> None:
    check(world, row, v, "docker")


def test_user_rule_is_what_blocked(world: World) -> None:
    """With DOCKER-USER emptied the same port answers: the block above is the user rule's."""
    lab = world.lab
    saved = lab.run(lab.host, "iptables-save").stdout
    lab.run(lab.host, "iptables", "-F", "DOCKER-USER")
    try:
        assert world.probe("lan", H4, 9090) == L4
    finally:
        lab.run(lab.host, "iptables-restore", input=saved)
