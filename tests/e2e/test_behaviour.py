"""nftnet's column of the reference behaviour table, with real traffic, IPv4 and IPv6.

The rows (and Docker 20.10's column, checked by test_export_traffic.py) are in behaviour.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.behaviour import H4, L4, USER_RULES, Row, World, cases, check, nftnet_world

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with nftnet_world(tmp_path_factory, "behaviour") as (built, _):
        yield built


@pytest.mark.parametrize(("row", "v"), cases("nftnet"))
def test_row(world: World, row: Row, v: int) -> None:
    check(world, row, v, "nftnet")


def test_user_chain_rule_is_what_blocked(world: World) -> None:
    """Without the user rule the same port answers: the block above is the user chain's."""
    world.lab.run(world.lab.host, "nft", "flush", "chain", "inet", "nftnet", "user")
    try:
        assert world.probe("lan", H4, 9090) == L4
    finally:
        world.lab.run(world.lab.host, "nft", "add", "rule", "inet", "nftnet", "user",
                      *USER_RULES[0].split())
