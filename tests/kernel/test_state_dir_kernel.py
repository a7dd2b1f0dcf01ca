"""The state directory cannot be turned against root (the real CLI, as root, in a namespace):
a directory another user owns or may write is refused before anything is read, written or
applied; links planted in it are never followed; umask 000 still gives 0700 and 0600; and a
state that lists a bridge nftnet never made (forged, or from before the mark) cannot make
teardown or network rm delete it. Outcomes are read from the kernel and the file system."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from tests.kernel.conftest import Netns
from tests.nftnet_run import nftnet, write_config
from tests.unit.test_state_dir import modes, umask

pytestmark = pytest.mark.kernel

NOBODY = 65534
CONFIG = {
    "version": 1,
    "networks": {"front": {"subnet": "172.31.1.0/24"}, "back": {"subnet": "172.31.2.0/24"}},
    "endpoints": {"e0": {"network": "front", "ipv4": "172.31.1.10"}},
}
# Every name nftnet opens in the state directory.
NAMES = ("state.json", "state.tmp", "changes.jsonl", "changes.tmp", "change.pending.json",
         "change.pending.tmp", "generation", "generation.tmp", "lock", "lock.tmp", "error.log",
         "error.tmp", "applied.json", "applied.tmp")
VICTIM = "root's own file\n"


def links(ns: Netns) -> dict[str, dict[str, Any]]:
    return {link["ifname"]: link for link in json.loads(ns.run("ip", "-j", "link", "show"))}


def fingerprint(path: Path) -> tuple[str, int, int, int]:
    st = path.stat()
    return path.read_text(), stat.S_IMODE(st.st_mode), st.st_mtime_ns, st.st_nlink


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "victim"
    path.write_text(VICTIM)
    path.chmod(0o600)
    return path


def plant(directory: Path, victim: Path, uid: int, mode: int) -> None:
    """A directory of ``uid`` with ``mode``, and a link to ``victim`` under every name."""
    directory.mkdir()
    for name in NAMES:
        (directory / name).symlink_to(victim)
        os.chown(directory / name, uid, uid, follow_symlinks=False)
    os.chown(directory, uid, uid)
    directory.chmod(mode)


COMMANDS = [("apply", "-f", "CONFIG"), ("plan", "-f", "CONFIG"), ("status",), ("check",),
            ("restore",), ("teardown", "--yes"), ("port", "publish", "e0", "9000:80"),
            ("network", "create", "n", "--subnet", "10.1.0.0/24"), ("endpoint", "ls"),
            ("user", "add", "ip", "saddr", "10.9.9.9", "drop")]


def test_a_planted_directory_is_refused_by_every_command(netns: Netns, tmp_path: Path,
                                                         victim: Path) -> None:
    state = tmp_path / "planted"
    plant(state, victim, NOBODY, 0o777)
    config = str(write_config(tmp_path, CONFIG))
    before, listing = fingerprint(victim), sorted(os.listdir(state))
    for command in COMMANDS:
        proc = nftnet(netns, *(config if a == "CONFIG" else a for a in command),
                      state_dir=state, check=False)
        assert proc.returncode == 2, (command, proc.stdout, proc.stderr)
        assert (f"state directory {state} is owned by uid {NOBODY} and writable by group or "
                f"others (mode 0777)") in proc.stderr, command
        assert f"fix: chown root: {state} && chmod 700 {state}" in proc.stderr
        assert "Traceback" not in proc.stderr
    assert fingerprint(victim) == before
    assert sorted(os.listdir(state)) == listing
    assert netns.run("nft", "list", "tables") == ""  # nothing applied
    assert set(links(netns)) == {"lo"}


@pytest.mark.parametrize(("uid", "mode", "problem"), [
    (NOBODY, 0o700, f"owned by uid {NOBODY}"),
    (0, 0o777, "writable by group or others (mode 0777)"),
    (0, 0o770, "writable by group or others (mode 0770)"),
    (0, 0o1733, "writable by group or others (mode 1733)"),
], ids=["other-owner", "world-writable", "group-writable", "sticky"])
def test_a_directory_someone_else_can_change_is_refused(
        netns: Netns, tmp_path: Path, victim: Path, uid: int, mode: int, problem: str) -> None:
    state = tmp_path / "planted"
    plant(state, victim, uid, mode)
    before = fingerprint(victim)
    proc = nftnet(netns, "apply", "-f", str(write_config(tmp_path, CONFIG)), state_dir=state,
                  check=False)
    assert proc.returncode == 2
    assert f"state directory {state} is {problem}" in proc.stderr
    assert fingerprint(victim) == before
    assert netns.run("nft", "list", "tables") == ""


def test_links_planted_in_a_sound_directory_are_never_followed(netns: Netns, tmp_path: Path,
                                                              victim: Path) -> None:
    """Root's own directory holding a link (an earlier nftnet's bug, a mistake): the files that
    are read or appended to are refused (exit 2); a temp file's link is replaced, never written
    through. Each name in turn, around the commands that touch it."""
    state = tmp_path / "state"
    config = str(write_config(tmp_path, CONFIG))
    nftnet(netns, "apply", "-f", config, state_dir=state)
    nftnet(netns, "port", "publish", "e0", "9000:80", state_dir=state)
    before = fingerprint(victim)
    refused = {"state.json", "changes.jsonl", "change.pending.json", "generation", "lock"}
    by_apply = {"applied.json"}  # the proof of an unchanged file: read by apply alone
    # others: never opened
    replaced = {"state.tmp", "change.pending.tmp", "generation.tmp", "applied.tmp"}
    for n, name in enumerate(n for n in NAMES if n != "error.log"):
        path = state / name
        saved = path.read_bytes() if path.exists() else None
        path.unlink(missing_ok=True)
        path.symlink_to(victim)
        for command in (("port", "publish", "e0", f"{9100 + n}:80"), ("apply", "-f", config)):
            proc = nftnet(netns, *command, state_dir=state, check=False)
            if name in refused or (name in by_apply and command[0] == "apply"):
                assert proc.returncode == 2, (name, proc.stderr)
                assert f"{path} is a symbolic link, which nftnet never follows" in proc.stderr
            else:
                assert proc.returncode == 0, (name, proc.stderr)
            assert fingerprint(victim) == before, (name, command)
        assert path.is_symlink() == (name not in replaced), name
        path.unlink(missing_ok=True)
        if saved is not None:
            path.write_bytes(saved)
            path.chmod(0o600)
    assert victim.read_text() == VICTIM


def test_an_unexpected_error_never_logs_through_a_link(netns: Netns, tmp_path: Path,
                                                       victim: Path) -> None:
    state = tmp_path / "state"
    nftnet(netns, "apply", "-f", str(write_config(tmp_path, CONFIG)), state_dir=state)
    (state / "state.json").write_text("[]")  # not an object: load fails as a bug would (exit 3)
    (state / "error.log").symlink_to(victim)
    before = fingerprint(victim)
    proc = nftnet(netns, "status", state_dir=state, check=False)
    assert proc.returncode == 3
    assert "details in stderr" in proc.stderr and "Traceback" in proc.stderr
    assert fingerprint(victim) == before
    (state / "error.log").unlink()
    with umask(0o000):
        proc = nftnet(netns, "status", state_dir=state, check=False)
    assert proc.returncode == 3
    assert f"details in {state / 'error.log'}" in proc.stderr
    assert "Traceback" in (state / "error.log").read_text()
    assert stat.S_IMODE((state / "error.log").stat().st_mode) == 0o600


def test_a_symlinked_state_directory_is_refused(netns: Netns, tmp_path: Path) -> None:
    (tmp_path / "real").mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    proc = nftnet(netns, "apply", "-f", str(write_config(tmp_path, CONFIG)),
                  state_dir=tmp_path / "link", check=False)
    assert proc.returncode == 2
    assert f"fix: --state-dir {tmp_path / 'real'}" in proc.stderr
    assert os.listdir(tmp_path / "real") == []


def test_umask_000_gives_0700_directories_and_0600_files(netns: Netns, tmp_path: Path) -> None:
    root = tmp_path / "a"
    state = root / "b" / "state"
    with umask(0o000):
        nftnet(netns, "apply", "-f", str(write_config(tmp_path, CONFIG)), state_dir=state)
        nftnet(netns, "port", "publish", "e0", "9000:80", state_dir=state)  # the journal
        assert modes(root) == {".": 0o700, "b": 0o700, "b/state": 0o700,
                               **{f"b/state/{n}": 0o600 for n in ("state.json", "changes.jsonl",
                                                                  "generation", "lock",
                                                                  "applied.json")}}
        nftnet(netns, "user", "add", "ip", "saddr", "10.9.9.9", "drop", state_dir=state)
        out = nftnet(netns, "teardown", "--yes", state_dir=state).stdout
    saved = Path(out.split("rule(s) to ")[1].split()[0])
    assert saved.parent == root / "b"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600


def forge(state: Path, bridge: str) -> None:
    """List ``bridge`` in the state as one nftnet created."""
    path = state / "state.json"
    data = json.loads(path.read_text())
    data["created_bridges"].append(bridge)
    path.write_text(json.dumps(data))


def test_teardown_deletes_only_bridges_that_carry_the_mark(netns: Netns, tmp_path: Path) -> None:
    state = tmp_path / "state"
    netns.run("ip", "link", "add", "br-adopted", "type", "bridge")
    config = {**CONFIG, "networks": {**CONFIG["networks"],  # type: ignore[dict-item]
                                     "adopted": {"bridge": "br-adopted",
                                                 "subnet": "172.31.3.0/24"}}}
    nftnet(netns, "apply", "-f", str(write_config(tmp_path, config)), state_dir=state)
    netns.run("ip", "link", "add", "victimbr", "type", "bridge")
    seen = links(netns)
    assert seen["nft-front"].get("ifalias") == seen["nft-back"].get("ifalias") == "nftnet"
    assert "ifalias" not in seen["br-adopted"] and "ifalias" not in seen["victimbr"]
    forge(state, "victimbr")
    forge(state, "br-adopted")

    out = nftnet(netns, "teardown", "--yes", state_dir=state).stdout
    assert "bridges nftnet created: nft-back nft-front\n" in out
    assert "kept: br-adopted victimbr, listed in the state as made by nftnet but without " \
           "its mark" in out
    assert set(links(netns)) == {"lo", "br-adopted", "victimbr"}
    assert not state.exists()


def test_network_rm_deletes_only_a_bridge_that_carries_the_mark(netns: Netns,
                                                                tmp_path: Path) -> None:
    state = tmp_path / "state"
    nftnet(netns, "apply", "-f", str(write_config(tmp_path, CONFIG)), state_dir=state)
    netns.run("ip", "link", "add", "victimbr", "type", "bridge")
    nftnet(netns, "network", "create", "side", "--subnet", "172.31.9.0/24", "--bridge",
           "victimbr", state_dir=state)  # adopted
    nftnet(netns, "network", "create", "own", "--subnet", "172.31.8.0/24", state_dir=state)
    assert links(netns)["nft-own"].get("ifalias") == "nftnet"
    forge(state, "victimbr")

    out = nftnet(netns, "network", "rm", "side", state_dir=state).stdout
    assert "kept bridge victimbr: it lacks nftnet's mark" in out
    assert "victimbr" in links(netns)
    assert "victimbr" not in json.loads((state / "state.json").read_text())["created_bridges"]
    nftnet(netns, "network", "rm", "own", state_dir=state)
    assert "nft-own" not in links(netns)


def test_render_works_where_the_state_is_refused(netns: Netns, tmp_path: Path,
                                                 victim: Path) -> None:
    state = tmp_path / "planted"
    plant(state, victim, NOBODY, 0o777)
    proc = nftnet(netns, "render", "-f", str(write_config(tmp_path, CONFIG)), state_dir=state)
    assert json.loads(proc.stdout)["nftables"]
    assert victim.read_text() == VICTIM
