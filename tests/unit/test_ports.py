"""The one port-clash rule (nftnet.desired.ports), against its definition: two bindings of one
family, protocol and port clash when their host addresses are equal or either is a wildcard."""

from __future__ import annotations

from ipaddress import IPv4Address

from hypothesis import given
from hypothesis import strategies as st

from nftnet.config.model import PortMapping
from nftnet.desired.ports import PortIndex

HOSTS = [None, IPv4Address("127.0.0.1"), IPv4Address("192.0.2.1")]
mappings = st.builds(
    lambda host, proto, port: PortMapping(4, host, proto, port, IPv4Address("10.0.0.2"), 80),
    st.sampled_from(HOSTS), st.sampled_from(["tcp", "udp"]), st.integers(8000, 8002))


def clashes(a: PortMapping, b: PortMapping) -> bool:
    same_port = (a.family, a.proto, a.host_port) == (b.family, b.proto, b.host_port)
    return same_port and (a.host_ip == b.host_ip or None in (a.host_ip, b.host_ip))


@given(st.lists(mappings, max_size=12), st.data())
def test_claims_clash_as_defined_and_release_frees(claims: list[PortMapping],
                                                    data: st.DataObject) -> None:
    index = PortIndex()
    held: list[tuple[PortMapping, str]] = []
    for i, m in enumerate(claims):
        expected = next((h for other, h in held if clashes(m, other)), None)
        assert (index.holder(m) is None) == (expected is None)
        if expected is None:
            index.claim(m, f"holder {i}")
            held.append((m, f"holder {i}"))
    for m, _ in data.draw(st.permutations(held)):
        index.release(m)
    assert index.ports == {} and index.specific == {}


def test_of_indexes_a_config_and_starts_with_nothing_changed() -> None:
    from nftnet.config.load import parse_config

    config = parse_config('{"version": 1, "networks": {"n": {"subnet": "10.0.0.0/24"}}, '
                          '"endpoints": {"a": {"network": "n", "ipv4": "10.0.0.2", '
                          '"publish": ["127.0.0.1:8080:80"]}}}')
    index = PortIndex.of(config.published)
    assert index.ports == {"4|127.0.0.1|tcp|8080": "endpoint a (127.0.0.1:8080:80)"}
    assert index.specific == {"4|*|tcp|8080": ["endpoint a (127.0.0.1:8080:80)"]}
    assert not index.changed
