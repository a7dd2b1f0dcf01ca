"""The only module that touches nftnet's files: the state directory, under an exclusive lock.

Layout of ``--state-dir`` (default /var/lib/nftnet):
  state.json  a snapshot of what nftnet applied: the declared config (file format, from apply
              -f), what runtime commands added (endpoint attach, port publish, network
              create), the host facts it relied on, the bridges it created and the addresses
              it added to bridges, and the user chain's rules as they were at nftnet's last
              change
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
  applied.json
              the proof that an ``apply -f`` of the same file would change nothing
              (applied.py): a digest of the file, the identity of state.json and
              changes.jsonl, the generation and the links, as a full apply left them
  lock        flock'ed for the whole of every command that reads or changes state
  daemon.lock flock'ed for as long as ``nftnet daemon`` runs on the directory (one daemon per
              directory); the daemon takes ``lock`` only for each change, never while idle
  daemon.json what the daemon follows and how it stands (for ``nftnet status``), written by
              the daemon alone
  error.log   tracebacks of unexpected errors (exit 3)
A process that makes change after change (the daemon) keeps the state it committed in memory
(``commit(state)``): its next ``load`` reads no file while neither state.json nor changes.jsonl
changed since (inode, size, mtime, ctime), so that a change costs the same with 10 or 10,000
ports; whatever another command wrote is read from the files as ever.
Writes are atomic: a temp file is fsync'ed and renamed over the old one, or a line is appended
and fsync'ed (a torn last line was never committed and is ignored). The pending change and the
generation are renamed unsynced: a power loss undoes the kernel change the one completes and
voids the other (a token of the boot); a kill keeps the page cache. A runtime change thus
syncs twice (its line, the directory), with 10 or 10,000 ports.

nftnet runs as root, so nobody else may steer it through this directory: it is refused (exit 2,
naming the fix) unless it, and every parent nftnet makes for it, is owned by nftnet's own user
and writable by nobody else, and it is not a symbolic link. Directories are made 0700 and files
0600, whatever the umask. Every file is opened relative to one descriptor of the checked
directory, never through a symbolic link, and refused unless it is a regular file of one link
that only nftnet's user can change. A temp file left by a
killed command is removed by the next one to take the lock.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from nftnet import crash
from nftnet.errors import DaemonRunning, LockTimeout, StateError, UnsafeStateError

DEFAULT_DIR = "/var/lib/nftnet"
STATE_FILE = "state.json"
JOURNAL_FILE = "changes.jsonl"
PENDING_FILE = "change.pending.json"
NEXT_FILE = "state.next.json"
OLD_PENDING_FILE = "state.pending.json"  # before the journal: removed with the rest
GENERATION_FILE = "generation"
APPLIED_FILE = "applied.json"
COMPACT_AFTER = 1 << 18  # bytes of journal (at least, and at least the snapshot's size) after
# which a commit writes a new snapshot: the snapshot's cost, spread over as many bytes of lines
RUNTIME_SECTIONS = ("endpoints", "publish", "unpublish")  # what a runtime change touches
NOT_IN_SNAPSHOT = frozenset({"generation", "changed_index"})  # State fields kept elsewhere
LOCK_FILE = "lock"
DAEMON_LOCK = "daemon.lock"
DAEMON_FILE = "daemon.json"
DAEMON_LOCK_WAIT = 2.0  # seconds: ``daemon_running`` holds the lock for an instant
ERROR_LOG = "error.log"
DIR_MODE, FILE_MODE = 0o700, 0o600  # whatever the umask
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_FILE_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # O_NONBLOCK: a FIFO never hangs
# by ``_write``, via temp files
WRITTEN = (STATE_FILE, NEXT_FILE, PENDING_FILE, GENERATION_FILE, APPLIED_FILE)
# every file nftnet keeps in the directory (teardown removes them, and their temp files)
FILES = (*WRITTEN, JOURNAL_FILE, OLD_PENDING_FILE, ERROR_LOG, LOCK_FILE, DAEMON_FILE, DAEMON_LOCK)


def empty_runtime() -> dict[str, Any]:
    return {"networks": {}, "endpoints": {}, "publish": {}, "unpublish": {}}


@dataclass
class State:
    config: dict[str, Any]
    runtime: dict[str, Any] = field(default_factory=empty_runtime)
    ports: dict[str, str] = field(default_factory=dict)  # desired.ports.PortIndex
    # wildcard_key -> holders of bindings to one address on that port: a wildcard clashes
    specific: dict[str, list[str]] = field(default_factory=dict)
    user_chain: list[Any] | None = None
    forwarding_enabled: dict[str, bool] = field(default_factory=dict)
    created_bridges: list[str] = field(default_factory=list)
    # bridge -> the addresses ("ip/prefix") nftnet added to it: on an adopted bridge, the only
    # ones it may take away again
    bridge_addresses: dict[str, list[str]] = field(default_factory=dict)
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
    """The state directory. Every file is opened relative to one descriptor of the directory,
    which is checked when opened (``_open_dir``), and never through a symbolic link."""

    def __init__(self, path: str | os.PathLike[str], lock_timeout: float | None = None) -> None:
        self.path = Path(path)
        self.lock_timeout = lock_timeout  # seconds ``locked`` waits at most; None: no bound
        self._fd: int | None = None  # the directory, open while the lock is held
        # the state a commit led to, and the files' identity then: the next load's, unread
        self._kept: tuple[Any, State] | None = None

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the lock so that concurrent nftnet commands run one after another; the
        directory is made if missing and checked, once for the whole command. With a
        ``lock_timeout``, LockTimeout when another command holds it longer than that."""
        fd = self._open_dir(create=True)
        assert fd is not None
        try:
            try:
                lock = self._open(fd, LOCK_FILE, os.O_RDWR | os.O_CREAT)
            except OSError as e:
                raise StateError(f"cannot lock {self.path / LOCK_FILE}: {e.strerror}") from None
        except BaseException:
            os.close(fd)
            raise
        try:
            self._wait_for(lock)
            self._fd = fd
            self._remove_temp_files()
            yield
        finally:
            self._fd = None
            os.close(lock)
            os.close(fd)

    def _wait_for(self, lock: int) -> None:
        """Take the flock on ``lock``: blocking without a bound, else polled until the bound
        (flock has no timeout of its own; a signal-based one would not suit threads)."""
        if self.lock_timeout is None:
            fcntl.flock(lock, fcntl.LOCK_EX)
            return
        deadline = time.monotonic() + self.lock_timeout
        pause = 0.005
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LockTimeout(
                        f"another nftnet command has held {self.path / LOCK_FILE} for more "
                        f"than {self.lock_timeout:g} s; nothing was changed: try again later"
                    ) from None
                time.sleep(min(pause, left))
                pause = min(pause * 2, 0.05)

    def _remove_temp_files(self) -> None:
        """Temp files of writes a killed command left: with the lock held, nobody writes."""
        for name in WRITTEN:
            self._unlink(_tmp(name))

    def load(self) -> State | None:
        """The snapshot with the journal's changes replayed: the state a commit kept, when the
        files are as that commit left them (each kept state is handed out once: the caller
        may change it)."""
        kept, self._kept = self._kept, None
        if kept is not None and kept[0] is not None and kept[0] == self._identity():
            state: State | None = kept[1]
        else:
            state = self._read(STATE_FILE)
            if state is None:
                return None
            for change in self._journal():
                if change.get("snapshot") == state.snapshot:
                    replay(state, change)
        assert state is not None
        state.generation = self.generation()
        return state

    def generation(self) -> str | None:
        """The generation ``save_generation`` recorded; None when unknown or unreadable
        (UnsafeStateError all the same where the file is refused)."""
        try:
            return (self._read_text(GENERATION_FILE) or "").strip() or None
        except UnsafeStateError:
            raise
        except StateError:
            return None

    def _journal(self) -> list[dict[str, Any]]:
        lines = (self._read_text(JOURNAL_FILE) or "").splitlines()
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
            self._unlink(GENERATION_FILE)
        else:  # a token of this boot (nft/generation.py): moot after a power loss
            self._write(GENERATION_FILE, generation, durable=False)

    def save_applied(self, record: dict[str, Any]) -> None:
        """Record applied.py's proof (not synced: a power loss voids it, as the generation in
        it)."""
        self._write(APPLIED_FILE, json.dumps(record, separators=(",", ":")), durable=False)

    def applied(self) -> Any:
        """The proof ``save_applied`` recorded, if the state files are still as they were
        when it was (their ``identity``) and no change is pending; None otherwise."""
        with self._dir() as dir_fd:
            if dir_fd is None or any(_exists(dir_fd, n) for n in (NEXT_FILE, PENDING_FILE)):
                return None
        try:
            record = self._json(APPLIED_FILE)
        except UnsafeStateError:
            raise
        except StateError:
            return None
        identity = self.identity()
        if not isinstance(record, dict) or identity is None or record.get("state") != identity:
            return None
        return record

    def identity(self) -> list[Any] | None:
        """``_identity`` as JSON keeps it (lists), to record with what depends on the state."""
        identity = self._identity()
        return None if identity is None else json.loads(json.dumps(identity))

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
        text = self._read_text(name)
        if text is None:
            return None
        try:
            return json.loads(text)
        except ValueError as e:
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
            self._unlink(name)
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
        self._rename(NEXT_FILE, STATE_FILE)
        crash.point("renamed")
        for name in (JOURNAL_FILE, PENDING_FILE):
            self._unlink(name)
        self.save_generation(state.generation)

    def begin(self, change: dict[str, Any]) -> None:
        """Record a runtime change (``runtime_change``) before the kernel is changed; the
        generation is forgotten until the change is committed."""
        self.save_generation(None)
        # Not synced to disk: it completes a kernel change that a power loss undoes anyway
        # (a kill, which keeps the page cache, is what it is for); ``commit`` is synced.
        self._write(PENDING_FILE, json.dumps(change, separators=(",", ":")), durable=False)

    def commit(self, state: State | None = None) -> None:
        """The kernel holds the pending change: append it to the journal. ``state``, the
        state the change led to (``begin``'s record of it set in memory), is kept for the
        next ``load``, as replaying the journal would make it."""
        line = self._read_text(PENDING_FILE)
        if line is None:
            raise StateError(f"cannot commit to {self.path / JOURNAL_FILE}: "
                             f"{self.path / PENDING_FILE} is gone")
        size = self._append(JOURNAL_FILE, line + "\n")
        crash.point("journal-appended")
        self._unlink(PENDING_FILE)
        self._sync_dir()
        crash.point("pending-removed")
        if state is not None:  # what ``replay`` and ``begin`` make of it
            state.ports_hash, state.generation, state.changed_index = "", None, set()
        if size > max(COMPACT_AFTER, self._snapshot_size()):
            state = state or self.load()  # fold the journal into a new snapshot now and then
            if state is not None:
                self.save(state)
        if state is not None:
            self._kept = (self._identity(), state)

    def _identity(self) -> Any:
        """What changes whenever anyone writes state.json or changes.jsonl: (inode, size,
        mtime, ctime) of each; None when they cannot be read."""
        out = []
        with self._dir() as dir_fd:
            if dir_fd is None:
                return None
            for name in (STATE_FILE, JOURNAL_FILE):
                try:
                    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                except FileNotFoundError:
                    out.append(None)
                    continue
                except OSError:
                    return None
                out.append((st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
        return tuple(out)

    def _snapshot_size(self) -> int:
        identity = self._identity()
        return identity[0][1] if identity is not None and identity[0] is not None else 0

    def abort(self) -> None:
        """The kernel refused the change (runtime or full): forget it."""
        for name in (NEXT_FILE, PENDING_FILE):
            self._unlink(name)

    def remove(self) -> bool:
        """Delete every file nftnet keeps here (teardown), then the directory; False when it
        holds files of someone else's and stays. Call with the lock held: its file goes too."""
        for name in FILES:
            self._unlink(name)
            self._unlink(_tmp(name))
        try:
            self.path.rmdir()
        except FileNotFoundError:
            pass
        except OSError:
            return False
        return True

    # -- the daemon's lock and its status file --------------------------------------------

    @contextmanager
    def daemon_lock(self) -> Iterator[None]:
        """Hold ``daemon.lock`` while a daemon runs on this directory: one daemon per state
        directory. DaemonRunning (naming its pid where known) when another holds it."""
        fd = self._open_dir(create=True)
        assert fd is not None
        try:
            lock = self._open(fd, DAEMON_LOCK, os.O_RDWR | os.O_CREAT)
        except OSError as e:
            os.close(fd)
            raise StateError(f"cannot lock {self.path / DAEMON_LOCK}: {e.strerror}") from None
        except BaseException:
            os.close(fd)
            raise
        try:
            deadline = time.monotonic() + DAEMON_LOCK_WAIT
            while not _try_flock(lock, fcntl.LOCK_EX):
                if time.monotonic() > deadline:
                    info = self._daemon_json()
                    pid = f" (pid {info['pid']})" if isinstance(info, dict) and "pid" in info \
                        else ""
                    raise DaemonRunning(f"another nftnet daemon{pid} runs on {self.path}: one "
                                        "daemon per state directory")
                time.sleep(0.05)
            yield
        finally:
            os.close(lock)
            os.close(fd)

    def daemon_running(self) -> bool:
        """Whether a daemon holds ``daemon.lock`` (probed with a shared lock, let go at once;
        ``daemon_lock`` waits out such a probe)."""
        with self._dir() as dir_fd:
            if dir_fd is None:
                return False
            try:
                lock = self._open(dir_fd, DAEMON_LOCK, os.O_RDONLY)
            except FileNotFoundError:
                return False
            except OSError as e:
                raise StateError(f"cannot read {self.path / DAEMON_LOCK}: {e.strerror}"
                                 ) from None
            try:
                return not _try_flock(lock, fcntl.LOCK_SH)
            finally:
                os.close(lock)

    def save_daemon(self, info: dict[str, Any]) -> None:
        """Write the daemon's status file (by the daemon, which holds ``daemon_lock``)."""
        self._write(DAEMON_FILE, json.dumps(info, separators=(",", ":")))

    def daemon_info(self) -> dict[str, Any] | None:
        """The daemon's status file as it last wrote it; None when there is none."""
        info = self._daemon_json()
        return info if isinstance(info, dict) else None

    def _daemon_json(self) -> Any:
        try:
            return self._json(DAEMON_FILE)
        except UnsafeStateError:
            raise
        except StateError:  # torn by nothing (written atomically), but never fatal to status
            return None

    def log_error(self, text: str) -> Path | None:
        """Append to the error log; None when even that is impossible (or the directory is
        refused)."""
        try:
            self._append(ERROR_LOG, text)
        except StateError:
            return None
        return self.path / ERROR_LOG

    # -- the file primitives: every read and write of the directory goes through these ------

    def _read_text(self, name: str) -> str | None:
        """A file's text; None when there is no such file (or no directory)."""
        with self._dir() as dir_fd:
            if dir_fd is None:
                return None
            try:
                with open(self._open(dir_fd, name, os.O_RDONLY)) as f:
                    return f.read()
            except FileNotFoundError:
                return None
            except OSError as e:
                raise StateError(f"cannot read {self.path / name}: {e.strerror}") from None

    def _write(self, name: str, text: str, durable: bool = True) -> None:
        """Replace a file atomically: a new temp file (any old one, or whatever has its name,
        unlinked first) is written, fsync'ed and renamed over ``name``. Not ``durable``:
        neither fsync'ed nor the rename synced, for files that a power loss makes moot
        (atomic all the same: any process reads the old or the new file, never a torn one)."""
        tmp = _tmp(name)
        with self._dir(create=True) as dir_fd:
            assert dir_fd is not None
            try:
                _unlink_at(dir_fd, tmp)
                with open(self._open(dir_fd, tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL),
                          "w") as f:
                    f.write(text)
                    if durable:
                        f.flush()
                        os.fsync(f.fileno())
                crash.point(f"temp:{name}")
                os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
                if durable:
                    os.fsync(dir_fd)
            except OSError as e:
                raise StateError(f"cannot write {self.path / name}: {e.strerror}") from None
        crash.point(f"wrote:{name}")

    def _rename(self, name: str, target: str) -> None:
        """Rename a file ``_write`` wrote over ``target``, in the checked directory."""
        with self._dir() as dir_fd:
            try:
                if dir_fd is None:
                    raise FileNotFoundError(errno.ENOENT, "no state directory")
                os.replace(name, target, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
                os.fsync(dir_fd)
            except OSError as e:
                raise StateError(f"cannot rename {self.path / name}: {e.strerror}") from None

    def _append(self, name: str, text: str) -> int:
        """Append to a file and fsync it; its size after."""
        with self._dir(create=True) as dir_fd:
            assert dir_fd is not None
            try:
                with open(self._open(dir_fd, name, os.O_WRONLY | os.O_APPEND | os.O_CREAT),
                          "a") as f:
                    f.write(text)
                    f.flush()
                    os.fsync(f.fileno())
                    return os.fstat(f.fileno()).st_size
            except OSError as e:
                raise StateError(f"cannot write {self.path / name}: {e.strerror}") from None

    def _unlink(self, name: str) -> None:
        """Remove a file (a link itself, never its target); nothing when there is none."""
        with self._dir() as dir_fd:
            if dir_fd is None:
                return
            try:
                _unlink_at(dir_fd, name)
            except OSError as e:
                raise StateError(f"cannot remove {self.path / name}: {e.strerror}") from None

    def _sync_dir(self) -> None:
        with self._dir() as dir_fd:
            if dir_fd is not None:
                os.fsync(dir_fd)

    @contextmanager
    def _dir(self, create: bool = False) -> Iterator[int | None]:
        """The directory's descriptor: the one held with the lock, or one opened for this
        call; None when there is no directory and ``create`` is false."""
        if self._fd is not None:
            yield self._fd
            return
        fd = self._open_dir(create)
        try:
            yield fd
        finally:
            if fd is not None:
                os.close(fd)

    def _open_dir(self, create: bool) -> int | None:
        """Open the state directory, never through a symbolic link, and check it (``_check``);
        with ``create``, make it and its missing parents first, 0700 whatever the umask, each
        checked too. None when it does not exist and ``create`` is false. UnsafeStateError
        names a directory someone else could change; StateError any other failure."""
        path = Path(os.path.abspath(self.path))
        missing: list[str] = []  # components to make, deepest first
        where = path
        while True:
            try:
                fd = os.open(where, _DIR_FLAGS | (os.O_NOFOLLOW if where == path else 0))
                break
            except FileNotFoundError:
                if not create or where == where.parent:
                    return None
                missing.append(where.name)
                where = where.parent
            except OSError as e:
                raise _unusable(where, e) from None
        try:
            if not missing:
                _check(where, os.fstat(fd))
            for name in reversed(missing):
                where = where / name
                try:
                    os.mkdir(name, DIR_MODE, dir_fd=fd)
                    made = True
                except FileExistsError:
                    made = False  # made in the meantime, by someone: checked below
                child = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
                os.close(fd)
                fd = child
                if made:
                    os.fchmod(fd, DIR_MODE)
                _check(where, os.fstat(fd))
        except OSError as e:
            os.close(fd)
            raise _unusable(where, e) from None
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _open(self, dir_fd: int, name: str, flags: int) -> int:
        """A descriptor of file ``name``, never opened through a symbolic link (and never
        blocking on a FIFO); one it creates is 0600 whatever the umask. UnsafeStateError
        unless it is a regular file of one link that only this process's user can change;
        OSError (FileNotFoundError: none) otherwise."""
        path = self.path / name
        try:
            fd = os.open(name, flags | _FILE_FLAGS, FILE_MODE, dir_fd=dir_fd)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise UnsafeStateError(f"{path} is a symbolic link, which nftnet never follows "
                                       f"in its state directory; fix: rm {path}") from None
            raise
        try:
            st = os.fstat(fd)
            _check(path, st)
            if flags & os.O_CREAT and stat.S_IMODE(st.st_mode) != FILE_MODE:
                os.fchmod(fd, FILE_MODE)
        except BaseException:
            os.close(fd)
            raise
        return fd


def _try_flock(fd: int, kind: int) -> bool:
    """Take a flock without waiting; False when someone else holds it."""
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _check(path: Path, st: os.stat_result) -> None:
    """Refuse (UnsafeStateError, naming the fix) a directory or file that someone other than
    this process's user could change: owned by another uid, writable by group or others, or,
    for a file, not a regular file of one link (a hard link to another file)."""
    directory = stat.S_ISDIR(st.st_mode)
    problems = []
    if st.st_uid != os.geteuid():
        problems.append(f"owned by uid {st.st_uid}")
    if st.st_mode & 0o022:
        problems.append(f"writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})")
    if problems:
        euid = os.geteuid()
        fix = (f"chown {'root' if euid == 0 else euid}: {path} && "
               f"chmod {DIR_MODE if directory else FILE_MODE:o} {path}")
        what = "state directory" if directory else "state file"
        raise UnsafeStateError(f"{what} {path} is {' and '.join(problems)}: whoever can change "
                               f"it could steer nftnet; fix: {fix}")
    if not directory and (not stat.S_ISREG(st.st_mode) or st.st_nlink != 1):
        raise UnsafeStateError(f"{path} is not a regular file of one link, as nftnet's own "
                               f"files are; fix: rm {path}")


def _unusable(path: Path, error: OSError) -> StateError:
    """The error for a state directory (or parent) that cannot be opened or made."""
    if error.errno in (errno.ENOTDIR, errno.ELOOP) and path.is_symlink():
        return UnsafeStateError(f"state directory {path} is a symbolic link, which nftnet does "
                                f"not follow; fix: --state-dir {os.path.realpath(path)}")
    return StateError(f"cannot use state directory {path}: {error.strerror}")


def _unlink_at(dir_fd: int, name: str) -> None:
    with suppress(FileNotFoundError):
        os.unlink(name, dir_fd=dir_fd)


def _exists(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _tmp(name: str) -> str:
    """The temp file ``_write`` renames over ``name``."""
    return str(Path(name).with_suffix(".tmp"))


def create_file(path: Path, text: str) -> None:
    """Write a new file beside the state (teardown's saved rules), 0600 whatever the umask,
    never through a link: FileExistsError when the name is taken, OSError otherwise."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _FILE_FLAGS, FILE_MODE)
    with open(fd, "w") as f:
        os.fchmod(fd, FILE_MODE)
        f.write(text)


def _dumps(state: State) -> str:
    # Not dataclasses.asdict: it deep-copies tens of thousands of entries first.
    fields_ = {f.name: getattr(state, f.name) for f in fields(state)
               if f.name not in NOT_IN_SNAPSHOT}
    return json.dumps(fields_, separators=(",", ":"))
