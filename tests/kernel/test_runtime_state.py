"""Runtime changes under concurrency and kill -9: the kernel and the state never disagree."""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.kernel.conftest import Netns
from tests.nftnet_run import nftnet, write_config

pytestmark = pytest.mark.kernel

CONFIG = {
    "version": 1,
    "networks": {"front": {"subnets": ["172.31.1.0/24", "fd00:1::/64"]}},
    "endpoints": {"e0": {"network": "front", "ipv4": "172.31.1.10", "ipv6": "fd00:1::10"}},
}


def start(ns: Netns, state: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(["ip", "netns", "exec", ns.name, sys.executable, "-m", "nftnet",
                             "--state-dir", str(state), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def kernel_ports(ns: Netns) -> dict[str, set[int]]:
    out = {}
    for v in (4, 6):
        text = ns.run("nft", "list", "map", "inet", "nftnet", f"pubany{v}-port")
        out[str(v)] = {int(p) for p in re.findall(r"tcp \. (\d+) :", text)}
    return out


def state_ports(ns: Netns, state: Path) -> dict[str, set[int]]:
    rows = json.loads(nftnet(ns, "port", "ls", "-o", "json", state_dir=state).stdout)
    out: dict[str, set[int]] = {"4": set(), "6": set()}
    for row in rows:
        host, port = re.match(r"(.*):(\d+)/tcp", row["port"]).groups()  # type: ignore[union-attr]
        out["6" if host.startswith("[") else "4"].add(int(port))
    return out


def test_fifty_concurrent_publishes_all_land(netns: Netns, tmp_path: Path) -> None:
    state = tmp_path / "state"
    nftnet(netns, "apply", "-f", str(write_config(tmp_path, CONFIG)), state_dir=state)
    procs = [start(netns, state, "port", "publish", "e0", f"{20000 + i}:80") for i in range(50)]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read() if p.stderr else ""
    want = set(range(20000, 20050))
    assert kernel_ports(netns) == {"4": want, "6": want}
    assert state_ports(netns, state) == {"4": want, "6": want}


def test_kill_9_at_any_moment_leaves_kernel_and_state_agreeing(netns: Netns,
                                                                tmp_path: Path) -> None:
    state = tmp_path / "state"
    nftnet(netns, "apply", "-f", str(write_config(tmp_path, CONFIG)), state_dir=state)
    rng = random.Random(7)
    for i in range(12):
        verb = "publish" if i % 3 else "unpublish"
        port = 30000 + (i if verb == "publish" else i - 1)
        proc = start(netns, state, "port", verb, "e0", f"{port}:80")
        time.sleep(rng.uniform(0.05, 0.9))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # the next command (any) completes or forgets the interrupted change first
        assert state_ports(netns, state) == kernel_ports(netns)


def test_wildcard_clashes_with_every_remaining_address_binding(netns: Netns,
                                                               tmp_path: Path) -> None:
    """Two endpoints bind one port on two addresses; after one lets go, a wildcard publish
    of that port still clashes with the other (the index keeps every holder)."""
    config = {**CONFIG, "endpoints": {**CONFIG["endpoints"], "e1": {
        "network": "front", "ipv4": "172.31.1.11"}}}
    state = tmp_path / "state"
    nftnet(netns, "apply", "-f", str(write_config(tmp_path, config)), state_dir=state)
    nftnet(netns, "port", "publish", "e0", "127.0.0.1:8080:80", state_dir=state)
    nftnet(netns, "port", "publish", "e1", "10.1.1.1:8080:80", state_dir=state)
    nftnet(netns, "port", "unpublish", "e1", "10.1.1.1:8080:80", state_dir=state)
    refused = nftnet(netns, "port", "publish", "e1", "8080:80", state_dir=state, check=False)
    assert refused.returncode == 2
    assert "already published by endpoint e0 (127.0.0.1:8080:80)" in refused.stderr
    nftnet(netns, "port", "unpublish", "e0", "127.0.0.1:8080:80", state_dir=state)
    nftnet(netns, "port", "publish", "e1", "8080:80", state_dir=state)
    assert 8080 in kernel_ports(netns)["4"]


def test_journal_replays_into_the_next_snapshot(netns: Netns, tmp_path: Path) -> None:
    """Runtime changes append to the journal; a full apply folds them into a new snapshot
    and they survive it, as the README's runtime rules say. (The file changes: an identical
    one changes nothing, see test_identical_apply_after_runtime_changes_changes_nothing.)"""
    state = tmp_path / "state"
    nftnet(netns, "apply", "-f", str(write_config(tmp_path, CONFIG)), state_dir=state)
    for port in (20001, 20002):
        nftnet(netns, "port", "publish", "e0", f"{port}:80", state_dir=state)
    assert len((state / "changes.jsonl").read_text().splitlines()) == 2
    snapshot = json.loads((state / "state.json").read_text())
    assert "20001:80" not in json.dumps(snapshot["runtime"])
    changed = {**CONFIG, "endpoints": {"e0": {**CONFIG["endpoints"]["e0"], "publish": ["81:81"]}}}
    nftnet(netns, "apply", "-f", str(write_config(tmp_path, changed)), state_dir=state)
    assert not (state / "changes.jsonl").exists()
    assert json.loads((state / "state.json").read_text())["runtime"]["publish"] == {
        "e0": ["20001:80", "20002:80"]}
    assert {20001, 20002} <= kernel_ports(netns)["4"]


def table_with_handles(ns: Netns) -> list[dict]:
    return json.loads(ns.run("nft", "-a", "-j", "list", "table", "inet", "nftnet"))["nftables"]


def test_identical_apply_after_runtime_changes_changes_nothing(netns: Netns,
                                                              tmp_path: Path) -> None:
    """nftnet's own runtime changes are no reason to rewrite the table: an identical apply
    after each says "no changes" and leaves every handle as it was; after unpublishing a
    declared port, it puts the port back, once."""
    state = tmp_path / "state"
    config = {**CONFIG, "endpoints": {"e0": {**CONFIG["endpoints"]["e0"],
                                             "publish": ["8080:80"]}}}
    path = str(write_config(tmp_path, config))
    nftnet(netns, "apply", "-f", path, state_dir=state)
    container = Netns()
    subprocess.run(["ip", "netns", "add", container.name], check=True)
    try:
        for change in (["port", "publish", "e0", "9000:80"],
                       ["endpoint", "attach", "app", "--network", "front", "--netns",
                        container.name, "-p", "9001:80"],
                       ["port", "publish", "app", "9002:80"],
                       ["port", "unpublish", "e0", "9000:80"],
                       ["endpoint", "detach", "app"]):
            nftnet(netns, *change, state_dir=state)
            before = table_with_handles(netns)
            out = nftnet(netns, "apply", "-f", path, state_dir=state).stdout
            assert out.startswith("no changes"), (change, out)
            assert table_with_handles(netns) == before, change
    finally:
        subprocess.run(["ip", "netns", "del", container.name], check=False)
    nftnet(netns, "port", "unpublish", "e0", "8080:80", state_dir=state)
    assert 8080 not in kernel_ports(netns)["4"]
    out = nftnet(netns, "apply", "-f", path, state_dir=state).stdout
    assert out.startswith("applied:") and "+ port 0.0.0.0:8080/tcp" in out
    assert 8080 in kernel_ports(netns)["4"]
    assert nftnet(netns, "apply", "-f", path, state_dir=state).stdout.startswith("no changes")
