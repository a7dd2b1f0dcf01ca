"""The state directory cannot be turned against nftnet: every file is opened without following a
link, refused unless only nftnet's user can change it, and made 0600 (directories 0700)
whatever the umask. In-process, on files of the test's own user (no root needed); the CLI
with directories of another user is tests/kernel/test_state_dir_kernel.py."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from nftnet.errors import EXIT_INVALID, StateError, UnsafeStateError
from nftnet.state import (
    ERROR_LOG,
    GENERATION_FILE,
    JOURNAL_FILE,
    LOCK_FILE,
    PENDING_FILE,
    STATE_FILE,
    State,
    StateDir,
    create_file,
)

VICTIM = "do not touch\n"


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def modes(root: Path) -> dict[str, int]:
    """Permission bits of ``root`` and everything under it, by path relative to root."""
    out = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        out[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return out


def applied(path: Path) -> StateDir:
    """A state directory as a full apply and one runtime change leave it."""
    state_dir = StateDir(path)
    with state_dir.locked():
        state = State(config={"version": 1}, generation="g1")
        state_dir.save(state)
        state_dir.begin({"snapshot": state.snapshot, "endpoint": "e", "runtime": {},
                         "index": {}})
        state_dir.commit()
        state_dir.save_generation("g2")
    return state_dir


def every_operation(state_dir: StateDir) -> None:
    """What the commands do with the directory: read all, write all, append, log."""
    with state_dir.locked():
        state = state_dir.load()
        state_dir.pending()
        state = state or State(config={"version": 1})
        state_dir.begin({"snapshot": state.snapshot, "endpoint": "e", "runtime": {},
                         "index": {}})
        state_dir.commit()
        state_dir.save(state)
        state_dir.save_generation("g3")
        state_dir.abort()


# File names nftnet opens, and whether a link planted there is refused (it is read or appended
# to) or replaced (a temp file: unlinked, never opened through).
PLANTED = {STATE_FILE: True, JOURNAL_FILE: True, PENDING_FILE: True, GENERATION_FILE: True,
           LOCK_FILE: True, ERROR_LOG: True, "state.tmp": False, "change.pending.tmp": False,
           "generation.tmp": False}


@pytest.mark.parametrize("name", sorted(PLANTED))
def test_a_planted_symlink_is_never_followed(tmp_path: Path, name: str) -> None:
    victim = tmp_path / "victim"
    victim.write_text(VICTIM)
    state_dir = applied(tmp_path / "state")
    link = tmp_path / "state" / name
    link.unlink(missing_ok=True)
    link.symlink_to(victim)
    if name == ERROR_LOG:
        assert state_dir.log_error("Traceback ...\n") is None
    elif PLANTED[name]:
        message = f"{link} is a symbolic link, which nftnet never follows"
        with pytest.raises(UnsafeStateError, match=re.escape(message)):
            every_operation(state_dir)
    else:
        every_operation(state_dir)
        assert not link.is_symlink()  # the temp file replaced the link, never wrote through it
    assert victim.read_text() == VICTIM
    assert victim.stat().st_nlink == 1


@pytest.mark.parametrize("name", [STATE_FILE, JOURNAL_FILE, GENERATION_FILE, LOCK_FILE])
def test_a_hard_link_or_a_fifo_is_refused(tmp_path: Path, name: str) -> None:
    victim = tmp_path / "victim"
    victim.write_text(VICTIM)
    victim.chmod(0o600)
    state_dir = applied(tmp_path / "state")
    path = tmp_path / "state" / name
    for plant in (lambda: os.link(victim, path), lambda: os.mkfifo(path, 0o600)):
        path.unlink()
        plant()
        message = f"{path} is not a regular file of one link"
        with pytest.raises(UnsafeStateError, match=re.escape(message)):
            every_operation(state_dir)  # a FIFO must not hang the open either
    assert victim.read_text() == VICTIM


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o702, 0o720], ids=oct)
def test_a_directory_others_can_write_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "state"
    path.mkdir()
    path.chmod(mode)
    victim = tmp_path / "victim"
    victim.write_text(VICTIM)
    (path / "state.tmp").symlink_to(victim)
    operations: list[Callable[[StateDir], object]] = [
        every_operation, StateDir.load, StateDir.pending, StateDir.remove,
        lambda d: d.save(State(config={})), lambda d: d.save_generation("g")]
    for operation in operations:
        with pytest.raises(UnsafeStateError) as refused:
            operation(StateDir(path))
        assert refused.value.exit_code == EXIT_INVALID
        assert f"state directory {path} is writable by group or others (mode {mode:04o})" in \
            str(refused.value)
        assert f"fix: chown {'root' if os.geteuid() == 0 else os.geteuid()}: {path} && " \
            f"chmod 700 {path}" in str(refused.value)
    assert StateDir(path).log_error("x") is None
    assert sorted(p.name for p in path.iterdir()) == ["state.tmp"]
    assert victim.read_text() == VICTIM


def test_a_file_others_can_write_is_refused(tmp_path: Path) -> None:
    state_dir = applied(tmp_path / "state")
    path = tmp_path / "state" / STATE_FILE
    path.chmod(0o646)
    message = f"state file {path} is writable by group or others (mode 0646)"
    with pytest.raises(UnsafeStateError, match=re.escape(message)):
        state_dir.load()
    path.chmod(0o644)  # readable by others is no danger (older nftnet made them so)
    assert state_dir.load() is not None


def test_a_symlinked_state_directory_is_refused(tmp_path: Path) -> None:
    applied(tmp_path / "real")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(UnsafeStateError, match=re.escape(f"fix: --state-dir {tmp_path / 'real'}")):
        StateDir(tmp_path / "link").load()
    with pytest.raises(UnsafeStateError), StateDir(tmp_path / "link").locked():
        pass


def test_umask_000_makes_0700_directories_and_0600_files(tmp_path: Path) -> None:
    root = tmp_path / "a"
    with umask(0o000):
        state_dir = applied(root / "b" / "state")
        assert state_dir.log_error("Traceback ...\n") == root / "b" / "state" / ERROR_LOG
        create_file(tmp_path / "saved.nft", "add rule ...\n")
    assert modes(root) == {".": 0o700, "b": 0o700, "b/state": 0o700,
                           **{f"b/state/{n}": 0o600 for n in (STATE_FILE, JOURNAL_FILE,
                                                              GENERATION_FILE, LOCK_FILE,
                                                              ERROR_LOG)}}
    assert stat.S_IMODE((tmp_path / "saved.nft").stat().st_mode) == 0o600
    with umask(0o777):  # a umask that takes every bit away takes none of nftnet's
        applied(tmp_path / "c")
        create_file(tmp_path / "saved2.nft", "")
    assert set(modes(tmp_path / "c").values()) == {0o700, 0o600}
    assert stat.S_IMODE((tmp_path / "saved2.nft").stat().st_mode) == 0o600


def test_create_file_never_writes_through_a_link(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text(VICTIM)
    (tmp_path / "saved.nft").symlink_to(victim)
    with pytest.raises(FileExistsError):
        create_file(tmp_path / "saved.nft", "x")
    assert victim.read_text() == VICTIM


def test_reading_a_missing_directory_makes_nothing(tmp_path: Path) -> None:
    state_dir = StateDir(tmp_path / "a" / "state")
    assert state_dir.load() is None and state_dir.pending() is None
    assert state_dir.remove()
    assert not (tmp_path / "a").exists()


def test_a_file_in_place_of_the_directory_is_a_state_error(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("")
    with pytest.raises(StateError, match=r"cannot use state directory .*: Not a directory") as e:
        StateDir(tmp_path / "state").load()
    assert not isinstance(e.value, UnsafeStateError)
