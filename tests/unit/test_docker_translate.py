"""Docker inspect objects -> nftnet networks and endpoints: golden tests on the real Engine API
data of the reference captures (checked against the DNAT rules Docker itself wrote), hand-made
variants of each option, and properties over generated inspect objects."""

from __future__ import annotations

import json
import re
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nftnet.config.checks import check_config
from nftnet.config.dump import dump_config
from nftnet.config.load import parse_config
from nftnet.config.model import Config
from nftnet.config.schema import NAME
from nftnet.drivers.docker.translate import (
    DockerPort,
    Snapshot,
    bridge_name,
    endpoint_name,
    go_bool,
    network_names,
    prepared_endpoint,
    snapshot,
    translate_container,
    translate_networks,
)


def reference() -> Path:
    """shared/reference/docker-20.10 beside the checkout (CI) or above a worktree."""
    here = Path(__file__).resolve()
    found = [p / "shared/reference/docker-20.10" for p in here.parents]
    return next((p for p in found if p.is_dir()), found[3])


REF = reference()
SCENARIOS = sorted(p.name for p in REF.glob("[0-9]*")) if REF.is_dir() else []
needs_ref = pytest.mark.skipif(not SCENARIOS, reason=f"no reference captures in {REF}")
# `-A DOCKER [-d HOST/32] ! -i BRIDGE -p PROTO -m PROTO --dport PORT -j DNAT --to-destination`
DNAT = re.compile(r"^-A DOCKER (?:-d (?P<host>\S+)/32 )?! -i (?P<bridge>\S+) -p (?P<proto>\w+) "
                  r"-m \w+ --dport (?P<port>\d+) -j DNAT --to-destination (?P<to>\S+)$", re.M)


def load(scenario: str) -> tuple[list[Any], list[Any]]:
    d = REF / scenario
    containers = d / "containers.json"
    return (json.loads((d / "networks.json").read_text()),
            json.loads(containers.read_text()) if containers.exists() else [])


def ref_snapshot(scenario: str, **kw: Any) -> Snapshot:
    return snapshot(*load(scenario), **kw)


def by_name(snap: Snapshot) -> dict[str, Any]:
    return {n.docker_name: n for n in snap.networks}


@needs_ref
def test_reference_networks_have_dockers_meaning() -> None:
    nets = by_name(ref_snapshot("09-docker-user-rules"))
    assert {k: n.bridge for k, n in nets.items()} == {
        "appnet": "br-fdf17aa500f4", "backend": "br-a4773736dfc6", "bridge": "docker0",
        "named": "mybr0", "noicc": "br-566758498b10", "nomasq": "br-6cc25e07d740"}
    assert [k for k, n in nets.items() if not n.icc] == ["noicc"]
    assert [k for k, n in nets.items() if not n.masquerade] == ["nomasq"]
    assert [k for k, n in nets.items() if n.internal] == ["backend"]
    assert {k: str(n.host_binding_ipv4) for k, n in nets.items()
            if str(n.host_binding_ipv4) != "0.0.0.0"} == {"named": "127.0.0.1"}
    assert [k for k, n in nets.items() if n.default] == ["bridge"]
    assert {n.mtu for n in nets.values()} == {1500}
    assert all(n.subnet6 is None and not n.enable_ipv6 for n in nets.values())
    assert {k: n.name for k, n in nets.items()} == {k: k for k in nets}
    skipped = ref_snapshot("09-docker-user-rules").skipped
    assert {(s.name, s.reason) for s in skipped if s.kind == "network"} == {
        ("host", "driver host: not a bridge network"),
        ("none", "driver null: not a bridge network")}


@needs_ref
def test_gateway_absent_is_what_docker_fills_in_after_a_restart() -> None:
    """09 has no Gateway for user networks; after the restart (10) Docker lists the address it
    had given the bridge. The translation of 09 must already know it."""
    before, after = by_name(ref_snapshot("09-docker-user-rules")), \
        by_name(ref_snapshot("10-after-restart-user-rules-kept"))
    raw = {n["Name"]: n for n in load("09-docker-user-rules")[0]}
    assert not raw["appnet"]["IPAM"]["Config"][0].get("Gateway")
    assert {k: n.gateway4 for k, n in before.items()} == {k: n.gateway4 for k, n in after.items()}
    assert before["appnet"].gateway4 == IPv4Address("172.25.0.1")


@needs_ref
def test_default_bridge_masquerades_although_iptables_false_reports_it_off() -> None:
    raw = {n["Name"]: n for n in load("12-iptables-false")[0]}
    assert raw["bridge"]["Options"]["com.docker.network.bridge.enable_ip_masquerade"] == "false"
    assert by_name(ref_snapshot("12-iptables-false"))["bridge"].masquerade is True
    off = ref_snapshot("12-iptables-false", default_bridge_masquerade=False)
    assert by_name(off)["bridge"].masquerade is False


def docker_dnat(scenario: str) -> set[tuple[str, str | None, str, int, str, int]]:
    """(bridge, host address, proto, host port, container address, port) of Docker's DNATs."""
    text = (REF / scenario / "iptables-save.txt").read_text()
    out = set()
    for m in DNAT.finditer(text):
        addr, _, port = m["to"].rpartition(":")
        out.add((m["bridge"], m["host"], m["proto"], int(m["port"]), addr, int(port)))
    return out


def translated_dnat(snap: Snapshot) -> set[tuple[str, str | None, str, int, str, int]]:
    bridges = {n.id: n.bridge for n in snap.networks}
    return {(bridges[ep.network_id], None if p.host_ip is None else str(p.host_ip), p.proto,
             p.host_port, str(ep.ipv4), p.container_port)
            for ep in snap.endpoints for p in ep.ports if p.family == 4}


@needs_ref
@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if (REF / s / "containers.json")
                                      .exists()] or ["none"])
def test_ports_are_where_docker_dnats_them(scenario: str) -> None:
    """Docker 20.10 with iptables wrote one DNAT per published IPv4 port; the translation of
    its inspect data must publish exactly those, on the same container address (09: web on
    appnet and bridge gets them on appnet, its gateway endpoint)."""
    snap = ref_snapshot(scenario)
    assert translated_dnat(snap) == docker_dnat(scenario)
    assert not [s for s in snap.skipped if s.kind != "network"]


@needs_ref
def test_web_on_two_networks() -> None:
    snap = ref_snapshot("09-docker-user-rules")
    web = next(c for c in snap.containers if c.name == "web")
    assert [(e.name, str(e.ipv4), bool(e.ports)) for e in web.endpoints] == sorted(
        [("web.appnet", "172.25.0.3", True), ("web.bridge", "172.17.0.2", False)],
        key=lambda t: next(e.network_id for e in web.endpoints if e.name == t[0]))
    carrier = next(e for e in web.endpoints if e.ports)
    # Docker lists 8080 on 0.0.0.0 and ::; appnet has no IPv6, so only IPv4 is forwarded.
    assert [p.publish for p in carrier.ports] == ["0.0.0.0:8080:80/tcp"]
    assert web.running and web.pid > 0 and web.pending == ()


@needs_ref
@pytest.mark.parametrize("scenario", SCENARIOS or ["none"])
def test_reference_translates_to_a_valid_nftnet_config(scenario: str) -> None:
    """What the translation gives nftnet passes nftnet's own validation and cross-checks."""
    snap = ref_snapshot(scenario)
    config = Config({n.name: n.as_network() for n in snap.networks},
                    {e.name: e.as_endpoint() for e in snap.endpoints})
    assert check_config(config) == []
    assert parse_config(json.dumps(dump_config(config))) == config


# --- hand-made variants -------------------------------------------------------------------

NID = "ab" * 32


def network(**over: Any) -> dict[str, Any]:
    base = {"Name": "front", "Id": NID, "Driver": "bridge", "EnableIPv6": False,
            "Internal": False, "IPAM": {"Config": [{"Subnet": "172.30.1.0/24"}]}, "Options": {}}
    return {**base, **over}


def one(net: dict[str, Any], **kw: Any) -> Any:
    nets, skipped = translate_networks([net], **kw)
    assert not skipped, skipped
    return nets[net["Id"]]


def skip_reason(net: dict[str, Any]) -> str:
    nets, skipped = translate_networks([net])
    assert not nets and len(skipped) == 1
    return skipped[0].reason


def test_defaults_of_a_user_network() -> None:
    n = one(network())
    assert (n.bridge, n.name, n.icc, n.masquerade, n.internal, n.mtu) == \
        (f"br-{NID[:12]}", "front", True, True, False, 1500)
    assert (str(n.subnet4), str(n.gateway4), n.subnet6, n.gateway6) == \
        ("172.30.1.0/24", "172.30.1.1", None, None)
    assert n.host_binding_ipv4 == IPv4Address("0.0.0.0") and not n.default


@pytest.mark.parametrize(("ip_range", "gateway"), [
    ("172.30.1.128/25", "172.30.1.128"),  # measured: dockerd gave the bridge .128
    ("172.30.1.0/25", "172.30.1.1"),  # measured: the subnet's own address is never given
])
def test_gateway_follows_the_ip_range(ip_range: str, gateway: str) -> None:
    n = one(network(IPAM={"Config": [{"Subnet": "172.30.1.0/24", "IPRange": ip_range}]}))
    assert str(n.gateway4) == gateway


def test_options_in_go_spellings() -> None:
    opts = {"com.docker.network.bridge.enable_icc": "0",
            "com.docker.network.bridge.enable_ip_masquerade": "F",
            "com.docker.network.bridge.host_binding_ipv4": "192.168.77.1",
            "com.docker.network.bridge.name": "front0",
            "com.docker.network.driver.mtu": "1400"}
    n = one(network(Options=opts, Internal=True))
    assert (n.bridge, n.icc, n.masquerade, n.internal, str(n.host_binding_ipv4), n.mtu) == \
        ("front0", False, False, True, "192.168.77.1", 1400)
    assert go_bool("TRUE", "x") and not go_bool("false", "x")


def test_ipv6_counts_only_when_enabled() -> None:
    ipam = {"Config": [{"Subnet": "172.30.1.0/24"}, {"Subnet": "fd00:1::/64"}]}
    assert one(network(IPAM=ipam)).subnet6 is None
    n = one(network(IPAM=ipam, EnableIPv6=True))
    assert (str(n.subnet6), str(n.gateway6), n.enable_ipv6) == ("fd00:1::/64", "fd00:1::1", True)


def test_default_network_without_the_name_option_is_docker0() -> None:
    net = network(Name="bridge", Options={"com.docker.network.bridge.default_bridge": "true"})
    assert bridge_name(net) == "docker0" and one(net).default


@pytest.mark.parametrize(("over", "reason"), [
    ({"IPAM": {"Config": [{"Subnet": "172.30.1.0/24"}, {"Subnet": "172.30.2.0/24"}]}},
     "IPAM.Config[1]: a second IPv4 subnet (172.30.2.0/24); nftnet holds one subnet per family"),
    ({"IPAM": {"Config": []}}, "IPAM.Config: no subnet"),
    ({"Options": {"com.docker.network.bridge.name": "a-bridge-name-too-long"}},
     "bridge: interface name 'a-bridge-name-too-long' must be 1-15 characters"),
    ({"Options": {"com.docker.network.bridge.enable_icc": "yes"}},
     "com.docker.network.bridge.enable_icc: 'yes' is not a boolean"),
    ({"Options": {"com.docker.network.driver.mtu": "9x"}},
     "com.docker.network.driver.mtu: '9x' is not a number"),
    ({"IPAM": {"Config": [{"Subnet": "172.30.1.0/24", "Gateway": "10.0.0.1"}]}},
     "IPAM.Config[0]: gateway 10.0.0.1 is outside 172.30.1.0/24"),
    ({"IPAM": {"Config": [{"Gateway": "10.0.0.1"}]}},
     "unexpected inspect data: no field 'Subnet'"),
])
def test_networks_nftnet_cannot_hold_are_skipped_with_the_reason(over: dict[str, Any],
                                                                 reason: str) -> None:
    assert skip_reason(network(**over)) == reason


def test_duplicate_and_invalid_names() -> None:
    a, b, c = network(), network(Id="cd" * 32), network(Id="ef" * 32, Name="-odd")
    assert network_names([a, b, c, network(Id="01" * 32, Driver="host")]) == {
        a["Id"]: f"front.{'ab' * 6}", b["Id"]: f"front.{'cd' * 6}", c["Id"]: "ef" * 6}


# --- containers -------------------------------------------------------------------------

CID = "c0" * 32


def attach(net: dict[str, Any], ipv4: str = "", ipv6: str = "", **extra: Any) -> dict[str, Any]:
    return {"NetworkID": net["Id"], "IPAddress": ipv4, "IPPrefixLen": 24 if ipv4 else 0,
            "GlobalIPv6Address": ipv6, **extra}


def container(networks: dict[str, Any], ports: dict[str, Any] | None = None,
              running: bool = True, name: str = "/web", cid: str = CID) -> dict[str, Any]:
    return {"Id": cid, "Name": name, "State": {"Running": running, "Pid": 42 if running else 0},
            "NetworkSettings": {"Networks": networks, "Ports": ports or {}}}


def nets_of(*raw: dict[str, Any]) -> dict[str, Any]:
    nets, skipped = translate_networks(raw)
    assert not skipped
    return nets


FRONT = network()
BACK = network(Name="back", Id="bb" * 32, IPAM={"Config": [{"Subnet": "172.30.2.0/24"}]})
SIX = network(Name="zsix", Id="66" * 32, EnableIPv6=True, IPAM={"Config": [
    {"Subnet": "172.30.6.0/24"}, {"Subnet": "fd00:6::/64"}]})
INTERNAL = network(Name="aaa", Id="11" * 32, Internal=True,
                   IPAM={"Config": [{"Subnet": "172.30.9.0/24"}]})
WEB_PORTS = {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"},
                        {"HostIp": "::", "HostPort": "8080"}],
             "53/udp": [{"HostIp": "0.0.0.0", "HostPort": "32769"},
                        {"HostIp": "::", "HostPort": "32768"}],
             "5432/tcp": [{"HostIp": "127.0.0.1", "HostPort": "5432"}], "9/tcp": None}


def carrier(ctr: dict[str, Any], *raw: dict[str, Any]) -> str:
    translated, skipped = translate_container(ctr, nets_of(*raw))
    assert not skipped, skipped
    (ep,) = [e for e in translated.endpoints if e.ports]
    return ep.network


def test_ports_go_to_the_gateway_endpoint_as_measured_with_dockerd() -> None:
    """Measured with dockerd 20.10 and iptables on (the DNAT's destination): a container on
    rng, then aaa, then six (IPv6) has its ports on rng, then aaa (name order), then six
    (dual-stack first); after disconnecting six, on aaa again."""
    rng = network(Name="rng", Id="99" * 32, IPAM={"Config": [{"Subnet": "172.30.5.0/24"}]})
    aaa = network(Name="aaa", Id="aa" * 32, IPAM={"Config": [{"Subnet": "172.30.7.0/24"}]})
    six = network(Name="six", Id="66" * 32, EnableIPv6=True, IPAM={"Config": [
        {"Subnet": "172.30.6.0/24"}, {"Subnet": "fd00:30:6::/64"}]})
    on = {"rng": attach(rng, "172.30.5.2")}
    assert carrier(container(on, WEB_PORTS), rng, aaa, six) == "rng"
    on["aaa"] = attach(aaa, "172.30.7.2")
    assert carrier(container(on, WEB_PORTS), rng, aaa, six) == "aaa"
    on["six"] = attach(six, "172.30.6.2", "fd00:30:6::2")
    assert carrier(container(on, WEB_PORTS), rng, aaa, six) == "six"


def test_internal_networks_never_carry_ports_and_priority_wins() -> None:
    on = {"aaa": attach(INTERNAL, "172.30.9.2"), "front": attach(FRONT, "172.30.1.2")}
    assert carrier(container(on, WEB_PORTS), INTERNAL, FRONT) == "front"
    on["zsix"] = attach(SIX, "172.30.6.2", "fd00:6::2")
    assert carrier(container(on, WEB_PORTS), INTERNAL, FRONT, SIX) == "zsix"
    on["front"]["GwPriority"] = 10
    assert carrier(container(on, WEB_PORTS), INTERNAL, FRONT, SIX) == "front"


def test_ports_per_family_and_random_ports_kept_apart() -> None:
    ctr = container({"zsix": attach(SIX, "172.30.6.2", "fd00:6::2")}, WEB_PORTS)
    (ep,) = translate_container(ctr, nets_of(SIX))[0].endpoints
    assert [p.publish for p in ep.ports] == [
        "127.0.0.1:5432:5432/tcp", "0.0.0.0:8080:80/tcp", "0.0.0.0:32769:53/udp",
        "[::]:8080:80/tcp", "[::]:32768:53/udp"]
    assert ep.ports[1] == DockerPort(4, "tcp", 8080, None, 80)
    assert ep.name == "web.zsix" and str(ep.ipv6) == "fd00:6::2"
    # An IPv4-only endpoint: the :: bindings have nothing to forward to.
    (ep,) = translate_container(container({"front": attach(FRONT, "172.30.1.2")}, WEB_PORTS),
                                nets_of(FRONT))[0].endpoints
    assert {p.family for p in ep.ports} == {4}


def test_empty_host_ip_is_both_families() -> None:
    ctr = container({"zsix": attach(SIX, "172.30.6.2", "fd00:6::2")},
                    {"80": [{"HostIp": "", "HostPort": "80"}]})
    (ep,) = translate_container(ctr, nets_of(SIX))[0].endpoints
    assert [p.publish for p in ep.ports] == ["0.0.0.0:80:80/tcp", "[::]:80:80/tcp"]


def test_ports_nftnet_cannot_publish_are_skipped_with_the_reason() -> None:
    ports = {"80/tcp": [{"HostIp": "::1", "HostPort": "80"}], "81/icmp": [{"HostPort": "81"}],
             "82/tcp": [{"HostIp": "0.0.0.0", "HostPort": "0"}]}
    translated, skipped = translate_container(
        container({"zsix": attach(SIX, "172.30.6.2", "fd00:6::2")}, ports), nets_of(SIX))
    assert translated.endpoints[0].ports == ()
    reasons = sorted(s.reason for s in skipped)
    assert [r.partition("}: ")[0] for r in reasons] == [
        "80/tcp -> {'HostIp': '::1', 'HostPort': '80'", "81/icmp -> {'HostPort': '81'",
        "82/tcp -> {'HostIp': '0.0.0.0', 'HostPort': '0'"]
    assert "cannot publish on ::1" in reasons[0] and "HostPort: 0 is outside 1-65535" in \
        reasons[2] and "protocol 'icmp'" in reasons[1]


def test_networks_without_addresses_are_pending() -> None:
    """Connect events come before start, and after die inspect shows no addresses: such a
    network is pending (the daemon keeps what it applied), never an endpoint without one."""
    on = {"front": attach(FRONT), "back": attach(BACK, "172.30.2.7")}
    translated, _ = translate_container(container(on), nets_of(FRONT, BACK))
    assert translated.pending == (FRONT["Id"],)
    assert [e.name for e in translated.endpoints] == ["web.back"]
    stopped, _ = translate_container(container({"front": attach(FRONT)}, running=False),
                                     nets_of(FRONT))
    assert (stopped.running, stopped.pid, stopped.endpoints) == (False, 0, ())


def test_other_drivers_and_foreign_addresses() -> None:
    host = {"NetworkID": "77" * 32, "IPAddress": "", "GlobalIPv6Address": ""}
    on = {"host": host, "front": attach(FRONT, "10.9.9.9")}
    translated, skipped = translate_container(container(on, WEB_PORTS), nets_of(FRONT))
    assert translated.endpoints == () and translated.pending == ()
    assert [(s.kind, s.name) for s in skipped] == [("endpoint", "web on front"),
                                                   ("port", "web")]
    assert skipped[0].reason == \
        "IPAddress: 10.9.9.9 is not in the network's subnet (172.30.1.0/24)"


def test_a_malformed_container_is_skipped_not_raised() -> None:
    snap = snapshot([FRONT], [{"Name": "/x"}, container({"front": attach(FRONT, "172.30.1.2")})])
    assert [s.reason for s in snap.skipped] == ["unexpected inspect data: no field 'Id'"]
    assert [e.name for e in snap.endpoints] == ["web.front"]


def test_endpoint_names() -> None:
    assert endpoint_name("web", "front", CID) == "web.front"
    assert endpoint_name("a.b", "c", CID) == f"a.b.c.{CID[:12]}"
    assert endpoint_name("a", "b.c", CID) == "a.b.c"


# --- properties over generated inspect objects ---------------------------------------------

DOCKER_NAMES = st.from_regex(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,12}", fullmatch=True)
HEX_IDS = st.text("0123456789abcdef", min_size=64, max_size=64)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(DOCKER_NAMES, DOCKER_NAMES, HEX_IDS), min_size=2, max_size=30,
                unique_by=(lambda t: t[0], lambda t: t[2])))
def test_endpoint_names_are_valid_and_distinct(pairs: list[tuple[str, str, str]]) -> None:
    """Unique container names (Docker) on unique network names (nftnet): distinct endpoint
    names for every (container, network) pair, each a valid nftnet name."""
    containers = [(c, i) for c, _, i in pairs]
    networks = sorted({n for _, n, _ in pairs})
    names = [endpoint_name(c, n, i) for c, i in containers for n in networks]
    assert len(set(names)) == len(names)
    assert all(NAME.match(n) for n in names)


@st.composite
def bridge_networks(draw: st.DrawFn) -> list[dict[str, Any]]:
    """1-5 bridge networks with disjoint subnets, options present or absent, Go spellings."""
    keys = draw(st.lists(st.integers(1, 250), min_size=1, max_size=5, unique=True))
    out = []
    for k in keys:
        opts: dict[str, str] = {}
        for opt in ("enable_icc", "enable_ip_masquerade"):
            if draw(st.booleans()):
                opts[f"com.docker.network.bridge.{opt}"] = draw(st.sampled_from(
                    ["true", "false", "1", "0", "T", "F", "TRUE", "False"]))
        if draw(st.booleans()):
            opts["com.docker.network.bridge.name"] = f"b{k}"
        if draw(st.booleans()):
            opts["com.docker.network.driver.mtu"] = str(draw(st.integers(68, 9000)))
        v4 = ip_network(f"10.{k}.0.0/{draw(st.sampled_from([16, 24, 28]))}")
        conf: dict[str, str] = {"Subnet": str(v4)}
        if draw(st.booleans()):
            conf["Gateway"] = str(v4.broadcast_address - 1)
        elif draw(st.booleans()):
            conf["IPRange"] = str(next(v4.subnets(1 if v4.prefixlen < 28 else 0)))
        ipv6 = draw(st.booleans())
        configs = [conf] + ([{"Subnet": f"fd00:{k:x}::/64"}] if ipv6 else [])
        out.append({"Name": draw(DOCKER_NAMES), "Id": f"{k:02x}" * 32, "Driver": "bridge",
                    "EnableIPv6": ipv6, "Internal": draw(st.booleans()),
                    "IPAM": {"Config": configs}, "Options": opts})
    return out


@settings(max_examples=150, deadline=None)
@given(bridge_networks())
def test_generated_networks(raw: list[dict[str, Any]]) -> None:
    nets, skipped = translate_networks(raw)
    assert not skipped and len(nets) == len(raw)
    assert len({n.name for n in nets.values()}) == len(raw)
    for r in raw:
        n, opts = nets[r["Id"]], r["Options"]
        assert NAME.match(n.name)
        assert n.bridge == opts.get("com.docker.network.bridge.name", f"br-{r['Id'][:12]}")
        assert n.icc == (opts.get("com.docker.network.bridge.enable_icc", "true").lower()
                         in ("true", "1", "t"))
        assert n.gateway4 in n.subnet4 and n.gateway4 != n.subnet4.network_address
        conf = r["IPAM"]["Config"][0]
        if "Gateway" in conf:
            assert str(n.gateway4) == conf["Gateway"]
        if "IPRange" in conf:
            assert n.gateway4 in ip_network(conf["IPRange"])
        assert (n.subnet6 is not None) == r["EnableIPv6"] == (n.gateway6 is not None)


@st.composite
def attached_containers(draw: st.DrawFn) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    raw = draw(bridge_networks())
    on = {}
    for i, r in enumerate(raw):
        if draw(st.booleans()):
            v4 = ip_network(r["IPAM"]["Config"][0]["Subnet"])
            v6 = ip_network(r["IPAM"]["Config"][1]["Subnet"]) if r["EnableIPv6"] else None
            on[r["Name"] + str(i)] = attach(r, str(v4.network_address + 2),
                                            str(v6.network_address + 2) if v6 else "")
    ports = {f"{p}/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(p)},
                          {"HostIp": "::", "HostPort": str(p)}]
             for p in draw(st.lists(st.integers(1, 65535), max_size=3, unique=True))}
    return raw, container(on, ports)


@settings(max_examples=200, deadline=None)
@given(attached_containers())
def test_ports_land_on_one_endpoint_docker_would_choose(case: tuple[Any, Any]) -> None:
    raw, ctr = case
    nets = nets_of(*raw)
    translated, skipped = translate_container(ctr, nets)
    attached = ctr["NetworkSettings"]["Networks"]
    assert len(translated.endpoints) == len(attached)
    published = ctr["NetworkSettings"]["Ports"]
    holders = [e for e in translated.endpoints if e.ports]
    public = [e for e in translated.endpoints if not nets[e.network_id].internal]
    if not published or not public:
        assert holders == []
        assert bool(skipped) == bool(published)
        return
    (holder,) = holders
    assert not nets[holder.network_id].internal
    if any(e.ipv6 for e in public):
        assert holder.ipv6 is not None  # dual-stack first
        assert {p.family for p in holder.ports} == {4, 6}
    else:
        key = {e.network_id: k for k, e in
               ((k, next(e for e in translated.endpoints if e.network_id == a["NetworkID"]))
                for k, a in attached.items())}
        assert key[holder.network_id] == min(key[e.network_id] for e in public)
    assert len(holder.ports) == len(published) * (2 if holder.ipv6 else 1)
    assert all(ip_address(str(holder.ipv4)).version == 4 for _ in holder.ports)
    assert all(isinstance(p.host_ip, IPv4Address | IPv6Address | type(None))
               for p in holder.ports)


# --- prepared on connect, before the start ---------------------------------------------------


def connected(net: dict[str, Any], ipv4: str = "172.30.1.2/24", ipv6: str = "",
              cid: str = CID) -> dict[str, Any]:
    """The network's inspect on a container's connect (as dockerd 20.10 shows it then)."""
    return {**net, "Containers": {cid: {"Name": "web", "EndpointID": "e" * 64,
                                        "IPv4Address": ipv4, "IPv6Address": ipv6}}}


def created(bindings: dict[str, Any], networks: tuple[str, ...] = ("front",)) -> dict[str, Any]:
    """The container's inspect on create: the ports asked, no address, nothing bound yet."""
    return {"Id": CID, "Name": "/web", "State": {"Running": False, "Pid": 0},
            "HostConfig": {"PortBindings": bindings},
            "NetworkSettings": {"Networks": {n: {"NetworkID": ""} for n in networks},
                                "Ports": {}}}


def test_prepared_on_connect_is_what_the_start_shows_for_fixed_ports() -> None:
    """Measured: ``-p 40000:80 -p 40001-40002:81-82`` asks 40000, 40001, 40002 (ranges split);
    ``-p 127.0.0.1:40005:80/udp``; after the start Docker bound them on 0.0.0.0 (IPv4 only)."""
    net = one(FRONT)
    asked = {"80/tcp": [{"HostIp": "", "HostPort": "40000"}],
             "81/tcp": [{"HostIp": "", "HostPort": "40001"}],
             "82/udp": [{"HostIp": "127.0.0.1", "HostPort": "40005"}]}
    bound = {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "40000"}],
             "81/tcp": [{"HostIp": "0.0.0.0", "HostPort": "40001"}],
             "82/udp": [{"HostIp": "127.0.0.1", "HostPort": "40005"}]}
    early = prepared_endpoint(net, connected(FRONT), CID, created(asked))
    started, skipped = translate_container(container({"front": attach(FRONT, "172.30.1.2")},
                                                     bound), {NID: net})
    assert not skipped and early == started.endpoints[0]


def test_prepared_leaves_to_the_start_what_only_it_knows() -> None:
    net = one(FRONT)
    random = {"80/tcp": [{"HostIp": "", "HostPort": ""}], "81/tcp": [{"HostPort": "0"}],
              "82/tcp": [{"HostIp": "", "HostPort": "8000-8010"}],
              "83/tcp": [{"HostIp": "::", "HostPort": "8083"}]}  # no IPv6 address
    ep = prepared_endpoint(net, connected(FRONT), CID, created(random))
    assert ep is not None and ep.ipv4 == IPv4Address("172.30.1.2") and ep.ports == ()
    two = created({"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}, ("front", "back"))
    ep = prepared_endpoint(net, connected(FRONT), CID, two)  # which network carries them?
    assert ep is not None and ep.ports == ()
    ep = prepared_endpoint(net, connected(FRONT), CID, None)  # create's inspect lost the race
    assert ep is not None and ep.name == "web.front" and ep.ports == ()
    assert prepared_endpoint(net, connected(FRONT, ipv4=""), CID, None) is None
    assert prepared_endpoint(net, FRONT, CID, None) is None  # not listed: gone meanwhile
    internal = one(INTERNAL)
    ep = prepared_endpoint(internal, connected(INTERNAL, "172.30.9.2/24"), CID,
                           created({"80/tcp": [{"HostPort": "8080"}]}, ("aaa",)))
    assert ep is not None and ep.ports == ()
    with pytest.raises(ValueError, match="not in the network's subnet"):
        prepared_endpoint(net, connected(FRONT, "10.9.9.9/8"), CID, None)


def test_prepared_ports_take_the_networks_host_binding() -> None:
    raw = network(Options={"com.docker.network.bridge.host_binding_ipv4": "192.0.2.7"})
    ep = prepared_endpoint(one(raw), connected(raw), CID,
                           created({"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}))
    assert ep is not None and [p.publish for p in ep.ports] == ["192.0.2.7:8080:80/tcp"]
