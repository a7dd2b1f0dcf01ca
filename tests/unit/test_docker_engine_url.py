"""The Engine API client without a dockerd (a fake one on a Unix socket): which URL it uses,
how its inspect sent outside the SDK is answered, and how it fails."""

from __future__ import annotations

import http.server
import json
import socketserver
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from nftnet.drivers.docker.engine import (
    DEFAULT_URL,
    Engine,
    EngineError,
    _connection,
    engine_url,
)
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


class _Dockerd(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """A fake dockerd on a Unix socket: ``/version``, then one answer for every inspect."""

    daemon_threads = True

    def __init__(self, path: str, status: int, body: bytes | None) -> None:
        self.status, self.body, self.paths = status, body, []

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def address_string(self) -> str:
                return "unix"

            def do_GET(handler) -> None:  # handler: self is the server
                self.paths.append(handler.path)
                if handler.path.endswith("/version"):
                    status, body = 200, json.dumps({"ApiVersion": "1.41"}).encode()
                elif self.body is None:  # hang up without an answer
                    handler.close_connection = True
                    return
                else:
                    status, body = self.status, self.body
                handler.send_response(status)
                handler.send_header("Content-Length", str(len(body)))
                handler.end_headers()
                handler.wfile.write(body)

        super().__init__(path, Handler)


@pytest.fixture
def fake_dockerd(tmp_path: Path) -> Iterator[Callable[[int, bytes | None], tuple[str, _Dockerd]]]:
    servers: list[_Dockerd] = []

    def start(status: int, body: bytes | None) -> tuple[str, _Dockerd]:
        path = str(tmp_path / f"d{len(servers)}.sock")
        server = _Dockerd(path, status, body)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"unix://{path}", server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_an_inspect_sent_at_once_is_answered_later(fake_dockerd: Any) -> None:
    url, server = fake_dockerd(200, json.dumps({"Id": "c1", "State": {"Running": False}}).encode())
    with Engine(url) as engine:
        sent = engine.send_inspect("c1")
        assert sent is not None
        assert sent.answer() == {"Id": "c1", "State": {"Running": False}}
    assert server.paths[-1] == "/v1.41/containers/c1/json"


@pytest.mark.parametrize(("status", "body", "expect"), [
    (404, b'{"message": "No such container: c1"}', None),
    (500, b'{"message": "boom"}', "HTTP 500: 'boom'"),
    (200, b"not json", "HTTP 200: b'not json'"),
    (200, b"[]", "HTTP 200: b'\\[\\]'"),
    (200, None, "inspect container c1: "),  # hung up
])
def test_a_sent_inspect_that_fails_is_an_engine_error_naming_the_url(
        fake_dockerd: Any, status: int, body: bytes | None, expect: str | None) -> None:
    url, _ = fake_dockerd(status, body)
    with Engine(url) as engine:
        sent = engine.send_inspect("c1")
        assert sent is not None
        if expect is None:
            assert sent.answer() is None
        else:
            with pytest.raises(EngineError, match=f"Docker Engine at {url}: .*{expect}"):
                sent.answer()


@pytest.mark.parametrize(("url", "where"), [
    ("unix:///run/docker.sock", "/run/docker.sock"),
    ("http+unix:///run/docker.sock", "/run/docker.sock"),
    ("tcp://127.0.0.1:2375", ("127.0.0.1", 2375)),
    ("http://[::1]:2375/", ("::1", 2375)),
    ("tcp://127.0.0.1", None),  # no port: the SDK's defaults
    ("https://127.0.0.1:2376", None),
    ("ssh://user@host", None),
    ("/run/docker.sock", "/run/docker.sock"),  # a bare path: a Unix socket, as the SDK reads it
])
def test_which_urls_an_inspect_is_sent_on_without_the_sdk(url: str, where: Any) -> None:
    conn = _connection(url)
    if where is None:
        assert conn is None
    elif isinstance(where, str):
        assert conn is not None and conn._path == where  # type: ignore[attr-defined]
    else:
        assert conn is not None and (conn.host, conn.port) == where
