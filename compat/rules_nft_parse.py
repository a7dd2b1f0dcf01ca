"""nft rule text -> Rule: our own output, `nft list`'s, and iptables-translate's dialect.

`nft list` may hide a `meta nfproto` we emitted, and iptables-translate writes `ip protocol`,
`counter`, `ct original saddr` and `reject with icmp type`; all of these read back to the same
Rule. Anything else is refused with the offending expression named.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from compat.rules_model import (
    COMMENT_MAX,
    DEFAULT_REJECT,
    LOG_PREFIX_MAX,
    NFT_LOG_LEVELS,
    PORT_PROTOS,
    REJECTS,
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
    merge_ranges,
    parse_addr,
    parse_net,
    parse_port,
    port_range,
    proto_name,
)
from compat.rules_nft import ANY_PORT, L4_KEYS, NFPROTO, SELECTORS

_DERIVED = ("src_range", "dst_range", "msports", "mdports")  # found via their base selector
_VERDICTS = {"accept": "ACCEPT", "drop": "DROP", "return": "RETURN"}
_TOKEN = re.compile(r'"[^"]*"|[{},]|[^\s{},"]+|"')


@dataclass
class _Tokens:
    """Cursor over nft tokens; `l4` collects the protocols named by port selectors."""

    items: list[str]
    pos: int = 0
    l4: set[str] = field(default_factory=set)

    def peek(self, ahead: int = 0) -> str | None:
        index = self.pos + ahead
        return self.items[index] if index < len(self.items) else None

    def take(self, what: str) -> str:
        token = self.peek()
        if token is None:
            raise RuleTranslationError(f"missing value after '{what}'")
        self.pos += 1
        return token


def _selector_table(family: Family) -> dict[tuple[str, ...], str]:
    """Selector words -> key, for the family; includes iptables-translate spellings."""
    ip = "ip" if family == "ip" else "ip6"
    table = {tuple(sel.format(ip=ip, l4=l4).split()): key
             for key, sel in SELECTORS.items() if key not in _DERIVED for l4 in PORT_PROTOS}
    table[("ct", "original", "saddr")] = "ctorigsrc"
    table[("ct", "original", "daddr")] = "ctorigdst"
    table[("meta", "nfproto")] = "nfproto"
    if family == "ip":
        table[("ip", "protocol")] = "proto"
    return table


def parse_nft(text: str, family: Family) -> Rule:
    """Parse one nft rule statement (ours, `nft list`'s or iptables-translate's) into a Rule."""
    tokens = _Tokens(_tokenize(text))
    rule = Rule(family)
    selectors = _selector_table(family)
    while tokens.peek() is not None:
        for width in (5, 4, 3, 2, 1):
            key = selectors.get(tuple(tokens.items[tokens.pos:tokens.pos + width]))
            if key is not None:
                _parse_match(rule, tokens, key, width)
                break
        else:
            _parse_statement(rule, tokens)
    _reconcile_proto(rule, tokens.l4)
    return finish(rule)


def _tokenize(text: str) -> list[str]:
    tokens = _TOKEN.findall(text)
    if '"' in tokens:
        raise RuleTranslationError("unterminated string in nft rule")
    return tokens


def _parse_match(rule: Rule, tokens: _Tokens, key: str, width: int) -> None:
    """`SELECTOR [!=|!] VALUE`; the value's shape picks between keys sharing a selector."""
    words = tokens.items[tokens.pos:tokens.pos + width]
    label = " ".join(words)
    tokens.pos += width
    op = tokens.peek()
    neg = op in ("!=", "!")
    if neg and (op == "!") != (key == "ctstate"):
        hint = " (nft 1.0.6 reads 'ct state != a,b' as one value; use 'ct state ! a,b')"
        raise RuleTranslationError(
            f"unsupported operator '{op}' after '{label}'" + (hint if key == "ctstate" else ""))
    tokens.pos += neg
    values, is_set = _read_value(tokens, label)
    if key == "nfproto":
        if neg or values != [NFPROTO[rule.family]]:
            raise RuleTranslationError(f"'{label} {op if neg else ''}{' '.join(values)}' "
                                       f"does not select family {rule.family}")
        return
    if key in ("src", "dst") and "-" in values[0]:
        key = f"{key}_range"
    if key in ("sport", "dport") and is_set:
        key = f"m{key}s"
    if key in L4_KEYS:
        tokens.l4.add(words[0])
    value = _CONVERTERS[key](values, is_set, rule.family, label)
    rule.set(key, Cond(value, neg), label)


def _read_value(tokens: _Tokens, label: str) -> tuple[list[str], bool]:
    """A value: one token, a comma list (ct state) or a `{ ... }` set; set elements keep `.`."""
    first = tokens.take(label)
    if first != "{":
        values = [first]
        while tokens.peek() == "," and tokens.peek(1) is not None:
            tokens.pos += 1
            values.append(tokens.take(label))
        return values, False
    elements: list[str] = []
    current: list[str] = []
    while (token := tokens.take(label)) != "}":
        if token == ",":
            elements.append(" ".join(current))
            current = []
        else:
            current.append(token)
    elements.append(" ".join(current))
    if "" in elements:
        raise RuleTranslationError(f"malformed set after '{label}'")
    return elements, True


def _one(values: list[str], is_set: bool, label: str) -> str:
    if is_set or len(values) != 1:
        raise RuleTranslationError(f"unsupported list '{', '.join(values)}' for '{label}'")
    return values[0]


def _ports(text: str, label: str) -> PortRange:
    lo, sep, hi = text.partition("-")
    lo_port = parse_port(lo, label)
    return port_range(lo_port, parse_port(hi, label) if sep else lo_port, label)


def _both_ports(values: list[str], label: str) -> tuple[PortRange, ...]:
    """Accept a `sport . dport` set only if it is exactly multiport --ports' expansion."""
    pairs = set()
    for element in values:
        first, sep, second = element.partition(" . ")
        if not sep:
            raise RuleTranslationError(f"unsupported element '{element}' for '{label}'")
        pairs.add((_ports(first, label), _ports(second, label)))
    sports = {a for a, b in pairs if b == ANY_PORT}
    dports = {b for a, b in pairs if a == ANY_PORT}
    if sports != dports or any(ANY_PORT not in pair for pair in pairs):
        raise RuleTranslationError(f"unsupported concatenation for '{label}': not sport OR dport")
    return merge_ranges(sports)


def _iface_name(value: str, label: str) -> str:
    name = _unquote(value)
    return check_iface(name[:-1] + "+" if name.endswith("*") else name, label)


def _addr_pair(value: str, family: Family, label: str) -> tuple[Addr, Addr]:
    lo, _, hi = value.partition("-")
    return addr_range(parse_addr(lo, family, label), parse_addr(hi, family, label), label)


def _nft_proto(value: str) -> str:
    name = proto_name(value)
    if name == "all":  # nft has no "all"; l4proto 0 is a real protocol there
        raise RuleTranslationError(f"unsupported protocol '{value}'")
    return name


def _ctdir(value: str, label: str) -> str:
    if value not in ("original", "reply"):
        raise RuleTranslationError(f"unsupported value '{value}' for '{label}'")
    return value.upper()


Converter = Callable[[list[str], bool, Family, str], Any]


def _single(convert: Callable[[str, Family, str], Any]) -> Converter:
    """Lift a one-value converter; lists and sets are refused for such selectors."""
    return lambda values, is_set, family, label: convert(_one(values, is_set, label), family,
                                                         label)


def _many(convert: Callable[[list[str], Family, str], Any]) -> Converter:
    """Lift a converter that takes a list or set alike."""
    return lambda values, is_set, family, label: convert(values, family, label)


_IFACE = _single(lambda v, f, w: _iface_name(v, w))
_PORT = _single(lambda v, f, w: _ports(v, w))
_PORT_LIST = _many(lambda vs, f, w: merge_ranges(_ports(v, w) for v in vs))
_TYPES = _many(lambda vs, f, w: addr_types(vs, f))
_CONVERTERS: dict[str, Converter] = {
    "iif": _IFACE, "oif": _IFACE,
    "src": _single(parse_net), "dst": _single(parse_net),
    "ctorigsrc": _single(parse_net), "ctorigdst": _single(parse_net),
    "src_range": _single(_addr_pair), "dst_range": _single(_addr_pair),
    "proto": _single(lambda v, f, w: _nft_proto(v)),
    "sport": _PORT, "dport": _PORT, "ctorigsrcport": _PORT, "ctorigdstport": _PORT,
    "msports": _PORT_LIST, "mdports": _PORT_LIST,
    "mports": _many(lambda vs, f, w: _both_ports(vs, w)),
    "ctstate": _many(lambda vs, f, w: ct_states(vs)),
    "ctdir": _single(lambda v, f, w: _ctdir(v, w)),
    "src_type": _TYPES, "dst_type": _TYPES,
    "mac": _single(lambda v, f, w: check_mac(v)),
}


def _unquote(token: str) -> str:
    return token[1:-1] if len(token) >= 2 and token[0] == token[-1] == '"' else token


def _parse_statement(rule: Rule, tokens: _Tokens) -> None:
    """Verdicts, reject, log, comment and counter: everything that is not a match."""
    word = tokens.take("rule")
    if word in _VERDICTS:
        rule.set_target(_VERDICTS[word])
    elif word == "reject":
        rule.set_target("REJECT")
        rule.set("reject_with", Cond(_reject_type(rule.family, tokens)), "reject with")
    elif word == "log":
        rule.set_target("LOG")
        _parse_log(rule, tokens)
    elif word == "comment":
        text = check_text(_unquote(tokens.take(word)), "comment", COMMENT_MAX)
        rule.set("comment", Cond(text), word)
    elif word == "counter":
        while tokens.peek() in ("packets", "bytes"):
            tokens.pos += 2
    else:
        what = " ".join(tokens.items[tokens.pos - 1:tokens.pos + 1])
        raise RuleTranslationError(f"unsupported nft expression '{what}'")


def _reject_type(family: Family, tokens: _Tokens) -> str:
    """`reject [with icmp|icmpv6|icmpx [type] CODE | with tcp reset]` -> --reject-with name."""
    if tokens.peek() != "with":
        return DEFAULT_REJECT[family]
    tokens.pos += 1
    kind = tokens.take("reject with")
    if tokens.peek() == "type":
        tokens.pos += 1
    text = f"reject with {kind} {tokens.take('reject with ' + kind)}"
    if text == "reject with icmpx port-unreachable":
        return DEFAULT_REJECT[family]
    names = {stmt: name for name, stmt in REJECTS[family].items()}
    if text not in names:
        raise RuleTranslationError(f"unsupported '{text}' for family {family}")
    return names[text]


def _parse_log(rule: Rule, tokens: _Tokens) -> None:
    """`log [prefix "p"] [level L]`; other log options have no iptables LOG equivalent here."""
    while tokens.peek() in ("prefix", "level"):
        word = tokens.take("log")
        value = _unquote(tokens.take(f"log {word}"))
        if word == "prefix":
            rule.set("log_prefix", Cond(check_text(value, "log prefix", LOG_PREFIX_MAX)), word)
        elif value in NFT_LOG_LEVELS:
            rule.set("log_level", Cond(NFT_LOG_LEVELS.index(value)), word)
        else:
            raise RuleTranslationError(f"unsupported log level '{value}'")


def _reconcile_proto(rule: Rule, l4: set[str]) -> None:
    """`tcp dport` implies `-p tcp`; an explicit protocol must agree with it."""
    if not l4:
        return
    if len(l4) > 1:
        raise RuleTranslationError(f"port matches for several protocols: {', '.join(sorted(l4))}")
    (name,) = l4
    proto = rule.opts.setdefault("proto", Cond(name))
    if proto != Cond(name):
        raise RuleTranslationError(f"protocol '{proto.value}' conflicts with '{name}' ports")

