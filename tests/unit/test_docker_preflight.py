"""Preflight decisions on what was read: Docker's chains in a listing, dockerd's command line
and config file, docker-proxy processes (a fake /proc). The real dockerd cases are in
tests/drivers/test_docker_preflight.py."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from nftnet.drivers.docker import engine
from nftnet.drivers.docker.preflight import (
    DAEMON_JSON,
    REMOVE_CHAINS,
    check,
    config_file,
    go_flag,
    proxy_problem,
    proxy_processes,
    rules_problem,
    userland_proxy,
)


def chain(family: str, table: str, name: str) -> dict[str, object]:
    return {"chain": {"family": family, "table": table, "name": name, "handle": 1}}


def test_dockers_chains_are_a_problem_with_the_fix() -> None:
    listing = [{"table": {"family": "ip", "name": "filter"}}, chain("ip", "filter", "FORWARD"),
               chain("ip", "filter", "DOCKER-USER"), chain("ip", "nat", "DOCKER"),
               chain("ip6", "filter", "DOCKER-ISOLATION-STAGE-1"),
               chain("inet", "nftnet", "user"), chain("inet", "mine", "DOCKER")]
    problem = rules_problem(listing)
    assert problem is not None
    assert "chain ip filter DOCKER-USER, chain ip nat DOCKER, chain ip6 filter " \
        "DOCKER-ISOLATION-STAGE-1 present" in problem.reason
    assert DAEMON_JSON in problem.fix and REMOVE_CHAINS in problem.fix
    assert rules_problem([chain("ip", "filter", "FORWARD"), chain("inet", "mine", "DOCKER")]) \
        is None


def test_dockers_nftables_backend_table() -> None:
    problem = rules_problem([chain("ip", "docker-bridges", "filter-FORWARD"),
                             chain("ip6", "docker-bridges", "filter-FORWARD")])
    assert problem is not None and "table ip docker-bridges, table ip6 docker-bridges" in \
        problem.reason
    assert "nft delete table ip docker-bridges; nft delete table ip6 docker-bridges" in \
        problem.fix and REMOVE_CHAINS not in problem.fix


@pytest.mark.parametrize(("argv", "value"), [
    ([], None), (["--userland-proxy"], True), (["--userland-proxy=false"], False),
    (["--userland-proxy=0", "--userland-proxy=T"], True), (["--userland-proxy-path=/x"], None),
    (["--userland-proxy=maybe"], None),
])
def test_go_flags(argv: list[str], value: bool | None) -> None:
    assert go_flag(["dockerd", *argv], "userland-proxy") is value


def test_userland_proxy_setting() -> None:
    assert userland_proxy(["dockerd"], {}) is True  # Docker's default
    assert userland_proxy(["dockerd"], {"userland-proxy": False}) is False
    assert userland_proxy(["dockerd", "--userland-proxy=false"], {}) is False
    assert userland_proxy(["dockerd", "--userland-proxy=true"], {"userland-proxy": False})
    assert config_file(["dockerd"]) == "/etc/docker/daemon.json"
    assert config_file(["dockerd", "--config-file", "/a.json"]) == "/a.json"
    assert config_file(["dockerd", "--config-file=b.json"]) == "b.json"


def test_proxy_problem() -> None:
    assert proxy_problem(False, []) is None and proxy_problem(None, []) is None
    on = proxy_problem(True, [])
    assert on is not None and "userland-proxy is on" in on.reason and DAEMON_JSON in on.fix
    seen = proxy_problem(None, [12, 13])
    assert seen is not None and "docker-proxy runs (pid 12, 13)" in seen.reason


def fake_process(proc: Path, pid: int, comm: str, ppid: int, argv: list[str] | None = None
                 ) -> Path:
    d = proc / str(pid)
    d.mkdir(parents=True)
    (d / "stat").write_text(f"{pid} ({comm}) S {ppid} {pid} {pid} 0 -1\n")
    (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv or [comm]) + b"\0")
    return d


def test_proxy_processes_in_a_fake_proc(tmp_path: Path) -> None:
    fake_process(tmp_path, 10, "dockerd", 1)
    fake_process(tmp_path, 11, "docker-proxy", 10)
    fake_process(tmp_path, 12, "docker-proxy", 99)
    fake_process(tmp_path, 13, "odd) name (x", 10)
    (tmp_path / "self").mkdir()
    assert proxy_processes(tmp_path) == [11, 12]
    assert proxy_processes(tmp_path, parent=10) == [11]


def serve(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(16)  # never accepted: each check connects once
    return sock


@pytest.mark.skipif(os.geteuid() != 0, reason="the peer must be root")
def test_check_reads_the_config_of_the_process_serving_the_socket(tmp_path: Path) -> None:
    """The socket's peer is this test (root): its command line, and a config file found
    through /proc/PID/root, decide; a fake /proc stands in for it."""
    with serve(tmp_path / "docker.sock"):
        url = f"unix://{tmp_path / 'docker.sock'}"
        proc = tmp_path / "proc"
        me = fake_process(proc, os.getpid(), "dockerd", 1,
                          ["dockerd", "--config-file", "/etc/d.json"])
        (me / "root/etc").mkdir(parents=True)
        (me / "root/etc/d.json").write_text(DAEMON_JSON)
        assert check(url, [], proc).ok
        (me / "root/etc/d.json").write_text('{"iptables": false}')
        report = check(url, [], proc)
        assert [p.reason.split(":")[0] for p in report.problems] == [
            "dockerd runs the userland proxy"]
        (me / "root/etc/d.json").write_text("[1]")
        report = check(url, [], proc)
        assert report.ok and "is not a JSON object" in report.notes[0]


def test_check_of_unreachable_and_remote_engines(tmp_path: Path) -> None:
    report = check(f"unix://{tmp_path}/none.sock", [], tmp_path)
    assert [p.reason for p in report.problems] == [
        f"cannot reach the Engine API at unix://{tmp_path}/none.sock: No such file or "
        "directory"]
    report = check("tcp://192.0.2.1:2375", [chain("ip", "nat", "DOCKER")], tmp_path)
    assert len(report.problems) == 1 and "not a local unix socket" in report.notes[0]


def test_docker_host_is_the_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/env.sock")
    assert f"unix://{tmp_path}/env.sock" in check(None, [], tmp_path).problems[0].reason
    assert engine.DEFAULT_URL == "unix:///var/run/docker.sock"
