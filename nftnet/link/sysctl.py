"""Kernel settings through /proc/sys (pyroute2 has no sysctl API)."""

from __future__ import annotations

from pathlib import Path

from nftnet.errors import LinkError
from nftnet.link.model import BRIDGE_NF as BRIDGE_NF
from nftnet.link.model import IP6_FORWARD as IP6_FORWARD
from nftnet.link.model import IP_FORWARD as IP_FORWARD
from nftnet.link.model import iface as iface

PROC_SYS = Path("/proc/sys")


def read(key: str) -> str | None:
    """The value of ``key`` (slash-separated), or None where the kernel has no such setting."""
    try:
        return (PROC_SYS / key).read_text().strip()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise LinkError(f"cannot read sysctl {key}: {e.strerror}") from None


def write(key: str, value: str) -> None:
    """Set ``key``; LinkError where the kernel has no such setting or refuses the value."""
    try:
        (PROC_SYS / key).write_text(value)
    except OSError as e:
        raise LinkError(f"cannot set sysctl {key}={value}: {e.strerror}") from None
