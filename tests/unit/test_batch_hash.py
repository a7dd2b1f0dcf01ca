"""The two hashes of a batch, and when an apply may say "no changes": the published ports
are hashed apart from the rest, since runtime changes send only their elements."""

from __future__ import annotations

import copy
import json
from typing import Any

from nftnet.apply import Desired, desired, holds
from nftnet.compile import HostFacts
from nftnet.config.load import parse_config
from nftnet.state import State, empty_runtime

BASE: dict[str, Any] = {
    "version": 1,
    "networks": {"front": {"subnets": ["172.31.1.0/24", "fd00:1::/64"]}},
    "endpoints": {"e0": {"network": "front", "ipv4": "172.31.1.10", "ipv6": "fd00:1::10",
                         "publish": ["8080:80"]}},
}


def want(raw: dict[str, Any], host: HostFacts | None = None) -> Desired:
    return desired(parse_config(json.dumps(raw)), None, host or HostFacts())


def variant(**endpoint: Any) -> dict[str, Any]:
    out = copy.deepcopy(BASE)
    out["endpoints"]["e0"] |= endpoint
    return out


def test_ports_change_only_the_ports_hash() -> None:
    a, b = want(BASE), want(variant(publish=["8080:80", "9000:90"]))
    assert a.batch_hash == b.batch_hash
    assert a.ports_hash != b.ports_hash


def test_everything_else_changes_the_table_hash() -> None:
    a = want(BASE)
    other_net = copy.deepcopy(BASE)
    other_net["networks"]["back"] = {"subnet": "172.31.2.0/24"}
    for b in (want(other_net), want(BASE, HostFacts(guard_forward4=True)),
              want({**BASE, "user_rules": []})):
        assert b.batch_hash != a.batch_hash


def prev_of(raw: dict[str, Any], ports_hash: str) -> State:
    w = want(raw)
    return State(config=raw, runtime=empty_runtime(), batch_hash=w.batch_hash,
                 ports_hash=ports_hash)


def test_holds_after_a_full_change_by_the_hashes() -> None:
    w = want(BASE)
    assert holds(prev_of(BASE, w.ports_hash), w, BASE, empty_runtime())
    assert not holds(prev_of(BASE, "other"), w, BASE, empty_runtime())


def test_holds_after_runtime_changes_by_the_recorded_config() -> None:
    """Runtime changes leave the ports unhashed: then the effective config must be the one
    recorded, declared part and runtime part."""
    w = want(BASE)
    prev = prev_of(BASE, "")
    assert holds(prev, w, BASE, empty_runtime())
    assert not holds(prev, w, variant(publish=["8081:80"]), empty_runtime())
    published = empty_runtime() | {"publish": {"e0": ["9000:90"]}}
    assert not holds(prev, w, BASE, published)
    prev.runtime = copy.deepcopy(published)
    assert holds(prev, w, BASE, published)
    prev.batch_hash = "another compiler's"
    assert not holds(prev, w, BASE, published)
