"""Before ``nftnet daemon --docker`` follows dockerd: dockerd must neither write its own firewall
rules nor run the userland proxy. Each problem comes with its reason and its fix.

- Rules: the truth is in the kernel, so the chains are looked up through libnftables (never an
  iptables binary): iptables-nft shows Docker's chains as ``DOCKER``, ``DOCKER-USER``,
  ``DOCKER-ISOLATION-STAGE-1/2`` in tables ``ip``/``ip6`` ``filter``/``nat``, Docker 29's
  nftables backend as table ``docker-bridges``. dockerd creates them at every start with
  iptables on, and leaves them behind (FORWARD drop and isolation drops included) when
  switched off, so either way they must go. Rules Docker writes through iptables-legacy are
  not visible to nftables; dockerd 20.10 on Debian 12 uses iptables-nft.
- Userland proxy: ``docker-proxy`` processes exist only while ports are published, so they
  alone cannot tell. The reliable answer is dockerd's own configuration: the process serving
  the Engine API socket (its pid from the socket's peer credentials, so no pidfile is
  guessed), its command line (``--userland-proxy[=BOOL]``) and its config file
  (``--config-file``, default ``/etc/docker/daemon.json``, read through ``/proc/PID/root``);
  unset means on. ``docker-proxy`` children of that dockerd are reported too. For an Engine
  API that is not a local unix socket the configuration cannot be read: only processes are
  checked, and a note says so.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nftnet.api import Json
from nftnet.drivers.docker.engine import engine_url, unix_path
from nftnet.drivers.docker.translate import go_bool

DAEMON_JSON = '{"iptables": false, "ip6tables": false, "userland-proxy": false}'
DOCKER_CHAINS = frozenset({"DOCKER", "DOCKER-USER", "DOCKER-ISOLATION-STAGE-1",
                           "DOCKER-ISOLATION-STAGE-2"})
DOCKER_TABLES = frozenset({"docker-bridges"})
DEFAULT_CONFIG = "/etc/docker/daemon.json"
_RESTART = (f"set {DAEMON_JSON} in /etc/docker/daemon.json (or dockerd's --config-file), "
            "then restart dockerd (systemctl restart docker)")
REMOVE_CHAINS = "for t in iptables ip6tables; do $t-save | grep -v DOCKER | $t-restore; done"


@dataclass(frozen=True)
class Problem:
    """Why the daemon refuses to start, and what to do about it."""

    reason: str
    fix: str
    unreachable: bool = False  # dockerd does not answer: wait for it rather than refuse

    def __str__(self) -> str:
        return f"{self.reason}\n  fix: {self.fix}"


@dataclass
class Report:
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


# --- pure: decisions on what was read ----------------------------------------------------

def rules_problem(chains: Iterable[Json]) -> Problem | None:
    """A Problem when a ``list chains`` listing holds Docker's own chains or tables."""
    found = sorted({f"{c['family']} {c['table']} {c['name']}" for c in _chains(chains)
                    if c["family"] in ("ip", "ip6") and c["name"] in DOCKER_CHAINS})
    tables = sorted({f"{c['family']} {c['table']}" for c in _chains(chains)
                     if c["table"] in DOCKER_TABLES})
    if not found and not tables:
        return None
    what = ", ".join([f"chain {f}" for f in found] + [f"table {t}" for t in tables])
    fix = _RESTART
    if found:
        fix += f"; then remove the chains it left behind: {REMOVE_CHAINS}"
    if tables:
        fix += "; then " + "; ".join(f"nft delete table {t}" for t in tables)
    return Problem(f"dockerd writes its own firewall rules ({what} present; dockerd leaves "
                   "them behind when switched off, and they drop what nftnet lets through)",
                   fix + ". Docker's FORWARD policy drop and its POSTROUTING MASQUERADE rules "
                   "are not in those chains: the daemon and `nftnet check` name a drop policy")


def _chains(listing: Iterable[Json]) -> Iterable[dict[str, Any]]:
    return (o["chain"] for o in listing if "chain" in o)


def go_flag(argv: Sequence[str], name: str) -> bool | None:
    """A boolean flag of a Go (pflag) command line: ``--name`` or ``--name=BOOL``, the last
    one counting; None when absent. pflag takes no separate value for booleans."""
    value = None
    for arg in argv:
        if arg == f"--{name}":
            value = True
        elif arg.startswith(f"--{name}="):
            with contextlib.suppress(ValueError):  # dockerd refuses to start with it
                value = go_bool(arg.split("=", 1)[1], name)
    return value


def config_file(argv: Sequence[str]) -> str:
    """dockerd's ``--config-file`` (``=PATH`` or ``PATH`` next), else the default."""
    path = DEFAULT_CONFIG
    for i, arg in enumerate(argv):
        if arg.startswith("--config-file="):
            path = arg.split("=", 1)[1]
        elif arg == "--config-file" and i + 1 < len(argv):
            path = argv[i + 1]
    return path


def userland_proxy(argv: Sequence[str], config: dict[str, Any]) -> bool:
    """Whether dockerd runs the userland proxy: its flag, else its config file, else on.
    (dockerd refuses to start when both set it.)"""
    flag = go_flag(argv, "userland-proxy")
    if flag is not None:
        return flag
    value = config.get("userland-proxy", True)
    return value if isinstance(value, bool) else True


def proxy_problem(on: bool | None, proxies: Sequence[int]) -> Problem | None:
    if not on and not proxies:
        return None
    seen = []
    if on:
        seen.append("userland-proxy is on in dockerd's configuration (on unless set false)")
    if proxies:
        seen.append(f"docker-proxy runs (pid {', '.join(map(str, proxies))})")
    return Problem(f"dockerd runs the userland proxy: {'; '.join(seen)}. It answers published "
                   "ports itself, so containers see the proxy's address, not the client's",
                   _RESTART)


# --- I/O: reading the kernel, dockerd's process and its configuration ----------------------

def check(url: str | None = None, listing: Iterable[Json] | None = None,
          proc: Path = Path("/proc")) -> Report:
    """Every problem that keeps the daemon from following the dockerd at ``url`` (default:
    ``DOCKER_HOST``, else the system socket). ``listing`` is the kernel's ``list chains``
    (read through libnftables when None)."""
    url = engine_url(url)
    report = Report()
    if listing is None:
        from nftnet.api import Engine

        listing = Engine().chains()
    if (problem := rules_problem(listing)) is not None:
        report.problems.append(problem)
    pid = _served_by(url, report)
    on = None
    if pid is not None:
        on = _proxy_configured(pid, proc, report)
    if (problem := proxy_problem(on, proxy_processes(proc, pid))) is not None:
        report.problems.append(problem)
    return report


def socket_peer(path: str) -> tuple[int, int]:
    """(pid, uid) of the process serving a unix socket, from SO_PEERCRED."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(path)
        pid, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET,
                                                          socket.SO_PEERCRED, 12))
    return pid, uid


def _served_by(url: str, report: Report) -> int | None:
    """dockerd's pid for a unix:// URL (None with a note or a problem otherwise)."""
    path = unix_path(url)
    if path is None:
        report.notes.append(f"{url} is not a local unix socket: dockerd's userland-proxy "
                            "setting cannot be read, only docker-proxy processes are checked")
        return None
    try:
        pid, uid = socket_peer(path)
    except OSError as e:
        report.problems.append(Problem(f"cannot reach the Engine API at {url}: "
                                       f"{e.strerror or e}", "start dockerd, or give the "
                                       "right socket with --docker URL or DOCKER_HOST",
                                       unreachable=True))
        return None
    if uid != 0:
        report.problems.append(Problem(
            f"the Engine API at {url} is served by uid {uid}, not root: not the system dockerd "
            "(rootless Docker forwards ports itself; nftnet cannot firewall it)",
            "follow the system dockerd (unix:///var/run/docker.sock)"))
        return None
    return pid


def _proxy_configured(pid: int, proc: Path, report: Report) -> bool | None:
    """dockerd's effective userland-proxy setting; None (with a note) when unreadable."""
    try:
        argv = (proc / str(pid) / "cmdline").read_bytes().decode().split("\0")[:-1]
        path = config_file(argv)
        base = proc / str(pid) / ("root" if path.startswith("/") else "cwd")
        try:
            config = json.loads((base / path.lstrip("/")).read_text())
        except FileNotFoundError:
            config = {}
        if not isinstance(config, dict):
            raise ValueError(f"{path} is not a JSON object")
    except (OSError, ValueError) as e:
        report.notes.append(f"cannot read dockerd's configuration (pid {pid}): {e}")
        return None
    return userland_proxy(argv, config)


def proxy_processes(proc: Path = Path("/proc"), parent: int | None = None) -> list[int]:
    """Pids of ``docker-proxy`` processes (children of ``parent`` when given)."""
    out = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        comm, rest = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:]
        ppid = int(rest.split()[1])
        if comm == "docker-proxy" and (parent is None or ppid == parent):
            out.append(int(entry.name))
    return sorted(out)
