"""A file that declares what runtime changes hold (effective.runtime_clashes): names, bridges
and overlapping subnets, each on the file's field and naming the holder; the bisection finds
exactly the overlaps a comparison of every pair finds."""

from __future__ import annotations

from ipaddress import IPv4Network, ip_network

from hypothesis import given
from hypothesis import strategies as st

from nftnet.config.load import parse_config
from nftnet.desired.effective import _Spans, runtime_clashes
from nftnet.state import empty_runtime


def runtime(**networks: dict) -> dict:
    out = empty_runtime()
    out["networks"] = networks
    return out


def test_names_bridges_and_subnets_held_at_runtime_are_named_with_their_holder() -> None:
    declared = parse_config('{"version": 1, "networks": {'
                            '"d0": {"subnet": "10.1.0.0/24"},'
                            '"mine": {"subnet": "10.2.0.0/25", "bridge": "docker0"},'
                            '"wide": {"subnets": ["10.3.0.0/16", "fd00:3::/32"]},'
                            '"free": {"subnet": "10.9.0.0/24"}},'
                            '"endpoints": {"web.d0": {"network": "d0", "ipv4": "10.1.0.2"}}}')
    held = runtime(d0={"subnets": ["10.8.0.0/24"], "bridge": "br-1", "owner": "docker"},
                   bridge={"subnets": ["172.17.0.0/16"], "bridge": "docker0", "owner": "docker"},
                   a={"subnet": "10.3.1.0/24"}, b={"subnets": ["10.3.2.0/24", "fd00:3:1::/64"],
                                                   "owner": "cni"})
    held["endpoints"]["web.d0"] = {"network": "d0", "ipv4": "10.8.0.2", "owner": "docker"}
    assert runtime_clashes(declared, held) == [
        (("networks", "d0"), "network d0 is held by docker at runtime (it follows docker's own "
                             "network of that name): give the file's network another name"),
        (("endpoints", "web.d0"), "endpoint web.d0 is held by docker at runtime: give the "
                                  "file's endpoint another name"),
        (("networks", "mine", "bridge"),
         "bridge docker0 is already used by network bridge, held by docker"),
        (("networks", "wide", "subnets"),
         "10.3.0.0/16 overlaps 10.3.1.0/24 of network a, created at runtime"),
        (("networks", "wide", "subnets"),
         "10.3.0.0/16 overlaps 10.3.2.0/24 of network b, held by cni"),
        (("networks", "wide", "subnets"),
         "fd00:3::/32 overlaps fd00:3:1::/64 of network b, held by cni"),
    ]


def test_a_file_clear_of_runtime_entries_has_no_clash() -> None:
    declared = parse_config('{"version": 1, "networks": {"x": {"subnet": "10.1.0.0/24"}}}')
    assert runtime_clashes(declared, runtime(y={"subnet": "10.1.1.0/24"})) == []


def disjoint(nets: list[IPv4Network]) -> list[IPv4Network]:
    out: list[IPv4Network] = []
    for n in nets:
        if not any(n.overlaps(o) for o in out):
            out.append(n)
    return out


subnets = st.builds(lambda a, p: ip_network(f"10.{a >> 8 & 255}.{a & 255}.0/{p}", strict=False),
                    st.integers(0, 1 << 12), st.integers(8, 24))


@given(st.lists(subnets, max_size=30), subnets)
def test_bisection_finds_every_overlap_and_no_other(held: list[IPv4Network],
                                                    probe: IPv4Network) -> None:
    held = disjoint(held)
    spans = _Spans((s, str(i)) for i, s in enumerate(held))
    assert {s for s, _ in spans.overlapping(probe)} == {s for s in held if s.overlaps(probe)}
