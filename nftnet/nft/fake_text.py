"""A little of nft's rule syntax for the fakes: parsed into JSON, and JSON shown as nft text.

The subset is the rules people write most: ``iifname``/``oifname``, ``meta l4proto`` and
``meta nfproto``, ``ip``/``ip6 saddr``/``daddr`` (an address, a prefix or ``@set``),
``tcp``/``udp sport``/``dport`` (a port), each with an optional ``==``/``!=``; ``counter``;
verdicts (``accept``, ``drop``, ``return``, ``continue``, ``jump``/``goto`` CHAIN). Within it,
both give what nft gives (tests/kernel/test_fake_kernel.py). A rule outside it becomes one
opaque expression holding its text (``{"nft-text": ...}``), which only the fakes accept.
"""

from __future__ import annotations

import json
import shlex
from ipaddress import ip_address, ip_network
from typing import Any

from nftnet.nft.objects import Json

OPAQUE = "nft-text"
_VERDICTS = ("accept", "drop", "return", "continue")
_PAYLOAD = {"ip": ("saddr", "daddr"), "ip6": ("saddr", "daddr"),
            "tcp": ("sport", "dport"), "udp": ("sport", "dport")}
_META = ("l4proto", "nfproto")
_IFNAMES = ("iifname", "oifname")


class SyntaxRefused(ValueError):
    """Text that nft could not take either (its message)."""


def parse_rule(text: str) -> list[Json]:
    """The JSON expressions of one rule; SyntaxRefused where nft would refuse it for sure."""
    if not text.strip() or any(c in text for c in ";\n"):
        raise SyntaxRefused("Error: syntax error, one rule expected")
    try:
        words = shlex.split(text)
    except ValueError:
        raise SyntaxRefused("Error: syntax error, unterminated string") from None
    try:
        return _statements(words)
    except _Outside:
        return [{OPAQUE: text}]


class _Outside(Exception):
    """The rule is outside the subset."""


def _statements(words: list[str]) -> list[Json]:
    out: list[Json] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word in _VERDICTS:
            out.append({word: None})
        elif word == "counter":
            out.append({"counter": {"packets": 0, "bytes": 0}})
        elif word in ("jump", "goto") and i + 1 < len(words):
            i += 1
            out.append({word: {"target": words[i]}})
        else:
            left, i = _left(words, i)
            op = "=="
            if i < len(words) and words[i] in ("==", "!="):
                op, i = words[i], i + 1
            if i >= len(words):
                raise _Outside
            out.append({"match": {"op": op, "left": left, "right": _value(left, words[i])}})
        i += 1
    return out


def _left(words: list[str], i: int) -> tuple[Json, int]:
    """The expression that words[i:] start with, and the index after it."""
    word, field = words[i], words[i + 1] if i + 1 < len(words) else None
    if word in _IFNAMES:
        return {"meta": {"key": word}}, i + 1
    if word == "meta" and field in _META:
        return {"meta": {"key": field}}, i + 2
    if word in _PAYLOAD and field in _PAYLOAD[word]:
        return {"payload": {"protocol": word, "field": field}}, i + 2
    raise _Outside


def _value(left: Json, word: str) -> Any:
    if word.startswith("@"):
        return word
    protocol = left.get("payload", {}).get("protocol")
    if protocol in ("tcp", "udp"):
        if not word.isdigit():
            raise _Outside
        if int(word) > 65535:
            raise SyntaxRefused("Error: Service out of range")
        return int(word)
    if protocol in ("ip", "ip6"):
        try:
            if "/" in word:
                net = ip_network(word, strict=False)
                return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}
            return str(ip_address(word))
        except ValueError:
            raise _Outside from None
    return word


def render_rule(expr: list[Any], comment: str | None = None) -> str:
    """``expr`` as ``nft -a list chain`` shows it; JSON for what is outside the subset."""
    words = [_render(e) for e in expr]
    if comment is not None:
        words.append(f"comment {json.dumps(comment)}")
    return " ".join(words)


def _render(e: Json) -> str:
    (kind, arg), = e.items()
    if kind == OPAQUE:
        return str(arg)
    if kind in _VERDICTS:
        return kind
    if kind in ("jump", "goto"):
        return f"{kind} {arg['target']}"
    if kind == "counter":
        counts = arg or {"packets": 0, "bytes": 0}
        return f"counter packets {counts['packets']} bytes {counts['bytes']}"
    if kind == "match" and arg["op"] in ("==", "!="):
        left, right = arg["left"], arg["right"]
        op = "" if arg["op"] == "==" else "!= "
        if left.get("meta", {}).get("key") in _IFNAMES and isinstance(right, str):
            value = right if right.startswith("@") else json.dumps(right)
            return f"{left['meta']['key']} {op}{value}"
        if left.get("meta", {}).get("key") in _META:
            return f"meta {left['meta']['key']} {op}{right}"
        if "payload" in left and (isinstance(right, (str, int)) or "prefix" in right):
            payload = left["payload"]
            return f"{payload['protocol']} {payload['field']} {op}{_right(right)}"
    return json.dumps(e, separators=(",", ":"))


def _right(value: Any) -> str:
    if isinstance(value, dict) and "prefix" in value:
        return f"{value['prefix']['addr']}/{value['prefix']['len']}"
    return str(value)
