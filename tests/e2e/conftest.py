"""Fixtures for end-to-end tests: a fresh Lab of network namespaces per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.lab import Lab, unavailable_reason


@pytest.fixture
def lab() -> Iterator[Lab]:
    """A Lab torn down after the test whatever happened; skips where namespaces are impossible."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    with Lab() as built:
        yield built
