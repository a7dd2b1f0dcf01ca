"""What nftnet knows and wants of links, pure: the vocabulary of the links backend
(link/backend.py) and the rules both of its implementations judge links by.

A bridge nftnet manages holds exactly the config's gateway addresses: on a bridge it created,
every other address but the kernel's IPv6 link-local ones goes; on one it adopted, only those
it added (recorded in the state) go. The host ends of runtime endpoints' veths belong on their
bridge, up, with hairpin on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Interface, IPv6Interface, ip_interface

# The ifalias of every bridge nftnet creates; only it is ever deleted. Setting an ifalias takes
# CAP_NET_ADMIN, so no unprivileged user can mark a bridge, and adopted ones never get it.
MARK = "nftnet"

IP_FORWARD = "net/ipv4/ip_forward"
IP6_FORWARD = "net/ipv6/conf/all/forwarding"
BRIDGE_NF = ("net/bridge/bridge-nf-call-iptables", "net/bridge/bridge-nf-call-ip6tables")


def iface(family: int, ifname: str, setting: str) -> str:
    """The sysctl key of ``setting`` for interface ``ifname`` (slash-separated)."""
    return f"net/ipv{family}/conf/{ifname}/{setting}"


@dataclass(frozen=True)
class BridgeSpec:
    """A bridge as nftnet wants it: name, gateway addresses with prefix, MTU; the host ends of
    the veths that belong on it (runtime endpoints'); and which other addresses nftnet takes
    away: all but link-local ones where it created the bridge (``ours``), else those it added
    (``added``, "ip/prefix"). ``claim``: the change under way records that it created this
    bridge (a killed command may have made it without its mark): mark it."""

    name: str
    addresses: tuple[IPv4Interface | IPv6Interface, ...]
    mtu: int
    ports: tuple[str, ...] = ()
    ours: bool = False
    added: frozenset[str] = frozenset()
    claim: bool = False


@dataclass(frozen=True)
class LinkState:
    """What nftnet needs to know of a link: enough to adopt, check or delete it, and whether
    it is a bridge port (``master``: the bridge's index, 0 for none) with hairpin on."""

    index: int
    up: bool
    kind: str | None
    addresses: frozenset[str]
    master: int = 0
    hairpin: bool = False
    marked: bool = False  # carries MARK: nftnet created it


@dataclass
class LinkChanges:
    """What one ``ensure_bridges`` call changed: the bridges it created and the addresses
    ("ip/prefix") it added to and removed from each bridge, so that the state records the
    addresses nftnet added and ``undo`` can take it all back. Veths put back on their bridge
    are not undone: that is where they belong."""

    created: list[str] = field(default_factory=list)
    added: dict[str, list[str]] = field(default_factory=dict)
    removed: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class VethSpec:
    """A runtime endpoint's veth pair: the host end ``host_ifname`` on ``bridge``, the other
    end moved into the namespace file ``netns`` and named ``ifname`` there, with the
    endpoint's addresses and default routes via the gateways."""

    bridge: str
    host_ifname: str
    netns: str  # a path to a network namespace file
    ifname: str
    mtu: int
    addresses: tuple[IPv4Interface | IPv6Interface, ...]
    gateways: tuple[str, ...]


def missing_addresses(spec: BridgeSpec, seen: LinkState
                      ) -> list[IPv4Interface | IPv6Interface]:
    """The gateways of ``spec`` that bridge ``seen`` lacks."""
    return [a for a in spec.addresses if str(a) not in seen.addresses]


def stale_addresses(spec: BridgeSpec, seen: LinkState) -> list[str]:
    """The addresses on bridge ``seen`` that nftnet takes away: those that are no gateway of
    ``spec``; on a bridge it created all of them but the kernel's IPv6 link-local ones, on an
    adopted one only those it added."""
    wanted = {str(a) for a in spec.addresses}
    mine = seen.addresses if spec.ours else seen.addresses & spec.added
    return sorted(a for a in mine - wanted if not ip_interface(a).ip.is_link_local)


def port_problems(name: str, bridge: str, links: dict[str, LinkState]) -> list[str] | None:
    """How the host end ``name`` of a container's veth differs from what ``plug_port`` leaves
    (on ``bridge``, up, hairpin on), in words; [] when it does not. None when it is gone (or
    the name is no veth's): only a new attach mends that."""
    port = links.get(name)
    if port is None or port.kind != "veth":
        return None
    seen = links.get(bridge)
    off = seen is None or port.master != seen.index
    return [p for p, wrong in ((f"is not on bridge {bridge}", off), ("is down", not port.up),
                               ("has hairpin off", not off and not port.hairpin)) if wrong]


@dataclass(frozen=True)
class Fix:
    """What one existing bridge of a spec needs: addresses to take away and to add, to come
    up (``seen.up``), the veths to put back on it."""

    spec: BridgeSpec
    seen: LinkState
    stale: list[str]
    missing: list[IPv4Interface | IPv6Interface]
    ports: list[tuple[str, LinkState]]
    unmarked: bool = False  # claimed, but without MARK


def unsettled(specs: list[BridgeSpec], links: dict[str, LinkState]) -> list[Fix]:
    """The existing bridges of ``specs`` that are not as the specs say."""
    out = []
    for spec in specs:
        seen = links.get(spec.name)
        if seen is None:
            continue
        fix = Fix(spec, seen, stale_addresses(spec, seen), missing_addresses(spec, seen),
                  [(p, links[p]) for p in spec.ports if port_problems(p, spec.name, links)],
                  spec.claim and not seen.marked)
        if fix.stale or fix.missing or fix.ports or fix.unmarked or not seen.up:
            out.append(fix)
    return out


def settled(specs: Iterable[BridgeSpec], links: dict[str, LinkState]) -> bool:
    """Whether every bridge of ``specs`` exists in ``links`` and is as it says."""
    specs = list(specs)
    return all(s.name in links for s in specs) and not unsettled(specs, links)


def planned(specs: Iterable[BridgeSpec], links: dict[str, LinkState]) -> LinkChanges:
    """What ensuring ``specs`` will change, as ``links`` stand: the bridges it will create
    and the addresses it will add and take away, so that a change records them before it
    makes them (a killed command's links are then known)."""
    out = LinkChanges()
    specs = list(specs)
    for spec in specs:
        if spec.name not in links:
            out.created.append(spec.name)
            if spec.addresses:
                out.added[spec.name] = [str(a) for a in spec.addresses]
    for fix in unsettled(specs, links):
        if fix.missing:
            out.added[fix.spec.name] = [str(a) for a in fix.missing]
        if fix.stale:
            out.removed[fix.spec.name] = list(fix.stale)
    return out
