"""Rule -> nft rule text for an `inet` table.

The output is what `nft list` (1.0.6) prints back, so loaded rules diff cleanly against it. An
`inet` chain sees both families while an iptables rule sees one, so a rule without an address
match gets `meta nfproto ipv4|ipv6`. The tables here are shared with `compat.rules_nft_parse`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from compat.rules_model import (
    ADDR_TYPES,
    NFT_LOG_LEVELS,
    REJECTS,
    Net,
    PortRange,
    Rule,
    fmt_addr,
    fmt_net,
)

_ORDER = ("iif", "oif", "src", "dst", "src_range", "dst_range", "proto", "sport", "dport",
          "msports", "mdports", "mports", "ctstate", "ctdir", "ctorigsrc", "ctorigdst",
          "ctorigsrcport", "ctorigdstport", "src_type", "dst_type", "mac")
SELECTORS = {
    "iif": "iifname", "oif": "oifname", "src": "{ip} saddr", "dst": "{ip} daddr",
    "src_range": "{ip} saddr", "dst_range": "{ip} daddr", "proto": "meta l4proto",
    "sport": "{l4} sport", "dport": "{l4} dport", "msports": "{l4} sport",
    "mdports": "{l4} dport", "mports": "{l4} sport . {l4} dport", "ctstate": "ct state",
    "ctdir": "ct direction", "ctorigsrc": "ct original {ip} saddr",
    "ctorigdst": "ct original {ip} daddr", "ctorigsrcport": "ct original proto-src",
    "ctorigdstport": "ct original proto-dst", "src_type": "fib saddr type",
    "dst_type": "fib daddr type", "mac": "ether saddr",
}
# Keys whose nft expression carries a `meta nfproto` dependency for the rule's family.
_PINNING = ("src", "dst", "src_range", "dst_range")
_NFT_CT_STATES = ("INVALID", "ESTABLISHED", "RELATED", "NEW", "UNTRACKED")  # nft bit order
ANY_PORT = (0, 65535)
L4_KEYS = ("sport", "dport", "msports", "mdports", "mports")
NFPROTO = {"ip": "ipv4", "ip6": "ipv6"}


def _range(lo_hi: PortRange) -> str:
    lo, hi = lo_hi
    return str(lo) if lo == hi else f"{lo}-{hi}"


def _set(items: list[str]) -> str:
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def _both_ports_set(ranges: tuple[PortRange, ...]) -> str:
    """multiport --ports (sport OR dport) as iptables-translate does: a concatenated set."""
    pairs = sorted({(ANY_PORT, r) for r in ranges} | {(r, ANY_PORT) for r in ranges})
    return "{ " + ", ".join(f"{_range(a)} . {_range(b)}" for a, b in pairs) + " }"


def _iface(name: str) -> str:
    return '"' + (name[:-1] + "*" if name.endswith("+") else name) + '"'


def _net(net: Net) -> str:
    return fmt_net(net, bare=True)


_FORMATS: dict[str, Callable[[Any], str]] = {
    "iif": _iface, "oif": _iface, "src": _net, "dst": _net, "ctorigsrc": _net, "ctorigdst": _net,
    "src_range": lambda v: f"{fmt_addr(v[0])}-{fmt_addr(v[1])}",
    "dst_range": lambda v: f"{fmt_addr(v[0])}-{fmt_addr(v[1])}",
    "proto": str, "sport": _range, "dport": _range,
    "ctorigsrcport": _range, "ctorigdstport": _range,
    "msports": lambda v: "{ " + ", ".join(map(_range, v)) + " }",
    "mdports": lambda v: "{ " + ", ".join(map(_range, v)) + " }",
    "mports": _both_ports_set,
    "ctstate": lambda v: ",".join(s.lower() for s in _NFT_CT_STATES if s in v),
    "ctdir": str.lower, "mac": str,
    "src_type": lambda v: _set([t.lower() for t in ADDR_TYPES if t in v]),
    "dst_type": lambda v: _set([t.lower() for t in ADDR_TYPES if t in v]),
}


def render_nft(rule: Rule) -> str:
    """One nft rule statement for an `inet` chain, in the form `nft list` prints back."""
    ip = "ip" if rule.family == "ip" else "ip6"
    l4 = rule.opts["proto"].value if "proto" in rule.opts else ""
    words = [] if _pinned(rule) else [f"meta nfproto {NFPROTO[rule.family]}"]
    for key in _ORDER:
        cond = rule.opts.get(key)
        if cond is None or (key == "proto" and _proto_implied(rule)):
            continue
        op = ("! " if key == "ctstate" else "!= ") if cond.neg else ""
        selector = SELECTORS[key].format(ip=ip, l4=l4)
        words.append(f"{selector} {op}{_FORMATS[key](cond.value)}")
    words.append(_render_target(rule))
    if "comment" in rule.opts:
        words.append(f'comment "{rule.opts["comment"].value}"')
    return " ".join(words)


def _pinned(rule: Rule) -> bool:
    """True when an address match already restricts the rule to its family.

    `ct original ip saddr` and `reject with icmp` restrict it too, but give nft no network
    context: after `ether saddr`, nft 1.0.6 then compiles reject's implied family check into a
    bogus ethertype compare. So those rules get an explicit `meta nfproto`.
    """
    return any(key in rule.opts for key in _PINNING)


def _proto_implied(rule: Rule) -> bool:
    """`tcp dport` carries `meta l4proto tcp`; nft drops an explicit one when listing."""
    return not rule.opts["proto"].neg and any(
        key in rule.opts for key in L4_KEYS)


def _render_target(rule: Rule) -> str:
    if rule.target == "REJECT":
        return REJECTS[rule.family][rule.opts["reject_with"].value]
    if rule.target != "LOG":
        return str(rule.target).lower()
    words = ["log"]
    if "log_prefix" in rule.opts:
        words.append(f'prefix "{rule.opts["log_prefix"].value}"')
    if "log_level" in rule.opts:
        words.append(f"level {NFT_LOG_LEVELS[rule.opts['log_level'].value]}")
    return " ".join(words)


