"""FakeLinks without a kernel: what the engine's calls do to links and sysctls, the refusals
it meets, and ensure_bridges' all-or-nothing (tests/kernel/test_link_fake_kernel.py proves the
fake against the kernel)."""

from __future__ import annotations

import contextlib
import inspect
import json
from ipaddress import ip_interface
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nftnet.config.load import parse_config
from nftnet.desired.links import bridge_specs, interface_sysctls
from nftnet.errors import LinkError
from nftnet.link.backend import KernelLinks, LinkBackend
from nftnet.link.fake import FRESH, FakeLinks
from nftnet.link.model import (
    BRIDGE_NF,
    IP_FORWARD,
    BridgeSpec,
    LinkChanges,
    LinkState,
    VethSpec,
    iface,
    settled,
)
from nftnet.state import empty_runtime

C = "/run/netns/c1"


def spec(name: str, *addrs: str, mtu: int = 1500, **extra: Any) -> BridgeSpec:
    return BridgeSpec(name, tuple(ip_interface(a) for a in addrs), mtu, **extra)


def veth(host: str = "nvone", bridge: str = "br-a", **extra: Any) -> VethSpec:
    fields = {"netns": C, "ifname": "eth0", "mtu": 1500, "addresses": (ip_interface(
        "10.1.0.5/24"),), "gateways": ("10.1.0.1",)} | extra
    return VethSpec(bridge, host, **fields)


def with_bridge() -> FakeLinks:
    links = FakeLinks()
    links.add_namespace(C)
    links.ensure_bridges([spec("br-a", "10.1.0.1/24", "fd00:1::1/64")])
    return links


@pytest.mark.parametrize("impl", [KernelLinks, FakeLinks])
def test_each_implements_the_protocol(impl: type) -> None:
    methods = {n: m for n, m in vars(LinkBackend).items()
               if inspect.isfunction(m) and not n.startswith("_")}
    assert len(methods) == 10
    for name, method in methods.items():
        want = inspect.signature(method).parameters.values()
        got = inspect.signature(getattr(impl, name)).parameters.values()
        assert [(p.name, p.default) for p in got] == [(p.name, p.default) for p in want], name


def test_bridges_made_up_marked_with_their_gateways() -> None:
    links = FakeLinks()
    changes = links.ensure_bridges([spec("br-a", "10.1.0.1/24", "fd00:1::1/64"),
                                    spec("br-b", mtu=9000)])
    assert changes == LinkChanges(["br-a", "br-b"], {"br-a": ["10.1.0.1/24", "fd00:1::1/64"]})
    seen = links.observe()
    assert seen["br-a"] == LinkState(seen["br-a"].index, True, "bridge",
                                     frozenset({"10.1.0.1/24", "fd00:1::1/64"}), marked=True)
    assert links.links["br-b"].mtu == 9000
    assert seen["lo"] == LinkState(1, False, None, frozenset())
    again = [spec("br-a", "10.1.0.1/24", "fd00:1::1/64", ours=True), spec("br-b", mtu=9000)]
    assert settled(again, seen)
    assert links.ensure_bridges(again) == LinkChanges()


def test_adopted_bridge_comes_up_and_keeps_what_is_not_nftnets() -> None:
    links = FakeLinks()
    links.ip_link_add("br-old", "bridge")
    links.ip_addr_add("br-old", "10.7.0.1/24")
    assert links.ensure_bridges([spec("br-old", "10.1.0.1/24")]) == LinkChanges(
        added={"br-old": ["10.1.0.1/24"]})
    links.ip_addr_add("br-old", "10.8.0.1/24")
    moved = spec("br-old", "10.2.0.1/24", added=frozenset({"10.1.0.1/24"}))
    assert links.ensure_bridges([moved]).removed == {"br-old": ["10.1.0.1/24"]}
    old = links.observe()["br-old"]
    assert old.up and not old.marked
    assert old.addresses == {"10.7.0.1/24", "10.8.0.1/24", "10.2.0.1/24"}
    assert links.delete_links(["br-old"]) == ["br-old"] and "br-old" in links.links


def test_a_name_taken_by_a_veth_is_refused_before_anything() -> None:
    links = FakeLinks()
    links.ip_link_add("br-v", "veth", peer="br-vp")
    before = links.observe()
    with pytest.raises(LinkError, match=r"^br-v exists and is not a bridge"):
        links.ensure_bridges([spec("br-a"), spec("br-v")])
    assert links.observe() == before


@pytest.mark.parametrize(("specs", "error"), [
    ([spec("br-a", "10.1.0.1/24"), spec("br-bad", mtu=67)],
     r"^cannot create bridge br-bad: Invalid argument \(mtu less than device minimum\)$"),
    ([spec("br-a", "10.1.0.1/24"), spec("br-c", "10.3.0.1/24", "10.3.0.1/24")],
     r"^cannot add address 10.3.0.1/24 to br-c: File exists \(ipv4: Address already assigned"),
    ([spec("br-a", "10.1.0.1/24", "fd00:1::1/64"), spec("br-c", "fd00:3::1/64", "fd00:3::1/56")],
     r"^cannot add address fd00:3::1/56 to br-c: File exists \(ipv6: address already"),
])
def test_a_refusal_takes_back_every_change_of_the_call(specs: list[BridgeSpec],
                                                       error: str) -> None:
    links = FakeLinks()
    links.ip_link_add("br-a", "bridge")
    links.ip_addr_add("br-a", "10.9.0.1/24")
    before = {n: s.addresses for n, s in links.observe().items()}
    with pytest.raises(LinkError, match=error):
        links.ensure_bridges([*specs[:1], spec("br-new", mtu=65535), *specs[1:]])
    assert {n: s.addresses for n, s in links.observe().items()} == before


def test_ipv6_switched_off_by_hand_takes_the_addresses_and_refuses_new_ones() -> None:
    links = with_bridge()
    links.set_sysctl(iface(6, "br-a", "disable_ipv6"), "1")
    assert links.observe()["br-a"].addresses == {"10.1.0.1/24"}
    with pytest.raises(LinkError, match=r"Permission denied \(ipv6: IPv6 is disabled"):
        links.ensure_bridges([spec("br-a", "10.1.0.1/24", "fd00:1::1/64", ours=True)])
    links.write_sysctl(iface(6, "br-a", "disable_ipv6"), "0")
    assert links.ensure_bridges([spec("br-a", "10.1.0.1/24", "fd00:1::1/64", ours=True)]
                                ).added == {"br-a": ["fd00:1::1/64"]}


@pytest.mark.parametrize(("promote", "left"), [("0", set()), ("1", {"10.1.0.7/24"})])
def test_a_primary_address_takes_its_secondaries_along(promote: str, left: set[str]) -> None:
    links = FakeLinks({"net/ipv4/conf/default/promote_secondaries": promote})
    links.ensure_bridges([spec("br-a", "10.1.0.1/24")])
    links.ip_addr_add("br-a", "10.1.0.7/24")  # in the gateway's subnet: a secondary
    links.ip_addr_add("br-a", "10.1.0.8/16")  # another prefix: a primary of its own
    links.ensure_bridges([spec("br-a", "10.2.0.1/24", added=frozenset({"10.1.0.1/24"}))])
    assert links.observe()["br-a"].addresses == {"10.2.0.1/24", "10.1.0.8/16", *left}


def test_undo_takes_back_and_says_what_it_cannot() -> None:
    links = with_bridge()
    changes = links.ensure_bridges([spec("br-a", "10.2.0.1/24", ours=True), spec("br-b")])
    assert changes == LinkChanges(["br-b"], {"br-a": ["10.2.0.1/24"]},
                                  {"br-a": ["10.1.0.1/24", "fd00:1::1/64"]})
    links.undo(changes)
    assert set(links.links) == {"lo", "br-a"}
    assert links.observe()["br-a"].addresses == {"10.1.0.1/24", "fd00:1::1/64"}
    with pytest.raises(LinkError) as e:
        links.undo(changes)
    assert str(e.value) == (
        "cannot remove address 10.2.0.1/24 from br-a: Cannot assign requested address "
        "(ipv4: Address not found); cannot add address 10.1.0.1/24 to br-a: File exists "
        "(ipv4: Address already assigned); cannot add address fd00:1::1/64 to br-a: File "
        "exists (ipv6: address already assigned)")
    links.undo(LinkChanges())


def test_attach_puts_the_veth_on_its_bridge_and_configures_the_container_end() -> None:
    links = with_bridge()
    links.attach_veth(veth(addresses=(ip_interface("10.1.0.5/24"), ip_interface(
        "fd00:1::5/64")), gateways=("10.1.0.1", "fd00:1::1"), mtu=1400))
    host = links.observe()["nvone"]
    assert (host.kind, host.up, host.hairpin, host.master) == (
        "veth", True, True, links.observe()["br-a"].index)
    assert links.links["nvone"].mtu == links.links["br-a"].mtu == 1400  # the bridge follows
    inside = links.inside(C)
    assert set(inside) == {"lo", "eth0"}
    assert inside["eth0"].addresses == {"10.1.0.5/24", "fd00:1::5/64"} and inside["eth0"].up
    assert inside["lo"].addresses == {"127.0.0.1/8", "::1/128"}
    assert links.namespaces[C]["eth0"].mtu == 1500  # link/veth.py sets the host end's only
    assert links.gateways(C) == ["10.1.0.1", "fd00:1::1"]
    links.attach_veth(veth("nvtwo", ifname="eth1", addresses=(ip_interface("10.1.0.6/24"),)))
    assert links.gateways(C) == ["10.1.0.1", "fd00:1::1"]  # the IPv4 one replaced
    assert links.detach_veth("nvone") and not links.detach_veth("nvone")
    assert set(links.inside(C)) == {"lo", "eth1"} and links.gateways(C) == ["10.1.0.1"]
    assert links.links["br-a"].mtu == 1500  # its smallest port's: nvtwo's


@pytest.mark.parametrize(("spec_", "error"), [
    (veth(bridge="br-x"), r"bridge br-x does not exist \(run nftnet apply\)$"),
    (veth(netns="/run/netns/gone"), r"\[Errno 2\] No such file or directory: "
                                    "'/run/netns/gone'$"),
    (veth(ifname="lo"), r"\(17, 'File exists'\)$"),
    (veth(mtu=65536), r"\(22, 'Invalid argument'\)$"),
    (veth(addresses=(ip_interface("10.1.0.5/24"),) * 2), r"\(17, 'File exists'\)$"),
])
def test_a_failed_attach_leaves_nothing(spec_: VethSpec, error: str) -> None:
    links = with_bridge()
    before = links.observe(), links.inside(C), list(links.sysctls)
    with pytest.raises(LinkError, match=f"^cannot attach nvone: {error}"):
        links.attach_veth(spec_)
    assert (links.observe(), links.inside(C), list(links.sysctls)) == before


def test_attach_deletes_a_leftover_first_and_detach_of_lo_is_refused() -> None:
    links = with_bridge()
    links.attach_veth(veth())
    links.attach_veth(veth())
    assert set(links.inside(C)) == {"lo", "eth0"}
    with pytest.raises(LinkError, match=r"^cannot delete lo: \(95, 'Operation not supported'"):
        links.detach_veth("lo")


def test_a_bridge_deleted_and_made_again_gets_its_veths_back() -> None:
    links = with_bridge()
    links.attach_veth(veth())
    links.ip_link_del("br-a")
    assert links.observe()["nvone"].master == 0
    with pytest.raises(LinkError, match=r"^bridge br-a does not exist"):
        links.plug_port("nvone", "br-a")
    again = spec("br-a", "10.1.0.1/24", ours=True, ports=("nvone", "nv-gone"))
    assert links.ensure_bridges([again]).created == ["br-a"]
    seen = links.observe()
    assert seen["nvone"].master == seen["br-a"].index and seen["nvone"].hairpin
    links.ip_link_set("nvone", hairpin=False)
    assert not settled([again], links.observe())
    assert links.ensure_bridges([again]) == LinkChanges()
    assert settled([again], links.observe())
    links.ip_link_set("nvone", nomaster=True, up=False)
    links.plug_port("nvone", "br-a")
    assert settled([again], links.observe())
    with pytest.raises(LinkError, match=r"^nv-gone does not exist$"):
        links.plug_port("nv-gone", "br-a")


def test_delete_links_deletes_the_marked_and_keeps_the_rest() -> None:
    links = with_bridge()
    links.attach_veth(veth())
    links.ip_link_add("br-old", "bridge")
    assert links.delete_links(["br-a", "br-old", "br-missing", "br-a"]) == ["br-old"]
    assert set(links.links) == {"lo", "br-old", "nvone"}
    assert links.observe()["nvone"].master == 0
    links.ip_link_set("br-old", alias="nftnet")  # root can mark anything
    assert links.delete_links(["br-old"]) == [] and "br-old" not in links.links


def test_a_namespace_deleted_takes_its_veths_host_ends_along() -> None:
    links = with_bridge()
    links.attach_veth(veth())
    links.del_namespace(C)
    assert set(links.links) == {"lo", "br-a"} and C not in links.namespaces


def test_sysctls_as_a_fresh_namespace_has_them_and_per_interface_keys() -> None:
    links = FakeLinks()
    assert links.read_sysctl(IP_FORWARD) == "0"
    assert links.read_sysctl(BRIDGE_NF[0]) is None  # br_netfilter not loaded
    with pytest.raises(LinkError, match=f"^cannot set sysctl {BRIDGE_NF[0]}=1: No such file"):
        links.write_sysctl(BRIDGE_NF[0], "1")
    key = iface(4, "br-a", "route_localnet")
    assert links.read_sysctl(key) is None
    links.ensure_bridges([spec("br-a")])
    assert links.read_sysctl(key) == "0"
    links.write_sysctl(key, "1")
    links.ip_link_del("br-a")
    links.ensure_bridges([spec("br-a")])
    assert links.read_sysctl(key) == "0"  # a new interface: the defaults again
    loaded = FakeLinks(dict.fromkeys(BRIDGE_NF, "1") | {IP_FORWARD: None})
    assert loaded.read_sysctl(BRIDGE_NF[1]) == "1" and loaded.read_sysctl(IP_FORWARD) is None
    loaded.set_sysctl(BRIDGE_NF[0], None)  # modprobe -r, as it were
    assert loaded.read_sysctl(BRIDGE_NF[0]) is None
    assert set(FRESH) <= set(FakeLinks().sysctls)


def test_apply_specs_and_sysctls_settle_on_the_fake() -> None:
    """What apply computes, sent through the protocol: the bridges settle, the sysctls take."""
    config = parse_config(json.dumps({"version": 1, "networks": {
        "front": {"bridge": "br-front", "subnets": ["172.31.1.0/24", "fd00:1::/64"]},
        "back": {"subnet": "172.31.2.0/24", "icc": False}}}))
    links: LinkBackend = FakeLinks(dict.fromkeys(BRIDGE_NF, "0"))
    specs = bridge_specs(config, empty_runtime(), None)
    assert links.ensure_bridges(specs).created == [s.name for s in specs]
    for key, value in interface_sysctls(config).items():
        links.write_sysctl(key, value)
        assert links.read_sysctl(key) == value
    assert settled(specs, links.observe())


NAMES = st.sampled_from(["br-a", "br-b", "br-c"])
ADDRS = st.sampled_from(["10.1.0.1/24", "10.1.0.1/16", "10.2.0.1/24", "fd00:1::1/64",
                         "fd00:1::1/56", "fd00:2::1/64"])
SPEC = st.builds(lambda name, addrs, mtu, ours: spec(name, *addrs, mtu=mtu, ours=ours),
                 NAMES, st.lists(ADDRS, max_size=3), st.sampled_from([1500, 1500, 10]),
                 st.booleans())
SPECS = st.lists(SPEC, min_size=1, max_size=3, unique_by=lambda s: s.name)
HAND = st.lists(st.tuples(NAMES, ADDRS), max_size=3)  # addresses someone adds to a bridge


def addresses(links: FakeLinks) -> dict[str, frozenset[str]]:
    return {n: s.addresses for n, s in links.observe().items()}


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(HAND, SPECS), min_size=1, max_size=4))
def test_ensure_bridges_is_all_or_nothing_and_its_changes_are_exact(
        rounds: list[tuple[list[tuple[str, str]], list[BridgeSpec]]]) -> None:
    """Succeeded: the bridges settle, and the changes are the difference; refused: every
    link and address is as before; undo takes a success back (a bridge it brought up stays
    up, as in the kernel)."""
    links = FakeLinks()
    links.ensure_bridges([spec("br-a"), spec("br-b")])
    for hand, specs in rounds:
        for name, addr in hand:
            if name in links.links and addr not in links.links[name].addresses:
                with contextlib.suppress(LinkError):  # the kernel's refusal: nothing added
                    links.ip_addr_add(name, addr)
        before = addresses(links)
        try:
            changes = links.ensure_bridges(specs)
        except LinkError:
            assert addresses(links) == before
            continue
        after = addresses(links)
        assert settled(specs, links.observe())
        assert set(after) == set(before) | set(changes.created)
        for name in after:
            want = (before.get(name, frozenset()) - set(changes.removed.get(name, ()))
                    ) | set(changes.added.get(name, ()))
            assert after[name] == want, name
        links.undo(changes)
        assert addresses(links) == before
        links.ensure_bridges(specs)
