"""The behaviour table's main rows for containers that a CNI chain made: Debian's bridge +
host-local, then nftnet-cni with nftnet's real engine, run by hand in a Lab's host namespace
for four containers on two networks, and real traffic from the LAN namespace, the host and
the containers (the servers report the source address that arrived), IPv4 and IPv6."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.cni_env import CniHost, conflist, nftnet_cni_installed, port_mappings, run_chain
from tests.e2e.behaviour import ANY, BLOCKED, HOST, LAN
from tests.lab import Lab, unavailable_reason
from tests.nftnet_run import nftnet

pytestmark = pytest.mark.e2e

H4, H6, L4, L6 = Lab.HOST_IP4, Lab.HOST_IP6, Lab.LAN_IP4, Lab.LAN_IP6
SUBNETS = {"front": ("172.31.60.0/24", "fd00:60::/64"), "back": ("172.31.61.0/24", "fd00:61::/64")}
OPTIONS: dict[str, dict[str, Any]] = {"front": {}, "back": {"icc": False}}
# container: (network, portMappings, served tcp ports)
CONTAINERS = {
    "web": ("front", port_mappings((8080, 80, "tcp", ""), (5353, 53, "udp", ""),
                                   (8081, 81, "tcp", "127.0.0.1"), (8443, 443, "tcp", H6)),
            [80, 81, 443, 22]),
    "peer": ("front", {}, [80]),
    "other": ("back", {}, [80]),
    "quiet": ("back", {}, [80]),
}


@dataclass(frozen=True)
class Row:
    what: str
    src: str  # "lan", "host" or a container
    dst: str  # "host", "lan", a container, or an address
    port: int
    want: str  # LAN, HOST, ANY, BLOCKED or a container (its address must arrive)
    proto: str = "tcp"
    families: tuple[int, ...] = (4, 6)


ROWS = [
    Row("published tcp port from LAN", "lan", "host", 8080, LAN),
    Row("published udp port from LAN", "lan", "host", 5353, LAN, "udp"),
    Row("an unpublished host port from LAN", "lan", "host", 8082, BLOCKED),
    Row("published on one IPv6 address", "lan", H6, 8443, LAN, families=(6,)),
    Row("... and not on IPv4", "lan", H4, 8443, BLOCKED, families=(4,)),
    Row("port published on 127.0.0.1, from LAN", "lan", H4, 8081, BLOCKED, families=(4,)),
    Row("LAN to unpublished container port by direct route", "lan", "web", 22, BLOCKED),
    Row("LAN to a published container port by direct route", "lan", "web", 80, BLOCKED),
    Row("container to LAN (tcp)", "web", "lan", 7000, HOST),
    Row("container to LAN (udp)", "web", "lan", 7001, HOST, "udp"),
    Row("same network container to container", "peer", "web", 80, "peer"),
    Row("container to container across networks", "other", "web", 80, BLOCKED),
    Row("... and back", "web", "other", 80, BLOCKED),
    Row("icc=false network, container to container", "quiet", "other", 80, BLOCKED),
    Row("container to its own published port (hairpin)", "web", "host", 8080, ANY),
    Row("same-network peer to a published port via host IP", "peer", "host", 8080, ANY),
    Row("host to a published port on its own IP", "host", "host", 8080, ANY),
    Row("host to a port published on 127.0.0.1", "host", "127.0.0.1", 8081, ANY,
        families=(4,)),
    Row("host to a container address", "host", "web", 80, ANY),
    Row("... on the icc=false network (its servers answer)", "host", "other", 80, ANY),
]


class World:
    """The Lab, the containers' namespaces and the addresses their ADDs returned."""

    def __init__(self, lab: Lab, state: Path) -> None:
        self.lab, self.state = lab, state
        self.ns: dict[str, str] = {}
        self.addrs: dict[str, dict[int, str]] = {}

    def address(self, name: str, v: int) -> str:
        return {"host": H4 if v == 4 else H6, "lan": L4 if v == 4 else L6}.get(name) or \
            self.addrs.get(name, {}).get(v) or name

    def probe(self, row: Row, v: int) -> str | None:
        src = {"lan": self.lab.lan, "host": self.lab.host}.get(row.src) or self.ns[row.src]
        return self.lab.probe(src, self.address(row.dst, v), row.port, row.proto)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("cni-traffic")
    with Lab() as lab:
        host = CniHost(tmp / "cni", netns=lab.host)
        host.install("nftnet-cni", nftnet_cni_installed())
        w = World(lab, tmp / "state")
        chains = {net: conflist(host, net, f"cni-{net}", SUBNETS[net], w.state, **OPTIONS[net])
                  for net in SUBNETS}
        for name, (net, ports, served) in CONTAINERS.items():
            w.ns[name] = lab.empty_netns(name)
            *_, result = run_chain(host, chains[net], "ADD", name, host.sandbox(w.ns[name]),
                                   capability_args=ports)
            assert result is not None
            w.addrs[name] = {6 if ":" in ip["address"] else 4: ip["address"].split("/")[0]
                             for ip in result["ips"]}
            for port in served:
                lab.serve(w.ns[name], port)
        lab.serve(w.ns["web"], 53, "udp")
        for subnets in SUBNETS.values():
            for subnet in subnets:
                lab.lan_route(subnet)
        lab.serve(lab.lan, 7000)
        lab.serve(lab.lan, 7001, "udp")
        yield w


@pytest.mark.parametrize(("row", "v"), [pytest.param(r, v, id=f"{r.what} IPv{v}")
                                        for r in ROWS for v in r.families])
def test_behaviour_row(world: World, row: Row, v: int) -> None:
    seen = world.probe(row, v)
    if row.want == ANY:
        assert seen is not None, f"{row.what}: blocked ({world.lab.last_probe_error})"
    elif row.want == BLOCKED:
        assert seen is None, f"{row.what}: got through, the server saw {seen}"
    else:
        want = world.address({LAN: "lan", HOST: "host"}.get(row.want, row.want), v)
        assert seen == want, f"{row.what}: server saw {seen}, expected {want}"


def test_nftnet_holds_the_cni_entries_and_is_in_sync(world: World) -> None:
    proc = nftnet(world.lab, "check", state_dir=world.state)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ls = nftnet(world.lab, "endpoint", "ls", state_dir=world.state).stdout
    assert all(f"{net}.{name}.eth0" in ls for name, (net, _, _) in CONTAINERS.items())
