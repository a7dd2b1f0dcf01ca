"""What an apply changes, in words: the difference between two configs, plus drift."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from nftnet import names
from nftnet.compile.elements import mappings, sort_key
from nftnet.config.model import Config, PortMapping

SHOW_AT_MOST = 20


def format_port(m: PortMapping) -> str:
    host = m.host_ip if m.host_ip is not None else ("0.0.0.0" if m.family == 4 else "[::]")
    if m.family == 6 and m.host_ip is not None:
        host = f"[{host}]"
    ctr = f"[{m.container_ip}]" if m.family == 6 else str(m.container_ip)
    return f"{host}:{m.host_port}/{m.proto} -> {ctr}:{m.container_port}"


def _diff(kind: str, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    out = [f"+ {kind} {n}" for n in new if n not in old]
    out += [f"- {kind} {n}" for n in old if n not in new]
    for n in new:
        if n in old and old[n] != new[n]:
            changed = [k for k, v in asdict(new[n]).items() if asdict(old[n])[k] != v]
            out.append(f"~ {kind} {n}: {', '.join(changed)}")
    return out


def _limited(lines: list[str]) -> list[str]:
    if len(lines) <= SHOW_AT_MOST:
        return lines
    return [*lines[:SHOW_AT_MOST], f"  ... and {len(lines) - SHOW_AT_MOST} more"]


def describe_changes(old: Config | None, new: Config, kernel_drift: bool = False) -> list[str]:
    """Readable lines, one per change; the first apply lists everything as added."""
    base = old or Config()
    out = []
    if old is None:
        out.append(f"+ table {names.FAMILY} {names.TABLE}")
    elif kernel_drift:
        out.append("! the kernel changed since nftnet's last full apply: nftnet's table is "
                   "rewritten")
    out += _diff("network", base.networks, new.networks)
    out += _diff("endpoint", base.endpoints, new.endpoints)
    before, after = set(mappings(base)), set(mappings(new))
    out += _limited([f"+ port {format_port(m)}" for m in sorted(after - before, key=sort_key)])
    out += _limited([f"- port {format_port(m)}" for m in sorted(before - after, key=sort_key)])
    if new.user_rules is not None and new.user_rules != base.user_rules:
        out.append(f"~ user chain: replaced by the {len(new.user_rules)} rule(s) of user_rules")
    return out or ["nothing in the config changed; the kernel is brought back in line"]
