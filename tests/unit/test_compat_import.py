"""Importing Docker's iptables-save output: golden tests on the reference captures, the inspect
data that names things, unmapped reporting, and bad input with line numbers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from compat.cli import import_group, load_hints
from compat.iptables_save.importer import ImportResult, import_rules
from compat.iptables_save.parse import parse_save
from compat.rules import iptables_to_nft
from nftnet.api import Engine
from nftnet.errors import ConfigError

REF = Path(__file__).resolve().parents[3] / "shared/reference/docker-20.10"
SCENARIOS = sorted(p.name for p in REF.glob("[0-9]*")) if REF.is_dir() else []
USER_RULES = [
    "-p tcp -m conntrack --ctorigdstport 8080 --ctdir ORIGINAL -j DROP",
    "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    "! -s 192.168.1.1/32 -i eth0 -j DROP",
]
NOMASQ_LINES = [15, 16, 17, 18, 41, 49]  # 09's network without MASQUERADE: no subnet in rules

pytestmark = pytest.mark.skipif(not SCENARIOS, reason=f"no reference captures in {REF}")


def capture(scenario: str, inspect: bool = False) -> tuple[str, list[str]]:
    """(iptables-save path, inspect JSON paths) of a reference scenario."""
    d = REF / scenario
    docs = [str(d / f) for f in ("networks.json", "containers.json") if (d / f).exists()]
    return str(d / "iptables-save.txt"), docs if inspect else []


def run_import(scenario: str, inspect: bool = False) -> ImportResult:
    path, docs = capture(scenario, inspect)
    return import_rules(parse_save(Path(path).read_text(), path), None,
                        load_hints(",".join(docs)) if docs else None)


def net(bridge: str, subnet: str, **extra: Any) -> dict[str, Any]:
    return {"bridge": bridge, "subnets": [subnet], **extra}


def ep(network: str, ipv4: str, *publish: str) -> dict[str, Any]:
    return {"network": network, "ipv4": ipv4, **({"publish": list(publish)} if publish else {})}


DB = ("9000-9002:9000-9002", "5353:53/udp", "127.0.0.1:5432:5432")
BRIDGE = net("docker0", "172.17.0.0/16", gateway="172.17.0.1")
APPNET = net("br-fdf17aa500f4", "172.25.0.0/16")
BACKEND = net("br-a4773736dfc6", "172.26.0.0/24", internal=True)
LATER = {  # networks created for scenario 09, as inspect names them
    "noicc": net("br-566758498b10", "172.27.0.0/24", icc=False),
    "nomasq": net("br-6cc25e07d740", "172.28.0.0/24", masquerade=False),
    "named": net("mybr0", "10.99.0.0/24", host_binding_ipv4="127.0.0.1"),
}
LATER_EPS = {"web.bridge": ep("bridge", "172.17.0.2"),
             "local": ep("named", "10.99.0.2", "7000:7000"),
             "lonely": ep("noicc", "172.27.0.2", "8443:443"), "quiet": ep("nomasq", "172.28.0.2")}
WITH_INSPECT: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "01-daemon-default": ({"bridge": BRIDGE}, {}),
    "02-one-published-port": ({"bridge": BRIDGE}, {"web": ep("bridge", "172.17.0.2", "8080:80")}),
    "03-user-network-hostip-udp-range": (
        {"bridge": BRIDGE, "appnet": APPNET},
        {"db": ep("appnet", "172.25.0.2", *DB), "web": ep("bridge", "172.17.0.2", "8080:80")}),
    "04-internal-network": (
        {"bridge": BRIDGE, "appnet": APPNET, "backend": BACKEND},
        {"db": ep("appnet", "172.25.0.2", *DB), "worker": ep("backend", "172.26.0.2"),
         "web": ep("bridge", "172.17.0.2", "8080:80")}),
    "09-docker-user-rules": (
        {"bridge": BRIDGE, "appnet": APPNET, "backend": BACKEND, **LATER},
        {"db": ep("appnet", "172.25.0.2", *DB), "web.appnet": ep("appnet", "172.25.0.3", "8080:80"),
         "worker": ep("backend", "172.26.0.2"), **LATER_EPS}),
}


@pytest.mark.parametrize("scenario", sorted(WITH_INSPECT))
def test_golden_with_inspect(scenario: str) -> None:
    result = run_import(scenario, inspect=True)
    networks, endpoints = WITH_INSPECT[scenario]
    assert result.config["networks"] == networks
    assert result.config["endpoints"] == endpoints
    assert result.unmapped == []
    has_user = scenario.startswith("09")
    assert result.config.get("user_rules") == (
        [iptables_to_nft(r) for r in USER_RULES] if has_user else None)


def test_after_restart_same_config_as_before() -> None:
    """Docker rebuilt its rules in another order; the gateways are now explicit in inspect."""
    before, after = run_import("09-docker-user-rules", True), run_import(
        "10-after-restart-user-rules-kept", True)
    for body in after.config["networks"].values():
        body.pop("gateway")
    before.config["networks"]["bridge"].pop("gateway")
    assert after.config == before.config and after.unmapped == []


def test_rules_only_names_by_bridge_and_address() -> None:
    result = run_import("03-user-network-hostip-udp-range")
    assert result.config["networks"] == {
        "docker0": net("docker0", "172.17.0.0/16"),
        "br-fdf17aa500f4": net("br-fdf17aa500f4", "172.25.0.0/16"),
    }
    assert result.config["endpoints"] == {
        "172.25.0.2": ep("br-fdf17aa500f4", "172.25.0.2", *DB),
        "172.17.0.2": ep("docker0", "172.17.0.2", "8080:80"),
    }
    assert result.unmapped == []
    assert any("--docker-inspect" in n and "containers without published ports" in n
               for n in result.notes)


def test_rules_only_reports_what_needs_inspect() -> None:
    """A network without MASQUERADE shows no subnet: its rules are reported, naming the fix."""
    result = run_import("09-docker-user-rules")
    assert [u.line for u in result.unmapped] == NOMASQ_LINES
    for u in result.unmapped:
        assert "br-6cc25e07d740" in u.why and "--docker-inspect" in u.why and "ip -j addr" in u.why
    assert "br-6cc25e07d740" not in {n["bridge"] for n in result.config["networks"].values()}
    # Without the network's host_binding_ipv4 the host address is spelled out per port.
    assert result.config["endpoints"]["10.99.0.2"]["publish"] == ["127.0.0.1:7000:7000"]
    assert result.config["user_rules"] == [iptables_to_nft(r) for r in USER_RULES]


def test_ip_addr_output_supplies_subnet(tmp_path: Path) -> None:
    addrs = [{"ifname": "br-6cc25e07d740", "mtu": 1400, "addr_info": [
        {"family": "inet", "local": "172.28.0.1", "prefixlen": 24, "scope": "global"},
        {"family": "inet6", "local": "fe80::1", "prefixlen": 64, "scope": "link"}]}]
    (tmp_path / "addr.json").write_text(json.dumps(addrs))
    path, _ = capture("09-docker-user-rules")
    out = invoke([path, "--docker-inspect", str(tmp_path / "addr.json")])
    assert out.exit_code == 0, out.output
    config = yaml.safe_load(out.stdout)
    assert config["networks"]["br-6cc25e07d740"] == net(
        "br-6cc25e07d740", "172.28.0.0/24", gateway="172.28.0.1", masquerade=False, mtu=1400)
    assert "not mapped" not in out.stderr


def test_iptables_false_imports_nothing() -> None:
    result = run_import("12-iptables-false", inspect=True)
    assert result.config["networks"] == {} and result.config["endpoints"] == {}
    assert any("--iptables=false" in n for n in result.notes)
    assert any("network bridge (bridge docker0) has no rules" in n for n in result.notes)


V6 = """*filter
:FORWARD DROP [0:0]
:DOCKER - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
:DOCKER-ISOLATION-STAGE-2 - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -i docker0 ! -o docker0 -j ACCEPT
-A FORWARD -i docker0 -o docker0 -j ACCEPT
-A DOCKER -d fd00::2/128 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT
-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP
-A DOCKER-ISOLATION-STAGE-2 -j RETURN
-A DOCKER-USER -s fd00:99::/64 -j DROP
-A DOCKER-USER -j RETURN
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d ::1/128 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s fd00::/64 ! -o docker0 -j MASQUERADE
-A POSTROUTING -s fd00::2/128 -d fd00::2/128 -p tcp -m tcp --dport 80 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination [fd00::2]:80
COMMIT
"""


def test_ipv6_pairs_with_ipv4_through_inspect(tmp_path: Path) -> None:
    """Rules alone cannot tell that 172.17.0.2 and fd00::2 are one container; inspect can."""
    (tmp_path / "v6.txt").write_text(V6)
    path, docs = capture("02-one-published-port", inspect=True)
    nets = json.loads(Path(docs[0]).read_text())
    nets[0]["Containers"] = {k: {**c, "IPv6Address": "fd00::2/64"}
                             for k, c in nets[0]["Containers"].items()}
    (tmp_path / "n.json").write_text(json.dumps(nets))
    alone = yaml.safe_load(invoke([path, "--ip6", str(tmp_path / "v6.txt")]).stdout)
    assert alone["endpoints"] == {"172.17.0.2": ep("docker0", "172.17.0.2", "8080:80"),
                                  "fd00--2": {"network": "docker0", "ipv6": "fd00::2",
                                              "publish": ["[::]:8080:80"]}}
    both = yaml.safe_load(invoke([path, "--ip6", str(tmp_path / "v6.txt"),
                                  "--docker-inspect", str(tmp_path / "n.json")]).stdout)
    assert both["networks"]["bridge"]["subnets"] == ["172.17.0.0/16", "fd00::/64"]
    assert both["endpoints"] == {"web": {**ep("bridge", "172.17.0.2", "8080:80"),
                                         "ipv6": "fd00::2"}}
    assert both["user_rules"] == [iptables_to_nft("-s fd00:99::/64 -j DROP", "ip6")]


EXTRA = """*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:DOCKER - [0:0]
:DOCKER-USER - [0:0]
:MINE - [0:0]
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -i eth0 -j ACCEPT
-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT
-A DOCKER -d 172.17.0.9/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 81 -j ACCEPT
-A DOCKER-USER -j MINE
-A DOCKER-USER -j RETURN
COMMIT
*nat
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8081 -j DNAT --to-destination 172.17.0.3:81
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8082 -j DNAT --to-destination 10.1.1.1:81
COMMIT
"""


def test_unmapped_rules_are_reported_one_by_one() -> None:
    result = import_rules(parse_save(EXTRA, "x.txt"))
    why = {u.line: u.why for u in result.unmapped}
    assert sorted(why) == [7, 9, 11, 12, 20, 21]
    assert "chain INPUT of table filter is not one Docker writes" in why[7]
    assert "not a FORWARD rule Docker writes" in why[9]
    assert "no DNAT rule publishes this container port" in why[11]
    assert "DOCKER-USER rule cannot be translated" in why[12] and "MINE" in why[12]
    assert "no ACCEPT rule in filter DOCKER" in why[20]
    assert "10.1.1.1 is in the subnet of no imported network" in why[21]
    assert result.config["endpoints"] == {"172.17.0.2": ep("docker0", "172.17.0.2", "8080:80")}
    assert str(result.unmapped[0]).startswith("x.txt:7: -A INPUT -p tcp -m tcp --dport 22")


def invoke(args: list[str], tmp: str = "/nonexistent") -> Any:
    return CliRunner().invoke(import_group, ["iptables-save", *args], obj=Engine(tmp))


def test_cli_writes_config_and_reports_on_stderr(tmp_path: Path) -> None:
    path, _ = capture("09-docker-user-rules")
    out = invoke([path, "-o", str(tmp_path / "c.yaml")])
    assert out.exit_code == 0 and out.stdout == ""
    assert yaml.safe_load((tmp_path / "c.yaml").read_text())["version"] == 1
    for line in NOMASQ_LINES:
        assert f"{path}:{line}: -A " in out.stderr
    assert "not mapped:" in out.stderr and "note:" in out.stderr


def test_cli_strict_fails_on_unmapped(tmp_path: Path) -> None:
    path, docs = capture("09-docker-user-rules", inspect=True)
    out = invoke([path, "--strict"])
    assert isinstance(out.exception, ConfigError) and out.exception.exit_code == 2
    assert "6 rule(s) not mapped" in str(out.exception)
    assert invoke([path, "--strict", "--docker-inspect", ",".join(docs)]).exit_code == 0


def _truncated() -> str:
    text = (REF / "02-one-published-port/iptables-save.txt").read_text()
    return text[: text.rindex("COMMIT")]


@pytest.mark.parametrize(("text", "message"), [
    ("", None),
    ("*filter\n:FORWARD DROP [0:0]\nCOMMIT\n*bogus\nCOMMIT\n", "f:4: unknown table 'bogus'"),
    ("*filter\n:FORWARD DROP [0:0]\nhello world\nCOMMIT\n", "f:3: not an iptables-save line"),
    ("-A FORWARD -j ACCEPT\n", "f:1: outside a table"),
    ("*filter\n-A FOO -j ACCEPT\nCOMMIT\n", "f:2: chain FOO is not declared in table filter"),
    ("*filter\n:X - [0:0]\n-A X -m comment --comment \"open\nCOMMIT\n", "f:3: cannot split"),
    ("*filter\n:X\nCOMMIT\n", "f:2: a chain line reads"),
    ("*filter\n*nat\nCOMMIT\n", "f:2: table filter (line 1) has no COMMIT before *nat"),
    ("*nat\nCOMMIT\n*nat\nCOMMIT\n", "f:3: table nat appears twice (first at line 1)"),
    ("*filter\n:FORWARD DROP [0:0]\n", "f:2: table filter (line 1) has no COMMIT: the file is "
     "truncated"),
])
def test_bad_input_names_the_line(text: str, message: str | None) -> None:
    if message is None:
        assert parse_save(text, "f").tables == {}
        return
    with pytest.raises(ConfigError) as e:
        parse_save(text, "f")
    assert message in str(e.value)


def test_truncated_capture() -> None:
    text = _truncated()
    with pytest.raises(ConfigError) as e:
        parse_save(text, "cap")
    assert f"cap:{len(text.splitlines())}: table nat" in str(e.value)


@pytest.mark.parametrize(("content", "message"), [
    ("[{\"x\": 1}]", "not the JSON of docker network inspect, docker inspect or ip -j addr"),
    ("[\n{", "i.json:2: not JSON"),
    ("[{\"IPAM\": {}}]", "i.json: unexpected content"),
])
def test_bad_inspect_data(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "i.json").write_text(content)
    path, _ = capture("01-daemon-default")
    out = invoke([path, "--docker-inspect", str(tmp_path / "i.json")])
    assert isinstance(out.exception, ConfigError) and out.exception.exit_code == 2
    assert message in str(out.exception)


def test_unreadable_file() -> None:
    out = invoke(["/nonexistent/iptables.txt"])
    assert isinstance(out.exception, ConfigError) and "cannot read" in str(out.exception)


HAIRPIN_MODE = """*filter
:FORWARD DROP [0:0]
:DOCKER - [0:0]
[7:420] -A FORWARD -o docker0 -j DOCKER
[0:0] -A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT
COMMIT
*nat
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A OUTPUT -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A POSTROUTING -o docker0 -m addrtype --src-type LOCAL -j MASQUERADE
-A DOCKER -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80
COMMIT
"""


def test_hairpin_mode_and_counters() -> None:
    """dockerd --userland-proxy=false writes DNATs without ``! -i``; ``iptables-save -c`` puts
    counters before each rule. Both import like the default layout."""
    result = import_rules(parse_save(HAIRPIN_MODE, "h"))
    assert result.unmapped == []
    assert result.config["endpoints"] == {"172.17.0.2": ep("docker0", "172.17.0.2", "8080:80")}
