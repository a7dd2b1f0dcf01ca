"""The Docker driver's Engine API client: the official Docker SDK (extra ``nftnet[docker]``).

A thin layer: listing networks, inspecting running containers, following ``/events``. The API
version is negotiated (``version="auto"``): the SDK's default (1.45) is newer than dockerd
20.10's 1.41. Every failure to reach or read dockerd is an ``EngineError`` (exit 1) whose
message names the URL; a container that disappears while it is inspected is None, not an
error.

To miss nothing, follow the events first and then take the snapshot: ``/events`` subscribes
before its response headers come back (``events()`` returns then), so whatever changes during
the snapshot arrives as an event too (the decision table is idempotent).

One request bypasses the SDK: the inspect of a container just created (``send_inspect``), sent
by the event thread the moment the ``create`` event is read and answered on another thread. It
races ``docker run``'s start request for the container's lock (the start holds it until the
container runs, and an inspect that comes second sees the ports only then). Measured here
against dockerd 20.10: sent through the SDK from another thread it came first in 13 of 20
runs (an SDK inspect costs 1.8 ms, a bare ``http.client`` one 0.5 ms); sent at once on its own
connection, in 20 of 20. Over URLs ``http.client`` cannot reach alone (ssh, TLS) the SDK
does it.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

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


def unix_path(url: str) -> str | None:
    """The socket's path where ``url`` names a Unix socket, as the SDK reads it
    (``unix://PATH``, ``http+unix://PATH`` or a bare path); None for any other URL."""
    parsed = urlparse(url)
    if parsed.scheme not in ("unix", "http+unix", ""):
        return None
    return parsed.path or url


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

    def send_inspect(self, container_id: str) -> SentInspect | None:
        """Send a container's inspect on a connection of its own, its answer read later by
        ``SentInspect.answer`` (from any thread). None where the URL needs the SDK."""
        conn = _connection(self.url)
        if conn is None:
            return None
        try:
            conn.request("GET", f"/v{self.api.api_version}/containers/{container_id}/json")
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise self._error(f"inspect container {container_id}", e) from None
        return SentInspect(self.url, container_id, conn)

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


class SentInspect:
    """An inspect sent by ``Engine.send_inspect``; ``answer`` waits for it (once)."""

    def __init__(self, url: str, container_id: str, conn: http.client.HTTPConnection) -> None:
        self.url, self.container_id, self._conn = url, container_id, conn

    def answer(self) -> dict[str, Any] | None:
        """The container's inspect; None when it is gone. ``EngineError`` when dockerd did
        not answer, or answered with an error or what is not an inspect."""
        what = f"Docker Engine at {self.url}: inspect container {self.container_id}"
        try:
            with contextlib.closing(self._conn):
                response = self._conn.getresponse()
                body = response.read()
        except (OSError, http.client.HTTPException) as e:
            raise EngineError(f"{what}: {e}") from None
        if response.status == 404:
            return None
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if response.status != 200 or not isinstance(data, dict):
            message = data.get("message") if isinstance(data, dict) else body[:200]
            raise EngineError(f"{what}: HTTP {response.status}: {message!r}")
        return data


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over a Unix socket (dockerd's usual endpoint)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def _connection(url: str, timeout: float = TIMEOUT) -> http.client.HTTPConnection | None:
    """A connection to dockerd that ``http.client`` makes alone, as the SDK reads the URL
    (a Unix socket, ``unix_path``; ``tcp://HOST:PORT`` and ``http://HOST:PORT`` as plain
    HTTP); None for any other (the SDK reads those)."""
    if (path := unix_path(url)) is not None:
        return _UnixConnection(path, timeout)
    scheme, _, rest = url.partition("://")
    if scheme in ("tcp", "http"):
        host, colon, port = rest.split("/", 1)[0].rpartition(":")
        if host and colon and port.isdigit():
            return http.client.HTTPConnection(host.strip("[]"), int(port), timeout=timeout)
    return None


def _sdk_errors() -> tuple[type[Exception], ...]:
    """What the SDK raises when dockerd is unreachable or refuses a request."""
    import docker.errors
    import requests.exceptions

    return (docker.errors.DockerException, requests.exceptions.RequestException, OSError)
