"""Reading ``iptables-save`` text: tables, chains and rules, then which of them are Docker's.

The importer reports every rule it cannot map by file line, so lines are kept from here on.
Anything that is not iptables-save output is refused with ``FILE:LINE`` messages rather than
half-read: a truncated file (no COMMIT) would otherwise import as a ruleset missing its tail.
``DockerRules`` then recognises the rules Docker writes by their options (not their spelling)
and keeps the facts they show: bridges, subnets, icc, internal, masquerade, published ports.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import ip_address, ip_network
from typing import Any, Literal

from compat.rules import RuleTranslationError, iptables_to_nft
from nftnet.config.model import IPAddress
from nftnet.config.publish import PROTOS
from nftnet.errors import ConfigError

# The tables iptables knows; anything else is not an iptables-save file we understand.
TABLES = ("filter", "nat", "mangle", "raw", "security")
BUILTIN_POLICIES = ("ACCEPT", "DROP")
STAGE1, STAGE2, USER = "DOCKER-ISOLATION-STAGE-1", "DOCKER-ISOLATION-STAGE-2", "DOCKER-USER"
LOOPBACK = {4: "127.0.0.0/8", 6: "::1/128"}  # Docker's nat OUTPUT leaves these alone
Family = Literal[4, 6]
Opts = dict[str, str]
_COUNTERS = re.compile(r"^\[\d+:\d+\]\s+")  # iptables-save -c puts them before -A


@dataclass(frozen=True)
class Rule:
    """One ``-A CHAIN ...`` line as written (``text``) and as shell words after the chain."""

    line: int
    table: str
    chain: str
    args: tuple[str, ...]
    text: str


@dataclass
class Table:
    name: str
    line: int
    policies: dict[str, str] = field(default_factory=dict)  # chain -> policy ("-" if user)
    rules: list[Rule] = field(default_factory=list)


@dataclass
class SaveFile:
    source: str
    tables: dict[str, Table] = field(default_factory=dict)

    def rules(self) -> list[Rule]:
        return [r for t in self.tables.values() for r in t.rules]


class _TextReader:
    def __init__(self, source: str) -> None:
        self.out = SaveFile(source)
        self.table: Table | None = None
        self.problems: list[str] = []

    def fail(self, line: int, message: str) -> None:
        self.problems.append(f"{self.out.source}:{line}: {message}")

    def feed(self, line: int, text: str) -> None:
        if text.startswith("*"):
            self._start(line, text[1:])
        elif self.table is None:
            self.fail(line, f"outside a table (expected *filter, *nat, ...): {text!r}")
        elif text == "COMMIT":
            self.table = None
        elif text.startswith(":"):
            self._chain(line, self.table, text[1:].split())
        elif text.startswith("-A "):
            self._rule(line, self.table, text)
        else:
            self.fail(line, f"not an iptables-save line: {text!r}")

    def _start(self, line: int, name: str) -> None:
        if self.table is not None:
            self.fail(line, f"table {self.table.name} (line {self.table.line}) has no COMMIT "
                            f"before *{name}")
        if name not in TABLES:
            self.fail(line, f"unknown table {name!r} (iptables has {', '.join(TABLES)})")
        elif name in self.out.tables:
            self.fail(line, f"table {name} appears twice (first at line "
                            f"{self.out.tables[name].line})")
        self.table = Table(name, line)
        self.out.tables.setdefault(name, self.table)

    def _chain(self, line: int, table: Table, words: list[str]) -> None:
        if len(words) not in (2, 3) or words[1] not in (*BUILTIN_POLICIES, "-"):
            self.fail(line, "a chain line reads ':NAME POLICY [packets:bytes]'")
        else:
            table.policies[words[0]] = words[1]

    def _rule(self, line: int, table: Table, text: str) -> None:
        try:
            words = shlex.split(text)
        except ValueError as e:
            self.fail(line, f"cannot split the rule into words ({e}): {text!r}")
            return
        if len(words) < 2:
            self.fail(line, f"-A needs a chain name: {text!r}")
        elif words[1] not in table.policies:
            self.fail(line, f"chain {words[1]} is not declared in table {table.name}")
        else:
            table.rules.append(Rule(line, table.name, words[1], tuple(words[2:]), text))


def parse_save(text: str, source: str = "<iptables-save>") -> SaveFile:
    """Parse iptables-save (or ip6tables-save) output; raise ConfigError naming each bad line."""
    reader = _TextReader(source)
    last = 0
    for last, raw in enumerate(text.splitlines(), start=1):
        stripped = _COUNTERS.sub("", raw.strip())
        if stripped and not stripped.startswith("#"):
            reader.feed(last, stripped)
    if reader.table is not None:
        reader.fail(last, f"table {reader.table.name} (line {reader.table.line}) has no COMMIT:"
                          " the file is truncated")
    if reader.problems:
        raise ConfigError(reader.problems)
    return reader.out


@dataclass(frozen=True)
class Unmapped:
    """A rule that is not part of the imported config, and why."""

    source: str
    line: int
    text: str
    why: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.text}\n  not mapped: {self.why}"


@dataclass
class Net:
    """One bridge as one family's rules show it."""

    bridge: str
    subnet: Any = None
    icc: bool = True
    masquerade: bool = False
    internal: bool = False
    rules: list[Rule] = field(default_factory=list)


@dataclass(frozen=True)
class Port:
    """One published port of one family, as its DNAT rule shows it."""

    rule: Rule
    family: Family
    host_ip: IPAddress | None
    proto: str
    host_port: int
    ctr_ip: IPAddress
    ctr_port: int
    bridge: str | None


def _options(args: tuple[str, ...]) -> Opts | None:
    """``! -o br0`` -> {'!-o': 'br0'}, ``-m tcp`` -> {'-m tcp': ''}; None if an option repeats.

    Docker's rules are recognised by their set of options, so the order iptables-save prints
    them in does not matter, nor the ``-m tcp`` it adds after ``-p tcp``.
    """
    out: Opts = {}
    neg, i = "", 0
    while i < len(args):
        if args[i] == "!":
            neg, i = "!", i + 1
            continue
        if args[i] == "-m" and i + 1 < len(args):
            key, value, i = f"-m {args[i + 1]}", "", i + 2
        elif i + 1 < len(args) and not args[i + 1].startswith("-") and args[i + 1] != "!":
            key, value, i = args[i], args[i + 1], i + 2
        else:
            key, value, i = args[i], "", i + 1
        if neg + key in out:
            return None
        out[neg + key], neg = value, ""
    if "-p" in out:
        out.pop(f"-m {out['-p']}", None)
    return out


def _fits(o: Opts, pattern: dict[str, str | None]) -> bool:
    """``o`` has exactly the pattern's options, with its values where one is given."""
    return o.keys() == pattern.keys() and all(v is None or o[k] == v for k, v in pattern.items())


class DockerRules:
    """One file's rules sorted into Docker facts; everything else becomes ``Unmapped``."""

    def __init__(self, save: SaveFile, family: Family) -> None:
        self.save, self.family = save, family
        self.nets: dict[str, Net] = {}
        self.ports: list[Port] = []
        self.companions: dict[tuple[str, Any, str, int], Rule] = {}
        self.user: list[str] = []  # DOCKER-USER rules as nft text
        self.unmapped: list[Unmapped] = []
        self.last = {(t.name, r.chain): r for t in save.tables.values() for r in t.rules}

    def read(self) -> DockerRules:
        handlers: dict[tuple[str, str], Callable[[Rule, Opts], str | None]] = {
            ("filter", "FORWARD"): self._forward, ("filter", "DOCKER"): self._accept,
            ("filter", STAGE1): self._stage1, ("filter", STAGE2): self._stage2,
            ("nat", "PREROUTING"): self._local_jump, ("nat", "OUTPUT"): self._local_jump,
            ("nat", "POSTROUTING"): self._postrouting, ("nat", "DOCKER"): self._dnat,
            ("mangle", "POSTROUTING"): self._checksum,
        }
        for rule in self.save.rules():
            handler = handlers.get((rule.table, rule.chain))
            opts = _options(rule.args)
            if (rule.table, rule.chain) == ("filter", USER):
                why = self._user(rule, opts)
            elif handler is None:
                why = (f"chain {rule.chain} of table {rule.table} is not one Docker writes; "
                       "nftnet does not take over other firewall rules")
            else:
                why = handler(rule, opts) if opts is not None else "an option appears twice"
            if why:
                self.unmapped.append(Unmapped(self.save.source, rule.line, rule.text, why))
        return self

    def net(self, rule: Rule, bridge: str) -> Net:
        net = self.nets.setdefault(bridge, Net(bridge))
        net.rules.append(rule)
        return net

    def _is_last_return(self, rule: Rule, o: Opts) -> bool:
        return _fits(o, {"-j": "RETURN"}) and self.last[(rule.table, rule.chain)] == rule

    def _host(self, text: str) -> IPAddress | None:
        """The address of a one-address CIDR of this file's family, else None."""
        try:
            net = ip_network(text)
        except ValueError:
            return None
        full = 32 if self.family == 4 else 128
        return net.network_address if net.version == self.family and net.prefixlen == full \
            else None

    def _subnet(self, text: str) -> Any:
        try:
            net = ip_network(text)
        except ValueError:
            return None
        return net if net.version == self.family else None

    def _forward(self, rule: Rule, o: Opts) -> str | None:
        if _fits(o, {"-j": None}) and o["-j"] in (USER, STAGE1):
            return None
        if _fits(o, {"-o": None, "-m conntrack": "", "--ctstate": "RELATED,ESTABLISHED",
                     "-j": "ACCEPT"}) or _fits(o, {"-o": None, "-j": "DOCKER"}):
            self.net(rule, o["-o"])
        elif _fits(o, {"-i": None, "!-o": o.get("-i"), "-j": "ACCEPT"}):
            self.net(rule, o["-i"])
        elif _fits(o, {"-i": None, "-o": o.get("-i"), "-j": None}) and o["-j"] in ("ACCEPT",
                                                                                 "DROP"):
            self.net(rule, o["-i"]).icc = o["-j"] == "ACCEPT"
        else:
            return "not a FORWARD rule Docker writes for a bridge network"
        return None

    def _accept(self, rule: Rule, o: Opts) -> str | None:
        if not _fits(o, {"-d": None, "!-i": None, "-o": o.get("!-i"), "-p": None,
                         "--dport": None, "-j": "ACCEPT"}) or o["-p"] not in PROTOS:
            return "not a per-port ACCEPT rule as Docker writes them"
        ip = self._host(o["-d"])
        if ip is None or not o["--dport"].isdigit():
            return "the destination is not one container address and port"
        self.net(rule, o["-o"])
        self.companions[("accept", ip, o["-p"], int(o["--dport"]))] = rule
        return None

    def _stage1(self, rule: Rule, o: Opts) -> str | None:
        if self._is_last_return(rule, o):
            return None
        if _fits(o, {"-i": None, "!-o": o.get("-i"), "-j": STAGE2}):
            self.net(rule, o["-i"])
            return None
        for addr, iface in (("!-s", "-o"), ("!-d", "-i")):
            if _fits(o, {addr: None, iface: None, "-j": "DROP"}) and self._subnet(o[addr]):
                net = self.net(rule, o[iface])
                net.internal, net.subnet = True, self._subnet(o[addr])
                return None
        return "not an isolation rule Docker writes (inter-network or internal network)"

    def _stage2(self, rule: Rule, o: Opts) -> str | None:
        if self._is_last_return(rule, o):
            return None
        if _fits(o, {"-o": None, "-j": "DROP"}):
            self.net(rule, o["-o"])
            return None
        return "not an isolation rule Docker writes"

    def _local_jump(self, rule: Rule, o: Opts) -> str | None:
        local = {"-m addrtype": "", "--dst-type": "LOCAL", "-j": "DOCKER"}
        if _fits(o, local) or _fits(o, {**local, "!-d": LOOPBACK[self.family]}):
            return None
        return "not Docker's jump to its DNAT chain"

    def _postrouting(self, rule: Rule, o: Opts) -> str | None:
        if _fits(o, {"-s": None, "!-o": None, "-j": "MASQUERADE"}) and self._subnet(o["-s"]):
            net = self.net(rule, o["!-o"])
            net.masquerade, net.subnet = True, self._subnet(o["-s"])
        elif _fits(o, {"-o": None, "-m addrtype": "", "--src-type": "LOCAL",
                       "-j": "MASQUERADE"}):
            self.net(rule, o["-o"])  # Docker's hairpin mode (no userland proxy)
        elif (_fits(o, {"-s": None, "-d": o.get("-s"), "-p": None, "--dport": None,
                        "-j": "MASQUERADE"}) and self._host(o["-s"])
              and o["--dport"].isdigit()):
            key = ("hairpin", self._host(o["-s"]), o["-p"], int(o["--dport"]))
            self.companions[key] = rule
        else:
            return "not a MASQUERADE rule Docker writes (per subnet or per published port)"
        return None

    def _checksum(self, rule: Rule, o: Opts) -> str | None:
        if _fits(o, {"-p": "sctp", "--sport": None, "-j": "CHECKSUM", "--checksum-fill": ""}):
            return None  # Docker's SCTP checksum fix for published SCTP ports
        return "not a rule Docker writes"

    def _dnat(self, rule: Rule, o: Opts) -> str | None:
        if _fits(o, {"-i": None, "-j": "RETURN"}):
            self.net(rule, o["-i"])
            return None
        required = {"-p", "--dport", "-j", "--to-destination"}
        if not required <= o.keys() <= required | {"-d", "!-i"} or o["-j"] != "DNAT":
            return "not a DNAT rule Docker writes for a published port"
        host = self._host(o["-d"]) if "-d" in o else None
        addr, _, port = o["--to-destination"].rpartition(":")
        try:
            ctr = ip_address(addr.strip("[]"))
        except ValueError:
            ctr = None
        if ("-d" in o and host is None) or ctr is None or ctr.version != self.family:
            return "host or container address is not a single address of this family"
        if o["-p"] not in PROTOS or not (o["--dport"].isdigit() and port.isdigit()):
            return ("not one tcp, udp or sctp port (newer Docker writes a port range in one rule; "
                    "this reads Docker 20.10's layout of one rule per port)")
        self.ports.append(Port(rule, self.family, host, o["-p"], int(o["--dport"]), ctr,
                                int(port), o.get("!-i")))
        return None

    def _user(self, rule: Rule, o: Opts | None) -> str | None:
        if o is not None and self._is_last_return(rule, o):
            return None
        try:
            self.user.append(iptables_to_nft(rule.text, "ip" if self.family == 4 else "ip6"))
        except RuleTranslationError as e:
            return f"DOCKER-USER rule cannot be translated to nft: {e}"
        return None
