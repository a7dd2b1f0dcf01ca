"""The behaviour table (tests/e2e/behaviour.py, nftnet's column) row by row, IPv4 and IPv6,
through containers that a real dockerd made (``--iptables=false --ip6tables=false
--userland-proxy=false``) and ``nftnet daemon --docker`` firewalled: the table's five networks
as Docker networks (its bridge names, subnets, icc=false, no masquerade, internal, all with
IPv6), its containers run with its addresses and ``-p`` bindings (tcp, udp, a range, one on
127.0.0.1, one on the host's IPv6 address), the user chain's rule added with ``nftnet user
add``, and a container on Docker's default bridge. The dockerd runs in the Lab's host
namespace: the Lab's LAN, servers and probes (source addresses checked) are the table's.
Docker's own column and its skips (rows its rules leave to the userland proxy or to
route_localnet) do not apply: nftnet does those rows itself."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests import docker_env, lab
from tests.docker_daemon import Daemon, wait_for
from tests.docker_env import DockerEnv
from tests.e2e.behaviour import (
    BLOCKED,
    CONTAINERS,
    H4,
    HOST,
    L4,
    LAN,
    NETWORKS,
    USER_RULES,
    Row,
    World,
    addr,
    cases,
    check,
    populate,
)
from tests.lab import Lab

pytestmark = pytest.mark.e2e

SLEEP = ("sleep", "1000000")  # the probe servers run beside it, in its network namespace
DEFAULT = "dflt"  # a container on Docker's default bridge (IPv4 only: 172.17.0.0/16)
DOCKER_ROWS = [
    Row("default bridge: published port from LAN", "lan", "host", 8088, LAN, LAN,
        families=(4,)),
    Row("default bridge: container to LAN, masqueraded", DEFAULT, "lan", 7000, HOST, HOST,
        families=(4,)),
    Row("default bridge to a user network's container", DEFAULT, "web", 80, BLOCKED, BLOCKED,
        families=(4,)),
]


def network_args(name: str) -> list[str]:
    """``docker network create`` for one of the table's networks."""
    spec = NETWORKS[name]
    args = ["network", "create", "--ipv6", "-o",
            f"com.docker.network.bridge.name={spec['bridge']}"]
    for subnet in spec["subnets"]:
        args += ["--subnet", subnet]
    for key, option in (("icc", "enable_icc"), ("masquerade", "enable_ip_masquerade")):
        if spec.get(key) is False:
            args += ["-o", f"com.docker.network.bridge.{option}=false"]
    return [*args, *(["--internal"] if spec.get("internal") else []), name]


def run(env: DockerEnv, lab_: Lab, name: str, *args: str) -> str:
    """``docker run -d`` a sleeping container; its network namespace, named in the Lab."""
    env.docker("run", "-d", "--name", name, *args, "bb", *SLEEP)
    pid = (env.docker("inspect", "-f", "{{.State.Pid}}", name) or "").strip()
    return lab_.attach(name, int(pid))


def docker_container(env: DockerEnv) -> Callable[[Lab, str], str]:
    """``populate``'s container maker: the table's container run by ``env``."""
    def make(lab_: Lab, name: str) -> str:
        net, _, published, _ = CONTAINERS[name]
        ports = [arg for p in published for arg in ("-p", p)]
        return run(env, lab_, name, "--network", net, "--ip", addr(name, 4), "--ip6",
                   addr(name, 6), *ports)
    return make


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[World, Daemon]]:
    reason = docker_env.unavailable_reason() or lab.unavailable_reason()
    if reason:
        pytest.skip(reason)
    with Lab() as built, DockerEnv(ns=built.host) as env:
        daemon = Daemon(env, tmp_path_factory.mktemp("docker-behaviour"))
        try:
            daemon.start()
            for name in NETWORKS:
                env.docker(*network_args(name))
            w = populate(built, docker_container(env))
            w.ns[DEFAULT] = run(env, built, DEFAULT, "-p", "8088:80")
            built.serve(w.ns[DEFAULT], 80)
            daemon.nftnet("user", "add", *USER_RULES[0].split())
            want = {f"{name}.{c[0]}" for name, c in CONTAINERS.items()} | {f"{DEFAULT}.bridge"}
            wait_for(lambda: daemon.held() == want)
            yield w, daemon
        finally:
            daemon.kill()


@pytest.mark.parametrize(("row", "v"), cases("nftnet") + cases("nftnet", DOCKER_ROWS))
def test_row(world: tuple[World, Daemon], row: Row, v: int) -> None:
    check(world[0], row, v, "nftnet")


def test_the_user_rule_is_what_blocked_and_all_is_in_sync(world: tuple[World, Daemon]
                                                          ) -> None:
    """Without the user chain's rule the port answers: the row's block was the rule's."""
    w, daemon = world
    daemon.check()
    daemon.nftnet("user", "rm", "1")
    try:
        assert w.probe("lan", H4, 9090) == L4
    finally:
        daemon.nftnet("user", "add", *USER_RULES[0].split())
    assert w.probe("lan", H4, 9090) is None
    daemon.check()
