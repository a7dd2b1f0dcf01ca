"""The state directory's pending changes, on plain files (no kernel): what a killed command
leaves is found by the next one, full changes first, and temp files do not stay."""

from __future__ import annotations

import json
from pathlib import Path

from nftnet.state import (
    JOURNAL_FILE,
    NEXT_FILE,
    PENDING_FILE,
    STATE_FILE,
    State,
    StateDir,
    runtime_change,
)


def state(ports: list[str], hashed: str = "ports") -> State:
    return State(config={"version": 1}, runtime={"networks": {}, "endpoints": {},
                                                  "publish": {"e0": ports}, "unpublish": {}},
                 created_bridges=["nft-a"], batch_hash="table", ports_hash=hashed)


def begin_publish(d: StateDir, port: str) -> None:
    """What a runtime `port publish` records before the kernel changes."""
    now = d.load()
    assert now is not None
    now.runtime["publish"]["e0"] = [*now.runtime["publish"]["e0"], port]
    d.begin(runtime_change(now, "e0"))


def test_nothing_pending(tmp_path: Path) -> None:
    d = StateDir(tmp_path)
    assert d.pending() is None
    d.save(state([]))
    assert d.pending() is None


def test_a_runtime_change_is_pending_until_committed(tmp_path: Path) -> None:
    d = StateDir(tmp_path)
    d.save(state(["1:1"]))
    begin_publish(d, "2:2")
    pending = d.pending()
    assert pending is not None
    before, after = pending
    assert before is not None and before.runtime["publish"] == {"e0": ["1:1"]}
    assert after.runtime["publish"] == {"e0": ["1:1", "2:2"]}
    d.commit()
    assert d.pending() is None
    loaded = d.load()
    assert loaded is not None and loaded.runtime["publish"] == {"e0": ["1:1", "2:2"]}


def test_runtime_changes_forget_the_ports_hash(tmp_path: Path) -> None:
    """Replayed, a runtime change leaves the published ports unhashed: they differ from what
    the last full change sent."""
    d = StateDir(tmp_path)
    d.save(state(["1:1"]))
    loaded = d.load()
    assert loaded is not None and loaded.ports_hash == "ports"
    begin_publish(d, "2:2")
    d.commit()
    loaded = d.load()
    assert loaded is not None
    assert (loaded.batch_hash, loaded.ports_hash) == ("table", "")


def test_a_full_change_is_pending_until_finished(tmp_path: Path) -> None:
    d = StateDir(tmp_path)
    d.save(state(["1:1"]))
    begin_publish(d, "2:2")  # a runtime change under way that the full change folds in
    nxt = state(["1:1", "2:2", "3:3"])
    nxt.created_bridges = ["nft-a", "nft-b"]  # recorded before it is made
    d.prepare(nxt)
    pending = d.pending()
    assert pending is not None
    before, after = pending
    assert before is not None and before.runtime["publish"] == {"e0": ["1:1"]}
    assert after.runtime["publish"] == {"e0": ["1:1", "2:2", "3:3"]}
    assert after.created_bridges == ["nft-a", "nft-b"]
    loaded = d.load()  # the state stays what it was until the kernel holds the change
    assert loaded is not None and loaded.created_bridges == ["nft-a"]
    nxt.generation = "boot:1:7"
    d.finish(nxt)
    assert d.pending() is None
    loaded = d.load()
    assert loaded is not None
    assert loaded.runtime["publish"] == {"e0": ["1:1", "2:2", "3:3"]}
    assert (loaded.created_bridges, loaded.generation) == (["nft-a", "nft-b"], "boot:1:7")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["generation", STATE_FILE]


def test_abort_forgets_either_change(tmp_path: Path) -> None:
    d = StateDir(tmp_path)
    d.save(state([]))
    begin_publish(d, "2:2")
    d.prepare(state(["2:2"]))
    d.abort()
    assert d.pending() is None
    assert not (tmp_path / NEXT_FILE).exists() and not (tmp_path / PENDING_FILE).exists()


def test_the_lock_removes_temp_files_of_killed_writes(tmp_path: Path) -> None:
    d = StateDir(tmp_path)
    d.save(state([]))
    stale = ["state.tmp", "state.next.tmp", "change.pending.tmp", "generation.tmp"]
    for name in stale:
        (tmp_path / name).write_text("")
    (tmp_path / "notes.tmp").write_text("someone else's")
    with d.locked():
        left = sorted(p.name for p in tmp_path.iterdir())
    assert not set(stale) & set(left)
    assert "notes.tmp" in left
    assert json.loads((tmp_path / STATE_FILE).read_text())["ports_hash"] == "ports"
    assert not (tmp_path / JOURNAL_FILE).exists()
