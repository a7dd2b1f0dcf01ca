"""What nftnet-cni needs from nftnet: the ``Engine`` protocol and the values it passes (pure).

CNI names an attachment by (network name, container id, interface name): "plugins that store
state should do so using a primary key of (network name, CNI_CONTAINERID, CNI_IFNAME)"
(SPEC.md). Every call also names its owner, ``"cni"``: nftnet marks these entries as the
runtime's in its state and in ``status``, and ``apply -f`` leaves them alone.

The values mirror nftnet's own config model (one subnet, gateway and address per family) so
that the engine maps them one to one. The bridge and the veth are the bridge plugin's: nftnet
adopts them and never creates or deletes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Protocol

from nftnet.config.model import IPAddress, Proto


@dataclass(frozen=True, order=True)
class Attachment:
    """One container's interface on one network: the key of everything ADD made for it."""

    container_id: str
    ifname: str


@dataclass(frozen=True)
class PortMap:
    """One ``runtimeConfig.portMappings`` entry, as the portmap plugin takes it."""

    host_port: int
    container_port: int
    protocol: Proto
    host_ip: IPAddress | None = None  # hostIP absent or "": every host address


@dataclass(frozen=True)
class Network:
    """The CNI network as nftnet should hold it: the bridge that the bridge plugin made, its
    subnets and gateways as the IPAM plugin gave them, and nftnet's network options."""

    name: str
    bridge: str
    subnet4: IPv4Network | None = None
    subnet6: IPv6Network | None = None
    gateway4: IPv4Address | None = None  # None: IPAM gave none (bridge without isGateway)
    gateway6: IPv6Address | None = None
    icc: bool = True
    masquerade: bool = True
    internal: bool = False


@dataclass(frozen=True)
class Endpoint:
    """One attachment as the runtime's chain made it: the host end of its veth on the bridge,
    and the container's addresses (at least one)."""

    attachment: Attachment
    netns: str
    host_ifname: str
    ipv4: IPv4Address | None = None
    ipv6: IPv6Address | None = None


@dataclass(frozen=True)
class Readiness:
    """STATUS's answer: ready when ``problem`` is empty; otherwise ADD cannot be served (code
    50), and with ``limited`` existing containers may have limited connectivity too (51)."""

    problem: str = ""
    limited: bool = False


class Engine(Protocol):
    """nftnet for the plugin. Each change is one transaction, under nftnet's lock with a
    bounded wait (LockTimeout when it runs out), and nothing is half-applied: errors are
    NftnetError (ConfigError for what the caller asked wrongly, naming each problem)."""

    def add(self, owner: str, network: Network, endpoint: Endpoint,
            ports: Sequence[PortMap]) -> None:
        """Make sure ``network`` exists (adopting its bridge), register ``endpoint`` on its veth
        and publish ``ports`` to its addresses. An ADD again for the same attachment replaces
        what the first one made."""

    def delete(self, owner: str, network: str, attachment: Attachment) -> None:
        """Remove what ADD made for ``attachment``; nothing to remove (never added, deleted
        already, nothing applied at all, no state directory) is success."""

    def check(self, owner: str, network: Network, endpoint: Endpoint,
              ports: Sequence[PortMap]) -> list[str]:
        """What the kernel and the state no longer hold of what ADD made, one line each."""

    def gc(self, owner: str, network: str, valid: frozenset[Attachment]) -> list[Attachment]:
        """Remove the owner's attachments on ``network`` that are not in ``valid``; the
        removed ones."""

    def status(self, owner: str, network: str) -> Readiness:
        """Whether ADD on ``network`` can be served now (nftables usable, state readable)."""
