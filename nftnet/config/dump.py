"""A ``Config`` back in the file format, so state on disk is read by the same loader."""

from __future__ import annotations

from typing import Any

from nftnet.config.model import Config, Endpoint, Network


def network_entry(net: Network) -> dict[str, Any]:
    """A network as its config file entry (a driver's runtime network too)."""
    out: dict[str, Any] = {"bridge": net.bridge}
    out["subnets"] = [str(s) for s in (net.subnet4, net.subnet6) if s is not None]
    if net.gateway4 is not None:
        out["gateway"] = str(net.gateway4)
    if net.gateway6 is not None:
        out["gateway6"] = str(net.gateway6)
    out |= {"icc": net.icc, "masquerade": net.masquerade, "internal": net.internal,
            "host_binding_ipv4": str(net.host_binding_ipv4), "mtu": net.mtu}
    return out


def _endpoint(ep: Endpoint) -> dict[str, Any]:
    out: dict[str, Any] = {"network": ep.network}
    if ep.ipv4 is not None:
        out["ipv4"] = str(ep.ipv4)
    if ep.ipv6 is not None:
        out["ipv6"] = str(ep.ipv6)
    if ep.publish:
        out["publish"] = [p.text for p in ep.publish]
    return out


def dump_config(config: Config) -> dict[str, Any]:
    out: dict[str, Any] = {
        "version": 1,
        "networks": {n: network_entry(v) for n, v in config.networks.items()},
        "endpoints": {n: _endpoint(v) for n, v in config.endpoints.items()},
    }
    written = config.user_rules_written
    rules = written if written is not None else config.user_rules
    if rules is not None:
        out["user_rules"] = list(rules)
    return out
