"""nftnet's column of the behaviour table checked again, as one call, against a world a test
rebuilt or disturbed (after a flush and restore, beside a foreign firewall)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from tests.e2e.behaviour import ROWS, Row, World, check


def behaviour_failures(world: World) -> list[str]:
    """Every row of nftnet's column, each family, a few probes at a time; the failures."""
    def one(case: tuple[Row, int]) -> str | None:
        row, v = case
        try:
            check(world, row, v, "nftnet")
        except AssertionError as e:
            return f"IPv{v} {e}"
        return None

    cases = [(row, v) for row in ROWS for v in row.families]
    with ThreadPoolExecutor(max_workers=6) as pool:
        return [failure for failure in pool.map(one, cases) if failure]
