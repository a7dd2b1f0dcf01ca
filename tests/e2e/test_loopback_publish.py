"""A port published on 127.0.0.1 is the host's alone (the CVE-2020-8558 class): a LAN machine
that sends packets for 127.0.0.1 to the host never reaches the container, even where the host
has route_localnet=1 on its LAN interface (as kube-proxy sets it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.lab import Lab
from tests.nftnet_run import nftnet, write_config

pytestmark = pytest.mark.e2e

CONFIG = {
    "version": 1,
    "networks": {"front": {"bridge": "br-front", "subnet": "172.31.1.0/24"}},
    "endpoints": {"web": {"network": "front", "ipv4": "172.31.1.10",
                          "publish": ["127.0.0.1:8081:81"]}},
}


def test_lan_cannot_reach_loopback_published_port(lab: Lab, tmp_path: Path) -> None:
    nftnet(lab, "apply", "-f", str(write_config(tmp_path, CONFIG)), state_dir=tmp_path / "s")
    web = lab.container("web", "br-front", "172.31.1.10", "172.31.1.1")
    lab.serve(web, 81)
    assert lab.probe(lab.host, "127.0.0.1", 8081) is not None
    # The LAN machine forgets its own loopback and routes 127.0.0.1 to the host.
    lab.run(lab.lan, "ip", "addr", "flush", "dev", "lo")
    lab.run(lab.lan, "ip", "route", "add", "127.0.0.1/32", "via", Lab.HOST_IP4, "dev", "eth0")
    for key in ("net/ipv4/conf/all/route_localnet", "net/ipv4/conf/eth0/route_localnet"):
        lab.sysctl(lab.lan, key, "1")
    assert lab.probe(lab.lan, "127.0.0.1", 8081) is None
    lab.sysctl(lab.host, "net/ipv4/conf/eth0/route_localnet", "1")
    assert lab.probe(lab.lan, "127.0.0.1", 8081) is None
    # Negative control: without nftnet's 127.0.0.0/8 guard the same packets get through.
    lab.run(lab.host, "nft", "flush", "chain", "inet", "nftnet", "nat-prerouting")
    lab.run(lab.host, "nft", "add", "rule", "inet", "nftnet", "nat-prerouting", "fib", "daddr",
            "type", "local", "jump", "published")
    assert lab.probe(lab.lan, "127.0.0.1", 8081) == Lab.LAN_IP4
