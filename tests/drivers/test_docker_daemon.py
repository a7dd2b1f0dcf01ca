"""``nftnet daemon --docker`` with a real dockerd (``--iptables=false --ip6tables=false
--userland-proxy=false``) in a throwaway namespace: containers that Docker made are firewalled
with Docker's semantics, checked with real traffic from a LAN namespace and between
containers (source addresses seen); the daemon follows runs, network creates, stops and
removals, survives dockerd restarts and its own kill -9 with changes in between, and refuses a
dockerd that writes its own rules. `nftnet check` is in sync after every step."""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.docker_daemon import Daemon, Lan, address, get, in_container, wait_for
from tests.docker_env import DockerEnv
from tests.image import HTTPD
from tests.nftnet_run import published_ports

pytestmark = pytest.mark.e2e


@pytest.fixture
def daemon(dockerd: Callable[..., DockerEnv], tmp_path: Path) -> Iterator[Daemon]:
    """A dockerd and a daemon (not started) following it; the daemon is killed after."""
    env = dockerd()
    running = Daemon(env, tmp_path)
    try:
        yield running
    finally:
        running.kill()


@pytest.fixture
def lan(daemon: Daemon) -> Iterator[Lan]:
    with Lan(daemon.env) as built:
        yield built


def kernel_ports(env: DockerEnv) -> set[tuple[int, int]]:
    """(family, host port) of every port nftnet's maps publish."""
    return published_ports(env.ns_run("nft", "-j", "list", "table", "inet", "nftnet"))


def test_docker_drives_the_firewall_with_dockers_meaning(daemon: Daemon, lan: Lan) -> None:
    env = daemon.env
    lan.serve()
    daemon.start()
    daemon.check()
    status = json.loads(daemon.nftnet("status", "-o", "json").stdout)
    assert (status["daemon"]["running"], status["daemon"]["follows"]) == (True, "docker")
    assert {n["name"]: n["source"] for n in status["networks"]} == {"bridge": "docker"}
    assert {s["name"] for s in status["daemon"]["skipped"]} == {"host", "none"}
    second = daemon.nftnet("daemon", "--docker", env.url, check=False)
    assert second.returncode == 5 and "another nftnet daemon" in second.stderr

    env.docker("run", "-d", "--name", "web", "-p", "8080:80", "bb", *HTTPD)
    env.docker("run", "-d", "--name", "peer", "bb", *HTTPD)
    assert wait_for(lambda: lan.get(Lan.HOST4, 8080)) == Lan.IP4  # the LAN client's address
    web, peer = address(env, "web", "bridge"), address(env, "peer", "bridge")
    lan.run("ip", "route", "add", "172.16.0.0/12", "via", Lan.HOST4)
    assert lan.get(web) is None  # no direct routing into containers, published or not
    assert get(in_container(env, "peer"), web) == peer  # same network
    assert get(in_container(env, "web"), Lan.IP4) == Lan.HOST4  # out, masqueraded
    daemon.check()

    # networks created while it runs (their options' meaning, row by row of the behaviour
    # table, is test_docker_behaviour.py's)
    env.docker("network", "create", "--internal", "--subnet", "172.30.2.0/24", "back")
    env.docker("network", "create", "--ipv6", "--subnet", "172.30.3.0/24",
               "--subnet", "fd00:30:3::/64",
               "-o", "com.docker.network.bridge.enable_ip_masquerade=false", "six")
    env.docker("run", "-d", "--name", "b1", "--network", "back", "bb", *HTTPD)
    env.docker("run", "-d", "--name", "s1", "--network", "six", "-p", "8081:80", "bb", *HTTPD)
    assert wait_for(lambda: lan.get(Lan.HOST6, 8081)) == Lan.IP6
    assert lan.get(Lan.HOST4, 8081) == Lan.IP4
    assert get(in_container(env, "b1"), Lan.IP4) is None  # internal: nothing out
    assert get(in_container(env, "s1"), Lan.IP4) == address(env, "s1", "six")  # no masquerade
    assert daemon.held("networks") == {"bridge", "back", "six"}
    daemon.check()

    env.docker("stop", "-t", "1", "web")
    env.docker("rm", "web")
    wait_for(lambda: (4, 8080) not in kernel_ports(env))
    assert lan.get(Lan.HOST4, 8080) is None
    assert daemon.held() == {"peer.bridge", "b1.back", "s1.six"}
    daemon.check()
    env.docker("rm", "-f", "b1")
    env.docker("network", "rm", "back")
    wait_for(lambda: "back" not in daemon.held("networks"))
    daemon.check()

    teardown = daemon.nftnet("teardown", "--yes", check=False)
    assert teardown.returncode == 1 and "stop it first" in teardown.stderr
    assert daemon.stop() == 0  # SIGTERM: the firewall stays as it is
    assert kernel_ports(env) == {(4, 8081), (6, 8081)}
    assert lan.get(Lan.HOST6, 8081) == Lan.IP6
    assert "stopped by SIGTERM" in daemon.log()
    status = json.loads(daemon.nftnet("status", "-o", "json").stdout)
    assert status["daemon"]["running"] is False


def test_dockerd_restarts_and_a_killed_daemon_converge(daemon: Daemon, lan: Lan) -> None:
    env = daemon.env
    daemon.start()
    env.docker("run", "-d", "--name", "web", "--restart", "always", "-p", "8080:80", "bb",
               *HTTPD)
    env.docker("run", "-d", "--name", "old", "-p", "8082:80", "bb", *HTTPD)
    assert wait_for(lambda: lan.get(Lan.HOST4, 8082)) == Lan.IP4

    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_log("SIGHUP: full resync")
    daemon.wait_log("resync:", 2)
    env.stop_daemon()  # dockerd restarts: the stream ends, containers stop
    env.start()  # web comes back (restart always), old does not
    daemon.wait_log("resync:", 3)
    assert wait_for(lambda: lan.get(Lan.HOST4, 8080)) == Lan.IP4
    wait_for(lambda: (4, 8082) not in kernel_ports(env))
    assert daemon.held() == {"web.bridge"}
    daemon.check()

    daemon.kill()  # kill -9, then changes it does not see
    env.docker("rm", "-f", "web")
    env.docker("run", "-d", "--name", "new", "-p", "8083:80", "bb", *HTTPD)
    assert lan.get(Lan.HOST4, 8083, timeout=0.5) is None  # not firewalled in yet: no DNAT
    daemon.start()
    assert wait_for(lambda: lan.get(Lan.HOST4, 8083)) == Lan.IP4
    assert kernel_ports(env) == {(4, 8083)}  # no stale port left open
    assert daemon.held() == {"new.bridge"}
    daemon.check()
    daemon.nftnet("status")


def user_rules(env: DockerEnv) -> list[str] | None:
    """The user chain's rules as nft lists them; None when the chain is gone."""
    out = env.ns_run("nft", "-j", "list", "chain", "inet", "nftnet", "user", check=False)
    if not out:
        return None
    return [json.dumps(o["rule"]["expr"]) for o in json.loads(out)["nftables"] if "rule" in o]


def test_ports_are_programmed_before_docker_start_returns(daemon: Daemon, lan: Lan) -> None:
    """A container's connect comes 0.2-0.6 s before its start ends: its endpoint is prepared
    then (the network's inspect has its address; its inspect at create, surely before a
    separate ``docker start``, the fixed ports asked); the start adds a random port; a start
    that fails drops what its connect prepared."""
    env = daemon.env
    daemon.start()
    env.docker("create", "--name", "web", "-p", "8080:80", "bb", *HTTPD)
    env.docker("start", "web")
    assert (4, 8080) in kernel_ports(env)  # already when `docker start` returns
    assert wait_for(lambda: lan.get(Lan.HOST4, 8080)) == Lan.IP4
    assert daemon.log().index("register web.bridge") < daemon.log().index(
        "container start")  # prepared, and the start then changed nothing

    env.docker("run", "-d", "--name", "rnd", "-p", "80", "bb", *HTTPD)
    port = int((env.docker("port", "rnd", "80/tcp") or "").splitlines()[0].rsplit(":")[-1])
    assert wait_for(lambda: lan.get(Lan.HOST4, port)) == Lan.IP4

    assert env.docker("run", "-d", "--name", "bad", "-p", "8081:80", "bb", "/nonexistent",
                      check=False) is None  # the start fails: connect, then disconnect
    daemon.wait_log("unregister bad.bridge")
    assert (4, 8081) not in kernel_ports(env) and daemon.held() == {"web.bridge", "rnd.bridge"}
    daemon.check()


def test_the_firewall_heals_itself(daemon: Daemon, lan: Lan) -> None:
    env = daemon.env
    daemon.start()
    env.docker("run", "-d", "--name", "web", "-p", "8080:80", "-p", "8081:80", "bb", *HTTPD)
    assert wait_for(lambda: lan.get(Lan.HOST4, 8080)) == Lan.IP4
    env.ns_run("nft", "add", "rule", "inet", "nftnet", "user", "meta", "l4proto", "tcp", "ct",
               "original", "proto-dst", "8080", "drop")  # by hand, as people add to DOCKER-USER
    daemon.wait_log("recorded the user chain's 1 rule(s)")
    hand = user_rules(env)
    assert lan.get(Lan.HOST4, 8080) is None and lan.get(Lan.HOST4, 8081) == Lan.IP4
    daemon.check()

    start = time.monotonic()
    env.ns_run("nft", "flush", "ruleset")
    wait_for(lambda: user_rules(env) == hand, timeout=5, step=0.01)
    healed = time.monotonic() - start
    assert healed < 1.0, f"healed after {healed:.2f} s"
    daemon.wait_log("healed after")
    assert re.search(r"healed after a change by nft \(pid \d+\)", daemon.log())
    assert lan.get(Lan.HOST4, 8081) == Lan.IP4 and lan.get(Lan.HOST4, 8080) is None
    daemon.check()

    env.ns_run("nft", "flush", "map", "inet", "nftnet", "pubany4-port")  # one of nftnet's
    assert wait_for(lambda: lan.get(Lan.HOST4, 8081)) == Lan.IP4
    assert kernel_ports(env) == {(4, 8080), (4, 8081)}
    daemon.check()

    env.ns_run("nft", "flush", "chain", "inet", "nftnet", "user")  # taken back by hand
    daemon.wait_log("recorded the user chain's 0 rule(s)")
    assert wait_for(lambda: lan.get(Lan.HOST4, 8080)) == Lan.IP4
    env.ns_run("nft", "flush", "ruleset")
    wait_for(lambda: user_rules(env) == [])  # the chain as it last was: empty
    assert lan.get(Lan.HOST4, 8080) == Lan.IP4
    daemon.check()
    status = json.loads(daemon.nftnet("status", "-o", "json").stdout)
    assert status["daemon"]["heals"] == 3 and status["in_sync"] is True
    time.sleep(0.5)
    assert daemon.log().count("healed after") == 3  # never a heal of its own heal


def test_a_dockerd_that_writes_its_own_rules_is_refused(dockerd: Callable[..., DockerEnv],
                                                        tmp_path: Path) -> None:
    env = dockerd(flags=("--userland-proxy=false",))  # iptables on: its chains appear
    refused = Daemon(env, tmp_path)
    refused.start(wait=False)
    assert refused.proc is not None
    assert refused.proc.wait(30) == 4
    log = refused.log()
    assert "dockerd writes its own firewall rules" in log and "fix:" in log
    assert "nftnet" not in env.ns_run("nft", "list", "tables")  # nothing changed


def test_network_connect_and_disconnect_of_a_running_container(daemon: Daemon, lan: Lan
                                                               ) -> None:
    """``docker network connect``: the container reaches the new network's peers and they it;
    ``disconnect``: no longer; its published port stays while a network publishes it (Docker
    moves it to the gateway endpoint) and goes with the last one that can (internal)."""
    env = daemon.env
    daemon.start()
    env.docker("network", "create", "--ipv6", "--subnet", "172.30.5.0/24", "--subnet",
               "fd00:30:5::/64", "front")
    env.docker("network", "create", "--subnet", "172.30.6.0/24", "back")
    env.docker("network", "create", "--internal", "--subnet", "172.30.7.0/24", "vault")
    env.docker("run", "-d", "--name", "web", "--network", "front", "-p", "8080:80", "bb", *HTTPD)
    for name, network in (("peer", "back"), ("vpeer", "vault")):
        env.docker("run", "-d", "--name", name, "--network", network, "bb", *HTTPD)
    web, peer = in_container(env, "web"), in_container(env, "peer")
    peer_addr, vpeer_addr = address(env, "peer", "back"), address(env, "vpeer", "vault")
    assert wait_for(lambda: lan.get(Lan.HOST6, 8080)) == Lan.IP6
    assert get(web, peer_addr) is None  # not on back yet
    daemon.check()

    env.docker("network", "connect", "back", "web")
    web_back = address(env, "web", "back")
    assert wait_for(lambda: get(web, peer_addr)) == web_back
    assert get(peer, web_back) == peer_addr
    assert lan.get(Lan.HOST4, 8080) == Lan.IP4 and lan.get(Lan.HOST6, 8080) == Lan.IP6
    wait_for(lambda: daemon.held() == {"web.front", "web.back", "peer.back", "vpeer.vault"})
    daemon.check()

    env.docker("network", "disconnect", "back", "web")
    wait_for(lambda: "web.back" not in daemon.held())
    assert get(web, peer_addr) is None and get(peer, web_back) is None
    assert lan.get(Lan.HOST4, 8080) == Lan.IP4
    daemon.check()

    env.docker("network", "connect", "vault", "web")
    assert wait_for(lambda: get(web, vpeer_addr)) == address(env, "web", "vault")
    env.docker("network", "disconnect", "front", "web")  # left on an internal network only
    wait_for(lambda: not {(4, 8080), (6, 8080)} & kernel_ports(env))
    assert lan.get(Lan.HOST4, 8080) is None and lan.get(Lan.HOST6, 8080) is None
    assert get(web, vpeer_addr) == address(env, "web", "vault")
    lan.serve()
    assert get(web, Lan.IP4) is None  # internal: nothing out
    assert daemon.held() == {"web.vault", "peer.back", "vpeer.vault"}
    daemon.check()
