"""Podman 4.3 (Debian's) with its CNI backend in a throwaway network namespace, for tests.

As shared/reference/runtimes.md says: podman runs through ``nsenter --net=/run/netns/NS``
(``ip netns exec`` hides the cgroup mounts runc needs), as root with ``--ulimit
nofile=1024:1024 --ulimit nproc=4096:4096``, with a ``containers.conf`` of its own
(``CONTAINERS_CONF``: ``network_backend = "cni"``, the plugin directories /usr/lib/cni and one
holding nftnet-cni, the conflist's directory, cgroupfs, file events), its own ``--root``,
``--runroot`` and ``--tmpdir`` (vfs storage: no mounts of its own) and ``--cgroup-parent``
(found and removed again). The image ``bb`` is made from busybox-static with ``podman
import`` (no registry is reachable); ``httpd -f -p 80 -h /www`` serves ``/cgi-bin/ip``, which
prints the client address the container saw.

Podman and libcni also write outside those directories (/var/lib/containers/cache,
/var/lib/cni/results, /run/runc, the containers' /run/netns files): every podman command runs
in one private mount namespace, held by a sleeping process of the test's, with empty
temporary directories mounted over /var/lib and /run, so all of that stays in them.

``close`` removes everything, even after a failure: the containers (``rm -af -t 0``), every
process left in the mount namespace (conmon; by pid), the sleeper, the cgroups and the
temporary directory.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.image import BUSYBOX, rootfs_tar
from tests.throwaway import Throwaway

PODMAN = "/usr/bin/podman"
IMAGE = "localhost/bb:latest"
ULIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096")
HIDDEN = ("/var/lib", "/run")  # what Podman writes there goes to the temporary directory
CGROUPS = Path("/sys/fs/cgroup")
TIMEOUT = 60.0


class PodmanError(RuntimeError):
    """A podman command failed; the message has its output."""


def unavailable_reason() -> str | None:
    """Why no Podman can run here, or None."""
    if os.geteuid() != 0:
        return "needs root"
    for path in (PODMAN, BUSYBOX, "/usr/bin/conmon", "/usr/bin/nsenter", "/usr/bin/unshare"):
        if not os.access(path, os.X_OK):
            return f"{path} is not installed (apt-get install podman busybox-static)"
    return None


class Podman(Throwaway):
    """Podman in network namespace ``netns`` with the conflists of ``networks`` (name ->
    conflist) and the plugins of ``plugin_dir``; a context manager that always cleans up."""

    def __init__(self, netns: str, plugin_dir: Path, networks: Mapping[str, dict[str, Any]],
                 ) -> None:
        self.netns = netns
        self.tag = secrets.token_hex(4)
        self.cgroup = f"nftnet-podman-{self.tag}"
        self.root = Path(tempfile.mkdtemp(prefix="nftnet-podman-"))
        self.plugin_dir, self.networks = plugin_dir, dict(networks)
        self.sleeper: subprocess.Popen[str] | None = None

    def _setup(self) -> None:
        import json

        net_d = self.root / "net.d"
        for d in ("storage", "runroot", "tmpdir", "net.d", *(f"hide{p}" for p in HIDDEN)):
            (self.root / d).mkdir(parents=True)
        for name, chain in self.networks.items():
            (net_d / f"{name}.conflist").write_text(json.dumps(chain))
        conf = self.root / "containers.conf"
        conf.write_text(
            "[network]\n"
            'network_backend = "cni"\n'
            f'cni_plugin_dirs = ["/usr/lib/cni", "{self.plugin_dir}"]\n'
            f'network_config_dir = "{net_d}"\n'
            f'default_network = "{next(iter(self.networks))}"\n'
            "[engine]\n"
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n')
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}
        mounts = " && ".join(f"mount --bind {self.root}/hide{p} {p}" for p in HIDDEN)
        self.sleeper = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c",
             f"{mounts} && echo ready && exec sleep infinity"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        assert self.sleeper.stdout is not None
        if self.sleeper.stdout.readline().strip() != "ready":
            raise PodmanError(f"cannot make the mount namespace: {self.sleeper.stderr.read()}")
        self._image()

    def _image(self) -> None:
        """``bb`` (tests/image.py)."""
        self.podman("import", "-", IMAGE, input=rootfs_tar())

    def argv(self, *args: str) -> list[str]:
        assert self.sleeper is not None
        return ["nsenter", f"--mount=/proc/{self.sleeper.pid}/ns/mnt",
                f"--net=/run/netns/{self.netns}", PODMAN,
                "--root", str(self.root / "storage"), "--runroot", str(self.root / "runroot"),
                "--tmpdir", str(self.root / "tmpdir"), "--storage-driver", "vfs", *args]

    def podman(self, *args: str, input: bytes | None = None, check: bool = True
               ) -> subprocess.CompletedProcess[bytes]:
        proc = subprocess.run(self.argv(*args), input=input, capture_output=True,
                              env=self.env, timeout=TIMEOUT, check=False)
        if check and proc.returncode != 0:
            raise PodmanError(f"podman {' '.join(args)} exited {proc.returncode}: "
                              f"{proc.stdout.decode()}{proc.stderr.decode()}")
        return proc

    def run(self, *args: str) -> str:
        """``podman run -d ARGS`` (ulimits and cgroup parent added); the container id."""
        out = self.podman("run", "-d", *ULIMITS, "--cgroup-parent", f"/{self.cgroup}", *args)
        return out.stdout.decode().strip().splitlines()[-1]

    def close(self) -> None:
        if self.sleeper is not None and self.sleeper.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                self.podman("rm", "-af", "-t", "0", check=False)
            for pid in self._left():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            os.killpg(self.sleeper.pid, signal.SIGKILL)
        if self.sleeper is not None:
            self.sleeper.wait(timeout=10)
            for stream in (self.sleeper.stdout, self.sleeper.stderr):
                if stream is not None:
                    stream.close()
        self._remove_cgroups()
        shutil.rmtree(self.root, ignore_errors=True)

    def _left(self) -> list[int]:
        """Processes in the mount namespace besides the sleeper (conmon, containers)."""
        assert self.sleeper is not None
        mine = os.readlink(f"/proc/{self.sleeper.pid}/ns/mnt")
        out = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != self.sleeper.pid:
                with contextlib.suppress(OSError):
                    if os.readlink(entry / "ns" / "mnt") == mine:
                        out.append(int(entry.name))
        return out

    def _remove_cgroups(self) -> None:
        """The cgroups under the test's cgroup parent, in every hierarchy, deepest first
        (their processes are gone; the kernel needs a moment to let go of them)."""
        for hierarchy in CGROUPS.iterdir():
            top = hierarchy / self.cgroup
            if not top.is_dir():
                continue
            inner = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
            for d in [*inner, top]:
                for _ in range(50):
                    try:
                        d.rmdir()
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        time.sleep(0.1)
