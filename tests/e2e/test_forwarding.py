"""Forwarding that nftnet switches on is for nftnet's bridges only; a host that already
forwarded keeps forwarding as before. A plain bridge stands in for libvirt or a VPN."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.lab import Lab
from tests.nftnet_run import nftnet, write_config

pytestmark = pytest.mark.e2e

CONFIG = {
    "version": 1,
    "networks": {"front": {"bridge": "br-front", "subnet": "172.31.1.0/24"}},
    "endpoints": {"web": {"network": "front", "ipv4": "172.31.1.10", "publish": ["8080:80"]}},
}


def build(lab: Lab, tmp: Path, forwarding_before: str) -> tuple[str, str]:
    lab.sysctl(lab.host, "net/ipv4/ip_forward", forwarding_before)
    lab.bridge("br-other", ["10.99.0.1/24"])
    vm = lab.container("vm", "br-other", "10.99.0.2", "10.99.0.1")
    nftnet(lab, "apply", "-f", str(write_config(tmp, CONFIG)), state_dir=tmp / "state")
    web = lab.container("web", "br-front", "172.31.1.10", "172.31.1.1")
    for ns in (vm, web):
        lab.serve(ns, 80)
    lab.serve(lab.lan, 7000)
    lab.lan_route("10.99.0.0/24")
    return vm, web


def test_forwarding_switched_on_by_nftnet_stays_for_nftnet(lab: Lab, tmp_path: Path) -> None:
    vm, _ = build(lab, tmp_path, "0")
    assert lab.sysctl(lab.host, "net/ipv4/ip_forward") == "1"
    assert lab.probe(lab.lan, Lab.HOST_IP4, 8080) == Lab.LAN_IP4
    assert lab.probe(lab.lan, "10.99.0.2", 80) is None
    assert lab.probe(vm, Lab.LAN_IP4, 7000) is None


def test_host_that_forwarded_keeps_forwarding(lab: Lab, tmp_path: Path) -> None:
    vm, _ = build(lab, tmp_path, "1")
    assert lab.probe(lab.lan, Lab.HOST_IP4, 8080) == Lab.LAN_IP4
    assert lab.probe(lab.lan, "10.99.0.2", 80) == Lab.LAN_IP4
    assert lab.probe(vm, Lab.LAN_IP4, 7000) == "10.99.0.2"
