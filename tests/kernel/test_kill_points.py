"""kill -9 at every step of every change, through nftnet's test hook (nftnet/crash.py): the
next command completes the change (or, where it was not begun, there is none), after which
`check` exits 0 on a real comparison, the kernel's published-port maps and links are what the
state says, `port ls` agrees with the kernel, and `teardown --yes` leaves no link nftnet made.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nftnet.crash import ENV
from nftnet.runtime import host_ifname
from tests.kernel.conftest import Netns
from tests.nftnet_run import nftnet, published_ports, write_config

pytestmark = pytest.mark.kernel

FRONT = {"subnets": ["172.31.1.0/24", "fd00:1::/64"]}
BACK = {"subnet": "172.31.2.0/24"}
E0 = {"network": "front", "ipv4": "172.31.1.10", "ipv6": "fd00:1::10"}
OLD = {"version": 1, "networks": {"front": FRONT},
       "endpoints": {"e0": {**E0, "publish": ["8080:80"]}}}
NEW = {"version": 1, "networks": {"front": FRONT, "back": BACK},
       "endpoints": {"e0": {**E0, "publish": ["8081:80"]},
                     "e1": {"network": "back", "ipv4": "172.31.2.10", "publish": ["9090:90"]}}}
GATEWAYS = {"nft-front": "172.31.1.1/24", "nft-back": "172.31.2.1/24"}


@dataclass(frozen=True)
class Kernel:
    """What the kernel should hold: published (family, port)s, bridges, runtime veths."""

    ports: frozenset[tuple[int, int]]
    bridges: frozenset[str]
    veths: frozenset[str] = frozenset()

    def plus(self, ports: set[tuple[int, int]] = frozenset(), bridges: set[str] = frozenset(),
             veths: set[str] = frozenset()) -> Kernel:
        return Kernel(self.ports | ports, self.bridges | bridges, self.veths | veths)


AT_OLD = Kernel(frozenset({(4, 8080), (6, 8080)}), frozenset({"nft-front"}))
AT_NEW = Kernel(frozenset({(4, 8081), (6, 8081), (4, 9090)}), frozenset(GATEWAYS))
C1 = host_ifname("c1")
WITH_C1 = AT_OLD.plus({(4, 7000), (6, 7000)}, veths={C1})
ON_BACK = AT_OLD.plus({(4, 7000)}, {"nft-back"}, {C1})

# Where a change is not recorded yet: killed there, the command did nothing.
UNRECORDED = {"temp:state.next.json", "temp:change.pending.json"}
# Each point of a change where what it left differs (nft-before leaves what the point before
# it left; after the generation's temp file, the command is done but for that file).
FULL = ["temp:state.next.json", "wrote:state.next.json", "links", "sysctls", "nft-after",
        "renamed", "temp:generation"]
RUNTIME = ["temp:change.pending.json", "wrote:change.pending.json", "nft-after",
           "journal-appended", "pending-removed"]


@dataclass
class World:
    ns: Netns
    tmp: Path
    container: str  # a network namespace to attach to

    @property
    def state(self) -> Path:
        return self.tmp / "state"

    def __call__(self, *args: str, check: bool = True, crash: str | None = None
                 ) -> subprocess.CompletedProcess[str]:
        return nftnet(self.ns, *args, state_dir=self.state, check=check,
                      env={ENV: crash} if crash else None)

    def apply(self, config: dict, **kw: str) -> subprocess.CompletedProcess[str]:
        return self("apply", "-f", str(write_config(self.tmp, config, f"{uuid.uuid4()}.yaml")),
                    **kw)

    def attach(self, network: str, **kw: str) -> subprocess.CompletedProcess[str]:
        return self("endpoint", "attach", "c1", "--network", network, "--netns",
                    self.container, "-p", "7000:70", **kw)


@dataclass(frozen=True)
class Scenario:
    """A command killed at one of ``points``, after ``setup``; the kernel before and after."""

    setup: Callable[[World], object]
    command: Callable[[World, str], subprocess.CompletedProcess[str]]
    points: list[str]
    before: Kernel | None  # None: nothing applied
    after: Kernel
    then: tuple[str, ...] = ("port", "ls", "-o", "json")  # the next command


def _nothing(w: World) -> None:
    return None


def _old(w: World) -> None:
    w.apply(OLD)


def _flushed(w: World) -> None:
    w.apply(OLD)
    w.ns.run("nft", "flush", "ruleset")


def _c1_on(network: str) -> Callable[[World], None]:
    def setup(w: World) -> None:
        w.apply(OLD)
        if network != "front":
            w("network", "create", network, "--subnet", BACK["subnet"])
        w.attach(network)
    return setup


def _interrupted_apply(w: World) -> None:
    w.apply(OLD)
    assert w.apply(NEW, check=False, crash="nft-after").returncode == -9


SCENARIOS = {
    "first apply": Scenario(_nothing, lambda w, p: w.apply(NEW, check=False, crash=p),
                            ["temp:state.next.json", "wrote:state.next.json", "bridges-created",
                             *FULL[2:]], None, AT_NEW, then=("restore",)),
    "apply over another config": Scenario(
        _old, lambda w, p: w.apply(NEW, check=False, crash=p),
        [*FULL[:2], "bridges-created", *FULL[2:]], AT_OLD, AT_NEW),
    "network create": Scenario(
        _old, lambda w, p: w("network", "create", "back", "--subnet", BACK["subnet"],
                             check=False, crash=p),
        [*FULL[:2], "bridges-created", *FULL[2:]], AT_OLD, AT_OLD.plus(bridges={"nft-back"})),
    "network rm --force": Scenario(
        _c1_on("back"), lambda w, p: w("network", "rm", "back", "--force", check=False,
                                       crash=p),
        [*FULL[:5], "links-removed", *FULL[5:]], ON_BACK, AT_OLD),
    "restore": Scenario(_flushed, lambda w, p: w("restore", check=False, crash=p), FULL,
                        AT_OLD, AT_OLD, then=("restore",)),
    "port publish": Scenario(
        _old, lambda w, p: w("port", "publish", "e0", "9000:90", check=False, crash=p),
        RUNTIME, AT_OLD, AT_OLD.plus({(4, 9000), (6, 9000)})),
    "endpoint attach": Scenario(
        _old, lambda w, p: w.attach("front", check=False, crash=p),
        [*RUNTIME[:2], "veth-made", *RUNTIME[2:]], AT_OLD, WITH_C1),
    "endpoint detach": Scenario(
        _c1_on("front"), lambda w, p: w("endpoint", "detach", "c1", check=False, crash=p),
        [*RUNTIME[:3], "links-removed", *RUNTIME[3:]], WITH_C1, AT_OLD),
    # the completion of an interrupted apply, itself killed at each of its steps
    "completing a change": Scenario(
        _interrupted_apply, lambda w, p: w("network", "ls", check=False, crash=p), FULL,
        AT_NEW, AT_NEW),
}
CASES = [pytest.param(name, point, id=f"{name}: {point}")
         for name, s in SCENARIOS.items() for point in s.points]


@pytest.fixture
def world(netns: Netns, tmp_path: Path) -> Iterator[World]:
    container = f"nkc{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", container], check=True)
    try:
        yield World(netns, tmp_path, container)
    finally:
        subprocess.run(["ip", "netns", "del", container], check=False)


def kernel_ports(ns: Netns) -> set[tuple[int, int]]:
    """(family, host port) of every port nftnet's maps publish."""
    return published_ports(ns.run("nft", "-j", "list", "table", "inet", "nftnet"))


def listed_ports(w: World, listed: str | None = None) -> set[tuple[int, int]]:
    """What `port ls` says (its output ``listed``, or it is run)."""
    rows = json.loads(listed or w("port", "ls", "-o", "json").stdout)
    return {(6 if row["port"].startswith("[") else 4, int(re.search(r":(\d+)/", row["port"])[1]))
            for row in rows}


def links(ns: Netns) -> dict[str, dict]:
    return {link["ifname"]: link for link in json.loads(ns.run("ip", "-j", "-d", "addr"))}


def kind(link: dict) -> str | None:
    return link.get("linkinfo", {}).get("info_kind")


def assert_holds(w: World, want: Kernel, listed: str | None = None) -> None:
    """The kernel, the links and the state agree, and are ``want``."""
    # another program's commit: check must compare for real, not trust the generation
    w.ns.run("nft", "add table ip nftnet-probe; delete table ip nftnet-probe")
    report = w("check", "-o", "json", check=False)
    assert report.returncode == 0, report.stdout + report.stderr
    assert kernel_ports(w.ns) == want.ports
    assert listed_ports(w, listed) == want.ports
    seen = links(w.ns)
    assert {n for n, link in seen.items() if kind(link) == "bridge"} == want.bridges
    for bridge in want.bridges:
        assert "UP" in seen[bridge]["flags"]
        assert GATEWAYS[bridge] in {f"{a['local']}/{a['prefixlen']}"
                                    for a in seen[bridge]["addr_info"]}
    assert {n for n, link in seen.items() if kind(link) == "veth"} == want.veths
    for veth in want.veths:
        assert seen[veth].get("master") in want.bridges


@pytest.mark.parametrize(("scenario", "point"), CASES)
def test_killed_at_any_point_the_next_command_completes(world: World, scenario: str,
                                                        point: str) -> None:
    s = SCENARIOS[scenario]
    s.setup(world)
    killed = s.command(world, point)
    assert killed.returncode == -9, f"never reached {point}:\n{killed.stdout}{killed.stderr}"
    then = world(*s.then)
    assert not [p.name for p in world.state.iterdir()
                if p.suffix == ".tmp" or p.name in ("state.next.json", "change.pending.json")]
    want = s.before if point in UNRECORDED else s.after
    if want is None:
        assert world("check").stdout.startswith("nothing applied yet")
        assert world.ns.run("nft", "list", "table", "inet", "nftnet", check=False) == ""
    else:
        assert_holds(world, want, then.stdout if "port" in s.then else None)
    world("teardown", "--yes")
    left = links(world.ns)
    assert not [n for n, link in left.items() if kind(link) in ("bridge", "veth")], left


def test_a_change_that_cannot_be_completed_is_rolled_back(world: World) -> None:
    """A bridge's name taken by someone else's link between the kill and the next command:
    the change is rolled back (that link kept), and blocks no later command."""
    world.apply(OLD)
    assert world.apply(NEW, check=False, crash="wrote:state.next.json").returncode == -9
    world.ns.run("ip", "link", "add", "nft-back", "type", "veth", "peer", "name", "nft-peer")
    failed = world("port", "ls", check=False)
    assert failed.returncode == 1
    assert "could not be completed and was rolled back" in failed.stderr
    assert "nft-back exists and is not a bridge" in failed.stderr
    assert kind(links(world.ns)["nft-back"]) == "veth"
    world.ns.run("ip", "link", "del", "nft-back")
    assert_holds(world, AT_OLD)


@pytest.mark.parametrize(("scenario", "point"), [("first apply", "bridges-created"),
                                                 ("apply over another config", "links"),
                                                 ("endpoint attach", "veth-made")])
def test_teardown_right_after_a_kill_removes_what_it_made(world: World, scenario: str,
                                                          point: str) -> None:
    """The links a killed command made are in its pending change: teardown, run next,
    removes them with the rest."""
    s = SCENARIOS[scenario]
    s.setup(world)
    assert s.command(world, point).returncode == -9
    world("teardown", "--yes")
    left = links(world.ns)
    assert not [n for n, link in left.items() if kind(link) in ("bridge", "veth")], left
    assert not world.state.exists()
