"""The only module that touches nftnet's files: the state directory, under an exclusive lock.

Layout of ``--state-dir`` (default /var/lib/nftnet):
  state.json  what nftnet last applied: the config (file format), the host facts it relied on,
              the bridges it created, and a fingerprint of the kernel table it left
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nftnet.errors import StateError

DEFAULT_DIR = "/var/lib/nftnet"
STATE_FILE = "state.json"
LOCK_FILE = "lock"
ERROR_LOG = "error.log"


@dataclass
class State:
    config: dict[str, Any]
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
        try:
            data = json.loads((self.path / STATE_FILE).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise StateError(f"cannot read {self.path / STATE_FILE}: {e}") from None
        return State(**data)

    def save(self, state: State) -> None:
        self._write(STATE_FILE, json.dumps(asdict(state), separators=(",", ":")))

    def _write(self, name: str, text: str) -> None:
        target = self.path / name
        tmp = target.with_suffix(".tmp")
        try:
            with open(tmp, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
            dir_fd = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as e:
            raise StateError(f"cannot write {target}: {e.strerror}") from None

    def log_error(self, text: str) -> Path | None:
        """Append to the error log; None when even that is impossible."""
        try:
            self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
            with open(self.path / ERROR_LOG, "a") as f:
                f.write(text)
            return self.path / ERROR_LOG
        except OSError:
            return None
