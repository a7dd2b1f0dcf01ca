"""What self-healing stands on, against the kernel: nftables' notifications say which commits
touched nftnet's table and who made them (nft/monitor.py); ``heal`` does nothing when the
generation proves the last commit was nftnet's, and where a comparison proves the kernel
holds what nftnet applied (a rule added to the user chain by hand), it records the chain and
the generation, so that the next runtime change sends elements only again."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from nftnet.nft.monitor import Monitor
from tests.kernel.conftest import Netns
from tests.lab import in_netns
from tests.nftnet_run import nftnet, write_config

pytestmark = pytest.mark.kernel

CONFIG = {"version": 1, "networks": {"front": {"subnet": "172.31.1.0/24"}},
          "endpoints": {"web": {"network": "front", "ipv4": "172.31.1.10"}}}
HEAL = """
import json, sys
from nftnet.api import Engine
done = Engine(sys.argv[1]).heal()
print(json.dumps(done and done[0]))
"""


def heal(ns: Netns, state: Path) -> list[str] | None:
    return json.loads(ns.run(sys.executable, "-c", HEAL, str(state)))  # type: ignore[no-any-return]


def test_notifications_name_the_tables_and_who_committed(netns: Netns) -> None:
    def follow() -> list:
        seen = []
        with Monitor() as monitor:
            ready.set()
            deadline = time.monotonic() + 5
            while len([n for n in seen if n.ends_batch]) < 3 and time.monotonic() < deadline:
                batch = monitor.read(0.2)
                seen += batch.notices if batch else []
        return seen

    ready = threading.Event()
    out: list = []
    thread = threading.Thread(target=lambda: out.extend(in_netns(netns.name, follow)))
    thread.start()
    assert ready.wait(5)
    netns.run("nft", "add table ip other; add chain ip other c")
    netns.run("nft", "add table inet nftnet; add chain inet nftnet user")
    netns.run("nft", "flush", "ruleset")
    thread.join(10)
    batches, current = [], []
    for notice in out:
        current.append(notice)
        if notice.ends_batch:
            batches.append(current)
            current = []
    assert [any(n.touches_nftnet for n in b) for b in batches] == [False, True, True]
    assert all(b[-1].process == "nft" and b[-1].pid for b in batches)
    assert {(n.family, n.table) for n in batches[2][:-1]} == {("ip", "other"),
                                                              ("inet", "nftnet")}


def test_heal_proves_the_hand_change_and_records_the_generation(netns: Netns,
                                                                 tmp_path: Path) -> None:
    state = tmp_path / "state"
    nftnet(netns, "apply", "-f", str(write_config(tmp_path, CONFIG)), state_dir=state)
    assert heal(netns, state) is None  # the last commit was nftnet's: nothing to do
    netns.run("nft", "add", "rule", "inet", "nftnet", "user", "tcp", "dport", "22", "drop")
    status = json.loads(nftnet(netns, "status", "-o", "json", state_dir=state).stdout)
    assert status["in_sync"] is None
    lines = heal(netns, state)
    assert lines is not None and "recorded the user chain's 1 rule(s)" in lines
    status = json.loads(nftnet(netns, "status", "-o", "json", state_dir=state).stdout)
    assert status["in_sync"] is True  # proven by the comparison, generation recorded
    assert heal(netns, state) is None

    journal = state / "changes.jsonl"
    nftnet(netns, "port", "publish", "web", "8080:80", state_dir=state)
    assert journal.exists()  # elements only: one journal line, no full rewrite
    netns.run("nft", "flush", "ruleset")
    lines = heal(netns, state)
    assert lines is not None and "restored:" in lines
    rules = subprocess.run(["ip", "netns", "exec", netns.name, "nft", "list", "chain", "inet",
                            "nftnet", "user"], capture_output=True, text=True, check=True).stdout
    assert "tcp dport 22 drop" in rules
    nftnet(netns, "check", state_dir=state)
