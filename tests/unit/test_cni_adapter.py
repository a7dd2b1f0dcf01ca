"""nftnet-cni's engine adapter (drivers/cni/adapter.py): the mapping of CNI's names and values
to nftnet's (hypothesis where inputs are structured), and its choice of engine calls, on a
fake of the facade that holds a real ``State``. The kernel tests
(tests/drivers/test_cni_engine.py) run it on the real engine."""

from __future__ import annotations

import copy
import json
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nftnet.api import Engine
from nftnet.check import Finding, Report
from nftnet.config.load import load_entry, parse_config
from nftnet.config.model import Network as NftNetwork
from nftnet.config.publish import parse_publish
from nftnet.config.schema import NAME
from nftnet.drivers.cni import adapter
from nftnet.drivers.cni.adapter import (
    CniEngine,
    attachment_of,
    binding_keys,
    endpoint_name,
    lock_timeout,
    network_entry,
    network_name,
    publish_text,
)
from nftnet.drivers.cni.engine import Attachment, Endpoint, Network, PortMap
from nftnet.drivers.cni.spec import ID, INVALID_ENVIRONMENT, CniError, ifname_problem
from nftnet.errors import ConfigError, NftnetError
from nftnet.kernel import Kernel
from nftnet.link.model import BRIDGE_NF
from nftnet.records import owners
from nftnet.results import EndpointChange, NetworkChange
from nftnet.state import State

ids = st.from_regex(ID, fullmatch=True).filter(lambda s: len(s) < 80)
ifnames = st.text(min_size=1, max_size=15).filter(lambda s: ifname_problem(s) is None)
attachments = st.builds(Attachment, ids, ifnames)


@given(ids, attachments)
def test_endpoint_names_are_nftnet_names_and_read_back(network: str, a: Attachment) -> None:
    name = endpoint_name(network, a)
    assert NAME.match(name) and NAME.match(network_name(network))
    assert attachment_of(network, name) == a


@given(ids, attachments, ids, attachments)
def test_endpoint_names_are_unique_per_cni_key(n1: str, a1: Attachment, n2: str,
                                               a2: Attachment) -> None:
    if (n1, a1) != (n2, a2):
        assert endpoint_name(n1, a1) != endpoint_name(n2, a2)


def test_endpoint_names_read_well() -> None:
    assert endpoint_name("podman", Attachment("3f2a.b_c", "eth0")) == "podman.3f2a.b_c.eth0"
    assert endpoint_name("my_net.1", Attachment("c1", "e@0")) == "my_5fnet_2e1.c1.e_400"
    assert attachment_of("other", "podman.c1.eth0") is None
    assert endpoint_name("a", Attachment("b.c", "eth0")) != \
        endpoint_name("a.b", Attachment("c", "eth0"))
    assert endpoint_name("a", Attachment("b", "c.d")) != endpoint_name("a", Attachment("b.c", "d"))


addresses = st.one_of(st.none(), st.ip_addresses(v=4), st.ip_addresses(v=6).filter(
    lambda a: not a.is_loopback))
ports = st.builds(PortMap, st.integers(1, 65535), st.integers(1, 65535),
                  st.sampled_from(["tcp", "udp", "sctp"]), addresses)


@given(ports)
def test_port_mappings_are_nftnet_publish_texts(port: PortMap) -> None:
    spec = parse_publish(publish_text(port))
    assert (spec.host_ip, spec.host_ports, spec.container_ports, spec.proto) == (
        port.host_ip, (port.host_port,) * 2, (port.container_port,) * 2, port.protocol)


def test_binding_keys_as_check_lists_elements() -> None:
    assert binding_keys([PortMap(8080, 80, "tcp"), PortMap(53, 53, "udp", ip_address("::")),
                         PortMap(8443, 443, "tcp", ip_address("fd77::1")),
                         PortMap(81, 81, "tcp", ip_address("127.0.0.1"))]) == {
        "tcp . 8080", "udp . 53", "fd77::1 . tcp . 8443", "127.0.0.1 . tcp . 81"}


NET = Network("front", "cni-front", IPv4Network("172.31.50.0/24"), IPv6Network("fd00:50::/64"),
              IPv4Address("172.31.50.1"), IPv6Address("fd00:50::1"), icc=False)


def test_the_network_entry_is_what_nftnet_loads() -> None:
    entry = network_entry(NET)
    net = load_entry("networks", network_name("front"), entry)
    assert isinstance(net, NftNetwork)
    assert (net.bridge, net.subnet4, net.subnet6, net.gateway4, net.gateway6, net.icc,
            net.masquerade, net.internal) == (NET.bridge, NET.subnet4, NET.subnet6,
                                              NET.gateway4, NET.gateway6, False, True, False)
    v4 = Network("front", "br", subnet4=NET.subnet4, gateway4=NET.gateway4)
    assert network_entry(v4) == {"bridge": "br", "subnets": ["172.31.50.0/24"],
                                 "gateway": "172.31.50.1", "icc": True, "masquerade": True,
                                 "internal": False}


def test_a_subnet_without_gateway_is_refused_not_given_nftnet_s_default() -> None:
    with pytest.raises(ConfigError) as e:
        network_entry(Network("front", "br", subnet4=NET.subnet4, subnet6=NET.subnet6,
                              gateway4=NET.gateway4))
    assert e.value.problems == [
        "prevResult.ips: no gateway for fd00:50::/64: nftnet routes, publishes and masquerades "
        "through the bridge's address; give the IPAM plugin a gateway and the bridge plugin "
        "isGateway: true"]


@pytest.mark.parametrize(("value", "seconds"), [(None, 30.0), ("", 30.0), ("2.5", 2.5),
                                                ("0", 0.0)])
def test_lock_timeout(value: str | None, seconds: float) -> None:
    assert lock_timeout({} if value is None else {"NFTNET_LOCK_TIMEOUT": value}) == seconds


@pytest.mark.parametrize("value", ["soon", "-1", "inf", "nan"])
def test_a_lock_timeout_that_is_no_number_of_seconds_is_refused(value: str) -> None:
    with pytest.raises(CniError) as e:
        lock_timeout({"NFTNET_LOCK_TIMEOUT": value})
    assert e.value.code == INVALID_ENVIRONMENT and "NFTNET_LOCK_TIMEOUT" in e.value.msg


WEB = Endpoint(Attachment("web", "eth0"), "/run/netns/web", "veth1",
               IPv4Address("172.31.50.2"), IPv6Address("fd00:50::2"))
WEB_PORTS = (PortMap(8080, 80, "tcp"),)


@pytest.mark.parametrize(("finding", "concerns"), [
    (Finding("table inet nftnet", "missing"), True),
    (Finding("chain filter-forward", "rule missing: x"), True),
    (Finding("sysctl net/ipv4/ip_forward", "is 0; nftnet needs 1"), True),
    (Finding("endpoint front.web.eth0", "its veth veth1 is down"), True),
    (Finding("endpoint front.peer.eth0", "its veth veth2 is down"), False),
    (Finding("bridge cni-front", "down"), True),
    (Finding("bridge cni-back", "down"), False),
    (Finding("map pubany4-addr", "element missing: tcp . 8080 : 172.31.50.2"), True),
    (Finding("map pubany4-port", "element added: tcp . 8080 : 81"), True),
    (Finding("map pubany4-addr", "element missing: tcp . 8090 : 172.31.50.3"), False),
    (Finding("map pub4-addr", "element missing: 127.0.0.1 . tcp . 8080 : 172.31.50.3"), False),
    (Finding("map pubany4-addr", "and 5 more elements missing"), True),
    (Finding("set subnets4", "element missing: 172.31.50.0/24"), True),
    (Finding("set subnets4", "element missing: 172.31.51.0/24"), False),
    (Finding("set bridges", "element missing: cni-front"), True),
    (Finding("map same-bridge", "element missing: cni-front . cni-front : accept"), True),
    (Finding("map same-bridge", "element missing: cni-back . cni-back : accept"), False),
    (Finding("set bridges", "missing"), True),
])
def test_check_counts_the_findings_that_concern_the_attachment(finding: Finding,
                                                              concerns: bool) -> None:
    mine = adapter._Concerns("front.web.eth0", "cni-front", binding_keys(WEB_PORTS),
                             {"172.31.50.0/24", "fd00:50::/64"})
    assert mine(finding) is concerns


# -- the choice of engine calls, on a fake facade -----------------------------------------

class FakeStateDir:
    def __init__(self, api: FakeApi) -> None:
        self.api, self.path = api, Path("/fake/state")

    def load(self) -> State | None:
        return copy.deepcopy(self.api.state)


class FakeApi:
    """The facade's calls the adapter makes, on a real ``State`` (no kernel). ``before``
    runs before each call of that name (another process's change meanwhile)."""

    def __init__(self) -> None:
        self.state: State | None = None
        self.state_dir = FakeStateDir(self)
        self.calls: list[str] = []
        self.before: dict[str, Any] = {}
        self.refuse: dict[str, NftnetError] = {}

    def _call(self, name: str) -> State:
        self.calls.append(name)
        if name in self.before:
            self.before.pop(name)(self)
        if name in self.refuse:
            raise self.refuse.pop(name)
        if self.state is None:
            self.state = State(config={"version": 1})
        return self.state

    def create_network(self, name: str, entry: dict[str, Any], owner: str | None = None
                       ) -> NetworkChange:
        state = self._call("create_network")
        held = state.runtime["networks"].get(name)
        if held == {**entry, "owner": owner}:
            return NetworkChange(name, True, changed=False)
        if held is not None:
            raise ConfigError([f"network {name!r} exists already"])
        state.runtime["networks"][name] = {**entry, "owner": owner}
        return NetworkChange(name, True)

    def remove_network(self, name: str, force: bool = False, owner: str | None = None,
                       missing_ok: bool = False) -> NetworkChange:
        state = self._call("remove_network")
        if any(e["network"] == name for e in state.runtime["endpoints"].values()):
            raise NftnetError(f"network {name} still has endpoints")
        state.runtime["networks"].pop(name, None)
        return NetworkChange(name, False)

    def register(self, name: str, network: str, *, owner: str,
                 network_entry: dict[str, Any] | None = None, **kw: Any) -> EndpointChange:
        state = self._call("register")
        held = state.runtime["networks"].get(network)
        if network_entry is not None and held is None:
            state.runtime["networks"][network] = {**network_entry, "owner": owner}
        elif network_entry is not None and held != {**network_entry, "owner": owner}:
            raise ConfigError([f"network {network!r} exists already (held by cni)"])
        elif held is None:
            raise ConfigError([f"no network {network!r}"])
        state.runtime["endpoints"][name] = {"network": network, "owner": owner, **kw}
        return EndpointChange(name, network, True)

    def unregister(self, name: str, owner: str) -> EndpointChange | None:
        state = self._call("unregister")
        gone = state.runtime["endpoints"].pop(name, None)
        return None if gone is None else EndpointChange(name, gone["network"], False)

    def owners(self, state: State) -> dict[str, dict[str, str | None]]:
        return owners(state.runtime)

    def check(self) -> Report | None:
        self.calls.append("check")
        return None if self.state is None else Report()

    def chains(self) -> list[dict[str, Any]]:
        return [{"chain": {"family": "inet", "table": "nftnet", "name": "user"}}]


@pytest.fixture
def fake() -> tuple[CniEngine, FakeApi]:
    engine = CniEngine("/fake/state", 1.0)
    api = FakeApi()
    engine.api = api  # type: ignore[assignment]
    return engine, api


def endpoints(api: FakeApi) -> list[str]:
    assert api.state is not None
    return sorted(api.state.runtime["endpoints"])


def test_add_is_one_call_and_del_removes_the_network_with_the_last(fake: Any) -> None:
    engine, api = fake
    engine.add("cni", NET, WEB, WEB_PORTS)
    peer = Endpoint(Attachment("peer", "eth0"), "/n", "veth2", IPv4Address("172.31.50.3"))
    engine.add("cni", NET, peer, ())
    assert api.calls == ["register", "register"]  # the network made with the first
    assert api.state.runtime["endpoints"]["front.web.eth0"]["publish"] == ["8080:80/tcp"]
    engine.delete("cni", "front", WEB.attachment)
    assert endpoints(api) == ["front.peer.eth0"] and "cni-front" in api.state.runtime["networks"]
    engine.delete("cni", "front", peer.attachment)
    assert api.state.runtime["networks"] == {}
    engine.delete("cni", "front", peer.attachment)  # again: nothing held, nothing removed
    assert api.calls[-2:] == ["remove_network", "unregister"]


def test_a_del_that_races_an_add_keeps_the_network(fake: Any) -> None:
    engine, api = fake
    engine.add("cni", NET, WEB, WEB_PORTS)
    late = {"network": "cni-front", "owner": "cni"}
    api.before["remove_network"] = lambda api: api.state.runtime["endpoints"].update(late=late)
    engine.delete("cni", "front", WEB.attachment)
    assert endpoints(api) == ["late"] and "cni-front" in api.state.runtime["networks"]


def test_a_network_held_with_other_settings_is_named(fake: Any) -> None:
    engine, _ = fake
    engine.add("cni", NET, WEB, WEB_PORTS)
    other = Network("front", "cni-front", IPv4Network("172.31.60.0/24"),
                    gateway4=IPv4Address("172.31.60.1"))
    peer = Endpoint(Attachment("peer", "eth0"), "/n", "veth2", IPv4Address("172.31.60.3"))
    with pytest.raises(ConfigError) as e:
        engine.add("cni", other, peer, ())
    assert e.value.problems == [
        "network cni-front is held by nftnet with other settings: gateway 172.31.50.1 (this "
        "ADD: 172.31.60.1), gateway6 fd00:50::1 (this ADD: none), icc false (this ADD: true), "
        "subnets 172.31.50.0/24,fd00:50::/64 (this ADD: 172.31.60.0/24); it keeps them while "
        "it has containers"]


def test_gc_unregisters_the_owner_s_others_on_the_network(fake: Any) -> None:
    engine, api = fake
    for cid in ("c1", "c2", "c3"):
        engine.add("cni", NET, Endpoint(Attachment(cid, "eth0"), "/n", f"v{cid}",
                                        IPv4Address(f"172.31.50.1{cid[1]}")), ())
    api.state.runtime["endpoints"]["people"] = {"network": "cni-front"}
    gone = engine.gc("cni", "front", frozenset({Attachment("c2", "eth0")}))
    assert gone == [Attachment("c1", "eth0"), Attachment("c3", "eth0")]
    assert endpoints(api) == ["front.c2.eth0", "people"]


def test_check_compares_the_records_with_the_request(fake: Any) -> None:
    engine, api = fake
    assert engine.check("cni", NET, WEB, WEB_PORTS) == ["nftnet holds nothing in /fake/state"]
    engine.add("cni", NET, WEB, WEB_PORTS)
    assert engine.check("cni", NET, WEB, WEB_PORTS) == []
    moved = Endpoint(WEB.attachment, WEB.netns, "veth9", WEB.ipv4)
    assert engine.check("cni", NET, moved, (PortMap(8081, 80, "tcp"),)) == [
        "endpoint front.web.eth0: ipv6 is fd00:50::2, ADD made None",
        "endpoint front.web.eth0: host_ifname is veth1, ADD made veth9",
        "endpoint front.web.eth0: publishes ['8080:80/tcp'], ADD made ['8081:80/tcp']"]
    api.state.runtime["publish"]["front.web.eth0"] = ["9000:90/tcp"]  # nftnet port publish
    assert engine.check("cni", NET, WEB, WEB_PORTS) == [
        "endpoint front.web.eth0: publishes ['8080:80/tcp', '9000:90/tcp'], ADD made "
        "['8080:80/tcp']"]
    api.state.runtime["endpoints"]["x"] = {"network": "cni-front", "owner": "cni"}
    engine.delete("cni", "front", WEB.attachment)  # the network stays: x is on it
    assert engine.check("cni", NET, WEB, WEB_PORTS) == ["endpoint front.web.eth0 is gone"]


def test_status(fake: Any) -> None:
    engine, api = fake
    assert engine.status("cni", "front").problem == ""
    engine.add("cni", NET, WEB, WEB_PORTS)
    api.chains = lambda: []  # type: ignore[method-assign]
    readiness = engine.status("cni", "front")
    assert readiness.limited and "nftnet restore" in readiness.problem

    def broken() -> list[dict[str, Any]]:
        raise OSError("libnftables.so.1: cannot open shared object file")

    api.chains = broken  # type: ignore[method-assign]
    readiness = engine.status("cni", "front")
    assert not readiness.limited and "nftables cannot be used: libnftables" in readiness.problem


# -- on nftnet's engine and the in-memory kernel ------------------------------------------

@pytest.fixture
def on_fake_kernel(tmp_path: Path) -> tuple[CniEngine, Engine]:
    """CniEngine on nftnet's real engine, on ``Kernel.fake()``: the bridge plugin's bridge
    and two veths on it, with hairpin off (a conflist without ``hairpinMode``)."""
    kernel = Kernel.fake()
    links = kernel.links
    for key in ("net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding", *BRIDGE_NF):
        links.set_sysctl(key, "1")
    links.ip_link_add(NET.bridge, "bridge")
    links.ip_link_set(NET.bridge, up=True)
    for veth in ("veth1", "veth2"):
        links.ip_link_add(veth, "veth", peer=f"{veth}p")
        links.ip_link_set(veth, master=NET.bridge, up=True)
    engine = CniEngine(str(tmp_path / "state"), 1.0)
    engine.api = Engine(tmp_path / "state", kernel)
    return engine, engine.api


def elements_only(batch: dict[str, Any]) -> bool:
    ops = [op for op in batch["nftables"] if "metainfo" not in op]
    return bool(ops) and all("element" in next(iter(op.values())) for op in ops)


PEER = Endpoint(Attachment("peer", "eth0"), "/n", "veth2", IPv4Address("172.31.50.3"))


def test_every_add_is_one_transaction(on_fake_kernel: Any) -> None:
    cni, engine = on_fake_kernel
    committed = engine.nft.committed
    cni.add("cni", NET, WEB, WEB_PORTS)  # the network made with it
    assert len(committed) == 1 and not elements_only(committed[0])
    assert cni.check("cni", NET, WEB, WEB_PORTS) == []
    cni.add("cni", NET, PEER, ())  # nothing to send: nothing sent, the generation kept
    assert len(committed) == 1
    again = Endpoint(Attachment("again", "eth0"), "/n", "veth2", IPv4Address("172.31.50.4"))
    cni.add("cni", NET, again, (PortMap(8081, 80, "tcp"),))
    assert len(committed) == 2 and elements_only(committed[1])  # not a rewrite of the table
    report = engine.check()
    assert report is not None and report.in_sync


def test_a_refused_first_add_applies_nothing(on_fake_kernel: Any) -> None:
    cni, engine = on_fake_kernel
    engine.apply(parse_config(json.dumps({"version": 1, "networks": {"lan": {
        "bridge": "br-lan", "subnets": ["172.31.9.0/24"]}}, "endpoints": {"srv": {
            "network": "lan", "ipv4": "172.31.9.5", "publish": ["8080:80"]}}}), "c.json"))
    before = (len(engine.nft.committed), engine.state_dir.load())
    with pytest.raises(ConfigError, match=r"8080.*already published by endpoint srv"):
        cni.add("cni", NET, WEB, WEB_PORTS)
    assert (len(engine.nft.committed), engine.state_dir.load()) == before


@pytest.mark.parametrize("first", [True, False])
def test_add_puts_the_veth_as_nftnet_s_attach_would(on_fake_kernel: Any, first: bool) -> None:
    cni, engine = on_fake_kernel
    if not first:
        cni.add("cni", NET, PEER, (PortMap(9000, 90, "tcp"),))
    assert not engine.kernel.links.observe()["veth1"].hairpin
    cni.add("cni", NET, WEB, WEB_PORTS)
    assert engine.kernel.links.observe()["veth1"].hairpin
    report = engine.check()
    assert report is not None and report.in_sync


def test_a_network_held_with_other_settings_is_named_by_the_engine_too(on_fake_kernel: Any
                                                                       ) -> None:
    cni, engine = on_fake_kernel
    cni.add("cni", NET, WEB, WEB_PORTS)
    committed = len(engine.nft.committed)
    other = Network("front", "cni-front", IPv4Network("172.31.60.0/24"),
                    gateway4=IPv4Address("172.31.60.1"))
    with pytest.raises(ConfigError, match="held by nftnet with other settings: gateway "):
        cni.add("cni", other, Endpoint(Attachment("x", "eth0"), "/n", "veth2",
                                       IPv4Address("172.31.60.3")), ())
    assert len(engine.nft.committed) == committed
