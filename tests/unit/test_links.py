"""Which addresses nftnet takes away from a bridge, how a veth's place on its bridge is judged,
and what the state records of the addresses nftnet added; without a kernel (the kernel's side
is tests/kernel/test_bridges_kernel.py)."""

from __future__ import annotations

from ipaddress import ip_interface

from hypothesis import given
from hypothesis import strategies as st

from nftnet.desired.links import added_addresses
from nftnet.link.bridges import BridgeSpec, LinkChanges, LinkState, port_problems, stale_addresses
from nftnet.state import State

ADDRESSES = st.sampled_from(["10.1.0.1/24", "10.1.0.1/16", "10.2.0.1/24", "10.1.0.9/24",
                             "fd00:1::1/64", "fd00:2::1/64", "fe80::1/64", "fe80::aa:1/64"])
SETS = st.frozensets(ADDRESSES)


def bridge(addresses: frozenset[str]) -> LinkState:
    return LinkState(7, True, "bridge", addresses)


def spec(gateways: frozenset[str], ours: bool, added: frozenset[str] = frozenset()
         ) -> BridgeSpec:
    return BridgeSpec("br", tuple(ip_interface(a) for a in sorted(gateways)), 1500, (), ours,
                      added)


@given(SETS, SETS, st.booleans(), SETS)
def test_only_what_is_not_a_gateway_and_is_nftnets_goes(seen: frozenset[str],
                                                         gateways: frozenset[str], ours: bool,
                                                         added: frozenset[str]) -> None:
    stale = set(stale_addresses(spec(gateways, ours, added), bridge(seen)))
    kernels = {a for a in seen if a.startswith("fe80:")}  # link-local: never taken away
    # created by nftnet: nothing but the gateways stays; adopted: only what nftnet added goes
    assert stale == (seen if ours else seen & added) - gateways - kernels


def test_a_gateway_with_another_prefix_is_another_address() -> None:
    assert stale_addresses(spec(frozenset({"10.1.0.1/16"}), True),
                           bridge(frozenset({"10.1.0.1/24", "10.1.0.1/16"}))) == ["10.1.0.1/24"]


def veth(master: int, up: bool = True, hairpin: bool = True, kind: str = "veth") -> LinkState:
    return LinkState(9, up, kind, frozenset(), master, hairpin)


def test_a_veth_off_its_bridge_down_or_without_hairpin() -> None:
    links = {"br": bridge(frozenset())}
    assert port_problems("nv", "br", links) is None  # gone
    assert port_problems("nv", "br", links | {"nv": veth(7, kind="tun")}) is None  # not ours
    assert port_problems("nv", "br", links | {"nv": veth(7)}) == []
    assert port_problems("nv", "br", links | {"nv": veth(7, hairpin=False)}) == [
        "has hairpin off"]
    assert port_problems("nv", "br", links | {"nv": veth(0, up=False, hairpin=False)}) == [
        "is not on bridge br", "is down"]
    assert port_problems("nv", "br", links | {"nv": veth(3)}) == ["is not on bridge br"]
    assert port_problems("nv", "br", {"nv": veth(7)}) == ["is not on bridge br"]


def test_the_state_records_what_nftnet_added_less_what_it_took_away() -> None:
    prev = State(config={}, bridge_addresses={"br-a": ["10.1.0.1/24"], "br-gone": ["10.9.0.1/24"]})
    changes = LinkChanges(["br-b"], {"br-a": ["10.2.0.1/24"], "br-b": ["10.3.0.1/24"]},
                          {"br-a": ["10.1.0.1/24", "10.7.0.1/24"]})
    assert added_addresses(prev, changes) == {"br-a": ["10.2.0.1/24"], "br-b": ["10.3.0.1/24"],
                                              "br-gone": ["10.9.0.1/24"]}
    assert added_addresses(None, LinkChanges(removed={"br-a": ["10.1.0.1/24"]})) == {}
