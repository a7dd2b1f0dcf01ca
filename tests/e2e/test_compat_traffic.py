"""DOCKER-USER rules and compat's nft translations behave alike under real traffic.

One Lab host, one network with two containers and published ports. Each case loads its iptables
rules twice: first with iptables-restore in a plain iptables setup (FORWARD jumps to DOCKER-USER
first; DNAT and MASQUERADE in nat), then as ``{iptables: ...}`` user_rules of a config that
nftnet applies. Every probe must end the same way in both: the same peer address seen, or the
same error (a REJECT refuses at once, a DROP times out).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab import Lab, unavailable_reason
from tests.nftnet_run import nftnet, write_config

pytestmark = pytest.mark.e2e

H4, H6, L4, L6 = Lab.HOST_IP4, Lab.HOST_IP6, Lab.LAN_IP4, Lab.LAN_IP6
L4B, L6B = "192.168.77.3", "fd77::3"  # a second LAN client
SUBNETS = {4: "172.31.1.0/24", 6: "fd00:1::/64"}
CONTAINERS = {"web": {4: "172.31.1.10", 6: "fd00:1::10"}, "db": {4: "172.31.1.20", 6: "fd00:1::20"}}
# host port, proto, container, container port
PUBLISHED = [(8080, "tcp", "web", 80), (8081, "tcp", "web", 81), (5353, "udp", "web", 53),
             (8082, "tcp", "db", 80)]
# name: source (lan or web), destination, port, proto, source address
PROBES = {
    "lan:8080": ("lan", H4, 8080, "tcp", L4),
    "lanb:8080": ("lan", H4, 8080, "tcp", L4B),
    "lan:8081": ("lan", H4, 8081, "tcp", L4),
    "lan:8082": ("lan", H4, 8082, "tcp", L4),
    "lan:5353/udp": ("lan", H4, 5353, "udp", L4),
    "web>lan": ("web", L4, 7000, "tcp", None),
    "lan6:8080": ("lan", H6, 8080, "tcp", L6),
    "lan6b:8080": ("lan", H6, 8080, "tcp", L6B),
    "web>lan6": ("web", L6, 7000, "tcp", None),
}
PROBE_TIMEOUT = 0.5  # on veths a connection that gets through answers in milliseconds
# name: DOCKER-USER rules as (family, iptables arguments), and the probes they must stop
CASES: dict[str, tuple[list[tuple[str, str]], set[str]]] = {
    "no rules": ([], set()),
    "! -s": ([("ip", "-i eth0 ! -s 192.168.77.2 -j DROP")], {"lanb:8080"}),
    "! -d cidr, ip6 -s": ([("ip", "-i eth0 ! -d 172.31.1.16/28 -j DROP"),
                           ("ip6", "-i eth0 -s fd77::3/128 -j DROP")],
                          {"lan:8080", "lanb:8080", "lan:8081", "lan:5353/udp", "web>lan",
                           "lan6b:8080"}),
    "-i eth+ (IPv4 only)": ([("ip", "-i eth+ -j DROP")],
                            {"lan:8080", "lanb:8080", "lan:8081", "lan:8082", "lan:5353/udp",
                             "web>lan"}),
    "--ctorigdstport": ([("ip", "-p tcp -m conntrack --ctorigdstport 8081 --ctdir ORIGINAL "
                                "-j DROP"),
                         ("ip", "-p tcp -m tcp --dport 8080 -j DROP")],  # after DNAT: no match
                        {"lan:8081"}),
    "--ctstate": ([("ip", "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"),
                   ("ip", "-i eth0 -j DROP"), ("ip6", "-i eth0 -m state --state NEW -j DROP")],
                  {"lan:8080", "lanb:8080", "lan:8081", "lan:8082", "lan:5353/udp",
                   "lan6:8080", "lan6b:8080"}),
    "multiport": ([("ip", "-i eth0 -p tcp -m multiport ! --dports 80,443:450 -j DROP"),
                   ("ip6", "-p tcp -m multiport --dports 22,80 -s fd77::3 -j DROP")],
                  {"lan:8081", "web>lan", "lan6b:8080"}),  # web>lan: the reply's dport
    "iprange": ([("ip", "-m iprange --src-range 192.168.77.3-192.168.77.9 -j DROP"),
                 ("ip6", "-m iprange --dst-range fd00:1::10-fd00:1::1f -j DROP")],
                {"lanb:8080", "lan6:8080", "lan6b:8080", "web>lan6"}),
    "REJECT": ([("ip", "-i eth0 -p udp -j REJECT"),
                ("ip", "-i eth0 -p tcp -m tcp --dport 81 -j REJECT --reject-with tcp-reset"),
                ("ip", "-d 172.31.1.20 -j REJECT --reject-with icmp-host-prohibited"),
                ("ip6", "-s fd77::3 -j REJECT")],
               {"lan:5353/udp", "lan:8081", "lan:8082", "lan6b:8080"}),
}


class World:
    def __init__(self, lab: Lab, tmp: Path) -> None:
        self.lab, self.tmp = lab, tmp
        self.web = ""

    def outcomes(self) -> dict[str, str]:
        """Per probe: the peer address the server saw, or why the connection failed."""
        out = {}
        for name, (src, dst, port, proto, src_addr) in PROBES.items():
            ns = self.lab.lan if src == "lan" else self.web
            peer = self.lab.probe(ns, dst, port, proto, timeout=PROBE_TIMEOUT, src=src_addr)
            # last_probe_error is "exit N after T s: <client's error>": keep the error
            out[name] = peer or self.lab.last_probe_error.split("s: ", 1)[-1]
        return out

    def flush(self) -> None:
        self.lab.run(self.lab.host, "nft", "flush", "ruleset")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    with Lab() as lab:
        w = World(lab, tmp_path_factory.mktemp("compat-traffic"))
        lab.bridge("br-front", ["172.31.1.1/24", "fd00:1::1/64"])
        w.web, db = (lab.container(name, "br-front", ip[4], "172.31.1.1", ip[6], "fd00:1::1")
                     for name, ip in CONTAINERS.items())
        for ns, port, proto in ((w.web, 80, "tcp"), (w.web, 81, "tcp"), (w.web, 53, "udp"),
                                (db, 80, "tcp"), (lab.lan, 7000, "tcp")):
            lab.serve(ns, port, proto)
        lab.run(lab.lan, "ip", "addr", "add", f"{L4B}/24", "dev", "eth0")
        lab.run(lab.lan, "ip", "addr", "add", f"{L6B}/64", "dev", "eth0", "nodad")
        lab.sysctl(lab.host, "net.ipv4.ip_forward", "1")
        lab.sysctl(lab.host, "net.ipv6.conf.all.forwarding", "1")
        yield w


def restore_text(rules: list[tuple[str, str]], v: int) -> str:
    """A plain iptables setup of family ``v`` with ``rules`` (those of that family) first."""
    family, host = ("ip", H4) if v == 4 else ("ip6", H6)
    ctr = {name: ip[4] if v == 4 else f"[{ip[6]}]" for name, ip in CONTAINERS.items()}
    dnat = [f"-A PREROUTING -d {host} -p {proto} -m {proto} --dport {port} -j DNAT "
            f"--to-destination {ctr[name]}:{ctr_port}" for port, proto, name, ctr_port in PUBLISHED]
    return "\n".join([
        "*filter", ":FORWARD ACCEPT [0:0]", ":DOCKER-USER - [0:0]", "-A FORWARD -j DOCKER-USER",
        *(f"-A DOCKER-USER {rule}" for fam, rule in rules if fam == family), "COMMIT",
        "*nat", ":PREROUTING ACCEPT [0:0]", ":POSTROUTING ACCEPT [0:0]", *dnat,
        f"-A POSTROUTING -s {SUBNETS[v]} ! -o br-front -j MASQUERADE", "COMMIT", ""])


def nftnet_config(rules: list[tuple[str, str]]) -> dict:
    """The same network, containers and published ports, with the rules as user_rules."""
    endpoints = {name: {"network": "front", "ipv4": ip[4], "ipv6": ip[6], "publish": [
        f"{port}:{ctr_port}/{proto}" for port, proto, ctr, ctr_port in PUBLISHED if ctr == name]}
        for name, ip in CONTAINERS.items()}
    return {"version": 1, "endpoints": endpoints,
            "networks": {"front": {"bridge": "br-front", "subnets": list(SUBNETS.values())}},
            "user_rules": [{"iptables": rule, "family": fam} for fam, rule in rules]}


@pytest.mark.parametrize("case", list(CASES))
def test_translation_behaves_like_iptables(world: World, case: str) -> None:
    rules, blocked = CASES[case]
    lab, name = world.lab, f"case{list(CASES).index(case)}"
    try:
        for v, tool in ((4, "iptables-restore"), (6, "ip6tables-restore")):
            lab.run(lab.host, tool, input=restore_text(rules, v))
        by_iptables = world.outcomes()
        world.flush()
        path = write_config(world.tmp, nftnet_config(rules), f"{name}.yaml")
        nftnet(lab, "apply", "-f", str(path), state_dir=world.tmp / name)
        by_nftnet = world.outcomes()
    finally:
        world.flush()
    assert by_nftnet == by_iptables
    assert {probe for probe, seen in by_iptables.items() if "Error" in seen} == blocked
