"""Neutral form shared by the iptables and nft sides of the rule translator.

Both syntaxes parse into `Rule` and render out of it, so a round trip is a fixed point by
construction and "canonical-equal" means "parses to the same Rule". Every spelling that the
kernel treats alike (aliases, host bits, merged port lists, default levels) is normalised here.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

Family = Literal["ip", "ip6"]
Net = ipaddress.IPv4Network | ipaddress.IPv6Network
Addr = ipaddress.IPv4Address | ipaddress.IPv6Address
PortRange = tuple[int, int]
T = TypeVar("T")

TARGETS = ("ACCEPT", "DROP", "RETURN", "REJECT", "LOG")
PORT_PROTOS = ("tcp", "udp", "sctp")
# Fixed table instead of /etc/protocols: the module must be pure and host-independent.
PROTOCOLS = {
    "icmp": 1, "igmp": 2, "tcp": 6, "udp": 17, "gre": 47, "esp": 50, "ah": 51,
    "ipv6-icmp": 58, "sctp": 132, "udplite": 136,
}
CT_STATES = ("INVALID", "NEW", "RELATED", "ESTABLISHED", "UNTRACKED")  # iptables-save order
# Types nft's fib can name (no THROW/NAT/XRESOLVE), in addrtype bit order.
ADDR_TYPES = (
    "UNSPEC", "UNICAST", "LOCAL", "BROADCAST", "ANYCAST", "MULTICAST", "BLACKHOLE",
    "UNREACHABLE", "PROHIBIT",
)
IP6_ADDR_TYPES = ("UNSPEC", "UNICAST", "LOCAL", "ANYCAST", "MULTICAST", "UNREACHABLE")
NFT_LOG_LEVELS = ("emerg", "alert", "crit", "err", "warn", "notice", "info", "debug")
DEFAULT_LOG_LEVEL = 4
# iptables-save --reject-with name -> nft statement, per family.
REJECTS: dict[str, dict[str, str]] = {
    "ip": {
        "icmp-net-unreachable": "reject with icmp net-unreachable",
        "icmp-host-unreachable": "reject with icmp host-unreachable",
        "icmp-port-unreachable": "reject with icmp port-unreachable",
        "icmp-proto-unreachable": "reject with icmp prot-unreachable",
        "icmp-net-prohibited": "reject with icmp net-prohibited",
        "icmp-host-prohibited": "reject with icmp host-prohibited",
        "icmp-admin-prohibited": "reject with icmp admin-prohibited",
        "tcp-reset": "reject with tcp reset",
    },
    "ip6": {
        "icmp6-no-route": "reject with icmpv6 no-route",
        "icmp6-adm-prohibited": "reject with icmpv6 admin-prohibited",
        "icmp6-addr-unreachable": "reject with icmpv6 addr-unreachable",
        "icmp6-port-unreachable": "reject with icmpv6 port-unreachable",
        "icmp6-policy-fail": "reject with icmpv6 policy-fail",
        "icmp6-reject-route": "reject with icmpv6 reject-route",
        "tcp-reset": "reject with tcp reset",
    },
}
DEFAULT_REJECT = {"ip": "icmp-port-unreachable", "ip6": "icmp6-port-unreachable"}
PORT_KEYS = ("sport", "dport", "msports", "mdports", "mports", "ctorigsrcport", "ctorigdstport")
# iptables spelling of each key, for error messages from either side.
LABELS = {
    "sport": "--sport", "dport": "--dport", "msports": "--sports", "mdports": "--dports",
    "mports": "--ports", "ctorigsrcport": "--ctorigsrcport", "ctorigdstport": "--ctorigdstport",
}
MULTIPORT_MAX = 15
COMMENT_MAX = 128  # nft's limit; iptables allows 256
LOG_PREFIX_MAX = 29  # iptables' limit; nft allows more
_SAFE_TEXT = re.compile(r"[ !#-&(-\[\]-~]+")  # printable ASCII without " ' \
_IFACE = re.compile(r"[A-Za-z0-9_.-]{1,15}\+?|\+")
_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")


class RuleTranslationError(ValueError):
    """A rule uses something that cannot be translated faithfully; the message names it."""


@dataclass(frozen=True)
class Cond(Generic[T]):
    """One match or option value with its `!`: both syntaxes negate per match."""

    value: T
    neg: bool = False


@dataclass
class Rule:
    """One rule in neutral form: key -> condition, plus the target (verdict)."""

    family: Family
    opts: dict[str, Cond[Any]] = field(default_factory=dict)
    target: str | None = None

    def set(self, key: str, cond: Cond[Any], label: str) -> None:
        """Record a condition; a second one for the same key is refused, never merged."""
        if key in self.opts:
            raise RuleTranslationError(f"duplicate option '{label}'")
        self.opts[key] = cond

    def set_target(self, target: str) -> None:
        """Record the target; one rule has exactly one in iptables."""
        if self.target is not None:
            raise RuleTranslationError(f"more than one target: '{self.target}' and '{target}'")
        self.target = target


def parse_net(text: str, family: Family, what: str) -> Net:
    """Address or CIDR of the rule's family; host bits are cleared as iptables does."""
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise RuleTranslationError(f"unsupported address '{text}' for {what}") from None
    if net.version != (4 if family == "ip" else 6):
        raise RuleTranslationError(f"address '{text}' for {what} is not family {family}")
    return net


def fmt_addr(addr: Addr) -> str:
    """Print an address as glibc inet_ntop does (iptables-save and nft both use it).

    It differs from Python's str() only for IPv4-mapped (`::ffff:1.2.3.4`) and IPv4-compatible
    (`::1.2.3.4`) addresses, whose last 32 bits are printed dotted.
    """
    if addr.version == 4:
        return str(addr)
    words = "".join("0" if addr.packed[i:i + 2] == b"\0\0" else "x" for i in range(0, 16, 2))
    runs = [(m.start(), len(m.group())) for m in re.finditer("0{2,}", words)]
    base, length = max(runs, key=lambda run: (run[1], -run[0]), default=(-1, 0))
    mapped = length == 5 and addr.packed[10:12] == b"\xff\xff"
    if base == 0 and (length == 6 or mapped):
        tail = ipaddress.IPv4Address(addr.packed[12:])
        return f"::ffff:{tail}" if mapped else f"::{tail}"
    return str(addr)


def fmt_net(net: Net, bare: bool = False) -> str:
    """`addr/len`; with `bare`, a single address without `/32` (as conntrack and nft print it)."""
    if bare and net.num_addresses == 1:
        return fmt_addr(net.network_address)
    return f"{fmt_addr(net.network_address)}/{net.prefixlen}"


def parse_addr(text: str, family: Family, what: str) -> Addr:
    """Single address of the rule's family (iprange bounds)."""
    net = parse_net(text, family, what)
    if net.num_addresses != 1:
        raise RuleTranslationError(f"unsupported address '{text}' for {what}")
    return net.network_address


def addr_range(lo: Addr, hi: Addr, what: str) -> tuple[Addr, Addr]:
    """An address range with its bounds in order."""
    if lo > hi:
        raise RuleTranslationError(f"empty range '{lo}-{hi}' for {what}")
    return lo, hi


def parse_port(text: str, what: str) -> int:
    """Numeric port only: service names would need /etc/services."""
    if not text.isdigit() or int(text) > 65535:
        raise RuleTranslationError(f"unsupported port '{text}' for {what}")
    return int(text)


def port_range(lo: int, hi: int, what: str) -> PortRange:
    """A port range with its bounds in order, as iptables insists."""
    if lo > hi:
        raise RuleTranslationError(f"empty port range '{lo}:{hi}' for {what}")
    return lo, hi


def merge_ranges(ranges: Iterable[PortRange]) -> tuple[PortRange, ...]:
    """Sort and merge overlapping or adjacent ranges, as nft does with set elements."""
    merged: list[PortRange] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return tuple(merged)


def check_iface(name: str, what: str) -> str:
    """Interface name in iptables spelling (`+` wildcard); odd characters are refused."""
    if not _IFACE.fullmatch(name):
        raise RuleTranslationError(f"unsupported interface name '{name}' for {what}")
    return name


def proto_name(text: str) -> str:
    """Canonical protocol: a name from PROTOCOLS, a number outside it, or 'all'."""
    name = text.lower()
    name = {"icmpv6": "ipv6-icmp", "0": "all"}.get(name, name)
    if name in PROTOCOLS or name == "all":
        return name
    if name.isdigit() and 0 < int(name) < 256:
        return next((k for k, v in PROTOCOLS.items() if v == int(name)), name)
    raise RuleTranslationError(f"unsupported protocol '{text}'")


def check_text(text: str, what: str, limit: int) -> str:
    """Comment or log prefix that both tools can quote identically (nft expands ``$NAME``
    in a log prefix as a variable, so there ``$`` cannot be written at all)."""
    if not _SAFE_TEXT.fullmatch(text) or len(text) > limit:
        raise RuleTranslationError(
            f"unsupported {what} '{text}': 1-{limit} printable characters without quotes or \\"
        )
    if what == "log prefix" and "$" in text:
        raise RuleTranslationError(f"unsupported log prefix '{text}': nft reads $ as a variable")
    return text


def check_mac(text: str) -> str:
    """MAC address in lower case, as both tools print it."""
    mac = text.lower()
    if not _MAC.fullmatch(mac):
        raise RuleTranslationError(f"unsupported MAC address '{text}'")
    return mac


def ct_states(names: Iterable[str]) -> frozenset[str]:
    """Conntrack states nft can match; SNAT/DNAT are ct status, not state."""
    states = frozenset(n.upper() for n in names)
    bad = sorted(states - set(CT_STATES))
    if bad:
        raise RuleTranslationError(f"unsupported conntrack state '{bad[0]}'")
    return states


def addr_types(names: Iterable[str], family: Family) -> frozenset[str]:
    """Address types that both the kernel's addrtype match and nft's fib accept."""
    types = frozenset(n.upper() for n in names)
    allowed = ADDR_TYPES if family == "ip" else IP6_ADDR_TYPES
    bad = sorted(types - set(allowed))
    if bad:
        raise RuleTranslationError(f"unsupported address type '{bad[0]}' for family {family}")
    return types


def finish(rule: Rule) -> Rule:
    """Normalise equivalent spellings and refuse what the kernel would refuse."""
    if rule.target is None:
        raise RuleTranslationError("missing target: expected ACCEPT, DROP, RETURN, REJECT or LOG")
    _check_ports(rule)
    _fold_single_multiport(rule)
    _flip_negated_low_ranges(rule)
    _drop_match_all(rule)
    _check_target_options(rule)
    return rule


def _drop_match_all(rule: Rule) -> None:
    """`-s 0.0.0.0/0`, `-i +`, `-p all`, `--dport 0:65535` match everything: iptables-save
    omits them (iptables-nft would even turn their negation into match-all)."""
    for key, cond in list(rule.opts.items()):
        everything = (
            (key in ("src", "dst") and cond.value.prefixlen == 0)
            or (key in ("sport", "dport") and cond.value == (0, 65535))
            or (key in ("iif", "oif") and cond.value == "+")
            or (key == "proto" and cond.value == "all")
        )
        if everything and cond.neg:
            raise RuleTranslationError(f"negated match-all '{key} {cond.value}' never matches")
        if everything:
            del rule.opts[key]


def _flip_negated_low_ranges(rule: Rule) -> None:
    """iptables-nft stores `! --dport 0:N` as `tcp dport > N` and prints `--dport N+1:65535`."""
    for key in ("sport", "dport"):
        cond = rule.opts.get(key)
        if cond is not None and cond.neg and cond.value[0] == 0 < cond.value[1] < 65535:
            rule.opts[key] = Cond((cond.value[1] + 1, 65535))


def _fold_single_multiport(rule: Rule) -> None:
    """nft lists a one-element set as a plain match, so a one-entry multiport is a port match."""
    for multi, plain in (("msports", "sport"), ("mdports", "dport")):
        cond = rule.opts.get(multi)
        if cond is not None and len(cond.value) == 1 and plain not in rule.opts:
            rule.opts[plain] = Cond(cond.value[0], cond.neg)
            del rule.opts[multi]


def _check_ports(rule: Rule) -> None:
    """Port matches need a positive tcp/udp/sctp protocol in nft (and in iptables)."""
    used = [key for key in PORT_KEYS if key in rule.opts]
    proto = rule.opts.get("proto")
    if used and (proto is None or proto.neg or proto.value not in PORT_PROTOS):
        raise RuleTranslationError(f"port match '{LABELS[used[0]]}' needs -p tcp, udp or sctp")
    for key in ("msports", "mdports", "mports"):
        if key in rule.opts and sum(
            1 if lo == hi else 2 for lo, hi in rule.opts[key].value
        ) > MULTIPORT_MAX:
            raise RuleTranslationError(f"too many ports for '-m multiport {LABELS[key]}'")
    if any(lo == 0 or hi == 65535 for lo, hi in rule.opts.get("mports", Cond(())).value):
        raise RuleTranslationError(
            "unsupported port 0 or 65535 in '-m multiport --ports': the kernel refuses the "
            "sport . dport set (an element would start or end inside another)")


def _check_target_options(rule: Rule) -> None:
    """Make the REJECT type explicit and the default LOG level implicit, as iptables-save does."""
    if rule.target == "REJECT" and "reject_with" not in rule.opts:
        rule.opts["reject_with"] = Cond(DEFAULT_REJECT[rule.family])
    if rule.opts.get("log_level") == Cond(DEFAULT_LOG_LEVEL):
        del rule.opts["log_level"]
    proto = rule.opts.get("proto")
    if rule.opts.get("reject_with") == Cond("tcp-reset") and proto != Cond("tcp"):
        raise RuleTranslationError("'--reject-with tcp-reset' needs -p tcp")
