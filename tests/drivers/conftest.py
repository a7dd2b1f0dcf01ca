"""Fixtures for the drivers' tests: runtimes' own machinery in throwaway namespaces."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cni_env import REFERENCE, REFERENCE_PLUGINS, CniHost

CNI_CACHE = Path("/var/lib/cni")  # libcni's and host-local's default place: tests keep out


@pytest.fixture
def cni_host(tmp_path: Path) -> Iterator[CniHost]:
    """A host namespace for CNI chains (tests/cni_env.py), removed with all it holds."""
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    missing = [p for p in REFERENCE_PLUGINS if not (REFERENCE / p).exists()]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing in {REFERENCE}: install Debian's "
                    "containernetworking-plugins (contrib/setup.sh does)")
    cache_before = CNI_CACHE.exists()
    host = CniHost(tmp_path / "cni")
    try:
        yield host
    finally:
        host.close()
    assert CNI_CACHE.exists() == cache_before, f"a test left {CNI_CACHE} behind"
