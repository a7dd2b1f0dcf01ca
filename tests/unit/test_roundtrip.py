"""What nftnet stores comes back as it was: a config dumped to the file format (state.json)
and loaded again is the same config, over every option of the schema; a runtime endpoint's
record is its typed form both ways. The strategies name every field of the model, and a test
fails when the model gains one they do not draw: a new option cannot silently drop out of the
stored state."""

from __future__ import annotations

import json
from dataclasses import fields
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from hypothesis import given
from hypothesis import strategies as st

from nftnet.config.dump import dump_config
from nftnet.config.load import parse_config
from nftnet.config.model import Config, Endpoint, Network
from nftnet.config.publish import parse_publish
from nftnet.records import RuntimeEndpoint

# one network of each kind per index, never overlapping: 10.(20+i).0.0/24, fd00:(20+i)::/64
NETWORK_FIELDS = {
    "name", "bridge", "subnet4", "subnet6", "gateway4", "gateway6", "icc", "masquerade",
    "internal", "host_binding_ipv4", "mtu",
}
ENDPOINT_FIELDS = {"name", "network", "ipv4", "ipv6", "publish"}


@st.composite
def networks(draw: st.DrawFn, i: int) -> Network:
    v4, v6 = draw(st.sampled_from([(True, False), (False, True), (True, True)]))
    subnet4 = IPv4Network(f"10.{20 + i}.0.0/24") if v4 else None
    subnet6 = IPv6Network(f"fd00:{20 + i}::/64") if v6 else None
    return Network(
        name=f"n{i}", bridge=draw(st.sampled_from([f"nft-n{i}", f"br.{i}_x-y"])),
        subnet4=subnet4, subnet6=subnet6,
        gateway4=IPv4Address(f"10.{20 + i}.0.{draw(st.integers(1, 254))}") if v4 else None,
        gateway6=IPv6Address(f"fd00:{20 + i}::{draw(st.integers(1, 0xffff)):x}") if v6
        else None,
        icc=draw(st.booleans()), masquerade=draw(st.booleans()),
        internal=draw(st.booleans()),
        host_binding_ipv4=draw(st.sampled_from([IPv4Address("0.0.0.0"),
                                                IPv4Address("127.0.0.1")])),
        mtu=draw(st.integers(68, 9000)),
    )


@st.composite
def configs(draw: st.DrawFn) -> Config:
    nets = [draw(networks(i)) for i in range(draw(st.integers(1, 3)))]
    endpoints = {}
    port = 1000
    for j in range(draw(st.integers(0, 4))):
        net = draw(st.sampled_from(nets))
        host = 100 + j  # never a gateway: those are drawn, so skip clashes below
        ipv4 = IPv4Address(f"{net.subnet4.network_address + host}") if net.subnet4 else None
        ipv6 = IPv6Address(f"{net.subnet6.network_address + host}") if net.subnet6 else None
        if ipv4 == net.gateway4 or ipv6 == net.gateway6:
            continue
        publish = ()
        if not net.internal and draw(st.booleans()):
            port += 10
            proto = draw(st.sampled_from(["tcp", "udp", "sctp"]))
            text = f"{port}-{port + 1}:80-81/{proto}" if draw(st.booleans()) else f"{port}:80"
            publish = (parse_publish(text),)
        endpoints[f"e{j}"] = Endpoint(f"e{j}", net.name, ipv4, ipv6, publish)
    rules = draw(st.sampled_from([None, (), ("tcp dport 22 drop",)]))
    return Config({n.name: n for n in nets}, endpoints, rules, rules)


def test_the_strategies_draw_every_field_of_the_model() -> None:
    assert {f.name for f in fields(Network)} == NETWORK_FIELDS
    assert {f.name for f in fields(Endpoint)} == ENDPOINT_FIELDS
    drawn = {f.name for f in fields(RuntimeEndpoint)}
    assert drawn == {"network", "ipv4", "ipv6", "publish", "host_ifname", "netns", "ifname",
                     "owns_link", "owner"}


@given(configs())
def test_a_dumped_config_loads_as_the_same_config(config: Config) -> None:
    dumped = dump_config(config)
    again = parse_config(json.dumps(dumped), "state.json")
    assert again == config
    assert again.networks == config.networks and again.endpoints == config.endpoints
    assert dump_config(again) == dumped


@given(st.builds(
    RuntimeEndpoint, network=st.sampled_from(["front", "back"]),
    ipv4=st.none() | st.just("10.0.0.2"), ipv6=st.none() | st.just("fd00::2"),
    publish=st.lists(st.sampled_from(["8080:80", "9000:90/udp"]), unique=True),
    host_ifname=st.none() | st.just("veth1"), netns=st.none() | st.just("/run/netns/c"),
    ifname=st.none() | st.just("eth0"), owns_link=st.booleans(),
    owner=st.none() | st.sampled_from(["docker", "cni"])))
def test_a_runtime_endpoint_record_is_its_typed_form_both_ways(ep: RuntimeEndpoint) -> None:
    stored = json.loads(json.dumps(ep.to_json()))
    assert RuntimeEndpoint.from_json(stored) == ep
