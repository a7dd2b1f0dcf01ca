"""The static part of nftnet's table: chains, sets and rules that never depend on the config.

Every network, endpoint and published port is a set or map element (see ``elements.py``), so
the rules here are a fixed list and each packet costs a constant number of lookups.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network

from nftnet import names as N
from nftnet.compile import expr as E
from nftnet.nft.objects import Chain, Json, Rule, Set

FAMILIES = (4, 6)
ADDR_TYPE = {4: "ipv4_addr", 6: "ipv6_addr"}
PUB_KEY = ("inet_proto", "inet_service")
_LOOPBACK4 = IPv4Network("127.0.0.0/8")
_MARK: Json = {"meta": {"key": "mark"}}
_MARK_SET: Json = {"mangle": {"key": _MARK, "value": {"|": [_MARK, N.MARK_BIT]}}}


@dataclass(frozen=True)
class HostFacts:
    """What the compiler must know about the host: whether nftnet switched forwarding on.

    Where it did, forwarded traffic that touches no nftnet bridge is dropped, so that the host
    does not start routing between its other interfaces because of nftnet.
    """

    guard_forward4: bool = False
    guard_forward6: bool = False


BASE_CHAINS = (
    Chain(N.RAW_PREROUTING, "filter", "prerouting", N.PRIO_RAW),
    Chain(N.FILTER_PREROUTING, "filter", "prerouting", N.PRIO_MANGLE),
    Chain(N.FILTER_FORWARD, "filter", "forward", N.PRIO_FORWARD),
    Chain(N.FILTER_FORWARD_GUARD, "filter", "forward", N.PRIO_FORWARD_GUARD),
    Chain(N.NAT_PREROUTING, "nat", "prerouting", N.PRIO_DSTNAT),
    Chain(N.NAT_OUTPUT, "nat", "output", N.PRIO_DSTNAT),
    Chain(N.NAT_POSTROUTING, "nat", "postrouting", N.PRIO_SRCNAT),
)
REGULAR_CHAINS = (Chain(N.PUBLISHED), Chain(N.ICC_OFF))
USER = Chain(N.USER_CHAIN)


def sets() -> list[Set]:
    out = [
        Set(N.BRIDGES, ("ifname",), comment="every nftnet bridge"),
        Set(N.INTERNAL, ("ifname",), comment="bridges of internal networks"),
        Set(N.SAME_BRIDGE, ("ifname", "ifname"), "verdict", comment="icc per bridge"),
    ]
    for v in FAMILIES:
        addr = ADDR_TYPE[v]
        out += [
            Set(N.SUBNETS.format(v=v), (addr,), interval=True),
            Set(N.MASQUERADE.format(v=v), (addr,), interval=True),
            Set(N.PUB_ADDR.format(v=v), (addr, *PUB_KEY), addr),
            Set(N.PUB_PORT.format(v=v), (addr, *PUB_KEY), "inet_service"),
            Set(N.PUBANY_ADDR.format(v=v), PUB_KEY, addr),
            Set(N.PUBANY_PORT.format(v=v), PUB_KEY, "inet_service"),
        ]
    return out


def _rule(chain: str, comment: str, *expr: Json) -> Rule:
    return Rule(chain, expr, comment)


def _not_ours() -> tuple[Json, Json]:
    return E.in_set(E.IIF, N.BRIDGES, negate=True), E.in_set(E.OIF, N.BRIDGES, negate=True)


def forward_rules(host: HostFacts) -> list[Rule]:
    c = N.FILTER_FORWARD
    out = [
        _rule(c, f"IPv{v} forwarding is on for nftnet only", E.is_family(v), *_not_ours(),
              E.COUNTER, E.DROP)
        for v, guard in ((4, host.guard_forward4), (6, host.guard_forward6))
        if guard
    ]
    return [
        *out,
        _rule(c, "traffic of no nftnet bridge is not ours", *_not_ours(), E.RETURN),
        # Before every accept, the user chain's too. A drop is final, so that marking packets
        # dropped further down lets nothing through.
        _rule(c, "mark: nftnet lets this packet through unless dropped below", _MARK_SET),
        _rule(c, "user chain first (DOCKER-USER)", E.jump(N.USER_CHAIN)),
        _rule(c, "replies", E.match(E.ct("state"), ["established", "related"], "in"), E.ACCEPT),
        _rule(c, "same bridge: icc", {"vmap": {"key": E.concat(E.IIF, E.OIF),
                                               "data": f"@{N.SAME_BRIDGE}"}}),
        _rule(c, "internal: nothing out", E.in_set(E.IIF, N.INTERNAL), E.COUNTER, E.DROP),
        _rule(c, "internal: nothing in", E.in_set(E.OIF, N.INTERNAL), E.COUNTER, E.DROP),
        _rule(c, "published ports are public", E.in_set(E.OIF, N.BRIDGES),
              E.match(E.ct("status"), "dnat", "in"), E.COUNTER, E.ACCEPT),
        _rule(c, "no direct routing into containers, no crossing networks",
              E.in_set(E.OIF, N.BRIDGES), E.COUNTER, E.DROP),
    ]


def _published_rules() -> list[Rule]:
    out = []
    for v in FAMILIES:
        key = E.concat(E.ip(v, "daddr"), E.L4PROTO, E.DPORT)
        out.append(_rule(N.PUBLISHED, f"IPv{v} published on one address", E.is_family(v),
                         E.COUNTER, E.dnat(v, key, N.PUB_ADDR.format(v=v),
                                          N.PUB_PORT.format(v=v))))
    for v in FAMILIES:
        key = E.concat(E.L4PROTO, E.DPORT)
        out.append(_rule(N.PUBLISHED, f"IPv{v} published on every address", E.is_family(v),
                         E.COUNTER, E.dnat(v, key, N.PUBANY_ADDR.format(v=v),
                                          N.PUBANY_PORT.format(v=v))))
    return out


def nat_rules() -> list[Rule]:
    local = E.match(E.LOCAL_DADDR, "local")
    loopback = E.match(E.ip(4, "daddr"), E.prefix(_LOOPBACK4))
    post = N.NAT_POSTROUTING
    out = [
        _rule(N.NAT_PREROUTING, "127.0.0.0/8 is reachable from the host only", loopback, E.RETURN),
        _rule(N.NAT_PREROUTING, "published ports", local, E.jump(N.PUBLISHED)),
        _rule(N.NAT_OUTPUT, "published ports, from the host", local, E.jump(N.PUBLISHED)),
        *_published_rules(),
        _rule(post, "host to a port published via 127.0.0.1", E.in_set(E.OIF, N.BRIDGES),
              E.match(E.ct("status"), "dnat", "in"), E.match(E.ip(4, "saddr"),
                                                             E.prefix(_LOOPBACK4)),
              E.MASQUERADE),
    ]
    for v in FAMILIES:
        out += [
            _rule(post, f"IPv{v} hairpin: containers via a published port",
                  E.in_set(E.OIF, N.BRIDGES), E.match(E.ct("status"), "dnat", "in"),
                  E.in_set(E.ip(v, "saddr"), N.SUBNETS.format(v=v)), E.COUNTER, E.MASQUERADE),
            _rule(post, f"IPv{v} outbound masquerade", E.in_set(E.ip(v, "saddr"),
                  N.MASQUERADE.format(v=v)), E.in_set(E.OIF, N.BRIDGES, negate=True),
                  E.COUNTER, E.MASQUERADE),
        ]
    return out


def raw_rules() -> list[Rule]:
    return [
        _rule(N.RAW_PREROUTING, "containers never reach the host's 127.0.0.0/8",
              E.in_set(E.IIF, N.BRIDGES), E.match(E.ip(4, "daddr"), E.prefix(_LOOPBACK4)),
              E.COUNTER, E.DROP),
    ]


def guard_rules() -> list[Rule]:
    """Defence in depth: the protections of filter-forward and raw-prerouting hold should
    any one chain or set of nftnet's be deleted or flushed. The guards look at addresses
    (@subnets) where those chains look at interfaces (@bridges). filter-forward marks every
    packet of nftnet's bridges it does not drop: without it nothing reaches or leaves a
    container (fail closed); with it, the guard changes nothing and the user chain's accept
    keeps Docker's meaning."""
    c = N.FILTER_FORWARD_GUARD
    unmarked = E.match({"&": [_MARK, N.MARK_BIT]}, 0)
    out = [
        _rule(c, f"IPv{v}: nothing {way} a container but what filter-forward let through",
              E.in_set(E.ip(v, field), N.SUBNETS.format(v=v)), unmarked, E.COUNTER, E.DROP)
        for v in FAMILIES for way, field in (("to", "daddr"), ("from", "saddr"))
    ]
    return [*out, _rule(N.FILTER_PREROUTING, "containers never reach the host's 127.0.0.0/8",
                        E.in_set(E.ip(4, "saddr"), N.SUBNETS.format(v=4)),
                        E.match(E.ip(4, "daddr"), E.prefix(_LOOPBACK4)), E.COUNTER, E.DROP)]


def icc_off_rules() -> list[Rule]:
    return [
        _rule(N.ICC_OFF, "a published port stays reachable", E.match(E.ct("status"), "dnat", "in"),
              E.ACCEPT),
        _rule(N.ICC_OFF, "icc=false", E.COUNTER, E.DROP),
    ]


def rules(host: HostFacts) -> list[Rule]:
    return [*raw_rules(), *forward_rules(host), *guard_rules(), *nat_rules(),
            *icc_off_rules()]

