"""Fixtures for the drivers' tests: the runtimes' own machinery in throwaway namespaces (a
real dockerd: tests/docker_env.py; CNI chains: tests/cni_env.py)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cni_env import REFERENCE, REFERENCE_PLUGINS, CniHost
from tests.docker_env import DockerEnv, unavailable_reason

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


@pytest.fixture
def dockerd() -> Iterator[Callable[..., DockerEnv]]:
    """Start DockerEnv(**kw) on call (flags, daemon.json); every one is removed after the
    test, whatever happened. Skips where dockerd or the Docker SDK is not installed."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    started: list[DockerEnv] = []

    def start(**kw: Any) -> DockerEnv:
        env = DockerEnv(**kw)
        started.append(env.__enter__())
        return env

    try:
        yield start
    finally:
        errors = []
        for env in reversed(started):
            try:
                env.close()
            except Exception as e:
                errors.append(e)
        if errors:
            raise errors[0]
