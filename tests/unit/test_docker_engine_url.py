"""The Engine API client without a dockerd: which URL it uses, and how it fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from nftnet.drivers.docker.engine import DEFAULT_URL, Engine, EngineError, engine_url
from nftnet.errors import EXIT_RUNTIME


def test_url_given_then_docker_host_then_the_system_socket(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    assert engine_url() == DEFAULT_URL == "unix:///var/run/docker.sock"
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/other.sock")
    assert engine_url() == "unix:///run/other.sock"
    assert engine_url("tcp://127.0.0.1:2375") == "tcp://127.0.0.1:2375"


def test_an_unreachable_dockerd_is_an_engine_error_naming_the_url(tmp_path: Path) -> None:
    url = f"unix://{tmp_path}/none.sock"
    with pytest.raises(EngineError, match=f"Docker Engine at {url}: ") as e:
        Engine(url).networks()
    assert e.value.exit_code == EXIT_RUNTIME
