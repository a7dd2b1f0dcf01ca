"""nftnet-cni with nftnet's real engine in a real chain: Debian's bridge + host-local, then the
installed nftnet-cni, run by hand as a runtime runs them in a throwaway host namespace; the
state directory in the test's own. What the plugin did is asked of the kernel (``nft -j``) and
of nftnet itself (its CLI in the same namespace)."""

from __future__ import annotations

import fcntl
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.cni_env import (
    CniFailure,
    CniHost,
    Sandbox,
    conflist,
    nftnet_cni_installed,
    plugin_conf,
    port_mappings,
    run_chain,
)
from tests.nftnet_run import nftnet, write_config

pytestmark = pytest.mark.kernel

FRONT = ("172.31.50.0/24", "fd00:50::/64")
BACK = ("172.31.51.0/24", "fd00:51::/64")
WEB = port_mappings((8080, 80, "tcp", ""), (5353, 53, "udp", ""), (8081, 81, "tcp", "127.0.0.1"))


class Chains:
    """The host with nftnet-cni installed, the two networks' conflists, and what ADD
    returned for each container (the result a runtime caches for CHECK and DEL)."""

    def __init__(self, host: CniHost, state: Path) -> None:
        self.host, self.state = host, state
        host.install("nftnet-cni", nftnet_cni_installed())
        self.nets = {"front": conflist(host, "front", "cni-front", FRONT, state),
                     "back": conflist(host, "back", "cni-back", BACK, state, icc=False)}
        self.boxes: dict[str, Sandbox] = {}
        self.results: dict[str, dict[str, Any]] = {}

    def add(self, cid: str, net: str = "front", args: dict[str, Any] | None = None
            ) -> dict[str, Any]:
        box = self.boxes.setdefault(cid, self.host.sandbox())
        *_, result = run_chain(self.host, self.nets[net], "ADD", cid, box, capability_args=args)
        assert result is not None
        self.results[cid] = result
        return result

    def run(self, command: str, cid: str, net: str = "front",
            args: dict[str, Any] | None = None) -> list[dict[str, Any] | None]:
        return run_chain(self.host, self.nets[net], command, cid, self.boxes.get(cid),
                         capability_args=args, cached=self.results.get(cid))

    def mine(self, command: str, cid: str, net: str = "front",
             args: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """nftnet-cni alone, given the cached result as prevResult."""
        chain = self.nets[net]
        return self.host.exec("nftnet-cni", command, plugin_conf(
            chain, chain["plugins"][1], args or {}, self.results.get(cid)), self.boxes.get(cid),
            cid)

    def cli(self, *argv: str, check: bool = True) -> Any:
        return nftnet(self.host.name, *argv, state_dir=self.state, check=check)

    def state_json(self) -> dict[str, Any]:
        """The effective runtime records, as nftnet's listings give them."""
        return {kind: {row["name"]: row for row in json.loads(
            self.cli(kind, "ls", "-o", "json").stdout)} for kind in ("network", "endpoint")}

    def elements(self, name: str) -> list[str]:
        """The elements of map ``name`` of table inet nftnet, as ``nft -j`` lists them."""
        out = self.host_run("nft", "-j", "list", "map", "inet", "nftnet", name)
        [body] = [o["map"] for o in json.loads(out)["nftables"] if "map" in o]
        return sorted(json.dumps(e) for e in body.get("elem", []))

    def generation(self) -> int:
        """The host namespace's nftables generation id: it counts the commits made there."""
        code = "from nftnet.nft.generation import generation; print(generation())"
        return int(self.host_run(sys.executable, "-c", code).strip().rpartition(":")[2])

    def host_run(self, *argv: str) -> str:
        import subprocess

        return subprocess.run(["ip", "netns", "exec", self.host.name, *argv], check=True,
                              capture_output=True, text=True, timeout=60).stdout


def address(result: dict[str, Any], version: int) -> str:
    return next(ip["address"].split("/")[0] for ip in result["ips"]
                if (":" in ip["address"]) == (version == 6))


@pytest.fixture
def chains(cni_host: CniHost, tmp_path: Path) -> Chains:
    return Chains(cni_host, tmp_path / "state")


def test_add_registers_check_passes_and_del_leaves_nothing(chains: Chains) -> None:
    web = chains.add("web", args=WEB)
    chains.add("peer")
    listed = chains.state_json()
    assert listed["network"]["cni-front"]["source"] == "cni"
    assert listed["network"]["cni-front"]["bridge"] == "cni-front"
    [name] = [n for n, e in listed["endpoint"].items() if ".web." in n]
    assert name == "front.web.eth0"
    assert (listed["endpoint"][name]["ipv4"], listed["endpoint"][name]["ipv6"]) == \
        (address(web, 4), address(web, 6))
    assert listed["endpoint"][name]["source"] == "cni" and listed["endpoint"][name]["ports"] == 3
    v4 = chains.elements("pubany4-addr")
    assert json.dumps([{"concat": ["tcp", 8080]}, address(web, 4)]) in v4
    assert json.dumps([{"concat": ["udp", 5353]}, address(web, 4)]) in v4
    assert json.dumps([{"concat": ["tcp", 8080]}, address(web, 6)]) in chains.elements(
        "pubany6-addr")
    assert json.dumps([{"concat": ["127.0.0.1", "tcp", 8081]}, address(web, 4)]) in \
        chains.elements("pub4-addr")
    assert chains.run("CHECK", "web", args=WEB) == [None, None]
    assert chains.cli("check").returncode == 0

    chains.run("DEL", "web")
    chains.run("DEL", "web")  # again: success
    assert run_chain(chains.host, chains.nets["front"], "DEL", "web", None) == [None, None]
    assert chains.elements("pubany4-addr") == []
    assert list(chains.state_json()["endpoint"]) == ["front.peer.eth0"]
    chains.run("DEL", "peer")
    assert chains.state_json() == {"network": {}, "endpoint": {}}  # the network went too
    [bridge] = chains.host.ip("link", "show", "dev", "cni-front")  # adopted: kept
    assert bridge["ifname"] == "cni-front"
    assert chains.cli("check").returncode == 0


def test_del_without_add_is_success_and_makes_nothing(chains: Chains) -> None:
    assert run_chain(chains.host, chains.nets["front"], "DEL", "ghost", None) == [None, None]
    assert not chains.state.exists()
    chains.add("web")
    assert run_chain(chains.host, chains.nets["back"], "DEL", "ghost", None) == [None, None]
    assert list(chains.state_json()["endpoint"]) == ["front.web.eth0"]


def test_check_names_what_was_tampered_with_and_only_for_its_container(chains: Chains) -> None:
    chains.add("web", args=WEB)
    other = port_mappings((8090, 80, "tcp", ""))
    chains.add("peer", args=other)
    chains.host_run("nft", "delete", "element", "inet", "nftnet", "pubany4-addr",
                    "{ tcp . 8080 }")
    with pytest.raises(CniFailure) as failure:
        chains.run("CHECK", "web", args=WEB)
    assert failure.value.error is not None and failure.value.error["code"] == 101
    assert "element missing: tcp . 8080" in failure.value.error["details"]
    assert chains.run("CHECK", "peer", args=other) == [None, None]
    with pytest.raises(CniFailure) as failure:  # CHECK against what ADD made: not 8091
        chains.run("CHECK", "peer", args=port_mappings((8091, 80, "tcp", "")))
    assert failure.value.error is not None and "publishes" in failure.value.error["details"]
    chains.cli("restore")
    assert chains.run("CHECK", "web", args=WEB) == [None, None]
    chains.run("DEL", "peer")
    with pytest.raises(CniFailure) as failure:  # nftnet-cni's own CHECK (bridge's fails first)
        chains.mine("CHECK", "peer", args=other)
    assert failure.value.error is not None and failure.value.error["code"] == 101
    assert "endpoint front.peer.eth0 is gone" in failure.value.error["details"]


def test_add_again_replaces_and_a_refused_add_changes_nothing(chains: Chains) -> None:
    chains.add("web", args=WEB)
    before = chains.elements("pubany4-addr")
    box = chains.boxes["peer"] = chains.host.sandbox()
    with pytest.raises(CniFailure) as failure:  # 8080 is web's
        run_chain(chains.host, chains.nets["front"], "ADD", "peer", box,
                  capability_args=port_mappings((8080, 80, "tcp", "")))
    assert failure.value.error is not None and failure.value.error["code"] == 7
    assert "8080" in failure.value.error["msg"] and "web" in failure.value.error["msg"]
    assert chains.elements("pubany4-addr") == before
    chains.run("DEL", "peer")  # as libcni does after a failed ADD
    with pytest.raises(CniFailure):  # the first container of a new network: refused too ...
        chains.add("other", net="back", args=port_mappings((8080, 80, "tcp", "")))
    assert "cni-back" not in chains.state_json()["network"]  # ... and its network not made
    # nftnet-cni's ADD again for the same attachment (after a runtime's retry of the chain):
    # replaced, in one transaction
    assert chains.mine("ADD", "web", args=port_mappings((9000, 80, "tcp", ""))) == \
        chains.results["web"]
    v4 = chains.elements("pubany4-addr")
    assert [json.loads(e)[0]["concat"][1] for e in v4] == [9000]
    assert chains.cli("check").returncode == 0


def test_every_add_is_one_commit_and_a_refused_one_none(chains: Chains) -> None:
    start = chains.generation()  # the bridge plugin commits nothing (ipMasq: false)
    chains.add("web", args=WEB)  # network and endpoint together
    assert chains.generation() == start + 1
    chains.add("peer")  # no ports: nothing to send
    assert chains.generation() == start + 1
    chains.add("db", args=port_mappings((8090, 80, "tcp", "")))
    assert chains.generation() == start + 2
    with pytest.raises(CniFailure) as failure:  # the first ADD on back: 8080 is web's
        chains.add("other", net="back", args=port_mappings((8080, 80, "tcp", "")))
    assert failure.value.error is not None and failure.value.error["code"] == 7
    assert chains.generation() == start + 2
    assert "cni-back" not in chains.state_json()["network"]
    assert chains.cli("check").returncode == 0


def test_add_turns_hairpin_on_where_the_bridge_plugin_did_not(chains: Chains) -> None:
    chain = conflist(chains.host, "side", "cni-side", ("172.31.52.0/24",), chains.state)
    chain["plugins"][0]["hairpinMode"] = False
    chains.nets["side"] = chain
    for cid in ("s1", "s2"):  # the network's first ADD (a full change), then elements only
        result = chains.add(cid, net="side")
        [veth] = [i["name"] for i in result["interfaces"]
                  if "sandbox" not in i and i["name"] != "cni-side"]
        [link] = json.loads(chains.host_run("ip", "-j", "-d", "link", "show", "dev", veth))
        assert link["linkinfo"]["info_slave_data"]["hairpin"] is True
    assert chains.cli("check").returncode == 0


def test_gc_removes_the_attachments_the_runtime_no_longer_has(chains: Chains) -> None:
    for cid in ("c1", "c2", "c3"):
        chains.add(cid, args=port_mappings((8000 + int(cid[1]), 80, "tcp", "")))
    chains.add("b1", net="back")
    gc = {**chains.nets["front"]["plugins"][1], "cniVersion": "1.1.0", "name": "front",
          "cni.dev/valid-attachments": [{"containerID": "c2", "ifname": "eth0"}]}
    assert chains.host.exec("nftnet-cni", "GC", gc) is None
    assert set(chains.state_json()["endpoint"]) == {"front.c2.eth0", "back.b1.eth0"}
    assert [json.loads(e)[0]["concat"][1] for e in chains.elements("pubany4-addr")] == [8002]
    chains.host.exec("nftnet-cni", "GC", {**gc, "cni.dev/valid-attachments": []})
    assert set(chains.state_json()["network"]) == {"cni-back"}
    assert chains.cli("check").returncode == 0


def test_many_adds_and_dels_in_parallel(chains: Chains) -> None:
    cids = [f"p{i}" for i in range(8)]
    for cid in cids:
        chains.boxes[cid] = chains.host.sandbox()

    def add(i: int) -> dict[str, Any]:
        return chains.add(cids[i], net="front" if i % 2 else "back",
                          args=port_mappings((7000 + i, 80, "tcp", "")))

    with ThreadPoolExecutor(len(cids)) as pool:
        results = list(pool.map(add, range(len(cids))))
    assert len({address(r, 4) for r in results}) == len(cids)
    assert len(chains.state_json()["endpoint"]) == len(cids)
    assert len(chains.elements("pubany4-addr")) == len(cids)
    assert chains.cli("check").returncode == 0

    def delete(i: int) -> None:
        chains.run("DEL", cids[i], net="front" if i % 2 else "back")

    with ThreadPoolExecutor(len(cids)) as pool:
        list(pool.map(delete, range(len(cids))))
    assert chains.state_json() == {"network": {}, "endpoint": {}}
    assert chains.cli("check").returncode == 0


def test_a_held_lock_is_waited_for_a_bounded_time(chains: Chains) -> None:
    chains.add("web")
    chains.host.env["NFTNET_LOCK_TIMEOUT"] = "0.5"
    with open(chains.state / "lock") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        started = time.monotonic()
        with pytest.raises(CniFailure) as failure:
            chains.add("peer")
        waited = time.monotonic() - started
        fcntl.flock(lock, fcntl.LOCK_UN)
    assert failure.value.error is not None and failure.value.error["code"] == 11
    assert "0.5 s" in failure.value.error["msg"] and "try again later" in \
        failure.value.error["msg"]
    assert waited < 5
    chains.run("DEL", "peer")
    chains.add("peer")  # the lock is free: as usual
    assert set(chains.state_json()["endpoint"]) == {"front.web.eth0", "front.peer.eth0"}
    chains.host.env["NFTNET_LOCK_TIMEOUT"] = "soon"
    with pytest.raises(CniFailure) as failure:
        chains.run("DEL", "peer")
    assert failure.value.error is not None and failure.value.error["code"] == 4


def test_status_listings_and_apply_leave_cni_entries_alone(chains: Chains, tmp_path: Path
                                                            ) -> None:
    web = chains.add("web", args=WEB)
    status = json.loads(chains.cli("status", "-o", "json").stdout)
    assert [(n["name"], n["source"]) for n in status["networks"]] == [("cni-front", "cni")]
    assert [(e["name"], e["source"]) for e in status["endpoints"]] == [("front.web.eth0", "cni")]
    assert "SOURCE" in chains.cli("status").stdout
    user = {"version": 1, "networks": {"mine": {"bridge": "br-mine",
                                                "subnets": ["172.31.60.0/24"]}},
            "endpoints": {"box": {"network": "mine", "ipv4": "172.31.60.10",
                                  "publish": ["7000:80"]}}}
    chains.cli("apply", "-f", str(write_config(tmp_path, user)))
    listed = chains.state_json()
    assert {n: r["source"] for n, r in listed["network"].items()} == \
        {"mine": "config", "cni-front": "cni"}
    assert {n: r["source"] for n, r in listed["endpoint"].items()} == \
        {"box": "config", "front.web.eth0": "cni"}
    assert json.dumps([{"concat": ["tcp", 8080]}, address(web, 4)]) in \
        chains.elements("pubany4-addr")
    assert chains.run("CHECK", "web", args=WEB) == [None, None]

    for networks, reason in (({"cni-front": {"subnets": ["172.31.70.0/24"]}},
                              "network cni-front is held by cni at runtime"),
                             ({"copy": {"subnets": [FRONT[0]]}},
                              f"{FRONT[0]} overlaps {FRONT[0]} of network cni-front")):
        bad = {"version": 1, "networks": {**user["networks"], **networks},
               "endpoints": user["endpoints"]}
        proc = chains.cli("apply", "-f", str(write_config(tmp_path, bad, "bad.yaml")),
                          check=False)
        assert proc.returncode == 2 and reason in proc.stderr, proc.stderr
    assert chains.run("CHECK", "web", args=WEB) == [None, None]
    chains.run("DEL", "web")
    assert set(chains.state_json()["network"]) == {"mine"}


def test_status_command_says_when_nftnet_cannot_serve(chains: Chains) -> None:
    status = {**chains.nets["front"]["plugins"][1], "cniVersion": "1.1.0", "name": "front"}
    assert chains.host.exec("nftnet-cni", "STATUS", status) is None  # nothing applied yet
    chains.add("web")
    assert chains.host.exec("nftnet-cni", "STATUS", status) is None
    chains.host_run("nft", "delete", "table", "inet", "nftnet")
    with pytest.raises(CniFailure) as failure:
        chains.host.exec("nftnet-cni", "STATUS", status)
    assert failure.value.error is not None and failure.value.error["code"] == 51
    assert "nftnet restore" in failure.value.error["msg"]
    chains.cli("restore")
    assert chains.host.exec("nftnet-cni", "STATUS", status) is None


def test_a_subnet_without_gateway_is_refused_before_anything_is_applied(chains: Chains) -> None:
    box = chains.host.sandbox()
    prev = {"cniVersion": "1.0.0",
            "interfaces": [{"name": "cni-front"}, {"name": "vethx"},
                           {"name": "eth0", "sandbox": box.path}],
            "ips": [{"interface": 2, "address": "172.31.50.9/24"}]}
    conf = {**chains.nets["front"]["plugins"][1], "cniVersion": "1.0.0", "name": "front",
            "prevResult": prev}
    with pytest.raises(CniFailure) as failure:
        chains.host.exec("nftnet-cni", "ADD", conf, box, "c1")
    assert failure.value.error is not None and failure.value.error["code"] == 7
    assert "no gateway for 172.31.50.0/24" in failure.value.error["msg"]
    assert "isGateway" in failure.value.error["msg"]
    assert not chains.state.exists()
