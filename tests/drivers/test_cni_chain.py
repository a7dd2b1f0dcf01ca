"""nftnet-cni in a real chain: Debian's bridge + host-local, then nftnet-cni (on the tests'
fake engine), run by hand as a runtime runs them; what the plugin hands the engine is checked
against what the kernel holds."""

from __future__ import annotations

import json
from ipaddress import ip_interface
from pathlib import Path
from typing import Any

import pytest

from tests.cni_env import CniFailure, CniHost, Sandbox, fake_nftnet_cni, run_chain
from tests.cni_fake import FakeEngine

pytestmark = pytest.mark.kernel

CONFLIST = Path(__file__).resolve().parents[2] / "contrib" / "cni" / "nftnet.conflist"

PORTS = [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "127.0.0.1"},
         {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": ""}]


def conflist(host: CniHost, version: str, **nftnet: Any) -> dict[str, Any]:
    """contrib/cni/nftnet.conflist as shipped, but for the version, the network's name, a
    subnet of the test's own, host-local's leases in the test's directory and the state
    directory; ``nftnet`` sets nftnet-cni's keys."""
    chain = json.loads(CONFLIST.read_text())
    bridge, mine = chain["plugins"]
    assert (bridge["type"], mine["type"]) == ("bridge", "nftnet-cni")
    bridge["bridge"] = "cni-front"
    bridge["ipam"] |= {"dataDir": str(host.ipam_data), "ranges": [
        [{"subnet": "172.31.50.0/24"}], [{"subnet": "fd00:50::/64"}]]}
    mine |= {"icc": False, "stateDir": "/run/nftnet-test", **nftnet}
    return {**chain, "cniVersion": version, "name": "front"}


def fake(host: CniHost) -> Path:
    record = host.dir / "engine.json"
    host.install("nftnet-cni", fake_nftnet_cni(record))
    return record


def global_addresses(addr: list[dict[str, Any]]) -> dict[str, str]:
    """``ip -j addr`` of one link: family -> address/prefix of scope global."""
    return {a["family"]: f"{a['local']}/{a['prefixlen']}" for a in addr[0]["addr_info"]
            if a.get("scope") == "global"}


def assert_matches_kernel(host: CniHost, box: Sandbox, call: dict[str, Any]) -> None:
    """What the plugin extracted from prevResult is what the kernel holds."""
    network, endpoint = call["network"], call["endpoint"]
    inside = global_addresses(box.ip("addr", "show", "dev", "eth0"))
    assert (endpoint["ipv4"], endpoint["ipv6"]) == \
        tuple(str(ip_interface(inside[f]).ip) for f in ("inet", "inet6"))
    assert (network["subnet4"], network["subnet6"]) == \
        tuple(str(ip_interface(inside[f]).network) for f in ("inet", "inet6"))
    peer = box.ip("link", "show", "dev", "eth0")[0]["link_index"]
    [veth] = [link for link in host.ip("link", "show") if link["ifindex"] == peer]
    assert endpoint["host_ifname"] == veth["ifname"]
    assert network["bridge"] == veth["master"]
    [bridge] = host.ip("-d", "link", "show", "dev", network["bridge"])
    assert bridge["linkinfo"]["info_kind"] == "bridge"
    gateways = global_addresses(host.ip("addr", "show", "dev", network["bridge"]))
    assert (network["gateway4"], network["gateway6"]) == \
        tuple(str(ip_interface(gateways[f]).ip) for f in ("inet", "inet6"))
    assert endpoint["netns"] == box.path


def host_links(host: CniHost) -> set[str]:
    return {link["ifname"] for link in host.ip("link", "show")}


@pytest.mark.parametrize("version", ["0.4.0", "1.0.0"])
def test_a_chain_hands_nftnet_what_the_kernel_holds(cni_host: CniHost, version: str) -> None:
    record = fake(cni_host)
    chain = conflist(cni_host, version)
    boxes = {"c1": cni_host.sandbox(), "c2": cni_host.sandbox()}
    results = {}
    for cid, ports in (("c1", PORTS), ("c2", [])):
        bridge_out, mine = run_chain(cni_host, chain, "ADD", cid, boxes[cid],
                                     capability_args={"portMappings": ports})
        assert mine == bridge_out  # the bridge plugin's result, passed on unchanged
        results[cid] = mine
    adds = [c for c in FakeEngine(record).calls if c["call"] == "add"]
    assert [a["endpoint"]["attachment"]["container_id"] for a in adds] == ["c1", "c2"]
    for call in adds:
        cid = call["endpoint"]["attachment"]["container_id"]
        assert_matches_kernel(cni_host, boxes[cid], call)
        assert call["owner"] == "cni" and call["state_dir"] == "/run/nftnet-test"
        assert (call["network"]["icc"], call["network"]["masquerade"],
                call["network"]["internal"]) == (False, True, False)
    assert adds[0]["ports"] == [
        {"host_port": 8080, "container_port": 80, "protocol": "tcp", "host_ip": "127.0.0.1"},
        {"host_port": 5353, "container_port": 53, "protocol": "udp", "host_ip": None}]
    assert adds[1]["ports"] == []
    assert adds[0]["endpoint"]["host_ifname"] != adds[1]["endpoint"]["host_ifname"]

    assert run_chain(cni_host, chain, "CHECK", "c2", boxes["c2"], cached=results["c2"]) == \
        [None, None]
    c1_veth = adds[0]["endpoint"]["host_ifname"]
    assert run_chain(cni_host, chain, "DEL", "c1", boxes["c1"], cached=results["c1"]) == \
        [None, None]
    assert c1_veth not in host_links(cni_host)
    assert "eth0" not in {link["ifname"] for link in boxes["c1"].ip("link", "show")}
    run_chain(cni_host, chain, "DEL", "c1", boxes["c1"], cached=results["c1"])  # again
    run_chain(cni_host, chain, "DEL", "c1", None)  # no netns, no prevResult
    engine = FakeEngine(record)
    assert [c["call"] for c in engine.calls][-4:] == ["check", "delete", "delete", "delete"]
    assert list(engine.held) == ["front/c2/eth0"]


def test_gc_of_the_chain_keeps_only_the_valid_attachments(cni_host: CniHost) -> None:
    record = fake(cni_host)
    chain = conflist(cni_host, "1.0.0")
    for cid in ("c1", "c2"):
        run_chain(cni_host, chain, "ADD", cid, cni_host.sandbox())
    gc = {**chain["plugins"][1], "cniVersion": "1.1.0", "name": "front",
          "cni.dev/valid-attachments": [{"containerID": "c2", "ifname": "eth0"}],
          "cni.dev/attachments": [{"containerID": "c2", "ifname": "eth0"}]}
    assert cni_host.exec("nftnet-cni", "GC", gc) is None
    assert list(FakeEngine(record).held) == ["front/c2/eth0"]


def test_a_refused_add_is_an_error_json_and_del_cleans_up(cni_host: CniHost) -> None:
    fake(cni_host)
    chain = conflist(cni_host, "1.0.0", icc="no")
    box = cni_host.sandbox()
    with pytest.raises(CniFailure) as failure:
        run_chain(cni_host, chain, "ADD", "c1", box)
    assert failure.value.returncode == 2 and failure.value.error is not None
    assert failure.value.error["code"] == 7 and "icc" in failure.value.error["msg"]
    veths = {link["ifname"] for link in cni_host.ip("link", "show", "type", "veth")}
    assert len(veths) == 1  # what bridge made; the runtime now runs DEL, as libcni does
    run_chain(cni_host, chain, "DEL", "c1", box)
    assert not cni_host.ip("link", "show", "type", "veth")
