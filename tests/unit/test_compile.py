"""The compiler is pure: config in, batch out. Rules never grow with ports or endpoints."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from nftnet import names as N
from nftnet.compile import HostFacts, compile_config
from nftnet.config.load import parse_config


def make_config(networks: int, endpoints_per_net: int, ports_per_ep: int) -> str:
    lines = ["version: 1", "networks:"]
    for n in range(networks):
        lines += [f"  n{n}:", f"    subnet: 10.{n // 256}.{n % 256}.0/24",
                  f"    icc: {str(n % 2 == 0).lower()}"]
    lines.append("endpoints:")
    port = 1024
    for n in range(networks):
        for e in range(endpoints_per_net):
            lines += [f"  e{n}x{e}:", f"    network: n{n}", f"    ipv4: 10.{n // 256}.{n % 256}."
                      f"{e + 2}", "    publish:"]
            for _ in range(ports_per_ep):
                lines.append(f"      - \"{port}:80\"")
                port += 1
    return "\n".join(lines) + "\n"


def batch_of(text: str, host: HostFacts | None = None) -> dict:
    return compile_config(parse_config(text), host or HostFacts()).to_json()


def count(batch: dict, kind: str) -> int:
    return sum(1 for cmd in batch["nftables"] for v in cmd.values() if kind in v)


def elements(batch: dict, name: str) -> list:
    return [e for cmd in batch["nftables"] if "add" in cmd and "element" in cmd["add"]
            and cmd["add"]["element"]["name"] == name for e in cmd["add"]["element"]["elem"]]


@settings(max_examples=25, deadline=None)
@given(networks=st.integers(1, 20), endpoints=st.integers(0, 5), ports=st.integers(0, 5))
def test_rules_do_not_grow_with_anything(networks: int, endpoints: int, ports: int) -> None:
    small = batch_of(make_config(1, 0, 0))
    big = batch_of(make_config(networks, endpoints, ports))
    assert count(big, "rule") == count(small, "rule")
    assert count(big, "chain") == count(small, "chain")
    assert len(elements(big, N.PUBANY_ADDR.format(v=4))) == networks * endpoints * ports
    assert len(elements(big, N.BRIDGES)) == networks


def test_output_is_deterministic() -> None:
    text = make_config(3, 2, 2)
    assert json.dumps(batch_of(text)) == json.dumps(batch_of(text))


def test_never_flushes_the_table_or_the_user_chain_without_user_rules() -> None:
    batch = batch_of(make_config(1, 1, 1))
    flushed = [v for cmd in batch["nftables"] if "flush" in cmd for v in cmd["flush"].values()]
    assert not any("table" in cmd.get("flush", {}) for cmd in batch["nftables"])
    assert all(f.get("name") != N.USER_CHAIN for f in flushed)


def test_user_rules_replace_the_user_chain() -> None:
    config = parse_config(make_config(1, 0, 0) + "user_rules: []\n")
    expr = [{"drop": None}]
    batch = compile_config(config, HostFacts(), [expr]).to_json()
    cmds = batch["nftables"]
    flush = cmds.index({"flush": {"chain": {"family": "inet", "table": "nftnet",
                                            "name": N.USER_CHAIN}}})
    rule = next(i for i, c in enumerate(cmds) if c.get("add", {}).get("rule", {}).get("chain")
                == N.USER_CHAIN)
    assert flush < rule
    assert cmds[rule]["add"]["rule"]["expr"] == expr


def test_forwarding_guard_only_where_nftnet_enabled_forwarding() -> None:
    text = make_config(1, 0, 0)
    plain = count(batch_of(text), "rule")
    assert count(batch_of(text, HostFacts(True, False)), "rule") == plain + 1
    assert count(batch_of(text, HostFacts(True, True)), "rule") == plain + 2


def test_icc_and_internal_are_elements() -> None:
    batch = batch_of(make_config(2, 0, 0))
    verdicts = {json.dumps(e[0]): e[1] for e in elements(batch, N.SAME_BRIDGE)}
    assert verdicts[json.dumps({"concat": ["nft-n1", "nft-n1"]})] == {"jump": {"target":
                                                                               N.ICC_OFF}}
    assert verdicts[json.dumps({"concat": ["nft-n0", "nft-n0"]})] == {"accept": None}


def test_user_rules_come_after_the_sets_they_may_name_and_keep_their_comments() -> None:
    """Rules as nft listed them (expr and comment), and bare expression lists, as states
    recorded them before comments were kept; nft must know a set before a rule names it."""
    config = parse_config(make_config(1, 0, 0) + "user_rules: []\n")
    named = {"expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip",
                                                                  "field": "daddr"}},
                                 "right": "@" + N.SUBNETS.format(v=4)}}, {"accept": None}],
             "comment": "by-hand"}
    cmds = compile_config(config, HostFacts(), [named, [{"drop": None}]]).to_json()["nftables"]
    user = [i for i, c in enumerate(cmds) if c.get("add", {}).get("rule", {}).get("chain")
            == N.USER_CHAIN]
    last_set = max(i for i, c in enumerate(cmds) if "set" in c.get("add", {})
                   or "map" in c.get("add", {}))
    assert min(user) > last_set
    assert [{k: v for k, v in cmds[i]["add"]["rule"].items() if k in ("expr", "comment")}
            for i in user] == [named, {"expr": [{"drop": None}]}]
