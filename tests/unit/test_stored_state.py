"""Reading nftnet's own state back without marshmallow gives what the loader gave."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from nftnet.config.dump import dump_config
from nftnet.config.load import parse_config
from nftnet.nft.generation import parse_reply
from nftnet.records import endpoint_model, host_binding

hosts = st.integers(2, 254)
ports = st.lists(st.integers(1024, 65000), unique=True, max_size=6)
bindings = st.sampled_from([None, "0.0.0.0", "127.0.0.1", "192.168.7.1"])


@given(host=hosts, six=st.booleans(), ports=ports, binding=bindings)
def test_stored_entries_match_the_loader(host: int, six: bool, ports: list[int],
                                         binding: str | None) -> None:
    net: dict[str, object] = {"subnets": ["10.9.0.0/24", "fd09::/64"]}
    if binding:
        net["host_binding_ipv4"] = binding
    ep: dict[str, object] = {"network": "n", "ipv4": f"10.9.0.{host}",
                             "publish": [f"{p}:80" for p in ports] + ["[fd09::1]:9:9/udp"]}
    if six:
        ep["ipv6"] = f"fd09::{host:x}"
    else:
        ep["publish"] = ep["publish"][:-1]  # type: ignore[index]
    config = parse_config(str({"version": 1, "networks": {"n": net}, "endpoints": {"e": ep}})
                          .replace("'", '"'))
    dumped = dump_config(config)
    assert endpoint_model("e", dumped["endpoints"]["e"]) == config.endpoints["e"]
    assert host_binding(dumped["networks"]["n"]) == config.networks["n"].host_binding_ipv4


def test_generation_reply_parsing() -> None:
    header = (36).to_bytes(4, "little") + (10 << 8 | 15).to_bytes(2, "little") + bytes(10)
    attr = (8).to_bytes(2, "little") + (1).to_bytes(2, "little") + (77).to_bytes(4, "big")
    pid = (8).to_bytes(2, "little") + (2).to_bytes(2, "little") + (5).to_bytes(4, "big")
    assert parse_reply(header + bytes(4) + pid + attr) == 77
    assert parse_reply(b"") is None
    error = (36).to_bytes(4, "little") + (2).to_bytes(2, "little") + bytes(30)
    assert parse_reply(error) is None
