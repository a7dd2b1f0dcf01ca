"""End to end with a real runtime: Podman 4.3 with its CNI backend runs the shipped conflist
(bridge + host-local + nftnet-cni, nftnet's real engine) in a Lab's host namespace;
``podman run -p 8080:80`` is reachable from the LAN with the client's address (IPv4 and IPv6),
and ``podman rm -f`` leaves nothing behind in nftnet's state or its maps."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cni_env import CniHost, conflist, nftnet_cni_installed
from tests.image import HTTPD
from tests.lab import Lab
from tests.nftnet_run import nftnet
from tests.podman_env import IMAGE, Podman, unavailable_reason

pytestmark = pytest.mark.e2e

SUBNETS = ("172.31.80.0/24", "fd00:80::/64")


@pytest.fixture
def podman(lab: Lab, tmp_path: Path) -> Iterator[Podman]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    host = CniHost(tmp_path / "cni", netns=lab.host)
    host.install("nftnet-cni", nftnet_cni_installed())
    chain = conflist(host, "nftnet", "cni-podman1", SUBNETS, tmp_path / "state")
    with Podman(lab.host, host.bin, {"nftnet": chain}) as pm:
        yield pm


def fetch(lab: Lab, address: str) -> str:
    """The client address the container's CGI saw, fetched from the LAN namespace."""
    url = f"http://{f'[{address}]' if ':' in address else address}:8080/cgi-bin/ip"
    out = lab.run(lab.lan, "busybox", "timeout", "4", "wget", "-qO-", url).stdout.strip()
    return out.strip("[]").removeprefix("::ffff:")


def listed(lab: Lab, state: Path, kind: str) -> list[dict[str, object]]:
    return json.loads(nftnet(lab, kind, "ls", "-o", "json", state_dir=state).stdout)


def test_podman_run_publishes_through_nftnet_and_rm_leaves_nothing(
        podman: Podman, lab: Lab, tmp_path: Path) -> None:
    state = tmp_path / "state"
    cid = podman.run("--name", "web", "--network", "nftnet", "-p", "8080:80", IMAGE, *HTTPD)
    [endpoint] = listed(lab, state, "endpoint")
    assert endpoint["name"] == f"nftnet.{cid}.eth0" and endpoint["source"] == "cni"
    assert endpoint["network"] == "cni-nftnet" and endpoint["ports"] == 1
    assert [(n["name"], n["bridge"], n["source"]) for n in listed(lab, state, "network")] == \
        [("cni-nftnet", "cni-podman1", "cni")]
    lab.settle()
    assert fetch(lab, Lab.HOST_IP4) == Lab.LAN_IP4
    assert fetch(lab, Lab.HOST_IP6) == Lab.LAN_IP6
    assert nftnet(lab, "check", state_dir=state).returncode == 0

    podman.podman("rm", "-f", "-t", "0", "web")
    assert listed(lab, state, "endpoint") == [] and listed(lab, state, "network") == []
    maps = lab.run(lab.host, "nft", "-j", "list", "table", "inet", "nftnet").stdout
    assert all("elem" not in o.get("map", {}) for o in json.loads(maps)["nftables"])
    assert nftnet(lab, "check", state_dir=state).returncode == 0
    assert podman.podman("ps", "-aq").stdout.strip() == b""
