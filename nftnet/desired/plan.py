"""What an apply changes, in words: the difference between two configs, plus drift."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from nftnet import names
from nftnet.compile.elements import mappings
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


def _limited(lines: list[str], total: int | None = None) -> list[str]:
    total = len(lines) if total is None else total
    if total <= SHOW_AT_MOST:
        return lines
    return [*lines[:SHOW_AT_MOST], f"  ... and {total - SHOW_AT_MOST} more"]


def _ports(sign: str, maps: list[PortMapping]) -> list[str]:
    """Formats only the lines shown: a first apply adds tens of thousands."""
    return _limited([f"{sign} port {format_port(m)}" for m in maps[:SHOW_AT_MOST]], len(maps))


def describe_changes(old: Config | None, new: Config, kernel_drift: bool = False) -> list[str]:
    """Readable lines, one per change; the first apply lists everything as added."""
    base = old or Config()
    out = []
    if old is None:
        out.append(f"+ table {names.TABLE_REF}")
    elif kernel_drift:
        out.append("! the kernel changed since nftnet's last full apply: nftnet's table is "
                   "rewritten")
    out += _limited(_diff("network", base.networks, new.networks))
    out += _limited(_diff("endpoint", base.endpoints, new.endpoints))
    old_maps, new_maps = mappings(base), mappings(new)  # each in a stable order already
    before, after = set(old_maps), set(new_maps)
    out += _ports("+", [m for m in new_maps if m not in before])
    out += _ports("-", [m for m in old_maps if m not in after])
    if new.user_rules is not None and new.user_rules != base.user_rules:
        out.append(f"~ user chain: replaced by the {len(new.user_rules)} rule(s) of user_rules")
    return out or ["nothing in the config changed; the kernel is brought back in line"]
