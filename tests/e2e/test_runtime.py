"""Runtime commands with real namespaces and real traffic: attach, publish, detach, clashes,
and what a later `apply -f` does to runtime changes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.lab import Lab
from tests.nftnet_run import nftnet, write_config

pytestmark = pytest.mark.e2e

CONFIG = {
    "version": 1,
    "networks": {"front": {"bridge": "br-front", "subnets": ["172.31.1.0/24", "fd00:1::/64"]}},
    "endpoints": {"static": {"network": "front", "ipv4": "172.31.1.100",
                             "publish": ["7100:80"]}},
}


class Host:
    def __init__(self, lab: Lab, tmp: Path) -> None:
        self.lab, self.tmp = lab, tmp

    def __call__(self, *args: str, check: bool = True):
        return nftnet(self.lab, *args, state_dir=self.tmp / "state", check=check)

    def elements(self, name: str) -> str:
        return self.lab.run(self.lab.host, "nft", "list", "map", "inet", "nftnet", name).stdout

    def addrs(self, ns: str) -> set[str]:
        links = json.loads(self.lab.run(ns, "ip", "-j", "addr", "show", "eth0").stdout)
        return {a["local"] for a in links[0]["addr_info"] if a.get("scope") == "global"}


@pytest.fixture
def host(lab: Lab, tmp_path: Path) -> Host:
    h = Host(lab, tmp_path)
    h("apply", "-f", str(write_config(tmp_path, CONFIG)))
    return h


def test_attach_publish_detach(host: Host, lab: Lab) -> None:
    c1, c2 = lab.empty_netns("c1"), lab.empty_netns("c2")
    out = host("endpoint", "attach", "one", "--network", "front", "--netns", c1,
               "-p", "8080:80").stdout
    assert "172.31.1.2/24" in out
    host("endpoint", "attach", "two", "--network", "front", "--netns", c2)
    assert host.addrs(c1) == {"172.31.1.2", "fd00:1::2"}
    assert host.addrs(c2) == {"172.31.1.3", "fd00:1::3"}
    routes = lab.run(c1, "ip", "route", "show", "default").stdout
    assert "via 172.31.1.1" in routes
    for ns in (c1, c2):
        lab.serve(ns, 80)
    lab.settle()
    assert lab.probe(lab.lan, Lab.HOST_IP4, 8080) == Lab.LAN_IP4
    assert lab.probe(lab.lan, Lab.HOST_IP6, 8080) == Lab.LAN_IP6
    assert lab.probe(c1, Lab.HOST_IP4, 8080) is not None  # hairpin on the attached port
    assert lab.probe(c2, "172.31.1.2", 80) == "172.31.1.3"

    host("port", "publish", "two", "9090:80", "[fd77::1]:9443:80")
    assert lab.probe(lab.lan, Lab.HOST_IP4, 9090) == Lab.LAN_IP4
    assert lab.probe(lab.lan, Lab.HOST_IP6, 9443) == Lab.LAN_IP6
    host("port", "unpublish", "two", "9090:80")
    assert lab.probe(lab.lan, Lab.HOST_IP4, 9090) is None

    host("endpoint", "detach", "one")
    host("endpoint", "detach", "two")
    assert lab.probe(lab.lan, Lab.HOST_IP4, 8080) is None
    assert "nv" not in lab.run(lab.host, "ip", "-br", "link").stdout
    for name in ("pubany4-addr", "pubany6-addr", "pub6-addr"):
        assert "172.31.1.2" not in host.elements(name)
        assert "fd00:1::" not in host.elements(name)
    c3 = lab.empty_netns("c3")
    host("endpoint", "attach", "three", "--network", "front", "--netns", c3)
    assert host.addrs(c3) == {"172.31.1.2", "fd00:1::2"}  # the freed address is reused


def test_a_host_port_is_published_once(host: Host, lab: Lab) -> None:
    c1 = lab.empty_netns("c1")
    host("endpoint", "attach", "one", "--network", "front", "--netns", c1, "--ipv6", "auto")
    proc = host("port", "publish", "one", "7100:80", check=False)
    assert proc.returncode == 2
    assert "already published by endpoint static (7100:80)" in proc.stderr
    proc = host("endpoint", "attach", "dup", "--network", "front", "--netns", c1,
                "--ipv4", "172.31.1.100", check=False)
    assert proc.returncode == 2


def test_runtime_changes_and_a_later_apply(host: Host, lab: Lab, tmp_path: Path) -> None:
    """Runtime endpoints and their ports survive apply -f; the file's own declarations are
    made true again (a declared port unpublished at runtime comes back)."""
    c1 = lab.empty_netns("c1")
    host("endpoint", "attach", "one", "--network", "front", "--netns", c1, "-p", "8080:80")
    host("port", "unpublish", "static", "7100:80")
    assert "7100" not in host.elements("pubany4-port")
    changed = json.loads(json.dumps(CONFIG))
    changed["endpoints"]["static"]["publish"] = ["7100:80", "7200:80"]
    host("apply", "-f", str(write_config(tmp_path, changed, "changed.yaml")))
    ports = host.elements("pubany4-port")
    assert "7100" in ports
    assert "7200" in ports
    assert "8080" in ports
    lab.serve(c1, 80)
    lab.settle()
    assert lab.probe(lab.lan, Lab.HOST_IP4, 8080) == Lab.LAN_IP4
    clash = json.loads(json.dumps(CONFIG))
    clash["endpoints"]["one"] = {"network": "front", "ipv4": "172.31.1.50"}
    proc = host("apply", "-f", str(write_config(tmp_path, clash, "clash.yaml")), check=False)
    assert proc.returncode == 2
    assert "endpoint one was attached at runtime" in proc.stderr


def test_network_create_and_rm(host: Host, lab: Lab) -> None:
    host("network", "create", "extra", "--subnet", "172.31.9.0/24", "--no-icc")
    c1 = lab.empty_netns("c1")
    host("endpoint", "attach", "x", "--network", "extra", "--netns", c1)
    proc = host("network", "rm", "extra", check=False)
    assert proc.returncode == 1
    assert "still has endpoints: x" in proc.stderr
    host("network", "rm", "extra", "--force")
    assert "nft-extra" not in lab.run(lab.host, "ip", "-br", "link").stdout
    overlap = host("network", "create", "bad", "--subnet", "172.31.1.128/25", check=False)
    assert overlap.returncode == 2
    assert "overlaps" in overlap.stderr


def test_attach_by_pid(host: Host, lab: Lab) -> None:
    ns = lab.empty_netns("bypid")
    sleeper = subprocess.Popen(["ip", "netns", "exec", ns, "sleep", "60"])
    try:
        host("endpoint", "attach", "p", "--network", "front", "--pid", str(sleeper.pid),
             "--ipv4", "172.31.1.77", "--ipv6", "fd00:1::77")
        assert host.addrs(ns) == {"172.31.1.77", "fd00:1::77"}
        missing = host("endpoint", "attach", "q", "--network", "front", "--pid", "999999",
                       check=False)
        assert missing.returncode == 2
        assert "no network namespace at /proc/999999/ns/net" in missing.stderr
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_moved_network_leaves_its_old_subnets_to_another(host: Host, lab: Lab,
                                                          tmp_path: Path) -> None:
    """Re-applied on new subnets, br-front keeps only the new gateways: a network on the old
    subnets is routed out of its own bridge, so that its container reaches its gateway and
    the LAN its published port."""
    moved = json.loads(json.dumps(CONFIG))
    moved["networks"]["front"]["subnets"] = ["172.31.5.0/24", "fd00:5::/64"]
    moved["endpoints"]["static"]["ipv4"] = "172.31.5.100"
    moved["networks"]["old"] = {"bridge": "br-old", "subnets": ["172.31.1.0/24", "fd00:1::/64"]}
    host("apply", "-f", str(write_config(tmp_path, moved, "moved.yaml")))
    c1 = lab.empty_netns("c1")
    host("endpoint", "attach", "one", "--network", "old", "--netns", c1, "-p", "8080:80")
    lab.serve(lab.host, 7000)
    lab.serve(c1, 80)
    assert lab.probe(c1, "172.31.1.1", 7000) == "172.31.1.2"
    assert lab.probe(c1, "fd00:1::1", 7000) == "fd00:1::2"
    assert lab.probe(lab.lan, Lab.HOST_IP4, 8080) == Lab.LAN_IP4
    assert lab.probe(lab.lan, Lab.HOST_IP6, 8080) == Lab.LAN_IP6
