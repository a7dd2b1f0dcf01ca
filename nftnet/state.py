"""The only module that touches nftnet's files: the state directory, under an exclusive lock.

Layout of ``--state-dir`` (default /var/lib/nftnet):
  state.json  what nftnet last applied: the declared config (file format, from apply -f), what
              runtime commands added (endpoint attach, port publish, network create), the host
              facts it relied on, the bridges it created, a fingerprint of the kernel table it
              left, and the user chain's rules as they were at nftnet's last change
  generation  the kernel ruleset generation right after nftnet's last change (a small file of
              its own, so that recording it never rewrites the state)
  state.pending.json
              the next state, written before a change reaches the kernel and renamed over
              state.json after: a crash in between is completed by the next command
  lock        flock'ed for the whole of every command that reads or changes state
  error.log   tracebacks of unexpected errors (exit 3)
Writes are atomic: a temp file is fsync'ed and renamed over the old one.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from nftnet.errors import StateError

DEFAULT_DIR = "/var/lib/nftnet"
STATE_FILE = "state.json"
PENDING_FILE = "state.pending.json"
GENERATION_FILE = "generation"
LOCK_FILE = "lock"
ERROR_LOG = "error.log"


def empty_runtime() -> dict[str, Any]:
    return {"networks": {}, "endpoints": {}, "publish": {}, "unpublish": {}}


@dataclass
class State:
    config: dict[str, Any]
    runtime: dict[str, Any] = field(default_factory=empty_runtime)
    ports: dict[str, str] = field(default_factory=dict)
    user_chain: list[Any] | None = None
    forwarding_enabled: dict[str, bool] = field(default_factory=dict)
    created_bridges: list[str] = field(default_factory=list)
    batch_hash: str = ""
    fingerprint: list[str] = field(default_factory=list)
    generation: int | None = None


class StateDir:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the lock so that concurrent nftnet commands run one after another."""
        try:
            self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise StateError(f"cannot use state directory {self.path}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def load(self) -> State | None:
        state = self._read(STATE_FILE)
        if state is not None:
            try:
                state.generation = int((self.path / GENERATION_FILE).read_text())
            except (OSError, ValueError):
                state.generation = None
        return state

    def save_generation(self, generation: int | None) -> None:
        """Record the generation after nftnet's own change (None: unknown, forget it)."""
        if generation is None:
            (self.path / GENERATION_FILE).unlink(missing_ok=True)
        else:
            self._write(GENERATION_FILE, str(generation))

    def pending(self) -> State | None:
        """A change that was begun but not committed (the process died in between)."""
        return self._read(PENDING_FILE)

    def _read(self, name: str) -> State | None:
        try:
            data = json.loads((self.path / name).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise StateError(f"cannot read {self.path / name}: {e}") from None
        return State(**data)

    def save(self, state: State) -> None:
        self._write(STATE_FILE, _dumps(state))
        self.save_generation(state.generation)

    def begin(self, state: State) -> None:
        """Record the next state before the kernel is changed (the generation is forgotten
        until the change is committed)."""
        self.save_generation(None)
        self._write(PENDING_FILE, _dumps(state))

    def commit(self) -> None:
        """The kernel holds the pending state: make it the state."""
        try:
            os.replace(self.path / PENDING_FILE, self.path / STATE_FILE)
            self._sync_dir()
        except OSError as e:
            raise StateError(f"cannot commit {self.path / PENDING_FILE}: {e.strerror}") from None

    def abort(self) -> None:
        """The kernel refused the change: forget the pending state."""
        (self.path / PENDING_FILE).unlink(missing_ok=True)

    def _write(self, name: str, text: str) -> None:
        target = self.path / name
        tmp = target.with_suffix(".tmp")
        try:
            with open(tmp, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
            self._sync_dir()
        except OSError as e:
            raise StateError(f"cannot write {target}: {e.strerror}") from None

    def _sync_dir(self) -> None:
        dir_fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def remove(self) -> bool:
        """Delete every file nftnet keeps here (teardown), then the directory; False when it
        holds files of someone else's and stays. Call with the lock held: its file goes too."""
        for name in (STATE_FILE, PENDING_FILE, GENERATION_FILE, ERROR_LOG, LOCK_FILE):
            for path in (self.path / name, (self.path / name).with_suffix(".tmp")):
                path.unlink(missing_ok=True)
        try:
            self.path.rmdir()
        except FileNotFoundError:
            pass
        except OSError:
            return False
        return True

    def log_error(self, text: str) -> Path | None:
        """Append to the error log; None when even that is impossible."""
        try:
            self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
            with open(self.path / ERROR_LOG, "a") as f:
                f.write(text)
            return self.path / ERROR_LOG
        except OSError:
            return None


def _dumps(state: State) -> str:
    # Not dataclasses.asdict: it deep-copies tens of thousands of entries first.
    fields_ = {f.name: getattr(state, f.name) for f in fields(state) if f.name != "generation"}
    return json.dumps(fields_, separators=(",", ":"))
