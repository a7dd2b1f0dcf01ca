"""iptables rule arguments <-> Rule: parse like iptables(8), print like iptables-save.

Printing mimics iptables-save 1.8.9 exactly (option order, `/32` masks, quoting) so an export of
translated rules reads like a real `iptables-save` of the same chain.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from compat.rules_model import (
    ADDR_TYPES,
    COMMENT_MAX,
    CT_STATES,
    LOG_PREFIX_MAX,
    PORT_PROTOS,
    REJECTS,
    TARGETS,
    Addr,
    Cond,
    Family,
    PortRange,
    Rule,
    RuleTranslationError,
    addr_range,
    addr_types,
    check_iface,
    check_mac,
    check_text,
    ct_states,
    finish,
    fmt_addr,
    fmt_net,
    merge_ranges,
    parse_addr,
    parse_net,
    parse_port,
    port_range,
    proto_name,
)

_ALIASES = {
    "--source": "-s", "--src": "-s", "--destination": "-d", "--dst": "-d",
    "--in-interface": "-i", "--out-interface": "-o", "--protocol": "-p",
    "--match": "-m", "--jump": "-j", "--source-port": "--sport", "--destination-port": "--dport",
    "--source-ports": "--sports", "--destination-ports": "--dports",
}
# option -> (what must be loaded first, key); "" = always available, "ports" = -p/-m tcp|udp|sctp.
_OPTIONS = {
    "-s": ("", "src"), "-d": ("", "dst"), "-i": ("", "iif"), "-o": ("", "oif"), "-p": ("", "proto"),
    "--sport": ("ports", "sport"), "--dport": ("ports", "dport"),
    "--sports": ("multiport", "msports"), "--dports": ("multiport", "mdports"),
    "--ports": ("multiport", "mports"),
    "--ctstate": ("conntrack", "ctstate"), "--ctdir": ("conntrack", "ctdir"),
    "--ctorigsrc": ("conntrack", "ctorigsrc"), "--ctorigdst": ("conntrack", "ctorigdst"),
    "--ctorigsrcport": ("conntrack", "ctorigsrcport"),
    "--ctorigdstport": ("conntrack", "ctorigdstport"),
    "--state": ("state", "ctstate"),
    "--src-range": ("iprange", "src_range"), "--dst-range": ("iprange", "dst_range"),
    "--mac-source": ("mac", "mac"),
    "--src-type": ("addrtype", "src_type"), "--dst-type": ("addrtype", "dst_type"),
    "--comment": ("comment", "comment"),
    "--reject-with": ("REJECT", "reject_with"),
    "--log-prefix": ("LOG", "log_prefix"), "--log-level": ("LOG", "log_level"),
}
_MODULES = ("tcp", "udp", "sctp", "multiport", "conntrack", "state", "iprange", "mac",
            "addrtype", "comment")
_NOT_NEGATABLE = ("ctdir", "comment", "reject_with", "log_prefix", "log_level")
_REJECT_ALIASES = {
    "ip": {"net-unreach": "icmp-net-unreachable", "host-unreach": "icmp-host-unreachable",
           "port-unreach": "icmp-port-unreachable", "proto-unreach": "icmp-proto-unreachable",
           "net-prohib": "icmp-net-prohibited", "host-prohib": "icmp-host-prohibited",
           "admin-prohib": "icmp-admin-prohibited", "tcp-rst": "tcp-reset"},
    "ip6": {"no-route": "icmp6-no-route", "adm-prohibited": "icmp6-adm-prohibited",
            "addr-unreach": "icmp6-addr-unreachable", "port-unreach": "icmp6-port-unreachable",
            "policy-fail": "icmp6-policy-fail", "reject-route": "icmp6-reject-route",
            "tcp-rst": "tcp-reset"},
}
_LOG_LEVELS = {"emerg": 0, "panic": 0, "alert": 1, "crit": 2, "error": 3, "warning": 4,
               "notice": 5, "info": 6, "debug": 7}
# iptables-save layout: (module header, ((key, option), ...)); "ports" prints as -m <proto>.
_SAVE_LAYOUT = (
    ("", (("src", "-s"), ("dst", "-d"), ("iif", "-i"), ("oif", "-o"), ("proto", "-p"))),
    ("ports", (("sport", "--sport"), ("dport", "--dport"))),
    ("multiport", (("msports", "--sports"),)),
    ("multiport", (("mdports", "--dports"),)),
    ("multiport", (("mports", "--ports"),)),
    ("iprange", (("src_range", "--src-range"), ("dst_range", "--dst-range"))),
    ("mac", (("mac", "--mac-source"),)),
    ("addrtype", (("src_type", "--src-type"), ("dst_type", "--dst-type"))),
    ("conntrack", (("ctstate", "--ctstate"), ("ctorigsrc", "--ctorigsrc"),
                   ("ctorigdst", "--ctorigdst"), ("ctorigsrcport", "--ctorigsrcport"),
                   ("ctorigdstport", "--ctorigdstport"), ("ctdir", "--ctdir"))),
    ("comment", (("comment", "--comment"),)),
)
_TARGET_LAYOUT = (("reject_with", "--reject-with"), ("log_prefix", "--log-prefix"),
                  ("log_level", "--log-level"))


def _ports(text: str, family: Family, what: str) -> PortRange:
    """`80`, `80:90`, `:90`, `80:` as iptables reads them."""
    lo, sep, hi = text.partition(":")
    if not sep:
        port = parse_port(text, what)
        return port, port
    return port_range(parse_port(lo or "0", what), parse_port(hi or "65535", what), what)


def _port_list(text: str, family: Family, what: str) -> tuple[PortRange, ...]:
    """multiport's comma list, merged so that equal sets compare equal."""
    return merge_ranges(_ports(part, family, what) for part in text.split(","))


def _iprange(text: str, family: Family, what: str) -> tuple[Addr, Addr]:
    """iprange's `a-b`."""
    lo, sep, hi = text.partition("-")
    if not sep:
        raise RuleTranslationError(f"unsupported range '{text}' for {what}")
    return addr_range(parse_addr(lo, family, what), parse_addr(hi, family, what), what)


def _ctdir(text: str, family: Family, what: str) -> str:
    if text not in ("ORIGINAL", "REPLY"):
        raise RuleTranslationError(f"unsupported value '{text}' for {what}")
    return text


def _reject_with(text: str, family: Family, what: str) -> str:
    name = _REJECT_ALIASES[family].get(text, text)
    if name not in REJECTS[family]:
        raise RuleTranslationError(f"unsupported {what} '{text}' for family {family}")
    return name


def _log_level(text: str, family: Family, what: str) -> int:
    level = int(text) if text.isdigit() else _LOG_LEVELS.get(text, -1)
    if not 0 <= level <= 7:
        raise RuleTranslationError(f"unsupported {what} '{text}'")
    return level


_VALUES: dict[str, Callable[[str, Family, str], Any]] = {
    "src": parse_net, "dst": parse_net, "ctorigsrc": parse_net, "ctorigdst": parse_net,
    "iif": lambda t, f, w: check_iface(t, w), "oif": lambda t, f, w: check_iface(t, w),
    "proto": lambda t, f, w: proto_name(t),
    "sport": _ports, "dport": _ports, "ctorigsrcport": _ports, "ctorigdstport": _ports,
    "msports": _port_list, "mdports": _port_list, "mports": _port_list,
    "ctstate": lambda t, f, w: ct_states(t.split(",")), "ctdir": _ctdir,
    "src_range": _iprange, "dst_range": _iprange,
    "mac": lambda t, f, w: check_mac(t),
    "src_type": lambda t, f, w: addr_types(t.split(","), f),
    "dst_type": lambda t, f, w: addr_types(t.split(","), f),
    "comment": lambda t, f, w: check_text(t, "comment", COMMENT_MAX),
    "log_prefix": lambda t, f, w: check_text(t, "log prefix", LOG_PREFIX_MAX),
    "reject_with": _reject_with, "log_level": _log_level,
}


@dataclass
class _Parser:
    """What iptables' getopt loop tracks: loaded matches/target and a pending `!`."""

    rule: Rule
    loaded: set[str] = field(default_factory=lambda: {""})
    port_modules: set[str] = field(default_factory=set)
    neg: bool = False


def parse_iptables(text: str, family: Family) -> Rule:
    """Parse iptables rule arguments (optionally after `-A CHAIN`) into a finished Rule."""
    try:
        args = shlex.split(text)
    except ValueError as err:
        raise RuleTranslationError(f"cannot split rule: {err}") from None
    if args[:1] in (["-A"], ["--append"]):
        args = args[2:]
    parser = _Parser(Rule(family))
    pos = 0
    while pos < len(args):
        pos = _step(parser, args, pos)
    if parser.neg:
        raise RuleTranslationError("'!' at the end of the rule")
    proto = parser.rule.opts.get("proto")
    for module in sorted(parser.port_modules):
        if proto != Cond(module):
            raise RuleTranslationError(f"match '-m {module}' needs -p {module}")
    return finish(parser.rule)


def _step(parser: _Parser, args: list[str], pos: int) -> int:
    """Consume the token at `pos` and its value like iptables' getopt; return the next position."""
    token = args[pos]
    if token == "!":
        if parser.neg:
            raise RuleTranslationError("'!' given twice")
        parser.neg = True
        return pos + 1
    opt = _ALIASES.get(token, token)
    if opt not in _OPTIONS and opt not in ("-m", "-j"):
        kind = "option" if token.startswith("-") else "argument"
        raise RuleTranslationError(f"unsupported {kind} '{token}'")
    if pos + 1 >= len(args):
        raise RuleTranslationError(f"option '{token}' needs a value")
    neg, parser.neg = parser.neg, False
    if opt in ("-m", "-j"):
        if neg:
            raise RuleTranslationError(f"'!' is not supported before '{opt}'")
        _load(parser, opt, args[pos + 1])
    else:
        _option(parser, opt, args[pos + 1], neg)
    return pos + 2


def _load(parser: _Parser, opt: str, name: str) -> None:
    """`-m NAME` / `-j NAME`: only the matches and targets this translator understands."""
    if opt == "-j":
        if name not in TARGETS:
            raise RuleTranslationError(f"unsupported target '-j {name}'")
        parser.rule.set_target(name)
    elif name not in _MODULES:
        raise RuleTranslationError(f"unsupported match '-m {name}'")
    elif name in PORT_PROTOS:
        parser.port_modules.add(name)
        name = "ports"
    parser.loaded.add(name)


def _option(parser: _Parser, opt: str, text: str, neg: bool) -> None:
    """One option with its value; the match or target that owns it must be loaded."""
    needs, key = _OPTIONS[opt]
    if needs not in parser.loaded:
        hint = "-p tcp, udp or sctp" if needs == "ports" else (
            f"-j {needs}" if needs.isupper() else f"-m {needs}")
        raise RuleTranslationError(f"option '{opt}' needs {hint}")
    if neg and key in _NOT_NEGATABLE:
        raise RuleTranslationError(f"'!' is not supported before '{opt}'")
    value = _VALUES[key](text, parser.rule.family, opt)
    parser.rule.set(key, Cond(value, neg), opt)
    if key == "proto" and value in PORT_PROTOS:
        parser.loaded.add("ports")


def _quote(text: str) -> str:
    """xtables_save_string: bare when only [A-Za-z0-9_-], else double-quoted."""
    return text if re.fullmatch(r"[A-Za-z0-9_-]+", text) else f'"{text}"'


def _range(lo_hi: PortRange) -> str:
    lo, hi = lo_hi
    return str(lo) if lo == hi else f"{lo}:{hi}"


_SAVE_VALUES: dict[str, Callable[[Any], str]] = {
    "src": fmt_net, "dst": fmt_net,
    "iif": str, "oif": str, "proto": str,
    "sport": _range, "dport": _range, "ctorigsrcport": _range, "ctorigdstport": _range,
    "msports": lambda v: ",".join(map(_range, v)), "mdports": lambda v: ",".join(map(_range, v)),
    "mports": lambda v: ",".join(map(_range, v)),
    "src_range": lambda v: f"{fmt_addr(v[0])}-{fmt_addr(v[1])}",
    "dst_range": lambda v: f"{fmt_addr(v[0])}-{fmt_addr(v[1])}",
    "mac": str, "ctdir": str, "reject_with": str, "log_level": str,
    "src_type": lambda v: ",".join(t for t in ADDR_TYPES if t in v),
    "dst_type": lambda v: ",".join(t for t in ADDR_TYPES if t in v),
    "ctstate": lambda v: ",".join(s for s in CT_STATES if s in v),
    "ctorigsrc": lambda n: fmt_net(n, bare=True), "ctorigdst": lambda n: fmt_net(n, bare=True),
    "comment": _quote, "log_prefix": _quote,
}


def render_iptables(rule: Rule) -> str:
    """The rule as iptables-save prints it, without the leading `-A CHAIN`."""
    words: list[str] = []
    for module, options in _SAVE_LAYOUT:
        present = [(key, opt) for key, opt in options if key in rule.opts]
        if present and module:
            words.append(f"-m {rule.opts['proto'].value if module == 'ports' else module}")
        words.extend(_save_option(rule, key, opt) for key, opt in present)
    words.append(f"-j {rule.target}")
    words.extend(_save_option(rule, key, opt) for key, opt in _TARGET_LAYOUT if key in rule.opts)
    return " ".join(words)


def _save_option(rule: Rule, key: str, opt: str) -> str:
    cond = rule.opts[key]
    text = f"{opt} {_SAVE_VALUES[key](cond.value)}"
    return f"! {text}" if cond.neg else text

