"""Every name nftnet gives a kernel object, in one place.

Chains, sets and maps live in nftnet's own table, so they need no prefix. Base chains are named
``<type>-<hook>``. Only ``TABLE``, ``USER_CHAIN`` and ``MARK_BIT`` are public contract (see
README "Integrating"); everything else may change between versions.
"""

from __future__ import annotations

from typing import Final

FAMILY: Final = "inet"
TABLE: Final = "nftnet"
TABLE_REF: Final = f"{FAMILY} {TABLE}"  # as nft commands name it: "inet nftnet"

# Regular chain people own: evaluated first on the forwarded path (Docker's DOCKER-USER).
USER_CHAIN: Final = "user"

# Base chains.
RAW_PREROUTING: Final = "raw-prerouting"
FILTER_FORWARD: Final = "filter-forward"
# Defence in depth (see compile/ruleset.py guard_rules): the guards of raw-prerouting and
# filter-forward again, by address, so that deleting any one chain or set opens nothing.
FILTER_PREROUTING: Final = "filter-prerouting"
FILTER_FORWARD_GUARD: Final = "filter-forward-guard"
NAT_PREROUTING: Final = "nat-prerouting"
NAT_OUTPUT: Final = "nat-output"
NAT_POSTROUTING: Final = "nat-postrouting"

# Regular chains nftnet owns.
PUBLISHED: Final = "published"  # DNAT dispatch for published ports
ICC_OFF: Final = "icc-off"  # same-bridge traffic on icc=false networks

# Numeric hook priorities (named ones from nft(8)). Offsets say why they differ.
PRIO_RAW: Final = -300
PRIO_MANGLE: Final = -150
PRIO_DSTNAT: Final = -100
PRIO_FILTER: Final = 0
PRIO_SRCNAT: Final = 100
# Forward filtering runs just before the usual "filter" priority so that nftnet's drops are
# decided before a distro firewall's chain counts the packet; an accept here never overrides
# another table's drop (see README "Coexistence").
PRIO_FORWARD: Final = PRIO_FILTER - 10
# At once after it, so that no chain of another firewall can run between and change the mark.
PRIO_FORWARD_GUARD: Final = PRIO_FORWARD + 1

# Public contract (README "Coexistence"): nftnet's forward chain sets this bit of the packet
# mark on every packet it lets through (other bits are kept), so that a firewall of the host's
# own, whose forward chain runs later (e.g. priority filter), can honour nftnet's decisions
# with one rule: `meta mark and 0x10000000 == 0x10000000 accept`. A packet mark rather than a
# ct mark: bridged IPv6 neighbour discovery has no conntrack entry to mark.
# filter-forward-guard relies on it too.
MARK_BIT: Final = 0x10000000

# Interface-name sets.
BRIDGES: Final = "bridges"  # every nftnet bridge
INTERNAL: Final = "internal"  # bridges of internal networks
SAME_BRIDGE: Final = "same-bridge"  # vmap  iifname . oifname -> accept | jump icc-off

# Per-family address sets and maps; the family suffix is "4" or "6".
SUBNETS: Final = "subnets{v}"  # every nftnet subnet
MASQUERADE: Final = "masquerade{v}"  # subnets whose outbound traffic is masqueraded
PUB_ADDR: Final = "pub{v}-addr"  # host addr . proto . port -> container address
PUB_PORT: Final = "pub{v}-port"  # host addr . proto . port -> container port
PUBANY_ADDR: Final = "pubany{v}-addr"  # proto . port -> container address (any host address)
PUBANY_PORT: Final = "pubany{v}-port"  # proto . port -> container port (any host address)

# Linux limits interface names to IFNAMSIZ - 1 characters.
IFNAME_MAX: Final = 15
DEFAULT_BRIDGE_PREFIX: Final = "nft-"
