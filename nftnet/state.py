"""The only module that touches nftnet's files: the state directory, under an exclusive lock.

Layout of ``--state-dir`` (default /var/lib/nftnet):
  state.json  a snapshot of what nftnet applied: the declared config (file format, from apply
              -f), what runtime commands added (endpoint attach, port publish, network
              create), the host facts it relied on, the bridges it created, and the user
              chain's rules as they were at nftnet's last change
  changes.jsonl
              runtime changes of one endpoint each (attach, detach, publish, unpublish) since
              that snapshot, one JSON line each: appending a line costs the same with 10 or
              50,000 ports, where rewriting the snapshot grows with them. Each line names its
              snapshot; the next full write folds the lines in and starts a new snapshot
  change.pending.json
              a runtime change written before it reaches the kernel and appended to the
              journal after: a crash in between is completed by the next command
  state.next.json
              a full change (apply, network create and rm, restore, completing a change):
              the whole next state, written before any link or the kernel changes, with the
              bridges the change will create; renamed over state.json once the kernel holds
              it. A crash in between is completed by the next command
  generation  the kernel ruleset generation right after nftnet's last change, when it proves
              that change was the only one (nft/generation.py; a small file of its own, so
              that recording it never rewrites the state)
  lock        flock'ed for the whole of every command that reads or changes state
  error.log   tracebacks of unexpected errors (exit 3)
Writes are atomic: a temp file is fsync'ed and renamed over the old one, or a line is appended
and fsync'ed (a torn last line was never committed and is ignored). A temp file left by a
killed command is removed by the next one to take the lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from nftnet import crash
from nftnet.errors import StateError

DEFAULT_DIR = "/var/lib/nftnet"
STATE_FILE = "state.json"
JOURNAL_FILE = "changes.jsonl"
PENDING_FILE = "change.pending.json"
NEXT_FILE = "state.next.json"
OLD_PENDING_FILE = "state.pending.json"  # before the journal: removed with the rest
GENERATION_FILE = "generation"
COMPACT_AFTER = 1 << 18  # bytes of journal after which a commit writes a new snapshot
RUNTIME_SECTIONS = ("endpoints", "publish", "unpublish")  # what a runtime change touches
NOT_IN_SNAPSHOT = frozenset({"generation", "changed_index"})  # State fields kept elsewhere
LOCK_FILE = "lock"
ERROR_LOG = "error.log"
WRITTEN = (STATE_FILE, NEXT_FILE, PENDING_FILE, GENERATION_FILE)  # by ``_write``, via temp files
# every file nftnet keeps in the directory (teardown removes them, and their temp files)
FILES = (*WRITTEN, JOURNAL_FILE, OLD_PENDING_FILE, ERROR_LOG, LOCK_FILE)


def empty_runtime() -> dict[str, Any]:
    return {"networks": {}, "endpoints": {}, "publish": {}, "unpublish": {}}


@dataclass
class State:
    config: dict[str, Any]
    runtime: dict[str, Any] = field(default_factory=empty_runtime)
    ports: dict[str, str] = field(default_factory=dict)  # binding (effective.port_key) -> holder
    # wildcard_key -> holders of bindings to one address on that port: a wildcard clashes
    specific: dict[str, list[str]] = field(default_factory=dict)
    user_chain: list[Any] | None = None
    forwarding_enabled: dict[str, bool] = field(default_factory=dict)
    created_bridges: list[str] = field(default_factory=list)
    # The last full change's batch: hash of all but the published ports' elements, and hash of
    # those; "" once a runtime change (which sends only those elements) changed them since.
    batch_hash: str = ""
    ports_hash: str = ""
    snapshot: str = ""  # id of the snapshot; journal lines of another snapshot do not apply
    generation: str | None = None  # kept in its own file
    # (index, key) of ``ports`` and ``specific`` changed by the change under way; not kept
    changed_index: set[tuple[str, str]] = field(default_factory=set)


def runtime_change(state: State, endpoint: str) -> dict[str, Any]:
    """A journal record of a runtime change to one endpoint: its runtime entries and the
    port-index keys the change touched, as they now are in ``state`` (None: deleted)."""
    index: dict[str, dict[str, Any]] = {"ports": {}, "specific": {}}
    for name, key in sorted(state.changed_index):
        index[name][key] = getattr(state, name).get(key)
    return {"snapshot": state.snapshot, "endpoint": endpoint,
            "runtime": {s: state.runtime[s].get(endpoint) for s in RUNTIME_SECTIONS},
            "index": index}


def replay(state: State, change: dict[str, Any]) -> None:
    """Set what a journal record says; setting, never adding, so replaying twice is harmless.
    The published ports then differ from those the last full change hashed."""
    state.ports_hash = ""
    for section, value in change["runtime"].items():
        entries = state.runtime[section]
        if value is None:
            entries.pop(change["endpoint"], None)
        else:
            entries[change["endpoint"]] = value
    for name, changed in change["index"].items():
        index = getattr(state, name)
        for key, value in changed.items():
            if value is None:
                index.pop(key, None)
            else:
                index[key] = value


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
            self._remove_temp_files()
            yield
        finally:
            os.close(fd)

    def _remove_temp_files(self) -> None:
        """Temp files of writes a killed command left: with the lock held, nobody writes."""
        for name in WRITTEN:
            (self.path / name).with_suffix(".tmp").unlink(missing_ok=True)

    def load(self) -> State | None:
        """The snapshot with the journal's changes replayed."""
        state = self._read(STATE_FILE)
        if state is None:
            return None
        for change in self._journal():
            if change.get("snapshot") == state.snapshot:
                replay(state, change)
        try:
            state.generation = (self.path / GENERATION_FILE).read_text().strip() or None
        except OSError:
            state.generation = None
        return state

    def _journal(self) -> list[dict[str, Any]]:
        try:
            lines = (self.path / JOURNAL_FILE).read_text().splitlines()
        except FileNotFoundError:
            return []
        except OSError as e:
            raise StateError(f"cannot read {self.path / JOURNAL_FILE}: {e.strerror}") from None
        out = []
        for i, line in enumerate(lines):
            try:
                out.append(json.loads(line))
            except ValueError:
                if i < len(lines) - 1:  # only the last line may be torn (never committed)
                    raise StateError(f"{self.path / JOURNAL_FILE}:{i + 1}: not JSON") from None
        return out

    def save_generation(self, generation: str | None) -> None:
        """Record the generation after nftnet's own change (None: unknown, forget it)."""
        if generation is None:
            (self.path / GENERATION_FILE).unlink(missing_ok=True)
        else:
            self._write(GENERATION_FILE, generation)

    def pending(self) -> tuple[State | None, State] | None:
        """A change that was begun but not completed (the process died in between): the state
        before it and the state it leads to; None when there is none. A full change
        (``prepare``) comes first: a runtime change under way when it began is folded in."""
        after = self._read(NEXT_FILE)
        if after is not None:
            return self.load(), after
        change = self._json(PENDING_FILE)
        if change is None:
            return None
        before = self.load()
        if before is None or change.get("snapshot") != before.snapshot:
            return None  # begun on a snapshot since replaced: the full write superseded it
        after = self.load()
        assert after is not None
        replay(after, change)
        return before, after

    def _json(self, name: str) -> Any:
        """A file's JSON; None when there is no such file."""
        try:
            return json.loads((self.path / name).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise StateError(f"cannot read {self.path / name}: {e}") from None

    def _read(self, name: str) -> State | None:
        data = self._json(name)
        if data is None:
            return None
        known = {f.name for f in fields(State)} - NOT_IN_SNAPSHOT  # drops older versions'
        return State(**{k: v for k, v in data.items() if k in known})

    def save(self, state: State) -> None:
        """Write a new snapshot of the whole state; the journal and a pending change, folded
        into it, go."""
        state.snapshot = uuid.uuid4().hex
        self._write(STATE_FILE, _dumps(state))
        for name in (JOURNAL_FILE, PENDING_FILE):
            (self.path / name).unlink(missing_ok=True)
        self.save_generation(state.generation)

    def prepare(self, state: State) -> None:
        """Record a full change before any of it happens: ``state``, the whole next state
        (with every bridge the change creates); ``finish`` makes it the snapshot."""
        state.snapshot = uuid.uuid4().hex
        self._write(NEXT_FILE, _dumps(state))

    def finish(self, state: State) -> None:
        """The kernel holds the prepared ``state``: it becomes the snapshot (a rename, so
        that the whole state is written once), and the journal and a pending runtime change,
        folded into it, go."""
        try:
            os.replace(self.path / NEXT_FILE, self.path / STATE_FILE)
            self._sync_dir()
        except OSError as e:
            raise StateError(f"cannot rename {self.path / NEXT_FILE}: {e.strerror}") from None
        crash.point("renamed")
        for name in (JOURNAL_FILE, PENDING_FILE):
            (self.path / name).unlink(missing_ok=True)
        self.save_generation(state.generation)

    def begin(self, change: dict[str, Any]) -> None:
        """Record a runtime change (``runtime_change``) before the kernel is changed; the
        generation is forgotten until the change is committed."""
        self.save_generation(None)
        self._write(PENDING_FILE, json.dumps(change, separators=(",", ":")))

    def commit(self) -> None:
        """The kernel holds the pending change: append it to the journal."""
        journal = self.path / JOURNAL_FILE
        try:
            line = (self.path / PENDING_FILE).read_text()
            with open(journal, "a") as f:
                f.write(line + "\n")
                f.flush()
                os.fsync(f.fileno())
            crash.point("journal-appended")
            (self.path / PENDING_FILE).unlink()
            self._sync_dir()
            crash.point("pending-removed")
            big = journal.stat().st_size > COMPACT_AFTER
        except OSError as e:
            raise StateError(f"cannot commit to {journal}: {e.strerror}") from None
        state = self.load() if big else None
        if state is not None:  # fold the journal into a new snapshot now and then
            self.save(state)

    def abort(self) -> None:
        """The kernel refused the change (runtime or full): forget it."""
        for name in (NEXT_FILE, PENDING_FILE):
            (self.path / name).unlink(missing_ok=True)

    def _write(self, name: str, text: str) -> None:
        target = self.path / name
        tmp = target.with_suffix(".tmp")
        try:
            with open(tmp, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            crash.point(f"temp:{name}")
            os.replace(tmp, target)
            self._sync_dir()
            crash.point(f"wrote:{name}")
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
        for name in FILES:
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
    fields_ = {f.name: getattr(state, f.name) for f in fields(state)
               if f.name not in NOT_IN_SNAPSHOT}
    return json.dumps(fields_, separators=(",", ":"))
