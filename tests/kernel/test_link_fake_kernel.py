"""The kernel proves FakeLinks: the same calls, sent to KernelLinks in a namespace and to the
fake, with the same changes made by hand in between (``ip`` on the kernel, the fake's helpers
on the fake), return the same results and errors and leave the same links (in the namespace
and in a container's), MTUs, default routes and sysctls after each step."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from nftnet.link.fake import FRESH, FakeLinks
from nftnet.link.model import BRIDGE_NF, IP6_FORWARD, IP_FORWARD, iface
from tests.kernel.conftest import Netns
from tests.kernel.link_replay import step, view

pytestmark = pytest.mark.kernel
ROOT = Path(__file__).resolve().parents[2]
NAMES = ["lo", "br-a", "br-b", "br-c", "br-old", "nvone", "nvtwo"]
KEYS = [*FRESH, *BRIDGE_NF, *(iface(v, name, setting) for name in NAMES for v, setting in
                              ((4, "route_localnet"), (4, "promote_secondaries"),
                               (6, "disable_ipv6")))]
GONE = "/run/netns/nftnet-no-such-namespace"


class Kernel:
    """``step`` on KernelLinks in a child process inside a namespace."""

    def __init__(self, ns: Netns) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns.name, sys.executable, "-m", "tests.kernel.link_replay"],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def step(self, op: str, arg: Any = None, keys: list[str] | None = None) -> dict[str, Any]:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps({"op": op, "arg": arg, "keys": keys or []}) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())  # type: ignore[no-any-return]

    def close(self) -> None:
        assert self.proc.stdin
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def ip_on_fake(fake: FakeLinks, command: str) -> None:
    """What ``ip COMMAND`` does, on the fake (the few commands the sequence uses)."""
    match command.split():
        case ["link", "add", name, "type", "bridge"]:
            fake.ip_link_add(name, "bridge")
        case ["link", "add", name, "type", "veth", "peer", "name", peer]:
            fake.ip_link_add(name, "veth", peer)
        case ["link", "del", name]:
            fake.ip_link_del(name)
        case ["link", "set", name, ("up" | "down") as state]:
            fake.ip_link_set(name, up=state == "up")
        case ["link", "set", name, "nomaster"]:
            fake.ip_link_set(name, nomaster=True)
        case ["link", "set", name, "type", "bridge_slave", "hairpin", on]:
            fake.ip_link_set(name, hairpin=on == "on")
        case ["addr", "add", address, "dev", name]:
            fake.ip_addr_add(name, address)
        case _:
            raise NotImplementedError(command)


def sequence(c: str) -> list[tuple[str, str, str, Any]]:
    """(label, "links" | "ip" | "sysctl", call or command, argument): what apply, restore,
    runtime changes and teardown ask, what a person changes, and the kernel's refusals."""
    ours = {"ours": True}
    a = ("br-a", ["10.65.0.1/24", "fd00:a::1/56"], 1500, ours)
    b = ("br-b", ["10.64.1.1/24"], 1400, ours)
    veth = {"bridge": "br-a", "host_ifname": "nvone", "netns": c,
            "addresses": ["10.65.0.5/24", "fd00:a::5/56"], "gateways": ["10.65.0.1", "fd00:a::1"]}
    other = {"bridge": "br-b", "host_ifname": "nvtwo", "netns": c, "ifname": "eth1", "mtu": 1400,
             "addresses": ["10.64.1.5/24"], "gateways": ["10.64.1.1"]}
    third = {"bridge": "br-a", "host_ifname": "nvthree", "netns": c, "ifname": "eth2",
             "addresses": ["10.65.0.6/24"]}
    moved = ("br-a", ["10.68.0.1/24", "fd00:a::1/56"], 1500, ours)
    change = {"created": ["br-d"], "added": {"br-a": ["10.68.0.1/24"], "br-d": ["10.69.0.1/24"]},
              "removed": {"br-a": ["10.65.0.1/24"]}}
    again = ("br-a", a[1], 1500, {"ours": True, "ports": ["nvone", "nv-gone"]})
    return [
        ("bridges made", "links", "ensure", [("br-a", ["10.64.0.1/24", "fd00:a::1/64"], 1500),
                                             ("br-b", ["10.64.1.1/24"], 1400)]),
        ("as they are: nothing to do", "links", "ensure",
         [("br-a", ["10.64.0.1/24", "fd00:a::1/64"], 1500, ours), b]),
        ("apply's per-bridge sysctl", "links", "write", [iface(4, "br-a", "route_localnet"), "1"]),
        ("forwarding on", "links", "write", [IP_FORWARD, "1"]),
        ("IPv6 forwarding on", "links", "write", [IP6_FORWARD, "1"]),
        ("br_netfilter's", "links", "write", [BRIDGE_NF[0], "1"]),
        ("an address by hand", "ip", "addr add 10.99.0.7/24 dev br-a", None),
        ("new subnets: the old gateways and the hand-made address go", "links", "ensure",
         [a, b]),
        ("a bridge by hand", "ip", "link add br-old type bridge", None),
        ("with someone's address", "ip", "addr add 10.77.0.1/24 dev br-old", None),
        ("adopted: up, its gateway added, the other address kept", "links", "ensure",
         [a, b, ("br-old", ["10.66.0.1/24"], 1500)]),
        ("someone's address in nftnet's subnet", "ip", "addr add 10.66.0.7/24 dev br-old", None),
        ("the gateway moves; the kernel takes the secondary along", "links", "ensure",
         [a, b, ("br-old", ["10.67.0.1/24"], 1500, {"added": ["10.66.0.1/24"]})]),
        ("a veth by hand", "ip", "link add br-v type veth peer name br-vp", None),
        ("a name taken by a veth: nothing tried", "links", "ensure",
         [a, ("br-c", [], 1500), ("br-v", [], 1500)]),
        ("MTUs out of range: br-c made and taken back", "links", "ensure",
         [a, ("br-c", ["10.64.2.1/24"], 1500), ("br-bad", [], 10), ("br-big", [], 65536)]),
        ("an address twice: every change taken back", "links", "ensure",
         [("br-a", [*a[1], "10.66.9.1/24"], 1500, ours),
          ("br-c", ["10.64.2.1/24", "10.64.2.1/24"], 1500)]),
        ("IPv6 off on br-a by hand", "sysctl", iface(6, "br-a", "disable_ipv6"), "1"),
        ("the IPv6 gateway cannot come back", "links", "ensure", [a]),
        ("apply's disable_ipv6", "links", "write", [iface(6, "br-a", "disable_ipv6"), "0"]),
        ("now it can", "links", "ensure", [a]),
        ("a change", "links", "ensure", [moved, ("br-d", ["10.69.0.1/24"], 1500)]),
        ("undone", "links", "undo", change),
        ("undone again: nothing is as it was left", "links", "undo", change),
        ("a container's veth", "links", "attach", veth),
        ("looked up: a port and its bridge, neither addresses; one gone, one unnameable",
         "links", "lookup", ["nvone", "br-a", "nv-gone", "x" * 16, "nvone"]),
        ("on a 1400 bridge: the container's end keeps 1500", "links", "attach", other),
        ("again: the leftover goes first", "links", "attach", other),
        ("to a missing bridge", "links", "attach", third | {"bridge": "br-x"}),
        ("into a namespace that is gone", "links", "attach", third | {"netns": GONE}),
        ("a name taken inside", "links", "attach", third | {"ifname": "eth0"}),
        ("an MTU out of range", "links", "attach", third | {"mtu": 10}),
        ("the bridge deleted by hand", "ip", "link del br-a", None),
        ("its sysctls went with it", "links", "write", [iface(4, "br-a", "route_localnet"), "1"]),
        ("no bridge to plug into", "links", "plug", ["nvone", "br-a"]),
        ("made again, the veth back on it", "links", "ensure", [again, b]),
        ("hairpin off by hand", "ip", "link set nvone type bridge_slave hairpin off", None),
        ("looked up so", "links", "lookup", ["nvone"]),
        ("converge puts it back", "links", "ensure", [again, b]),
        ("off the bridge by hand", "ip", "link set nvone nomaster", None),
        ("and down", "ip", "link set nvone down", None),
        ("looked up so too", "links", "lookup", ["nvone", "br-a"]),
        ("plugged back", "links", "plug", ["nvone", "br-a"]),
        ("no veth to plug", "links", "plug", ["nv-gone", "br-a"]),
        ("detached", "links", "detach", "nvtwo"),
        ("detached again", "links", "detach", "nvtwo"),
        ("lo cannot go", "links", "detach", "lo"),
        ("teardown: marked bridges go, the adopted one stays", "links", "delete",
         ["br-a", "br-old", "br-missing", "br-b", "br-a"]),
        ("the veth of a deleted bridge", "links", "detach", "nvone"),
        ("forwarding back off", "links", "write", [IP_FORWARD, "0"]),
    ]


def same(kernel: dict[str, Any], fake: dict[str, Any], label: str) -> None:
    """Equal, or a failure showing (kernel, fake) of each link, sysctl or result that differs."""
    if kernel == fake:
        return
    diff = {}
    for part in sorted(kernel.keys() | fake.keys()):
        k, f = kernel.get(part), fake.get(part)
        if isinstance(k, dict) and isinstance(f, dict):
            diff |= {f"{part} {n}": (k.get(n), f.get(n)) for n in sorted(k.keys() | f.keys())
                     if k.get(n) != f.get(n)}
        elif k != f:
            diff[part] = (k, f)
    pytest.fail(f"{label}: (kernel, fake) differ:\n{json.dumps(diff, indent=1)}")


def gateways(ns: Netns) -> list[str]:
    return sorted(r["gateway"] for v in ("-4", "-6")
                  for r in json.loads(ns.run("ip", "-j", v, "route", "show", "default")))


def test_the_kernel_and_the_fake_agree_step_by_step(netns: Netns, container: Netns) -> None:
    path = f"/run/netns/{container.name}"
    host, inside = Kernel(netns), Kernel(container)
    try:
        preset = {k: host.step("read", k)["result"] for k in [*FRESH, *BRIDGE_NF]}
        fake = FakeLinks(preset)
        fake.add_namespace(path)
        for label, kind, what, arg in sequence(path):
            if kind == "ip":
                netns.run("ip", *what.split())
                ip_on_fake(fake, what)
            elif kind == "sysctl":
                netns.run("sh", "-c", f"echo {arg} > /proc/sys/{what}")
                fake.set_sysctl(what, arg)
            what, arg = (what, arg) if kind == "links" else ("observe", None)
            same(host.step(what, arg, KEYS),
                 step(fake, what, arg, KEYS, lambda n: fake.links[n].mtu), label)
            seen = fake.inside(path)
            same({"inside": inside.step("observe")["links"], "gateways": gateways(container)},
                 json.loads(json.dumps({"inside": view(seen, {n: fake.namespaces[path][n].mtu
                                                              for n in seen}),
                                        "gateways": fake.gateways(path)})), f"{label} (inside)")
    finally:
        host.close()
        inside.close()
