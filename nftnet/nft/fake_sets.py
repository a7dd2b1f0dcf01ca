"""The sets and maps of ``FakeNft``: elements checked, added and deleted as the kernel does.

What this kernel (6.18, libnftables 1.0.6) was seen to do, and the fake does too: adding an
element present already changes nothing, unless a map holds another value for its key (File
exists); deleting one that is absent is refused; map elements are deleted by key. Interval
sets hold IPv4/IPv6 addresses, prefixes and ranges; one that overlaps another is refused, and
they list as the kernel does: sorted, single addresses bare, whole prefixes as prefixes.
Element types are checked roughly (ifname a string, inet_service a port number, ...); types
the fake does not know take anything.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network, summarize_address_range
from typing import Any

from nftnet.nft.objects import Json

Address = IPv4Address | IPv6Address
PROTOCOLS = {"tcp": 6, "udp": 17, "dccp": 33, "sctp": 132, "udplite": 136}
VERDICTS = {"accept", "drop", "return", "continue", "jump", "goto"}
SET_KEYS = {"family", "table", "name", "type", "map", "flags", "comment", "elem"}
_PROTOCOL_NAMES = {n: name for name, n in PROTOCOLS.items()}
_TYPES: dict[str, Callable[[Any], bool]] = {  # the types the fake checks values of, roughly
    "ifname": lambda v: isinstance(v, str),
    "ipv4_addr": lambda v: isinstance(v, (str, dict)),
    "ipv6_addr": lambda v: isinstance(v, (str, dict)),
    "inet_proto": lambda v: v in PROTOCOLS or (isinstance(v, int) and 0 <= v < 256),
    "inet_service": lambda v: isinstance(v, int),
    "verdict": lambda v: isinstance(v, dict) and len(v) == 1 and set(v) <= VERDICTS,
}


class Refused(Exception):
    """One command of a batch is refused, with the kernel's message (or libnftables')."""

    @property
    def by_kernel(self) -> bool:
        """Refused by the kernel, not by libnftables before it sent the batch."""
        return str(self).startswith("Could not process rule")


@dataclass
class FakeSet:
    kind: str  # "set" or "map"
    name: str
    type: tuple[str, ...]
    data: str | None = None
    interval: bool = False
    handle: int = 0
    elems: dict[Any, Any] = field(default_factory=dict)  # key -> the element as listed
    given: list[Any] = field(default_factory=list)  # intervals the add under way gives
    added: set[Any] = field(default_factory=set)  # and of them, those that were not there

    @classmethod
    def from_body(cls, kind: str, body: Json, handle: int) -> FakeSet:
        if set(body) - SET_KEYS or set(body.get("flags", [])) - {"interval"}:
            raise NotImplementedError(f"FakeNft does not model this {kind}: {body}")
        kinds = body["type"] if isinstance(body["type"], list) else [body["type"]]
        new = cls(kind, body["name"], tuple(kinds), body.get("map"),
                  "interval" in body.get("flags", []), handle)
        if (kind == "map") != (new.data is not None):
            raise Refused("Invalid argument")
        if new.interval and (len(new.type) != 1 or new.type[0] not in ("ipv4_addr", "ipv6_addr")):
            raise NotImplementedError(f"FakeNft models interval sets of addresses only: {body}")
        return new

    def same_definition(self, other: FakeSet) -> bool:
        return (self.kind, self.type, self.data, self.interval) == (
            other.kind, other.type, other.data, other.interval)

    def listed(self, family: str, table: str) -> Json:
        out: Json = {"family": family, "name": self.name, "table": table,
                     "type": self.type[0] if len(self.type) == 1 else list(self.type),
                     "handle": self.handle}
        if self.data is not None:
            out["map"] = self.data
        if self.interval:
            out["flags"] = ["interval"]
        if self.elems:
            keys = sorted(self.elems) if self.interval else self.elems
            out["elem"] = [self.elems[k] for k in keys]
        return out

    def add(self, items: list[Any], chains: dict[str, bool]) -> bool:
        """Add ``items``; ``chains`` (name: is a base chain) for verdicts. True if changed."""
        changed = False
        for item in _items(items):
            key, value, listed = self._element(item)
            if self.data == "verdict":
                _check_verdict(value, chains)
            if self.interval:
                self.given.append(key)
            if key in self.elems:
                if self.interval or self.data is None or self.elems[key][1] == value:
                    continue
                raise Refused("Could not process rule: File exists")
            self.elems[key] = listed
            self.added.add(key)
            changed = True
        return changed

    def check_overlaps(self) -> None:
        """At the end of an add (libnftables makes one of adds in a row to one set), refuse
        intervals that overlap as libnftables finds them: the add's and those there before,
        sorted by their first address (the add's first), each against the one before; it is
        "conflicting" where both are the add's."""
        given, added = self.given, self.added
        self.given, self.added = [], set()
        copies = sorted([(k, True) for k in given] +
                        [(k, False) for k in self.elems if k not in added], key=lambda c: c[0][0])
        prev: tuple[Any, bool] | None = None
        for key, new in copies:
            if prev is not None and prev[0] != key and key[0] <= prev[0][1]:
                raise Refused("conflicting intervals specified" if prev[1] and new
                              else "interval overlaps with an existing one")
            prev = key, new

    def delete(self, items: list[Any]) -> None:
        for item in _items(items):
            key = self._key(_unwrap(item[0] if self.data is not None and isinstance(item, list)
                                    else item))
            if key not in self.elems:
                raise Refused("element does not exist" if self.interval else
                              "Could not process rule: No such file or directory")
            del self.elems[key]

    def references(self) -> set[str]:
        """The chains that this verdict map's elements jump or go to."""
        return {v[1][verb]["target"] for v in self.elems.values() if self.data == "verdict"
                for verb in ("jump", "goto") if verb in v[1]}

    def _element(self, item: Any) -> tuple[Any, Any, Any]:
        if self.data is None:
            if isinstance(item, list):
                raise Refused("set is not a map")
            return self._key(_unwrap(item)), None, self._listed(item)
        if not (isinstance(item, list) and len(item) == 2):
            raise Refused("Could not process rule: Invalid argument")
        _check(self.data, item[1])
        return self._key(_unwrap(item[0])), item[1], [self._listed(item[0]), item[1]]

    def _key(self, value: Any) -> Any:
        """A hashable key: an interval's bounds, or the value's canonical JSON."""
        if self.interval:
            return _bounds(value)
        parts = value["concat"] if isinstance(value, dict) and "concat" in value else [value]
        if len(self.type) > 1 and not (isinstance(value, dict) and "concat" in value):
            raise Refused("Could not process rule: Invalid argument")
        for kind, part in zip(self.type, parts, strict=False):
            _check(kind, part)
        return json.dumps([_proto_name(p) for p in parts], sort_keys=True)

    def _listed(self, value: Any) -> Any:
        """``value`` as the kernel lists it."""
        if self.interval:
            return _interval_listed(*_bounds(_unwrap(value)))
        if isinstance(value, dict) and "concat" in value:
            return {"concat": [_proto_name(p) for p in value["concat"]]}
        return _proto_name(value) if not isinstance(value, dict) else value


def _items(items: list[Any]) -> list[Any]:
    if not items:
        raise Refused("Invalid set.")
    return items


def _unwrap(value: Any) -> Any:
    """The value of ``{"elem": {"val": ..., "comment": ...}}``."""
    return value["elem"]["val"] if isinstance(value, dict) and "elem" in value else value


def _proto_name(value: Any) -> Any:
    return _PROTOCOL_NAMES.get(value, value) if isinstance(value, int) else value


def _check(kind: str, value: Any) -> None:
    """Refuse ``value`` where it cannot be of the set's type (as libnftables does)."""
    ok = _TYPES.get(kind)
    if ok is not None and not ok(value):
        raise Refused("Could not process rule: Invalid argument")
    if kind == "inet_service" and not 0 <= value <= 65535:
        raise Refused("Service out of range")
    if kind in ("ipv4_addr", "ipv6_addr") and isinstance(value, str):
        try:
            version = ip_address(value).version
        except ValueError:
            raise Refused(f"Could not resolve hostname: {value}") from None
        if version != int(kind[3]):
            raise Refused("Could not process rule: Invalid argument")


def _check_verdict(verdict: Json, chains: dict[str, bool]) -> None:
    for verb in ("jump", "goto"):
        if verb in verdict:
            target = verdict[verb]["target"]
            if target not in chains:
                raise Refused("Could not process rule: No such file or directory")
            if chains[target]:
                raise Refused("Could not process rule: Operation not supported")


def _bounds(value: Any) -> tuple[Address, Address]:
    """The first and last address of an interval element."""
    try:
        if isinstance(value, str):
            return ip_address(value), ip_address(value)
        if "prefix" in value:
            net = ip_network(f"{value['prefix']['addr']}/{value['prefix']['len']}", strict=False)
            return net[0], net[-1]
        if "range" in value:
            low, high = (ip_address(v) for v in value["range"])
            return (low, high) if low <= high else (high, low)
    except (ValueError, TypeError):
        pass
    raise Refused("Could not process rule: Invalid argument")


def _interval_listed(low: Address, high: Address) -> Any:
    if low == high:
        return str(low)
    nets = list(summarize_address_range(low, high))
    if len(nets) == 1:
        return {"prefix": {"addr": str(nets[0].network_address), "len": nets[0].prefixlen}}
    return {"range": [str(low), str(high)]}
