"""A real dockerd (Debian's docker.io, 20.10) in a throwaway network namespace, for tests.

As shared/reference/runtimes.md says: started with ``nsenter --net=/run/netns/NS`` (``ip netns
exec`` remounts /sys and hides the cgroup mounts runc needs), its own ``--data-root``,
``--exec-root``, ``-H unix://...``, ``--pidfile``, ``--config-file`` (never the host's
daemon.json) and ``--cgroup-parent`` (its containers' cgroups, found and removed again),
``--shutdown-timeout 1``, and by default ``--iptables=false --ip6tables=false
--userland-proxy=false``. The image ``bb`` is made from busybox-static with ``docker import``
(no registry is reachable): ``httpd -f -p 80 -h /www`` serves ``/cgi-bin/ip``, which prints
the client address the container saw.

Everything is removed on exit, even after a failure: containers (``rm -f``: busybox httpd as
PID 1 ignores SIGTERM), dockerd, its containerd and shims (by pid), the mounts under its
directory (dockerd bind-mounts its data root onto itself), the directory, the cgroups, the
namespace, and what dockerd leaves outside its directories (``/etc/docker/key.json``,
``/run/docker``, ``/run/containerd``) when no other DockerEnv of this machine still runs and
it was not there before the first one started (a lock and a registry in /run count them).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tests.image import BUSYBOX, rootfs_tar
from tests.throwaway import Throwaway

DOCKERD = "/usr/sbin/dockerd"
DOCKER = "/usr/bin/docker"  # /usr/local/bin/docker may be a newer client
FLAGS = ("--iptables=false", "--ip6tables=false", "--userland-proxy=false")
IMAGE = "bb:latest"
OUTSIDE = ("/etc/docker/key.json", "/run/docker", "/run/containerd")
REGISTRY = Path("/run/nftnet-docker-env.json")
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
PEER_TIMEOUT = 10.0


class DockerEnvError(RuntimeError):
    """dockerd or a docker command failed; the message has its output (and dockerd's log)."""


def unavailable_reason() -> str | None:
    """Why no DockerEnv can run here, or None."""
    if os.geteuid() != 0:
        return "needs root"
    for path in (DOCKERD, DOCKER, BUSYBOX, "/usr/bin/containerd", "/usr/bin/nsenter"):
        if not os.access(path, os.X_OK):
            return f"{path} is not installed (apt-get install docker.io busybox-static)"
    try:
        import docker  # noqa: F401
    except ImportError:
        return "the Docker SDK is not installed (pip install '.[docker]')"
    return None


class DockerEnv(Throwaway):
    """One dockerd in its own namespace; a context manager that always cleans up."""

    def __init__(self, flags: Sequence[str] = FLAGS, config: dict[str, Any] | None = None,
                 ns: str | None = None) -> None:
        """``ns``: a namespace to run in that the caller made and removes (a Lab's host, whose
        LAN and probes then reach dockerd's containers); else one of its own."""
        tag = secrets.token_hex(4)
        self.ns, self.own_ns = ns or f"nd{tag}", ns is None
        self.cgroup = f"nftnet-test-{tag}"
        self.flags, self.config = tuple(flags), config or {}
        self.root = Path(tempfile.mkdtemp(prefix="nftnet-docker-"))
        self.sock = self.root / "docker.sock"
        self.url = f"unix://{self.sock}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._registered = False

    # --- life cycle ------------------------------------------------------------------------

    def _setup(self) -> None:
        _register()
        self._registered = True
        if self.own_ns:
            subprocess.run(["ip", "netns", "add", self.ns], check=True, capture_output=True)
            self.ns_run("ip", "link", "set", "lo", "up")
            # no duplicate address detection: a tentative gateway makes the kernel pick a
            # link-local source address, and the source seen is what tests assert
            self.ns_run("sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0",
                        "net.ipv6.conf.default.accept_dad=0")
        self.start()
        self.make_image()

    def start(self, flags: Sequence[str] | None = None) -> None:
        """Start dockerd (again, after ``stop_daemon``) and wait until its API answers."""
        if flags is not None:
            self.flags = tuple(flags)
        (self.root / "daemon.json").write_text(json.dumps(self.config))
        argv = ["nsenter", f"--net=/run/netns/{self.ns}", DOCKERD,
                "--data-root", str(self.root / "data"), "--exec-root", str(self.root / "exec"),
                "-H", self.url, "--pidfile", str(self.root / "docker.pid"),
                "--config-file", str(self.root / "daemon.json"),
                "--cgroup-parent", f"/{self.cgroup}", "--shutdown-timeout", "1", *self.flags]
        log = (self.root / "dockerd.log").open("ab")
        with log:  # nsenter execs dockerd: the Popen pid is dockerd's
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log, start_new_session=True)
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DockerEnvError(f"dockerd exited with {self.proc.returncode}:\n{self.log()}")
            if self.sock.exists() and self.docker("version", check=False, timeout=5) is not None:
                return
            time.sleep(0.05)
        raise DockerEnvError(f"dockerd's API did not answer in {READY_TIMEOUT} s:\n{self.log()}")

    def stop_daemon(self) -> None:
        """SIGTERM dockerd and wait for it (SIGKILL after STOP_TIMEOUT); containers stay."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT)

    def close(self) -> None:
        """Remove everything this dockerd made; each step runs whatever failed before it."""
        steps = [self._remove_containers, self.stop_daemon, self._kill_leftover_processes,
                 self._unmount, lambda: shutil.rmtree(self.root, ignore_errors=True),
                 self._remove_cgroups, self._remove_namespace]
        if self._registered:
            steps.append(_unregister)
        errors = []
        for step in steps:
            try:
                step()
            except Exception as e:  # go on: the rest must be cleaned anyway
                errors.append(repr(e))
        self._registered = False
        if errors:
            raise DockerEnvError(f"cleanup of {self.root}: {'; '.join(errors)}")

    def _remove_containers(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        ids = (self.docker("ps", "-aq", check=False) or "").split()
        if ids:
            self.docker("rm", "-f", *ids, check=False, timeout=60)

    def _kill_leftover_processes(self) -> None:
        """containerd and shims (their command lines name our directory) and anything left in
        our containers' cgroups, by pid."""
        for _ in range(50):
            pids = set(self.processes())
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        raise DockerEnvError(f"processes would not die: {sorted(self.processes())}")

    def processes(self) -> list[int]:
        """Pids of every process of this dockerd: itself, containerd, shims, containers."""
        out = set(_in_cgroups(self.cgroup))
        marker = str(self.root).encode()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if marker in (entry / "cmdline").read_bytes():
                        out.add(int(entry.name))
        out.discard(os.getpid())
        return sorted(p for p in out if alive(p))

    def mounts(self) -> list[str]:
        """Mount points under our directory (mountinfo's field 5), deepest first."""
        points = []
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if point == str(self.root) or point.startswith(f"{self.root}/"):
                points.append(point)
        return sorted(points, key=len, reverse=True)

    def _unmount(self) -> None:
        for _ in range(5):
            points = self.mounts()
            if not points:
                return
            for point in points:
                if subprocess.run(["umount", point], capture_output=True).returncode != 0:
                    subprocess.run(["umount", "-l", point], capture_output=True)
        raise DockerEnvError(f"still mounted: {self.mounts()}")

    def _remove_cgroups(self) -> None:
        for top in _cgroup_dirs(self.cgroup):
            inner = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
            for d in [*inner, top]:
                with contextlib.suppress(FileNotFoundError):
                    d.rmdir()

    def _remove_namespace(self) -> None:
        if self.own_ns and Path(f"/run/netns/{self.ns}").exists():
            subprocess.run(["ip", "netns", "del", self.ns], check=True, capture_output=True)

    # --- using it --------------------------------------------------------------------------

    def docker(self, *args: str, check: bool = True, timeout: float = 120,
               input: bytes | None = None) -> str | None:
        """Run the docker client against this dockerd; its stdout (None on failure when
        ``check`` is false)."""
        try:
            proc = subprocess.run([DOCKER, "-H", self.url, *args], capture_output=True,
                                  input=input, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            if check:
                raise
            return None
        if proc.returncode != 0:
            if check:
                raise DockerEnvError(f"docker {' '.join(args)}: {proc.stderr.decode()}")
            return None
        return proc.stdout.decode()

    def ns_run(self, *cmd: str, check: bool = True) -> str:
        """A command in dockerd's network namespace (nsenter, as dockerd itself runs)."""
        proc = subprocess.run(["nsenter", f"--net=/run/netns/{self.ns}", *cmd],
                              capture_output=True, text=True, timeout=60, check=False)
        if check and proc.returncode != 0:
            raise DockerEnvError(f"{' '.join(cmd)}: {proc.stderr}")
        return proc.stdout

    def in_container(self, container: str, *cmd: str) -> str:
        """A command in a container's network namespace (host tools, e.g. ``ip -j addr``)."""
        pid = (self.docker("inspect", "-f", "{{.State.Pid}}", container) or "").strip()
        proc = subprocess.run(["nsenter", "-t", pid, "-n", *cmd], capture_output=True,
                              text=True, timeout=60, check=False)
        if proc.returncode != 0:
            raise DockerEnvError(f"{' '.join(cmd)} in {container}: {proc.stderr}")
        return proc.stdout

    def peer_seen(self, address: str, port: int = 80) -> str:
        """The client address httpd's CGI saw for a request from dockerd's namespace to
        ``address`` (busybox httpd is dual-stack: ``[::ffff:a.b.c.d]`` becomes ``a.b.c.d``)."""
        host = f"[{address}]" if ":" in address else address
        deadline = time.monotonic() + PEER_TIMEOUT
        while True:  # IPv6 addresses are tentative (DAD) for a second after they appear
            proc = subprocess.run(["nsenter", f"--net=/run/netns/{self.ns}", "busybox",
                                   "timeout", "4", "wget", "-qO-",
                                   f"http://{host}:{port}/cgi-bin/ip"],
                                  capture_output=True, text=True, timeout=30, check=False)
            if proc.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if proc.returncode != 0:
            raise DockerEnvError(f"no answer from {host}:{port}: {proc.stderr}")
        return proc.stdout.strip().strip("[]").removeprefix("::ffff:")

    def make_image(self) -> None:
        """``bb:latest`` (tests/image.py)."""
        self.docker("import", "-", IMAGE, input=rootfs_tar())

    def log(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self.root / "dockerd.log").read_text().splitlines()[-lines:])
        return ""


def _cgroup_dirs(name: str) -> list[Path]:
    return [p for p in Path("/sys/fs/cgroup").glob(f"*/{name}") if p.is_dir()] + \
        ([Path(f"/sys/fs/cgroup/{name}")] if Path(f"/sys/fs/cgroup/{name}/cgroup.procs")
         .exists() else [])


def _in_cgroups(name: str) -> Iterator[int]:
    for top in _cgroup_dirs(name):
        for procs in top.rglob("cgroup.procs"):
            with contextlib.suppress(OSError):
                yield from (int(p) for p in procs.read_text().split())


# --- what dockerd leaves outside its directories, shared by every DockerEnv ---------------

@contextlib.contextmanager
def _locked() -> Iterator[dict[str, Any]]:
    """The registry of live DockerEnvs, under a lock (on dockerd's binary: always there, and
    locked by nothing else, so no lock file is left behind)."""
    fd = os.open(DOCKERD, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        data = json.loads(REGISTRY.read_text()) if REGISTRY.exists() else {}
        data.setdefault("before", [p for p in OUTSIDE if os.path.lexists(p)])
        data["users"] = [p for p in data.get("users", []) if alive(p)]
        yield data
        if data["users"]:
            REGISTRY.write_text(json.dumps(data))
        else:
            for path in OUTSIDE:
                if path not in data["before"]:
                    shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) \
                        else Path(path).unlink(missing_ok=True)
            REGISTRY.unlink(missing_ok=True)
    finally:
        os.close(fd)


def alive(pid: int) -> bool:
    """The process runs (a zombie does not: one whose parent died waits for PID 1 to reap
    it, which on some machines never happens)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _register() -> None:
    with _locked() as data:
        data["users"].append(os.getpid())


def _unregister() -> None:
    with _locked() as data:
        if os.getpid() in data["users"]:
            data["users"].remove(os.getpid())


def leftovers() -> list[str]:
    """What a DockerEnv would have left on this machine, when none runs (for tests):
    processes, mounts and cgroups of any DockerEnv, and dockerd's files outside."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if b"/nftnet-docker-" in (entry / "cmdline").read_bytes() and \
                        alive(int(entry.name)):
                    out.append(f"process {entry.name}")
    mounts = Path("/proc/self/mountinfo").read_text()
    out += [f"mount {line.split()[4]}" for line in mounts.splitlines()
            if "/nftnet-docker-" in line.split()[4]]
    out += [f"cgroup {p}" for p in Path("/sys/fs/cgroup").glob("*/nftnet-test-*")]
    return out
