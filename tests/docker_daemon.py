"""``nftnet daemon --docker`` run for tests beside a real dockerd (tests/docker_env.py): the
daemon as a process of its own in dockerd's namespace, a LAN namespace joined to that one by
a veth pair, and HTTP probes (busybox httpd's CGI prints the client address it saw) from the
LAN, from containers and to a server on the LAN. Everything is removed on exit."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from nftnet.state import StateDir
from tests.docker_env import DockerEnv
from tests.image import BUSYBOX, CGI
from tests.throwaway import Throwaway

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")
# One HTTP GET of /cgi-bin/ip: prints the address the server saw, exit 1 when nothing answers
# within the timeout (stdlib only, no site: a probe costs ~20 ms).
HTTP = r"""
import socket, sys
host, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
try:
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(b"GET /cgi-bin/ip HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
except OSError:
    sys.exit(1)
lines = data.decode().splitlines()  # busybox passes the CGI's own headers on as they are
if not lines or " 200 " not in lines[0]:
    sys.exit(1)
print(lines[-1].strip().strip("[]").removeprefix("::ffff:"))
"""


def wait_for(predicate: Callable[[], T], timeout: float = 10.0, step: float = 0.05) -> T:
    """The first truthy value of ``predicate`` within ``timeout``; AssertionError otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            break
        time.sleep(step)
    assert value, f"not within {timeout} s: {getattr(predicate, '__name__', predicate)}"
    return value


def get(enter: list[str], host: str, port: int = 80, timeout: float = 1.0) -> str | None:
    """The client address the HTTP server at host:port saw, asked from the namespace that
    ``enter`` (a command prefix) runs in; None when it did not answer."""
    proc = subprocess.run([*enter, sys.executable, "-I", "-S", "-c", HTTP, host, str(port),
                           str(timeout)], capture_output=True, text=True, timeout=30,
                          check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


class Lan(Throwaway):
    """A LAN namespace on a veth pair with dockerd's namespace (the Docker host): the host is
    192.168.77.1 / fd77::1, the LAN client 192.168.77.2 / fd77::2, its default routes via the
    host. ``serve`` runs busybox httpd there, printing the address a request came from."""

    HOST4, HOST6 = "192.168.77.1", "fd77::1"
    IP4, IP6 = "192.168.77.2", "fd77::2"

    def __init__(self, env: DockerEnv) -> None:
        self.env = env
        tag = secrets.token_hex(3)
        self.ns, self.link = f"nl{tag}", f"nl{tag}"
        self.www = Path(tempfile.mkdtemp(prefix="nftnet-lan-"))
        self.httpd: subprocess.Popen[bytes] | None = None

    def _setup(self) -> None:
        subprocess.run(["ip", "netns", "add", self.ns], check=True, capture_output=True)
        self.run("ip", "link", "set", "lo", "up")
        self.run("sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0",
                 "net.ipv6.conf.default.accept_dad=0")
        self.env.ns_run("ip", "link", "add", self.link, "type", "veth", "peer", "name",
                        "eth0", "netns", self.ns)
        for addr in (f"{self.HOST4}/24", f"{self.HOST6}/64"):
            self.env.ns_run("ip", "addr", "add", addr, "dev", self.link, "nodad")
        self.env.ns_run("ip", "link", "set", self.link, "up")
        for addr in (f"{self.IP4}/24", f"{self.IP6}/64"):
            self.run("ip", "addr", "add", addr, "dev", "eth0", "nodad")
        self.run("ip", "link", "set", "eth0", "up")
        self.run("ip", "route", "add", "default", "via", self.HOST4)
        self.run("ip", "-6", "route", "add", "default", "via", self.HOST6)

    def close(self) -> None:
        if self.httpd is not None:
            self.httpd.kill()
            self.httpd.wait(10)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True, check=False)
        shutil.rmtree(self.www, ignore_errors=True)

    def run(self, *cmd: str) -> str:
        return subprocess.run(["ip", "netns", "exec", self.ns, *cmd], capture_output=True,
                              text=True, check=True, timeout=30).stdout

    def get(self, host: str, port: int = 80, timeout: float = 1.0) -> str | None:
        return get(["ip", "netns", "exec", self.ns], host, port, timeout)

    def serve(self) -> None:
        """busybox httpd on port 80 of the LAN, answering with the client address."""
        cgi = self.www / "cgi-bin/ip"
        cgi.parent.mkdir(parents=True, exist_ok=True)
        cgi.write_text(CGI)
        cgi.chmod(0o755)
        self.httpd = subprocess.Popen(["ip", "netns", "exec", self.ns, BUSYBOX, "httpd", "-f",
                                       "-p", "80", "-h", str(self.www)])
        wait_for(lambda: self.get(self.IP4) == self.IP4)


def in_container(env: DockerEnv, name: str) -> list[str]:
    """The command prefix that runs host tools in a container's network namespace."""
    pid = (env.docker("inspect", "-f", "{{.State.Pid}}", name) or "").strip()
    return ["nsenter", "-t", pid, "-n"]


def address(env: DockerEnv, name: str, network: str, key: str = "IPAddress") -> str:
    return (env.docker("inspect", "-f", f"{{{{(index .NetworkSettings.Networks \"{network}\")"
                       f".{key}}}}}", name) or "").strip()


class Daemon:
    """``nftnet daemon --docker`` in dockerd's namespace, with a state directory of its own
    (made in the test's tmp directory); its log in a file."""

    def __init__(self, env: DockerEnv, tmp: Path) -> None:
        self.env, self.state, self.logfile = env, tmp / "state", tmp / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *args: str, wait: bool = True) -> None:
        argv = ["nsenter", f"--net=/run/netns/{self.env.ns}", sys.executable, "-m", "nftnet",
                "--state-dir", str(self.state), "daemon", "--docker", self.env.url,
                "--log-level", "debug", *args]
        with self.logfile.open("ab") as log:  # nsenter execs Python: the pid is the daemon's
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         cwd=ROOT, start_new_session=True)
        if wait:
            self.wait_log("resync:", self.log().count("resync:") + 1)

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return self.logfile.read_text()
        return ""

    def wait_log(self, text: str, count: int = 1, timeout: float = 15.0) -> None:
        def seen() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"the daemon exited {self.proc.returncode}:\n{self.log()}")
            return self.log().count(text) >= count
        try:
            wait_for(seen, timeout)
        except AssertionError as e:
            raise AssertionError(f"{e}; {text!r} x{count} not in the log:\n{self.log()}") \
                from None

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(20)
        self.proc = None
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(20)
        self.proc = None

    def nftnet(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The nftnet CLI on the daemon's state directory, in dockerd's namespace."""
        proc = subprocess.run(["nsenter", f"--net=/run/netns/{self.env.ns}", sys.executable,
                               "-m", "nftnet", "--state-dir", str(self.state), *args],
                              capture_output=True, text=True, timeout=120, cwd=ROOT,
                              check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"nftnet {' '.join(args)} exited {proc.returncode}:\n"
                                 f"{proc.stdout}{proc.stderr}\ndaemon log:\n{self.log()}")
        return proc

    def held(self, kind: str = "endpoints") -> set[str]:
        """Names of the entries nftnet holds for Docker, as the state records them."""
        state = StateDir(self.state).load()
        assert state is not None
        return {n for n, e in state.runtime[kind].items() if e.get("owner") == "docker"}

    def check(self) -> None:
        """`nftnet check` in sync, on a real comparison (the last change may not have been
        nftnet's alone)."""
        self.nftnet("check")
