"""A driver's sync (``Engine.sync``, nftnet/owned.py) against the kernel: what the owner holds
becomes exactly what it asks, in one commit (the generation moves by one), on bridges the
runtime made (adopted: kept when the owner drops them); an identical sync commits nothing;
what others hold is refused entry by entry with the holder named, and a file that declares
what the owner holds is refused at its line; a sync killed at any step is completed by the
next command."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from nftnet.crash import ENV
from tests.kernel.conftest import Netns
from tests.kernel.test_kill_points import kernel_ports
from tests.nftnet_run import nftnet, write_config

pytestmark = pytest.mark.kernel

CALL = """
import dataclasses, json, sys
from nftnet.api import Engine
from nftnet.errors import NftnetError
args = json.load(sys.stdin)
engine = Engine(args.pop("state"))
try:
    out = getattr(engine, args.pop("call"))(**args)
except NftnetError as e:
    print(json.dumps({"error": str(e), "exit": e.exit_code}))
else:
    print(json.dumps(out if isinstance(out, str | None) else dataclasses.asdict(out)))
"""
GENERATION = "from nftnet.nft.generation import generation; print(generation())"

D0 = {"bridge": "dk0", "subnets": ["10.40.0.0/24"], "gateway": "10.40.0.1"}
D1 = {"bridge": "dk1", "subnets": ["10.40.1.0/24", "fd40:1::/64"], "gateway": "10.40.1.1",
      "gateway6": "fd40:1::1", "masquerade": False}
WEB = {"network": "d0", "ipv4": "10.40.0.2", "publish": ["0.0.0.0:8080:80/tcp"]}
DB = {"network": "d1", "ipv4": "10.40.1.2", "ipv6": "fd40:1::2",
      "publish": ["0.0.0.0:5432:5432/tcp", "[::]:5432:5432/tcp"]}
NETS = {"d0": D0, "d1": D1}
EPS = {"web.d0": WEB, "db.d1": DB}
BRIDGES = {"dk0": ["10.40.0.1/24"], "dk1": ["10.40.1.1/24", "fd40:1::1/64"],
           "dk2": ["10.41.0.1/16"]}


@dataclass
class Host:
    ns: Netns
    tmp: Path

    @property
    def state(self) -> Path:
        return self.tmp / "state"

    def call(self, call: str, crash: str | None = None, **args: Any) -> Any:
        """An Engine method in the namespace (a process of its own, as the daemon is)."""
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **({ENV: crash} if crash else {})}
        proc = subprocess.run(["ip", "netns", "exec", str(self.ns), sys.executable, "-c", CALL],
                              input=json.dumps({"state": str(self.state), "call": call, **args}),
                              capture_output=True, text=True, timeout=120, env=env,
                              cwd=Path(__file__).resolve().parents[2])
        if crash:
            assert proc.returncode == -9, proc.stderr
            return None
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    def sync(self, networks: dict[str, Any], endpoints: dict[str, Any],
             crash: str | None = None) -> Any:
        return self.call("sync", crash, owner="docker", networks=networks, endpoints=endpoints)

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return nftnet(self.ns, *args, state_dir=self.state, check=check)

    def generation(self) -> int:
        out = self.ns.run(sys.executable, "-c", GENERATION).strip()
        return int(out.rpartition(":")[2])

    def stored(self) -> dict[str, Any]:
        return json.loads((self.state / "state.json").read_text())

    def addresses(self) -> dict[str, set[str]]:
        return {link["ifname"]: {f"{a['local']}/{a['prefixlen']}" for a in link["addr_info"]
                                 if a.get("scope") == "global"}
                for link in json.loads(self.ns.run("ip", "-j", "addr"))}


@pytest.fixture
def host(netns: Netns, tmp_path: Path) -> Host:
    """A namespace with the bridges a runtime made (addresses, up), as dockerd leaves them."""
    netns.run("ip", "link", "set", "lo", "up")
    for bridge, addrs in BRIDGES.items():
        netns.run("ip", "link", "add", bridge, "type", "bridge")
        for addr in addrs:
            netns.run("ip", "addr", "add", addr, "dev", bridge, *(
                ["nodad"] if ":" in addr else []))
        netns.run("ip", "link", "set", bridge, "up")
    return Host(netns, tmp_path)


def test_sync_makes_the_owners_entries_exactly_so_in_one_commit(host: Host) -> None:
    gen = host.generation()
    result = host.sync(NETS, EPS)
    assert (result["changed"], result["networks_added"], result["endpoints_added"],
            result["refused"]) == (True, ["d0", "d1"], ["db.d1", "web.d0"], [])
    assert host.generation() == gen + 1  # one transaction
    assert kernel_ports(host.ns) == {(4, 8080), (4, 5432), (6, 5432)}
    stored = host.stored()
    assert stored["created_bridges"] == [] and stored["bridge_addresses"] == {}  # adopted
    assert {n: e["owner"] for kind in ("networks", "endpoints")
            for n, e in stored["runtime"][kind].items()} == {
        "d0": "docker", "d1": "docker", "web.d0": "docker", "db.d1": "docker"}
    rows = json.loads(host("network", "ls", "-o", "json").stdout)
    assert {r["name"]: r["source"] for r in rows} == {"d0": "docker", "d1": "docker"}
    host("check")

    gen = host.generation()
    assert host.sync(NETS, EPS)["changed"] is False  # the same again: nothing sent
    assert host.generation() == gen

    moved = {"web.d0": {**WEB, "publish": ["0.0.0.0:8081:80/tcp"]}}
    result = host.sync({"d0": D0}, moved)
    assert (result["networks_removed"], result["endpoints_removed"],
            result["endpoints_replaced"]) == (["d1"], ["db.d1"], ["web.d0"])
    assert host.generation() == gen + 1
    assert kernel_ports(host.ns) == {(4, 8081)}
    assert host.addresses()["dk1"] == set(BRIDGES["dk1"])  # Docker's bridge, left as it was
    host("check")

    result = host.sync({}, {})
    assert result["networks_removed"] == ["d0"] and kernel_ports(host.ns) == set()
    assert {b: host.addresses()[b] for b in BRIDGES} == {b: set(a) for b, a in BRIDGES.items()}
    assert host.stored()["runtime"]["networks"] == {}
    host("check")


def test_what_others_hold_is_refused_entry_by_entry_and_files_give_way(host: Host) -> None:
    declared = {"version": 1, "networks": {"front": {"bridge": "dk2",
                                                      "subnets": ["10.41.0.0/24"]}},
                "endpoints": {"app": {"network": "front", "ipv4": "10.41.0.5",
                                      "publish": ["9000:80"]}}}
    host("apply", "-f", str(write_config(host.tmp, declared)))
    result = host.sync(
        {"front": D0, "d0": D0, "wide": {"bridge": "dk1", "subnets": ["10.41.0.0/16"]}},
        {"web.d0": {**WEB, "publish": ["0.0.0.0:9000:80/tcp"]},
         "x.d0": {"network": "d0", "ipv4": "10.40.0.3", "publish": ["0.0.0.0:8080:80/tcp"]},
         "y.wide": {"network": "wide", "ipv4": "10.41.1.2"},
         "z.d0": {"network": "d0", "ipv4": "10.40.0.3"}})
    refused = {r["name"]: r["reason"] for r in result["refused"]}
    assert set(refused) == {"front", "wide", "web.d0", "y.wide", "z.d0"}
    assert "declared in the config file" in refused["front"]
    assert "10.41.0.0/16 overlaps 10.41.0.0/24 of network front" in refused["wide"]
    assert "9000" in refused["web.d0"] and "app" in refused["web.d0"]
    assert "network wide is refused" in refused["y.wide"]
    assert "10.40.0.3 is already used by endpoint x.d0" in refused["z.d0"]
    assert (result["networks_added"], result["endpoints_added"]) == (["d0"], ["x.d0"])
    assert kernel_ports(host.ns) == {(4, 9000), (4, 8080)}
    host("check")

    for clash, expected in (
            ({"d0": {"subnets": ["10.42.0.0/24"]}},
             "networks.d0: network d0 is held by docker at runtime"),
            ({"other": {"subnets": ["10.40.0.0/25"]}},
             "networks.other.subnets: 10.40.0.0/25 overlaps 10.40.0.0/24 of network d0, "
             "held by docker"),
            ({"other": {"bridge": "dk0", "subnets": ["10.43.0.0/24"]}},
             "networks.other.bridge: bridge dk0 is already used by network d0, held by "
             "docker")):
        config = {**declared, "networks": {**declared["networks"], **clash}}
        proc = host("apply", "-f", str(write_config(host.tmp, config, "clash.yaml")),
                    check=False)
        assert proc.returncode == 2, proc.stderr
        assert re.search(rf"clash\.yaml:\d+: {re.escape(expected)}", proc.stderr), proc.stderr

    again = {**declared, "endpoints": {"app": {**declared["endpoints"]["app"],
                                               "publish": ["9001:80"]}}}
    host("apply", "-f", str(write_config(host.tmp, again, "again.yaml")))
    assert kernel_ports(host.ns) == {(4, 9001), (4, 8080)}  # Docker's entries stay
    assert host.call("sync", owner="docker", networks={"d0": D0},
                     endpoints={"x.d0": {"network": "d0", "ipv4": "10.40.0.3",
                                         "publish": ["0.0.0.0:8080:80/tcp"]}})["changed"] is False
    host("check")


@pytest.mark.parametrize("point", ["temp:state.next.json", "wrote:state.next.json", "links",
                                   "nft-before", "nft-after", "renamed", "temp:generation"])
def test_a_sync_killed_at_any_step_is_completed_by_the_next_command(host: Host,
                                                                     point: str) -> None:
    host.sync(NETS, EPS)
    moved = {"web.d0": {**WEB, "publish": ["0.0.0.0:8081:80/tcp"]}}
    host.sync({"d0": D0}, moved, crash=point)
    listed = json.loads(host("port", "ls", "-o", "json").stdout)  # completes it
    done = point != "temp:state.next.json"
    assert kernel_ports(host.ns) == ({(4, 8081)} if done else {(4, 8080), (4, 5432),
                                                                (6, 5432)})
    assert len(listed) == len(kernel_ports(host.ns))
    host("check")
    assert host.sync({"d0": D0}, moved)["changed"] is not done
    assert host.addresses()["dk1"] == set(BRIDGES["dk1"])
