"""Exports load with iptables-restore / ip6tables-restore, and iptables-save reads back the same
rules, in a throwaway network namespace that is deleted even on failure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from compat.cli import load_hints
from compat.iptables_save.export import export_save
from compat.iptables_save.importer import import_rules
from compat.iptables_save.parse import parse_save
from nftnet.config.load import parse_config
from nftnet.config.model import Config
from tests.kernel.conftest import Netns
from tests.unit.test_compat_export import configs

pytestmark = pytest.mark.kernel

REF = Path(__file__).resolve().parents[3] / "shared/reference/docker-20.10"
SCENARIOS = [p.name for p in sorted(REF.glob("[0-9]*")) if not p.name.startswith("12")] \
    if REF.is_dir() else []
MIXED = {"version": 1, "networks": {
    "front": {"bridge": "br-front", "subnets": ["172.31.1.0/24", "fd00:1::/64"]},
    "back": {"bridge": "br-back", "subnets": ["172.31.2.0/24", "fd00:2::/64"], "internal": True,
             "icc": False},
    "quiet": {"bridge": "br-quiet", "subnets": ["172.31.3.0/24"], "masquerade": False}},
    "endpoints": {"web": {"network": "front", "ipv4": "172.31.1.10", "ipv6": "fd00:1::10",
                          "publish": ["8080:80", "127.0.0.1:8081:81", "9000-9002:9000-9002",
                                      "5353:53/udp", "7000:7000/sctp", "[fd00::1]:8443:443"]},
                  "q": {"network": "quiet", "ipv4": "172.31.3.7", "publish": ["2222:22"]}},
    "user_rules": ['iifname "eth0" ip saddr != 192.168.1.1 drop', "ip6 saddr fd00::/8 accept",
                   "tcp dport 22 accept", 'ct state established,related accept']}


def tables(text: str) -> dict[str, list[str]]:
    """Rule and chain lines per table: what iptables-save prints, minus comments."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.startswith("*"):
            current = out.setdefault(line[1:], [])
        elif line and not line.startswith("#") and line != "COMMIT":
            current.append(line)
    return out


def assert_loads_back(netns: Netns, config: Config, family: int) -> None:
    tool = "iptables" if family == 4 else "ip6tables"
    text, _ = export_save(config, family)  # type: ignore[arg-type]
    netns.run(f"{tool}-restore", input=text)
    saved = tables(netns.run(f"{tool}-save"))
    for name, lines in tables(text).items():  # a table the export leaves out keeps old rules
        assert saved[name] == lines, f"{tool} table {name}"


@pytest.mark.skipif(not SCENARIOS, reason=f"no reference captures in {REF}")
def test_reference_exports_load(netns: Netns) -> None:
    for scenario in SCENARIOS:
        d = REF / scenario
        docs = ",".join(str(d / f) for f in ("networks.json", "containers.json")
                        if (d / f).exists())
        result = import_rules(parse_save((d / "iptables-save.txt").read_text()), None,
                              load_hints(docs))
        assert_loads_back(netns, parse_config(json.dumps(result.config)), 4)


def test_both_families_with_sctp_and_internal(netns: Netns) -> None:
    config = parse_config(json.dumps(MIXED))
    for family in (4, 6):
        assert_loads_back(netns, config, family)


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=configs())
def test_any_config_exports_loadable_rules(netns: Netns, data: dict) -> None:
    config = parse_config(json.dumps(data))
    for family in (4, 6):
        assert_loads_back(netns, config, family)
