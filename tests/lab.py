"""Throwaway network namespaces with real traffic between them, for end-to-end tests.

Topology: a "host" namespace (plays the Docker host; rulesets are applied inside it) and a
"lan" namespace joined by a veth pair (192.168.77.0/24, fd77::/64); containers are extra
namespaces whose veth peers are enslaved to bridges in the host namespace. Every name
carries a per-Lab random prefix so parallel runs never collide, and everything is torn
down on exit, even when a test or the setup itself failed half-way.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import ipaddress
import os
import re
import secrets
import select
import shutil
import signal
import socket
import string
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar

import pytest

from tests.throwaway import Throwaway

PROBE = Path(__file__).resolve().with_name("probe.py")
PREFIX_ROOT = "nt"  # every Lab namespace starts with this, then 5 random chars
PYTHON = (sys.executable, "-I", "-S")  # stdlib only: skip site for faster start-up
SERVE_READY_TIMEOUT = 10.0
NS_INIT = """
ip link set lo up
for f in /proc/sys/net/ipv6/conf/all/accept_dad /proc/sys/net/ipv6/conf/default/accept_dad; do
    if [ -w "$f" ]; then echo 0 > "$f"; fi
done
"""
EXIT_UNSUPPORTED = 3  # probe.py's exit status when the kernel lacks the protocol
SETTLE_TIMEOUT = 2.0
CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS = 0x8913
SIOCETHTOOL = 0x8946
ETHTOOL_GLINK = 0x0000000A
IFF_UP = 0x1
IFF_RUNNING = 0x40  # operstate up, as published by linkwatch
T = TypeVar("T")


class LabError(RuntimeError):
    """A lab command failed; the message carries the command, exit status and stderr."""


@dataclass
class _Server:
    """A background probe server and the file its stderr goes to (shown on failures)."""

    ns: str
    port: int
    proto: str
    proc: subprocess.Popen[str]
    log: IO[str]


def _random_prefix() -> str:
    """'nt' plus 5 random lowercase alphanumerics: short enough for derived names."""
    alphabet = string.ascii_lowercase + string.digits
    return PREFIX_ROOT + "".join(secrets.choice(alphabet) for _ in range(5))


def _slug(name: str) -> str:
    """Reduce a caller-given name to characters safe in netns and interface names."""
    return re.sub(r"[^a-z0-9]", "", name.lower()) or "x"


def _version(addr: str) -> int:
    """4 or 6 for an address or CIDR."""
    return ipaddress.ip_network(addr, strict=False).version


def _sysctl_path(key: str) -> str:
    """'net.ipv4.ip_forward' (or 'net/ipv4/ip_forward') as a /proc/sys path."""
    return "/proc/sys/" + (key if "/" in key else key.replace(".", "/"))


def _check(proc: subprocess.CompletedProcess[str], argv: list[str]) -> None:
    """Raise LabError with the command and its stderr if it failed."""
    if proc.returncode != 0:
        raise LabError(
            f"{' '.join(argv)!r} exited {proc.returncode}: "
            f"{proc.stderr.strip() or proc.stdout.strip()}"
        )


def _exec(
    argv: list[str], check: bool, input: str | None, timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run argv capturing text output; raise LabError on failure or timeout if check."""
    try:
        proc = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{' '.join(argv)!r} timed out after {timeout}s") from exc
    if check:
        _check(proc, argv)
    return proc


def in_netns(ns: str, fn: Callable[[], T]) -> T:
    """Call fn in a short-lived thread that joined netns ns (setns is per thread).

    Lets the Lab query kernel state in-process instead of paying a subprocess per namespace.
    """
    result: list[T] = []
    errors: list[BaseException] = []

    def body() -> None:
        try:
            with open(f"/var/run/netns/{ns}", "rb") as handle:
                libc = ctypes.CDLL(None, use_errno=True)
                if libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns({ns})")
            result.append(fn())
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=body, name=f"netns-{ns}")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


def _ioctl_flags(sock: socket.socket, name: str) -> int:
    """Interface flags (SIOCGIFFLAGS)."""
    ifreq = fcntl.ioctl(sock, SIOCGIFFLAGS, struct.pack("16sH22x", name.encode(), 0))
    return int(struct.unpack("16sH22x", ifreq)[1])


def _ethtool_link(sock: socket.socket, name: str) -> bool:
    """Carrier via ETHTOOL_GLINK, which also flushes the device's pending linkwatch event."""
    value = ctypes.create_string_buffer(struct.pack("II", ETHTOOL_GLINK, 0), 8)
    ifreq = struct.pack("16sP16x", name.encode(), ctypes.addressof(value))
    try:
        fcntl.ioctl(sock, SIOCETHTOOL, ifreq)
    except OSError:  # no ethtool get_link: nothing to flush
        return False
    return bool(struct.unpack("II", value.raw[:8])[1])


def _unsettled_links() -> list[str]:
    """Links in this thread's netns that are up with carrier but not yet operationally up."""
    pending = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _, name in socket.if_nameindex():
            carrier = _ethtool_link(sock, name)
            flags = _ioctl_flags(sock, name)
            if flags & IFF_UP and carrier and not flags & IFF_RUNNING:
                pending.append(name)
    return pending


def list_netns() -> list[str]:
    """Names of all named network namespaces (`ip netns list`)."""
    out = _exec(["ip", "netns", "list"], check=True, input=None, timeout=10).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def unavailable_reason() -> str | None:
    """Why a Lab cannot run here (not root, no `ip netns`), or None if it can."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if shutil.which("ip") is None:
        return "iproute2 `ip` not installed"
    try:
        list_netns()
    except (LabError, OSError) as exc:
        return f"`ip netns` unavailable: {exc}"
    return None


class Lab(Throwaway):
    """Network namespaces for one test; use as a context manager."""

    HOST_IP4 = "192.168.77.1"
    LAN_IP4 = "192.168.77.2"
    HOST_IP6 = "fd77::1"
    LAN_IP6 = "fd77::2"

    def __init__(self) -> None:
        self.prefix = self._unused_prefix()
        self.host = f"{self.prefix}-host"
        self.lan = f"{self.prefix}-lan"
        self.namespaces: list[str] = []
        self.servers: list[_Server] = []
        self.last_probe_error = ""
        self._veths = 0

    @staticmethod
    def _unused_prefix() -> str:
        """A random prefix no existing namespace uses (unlikely anyway, but cheap to rule out)."""
        existing = list_netns()
        while True:
            prefix = _random_prefix()
            if not any(name.startswith(prefix) for name in existing):
                return prefix

    # -- lifecycle ---------------------------------------------------------------------------

    def _setup(self) -> None:
        """Host and LAN namespaces joined by a veth pair, both named eth0."""
        self._add_netns(self.host)
        self._add_netns(self.lan)
        self._veth("eth0", self.lan)
        self._configure_eth0(self.host, [f"{self.HOST_IP4}/24", f"{self.HOST_IP6}/64"])
        self._configure_eth0(self.lan, [f"{self.LAN_IP4}/24", f"{self.LAN_IP6}/64"])
        self.settle()

    def close(self) -> None:
        """Kill servers, then delete namespaces (which removes their veths); idempotent."""
        while self.servers:
            self._stop(self.servers.pop())
        while self.namespaces:
            ns = self.namespaces.pop()
            _exec(["ip", "netns", "del", ns], check=False, input=None, timeout=10)

    @staticmethod
    def _kill(server: _Server) -> int | None:
        """Kill a server's whole process group, reap it and return its exit status."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.proc.pid, signal.SIGKILL)
        try:
            return server.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return None

    def _stop(self, server: _Server) -> None:
        """Kill a server and close its pipes."""
        self._kill(server)
        for stream in (server.proc.stdout, server.log):
            if stream is not None:
                stream.close()

    def settle(self, timeout: float = SETTLE_TIMEOUT) -> None:
        """Wait until every link that has carrier is operationally up, in every Lab namespace.

        The kernel publishes carrier changes of bridges (and of veths whose peer has the same
        ifindex in another netns) through linkwatch, batched up to 1 s; until then the link's
        qdisc drops packets and IPv6 ignores it, so the first probes after a topology change
        would be lost. Asking ethtool for the link state flushes the pending event at once.
        Called before traffic; call it yourself after changing links outside the Lab.
        """
        deadline = time.monotonic() + timeout
        for ns in list(self.namespaces):
            while in_netns(ns, _unsettled_links) and time.monotonic() < deadline:
                time.sleep(0.01)

    def netns_count_with_prefix(self) -> int:
        """How many namespaces with this Lab's prefix exist (0 after exit)."""
        return sum(name.startswith(self.prefix) for name in list_netns())

    # -- commands ----------------------------------------------------------------------------

    def run(
        self,
        ns: str,
        *cmd: str,
        check: bool = True,
        input: str | None = None,
        timeout: float = 30,
    ) -> subprocess.CompletedProcess[str]:
        """Run cmd inside ns (`ip netns exec`); raise LabError with stderr if check fails."""
        return _exec(["ip", "netns", "exec", ns, *cmd], check, input, timeout)

    def _ip(self, ns: str, *args: str) -> subprocess.CompletedProcess[str]:
        """`ip -n ns ...`: cheaper than `ip netns exec` (no mount namespace)."""
        return _exec(["ip", "-n", ns, *args], check=True, input=None, timeout=30)

    def sysctl(self, ns: str, key: str, value: str | None = None) -> str:
        """Read key inside ns, writing value first if given; returns the value read back."""
        path = _sysctl_path(key)
        if value is not None:
            self.run(ns, "sh", "-c", 'printf "%s\\n" "$1" > "$2"', "sh", value, path)
        return self.run(ns, "cat", path).stdout.strip()

    # -- topology ----------------------------------------------------------------------------

    def empty_netns(self, name: str) -> str:
        """A bare namespace (lo up, nothing else) for a container that nftnet attaches."""
        ns = f"{self.prefix}-c-{_slug(name)}"
        self._add_netns(ns)
        return ns

    def attach(self, name: str, pid: int) -> str:
        """A name for the network namespace of process ``pid`` (a container a runtime made), for
        probes and servers; the name goes with the Lab, the namespace with its maker."""
        ns = f"{self.prefix}-c-{_slug(name)}"
        self.namespaces.append(ns)
        _exec(["ip", "netns", "attach", ns, str(pid)], check=True, input=None, timeout=10)
        return ns

    def _add_netns(self, ns: str) -> None:
        """Create ns (registered for cleanup before anything can fail) with lo up and no DAD.

        DAD must be off before any interface exists: until a link-local address passes DAD
        (1-2 s) a router cannot send neighbour solicitations for forwarded IPv6 packets, so
        the first forwarded IPv6 connections would stall or time out.
        """
        self.namespaces.append(ns)
        _exec(["ip", "netns", "add", ns], check=True, input=None, timeout=10)
        self.run(ns, "sh", "-c", NS_INIT)

    def _veth(self, name: str, peer_ns: str) -> None:
        """veth pair: `name` in the host namespace, `eth0` created directly in peer_ns.

        Creating it from inside the host namespace means no name ever appears in the root
        namespace, where parallel runs could collide.
        """
        self._ip(
            self.host, "link", "add", name, "type", "veth", "peer", "name", "eth0", "netns", peer_ns
        )

    def _configure_eth0(self, ns: str, addrs: list[str]) -> None:
        """Put addresses on eth0 (IPv6 without DAD so they work at once) and bring it up."""
        for addr in addrs:
            self._addr_add(ns, "eth0", addr)
        self._ip(ns, "link", "set", "eth0", "up")

    def _addr_add(self, ns: str, dev: str, addr: str) -> None:
        """Add one address; IPv6 gets nodad so it is usable immediately."""
        extra = ["nodad"] if _version(addr) == 6 else []
        self._ip(ns, "addr", "add", addr, "dev", dev, *extra)

    def _has_link(self, ns: str, dev: str) -> bool:
        """Whether dev exists in ns."""
        argv = ["ip", "-n", ns, "link", "show", "dev", dev]
        return _exec(argv, check=False, input=None, timeout=10).returncode == 0

    def bridge(self, name: str, addrs: list[str] | tuple[str, ...] = ()) -> None:
        """Plain Linux bridge in the host namespace with addrs, up (nftnet normally makes these)."""
        self._ip(self.host, "link", "add", name, "type", "bridge")
        for addr in addrs:
            self._addr_add(self.host, name, addr)
        self._ip(self.host, "link", "set", name, "up")

    def container(
        self,
        name: str,
        bridge: str,
        ipv4: str | None,
        gateway4: str | None,
        ipv6: str | None = None,
        gateway6: str | None = None,
        prefix4: int = 24,
        prefix6: int = 64,
    ) -> str:
        """A container namespace on host bridge `bridge` (created if missing); returns its name."""
        ns = f"{self.prefix}-c-{_slug(name)}"
        self._add_netns(ns)
        if not self._has_link(self.host, bridge):
            self.bridge(bridge)
        port = self._host_port_name(name)
        self._veth(port, ns)
        self._ip(self.host, "link", "set", "dev", port, "master", bridge)
        self._ip(self.host, "link", "set", "dev", port, "type", "bridge_slave", "hairpin", "on")
        self._ip(self.host, "link", "set", "dev", port, "up")
        addrs = [f"{ipv4}/{prefix4}"] if ipv4 else []
        addrs += [f"{ipv6}/{prefix6}"] if ipv6 else []
        self._configure_eth0(ns, addrs)
        for gateway in (gateway4, gateway6):
            if gateway:
                self._ip(ns, f"-{_version(gateway)}", "route", "add", "default", "via", gateway)
        self.settle()
        return ns

    def _host_port_name(self, name: str) -> str:
        """Unique host-side veth name within the 15-char interface-name limit."""
        self._veths += 1
        return f"v{self._veths}{_slug(name)}"[:15]

    def lan_route(self, cidr: str) -> None:
        """Route cidr in the LAN namespace via the host (by address family)."""
        version = _version(cidr)
        via = self.HOST_IP4 if version == 4 else self.HOST_IP6
        self._ip(self.lan, f"-{version}", "route", "replace", cidr, "via", via)

    # -- traffic -----------------------------------------------------------------------------

    def serve(self, ns: str, port: int, proto: str = "tcp", addr: str = "::") -> None:
        """Start a probe server in ns; return once it listens (skip if the kernel lacks proto).

        Its stderr goes to a file rather than a pipe nobody drains, so it can never block.
        """
        self.settle()
        log = tempfile.TemporaryFile("w+")  # noqa: SIM115 -- closed by _stop at Lab exit
        argv = ["ip", "netns", "exec", ns, *PYTHON, str(PROBE), "serve"]
        argv += ["--port", str(port), "--proto", proto, "--addr", addr]
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True
        )
        server = _Server(ns, port, proto, proc, log)
        self.servers.append(server)
        self._await_ready(server)

    def _await_ready(self, server: _Server) -> None:
        """Wait for the server's READY line; raise (or skip for missing protocols) if it dies."""
        assert server.proc.stdout is not None
        ready, _, _ = select.select([server.proc.stdout], [], [], SERVE_READY_TIMEOUT)
        line = server.proc.stdout.readline().strip() if ready else ""
        if line == "READY":
            return
        self.servers.remove(server)
        self._stop_and_explain(server, "did not become ready" if not ready else "died")

    def _stop_and_explain(self, server: _Server, what: str) -> None:
        """Kill a server that failed to start and raise (or skip) with its stderr."""
        rc = server.proc.poll()
        rc = self._kill(server) if rc is None else rc
        server.log.seek(0)
        err = server.log.read().strip()
        self._stop(server)
        desc = f"{server.proto} server on {server.ns} port {server.port}"
        if rc == EXIT_UNSUPPORTED:
            pytest.skip(f"kernel does not support {desc}: {err}")
        raise LabError(f"{desc} {what} (exit {rc}): {err}")

    def probe(
        self,
        src_ns: str,
        dst: str,
        port: int,
        proto: str = "tcp",
        timeout: float = 1.5,
        *,
        src: str | None = None,
    ) -> str | None:
        """Connect from src_ns to dst:port; the peer address the server saw, or None if it failed.

        The reason for a None is kept in self.last_probe_error for assertion messages.
        """
        argv = [*PYTHON, str(PROBE), "connect", "--dst", dst, "--port", str(port)]
        argv += ["--proto", proto, "--timeout", str(timeout)]
        argv += ["--src", src] if src else []
        self.settle()
        started = time.monotonic()
        try:
            proc = self.run(src_ns, *argv, check=False, timeout=timeout + 10)
        except LabError as exc:  # hung well past its own deadline
            self.last_probe_error = str(exc)
            return None
        if proc.returncode == 0 and proc.stdout.strip():
            self.last_probe_error = ""
            return proc.stdout.strip()
        took = time.monotonic() - started
        self.last_probe_error = f"exit {proc.returncode} after {took:.2f}s: {proc.stderr.strip()}"
        return None
