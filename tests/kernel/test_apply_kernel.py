"""apply against the real kernel: atomicity, idempotence, the user chain, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nftnet import names as N
from tests.kernel.conftest import Netns
from tests.nftnet_run import nftnet, write_config

pytestmark = pytest.mark.kernel


def config(ports: list[str] | None = None, **extra: object) -> dict:
    return {
        "version": 1,
        "networks": {"front": {"bridge": "br-front", "subnets": ["172.31.1.0/24", "fd00:1::/64"]},
                     "back": {"subnet": "172.31.2.0/24", "icc": False}},
        "endpoints": {"web": {"network": "front", "ipv4": "172.31.1.10", "ipv6": "fd00:1::10",
                              "publish": ports if ports is not None else ["8080:80"]}},
        **extra,
    }


def apply(ns: Netns, tmp: Path, cfg: dict, check: bool = True, name: str = "c.yaml"):
    return nftnet(ns, "apply", "-f", str(write_config(tmp, cfg, name)), state_dir=tmp / "state",
                  check=check)


def table(ns: Netns, handles: bool = False) -> list[dict]:
    args = ["nft", "-j", *(["-a"] if handles else []), "list", "table", "inet", "nftnet"]
    return json.loads(ns.run(*args))["nftables"][1:]


def ruleset(ns: Netns) -> str:
    return ns.run("nft", "list", "ruleset")


def links(ns: Netns) -> dict[str, dict]:
    return {link["ifname"]: link for link in json.loads(ns.run("ip", "-j", "addr"))}


def user_rules(ns: Netns) -> list[str]:
    text = ns.run("nft", "list", "chain", "inet", "nftnet", "user")
    return [line.strip() for line in text.splitlines()[2:-2] if line.strip()]


def test_apply_builds_table_bridges_and_forwarding(netns: Netns, tmp_path: Path) -> None:
    out = apply(netns, tmp_path, config()).stdout
    assert "+ port 0.0.0.0:8080/tcp -> 172.31.1.10:80" in out
    chains = {o["chain"]["name"] for o in table(netns) if "chain" in o}
    assert {"filter-forward", "nat-prerouting", "user", "published"} <= chains
    found = links(netns)
    addrs = {a["local"] for a in found["br-front"]["addr_info"]}
    assert {"172.31.1.1", "fd00:1::1"} <= addrs
    assert "UP" in found["nft-back"]["flags"]
    assert netns.run("cat", "/proc/sys/net/ipv4/ip_forward").strip() == "1"


def test_same_config_twice_changes_nothing(netns: Netns, tmp_path: Path) -> None:
    apply(netns, tmp_path, config())
    before = table(netns, handles=True)
    second = apply(netns, tmp_path, config())
    assert "no changes" in second.stdout
    assert table(netns, handles=True) == before  # same handles: nothing was rewritten


def test_an_unchanged_file_is_applied_again_after_any_change_since(netns: Netns,
                                                                   tmp_path: Path) -> None:
    """The same file, proven unchanged (applied.py) until the kernel, a bridge or the state
    changes: each change is seen and put right, and the next apply is "no changes" again."""
    apply(netns, tmp_path, config())
    assert (tmp_path / "state" / "applied.json").exists()
    element = ["inet", "nftnet", N.PUBANY_PORT.format(v=4), "{ tcp . 8080 }"]
    for tamper in (["ip", "addr", "del", "172.31.1.1/24", "dev", "br-front"],
                   ["ip", "link", "set", "br-front", "down"],
                   ["nft", "delete", "element", *element]):
        assert "no changes" in apply(netns, tmp_path, config()).stdout
        netns.run(*tamper)
        assert "no changes" not in apply(netns, tmp_path, config()).stdout, tamper
    assert "no changes" in apply(netns, tmp_path, config()).stdout
    assert "172.31.1.1" in netns.run("ip", "-br", "addr", "show", "br-front")
    assert "UP" in netns.run("ip", "-br", "link", "show", "br-front")
    netns.run("nft", "get", "element", *element)
    nftnet(netns, "port", "publish", "web", "9090:90", state_dir=tmp_path / "state")
    assert "no changes" in apply(netns, tmp_path, config()).stdout  # runtime ports survive
    assert "9090" in netns.run("nft", "list", "map", *element[:3])


def test_changed_config_only_changes_elements(netns: Netns, tmp_path: Path) -> None:
    apply(netns, tmp_path, config())
    out = apply(netns, tmp_path, config(["8080:80", "9000-9001:9000-9001/udp"])).stdout
    assert "+ port 0.0.0.0:9001/udp -> 172.31.1.10:9001" in out
    text = netns.run("nft", "list", "map", "inet", "nftnet", "pubany4-port")
    assert "udp . 9001 : 9001" in text


def test_rejected_batch_changes_nothing(netns: Netns, tmp_path: Path) -> None:
    """A table the kernel cannot merge with (a set of another type) refuses the whole batch,
    and bridges made for it are removed again."""
    netns.run("nft", "add table inet other; add chain inet other c; add rule inet other c accept")
    netns.run("nft", "add table inet nftnet; add set inet nftnet bridges { type ipv4_addr; }")
    before = ruleset(netns)
    proc = apply(netns, tmp_path, config(), check=False)
    assert proc.returncode == 1, proc.stderr
    assert "refused" in proc.stderr
    assert ruleset(netns) == before
    assert "br-front" not in links(netns)


def test_link_failure_changes_nothing(netns: Netns, tmp_path: Path) -> None:
    apply(netns, tmp_path, config())
    before = table(netns, handles=True)
    netns.run("ip", "link", "add", "br-taken", "type", "veth", "peer", "name", "br-taken-p")
    cfg = config()
    cfg["networks"]["third"] = {"bridge": "br-taken", "subnet": "172.31.3.0/24"}
    proc = apply(netns, tmp_path, cfg, check=False)
    assert proc.returncode == 1
    assert "br-taken exists and is not a bridge" in proc.stderr
    assert table(netns, handles=True) == before


def test_bad_input_exit_2_and_nothing_applied(netns: Netns, tmp_path: Path) -> None:
    apply(netns, tmp_path, config())
    before = ruleset(netns)
    proc = apply(netns, tmp_path, config(["8080:80", "8080:81"]), check=False)
    assert proc.returncode == 2
    assert "endpoints.web.publish[1]: tcp port 8080" in proc.stderr
    bad_rule = apply(netns, tmp_path, config(user_rules=["ip saddr 1.2.3.4 dorp"]), check=False)
    assert bad_rule.returncode == 2
    assert "user_rules[0]" in bad_rule.stderr
    assert ruleset(netns) == before


def test_hand_added_user_rules_survive_apply(netns: Netns, tmp_path: Path) -> None:
    apply(netns, tmp_path, config())
    netns.run("nft", "add", "rule", "inet", "nftnet", "user", "ip", "saddr", "10.9.9.9", "drop")
    apply(netns, tmp_path, config(["8080:80", "8443:443"]))
    assert user_rules(netns) == ["ip saddr 10.9.9.9 drop"]
    apply(netns, tmp_path, config(user_rules=["ip saddr 10.8.8.8 accept"]))
    assert user_rules(netns) == ["ip saddr 10.8.8.8 accept"]


def test_user_rules_may_name_nftnets_sets(netns: Netns, tmp_path: Path) -> None:
    """On a kernel without nftnet's table, too: the batch makes the sets before the rules."""
    rules = ['oifname @bridges ip daddr @subnets4 accept comment "to containers"']
    apply(netns, tmp_path, config(user_rules=rules))
    assert user_rules(netns) == rules
    netns.run("nft", "flush", "ruleset")
    nftnet(netns, "restore", state_dir=tmp_path / "state")
    assert user_rules(netns) == rules


def test_render_json_is_what_apply_sends(netns: Netns, tmp_path: Path) -> None:
    path = write_config(tmp_path, config(user_rules=["tcp dport 22 drop"]))
    rendered = nftnet(netns, "render", "-f", str(path), state_dir=tmp_path / "r").stdout
    netns.run("nft", "-j", "-f", "-", input=rendered)
    loaded = ruleset(netns)
    netns.run("nft", "delete", "table", "inet", "nftnet")
    nftnet(netns, "apply", "-f", str(path), state_dir=tmp_path / "a")
    assert ruleset(netns) == loaded


def test_status_reports_in_sync_and_counters(netns: Netns, tmp_path: Path) -> None:
    apply(netns, tmp_path, config())
    status = json.loads(nftnet(netns, "status", "-o", "json", state_dir=tmp_path / "state").stdout)
    assert status["in_sync"] is True
    assert [n["name"] for n in status["networks"]] == ["front", "back"]
    assert "0.0.0.0:8080/tcp -> 172.31.1.10:80" in status["ports"]
    assert any(c["rule"] == "icc=false" for c in status["counters"])
    netns.run("nft", "flush", "chain", "inet", "nftnet", "published")
    status = json.loads(nftnet(netns, "status", "-o", "json", state_dir=tmp_path / "state").stdout)
    assert status["in_sync"] is None  # another commit: status cannot tell; check compares


def test_existing_bridge_is_adopted_not_replaced(netns: Netns, tmp_path: Path) -> None:
    netns.run("ip", "link", "add", "br-front", "type", "bridge")
    netns.run("ip", "addr", "add", "10.77.0.1/24", "dev", "br-front")
    apply(netns, tmp_path, config())
    addrs = {a["local"] for a in links(netns)["br-front"]["addr_info"]}
    assert {"10.77.0.1", "172.31.1.1", "fd00:1::1"} <= addrs
    state = json.loads((tmp_path / "state" / "state.json").read_text())
    assert state["created_bridges"] == ["nft-back"]


def addrs_of(ns: Netns, dev: str) -> set[str]:
    """The addresses on ``dev`` as iproute2 lists them, without the kernel's IPv6 link-local."""
    return {f"{a['local']}/{a['prefixlen']}" for a in links(ns)[dev]["addr_info"]
            if not a["local"].startswith("fe80:")}


def routes(ns: Netns) -> set[str]:
    return {r["dst"] for v in ("-4", "-6") for r in json.loads(ns.run("ip", "-j", v, "route"))}


def moved(cfg: dict) -> dict:
    """``cfg`` with network front (and its endpoint) on other subnets."""
    out = json.loads(json.dumps(cfg))
    out["networks"]["front"]["subnets"] = ["172.31.5.0/24", "fd00:5::/64"]
    out["endpoints"]["web"] |= {"ipv4": "172.31.5.10", "ipv6": "fd00:5::10"}
    return out


def test_changed_subnets_leave_only_the_new_gateways(netns: Netns, tmp_path: Path) -> None:
    """The old gateways and their routes go; a network on the old subnets is then routed out
    of its own bridge."""
    apply(netns, tmp_path, config())
    cfg = moved(config())
    apply(netns, tmp_path, cfg, name="moved.yaml")
    assert addrs_of(netns, "br-front") == {"172.31.5.1/24", "fd00:5::1/64"}
    found = routes(netns)
    assert {"172.31.5.0/24", "fd00:5::/64"} <= found
    assert not found & {"172.31.1.0/24", "fd00:1::/64"}
    assert nftnet(netns, "check", state_dir=tmp_path / "state", check=False).returncode == 0
    cfg["networks"]["old"] = {"bridge": "br-old", "subnets": ["172.31.1.0/24", "fd00:1::/64"]}
    apply(netns, tmp_path, cfg, name="old.yaml")
    for dst in ("172.31.1.20", "fd00:1::20"):
        assert json.loads(netns.run("ip", "-j", "route", "get", dst))[0]["dev"] == "br-old"


def test_adopted_bridge_keeps_the_addresses_of_others(netns: Netns, tmp_path: Path) -> None:
    """nftnet takes away only what it added (recorded in the state); someone's address, even
    one that is a gateway of the config, stays, and check does not count it as drift."""
    netns.run("ip", "link", "add", "br-front", "type", "bridge")
    netns.run("ip", "addr", "add", "10.77.0.1/24", "dev", "br-front")
    netns.run("ip", "addr", "add", "fd00:1::1/64", "dev", "br-front")
    apply(netns, tmp_path, config())
    state = json.loads((tmp_path / "state" / "state.json").read_text())
    assert state["bridge_addresses"] == {"br-front": ["172.31.1.1/24"],
                                         "nft-back": ["172.31.2.1/24"]}
    netns.run("ip", "addr", "add", "10.78.0.1/24", "dev", "br-front")
    assert nftnet(netns, "check", state_dir=tmp_path / "state", check=False).returncode == 0
    apply(netns, tmp_path, moved(config()), name="moved.yaml")
    assert addrs_of(netns, "br-front") == {"10.77.0.1/24", "10.78.0.1/24", "fd00:1::1/64",
                                           "172.31.5.1/24", "fd00:5::1/64"}
    assert nftnet(netns, "check", state_dir=tmp_path / "state", check=False).returncode == 0


def test_rejected_batch_keeps_the_old_gateways(netns: Netns, tmp_path: Path) -> None:
    """Address changes made for a batch the kernel refuses are taken back."""
    apply(netns, tmp_path, config())
    netns.run("nft", "delete table inet nftnet; add table inet nftnet; "
              "add set inet nftnet bridges { type ipv4_addr; }")
    proc = apply(netns, tmp_path, moved(config()), check=False, name="moved.yaml")
    assert proc.returncode == 1, proc.stderr
    assert addrs_of(netns, "br-front") == {"172.31.1.1/24", "fd00:1::1/64"}


def test_plan_shows_changes_and_changes_nothing(netns: Netns, tmp_path: Path) -> None:
    apply(netns, tmp_path, config())
    before = ruleset(netns)
    path = write_config(tmp_path, config(["8080:80", "7070:7070/sctp"]), "next.yaml")
    out = nftnet(netns, "plan", "-f", str(path), state_dir=tmp_path / "state").stdout
    assert "+ port 0.0.0.0:7070/sctp -> 172.31.1.10:7070" in out
    assert ruleset(netns) == before
    apply(netns, tmp_path, config(["8080:80", "7070:7070/sctp"]))
    assert "sctp . 7070 : 7070" in netns.run("nft", "list", "map", "inet", "nftnet",
                                             "pubany4-port")
