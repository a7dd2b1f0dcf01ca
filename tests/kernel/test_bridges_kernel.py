"""nftnet.link.bridges against the real kernel: batched creation, adoption, refusals, rollback.

The module acts on the namespace it runs in, so each call runs in a short Python process
inside the test's throwaway namespace and reports back as JSON.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest

from tests.kernel.conftest import Netns

pytestmark = pytest.mark.kernel

Spec = tuple[str, list[str], int]  # name, addresses with prefix, MTU

_SCRIPT = """
import json, sys
from ipaddress import ip_interface
from nftnet.errors import LinkError
from nftnet.link import bridges
op, arg, chunk = json.loads(sys.argv[1])
if chunk:
    bridges._CHUNK = chunk
try:
    if op == "ensure":
        out = {"created": bridges.ensure_bridges(
            bridges.BridgeSpec(n, tuple(ip_interface(a) for a in addrs), mtu)
            for n, addrs, mtu in arg)}
    elif op == "delete":
        bridges.delete_links(arg)
        out = {}
    elif op == "delete-kept":
        out = {"kept": bridges.delete_links(arg)}
    else:
        out = {"links": {name: {"index": s.index, "up": s.up, "kind": s.kind,
                                "addresses": sorted(s.addresses), "marked": s.marked}
                         for name, s in bridges.observe().items()}}
except LinkError as e:
    out = {"error": str(e)}
out["pyroute2"] = "pyroute2" in sys.modules
print(json.dumps(out))
"""


def call(ns: Netns, op: str, arg: object = None, chunk: int = 0) -> dict[str, Any]:
    """Run one bridges function inside the namespace; a LinkError comes back as "error"."""
    return json.loads(ns.run(sys.executable, "-c", _SCRIPT, json.dumps([op, arg, chunk])))


def ensure(ns: Netns, specs: list[Spec], chunk: int = 0) -> dict[str, Any]:
    out = call(ns, "ensure", specs, chunk)
    del out["pyroute2"]
    return out


def observe(ns: Netns) -> dict[str, dict[str, Any]]:
    return call(ns, "observe")["links"]


def ip_links(ns: Netns) -> dict[str, dict[str, Any]]:
    """What iproute2 sees, independently of the module under test."""
    return {link["ifname"]: link for link in json.loads(ns.run("ip", "-j", "-d", "addr"))}


def local_addrs(link: dict[str, Any]) -> set[str]:
    return {f"{a['local']}/{a['prefixlen']}" for a in link["addr_info"]
            if not a["local"].startswith("fe80:")}


@pytest.mark.parametrize("chunk", [0, 2])  # one buffer, and a batch split over many
def test_creates_bridges_with_addresses_up(netns: Netns, chunk: int) -> None:
    specs: list[Spec] = [
        ("br-a", ["10.64.0.1/24", "fd00:a::1/64"], 1500),
        ("br-b", ["10.64.1.1/24", "fd00:b::1/64"], 1400),
        ("br-c", ["10.64.2.1/24"], 9000),
        ("br-d", [], 1500),
    ]
    assert ensure(netns, specs, chunk) == {"created": ["br-a", "br-b", "br-c", "br-d"]}
    found = ip_links(netns)
    for name, addrs, mtu in specs:
        link = found[name]
        assert link["linkinfo"]["info_kind"] == "bridge"
        assert "UP" in link["flags"]
        assert link["mtu"] == mtu
        assert local_addrs(link) == set(addrs)
    v6 = [a for a in found["br-a"]["addr_info"] if a["local"] == "fd00:a::1"]
    assert v6 and v6[0].get("nodad") is True
    seen = observe(netns)
    for name, addrs, _ in specs:
        assert seen[name]["kind"] == "bridge" and seen[name]["up"]
        assert seen[name]["index"] == found[name]["ifindex"]
        assert set(addrs) <= set(seen[name]["addresses"])
    assert seen["lo"]["kind"] is None
    assert ensure(netns, specs, chunk) == {"created": []}  # everything in place: a no-op


def test_existing_bridge_is_adopted_and_completed(netns: Netns) -> None:
    netns.run("ip", "link", "add", "br-old", "type", "bridge")
    netns.run("ip", "addr", "add", "10.77.0.1/24", "dev", "br-old")
    index = ip_links(netns)["br-old"]["ifindex"]
    specs: list[Spec] = [("br-old", ["10.66.0.1/24", "fd00:66::1/64"], 1500),
                         ("br-new", ["10.66.1.1/24"], 1500)]
    assert ensure(netns, specs) == {"created": ["br-new"]}
    old = ip_links(netns)["br-old"]
    assert old["ifindex"] == index  # the same link, not a replacement
    assert "UP" in old["flags"]
    assert local_addrs(old) == {"10.77.0.1/24", "10.66.0.1/24", "fd00:66::1/64"}


def test_name_taken_by_non_bridge_names_it_and_leaves_nothing(netns: Netns) -> None:
    netns.run("ip", "link", "add", "br-taken", "type", "veth", "peer", "name", "br-taken-p")
    before = set(ip_links(netns))
    out = ensure(netns, [("br-a", ["10.64.0.1/24"], 1500), ("br-taken", ["10.64.1.1/24"], 1500),
                         ("br-c", [], 1500)])
    assert "br-taken exists and is not a bridge" in out["error"]
    after = ip_links(netns)
    assert set(after) == before  # no bridge made, the veth kept
    assert local_addrs(after["br-taken"]) == set()


@pytest.mark.parametrize("chunk", [0, 2])
def test_refused_bridge_rolls_back_the_batch(netns: Netns, chunk: int) -> None:
    netns.run("ip", "link", "add", "br-old", "type", "bridge")
    out = ensure(netns, [("br-a", ["10.64.0.1/24"], 1500), ("br-old", [], 1500),
                         ("br-b", [], 1500), ("br-bad", ["10.64.9.1/24"], 10),
                         ("br-c", [], 1500)], chunk)
    assert "cannot create bridge br-bad" in out["error"]
    assert "mtu" in out["error"].lower()  # the kernel's reason, not only an errno
    assert set(ip_links(netns)) == {"lo", "br-old"}  # the adopted bridge survives


@pytest.mark.parametrize("chunk", [0, 2])
def test_refused_address_rolls_back_the_batch(netns: Netns, chunk: int) -> None:
    """The same address twice on one bridge: the kernel refuses the second after every bridge
    was made, and all of them go again."""
    netns.run("ip", "link", "add", "br-old", "type", "bridge")
    out = ensure(netns, [("br-a", ["10.64.0.1/24"], 1500),
                         ("br-b", ["10.64.1.1/24", "10.64.1.1/24"], 1500),
                         ("br-old", ["10.64.2.1/24"], 1500), ("br-c", [], 1500)], chunk)
    assert "cannot add address 10.64.1.1/24 to br-b" in out["error"]
    assert "exists" in out["error"]
    assert set(ip_links(netns)) == {"lo", "br-old"}


def test_reading_and_changing_nothing_leave_pyroute2_unloaded(netns: Netns) -> None:
    """An apply that changes no link must not pay pyroute2's import (~75 ms)."""
    specs: list[Spec] = [("br-a", ["10.64.0.1/24", "fd00:64::1/64"], 1500)]
    assert call(netns, "ensure", specs) == {"created": ["br-a"], "pyroute2": True}
    assert call(netns, "ensure", specs) == {"created": [], "pyroute2": False}
    assert call(netns, "observe")["pyroute2"] is False
    assert call(netns, "delete", ["br-missing"]) == {"pyroute2": False}


def test_delete_links_deletes_only_what_exists(netns: Netns) -> None:
    ensure(netns, [("br-a", [], 1500), ("br-b", [], 1500), ("br-c", [], 1500)])
    assert call(netns, "delete", ["br-a", "br-missing", "br-c", "br-a"]) == {"pyroute2": True}
    assert set(ip_links(netns)) == {"lo", "br-b"}


def test_only_bridges_nftnet_created_carry_its_mark_and_only_they_are_deleted(
        netns: Netns) -> None:
    netns.run("ip", "link", "add", "br-old", "type", "bridge")
    netns.run("ip", "link", "add", "br-other", "type", "bridge")
    netns.run("ip", "link", "set", "br-other", "alias", "someone else's")
    assert ensure(netns, [("br-old", [], 1500), ("br-a", ["10.64.0.1/24"], 1500),
                          ("br-b", [], 1500)], chunk=2) == {"created": ["br-a", "br-b"]}
    found = ip_links(netns)
    assert {n: found[n].get("ifalias") for n in ("br-old", "br-other", "br-a", "br-b")} == {
        "br-old": None, "br-other": "someone else's", "br-a": "nftnet", "br-b": "nftnet"}
    assert {n: s["marked"] for n, s in observe(netns).items()} == {
        "lo": False, "br-old": False, "br-other": False, "br-a": True, "br-b": True}
    out = call(netns, "delete-kept", ["br-a", "br-old", "br-other", "br-missing", "br-b"])
    assert out["kept"] == ["br-old", "br-other"]
    assert set(ip_links(netns)) == {"lo", "br-old", "br-other"}
