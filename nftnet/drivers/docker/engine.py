"""The Docker driver's Engine API client: the official Docker SDK (extra ``nftnet[docker]``).

A thin layer: listing networks, inspecting running containers, following ``/events``. The API
version is negotiated (``version="auto"``): the SDK's default (1.45) is newer than dockerd
20.10's 1.41. Every failure to reach or read dockerd is an ``EngineError`` (exit 1) whose
message names the URL; a container that disappears while it is inspected is None, not an
error.

To miss nothing, follow the events first and then take the snapshot: ``/events`` subscribes
before its response headers come back (``events()`` returns then), so whatever changes during
the snapshot arrives as an event too (the decision table is idempotent).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

from nftnet.drivers.docker.events import FILTERS, Event
from nftnet.errors import NftnetError

if TYPE_CHECKING:
    import docker

DEFAULT_URL = "unix:///var/run/docker.sock"
TIMEOUT = 30.0  # seconds per request; the event stream has none


class EngineError(NftnetError):
    """dockerd cannot be reached or answered with an error."""


def engine_url(url: str | None = None) -> str:
    """The Engine API URL: given, else ``DOCKER_HOST``, else the system socket."""
    return url or os.environ.get("DOCKER_HOST") or DEFAULT_URL


class Engine:
    """One connection to dockerd; a context manager that closes it."""

    def __init__(self, url: str | None = None, timeout: float = TIMEOUT) -> None:
        self.url = engine_url(url)
        try:
            import docker
        except ImportError:
            raise EngineError("the Docker SDK is not installed: pip install 'nftnet[docker]'"
                              ) from None
        self._errors = _sdk_errors()
        try:
            self.api: docker.APIClient = docker.APIClient(base_url=self.url, version="auto",
                                                          timeout=timeout)
        except self._errors as e:
            raise self._error("connect", e) from None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self.api.close()

    def _error(self, what: str, e: Exception) -> EngineError:
        return EngineError(f"Docker Engine at {self.url}: {what}: {e}")

    def version(self) -> dict[str, Any]:
        """``/version``: Version, ApiVersion, ... (also proves dockerd answers)."""
        try:
            return dict(self.api.version())
        except self._errors as e:
            raise self._error("version", e) from None

    def networks(self) -> list[dict[str, Any]]:
        """Every network, as ``/networks`` lists them (inspect's fields but ``Containers``):
        one request; the translation keeps driver ``bridge`` and reports the others."""
        try:
            return list(self.api.networks())
        except self._errors as e:
            raise self._error("list networks", e) from None

    def network(self, network_id: str) -> dict[str, Any] | None:
        """One network's inspect; None when it is gone."""
        import docker.errors

        try:
            return dict(self.api.inspect_network(network_id))
        except docker.errors.NotFound:
            return None
        except self._errors as e:
            raise self._error(f"inspect network {network_id}", e) from None

    def container(self, container_id: str) -> dict[str, Any] | None:
        """One container's inspect; None when it is gone."""
        import docker.errors

        try:
            return dict(self.api.inspect_container(container_id))
        except docker.errors.NotFound:
            return None
        except self._errors as e:
            raise self._error(f"inspect container {container_id}", e) from None

    def running_containers(self) -> list[dict[str, Any]]:
        """The inspect of every running (or paused: its network stays) container. One list
        request, then one inspect each; those removed meanwhile are left out."""
        try:
            ids = [c["Id"] for c in self.api.containers()]
        except self._errors as e:
            raise self._error("list containers", e) from None
        return [c for c in map(self.container, ids) if c is not None]

    def events(self, since: int | None = None) -> EventStream:
        """Follow container and network events (from ``since``, Unix seconds, if given)."""
        try:
            stream = self.api.events(since=since, filters=FILTERS, decode=True)
        except self._errors as e:
            raise self._error("follow events", e) from None
        return EventStream(stream)


class EventStream:
    """The ``/events`` stream as ``Event``s. Iteration ends when dockerd closes the stream (a
    restart: reconnect and resync); ``close()``, from any thread, ends it too."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[Event]:
        for msg in self._stream:
            yield Event.from_json(msg)

    def close(self) -> None:
        with contextlib.suppress(OSError, AttributeError):  # closed by the other side
            self._stream.close()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _sdk_errors() -> tuple[type[Exception], ...]:
    """What the SDK raises when dockerd is unreachable or refuses a request."""
    import docker.errors
    import requests.exceptions

    return (docker.errors.DockerException, requests.exceptions.RequestException, OSError)
