"""The config contract: what loads, and that every bad input names its field."""

from __future__ import annotations

import json
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network

import pytest
import yaml

from nftnet.config.dump import dump_config
from nftnet.config.load import parse_config
from nftnet.config.model import Network
from nftnet.errors import ConfigError

BASE = {
    "version": 1,
    "networks": {"front": {"bridge": "br-front", "subnets": ["172.31.1.0/24", "fd00:1::/64"]}},
    "endpoints": {
        "web": {"network": "front", "ipv4": "172.31.1.10", "ipv6": "fd00:1::10",
                "publish": ["8080:80", "127.0.0.1:8081:81", "5353:53/udp",
                            "9000-9002:9000-9002", "[fd00::1]:8443:443/tcp"]},
    },
}


def load(data: dict) -> object:
    return parse_config(yaml.safe_dump(data), "c.yaml")


def errors_of(data: dict) -> str:
    with pytest.raises(ConfigError) as e:
        load(data)
    return str(e.value)


def with_(path: str, value: object, base: dict | None = None) -> dict:
    data = yaml.safe_load(yaml.safe_dump(base or BASE))
    *parents, last = path.split(".")
    node = data
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return data


def test_example_loads_with_defaults() -> None:
    config = load(BASE)
    net = config.networks["front"]
    assert net.subnet4 == IPv4Network("172.31.1.0/24")
    assert net.gateway4 == IPv4Address("172.31.1.1")
    assert str(net.gateway6) == "fd00:1::1"
    assert (net.icc, net.masquerade, net.internal) == (True, True, False)
    assert config.user_rules is None
    assert len(config.endpoints["web"].publish) == 5


def test_default_bridge_name_and_single_subnet() -> None:
    config = load({"version": 1, "networks": {"db": {"subnet": "10.9.0.0/24"}}})
    assert config.networks["db"].bridge == "nft-db"


def test_dump_round_trips() -> None:
    config = load(BASE)
    assert parse_config(yaml.safe_dump(dump_config(config))) == config


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("networks.front.subnets", ["172.31.1.5/24"], "networks.front.subnets[0]: '172.31.1.5/24' "
         "has host bits set"),
        ("networks.front.subnets", ["300.1.1.0/24"], "networks.front.subnets[0]: '300.1.1.0/24' is "
         "not a CIDR"),
        ("networks.front.bridge", "a-very-long-bridge", "networks.front.bridge: interface name"),
        ("networks.front.bridge", "br front", "networks.front.bridge: interface name"),
        ("networks.front.colour", "red", "networks.front.colour: unknown key"),
        ("colour", "red", "colour: unknown key"),
        ("version", 2, "version: must be 1"),
        ("endpoints.web.ipv4", "172.31.2.10", "endpoints.web.ipv4: 172.31.2.10 is outside"),
        ("endpoints.web.ipv4", "172.31.1.1", "endpoints.web.ipv4: 172.31.1.1 is the gateway"),
        ("endpoints.web.ipv4", "172.31.1.255", "endpoints.web.ipv4: 172.31.1.255 is the broadcast"),
        ("endpoints.web.ipv4", "172.31.1.0", "endpoints.web.ipv4: 172.31.1.0 is the network"),
        ("endpoints.web.network", "nope", "endpoints.web.network: no network 'nope'"),
        ("endpoints.web.publish.2", "70000:53/udp", "endpoints.web.publish[2]: host port 70000"),
        ("endpoints.web.publish.2", "0:53/udp", "endpoints.web.publish[2]: host port 0"),
        ("endpoints.web.publish.3", "9000-9002:9000-9001", "endpoints.web.publish[3]: host range"),
        ("endpoints.web.publish.2", "53/udp", "endpoints.web.publish[2]: "),
        ("endpoints.web.publish.2", "5353:53/icmp", "protocol 'icmp'"),
        ("endpoints.web.publish.4", "[::1]:8443:443", "cannot publish on ::1"),
        ("endpoints.web.publish.4", "8080:81", "endpoints.web.publish[4]: tcp port 8080"),
        ("endpoints.web.publish.4", "0.0.0.0:8081:81", "endpoints.web.publish[4]: tcp port 8081"),
    ],
)
def test_bad_input_names_the_field(path: str, value: object, expected: str) -> None:
    assert expected in errors_of(with_(path, value))


def test_overlapping_subnets() -> None:
    data = with_("networks.back", {"subnet": "172.31.0.0/16"})
    message = errors_of(data)
    assert "overlaps" in message
    assert "172.31.0.0/16" in message
    assert "172.31.1.0/24" in message


def test_duplicate_address_and_bridge() -> None:
    data = with_("endpoints.zz", {"network": "front", "ipv4": "172.31.1.10"})
    assert "endpoints.zz.ipv4: 172.31.1.10 is already used by endpoint web" in errors_of(data)
    data = with_("networks.back", {"bridge": "br-front", "subnet": "10.1.0.0/24"})
    assert "bridge br-front is already used by network" in errors_of(data)


def test_publishing_on_internal_network() -> None:
    data = with_("networks.front.internal", True)
    assert "endpoints.web.publish: network front is internal" in errors_of(data)


def test_errors_carry_line_numbers() -> None:
    text = "version: 1\nnetworks:\n  a:\n    subnet: 10.0.0.1/24\n"
    with pytest.raises(ConfigError) as e:
        parse_config(text, "c.yaml")
    assert "c.yaml:4: networks.a.subnet:" in str(e.value)


def test_every_problem_is_reported_at_once() -> None:
    data = with_("networks.front.colour", "red", with_("networks.front.bridge", "x" * 16))
    assert len(errors_of(data).splitlines()) == 2


@pytest.mark.parametrize(("subnet", "why"), [
    ("0.0.0.0/0", "default route"),
    ("::/0", "default route"),
    ("127.0.0.0/8", "loopback"),
    ("127.1.0.0/16", "loopback"),
    ("64.0.0.0/2", "loopback"),
    ("224.0.0.0/24", "multicast"),
    ("ff02::/16", "multicast"),
    ("0.0.0.0/8", "unspecified"),
    ("::/96", "unspecified"),
    ("169.254.1.0/24", "link-local"),
    ("fe80::/64", "link-local"),
    ("::ffff:172.31.9.0/120", "IPv4-mapped"),
    ("255.255.255.252/30", "limited broadcast"),
    ("fd00:9::%eth0/64", "scope"),
])
def test_subnets_a_network_cannot_hold_are_refused(subnet: str, why: str) -> None:
    """The bridge would get 0.0.0.1/0, a second route for 127/8, a multicast address."""
    message = errors_of(with_("networks.extra", {"subnet": subnet}))
    assert f"networks.extra.subnet: '{subnet}'" in message
    assert why in message


@pytest.mark.parametrize("subnet", ["10.0.0.0/8", "100.64.0.0/10", "192.168.0.0/16",
                                    "2001:db8::/32", "fd00:9::/64", "203.0.113.0/24"])
def test_ordinary_unicast_subnets_load(subnet: str) -> None:
    assert load(with_("networks.extra", {"subnet": subnet})).networks["extra"].bridge == \
        "nft-extra"


@pytest.mark.parametrize(("path", "value", "expected"), [
    ("version", "1", "version: must be 1"),
    ("version", 1.0, "version: must be 1"),
    ("version", True, "version: must be 1"),
    ("networks.front.mtu", "1500", "networks.front.mtu: Not a valid integer"),
    ("networks.front.mtu", 1500.0, "networks.front.mtu: Not a valid integer"),
    ("networks.front.icc", "false", "networks.front.icc: 'false' is not true or false"),
    ("networks.front.internal", 0, "networks.front.internal: 0 is not true or false"),
    ("networks.front.gateway", 2886795521, "networks.front.gateway: 2886795521 is not an IP"),
    ("endpoints.web.ipv6", "fd00:1::10%eth0", "endpoints.web.ipv6: 'fd00:1::10%eth0': a scope"),
    ("endpoints.web.publish.0", 4830, "endpoints.web.publish[0]: 4830 is not a publish entry"),
    ("endpoints.web.publish.0", "[fe80::1%eth0]:80:80", "endpoints.web.publish[0]: host "
     "address '[fe80::1%eth0]': a scope"),
    ("networks.front.subnets", [["172.31.1.0/24"]], "networks.front.subnets[0]: "
     "['172.31.1.0/24'] is not a CIDR"),
])
def test_values_of_the_wrong_type_are_errors_not_coerced(path: str, value: object,
                                                         expected: str) -> None:
    assert expected in errors_of(with_(path, value))


@pytest.mark.parametrize("name", ["front\n", "a b", "-x", ""])
def test_names_and_interface_names_are_whole_matches(name: str) -> None:
    """"$" matches before a final newline: "front\\n" would pass for "front"."""
    text = json.dumps({"version": 1, "networks": {name: {"subnet": "10.1.0.0/24"}}})
    with pytest.raises(ConfigError, match="names are letters"):
        parse_config(text)
    bad_bridge = with_("networks.front.bridge", "br-front\n")
    assert "networks.front.bridge: interface name" in errors_of(bad_bridge)


def test_a_clash_is_reported_on_the_network_being_added() -> None:
    """A runtime network create names itself and the holder, whichever name sorts first."""
    from nftnet.config.checks import check_config

    config = load(BASE)
    for name in ("aaa", "zzz"):
        added = Network(name, "br-front", IPv4Network("172.31.1.0/25"))
        both = replace(config, networks={**config.networks, name: added})
        problems = check_config(both, new=name)
        assert problems == [
            (("networks", name, "bridge"), "bridge br-front is already used by network front"),
            (("networks", name, "subnets"), "172.31.1.0/25 overlaps 172.31.1.0/24 of network "
                                            "front"),
        ]


def test_the_message_lists_the_first_hundred_problems() -> None:
    data = with_("endpoints.web.publish", [f"{70000 + i}:80" for i in range(150)])
    with pytest.raises(ConfigError) as e:
        load(data)
    assert len(e.value.problems) == 150
    lines = str(e.value).splitlines()
    assert len(lines) == 101
    assert lines[-1] == "... and 50 more problems"
