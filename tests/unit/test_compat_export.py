"""Exporting a config as Docker's iptables-save text: the reference captures come back rule for
rule, and import(export(config)) is the config again (property-based).

iptables cannot carry names, gateways, MTUs, a host_binding_ipv4 that no port uses, a subnet
without MASQUERADE, unpublished containers or which IPv4 and IPv6 address belong together. The
round trip therefore gives the importer the ``docker network inspect`` JSON that Docker would
show for the config (as on a real host), and compares what the two configs mean: published
ports as the per-port mappings they expand to (``9000:9000`` + ``9001:9001`` is
``9000-9001:9000-9001``), user rules as the DOCKER-USER chain each family gets, and
``masquerade`` only where it matters (not on internal networks).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from compat.cli import export_cmd, load_hints
from compat.iptables_save.export import export_save
from compat.iptables_save.importer import Hints, import_rules
from compat.iptables_save.parse import STAGE1, STAGE2, USER, parse_save
from nftnet.api import Engine
from nftnet.config.dump import dump_config
from nftnet.config.load import parse_config
from nftnet.config.model import Config
from nftnet.config.publish import expand
from nftnet.state import State, StateDir

REF = Path(__file__).resolve().parents[3] / "shared/reference/docker-20.10"
SCENARIOS = [p.name for p in sorted(REF.glob("[0-9]*")) if not p.name.startswith("12")] \
    if REF.is_dir() else []
# A network without MASQUERADE shows no subnet: these need inspect data (see test_compat_import).
NEEDS_INSPECT = {"09-docker-user-rules", "10-after-restart-user-rules-kept"}
Chains = dict[tuple[str, str], list[str]]


def chains(text: str) -> Chains:
    out: Chains = {}
    for rule in parse_save(text).rules():
        out.setdefault((rule.table, rule.chain), []).append(rule.text)
    return out


def assert_docker_order(ch: Chains) -> None:
    """Order where it matters: the user chain and isolation first, icc DROPs after every ACCEPT
    in FORWARD, RETURNs last in Docker's chains but first in nat DOCKER (before any DNAT)."""
    forward = ch[("filter", "FORWARD")]
    assert forward[:2] == [f"-A FORWARD -j {USER}", f"-A FORWARD -j {STAGE1}"]
    drops = [i for i, r in enumerate(forward) if r.endswith("-j DROP")]
    assert all(i > j for i in drops for j, r in enumerate(forward) if r.endswith("-j ACCEPT"))
    for chain in (STAGE1, STAGE2, USER):
        assert ch[("filter", chain)][-1] == f"-A {chain} -j RETURN"
    dnat = [r.endswith("-j RETURN") for r in ch.get(("nat", "DOCKER"), [])]
    assert dnat == sorted(dnat, reverse=True)


def reimport(path: Path, inspect: bool) -> Config:
    docs = ",".join(str(path / f) for f in ("networks.json", "containers.json")
                    if (path / f).exists())
    text = (path / "iptables-save.txt").read_text()
    result = import_rules(parse_save(text, "cap"), None, load_hints(docs) if inspect else None)
    return parse_config(json.dumps(result.config))


@pytest.mark.skipif(not SCENARIOS, reason=f"no reference captures in {REF}")
@pytest.mark.parametrize(("scenario", "inspect"), [
    *((s, True) for s in SCENARIOS), *((s, False) for s in SCENARIOS if s not in NEEDS_INSPECT)])
def test_reference_reproduced(scenario: str, inspect: bool) -> None:
    captured = (REF / scenario / "iptables-save.txt").read_text()
    text, warnings = export_save(reimport(REF / scenario, inspect), 4)
    assert warnings == []
    got, want = chains(text), chains(captured)
    assert {k: Counter(v) for k, v in got.items()} == {k: Counter(v) for k, v in want.items()}
    assert got[("filter", USER)] == want[("filter", USER)]
    assert_docker_order(got)
    assert_docker_order(want)


USER_RULES = ['iifname "eth0" ip saddr != 192.168.1.1 drop', "ip6 saddr fd00:99::/64 drop",
              "tcp dport 22 accept", "ct state established,related accept",
              "meta l4proto udp udp dport 53 drop"]
PROTOS = st.sampled_from(["tcp", "udp", "sctp"])


@st.composite
def publish_specs(draw: st.DrawFn, ep: dict[str, str], binding: str, ports: list[int]
                  ) -> list[str]:
    """Up to 3 entries of host kinds the endpoint's addresses allow; host ports never clash."""
    hosts = [h for h, ok in (("", "ipv4" in ep or binding == "0.0.0.0"),
                             ("127.0.0.1:", "ipv4" in ep), ("0.0.0.0:", "ipv4" in ep),
                             ("[::]:", "ipv6" in ep), ("[fd00:ffff::1]:", "ipv6" in ep)) if ok]
    out = []
    for _ in range(draw(st.integers(0, 3))):
        size, ctr = draw(st.integers(0, 2)), draw(st.integers(1, 65000))
        host = ports.pop()
        hp = f"{host}-{host + size}" if size else str(host)
        cp = f"{ctr}-{ctr + size}" if size else str(ctr)
        out.append(f"{draw(st.sampled_from(hosts))}{hp}:{cp}/{draw(PROTOS)}")
    return out


@st.composite
def configs(draw: st.DrawFn) -> dict[str, Any]:
    """1-4 networks with disjoint subnets (10.K/16.. and fd00:K::/64), endpoints on in-subnet
    addresses, publish entries on distinct host ports, user rules of both families."""
    names = draw(st.lists(st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True), min_size=1,
                          max_size=4, unique=True))
    keys = draw(st.lists(st.integers(1, 250), min_size=len(names), max_size=len(names),
                         unique=True))
    ports = list(range(1000, 60000, 10))
    networks, endpoints = {}, {}
    for name, k in zip(names, keys, strict=True):
        fams = draw(st.sampled_from(["4", "4", "46", "6"]))
        v4, v6 = ip_network(f"10.{k}.0.0/{draw(st.sampled_from([16, 20, 24]))}"), \
            ip_network(f"fd00:{k:x}::/64")
        internal, binding = draw(st.booleans()), draw(st.sampled_from(["0.0.0.0", "127.0.0.1"]))
        networks[name] = {"bridge": f"b-{name}", "subnets": [str(n) for f, n in (
            ("4", v4), ("6", v6)) if f in fams], "icc": draw(st.booleans()),
            "masquerade": draw(st.booleans()), "internal": internal,
            "host_binding_ipv4": binding, "mtu": draw(st.sampled_from([1500, 1450]))}
        if "4" in fams and draw(st.booleans()):
            networks[name]["gateway"] = str(v4.broadcast_address - 1)
        for i in range(draw(st.integers(0, 3))):
            ep = {"network": name}
            if "4" in fams:
                ep["ipv4"] = str(v4.network_address + 2 + i)
            if "6" in fams and ("ipv4" not in ep or draw(st.booleans())):
                ep["ipv6"] = str(v6.network_address + 2 + i)
            if not internal:
                ep["publish"] = draw(publish_specs(ep, binding, ports))
            endpoints[f"{name}-{i}"] = ep
    rules = draw(st.lists(st.sampled_from(USER_RULES), max_size=3))
    return {"version": 1, "networks": networks, "endpoints": endpoints, "user_rules": rules}


def inspect_of(config: Config) -> list[dict[str, Any]]:
    """The ``docker network inspect`` JSON Docker would show for ``config``."""
    def address(addr: Any, subnet: Any) -> str:
        return f"{addr}/{subnet.prefixlen}" if addr is not None else ""

    return [{
        "Name": n.name, "Id": f"{i:064x}", "Driver": "bridge",
        "IPAM": {"Config": [{"Subnet": str(s), "Gateway": str(g)} for s, g in (
            (n.subnet4, n.gateway4), (n.subnet6, n.gateway6)) if s is not None]},
        "Options": {"com.docker.network.bridge.name": n.bridge,
                    "com.docker.network.bridge.host_binding_ipv4": str(n.host_binding_ipv4),
                    "com.docker.network.driver.mtu": str(n.mtu)},
        "Containers": {f"{j:064x}": {"Name": e.name, "IPv4Address": address(e.ipv4, n.subnet4),
                                     "IPv6Address": address(e.ipv6, n.subnet6)}
                       for j, e in enumerate(config.endpoints.values()) if e.network == n.name},
    } for i, n in enumerate(config.networks.values())]


def meaning(config: Config) -> tuple[Any, ...]:
    """What a config means in iptables terms (see the module docstring)."""
    networks = {k: replace(n, masquerade=n.masquerade or n.internal)
                for k, n in config.networks.items()}
    endpoints = {k: (e.network, e.ipv4, e.ipv6, frozenset(
        m for s in e.publish for m in expand(s, e, config.networks[e.network].host_binding_ipv4)))
        for k, e in config.endpoints.items()}
    user = tuple(tuple(chains(export_save(config, f)[0])[("filter", USER)]) for f in (4, 6))
    return networks, endpoints, user


@settings(max_examples=60, deadline=None)
@given(configs())
def test_import_of_export_is_the_config(data: dict[str, Any]) -> None:
    config = parse_config(json.dumps(data))
    hints = Hints()
    hints.add("networks.json", inspect_of(config))
    v4, v6 = (parse_save(export_save(config, f)[0], f"v{f}") for f in (4, 6))
    result = import_rules(v4, v6, hints)
    assert result.unmapped == []
    assert meaning(parse_config(json.dumps(result.config))) == meaning(config)


CONFIG = {"version": 1, "networks": {"front": {"bridge": "br-front", "subnets": [
    "172.31.1.0/24", "fd00:1::/64"]}}, "endpoints": {"web": {
        "network": "front", "ipv4": "172.31.1.10", "ipv6": "fd00:1::10",
        "publish": ["8080:80", "[fd00::1]:8443:443"]}},
    "user_rules": ["ip saddr @blocked drop", "tcp dport 22 accept"]}


def run_export(args: list[str], state: Path) -> Any:
    return CliRunner().invoke(export_cmd, args, obj=Engine(state))


def test_cli_export_file_both_families(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(json.dumps(CONFIG))
    v4 = run_export(["-f", str(tmp_path / "c.yaml")], tmp_path)
    assert v4.exit_code == 0, v4.output
    assert "-A DOCKER ! -i br-front -p tcp -m tcp --dport 8080 -j DNAT --to-destination " \
           "172.31.1.10:80" in v4.stdout
    assert "# user_rules[0] has no iptables form: ip saddr @blocked drop" in v4.stdout
    assert "warning: user_rules[0] has no iptables form" in v4.stderr
    v6 = run_export(["--format", "ip6tables-save", "-f", str(tmp_path / "c.yaml")], tmp_path)
    assert "-A DOCKER -d fd00::1/128 ! -i br-front -p tcp -m tcp --dport 8443 -j DNAT " \
           "--to-destination [fd00:1::10]:443" in v6.stdout
    assert "-A DOCKER-USER -p tcp -m tcp --dport 22 -j ACCEPT" in v6.stdout


def test_cli_export_applied_config(tmp_path: Path) -> None:
    config = parse_config(json.dumps(CONFIG))
    StateDir(tmp_path).save(State(config=dump_config(config)))
    out = run_export([], tmp_path)
    assert out.exit_code == 0
    assert out.stdout == export_save(config, 4)[0]


def test_cli_export_nothing_applied(tmp_path: Path) -> None:
    out = run_export([], tmp_path)
    assert out.exit_code == 2 and "nothing is applied" in out.output
