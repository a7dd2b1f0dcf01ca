"""The state lock: commands run one after another; with a ``lock_timeout`` (nftnet-cni's) a
command waits at most that long for another's lock, then fails with LockTimeout, nothing
changed. Two StateDirs of one directory conflict as two processes do (flock is per open file)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from nftnet.errors import LockTimeout
from nftnet.state import LOCK_FILE, StateDir


def hold(path: Path, seconds: float) -> tuple[threading.Thread, threading.Event]:
    """Hold the lock of ``path`` in a thread for ``seconds`` once the event is set."""
    taken = threading.Event()

    def body() -> None:
        with StateDir(path).locked():
            taken.set()
            time.sleep(seconds)

    thread = threading.Thread(target=body)
    thread.start()
    taken.wait(5)
    return thread, taken


def test_a_bounded_wait_gives_up_with_a_clear_error(tmp_path: Path) -> None:
    with StateDir(tmp_path).locked():
        started = time.monotonic()
        with pytest.raises(LockTimeout) as e, StateDir(tmp_path, lock_timeout=0.2).locked():
            pass
        waited = time.monotonic() - started
    assert 0.2 <= waited < 2
    assert str(e.value) == (f"another nftnet command has held {tmp_path / LOCK_FILE} for more "
                            "than 0.2 s; nothing was changed: try again later")
    with StateDir(tmp_path, lock_timeout=0).locked():  # free: taken at once, even with 0
        pass


def test_a_bounded_wait_gets_the_lock_when_it_is_released_in_time(tmp_path: Path) -> None:
    thread, _ = hold(tmp_path, 0.3)
    started = time.monotonic()
    with StateDir(tmp_path, lock_timeout=10).locked():
        assert time.monotonic() - started >= 0.2
    thread.join()


def test_without_a_bound_it_waits_as_long_as_it_takes(tmp_path: Path) -> None:
    thread, _ = hold(tmp_path, 0.5)
    started = time.monotonic()
    with StateDir(tmp_path).locked():
        assert time.monotonic() - started >= 0.4
    thread.join()
