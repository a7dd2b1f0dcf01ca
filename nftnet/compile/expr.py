"""Tiny builders for libnftables JSON expressions, so rules read like nft text."""

from __future__ import annotations

from typing import Any

from nftnet.nft.objects import Json

ACCEPT: Json = {"accept": None}
DROP: Json = {"drop": None}
RETURN: Json = {"return": None}
COUNTER: Json = {"counter": None}
MASQUERADE: Json = {"masquerade": None}

IIF: Json = {"meta": {"key": "iifname"}}
OIF: Json = {"meta": {"key": "oifname"}}
L4PROTO: Json = {"meta": {"key": "l4proto"}}
NFPROTO: Json = {"meta": {"key": "nfproto"}}
DPORT: Json = {"payload": {"protocol": "th", "field": "dport"}}
LOCAL_DADDR: Json = {"fib": {"result": "type", "flags": ["daddr"]}}


def ip(family: int, field: str) -> Json:
    return {"payload": {"protocol": "ip" if family == 4 else "ip6", "field": field}}


def match(left: Json, right: Any, op: str = "==") -> Json:
    return {"match": {"op": op, "left": left, "right": right}}


def in_set(left: Json, name: str, negate: bool = False) -> Json:
    return match(left, f"@{name}", "!=" if negate else "==")


def concat(*parts: Json) -> Json:
    return {"concat": list(parts)}


def is_family(family: int) -> Json:
    return match(NFPROTO, "ipv4" if family == 4 else "ipv6")


def ct(key: str) -> Json:
    return {"ct": {"key": key}}


def jump(chain: str) -> Json:
    return {"jump": {"target": chain}}


def prefix(net: Any) -> Json:
    return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}


def map_lookup(key: Json, name: str) -> Json:
    return {"map": {"key": key, "data": f"@{name}"}}


def dnat(family: int, key: Json, addr_map: str, port_map: str) -> Json:
    """DNAT through two maps with the same key (1.0.6 cannot map to addr . port; see notes)."""
    return {
        "dnat": {
            "family": "ip" if family == 4 else "ip6",
            "addr": map_lookup(key, addr_map),
            "port": map_lookup(key, port_map),
        }
    }


def concat_value(*parts: Any) -> Json:
    """A concatenated element value, e.g. ``"tcp" . 8080``."""
    return {"concat": list(parts)}
