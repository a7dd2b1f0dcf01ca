"""Kernel settings through /proc/sys (pyroute2 has no sysctl API)."""

from __future__ import annotations

from pathlib import Path

from nftnet.errors import LinkError

PROC_SYS = Path("/proc/sys")

IP_FORWARD = "net/ipv4/ip_forward"
IP6_FORWARD = "net/ipv6/conf/all/forwarding"
BRIDGE_NF = ("net/bridge/bridge-nf-call-iptables", "net/bridge/bridge-nf-call-ip6tables")


def read(key: str) -> str | None:
    """The value of ``key`` (slash-separated), or None where the kernel has no such setting."""
    try:
        return (PROC_SYS / key).read_text().strip()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise LinkError(f"cannot read sysctl {key}: {e.strerror}") from None


def write(key: str, value: str) -> None:
    try:
        (PROC_SYS / key).write_text(value)
    except OSError as e:
        raise LinkError(f"cannot set sysctl {key}={value}: {e.strerror}") from None


def iface(family: int, ifname: str, setting: str) -> str:
    return f"net/ipv{family}/conf/{ifname}/{setting}"
