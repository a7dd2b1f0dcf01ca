"""Configs of a given size, for benchmarks."""

from __future__ import annotations

from typing import Any


def scale_config(networks: int, endpoints: int, ports: int) -> dict[str, Any]:
    """``networks`` /24 networks, ``endpoints`` spread evenly, ``ports`` published tcp ports
    spread evenly over the endpoints (host ports from 1024 up; IPv4 only)."""
    nets = {
        f"n{i}": {"bridge": f"nb{i}", "subnet": f"10.{64 + i // 256}.{i % 256}.0/24"}
        for i in range(networks)
    }
    eps: dict[str, Any] = {}
    per_ep, extra = divmod(ports, max(endpoints, 1))
    port = 1024
    for e in range(endpoints):
        net = e % networks
        host = 2 + e // networks
        n = per_ep + (1 if e < extra else 0)
        eps[f"e{e}"] = {
            "network": f"n{net}",
            "ipv4": f"10.{64 + net // 256}.{net % 256}.{host}",
            "publish": [f"{p}:80" for p in range(port, port + n)],
        }
        port += n
    return {"version": 1, "networks": nets, "endpoints": eps}


def shape(ports: int) -> tuple[int, int]:
    """(networks, endpoints) for ``ports`` published ports: 50 ports a network (1 to 1,000
    networks), two ports an endpoint."""
    return min(1000, max(1, ports // 50)), max(1, ports // 2)


def sized_config(ports: int) -> dict[str, Any]:
    """The benchmark's config for ``ports`` published ports (see ``shape``)."""
    return scale_config(*shape(ports), ports)
