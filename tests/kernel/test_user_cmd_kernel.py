"""``nftnet user`` and iptables user_rules against the real kernel, in a throwaway namespace.

One user_rules entry, or one ``nftnet user add`` rule, is exactly one rule of the user chain,
as nft itself reads it: anything else is refused (exit 2) and nothing changes.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from nftnet.apply import user_rules_json
from nftnet.compile import HostFacts
from nftnet.config import rule_languages
from nftnet.config.load import parse_config
from nftnet.errors import ConfigError
from tests.kernel.conftest import Netns
from tests.kernel.test_apply_kernel import apply, config, ruleset, table, user_rules
from tests.nftnet_run import nftnet

pytestmark = pytest.mark.kernel

DROP_BUT_ONE = ["-i", "eth0", "!", "-s", "192.168.1.1", "-j", "DROP"]
MORE = "nft does more with it than add one rule to the user chain"
# id: (an entry nft does not read as exactly one rule, what the error says nft made of it)
NOT_ONE_RULE = {
    "flush after ;": ("counter; flush chain inet nftnet user", MORE),
    "flush, then a rule": ("counter; flush chain inet nftnet user; add rule inet nftnet user "
                           "counter", MORE),
    "two rules": ("counter; add rule inet nftnet user drop", "nft makes 2 rules of it"),
    "newline": ("counter\nadd rule inet nftnet user drop", "nft makes 2 rules of it"),
    "comment": ("ip saddr 10.0.0.0/8 # drop", "nft reads part of it as a comment"),
    "prints": ("drop; list ruleset", "nft runs a command in it that prints"),
    "other table": ("drop; add table ip other", MORE),
    "element": ('drop; add element inet nftnet bridges { "br-x" }', MORE),
    "flush set": ("drop; flush set inet nftnet bridges", MORE),
    "flush ruleset": ("drop; flush ruleset", MORE),
    "never returns": ("drop; monitor", "nft does not return from it within 10 s"),
}


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


def entry_line(tmp: Path, i: int, name: str = "c.yaml") -> int:
    """The file line of user_rules[i] in a config written by ``apply`` (one line per entry)."""
    lines = (tmp / name).read_text().splitlines()
    return lines.index("user_rules:") + 2 + i


@pytest.mark.parametrize("case", NOT_ONE_RULE)
def test_user_rules_entry_that_is_not_one_rule(netns: Netns, tmp_path: Path, case: str) -> None:
    entry, reason = NOT_ONE_RULE[case]
    apply(netns, tmp_path, config(user_rules=["ip saddr 10.0.0.0/8 drop"]))
    before = ruleset(netns)
    proc = apply(netns, tmp_path, config(user_rules=["ip saddr 10.0.0.0/8 drop", entry]),
                 check=False)
    assert proc.returncode == 2, proc.stderr
    assert (f"c.yaml:{entry_line(tmp_path, 1)}: user_rules[1]: {entry!r} is not one nft rule: "
            f"{reason} (outside quotes, ';' and newlines end an nft command, '#' starts a "
            "comment)") in proc.stderr
    assert ruleset(netns) == before
    assert user_rules(netns) == ["ip saddr 10.0.0.0/8 drop"]


@pytest.mark.parametrize("case", NOT_ONE_RULE)
def test_user_add_that_is_not_one_rule(netns: Netns, tmp_path: Path, case: str) -> None:
    entry, reason = NOT_ONE_RULE[case]
    apply(netns, tmp_path, config())
    user(netns, tmp_path, "add", "tcp dport 22 drop")
    before = ruleset(netns)
    assert f"RULE: one rule at a time: {reason}" in user(netns, tmp_path, "add", "--", entry,
                                                         rc=2).stderr
    assert ruleset(netns) == before


def test_separators_in_quotes_and_at_the_end_are_one_rule(netns: Netns, tmp_path: Path) -> None:
    """What nft reads as one rule is one: ';' and '#' in a comment, a ';' that ends the rule;
    and the rule keeps its comment, in the kernel and in check's comparison."""
    rules = ['tcp dport 22 accept comment "ssh; from the office # 1"', "drop;"]
    apply(netns, tmp_path, config(user_rules=rules))
    assert user_rules(netns) == ['tcp dport 22 accept comment "ssh; from the office # 1"',
                                 "drop"]
    assert [o["rule"].get("comment") for o in table(netns) if "rule" in o
            and o["rule"]["chain"] == "user"] == ["ssh; from the office # 1", None]
    assert nftnet(netns, "check", state_dir=tmp_path / "state", check=False).returncode == 0
    assert "no changes" in apply(netns, tmp_path, config(user_rules=rules)).stdout
    out = user(netns, tmp_path, "add", "--position", "1", 'ip saddr 10.1.1.1 drop comment "a;b"')
    assert out.stdout == 'added as rule 1: ip saddr 10.1.1.1 drop comment "a;b"\n'


def test_user_rules_errors_carry_the_file_line(netns: Netns, tmp_path: Path) -> None:
    """nft's refusal, found in a scratch namespace after loading, names the entry's line, as
    every config error does; with runtime changes applied too, and for plan and render."""
    apply(netns, tmp_path, config())
    nftnet(netns, "network", "create", "rt", "--subnet", "172.31.9.0/24",
           state_dir=tmp_path / "state")
    bad = config(user_rules=["drop", "ip saddr 1.2.3.4 dorp"])
    proc = apply(netns, tmp_path, bad, check=False)
    where = (f"{tmp_path / 'c.yaml'}:{entry_line(tmp_path, 1)}: user_rules[1]: nft cannot use "
             "'ip saddr 1.2.3.4 dorp': Error: ")
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"nftnet: error: {where}")
    for command in ("plan", "render"):
        proc = nftnet(netns, command, "-f", str(tmp_path / "c.yaml"),
                      state_dir=tmp_path / "state", check=False)
        assert proc.returncode == 2
        assert where in proc.stderr


def test_every_rule_language_is_held_to_one_rule(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    """A language's translation is nft text like any entry, and is held to one rule the same
    way: a translator that writes two commands is refused, naming the entry."""
    if os.geteuid() != 0:
        pytest.skip("the scratch namespace needs root here")
    out = {"one": "tcp dport 22 drop", "two": "counter; flush chain inet nftnet user"}
    monkeypatch.setattr(rule_languages, "_translator", lambda _: lambda rule, _f: out[rule])
    text = yaml.safe_dump({"version": 1, "user_rules": [{"fake": "one"}, {"fake": "two"}]},
                          sort_keys=False)
    loaded = parse_config(text, "c.yaml")
    assert loaded.user_rules == tuple(out.values())
    with pytest.raises(ConfigError) as e:
        user_rules_json(loaded, HostFacts())
    assert e.value.problems == [
        "c.yaml:4: user_rules[1]: 'counter; flush chain inet nftnet user' is not one nft rule: "
        f"{MORE} (outside quotes, ';' and newlines end an nft command, '#' starts a comment)"]
    one = parse_config(yaml.safe_dump({"version": 1, "user_rules": [{"fake": "one"}]}))
    assert user_rules_json(one, HostFacts()) == [{"expr": [
        {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                   "right": 22}}, {"drop": None}]}]
