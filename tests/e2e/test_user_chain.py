"""The user chain has DOCKER-USER semantics: evaluated first; accept skips nftnet's drops,
drop drops, return (or the end of the chain) goes on to nftnet's rules."""

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


def user(lab: Lab, *rule: str) -> None:
    lab.run(lab.host, "nft", "add", "rule", "inet", "nftnet", "user", *rule)


def test_accept_drop_return(lab: Lab, tmp_path: Path) -> None:
    nftnet(lab, "apply", "-f", str(write_config(tmp_path, CONFIG)), state_dir=tmp_path / "s")
    web = lab.container("web", "br-front", "172.31.1.10", "172.31.1.1")
    lab.serve(web, 22)
    lab.serve(web, 80)
    lab.lan_route("172.31.1.0/24")
    assert lab.probe(lab.lan, "172.31.1.10", 22) is None  # nftnet: no direct routing

    user(lab, "ip", "saddr", Lab.LAN_IP4, "tcp", "dport", "22", "return")
    assert lab.probe(lab.lan, "172.31.1.10", 22) is None  # return: nftnet's drop still applies

    lab.run(lab.host, "nft", "flush", "chain", "inet", "nftnet", "user")
    user(lab, "ip", "saddr", Lab.LAN_IP4, "tcp", "dport", "22", "accept")
    assert lab.probe(lab.lan, "172.31.1.10", 22) == Lab.LAN_IP4  # accept skips nftnet's drop

    user(lab, "iifname", "eth0", "tcp", "dport", "80", "drop")
    assert lab.probe(lab.lan, Lab.HOST_IP4, 8080) is None  # drop is final
    nftnet(lab, "apply", "-f", str(write_config(tmp_path, CONFIG)), state_dir=tmp_path / "s")
    assert lab.probe(lab.lan, Lab.HOST_IP4, 8080) is None  # hand-added rules survive apply
