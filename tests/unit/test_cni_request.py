"""nftnet-cni's parsing of the network config and prevResult into a Request."""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nftnet.drivers.cni import spec
from nftnet.drivers.cni.engine import Attachment, Endpoint, Network, PortMap
from nftnet.drivers.cni.request import decode, parse_request
from nftnet.drivers.cni.spec import CniError, Env

ADD = Env(command="ADD", container_id="c1", netns="/run/netns/c1", ifname="eth0",
          path=("/usr/lib/cni",))


def bridge_result(bridge: str = "cni-front", veth: str = "veth0a1b2c3d", ifname: str = "eth0",
                  ips: list[tuple[str, str | None]] | None = None,
                  version: str = "1.0.0") -> dict[str, Any]:
    """A result in the shape Debian's bridge plugin (1.1.1) prints: bridge, veth, container."""
    ips = [("172.31.50.2/24", "172.31.50.1"), ("fd00:50::2/64", "fd00:50::1")] \
        if ips is None else ips
    entries = []
    for address, gateway in ips:
        entry: dict[str, Any] = {"interface": 2, "address": address}
        if version == "0.4.0":
            entry = {"version": "6" if ":" in address else "4", **entry}
        if gateway:
            entry["gateway"] = gateway
        entries.append(entry)
    return {"cniVersion": version,
            "interfaces": [{"name": bridge, "mac": "16:1c:20:32:2f:78"},
                           {"name": veth, "mac": "42:e8:66:f4:0d:f1"},
                           {"name": ifname, "mac": "aa:39:87:ff:db:f6",
                            "sandbox": "/run/netns/c1"}],
            "ips": entries, "dns": {}}


def config(prev: dict[str, Any] | None = None, **keys: Any) -> dict[str, Any]:
    conf: dict[str, Any] = {"cniVersion": "1.0.0", "name": "front", "type": "nftnet-cni",
                            "capabilities": {"portMappings": True}, **keys}
    conf["prevResult"] = bridge_result() if prev is None else prev
    return conf


def parse(conf: dict[str, Any], env: Env = ADD) -> Any:
    return parse_request(env, conf, conf.get("cniVersion", "1.0.0"))


def problem(conf: dict[str, Any], env: Env = ADD) -> CniError:
    with pytest.raises(CniError) as e:
        parse(conf, env)
    return e.value


# -- what ADD gets from the bridge plugin's result ------------------------------------------

@pytest.mark.parametrize("version", ["0.4.0", "1.0.0"])
def test_the_bridge_plugins_result_gives_network_and_endpoint(version: str) -> None:
    conf = {**config(bridge_result(version=version)), "cniVersion": version}
    request = parse(conf)
    assert request.network == Network(
        name="front", bridge="cni-front", subnet4=IPv4Network("172.31.50.0/24"),
        subnet6=IPv6Network("fd00:50::/64"), gateway4=IPv4Address("172.31.50.1"),
        gateway6=IPv6Address("fd00:50::1"))
    assert request.endpoint == Endpoint(
        attachment=Attachment("c1", "eth0"), netns="/run/netns/c1", host_ifname="veth0a1b2c3d",
        ipv4=IPv4Address("172.31.50.2"), ipv6=IPv6Address("fd00:50::2"))
    assert request.attachment == Attachment("c1", "eth0")
    assert request.prev_result is conf["prevResult"]
    assert request.ports == () and request.state_dir is None and request.version == version


def test_options_state_dir_and_ports_are_read() -> None:
    request = parse(config(icc=False, masquerade=False, internal=True, stateDir="/run/nft",
                           runtimeConfig={"portMappings": [
                               {"hostPort": 8080, "containerPort": 80, "protocol": "tcp",
                                "hostIP": "127.0.0.1"},
                               {"hostPort": 53, "containerPort": 5353, "protocol": "UDP"},
                               {"hostPort": 9000, "containerPort": 9000, "hostIP": ""},
                               {"hostPort": 9001, "containerPort": 9001, "protocol": "sctp",
                                "hostIP": "::"}]}))
    assert (request.network.icc, request.network.masquerade, request.network.internal) == \
        (False, False, True)
    assert request.state_dir == "/run/nft"
    assert request.ports == (PortMap(8080, 80, "tcp", IPv4Address("127.0.0.1")),
                             PortMap(53, 5353, "udp", None), PortMap(9000, 9000, "tcp", None),
                             PortMap(9001, 9001, "sctp", IPv6Address("::")))


def test_one_family_and_no_gateway() -> None:
    request = parse(config(bridge_result(ips=[("10.88.0.7/16", None)])))
    assert request.network.subnet4 == IPv4Network("10.88.0.0/16")
    assert request.network.subnet6 is None and request.network.gateway4 is None
    assert (request.endpoint.ipv4, request.endpoint.ipv6) == (IPv4Address("10.88.0.7"), None)


def test_ips_of_other_interfaces_are_not_the_containers() -> None:
    prev = bridge_result()
    prev["ips"] = [{"interface": 0, "address": "192.0.2.1/24"},  # the bridge's: not counted
                   prev["ips"][0],
                   {"address": "fd00:50::2/64"}]  # no index: an IPAM-style entry, counted
    request = parse(config(prev))
    assert request.endpoint.ipv4 == IPv4Address("172.31.50.2")
    assert request.endpoint.ipv6 == IPv6Address("fd00:50::2")


def test_the_bridge_key_tells_bridge_and_veth_apart() -> None:
    prev = bridge_result()
    prev["interfaces"][:2] = prev["interfaces"][1::-1]  # [veth, bridge, eth0]
    request = parse(config(prev, bridge="cni-front"))
    assert (request.network.bridge, request.endpoint.host_ifname) == ("cni-front", "veth0a1b2c3d")
    prev["interfaces"].insert(0, {"name": "dummy0"})
    prev["ips"] = [{**ip, "interface": 3} for ip in prev["ips"]]
    assert "bridge key" in problem(config(prev)).details
    assert "cannot tell" in problem(config(prev, bridge="cni-front")).details


def test_the_subnets_key_overrides_the_addresses_prefixes() -> None:
    request = parse(config(bridge_result(ips=[("172.31.50.2/32", None)]),
                           subnets=["172.31.50.0/24", "fd00:50::/64"]))
    assert request.network.subnet4 == IPv4Network("172.31.50.0/24")
    assert request.network.subnet6 == IPv6Network("fd00:50::/64")
    assert request.endpoint.ipv6 is None


@given(st.integers(1, 2**24 - 3), st.integers(8, 30), st.integers(1, 2**64 - 3),
       st.booleans(), st.booleans(), st.from_regex(r"[a-z][a-z0-9-]{0,14}", fullmatch=True),
       st.from_regex(r"veth[0-9a-f]{8}", fullmatch=True))
def test_what_is_extracted_is_what_the_result_says(host4: int, prefix: int, host6: int,
                                                   has4: bool, has6: bool, bridge: str,
                                                   veth: str) -> None:
    subnet4 = ip_network(f"10.0.0.0/{prefix}")
    subnet6 = ip_network("fd00:1:2:3::/64")
    address4 = subnet4[host4 % (subnet4.num_addresses - 2) + 1]
    address6 = subnet6[host6]
    ips = ([(f"{address4}/{prefix}", str(subnet4[-2]) if address4 != subnet4[-2] else None)]
           if has4 or not has6 else []) + ([(f"{address6}/64", None)] if has6 else [])
    request = parse(config(bridge_result(bridge=bridge, veth=veth, ips=ips)))
    assert (request.network.bridge, request.endpoint.host_ifname) == (bridge, veth)
    assert request.endpoint.ipv4 == (address4 if has4 or not has6 else None)
    assert request.endpoint.ipv6 == (address6 if has6 else None)
    assert request.network.subnet4 == (subnet4 if has4 or not has6 else None)
    assert request.network.subnet6 == (subnet6 if has6 else None)
    gateway = ips[0][1] if ips[0][0].startswith("10.") else None
    assert request.network.gateway4 == (ip_address(gateway) if gateway else None)


# -- what ADD refuses ----------------------------------------------------------------------

def without(d: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != key}


@pytest.mark.parametrize("prev, words", [
    ("missing", "chained plugin"),
    ([], "result object"),
    (without(bridge_result(), "interfaces"), "prevResult.interfaces"),
    ({**bridge_result(), "interfaces": [{"mac": "x"}]}, "interfaces[0]"),
    ({**bridge_result(), "interfaces": [{"name": "a/b"}]}, "interfaces[0]"),
    (bridge_result(ifname="net1"), "no interface eth0 in a sandbox"),
    ({**bridge_result(), "interfaces": bridge_result()["interfaces"][1:],
      "ips": [{"address": "10.0.0.2/8", "interface": 1}]}, "bridge and the veth"),
    ({**bridge_result(), "ips": "x"}, "prevResult.ips"),
    ({**bridge_result(), "ips": []}, "no address for eth0"),
    ({**bridge_result(), "ips": [{"address": "172.31.50.2"}, {"address": "x/24"}]}, "ips[1]"),
    ({**bridge_result(), "ips": [{"address": "10.0.0.2/8", "interface": 3}]}, "interface"),
    ({**bridge_result(), "ips": [{"address": "10.0.0.2/8", "interface": True}]}, "interface"),
    ({**bridge_result(), "ips": [{"address": "10.0.0.2/8", "version": "6"}]}, "one family"),
    ({**bridge_result(), "ips": [{"address": "10.0.0.2/8", "gateway": "::1"}]}, "one family"),
    (bridge_result(ips=[("10.0.0.2/8", None), ("10.0.0.3/8", None)]), "one IPv4 and one IPv6"),
    (bridge_result(ips=[("10.0.0.2/24", "10.0.1.1")]), "gateway 10.0.1.1"),
    (bridge_result(ips=[("10.0.0.2/24", "10.0.0.2")]), "gateway 10.0.0.2"),
])
def test_unusable_prev_results_are_code_7(prev: Any, words: str) -> None:
    conf = config() if prev == "missing" else config(prev)
    if prev == "missing":
        del conf["prevResult"]
    error = problem(conf)
    assert error.code == spec.INVALID_CONFIG and words in error.details, error.details


@pytest.mark.parametrize("keys, words", [
    ({"icc": "no"}, "icc: must be true or false"),
    ({"internal": 0}, "internal: must be true or false"),
    ({"stateDir": "rel/dir"}, "stateDir: must be an absolute path"),
    ({"stateDir": 5}, "stateDir"),
    ({"bridge": "x" * 16}, "bridge:"),
    ({"subnets": "10.0.0.0/8"}, "subnets: must be a list"),
    ({"subnets": ["10.0.0.1/8"]}, "subnets[0]: 10.0.0.1/8 has host bits set"),
    ({"subnets": ["10.0.0.0/8", "11.0.0.0/8"]}, "subnets: nftnet holds at most one"),
    ({"subnets": ["192.168.0.0/16"]}, "172.31.50.2 is in none of the subnets 192.168.0.0/16"),
    ({"runtimeConfig": {"portMappings": {}}}, "portMappings: must be a list"),
    ({"runtimeConfig": {"portMappings": [8080]}}, "portMappings[0]: must be an object"),
])
def test_invalid_own_keys_are_code_7_naming_them(keys: dict[str, Any], words: str) -> None:
    error = problem(config(**keys))
    assert error.code == spec.INVALID_CONFIG and words in error.details, error.details


def test_every_invalid_port_mapping_is_reported_at_once() -> None:
    error = problem(config(runtimeConfig={"portMappings": [
        {"hostPort": 0, "containerPort": 80}, {"hostPort": 65536, "containerPort": 80},
        {"hostPort": "80", "containerPort": 80}, {"hostPort": True, "containerPort": 80},
        {"hostPort": 80}, {"hostPort": 80, "containerPort": 80, "protocol": "icmp"},
        {"hostPort": 80, "containerPort": 80, "hostIP": "localhost"},
        {"hostPort": 80, "containerPort": 80, "protocol": 6}]}))
    assert error.code == spec.INVALID_CONFIG
    for path in ["[0].hostPort", "[1].hostPort", "[2].hostPort", "[3].hostPort",
                 "[4].containerPort", "[5].protocol", "[6].hostIP", "[7].protocol"]:
        assert f"runtimeConfig.portMappings{path}" in error.details, path


@pytest.mark.parametrize("key, value, hint", [
    ("ipMasq", True, "masquerade"), ("ipam", {"type": "host-local"}, "bridge plugin"),
    ("icc_", False, "own keys: bridge, icc"),
])
def test_fields_nftnet_cni_does_not_take_are_code_2_with_key_and_value(
        key: str, value: Any, hint: str) -> None:
    error = problem(config(**{key: value}))
    assert error.code == spec.UNSUPPORTED_FIELD
    assert f"{key!r}: {json.dumps(value)}" in error.msg and hint in error.details


@pytest.mark.parametrize("name", [None, "", "-front", "front net", 7])
def test_invalid_network_names_are_code_7(name: Any) -> None:
    assert problem(config(name=name)).code == spec.INVALID_CONFIG


def test_the_contrib_conflist_is_taken() -> None:
    chain = json.loads((Path(__file__).resolve().parents[2] / "contrib" / "cni" /
                        "nftnet.conflist").read_text())
    bridge, mine = chain["plugins"]
    assert (bridge["ipMasq"], bridge["isGateway"], bridge["hairpinMode"]) == (False, True, True)
    request = parse(config(**mine, name=chain["name"], cniVersion=chain["cniVersion"]))
    assert (request.network.icc, request.network.masquerade, request.network.internal) == \
        (True, True, False)


def test_spec_keys_are_taken() -> None:
    parse(config(args={"labels": {"a": "b"}}, dns={"nameservers": ["10.0.0.1"]},
                 cniVersions=["1.0.0"], runtimeConfig={"portMappings": [], "bandwidth": {}}))


# -- DEL, GC, STATUS -----------------------------------------------------------------------

DEL = Env(command="DEL", container_id="c1", ifname="eth0", path=("/x",))


@pytest.mark.parametrize("keys", [
    {}, {"prevResult": None}, {"prevResult": "garbage", "whatever": 1, "icc": "no"},
    {"runtimeConfig": {"portMappings": "garbage"}},
])
def test_del_needs_no_prev_result_and_reads_no_own_key(keys: dict[str, Any]) -> None:
    conf = {"cniVersion": "1.0.0", "name": "front", "type": "nftnet-cni", **keys}
    request = parse(conf, DEL)
    assert request.attachment == Attachment("c1", "eth0")
    assert request.network is None and request.endpoint is None


def test_del_still_checks_the_state_dir() -> None:
    assert problem({"cniVersion": "1.0.0", "name": "front", "stateDir": "x"}, DEL).code == \
        spec.INVALID_CONFIG


GC = Env(command="GC", path=("/x",))


@pytest.mark.parametrize("key", ["cni.dev/valid-attachments", "cni.dev/attachments"])
def test_gc_reads_the_valid_attachments(key: str) -> None:
    request = parse({"cniVersion": "1.1.0", "name": "front", "type": "nftnet-cni", key: [
        {"containerID": "c1", "ifname": "eth0"}, {"containerID": "c2", "ifname": "net1"}]}, GC)
    assert request.valid == {Attachment("c1", "eth0"), Attachment("c2", "net1")}


@pytest.mark.parametrize("valid", [None, "all", [{"containerID": "c1"}],
                                   [{"containerID": "", "ifname": "eth0"}]])
def test_gc_without_a_valid_list_is_code_7(valid: Any) -> None:
    conf: dict[str, Any] = {"cniVersion": "1.1.0", "name": "front", "type": "nftnet-cni"}
    if valid is not None:
        conf["cni.dev/valid-attachments"] = valid
    assert problem(conf, GC).code == spec.INVALID_CONFIG


def test_gc_with_an_empty_list_keeps_nothing() -> None:
    conf = {"cniVersion": "1.1.0", "name": "front", "cni.dev/valid-attachments": []}
    assert parse(conf, GC).valid == frozenset()


def test_status_needs_only_the_network() -> None:
    request = parse({"cniVersion": "1.1.0", "name": "front", "type": "nftnet-cni"},
                    Env(command="STATUS"))
    assert (request.command, request.network_name) == ("STATUS", "front")


# -- decoding ------------------------------------------------------------------------------

@pytest.mark.parametrize("data", [b"", b"{", b"\xff\xfe", b"[]", b'"x"', b"null"])
def test_what_is_no_json_object_is_code_6(data: bytes) -> None:
    with pytest.raises(CniError) as e:
        decode(data)
    assert e.value.code == spec.DECODING_FAILURE
