"""The reference behaviour table as data: the world it is measured in, and one row per probe
with the result expected in Docker 20.10's column and in nftnet's.

shared/reference/docker-20.10/README.md measured Docker with real traffic. test_behaviour.py
checks nftnet's column against nftnet; test_export_traffic.py checks Docker's column against
nftnet's iptables export loaded with iptables-restore; tests/drivers/test_docker_behaviour.py
checks nftnet's column through containers that a real dockerd made. A container on each of five
networks (plain, icc=false, no masquerade, internal) and a LAN machine send real connections;
the servers report the source address that arrived.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.lab import Lab, unavailable_reason
from tests.nftnet_run import nftnet, write_config

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


def lab_container(lab: Lab, name: str) -> str:
    """A container namespace of the table on its network's bridge; its name."""
    net = CONTAINERS[name][0]
    idx = list(NETWORKS).index(net) + 1
    return lab.container(name, NETWORKS[net]["bridge"], addr(name, 4), f"172.31.{idx}.1",
                         addr(name, 6), f"fd00:{idx}::1")


def populate(lab: Lab, make: Callable[[Lab, str], str] = lab_container) -> World:
    """The containers with their servers, LAN servers and LAN routes, on bridges that exist.
    ``make`` makes a container by name and returns its namespace (a runtime's, elsewhere)."""
    w = World(lab)
    for name, (_, _, _, served) in CONTAINERS.items():
        w.ns[name] = make(lab, name)
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



# What a probe must return: the LAN's address, the host's, a container's, anything, or nothing.
LAN, HOST, ANY, BLOCKED = "lan", "host", "any", "blocked"
PROXY = "Docker 20.10 serves this through its userland proxy (the exported layout returns " \
    "bridge traffic before DNAT)"
LOCALNET = "dockerd sets route_localnet=1 on its bridges for this: a sysctl, which an " \
    "iptables-save file cannot carry"
ND = ("bridged IPv6 goes through ip6tables too, and STAGE-1's `! -d SUBNET -i BRIDGE -j DROP` "
      "drops the neighbour solicitations: Docker's rules cut IPv6 between containers of an "
      "internal network (the reference table was measured over IPv4)")


@dataclass(frozen=True)
class Row:
    """One probe: from ``src`` to ``dst`` (a container name, "host", "lan", or a literal
    address), with the result each column expects; a column may be a skip or an xfail."""

    what: str
    src: str
    dst: str
    port: int
    nftnet: str
    docker: str
    proto: str = "tcp"
    families: tuple[int, ...] = (4, 6)
    docker_skip: str | None = None
    docker_xfail6: str | None = None

    def target(self, v: int) -> str:
        if self.dst in ("host", "lan"):
            return host(v) if self.dst == "host" else lan(v)
        return addr(self.dst, v) if self.dst in CONTAINERS else self.dst

    def expected(self, column: str, v: int) -> str:
        want = getattr(self, column)
        return {LAN: lan(v), HOST: host(v)}.get(want) or (
            addr(want, v) if want in CONTAINERS else want)


ROWS = [
    Row("published tcp port from LAN", "lan", "host", 8080, LAN, LAN),
    Row("published udp port from LAN", "lan", "host", 5353, LAN, LAN, "udp"),
    Row("published tcp range from LAN", "lan", "host", 9001, LAN, LAN),
    Row("a tcp range is not udp", "lan", "host", 9000, BLOCKED, BLOCKED, "udp"),
    Row("published on one IPv6 address", "lan", H6, 8443, LAN, LAN, families=(6,)),
    Row("... and not on IPv4", "lan", H4, 8443, BLOCKED, BLOCKED, families=(4,)),
    Row("port published on 127.0.0.1, from LAN", "lan", H4, 8081, BLOCKED, BLOCKED,
        families=(4,)),
    Row("LAN to unpublished container port by direct route", "lan", "web", 22, BLOCKED,
        BLOCKED),
    Row("LAN to a published container port by direct route", "lan", "web", 80, BLOCKED, LAN),
    Row("container to LAN (tcp)", "web", "lan", 7000, HOST, HOST),
    Row("container to LAN (udp)", "web", "lan", 7001, HOST, HOST, "udp"),
    Row("no-masquerade network to LAN", "plain", "lan", 7000, "plain", "plain"),
    Row("internal network to LAN", "va", "lan", 7000, BLOCKED, BLOCKED),
    Row("internal network to another network", "va", "web", 80, BLOCKED, BLOCKED),
    Row("internal network, container to container", "va", "vb", 80, "va", "va",
        docker_xfail6=ND),
    Row("same network container to container", "peer", "web", 80, "peer", "peer"),
    Row("container to container across networks", "other", "web", 80, BLOCKED, BLOCKED),
    Row("... and back", "web", "other", 80, BLOCKED, BLOCKED),
    Row("icc=false network, container to container", "qb", "qa", 80, BLOCKED, BLOCKED),
    Row("icc=false, neighbour's published port via host IP", "qb", "host", 8090, ANY, BLOCKED),
    Row("container to its own published port (hairpin)", "web", "host", 8080, ANY, ANY,
        docker_skip=PROXY),
    Row("same-network peer to a published port via host IP", "peer", "host", 8080, ANY, ANY,
        docker_skip=PROXY),
    Row("another network to a published port via host IP", "other", "host", 8080, ANY,
        BLOCKED),
    Row("host to a published port on its own IP", "host", "host", 8080, ANY, ANY),
    Row("host to a port published on 127.0.0.1", "host", "127.0.0.1", 8081, ANY, ANY,
        families=(4,), docker_skip=LOCALNET),
    Row("host to an all-addresses port via 127.0.0.1", "host", "127.0.0.1", 8080, ANY, ANY,
        families=(4,), docker_skip=PROXY),
    Row("host to a container address", "host", "web", 80, ANY, ANY),
    Row("user rule on the original port (ct original proto-dst 9090)", "lan", "host", 9090,
        BLOCKED, BLOCKED),
]


def cases(column: str, rows: list[Row] = ROWS) -> list[object]:
    """pytest parameters (row, family) for one column, with its skips and xfails."""
    out: list[object] = []
    for row in rows:
        for v in row.families:
            marks = []
            if column == "docker" and row.docker_skip:
                marks.append(pytest.mark.skip(reason=row.docker_skip))
            if column == "docker" and row.docker_xfail6 and v == 6:
                marks.append(pytest.mark.xfail(strict=True, reason=row.docker_xfail6))
            out.append(pytest.param(row, v, marks=marks, id=f"{row.what} IPv{v}"))
    return out


def check(world: World, row: Row, v: int, column: str) -> None:
    seen = world.probe(row.src, row.target(v), row.port, row.proto)
    want = row.expected(column, v)
    if want == ANY:
        assert seen is not None, f"{row.what}: blocked ({world.lab.last_probe_error})"
    elif want == BLOCKED:
        assert seen is None, f"{row.what}: got through, the server saw {seen}"
    else:
        assert seen == want, f"{row.what}: server saw {seen}, expected {want}"


@contextmanager
def nftnet_world(tmp_path_factory: pytest.TempPathFactory, name: str
                 ) -> Iterator[tuple[World, Path]]:
    """A Lab with the table's config applied by nftnet and populated; and the state dir."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    tmp: Path = tmp_path_factory.mktemp(name)
    with Lab() as lab:
        nftnet(lab, "apply", "-f", str(write_config(tmp, config())), state_dir=tmp / "state")
        yield populate(lab), tmp / "state"
