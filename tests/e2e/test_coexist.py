"""nftnet beside other firewalls, with real traffic: a native `inet filter` forward chain with
policy drop, and iptables-nft's tables as Docker leaves them. check names what drops
nftnet's traffic, and the one rule it prints makes every row of the behaviour table pass."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.behaviour import H4, H6, L4, L6, World, nftnet_world
from tests.e2e.behaviour_again import behaviour_failures
from tests.nftnet_run import nftnet

pytestmark = pytest.mark.e2e

DOCKER = Path(__file__).resolve().parents[3] / "shared/reference/docker-20.10"
DISTRO_FIREWALL = """table inet filter {
    chain forward { type filter hook forward priority filter; policy drop; }
}"""


class Host:
    def __init__(self, world: World, state: Path) -> None:
        self.world, self.lab, self.state = world, world.lab, state

    def check(self) -> str:
        proc = nftnet(self.lab, "check", state_dir=self.state, check=False)
        assert proc.returncode == 0, proc.stdout  # in sync: a foreign chain is no drift
        return proc.stdout

    def remedies(self, text: str) -> list[str]:
        """The rules check prints, each on its own indented line after a warning."""
        return [line.strip() for line in text.splitlines()
                if line.startswith("    ") and line.split()[0] in ("nft", "iptables",
                                                                   "ip6tables")]

    def run(self, command: str, **kwargs: object) -> None:
        self.lab.run(self.lab.host, *shlex.split(command), **kwargs)  # type: ignore[arg-type]

    def broken(self) -> bool:
        return (self.world.probe("lan", H4, 8080) is None
                and self.world.probe("web", L4, 7000) is None)


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    with nftnet_world(tmp_path_factory, "coexist") as (world, state):
        yield Host(world, state)


def test_distro_firewall_with_policy_drop(host: Host) -> None:
    host.lab.run(host.lab.host, "nft", "-f", "-", input=DISTRO_FIREWALL)
    try:
        assert host.broken()
        text = host.check()
        assert ("warning: chain inet filter forward (policy drop, priority 0) drops container "
                "traffic that nftnet lets through") in text
        assert host.remedies(text) == [
            "nft insert rule inet filter forward meta mark and 0x10000000 == 0x10000000 accept"]
        host.run(host.remedies(text)[0])
        assert behaviour_failures(host.world) == []
        assert "accepts packets with nftnet's mark 0x10000000: fine" in host.check()
    finally:
        host.run("nft delete table inet filter")


@pytest.mark.skipif(not (DOCKER / "01-daemon-default").is_dir(), reason=f"no capture in {DOCKER}")
def test_beside_iptables_tables_docker_left(host: Host) -> None:
    """Docker's own iptables rules, loaded with iptables-restore (iptables-nft): with FORWARD
    policy ACCEPT nothing changes; with Docker's FORWARD DROP (and ip6tables'), check names
    both chains and their iptables remedies make the traffic flow again."""
    capture = (DOCKER / "01-daemon-default/iptables-save.txt").read_text()
    host.lab.run(host.lab.host, "iptables-restore", input=capture.replace(
        ":FORWARD DROP", ":FORWARD ACCEPT"))
    try:
        assert behaviour_failures(host.world) == []
        assert "warning" not in host.check()
        host.run("iptables -P FORWARD DROP")
        host.run("ip6tables -P FORWARD DROP")
        assert host.broken()
        assert host.world.probe("lan", H6, 8080) is None
        text = host.check()
        assert "iptables' FORWARD chain ip filter FORWARD (policy drop, priority 0)" in text
        assert "iptables' FORWARD chain ip6 filter FORWARD (policy drop, priority 0)" in text
        remedies = host.remedies(text)
        assert remedies == [
            "iptables -I FORWARD -m mark --mark 0x10000000/0x10000000 -j ACCEPT",
            "ip6tables -I FORWARD -m mark --mark 0x10000000/0x10000000 -j ACCEPT"]
        for remedy in remedies:
            host.run(remedy)
        assert behaviour_failures(host.world) == []
        assert host.world.probe("lan", H6, 8080) == L6
        assert "warning" not in host.check()
    finally:
        for table in ("ip filter", "ip nat", "ip6 filter"):
            host.run(f"nft delete table {table}", check=False)
