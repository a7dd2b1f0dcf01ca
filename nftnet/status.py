"""``nftnet status``: what is applied, read from the state and the kernel."""

from __future__ import annotations

from typing import Any

from nftnet import records
from nftnet.apply import effective_config, unchanged_since
from nftnet.compile.elements import mappings
from nftnet.link import bridges
from nftnet.nft.libnft import LibNft
from nftnet.plan import format_port
from nftnet.state import StateDir


def _counters(listing: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    out = []
    for o in listing or []:
        rule = o.get("rule")
        if not rule or not rule.get("comment"):
            continue
        for e in rule["expr"]:
            if isinstance(e, dict) and isinstance(e.get("counter"), dict):
                out.append({"chain": rule["chain"], "rule": rule["comment"], **e["counter"]})
    return out


def _source(held: dict[str, Any], name: str) -> str:
    """Where an entry comes from: the config file, people at runtime, or a driver (its
    name: "docker")."""
    if name not in held:
        return "config"
    return records.owner(held[name]) or "runtime"


def collect_status(state_dir: StateDir, nft: LibNft | None = None) -> dict[str, Any]:
    """Everything status shows, as plain data (the JSON output)."""
    with state_dir.locked():
        state = state_dir.load()
    if state is None:
        return {"applied": False}
    config = effective_config(state.config, state.runtime)
    listing = (nft or LibNft()).list()
    networks = []
    links = bridges.observe()
    for net in config.networks.values():
        seen = links.get(net.bridge)
        networks.append({
            "name": net.name, "bridge": net.bridge,
            "bridge_state": "missing" if seen is None else ("up" if seen.up else "down"),
            "subnets": [str(s) for s in (net.subnet4, net.subnet6) if s is not None],
            "icc": net.icc, "masquerade": net.masquerade, "internal": net.internal,
            "source": _source(state.runtime["networks"], net.name),
        })
    return {
        "applied": True,
        # True: nothing committed since nftnet's last change; False: the table is gone; None:
        # another program committed since (nftnet check compares the table).
        "in_sync": False if listing is None else (True if unchanged_since(state) else None),
        "networks": networks,
        "endpoints": [
            {"name": e.name, "network": e.network, "ipv4": e.ipv4 and str(e.ipv4),
             "ipv6": e.ipv6 and str(e.ipv6),
             "source": _source(state.runtime["endpoints"], e.name)}
            for e in config.endpoints.values()
        ],
        "ports": [format_port(m) for m in mappings(config)],
        "counters": _counters(listing),
    }
