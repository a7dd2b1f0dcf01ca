"""The config contract: what loads, and that every bad input names its field."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest
import yaml

from nftnet.config.dump import dump_config
from nftnet.config.load import parse_config
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
