"""check and restore against the real kernel: each kind of tampering is reported, restore puts
it back (idempotently), and the user chain's rules survive `nft flush ruleset`."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from subprocess import CompletedProcess

import pytest

from nftnet.check import _Index
from tests.kernel.conftest import Netns
from tests.kernel.test_apply_kernel import apply, config, table, user_rules
from tests.nftnet_run import nftnet

pytestmark = pytest.mark.kernel

FWD = ["nft flush chain inet nftnet filter-forward", "nft delete chain inet nftnet filter-forward"]
# id: (commands run in the namespace, a line check must print)
TAMPERING = {
    "flush-ruleset": (["nft flush ruleset"], "table inet nftnet: missing"),
    "base-chain-deleted": (FWD, "chain filter-forward: missing"),
    "chain-flushed": (["nft flush chain inet nftnet published"],
                      'chain published: rule missing: "IPv4 published on one address"'),
    "rule-added": (["nft insert rule inet nftnet filter-forward tcp dport 22 accept"],
                   "chain filter-forward: rule added: tcp dport 22 accept"),
    "element-deleted": (["nft delete element inet nftnet pubany4-port { tcp . 8080 }"],
                        "map pubany4-port: element missing: tcp . 8080 : 80"),
    "element-added": (["nft add element inet nftnet subnets4 { 10.9.0.0/16 }"],
                      "set subnets4: element added: 10.9.0.0/16"),
    "set-deleted": (["nft flush chain inet nftnet nat-postrouting",
                     "nft delete set inet nftnet masquerade4"], "set masquerade4: missing"),
    "chain-made-again": ([*FWD, "nft 'add chain inet nftnet filter-forward { type filter hook "
                          "forward priority 10; }'"],
                         "chain filter-forward: is type filter hook forward priority 10 policy "
                         "accept; nftnet's is type filter hook forward priority -10"),
    "policy-drop": (["nft 'add chain inet nftnet filter-prerouting { type filter hook "
                     "prerouting priority -150; policy drop; }'"], "policy drop; nftnet's is"),
    "bridge-down": (["ip link set br-front down"], "bridge br-front: down"),
    "bridge-deleted": (["ip link del nft-back"], "bridge nft-back: missing"),
    # nft-back is nftnet's (created): an address added by hand is drift, and restore removes it
    "address-added": (["ip addr add 10.99.0.7/24 dev nft-back"],
                      "bridge nft-back: address 10.99.0.7/24 is no gateway of the config"),
    "gateway-deleted": (["ip addr del 172.31.1.1/24 dev br-front"],
                        "bridge br-front: address 172.31.1.1/24 missing"),
    "forwarding-off": (["sysctl -qw net.ipv4.ip_forward=0"],
                       "sysctl net/ipv4/ip_forward: is 0; nftnet needs 1"),
    "br-netfilter-off": (["sysctl -qw net.bridge.bridge-nf-call-iptables=0"],
                         "sysctl net/bridge/bridge-nf-call-iptables: is 0; nftnet needs 1"),
}


def run(ns: Netns, tmp: Path, *args: str, check: bool = False) -> CompletedProcess[str]:
    return nftnet(ns, *args, state_dir=tmp / "state", check=check)


@pytest.mark.parametrize("case", TAMPERING)
def test_each_tampering_is_reported_and_restored(netns: Netns, tmp_path: Path, case: str,
                                                 fresh_table: list[dict]) -> None:
    commands, line = TAMPERING[case]
    apply(netns, tmp_path, config())
    assert run(netns, tmp_path, "check").returncode == 0
    for command in commands:
        netns.run("sh", "-c", command)
    found = run(netns, tmp_path, "check")
    assert found.returncode == 1, found.stdout + found.stderr
    assert line in found.stdout
    restored = run(netns, tmp_path, "restore", check=True)
    assert line in restored.stdout
    after = run(netns, tmp_path, "check")
    assert after.returncode == 0, after.stdout
    assert _same(table(netns), fresh_table)


@pytest.fixture(scope="module")
def fresh_table(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """The table a first apply builds, in a namespace of its own."""
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    fresh = Netns()
    subprocess.run(["ip", "netns", "add", fresh.name], check=True)
    try:
        apply(fresh, tmp_path_factory.mktemp("fresh"), config())
        return table(fresh)
    finally:
        subprocess.run(["ip", "netns", "del", fresh.name], check=False)


def _same(a: list[dict], b: list[dict]) -> bool:
    """Same chains, rules in the same order, same sets with the same elements in any order."""
    x, y = _Index(a), _Index(b)
    return (x.chains, x.rules, x.sets) == (y.chains, y.rules, y.sets)


def test_check_json_and_objects_of_peoples(netns: Netns, tmp_path: Path) -> None:
    apply(netns, tmp_path, config())
    netns.run("nft", "add chain inet nftnet mine; add rule inet nftnet user jump mine")
    data = json.loads(run(netns, tmp_path, "check", "-o", "json").stdout)
    assert data["in_sync"] is True
    assert "chain mine: not nftnet's, left alone" in data["notes"]
    assert any("user: 1 rule(s)" in n for n in data["notes"])
    netns.run("ip", "link", "set", "br-front", "down")
    data = json.loads(run(netns, tmp_path, "check", "-o", "json").stdout)
    assert data["drift"][0]["message"] == "bridge br-front: down"


def test_restore_is_idempotent(netns: Netns, tmp_path: Path) -> None:
    apply(netns, tmp_path, config())
    netns.run("nft", "flush", "ruleset")
    assert "table inet nftnet: missing" in run(netns, tmp_path, "restore", check=True).stdout
    before = table(netns, handles=True)
    again = run(netns, tmp_path, "restore", check=True).stdout
    assert again.startswith("nothing to restore")
    assert table(netns, handles=True) == before  # not even rewritten


def test_nothing_applied(netns: Netns, tmp_path: Path) -> None:
    assert "nothing applied yet" in run(netns, tmp_path, "restore", check=True).stdout
    assert run(netns, tmp_path, "check", check=True).stdout.startswith("nothing applied")


def test_hand_added_user_rules_survive_flush(netns: Netns, tmp_path: Path) -> None:
    """Recorded before each change of nftnet's, and by a restore with nothing to restore."""
    apply(netns, tmp_path, config())
    netns.run("nft", "add rule inet nftnet user ip saddr 10.9.9.9 drop")
    apply(netns, tmp_path, config(["8080:80", "8443:443"]))
    netns.run("nft", "flush", "ruleset")
    out = run(netns, tmp_path, "restore", check=True).stdout
    assert "user chain: 1 rule(s) put back" in out
    assert user_rules(netns) == ["ip saddr 10.9.9.9 drop"]
    netns.run("nft", "add rule inet nftnet user tcp dport 23 drop")
    assert "recorded the user chain's 2 rule(s)" in run(netns, tmp_path, "restore").stdout
    netns.run("nft", "flush", "ruleset")
    run(netns, tmp_path, "restore", check=True)
    assert user_rules(netns) == ["ip saddr 10.9.9.9 drop", "tcp dport 23 drop"]


def test_managed_user_rules_come_back_from_the_config(netns: Netns, tmp_path: Path) -> None:
    apply(netns, tmp_path, config(user_rules=["ip saddr 10.8.8.8 accept"]))
    netns.run("nft", "flush", "chain", "inet", "nftnet", "user")
    found = run(netns, tmp_path, "check")
    assert "chain user: rule missing: ip saddr 10.8.8.8 accept" in found.stdout
    run(netns, tmp_path, "restore", check=True)
    assert user_rules(netns) == ["ip saddr 10.8.8.8 accept"]


def test_user_rules_the_kernel_refuses_do_not_keep_protections_away(netns: Netns,
                                                                    tmp_path: Path) -> None:
    """A recorded rule that used a set of people's, gone with the flush: nftnet's table comes
    back all the same, with every recorded rule the kernel still takes; exit 1 names the rest."""
    apply(netns, tmp_path, config())
    netns.run("nft", "add set inet nftnet mine { type ipv4_addr; }; "
              "add rule inet nftnet user ip saddr @mine drop; "
              "add rule inet nftnet user ip saddr 10.1.1.1 drop")
    run(netns, tmp_path, "restore", check=True)  # records both
    netns.run("nft", "flush", "ruleset")
    proc = run(netns, tmp_path, "restore")
    assert proc.returncode == 1
    assert "refused 1 of the user chain's recorded rules" in proc.stderr
    assert "\n  ip saddr @mine drop\n    internal:0:0-0: Error: No such file or directory\n" \
        in proc.stderr
    assert ("    it names set @mine, which nftnet neither makes nor records: make it again, then "
            "nft add rule inet nftnet user ip saddr @mine drop") in proc.stderr
    assert user_rules(netns) == ["ip saddr 10.1.1.1 drop"]
    assert run(netns, tmp_path, "check").returncode == 0


# Rules of people's in shapes a record must keep whole: comments, counters with their values,
# anonymous sets, intervals, concatenations and verdict maps, nftnet's named sets, ip6, flags.
SHAPES = [
    'ip saddr 203.0.113.9 drop comment "by-hand"',
    "meta l4proto udp counter packets 7 bytes 700 accept",
    "tcp dport { 22, 80-90 } ip saddr . tcp sport { 10.0.0.1 . 1000 } drop",
    "ip saddr vmap { 10.1.1.1 : drop, 10.1.1.2 : accept }",
    "oifname @bridges ip daddr @subnets4 ct state established,related counter accept "
    "comment \"nftnet's sets\"",
    "ip6 saddr fd00::/8 reject with icmpv6 port-unreachable",
    'tcp flags & (syn | ack) == syn limit rate 10/second log prefix "syn " level info',
    'iifname "eth*" meta mark set meta mark | 0x1 return',
]


def user_chain_text(ns: Netns) -> str:
    return ns.run("nft", "list", "chain", "inet", "nftnet", "user")


@pytest.mark.parametrize("recorder", ["restore", "apply", "user add"])
def test_restored_user_chain_is_the_recorded_one(netns: Netns, tmp_path: Path,
                                                 recorder: str) -> None:
    """Whichever change of nftnet's recorded the chain, restore after a flush brings every rule
    back as `nft list chain` showed it, in the one transaction with nftnet's table."""
    apply(netns, tmp_path, config())
    for rule in SHAPES:
        if recorder == "user add":
            run(netns, tmp_path, "user", "add", "--", rule, check=True)
        else:
            netns.run("nft", f"add rule inet nftnet user {rule}")
    if recorder == "restore":
        assert f"recorded the user chain's {len(SHAPES)} rule(s)" in run(
            netns, tmp_path, "restore", check=True).stdout
    elif recorder == "apply":
        apply(netns, tmp_path, config(["8080:80", "8443:443"]))
    listed = user_chain_text(netns)
    assert len(listed.splitlines()) == len(SHAPES) + 4
    netns.run("nft", "flush", "ruleset")
    out = run(netns, tmp_path, "restore", check=True).stdout
    assert f"user chain: {len(SHAPES)} rule(s) put back" in out
    assert user_chain_text(netns) == listed
    assert run(netns, tmp_path, "check").returncode == 0


def test_states_that_recorded_bare_expressions_still_restore(netns: Netns,
                                                             tmp_path: Path) -> None:
    """A state written before rules were recorded whole (each rule a bare expression list)
    loads and restores; the next record writes the rules whole."""
    apply(netns, tmp_path, config())
    rules = ["ip saddr 10.9.9.9 drop", "tcp dport { 22, 23 } ip daddr @subnets4 counter accept"]
    for rule in rules:
        netns.run("nft", f"add rule inet nftnet user {rule}")
    run(netns, tmp_path, "restore", check=True)
    state_file = tmp_path / "state" / "state.json"
    state = json.loads(state_file.read_text())
    state["user_chain"] = [r["expr"] for r in state["user_chain"]]
    state_file.write_text(json.dumps(state))
    listed = user_chain_text(netns)
    netns.run("nft", "flush", "ruleset")
    assert "user chain: 2 rule(s) put back" in run(netns, tmp_path, "restore", check=True).stdout
    assert user_chain_text(netns) == listed
    netns.run("nft", 'add rule inet nftnet user drop comment "new"')
    run(netns, tmp_path, "restore", check=True)
    recorded = json.loads(state_file.read_text())["user_chain"]
    assert [r.get("text") for r in recorded] == [line.strip() for line in listed.splitlines()[2:-2]
                                                 ] + ['drop comment "new"']
    assert recorded[-1]["comment"] == "new"
