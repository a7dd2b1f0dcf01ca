"""The systemd units of contrib/systemd: their ordering, and the very commands they run, run in
a throwaway host namespace after what nftables.service does to the ruleset (a flush)."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path
from subprocess import CompletedProcess

import pytest

from tests.lab import Lab
from tests.nftnet_run import nftnet, write_config

pytestmark = pytest.mark.e2e

UNITS = Path(__file__).resolve().parents[2] / "contrib/systemd"
CONFIG = {
    "version": 1,
    "networks": {"front": {"bridge": "br-front", "subnet": "172.31.1.0/24"}},
    "endpoints": {"web": {"network": "front", "ipv4": "172.31.1.10", "publish": ["8080:80"]}},
}


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((UNITS / name).read_text())
    return parser


def run_exec(lab: Lab, state: Path, name: str, key: str) -> CompletedProcess[str]:
    """Run the unit's Exec line as systemd would, with the test's state directory."""
    argv = shlex.split(unit(name)["Service"][key])
    assert Path(argv[0]).name == "nftnet", argv
    return nftnet(lab, *argv[1:], state_dir=state, check=False)


def test_ordering() -> None:
    boot = unit("nftnet-restore.service")["Unit"]
    assert {"nftables.service", "network-pre.target"} <= set(boot["After"].split())
    assert {"docker.service", "containerd.service", "podman.service",
            "network-online.target"} <= set(boot["Before"].split())
    bound = unit("nftnet-nftables.service")
    assert bound["Unit"]["PartOf"] == "nftables.service"
    assert bound["Unit"]["ReloadPropagatedFrom"] == "nftables.service"
    assert "nftables.service" in bound["Unit"]["After"].split()
    assert bound["Install"]["WantedBy"] == "nftables.service"
    assert unit("nftnet-check.timer")["Install"]["WantedBy"] == "timers.target"
    daemon = unit("nftnet-daemon.service")
    assert {"docker.service", "nftnet-restore.service"} <= set(daemon["Unit"]["After"].split())
    # bound to nothing that restarts or stops dockerd, nor the daemon with it
    assert not {"Requires", "BindsTo", "PartOf", "Requisite", "Wants"} & set(daemon["Unit"])
    assert shlex.split(daemon["Service"]["ExecStart"])[1:] == ["daemon", "--docker"]
    assert set(daemon["Service"]["RestartPreventExitStatus"].split()) == {"2", "4", "5"}


def test_unit_commands_after_a_flush(lab: Lab, tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert run_exec(lab, state, "nftnet-restore.service", "ExecStart").returncode == 0
    nftnet(lab, "apply", "-f", str(write_config(tmp_path, CONFIG)), state_dir=state)
    web = lab.container("web", "br-front", "172.31.1.10", "172.31.1.1")
    lab.serve(web, 80)
    lab.run(lab.host, "nft", "add", "rule", "inet", "nftnet", "user", "tcp", "dport", "23",
            "drop")
    # systemctl restart nftables: nftnet-nftables.service stops first, then the flush.
    assert run_exec(lab, state, "nftnet-nftables.service", "ExecStop").returncode == 0
    lab.run(lab.host, "nft", "flush", "ruleset")
    assert lab.probe(lab.lan, Lab.HOST_IP4, 8080) is None
    assert run_exec(lab, state, "nftnet-check.service", "ExecStart").returncode == 1
    for key in ("ExecStart", "ExecReload"):
        started = run_exec(lab, state, "nftnet-nftables.service", key)
        assert started.returncode == 0, started.stderr
        assert lab.probe(lab.lan, Lab.HOST_IP4, 8080) == Lab.LAN_IP4
        lab.run(lab.host, "nft", "flush", "ruleset")  # as a reload of /etc/nftables.conf does
    assert run_exec(lab, state, "nftnet-restore.service", "ExecStart").returncode == 0
    assert lab.probe(lab.lan, Lab.HOST_IP4, 8080) == Lab.LAN_IP4
    assert "tcp dport 23 drop" in lab.run(lab.host, "nft", "list", "chain", "inet", "nftnet",
                                          "user").stdout
    assert run_exec(lab, state, "nftnet-check.service", "ExecStart").returncode == 0
