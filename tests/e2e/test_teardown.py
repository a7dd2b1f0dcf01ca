"""teardown leaves nothing of nftnet's, and everything of anyone else's: other tables, adopted
bridges, IP forwarding it did not switch on. The user chain's rules are saved first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.lab import Lab
from tests.nftnet_run import nftnet, write_config

pytestmark = pytest.mark.e2e

CONFIG = {
    "version": 1,
    "networks": {"front": {"bridge": "br-front", "subnets": ["172.31.1.0/24", "fd00:1::/64"]},
                 "adopted": {"bridge": "br-adopted", "subnet": "172.31.2.0/24"}},
    "endpoints": {"web": {"network": "front", "ipv4": "172.31.1.10", "publish": ["8080:80"]}},
}
OTHER = "table inet other { chain c { type filter hook forward priority 0; }; }"


def links(lab: Lab) -> set[str]:
    return {link["ifname"] for link in json.loads(lab.run(lab.host, "ip", "-j", "link").stdout)}


def tables(lab: Lab) -> list[str]:
    return lab.run(lab.host, "nft", "list", "tables").stdout.split()


def other(lab: Lab) -> str:
    return lab.run(lab.host, "nft", "list", "table", "inet", "other").stdout


def applied(lab: Lab, tmp: Path) -> Path:
    """nftnet applied beside an adopted bridge and another table, with a runtime endpoint and
    a hand-added user rule; the state directory."""
    lab.bridge("br-adopted")
    lab.run(lab.host, "nft", "-f", "-", input=OTHER)
    state = tmp / "state"
    nftnet(lab, "apply", "-f", str(write_config(tmp, CONFIG)), state_dir=state)
    nftnet(lab, "endpoint", "attach", "one", "--network", "front", "--netns",
           lab.empty_netns("c1"), state_dir=state)
    lab.run(lab.host, "nft", "add", "rule", "inet", "nftnet", "user", "ip", "saddr",
            "10.9.9.9", "drop")
    return state


def test_teardown_leaves_nothing(lab: Lab, tmp_path: Path) -> None:
    before = links(lab)
    state = applied(lab, tmp_path)
    other_before = other(lab)
    veths = {n for n in links(lab) - before if n.startswith("nv")}
    assert veths and lab.sysctl(lab.host, "net/ipv4/ip_forward") == "1"
    refused = nftnet(lab, "teardown", state_dir=state, check=False)  # stdin is no terminal
    assert refused.returncode == 2
    assert "add --yes" in refused.stderr
    assert "nftnet" in tables(lab)

    out = nftnet(lab, "teardown", "--yes", state_dir=state).stdout
    for line in ("bridges nftnet created: br-front", "IPv4 forwarding, which nftnet switched on",
                 "table inet nftnet, with the 1 rule(s) of its user chain", f"state in {state}"):
        assert line in out
    saved = Path(out.split("rule(s) to ")[1].split()[0])
    assert saved.read_text().splitlines()[-1] == "add rule inet nftnet user ip saddr 10.9.9.9 drop"

    assert tables(lab) == ["table", "inet", "other"]
    assert other(lab) == other_before
    assert links(lab) == before | {"br-adopted"}  # the adopted bridge stays
    assert lab.sysctl(lab.host, "net/ipv4/ip_forward") == "0"
    assert not state.exists()
    again = nftnet(lab, "teardown", "--yes", state_dir=state)
    assert again.stdout.strip() == "nothing to tear down"
    assert not state.exists()

    nftnet(lab, "apply", "-f", str(write_config(tmp_path, CONFIG)), state_dir=state)
    lab.run(lab.host, "nft", "-f", str(saved))
    assert "ip saddr 10.9.9.9 drop" in lab.run(lab.host, "nft", "list", "chain", "inet",
                                               "nftnet", "user").stdout


def test_keep_bridges(lab: Lab, tmp_path: Path) -> None:
    state = applied(lab, tmp_path)
    kept = links(lab)
    out = nftnet(lab, "teardown", "--yes", "--keep-bridges", state_dir=state).stdout
    assert "kept (--keep-bridges): br-front nv" in out
    assert links(lab) == kept
    assert tables(lab) == ["table", "inet", "other"]
