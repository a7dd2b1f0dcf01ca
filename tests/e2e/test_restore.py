"""restore with real traffic. After `nft flush ruleset` every row of the behaviour table holds
again, a hand-added user rule included. After the deletion of any one of nftnet's chains or
sets, nothing is exposed to the LAN (fail closed), and restore brings every protection back."""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from subprocess import CompletedProcess

import pytest

from tests.e2e.behaviour import H4, L4, USER_RULES, World, addr, config, nftnet_world, populate
from tests.e2e.behaviour_again import behaviour_failures
from tests.lab import Lab
from tests.nftnet_run import nftnet, write_config

pytestmark = pytest.mark.e2e

BASE_CHAINS = ["raw-prerouting", "filter-prerouting", "filter-forward", "filter-forward-guard",
               "nat-prerouting", "nat-output", "nat-postrouting"]
# id: nft commands that take away one of nftnet's objects
DELETIONS = {
    **{f"delete {c}": [f"flush chain inet nftnet {c}", f"delete chain inet nftnet {c}"]
       for c in BASE_CHAINS},
    **{f"flush {c}": [f"flush chain inet nftnet {c}"]
       for c in ("filter-forward", "filter-forward-guard", "published", "icc-off", "user")},
    **{f"flush {s}": [f"flush set inet nftnet {s}"]
       for s in ("bridges", "internal", "subnets4", "subnets6")},
    "flush same-bridge": ["flush map inet nftnet same-bridge"],
}
# What the LAN must never reach: (what, address, port).
FORBIDDEN = [
    *((f"IPv{v} unpublished container port", addr("web", v), 22) for v in (4, 6)),
    *((f"IPv{v} published container port by direct route", addr("web", v), 80) for v in (4, 6)),
    ("port published on 127.0.0.1", "127.0.0.1", 8081),
    ("internal network container", addr("va", 4), 80),
    ("no-masquerade network container", addr("plain", 4), 80),
]


@dataclass
class Host:
    world: World
    state: Path

    def __call__(self, *args: str, check: bool = True) -> CompletedProcess[str]:
        return nftnet(self.world.lab, *args, state_dir=self.state, check=check)

    def nft(self, *commands: str) -> None:
        for command in commands:
            self.world.lab.run(self.world.lab.host, "nft", command)

    def exposed(self) -> list[str]:
        """What the LAN reaches of FORBIDDEN, probed all at once."""
        lab = self.world.lab

        def reached(target: tuple[str, str, int]) -> str | None:
            what, dst, port = target
            return f"{what} ({dst} port {port})" if lab.probe(lab.lan, dst, port,
                                                                timeout=1.0) else None
        with ThreadPoolExecutor(max_workers=len(FORBIDDEN)) as pool:
            return [r for r in pool.map(reached, FORBIDDEN) if r]


def lan_routes_loopback_to_host(lab: Lab) -> None:
    """The worst LAN neighbour and host (CVE-2020-8558): the LAN machine sends packets for
    127.0.0.1 to the host, whose LAN interface accepts them (route_localnet=1)."""
    lab.run(lab.lan, "ip", "addr", "flush", "dev", "lo")
    lab.run(lab.lan, "ip", "route", "add", "127.0.0.1/32", "via", Lab.HOST_IP4, "dev", "eth0")
    for key in ("net/ipv4/conf/all/route_localnet", "net/ipv4/conf/eth0/route_localnet"):
        lab.sysctl(lab.lan, key, "1")
    lab.sysctl(lab.host, "net/ipv4/conf/eth0/route_localnet", "1")


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    with nftnet_world(tmp_path_factory, "restore") as (world, state):
        lan_routes_loopback_to_host(world.lab)
        yield Host(world, state)


def test_the_probes_see_a_hole(host: Host) -> None:
    """Negative controls: without both guards, or without nat-prerouting's 127.0.0.0/8 rule
    (a rule, not a chain: see README), the same probes get through."""
    host.nft(*DELETIONS["delete filter-forward"], *DELETIONS["delete filter-forward-guard"])
    try:
        assert "IPv4 unpublished container port (172.31.1.10 port 22)" in host.exposed()
    finally:
        host("restore")
    host.nft("flush chain inet nftnet nat-prerouting",
             "add rule inet nftnet nat-prerouting fib daddr type local jump published")
    try:
        assert host.exposed() == ["port published on 127.0.0.1 (127.0.0.1 port 8081)"]
    finally:
        host("restore")


@pytest.mark.parametrize("deletion", DELETIONS)
def test_one_deletion_exposes_nothing(host: Host, deletion: str) -> None:
    host.nft(*DELETIONS[deletion])
    try:
        assert host.exposed() == []
        assert host("check", check=False).returncode == 1
    finally:
        restored = host("restore")
    assert "restored:" in restored.stdout
    assert host("check", check=False).returncode == 0
    assert host.world.probe("lan", H4, 8080) == L4
    assert host.world.probe("web", L4, 7000) == H4


def test_behaviour_after_every_deletion_and_restore(host: Host) -> None:
    assert behaviour_failures(host.world) == []


def test_flush_ruleset_then_restore(lab: Lab, tmp_path: Path) -> None:
    """The user chain as it was, hand-added rule included (its comment too): the row of the
    behaviour table that tests the user chain passes only if restore put that rule back."""
    unmanaged = {k: v for k, v in config().items() if k != "user_rules"}
    state = tmp_path / "state"
    nftnet(lab, "apply", "-f", str(write_config(tmp_path, unmanaged)), state_dir=state)
    world = populate(lab)
    lab.run(lab.host, "nft", "add", "rule", "inet", "nftnet", "user", *USER_RULES[0].split(),
            "comment", '"by hand"')
    recorded = nftnet(lab, "restore", state_dir=state).stdout
    assert "recorded the user chain's 1 rule(s)" in recorded
    listed = lab.run(lab.host, "nft", "list", "chain", "inet", "nftnet", "user").stdout
    lab.run(lab.host, "nft", "flush", "ruleset")
    assert world.probe("lan", H4, 8080) is None
    restored = nftnet(lab, "restore", state_dir=state).stdout
    assert "table inet nftnet: missing" in restored
    assert "user chain: 1 rule(s) put back" in restored
    assert behaviour_failures(world) == []
    assert lab.run(lab.host, "nft", "list", "chain", "inet", "nftnet", "user").stdout == listed


def test_runtime_endpoint_it_cannot_bring_back(lab: Lab, tmp_path: Path) -> None:
    one = {"version": 1, "networks": {"front": {"bridge": "br-front",
                                                "subnet": "172.31.1.0/24"}}}
    state = tmp_path / "state"
    nftnet(lab, "apply", "-f", str(write_config(tmp_path, one)), state_dir=state)
    c1 = lab.empty_netns("c1")
    nftnet(lab, "endpoint", "attach", "one", "--network", "front", "--netns", c1, "-p",
           "8080:80", state_dir=state)
    lab.run(lab.host, "ip", "link", "del", "br-front")
    lab.run(lab.host, "nft", "flush", "ruleset")
    lab.namespaces.remove(c1)
    lab.run(lab.host, "ip", "netns", "del", c1)  # the container is gone, and its veth with it
    restored = nftnet(lab, "restore", state_dir=state, check=False)
    assert restored.returncode == 1, restored.stderr
    out = restored.stdout
    assert "bridge br-front: missing" in out
    assert "cannot restore endpoint one: its veth" in out
    found = nftnet(lab, "check", state_dir=state, check=False)
    assert found.returncode == 1
    assert "endpoint one: its veth" in found.stdout
    nftnet(lab, "endpoint", "detach", "one", state_dir=state)
    assert nftnet(lab, "check", state_dir=state, check=False).returncode == 0


def test_deleted_bridge_gets_its_veths_back(lab: Lab, tmp_path: Path) -> None:
    """`ip link del` of a bridge with runtime endpoints on it leaves their veths without a
    master: check names each endpoint, and restore, or apply, puts the veths back (hairpin
    on), so that the containers reach their gateway, the LAN their published port and a
    container itself through it again. Only a veth that is gone makes restore exit 1."""
    front = {"version": 1, "networks": {"front": {"bridge": "br-front",
                                                  "subnets": ["172.31.1.0/24", "fd00:1::/64"]}}}
    path = write_config(tmp_path, front)
    state = tmp_path / "state"

    def run(*args: str) -> CompletedProcess[str]:
        return nftnet(lab, *args, state_dir=state, check=False)

    run("apply", "-f", str(path))
    c1, c2 = lab.empty_netns("c1"), lab.empty_netns("c2")
    for name, ns, extra in (("one", c1, ["-p", "8080:80"]), ("two", c2, [])):
        assert run("endpoint", "attach", name, "--network", "front", "--netns", ns,
                   *extra).returncode == 0
    lab.serve(lab.host, 7000)
    lab.serve(c1, 80)
    gateway = {(c1, "172.31.1.1"): "172.31.1.2", (c1, "fd00:1::1"): "fd00:1::2",
               (c2, "172.31.1.1"): "172.31.1.3", (c2, "fd00:1::1"): "fd00:1::3"}

    def broken(containers: tuple[str, ...] = (c1, c2)) -> list[str]:
        out = [f"{ns} to gateway {dst}" for (ns, dst), src in gateway.items()
               if ns in containers and lab.probe(ns, dst, 7000) != src]
        out += [f"LAN to {dst}:8080" for dst, src in ((Lab.HOST_IP4, Lab.LAN_IP4),
                                                      (Lab.HOST_IP6, Lab.LAN_IP6))
                if lab.probe(lab.lan, dst, 8080) != src]
        return out + ([] if lab.probe(c1, Lab.HOST_IP4, 8080) else ["c1 hairpin"])

    assert broken() == []
    lab.run(lab.host, "ip", "link", "del", "br-front")
    assert lab.probe(c1, "172.31.1.1", 7000, timeout=1.0) is None
    found = run("check")
    assert found.returncode == 1
    assert "bridge br-front: missing" in found.stdout
    for name in ("one", "two"):
        assert re.search(rf"endpoint {name}: its veth nv\w+ is not on bridge br-front",
                         found.stdout), found.stdout
    restored = run("restore")
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "endpoint one: its veth" in restored.stdout
    assert broken() == []
    assert run("check").returncode == 0

    lab.run(lab.host, "ip", "link", "del", "br-front")
    applied = run("apply", "-f", str(path))
    assert applied.returncode == 0 and "no changes" not in applied.stdout
    assert broken() == []
    assert "no changes" in run("apply", "-f", str(path)).stdout

    lab.run(lab.host, "ip", "link", "del", "br-front")
    lab.namespaces.remove(c2)
    lab.run(lab.host, "ip", "netns", "del", c2)  # container two is gone, and its veth with it
    restored = run("restore")
    assert restored.returncode == 1, restored.stdout + restored.stderr
    assert "cannot restore endpoint two: its veth" in restored.stdout
    assert "cannot restore endpoint one" not in restored.stdout
    assert broken((c1,)) == []
