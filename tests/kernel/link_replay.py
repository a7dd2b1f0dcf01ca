"""One call on a links backend and what it then shows, so that the kernel and FakeLinks compare.

``python -m tests.kernel.link_replay`` (in a namespace) runs KernelLinks: each line of stdin a
call, each line of stdout what ``step`` says after it.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable
from ipaddress import ip_interface
from pathlib import Path
from typing import Any

from nftnet.errors import LinkError
from nftnet.link.backend import LinkBackend
from nftnet.link.model import BridgeSpec, LinkChanges, LinkState, VethSpec


def bridge_spec(name: str, addrs: list[str], mtu: int, extra: dict[str, Any] | None = None
                ) -> BridgeSpec:
    extra = extra or {}
    return BridgeSpec(name, tuple(ip_interface(a) for a in addrs), mtu,
                      tuple(extra.get("ports", ())), extra.get("ours", False),
                      frozenset(extra.get("added", ())))


def veth_spec(arg: dict[str, Any]) -> VethSpec:
    return VethSpec(arg["bridge"], arg["host_ifname"], arg["netns"], arg.get("ifname", "eth0"),
                    arg.get("mtu", 1500), tuple(ip_interface(a) for a in arg["addresses"]),
                    tuple(arg.get("gateways", ())))


def call(links: LinkBackend, op: str, arg: Any) -> dict[str, Any]:
    """Run one backend call; what it returned, or the LinkError's text."""
    try:
        if op == "ensure":
            result: Any = dataclasses.asdict(links.ensure_bridges(bridge_spec(*s) for s in arg))
        elif op == "undo":
            result = links.undo(LinkChanges(**arg))
        elif op == "plug":
            result = links.plug_port(*arg)
        elif op == "delete":
            result = links.delete_links(arg)
        elif op == "attach":
            result = links.attach_veth(veth_spec(arg))
        elif op == "detach":
            result = links.detach_veth(arg)
        elif op == "lookup":
            names = {s.index: n for n, s in links.observe().items()}
            result = {n: [s.kind, s.up, s.hairpin, s.marked, names.get(s.master),
                          sorted(s.addresses)] for n, s in links.lookup(arg).items()}
        elif op == "read":
            result = links.read_sysctl(arg)
        elif op == "write":
            result = links.write_sysctl(*arg)
        else:
            assert op == "observe", op
            result = None
    except LinkError as e:
        return {"error": str(e)}
    return {"result": result}


def view(links: dict[str, LinkState], mtus: dict[str, int]) -> dict[str, Any]:
    """Each link as nftnet sees it, its MTU too: without the index (a counter of the namespace,
    which the kernel also spends on refused requests), a master by its name, and without the
    IPv6 link-local addresses the kernel makes (from MACs, as carrier comes)."""
    names = {s.index: name for name, s in links.items()}
    return {name: {"kind": s.kind, "up": s.up, "marked": s.marked, "hairpin": s.hairpin,
                   "master": names.get(s.master) if s.master else None, "mtu": mtus[name],
                   "addresses": sorted(a for a in s.addresses
                                       if not ip_interface(a).ip.is_link_local)}
            for name, s in sorted(links.items())}


def sys_mtu(name: str) -> int:
    """A link's MTU, as the kernel says in /sys (which ``ip netns exec`` mounts anew)."""
    return int(Path(f"/sys/class/net/{name}/mtu").read_text())


def step(links: LinkBackend, op: str, arg: Any, keys: list[str],
         mtu: Callable[[str], int] = sys_mtu) -> dict[str, Any]:
    """``call``, then the links (with their ``mtu``) and the sysctls ``keys``."""
    out = call(links, op, arg)
    seen = links.observe()
    out |= {"links": view(seen, {name: mtu(name) for name in seen}),
            "sysctls": {k: links.read_sysctl(k) for k in keys}}
    return json.loads(json.dumps(out))  # type: ignore[no-any-return]  # as from the child


if __name__ == "__main__":
    from nftnet.link.backend import KernelLinks

    kernel = KernelLinks()
    for line in sys.stdin:
        request = json.loads(line)
        print(json.dumps(step(kernel, request["op"], request["arg"], request["keys"])),
              flush=True)
