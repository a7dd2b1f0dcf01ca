"""The links-and-sysctls kernel boundary as the engine sees it: a few calls, two
implementations.

``KernelLinks`` is the kernel, through link/bridges.py, link/veth.py and link/sysctl.py;
``FakeLinks`` (link/fake.py) holds links and sysctls in memory, so that the engine's logic is
tested without root, and the kernel tests prove the fake (tests/kernel/test_link_fake_kernel.py).
Both act on one network namespace (the one nftnet runs in), and on the container namespaces
veths are moved into. The types and rules they share are link/model.py's; ``netns_path``
(link/veth.py) is argument checking, not part of the boundary.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from nftnet.link.model import BridgeSpec, LinkChanges, LinkState, VethSpec


class LinkBackend(Protocol):
    """One network namespace's links and sysctls. Every failure is a LinkError saying what
    could not be done and the kernel's reason."""

    def observe(self) -> dict[str, LinkState]:
        """Every link of the namespace, by name; LinkError if they cannot be listed."""

    def lookup(self, names: Iterable[str]) -> dict[str, LinkState]:
        """The links of ``names`` that exist, by name, as ``observe`` shows them but without
        their addresses (empty): at a cost that does not grow with the namespace's links."""

    def ensure_bridges(self, specs: Iterable[BridgeSpec]) -> LinkChanges:
        """Create the missing bridges of ``specs`` (up, a stable MAC, marked with MARK, with
        their MTU, which the kernel then sets to their smallest port's, 1500 without ports)
        and make every one as it says: stale addresses taken away
        (``model.stale_addresses``), missing gateways added, the link up, its veths back on
        it with hairpin on (``model.port_problems``); an existing bridge is adopted. Return
        what changed; nothing changed when every bridge was as its spec says.

        LinkError, after undoing what this call changed (and naming what could not be
        undone), when a name is taken by a link that is not a bridge (then nothing was
        tried), or when the kernel refuses a bridge (an MTU out of range), an address (one
        present already, IPv6 disabled on the bridge), bringing a link up or a port."""

    def undo(self, changes: LinkChanges) -> None:
        """Take back ``changes`` of ``ensure_bridges``: addresses it added to bridges it did
        not create go, those it removed come back, the bridges it created are deleted (one
        gone already is no error). LinkError names what could not be taken back."""

    def plug_port(self, name: str, bridge: str) -> None:
        """Put the veth end ``name`` on ``bridge``, up, with hairpin on. LinkError when
        either link is missing or the kernel refuses."""

    def delete_links(self, names: Iterable[str]) -> list[str]:
        """Delete the named links that exist and carry MARK (a deleted bridge frees its
        ports); a name that does not exist is skipped.
        Return those that exist without MARK: they are kept. Every deletion is tried before
        a LinkError names the ones the kernel refused."""

    def attach_veth(self, spec: VethSpec) -> None:
        """Make ``spec``'s veth pair: any link named ``spec.host_ifname`` deleted first (a
        leftover of an attach killed half-way), the host end on the bridge (as
        ``plug_port``), the other end moved into the namespace ``spec.netns``, renamed, given
        its addresses, up, with lo up and default routes via the gateways. LinkError ("cannot
        attach HOST_IFNAME: ...") when the bridge is missing, the namespace file is gone, a
        name is taken, the MTU is out of range, an address is there already or a gateway is
        unreachable; the pair is deleted again then."""

    def detach_veth(self, host_ifname: str) -> bool:
        """Delete the link named ``host_ifname`` (a veth: its peer too, wherever it is);
        True if it existed. LinkError when the kernel refuses (lo cannot be deleted)."""

    def read_sysctl(self, key: str) -> str | None:
        """The value of sysctl ``key`` (slash-separated: ``net/ipv4/ip_forward``); None where
        the kernel has no such setting (br_netfilter's while it is not loaded, an
        interface's while the interface does not exist). LinkError if it cannot be read."""

    def write_sysctl(self, key: str, value: str) -> None:
        """Set sysctl ``key`` to ``value``; LinkError where the kernel has no such setting or
        refuses the value."""


class KernelLinks:
    """The kernel's ``LinkBackend``: the namespace this process runs in.

    The modules are imported by the first call that needs them: pyroute2 only by a change
    (link/bridges.py reads without it), link/veth.py (which imports pyroute2) only by attach
    and detach, so that an apply that changes no link and ``port publish`` never load it.
    """

    def observe(self) -> dict[str, LinkState]:
        from nftnet.link import bridges

        return bridges.observe()

    def lookup(self, names: Iterable[str]) -> dict[str, LinkState]:
        from nftnet.link import bridges

        return bridges.lookup(names)

    def ensure_bridges(self, specs: Iterable[BridgeSpec]) -> LinkChanges:
        from nftnet.link import bridges

        return bridges.ensure_bridges(specs)

    def undo(self, changes: LinkChanges) -> None:
        from nftnet.link import bridges

        bridges.undo(changes)

    def plug_port(self, name: str, bridge: str) -> None:
        from nftnet.link import bridges

        bridges.plug_port(name, bridge)

    def delete_links(self, names: Iterable[str]) -> list[str]:
        from nftnet.link import bridges

        return bridges.delete_links(names)

    def attach_veth(self, spec: VethSpec) -> None:
        from nftnet.link import veth

        veth.attach(spec)

    def detach_veth(self, host_ifname: str) -> bool:
        from nftnet.link import veth

        return veth.detach(host_ifname)

    def read_sysctl(self, key: str) -> str | None:
        from nftnet.link import sysctl

        return sysctl.read(key)

    def write_sysctl(self, key: str, value: str) -> None:
        from nftnet.link import sysctl

        sysctl.write(key, value)
