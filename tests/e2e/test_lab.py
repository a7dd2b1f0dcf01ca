"""Self-test of the Lab harness: plain routing between namespaces, no nftnet involved.

If these fail, end-to-end failures elsewhere say nothing about nftnet.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.lab import Lab, LabError, list_netns, unavailable_reason

pytestmark = pytest.mark.e2e

A4, B4, GW4 = "10.55.0.2", "10.55.0.3", "10.55.0.1"
A6, B6, GW6 = "fd55::2", "fd55::3", "fd55::1"
PORT = 8080
CLOSED = 8081
PROTOS = ("tcp", "udp")


@dataclass
class Net:
    """A routed topology: containers a and b on bridge br-t, the LAN routing to them via host."""

    lab: Lab
    a: str
    b: str


def build(lab: Lab, servers: tuple[str, ...] = ("b", "lan", "host")) -> Net:
    """Forwarding host, bridge br-t, two containers, LAN routes, servers in `servers`."""
    lab.sysctl(lab.host, "net.ipv4.ip_forward", "1")
    lab.sysctl(lab.host, "net.ipv6.conf.all.forwarding", "1")
    lab.bridge("br-t", [f"{GW4}/24", f"{GW6}/64"])
    a = lab.container("a", "br-t", A4, GW4, A6, GW6)
    b = lab.container("b", "br-t", B4, GW4, B6, GW6)
    lab.lan_route("10.55.0.0/24")
    lab.lan_route("fd55::/64")
    where = {"b": b, "lan": lab.lan, "host": lab.host}
    for name in servers:
        for proto in PROTOS:
            lab.serve(where[name], PORT, proto)
    return Net(lab, a, b)


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    """One shared topology for the read-only traffic checks (keeps the suite fast)."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    with Lab() as lab:
        yield build(lab)


@pytest.mark.parametrize("proto", PROTOS)
@pytest.mark.parametrize(("dst", "src"), [(B4, A4), (B6, A6)])
def test_container_to_container_reports_source(net: Net, proto: str, dst: str, src: str) -> None:
    assert net.lab.probe(net.a, dst, PORT, proto) == src, net.lab.last_probe_error


@pytest.mark.parametrize("proto", PROTOS)
@pytest.mark.parametrize(("dst", "src"), [(Lab.LAN_IP4, A4), (Lab.LAN_IP6, A6)])
def test_container_to_lan_is_routed_without_nat(net: Net, proto: str, dst: str, src: str) -> None:
    assert net.lab.probe(net.a, dst, PORT, proto) == src, net.lab.last_probe_error


@pytest.mark.parametrize(("dst", "src"), [(B4, Lab.LAN_IP4), (B6, Lab.LAN_IP6)])
def test_lan_to_container(net: Net, dst: str, src: str) -> None:
    assert net.lab.probe(net.lab.lan, dst, PORT) == src, net.lab.last_probe_error


@pytest.mark.parametrize("dst", [Lab.HOST_IP4, Lab.HOST_IP6])
def test_udp_reply_leaves_from_the_probed_address(net: Net, dst: str) -> None:
    """The host owns several addresses; a reply from the wrong one would be discarded."""
    src = A6 if ":" in dst else A4
    assert net.lab.probe(net.a, dst, PORT, "udp") == src, net.lab.last_probe_error


def test_probe_binds_requested_source(net: Net) -> None:
    assert net.lab.probe(net.lab.host, Lab.LAN_IP4, PORT, src=GW4) == GW4
    assert net.lab.probe(net.lab.host, Lab.LAN_IP6, PORT, "udp", src=GW6) == GW6


@pytest.mark.parametrize("proto", PROTOS)
@pytest.mark.parametrize("dst", [B4, B6])
def test_closed_port_returns_none_quickly(net: Net, proto: str, dst: str) -> None:
    started = time.monotonic()
    assert net.lab.probe(net.a, dst, CLOSED, proto, timeout=3) is None
    assert time.monotonic() - started < 1.0, net.lab.last_probe_error
    assert "refused" in net.lab.last_probe_error.lower()


def test_sysctl_reads_and_writes_inside_namespace(net: Net) -> None:
    assert net.lab.sysctl(net.lab.host, "net.ipv4.ip_forward") == "1"
    assert net.lab.sysctl(net.lab.lan, "net/ipv4/ip_forward") == "0"
    assert net.lab.sysctl(net.a, "net.ipv4.conf.all.rp_filter", "2") == "2"


def test_run_failure_carries_stderr(net: Net) -> None:
    with pytest.raises(LabError, match=r"(?i)cannot find|does not exist"):
        net.lab.run(net.lab.host, "ip", "link", "show", "dev", "nosuchdev")
    assert net.lab.run(net.lab.host, "false", check=False).returncode == 1


def test_sctp_like_tcp_or_skipped(net: Net) -> None:
    net.lab.serve(net.b, PORT, "sctp")  # skips here if the kernel has no SCTP
    assert net.lab.probe(net.a, B4, PORT, "sctp") == A4, net.lab.last_probe_error


@pytest.mark.parametrize("proto", PROTOS)
def test_dropped_probe_returns_within_timeout(lab: Lab, proto: str) -> None:
    net = build(lab, servers=("lan",))
    assert lab.probe(net.a, Lab.LAN_IP4, PORT, proto) == A4, lab.last_probe_error
    chain = "type filter hook forward priority 0; policy drop;"
    lab.run(lab.host, "nft", "-f", "-", input=f"table inet t {{ chain f {{ {chain} }}; }}")
    started = time.monotonic()
    assert lab.probe(net.a, Lab.LAN_IP4, PORT, proto, timeout=0.5) is None
    assert time.monotonic() - started < 1.5, lab.last_probe_error
    assert "timed out" in lab.last_probe_error or "no reply" in lab.last_probe_error


def test_container_creates_missing_bridge_with_hairpin(lab: Lab) -> None:
    lab.container("c", "br-new", "10.66.0.2", None, "fd66::2")
    details = lab.run(lab.host, "ip", "-d", "link", "show", "master", "br-new").stdout
    assert "hairpin on" in details
    assert lab.run(lab.host, "ip", "link", "show", "dev", "br-new").returncode == 0


def test_names_are_prefixed_and_short(lab: Lab) -> None:
    ns = lab.container("a-very-long-container-name", "br-t", "10.55.0.9", None)
    assert all(name.startswith(lab.prefix) for name in (lab.host, lab.lan, ns))
    links = lab.run(lab.host, "ip", "-o", "link").stdout
    assert all(len(line.split(": ")[1].split("@")[0]) <= 15 for line in links.splitlines())


def test_cleanup_after_exit_kills_servers_and_namespaces() -> None:
    skip_unless_available()
    with Lab() as lab:
        net = build(lab, servers=("lan",))
        procs = [server.proc for server in lab.servers]
        assert lab.netns_count_with_prefix() == 4, net
    assert lab.netns_count_with_prefix() == 0
    assert all(proc.poll() is not None for proc in procs)


def test_cleanup_when_body_raises() -> None:
    skip_unless_available()
    lab = Lab()
    with pytest.raises(RuntimeError, match="boom"), lab:
        lab.container("a", "br-t", A4, GW4)
        lab.serve(lab.lan, PORT)
        raise RuntimeError("boom")
    assert lab.netns_count_with_prefix() == 0
    assert not lab.servers


def test_cleanup_when_setup_fails_half_way(monkeypatch: pytest.MonkeyPatch) -> None:
    skip_unless_available()
    original = Lab._configure_eth0

    def fail_on_lan(self: Lab, ns: str, addrs: list[str]) -> None:
        if ns == self.lan:
            raise LabError("injected")
        original(self, ns, addrs)

    monkeypatch.setattr(Lab, "_configure_eth0", fail_on_lan)
    lab = Lab()
    with pytest.raises(LabError, match="injected"), lab:
        pass
    assert lab.netns_count_with_prefix() == 0


def test_parallel_labs_do_not_collide() -> None:
    skip_unless_available()
    with Lab() as one, Lab() as two:
        assert one.prefix != two.prefix
        assert one.probe(one.lan, Lab.HOST_IP4, CLOSED) is None  # both topologies work
        assert two.probe(two.lan, Lab.HOST_IP4, CLOSED) is None
        assert "refused" in one.last_probe_error.lower()
    assert not [ns for ns in list_netns() if ns.startswith((one.prefix, two.prefix))]


def skip_unless_available() -> None:
    """Skip tests that build their own Lab where namespaces cannot be made."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
