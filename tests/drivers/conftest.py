"""Fixtures for driver tests: a real dockerd in a throwaway namespace (tests/docker_env.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.docker_env import DockerEnv, unavailable_reason


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
