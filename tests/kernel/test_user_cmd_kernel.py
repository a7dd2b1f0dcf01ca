"""``nftnet user`` and iptables user_rules against the real kernel, in a throwaway namespace."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.kernel.conftest import Netns
from tests.kernel.test_apply_kernel import apply, config, ruleset, user_rules
from tests.nftnet_run import nftnet

pytestmark = pytest.mark.kernel

DROP_BUT_ONE = ["-i", "eth0", "!", "-s", "192.168.1.1", "-j", "DROP"]


def user(ns: Netns, tmp: Path, *args: str, rc: int = 0) -> subprocess.CompletedProcess[str]:
    proc = nftnet(ns, "user", *args, state_dir=tmp / "state", check=False)
    assert proc.returncode == rc, proc.stdout + proc.stderr
    return proc


def test_refused_before_apply(netns: Netns, tmp_path: Path) -> None:
    for args in (["ls"], ["add", "drop"], ["rm", "1"]):
        assert "run nftnet apply first" in user(netns, tmp_path, *args, rc=1).stderr


def test_add_ls_rm(netns: Netns, tmp_path: Path) -> None:
    apply(netns, tmp_path, config())
    assert user(netns, tmp_path, "ls").stdout == ""
    out = user(netns, tmp_path, "add", "tcp", "dport", "22", "drop").stdout
    assert out == "added as rule 1: tcp dport 22 drop\n"
    out = user(netns, tmp_path, "add", "--iptables", "--position", "1", *DROP_BUT_ONE).stdout
    assert out == 'added as rule 1: iifname "eth0" ip saddr != 192.168.1.1 drop\n'
    user(netns, tmp_path, "add", "--iptables", "--family=ip6", "-s fd00::/8 -j ACCEPT")
    user(netns, tmp_path, "add", "--position", "2", "--", 'meta l4proto udp counter comment "x y"')
    assert user(netns, tmp_path, "ls").stdout.splitlines() == [
        '  1  iifname "eth0" ip saddr != 192.168.1.1 drop',
        '  2  meta l4proto udp counter packets 0 bytes 0 comment "x y"',
        "  3  tcp dport 22 drop",
        "  4  ip6 saddr fd00::/8 accept",
    ]
    assert user(netns, tmp_path, "rm", "2").stdout.startswith("removed rule 2: meta l4proto udp")
    listed = json.loads(user(netns, tmp_path, "ls", "-o", "json").stdout)
    assert [(r["position"], r["rule"]) for r in listed] == [
        (1, 'iifname "eth0" ip saddr != 192.168.1.1 drop'), (2, "tcp dport 22 drop"),
        (3, "ip6 saddr fd00::/8 accept")]
    assert user_rules(netns) == [r["rule"] for r in listed]


@pytest.mark.parametrize(("args", "expected"), [
    (["ip", "saddr", "1.2.3.4", "dorp"], "RULE: nft refuses 'ip saddr 1.2.3.4 dorp':\nError:"),
    (["--iptables", "-m", "recent", "--set", "-j", "DROP"], "RULE: unsupported match '-m recent'"),
    (["--family", "ip6", "drop"], "RULE: family applies to translated rules only"),
    (["drop;", "flush", "ruleset"], "RULE: one rule at a time"),
    (["--position", "3", "drop"], "--position 3: the user chain has 1 rule(s)"),
])
def test_add_refused_changes_nothing(netns: Netns, tmp_path: Path, args: list[str],
                                     expected: str) -> None:
    apply(netns, tmp_path, config())
    user(netns, tmp_path, "add", "tcp dport 22 drop")
    before = ruleset(netns)
    assert expected in user(netns, tmp_path, "add", *args, rc=2).stderr
    assert ruleset(netns) == before


def test_rm_out_of_range(netns: Netns, tmp_path: Path) -> None:
    apply(netns, tmp_path, config())
    assert "no rule 1: the user chain has 0 rule(s)" in user(netns, tmp_path, "rm", "1",
                                                               rc=2).stderr


def test_note_when_the_config_manages_the_chain(netns: Netns, tmp_path: Path) -> None:
    apply(netns, tmp_path, config(user_rules=[]))
    assert "next `nftnet apply` puts the user chain back" in user(netns, tmp_path, "add",
                                                                  "drop").stderr


def test_apply_iptables_user_rules(netns: Netns, tmp_path: Path) -> None:
    rules = [{"iptables": " ".join(DROP_BUT_ONE)}, {"iptables": "-j REJECT", "family": "ip6"},
             "tcp dport 22 accept"]
    apply(netns, tmp_path, config(user_rules=rules))
    assert user_rules(netns) == ['iifname "eth0" ip saddr != 192.168.1.1 drop',
                                 "reject with icmpv6 port-unreachable", "tcp dport 22 accept"]
    state = json.loads((tmp_path / "state" / "state.json").read_text())
    assert state["config"]["user_rules"] == rules
    before = ruleset(netns)
    bad = apply(netns, tmp_path, config(user_rules=["drop", {"iptables": "-m recent -j DROP"}]),
                check=False)
    assert bad.returncode == 2
    assert "user_rules[1]: unsupported match '-m recent'" in bad.stderr
    assert ruleset(netns) == before


def test_rule_added_by_user_add_survives_flush_and_restore(netns: Netns, tmp_path: Path) -> None:
    apply(netns, tmp_path, config())
    user(netns, tmp_path, "add", "tcp", "dport", "2222", "drop")
    netns.run("nft", "flush", "ruleset")
    nftnet(netns, "restore", state_dir=tmp_path / "state")
    assert user_rules(netns) == ["tcp dport 2222 drop"]
