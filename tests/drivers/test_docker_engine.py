"""The translation of real Docker data is true of what Docker made: networks and containers
read with the engine module from a real dockerd, translated, and checked against the kernel
(bridges and their addresses in dockerd's namespace, each container's addresses and default
route inside it, the host ports dockerd holds, the source address a container sees). Then the
event sequences of run, connect, disconnect, stop and rm, followed live through the decision
table the way the daemon will, with the endpoints it would hold at each step."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from ipaddress import ip_address, ip_interface
from typing import Any

import pytest

from nftnet.drivers.docker.engine import Engine
from nftnet.drivers.docker.events import Action, Event, Follower, resynced
from nftnet.drivers.docker.translate import (
    DockerEndpoint,
    DockerNetwork,
    Snapshot,
    snapshot,
    translate_container,
    translate_networks,
)
from tests.docker_env import DockerEnv
from tests.image import HTTPD

pytestmark = pytest.mark.e2e

NETWORKS = [  # (docker network create arguments, name)
    (["--subnet", "172.30.1.0/24", "--ip-range", "172.30.1.128/25",
      "-o", "com.docker.network.bridge.enable_icc=false",
      "-o", "com.docker.network.bridge.host_binding_ipv4=127.0.0.1",
      "-o", "com.docker.network.driver.mtu=1400"], "front"),
    (["--ipv6", "--subnet", "172.30.2.0/24", "--subnet", "fd00:30:2::/64",
      "-o", "com.docker.network.bridge.name=nt-six",
      "-o", "com.docker.network.bridge.enable_ip_masquerade=false"], "six"),
    (["--internal", "--subnet", "172.30.3.0/24", "--gateway", "172.30.3.254"], "back"),
]


def global_addresses(ip_json: str) -> dict[str, set[Any]]:
    """Interface name -> its global addresses (ip_interface) in ``ip -j addr`` output."""
    return {link["ifname"]: {ip_interface(f"{a['local']}/{a['prefixlen']}")
                             for a in link.get("addr_info", []) if a.get("scope") == "global"}
            for link in json.loads(ip_json)}


def listening(env: DockerEnv) -> set[tuple[str, Any, int]]:
    """(proto, address or None for any, port) of the sockets dockerd holds for published ports
    (without the userland proxy it binds them itself)."""
    out = set()
    for proto, flag in (("tcp", "-t"), ("udp", "-u")):
        for line in env.ns_run("ss", "-Hln", flag, "-p").splitlines():
            if "dockerd" not in line:
                continue
            local = line.split()[3]
            host, _, port = local.rpartition(":")
            addr = ip_address(host.strip("[]").replace("*", "0.0.0.0"))
            out.add((proto, None if addr.is_unspecified else addr, addr.version, int(port)))
    return out


def read(env: DockerEnv) -> Snapshot:
    with Engine(env.url) as engine:
        return snapshot(engine.networks(), engine.running_containers())


def test_translation_of_real_docker_data_is_true_of_the_kernel(
        dockerd: Callable[..., DockerEnv]) -> None:
    env = dockerd()
    for args, name in NETWORKS:
        env.docker("network", "create", *args, name)
    env.docker("run", "-d", "--name", "web", "--network", "front", "-p", "8080:80",
               "-p", "0.0.0.0:8081:81", "-p", "5353:53/udp", "-p", "9000-9001:9000-9001",
               "-p", "80", "bb", *HTTPD)
    env.docker("network", "connect", "six", "web")  # dual-stack: the ports move there
    env.docker("run", "-d", "--name", "db", "--network", "back", "bb", *HTTPD)
    env.docker("run", "-d", "--name", "plain", "-p", "8082:80", "bb", *HTTPD)
    snap = read(env)

    nets = {n.docker_name: n for n in snap.networks}
    assert set(nets) == {"bridge", "front", "six", "back"}
    assert {(s.name, s.kind) for s in snap.skipped} == {("host", "network"), ("none", "network")}
    addrs = global_addresses(env.ns_run("ip", "-j", "addr"))
    links = {link["ifname"]: link for link in json.loads(env.ns_run("ip", "-j", "link"))}
    for n in nets.values():
        expected = {ip_interface(f"{g}/{s.prefixlen}") for g, s in
                    ((n.gateway4, n.subnet4), (n.gateway6, n.subnet6)) if s is not None}
        assert addrs[n.bridge] == expected, n.docker_name
    assert [nets[k].bridge for k in ("bridge", "six")] == ["docker0", "nt-six"]
    assert str(nets["front"].gateway4) == "172.30.1.128"  # first of the IP range
    assert links[nets["front"].bridge]["mtu"] == nets["front"].mtu == 1400
    assert (nets["front"].icc, nets["six"].masquerade, nets["back"].internal) == \
        (False, False, True)

    for ctr in snap.containers:
        inside = global_addresses(env.in_container(ctr.name, "ip", "-j", "addr"))
        seen = {a.ip for iface in inside.values() for a in iface}
        assert seen == {a for ep in ctr.endpoints for a in (ep.ipv4, ep.ipv6) if a}, ctr.name
        assert ctr.pending == () and ctr.running
    eps = {ep.name: ep for ep in snap.endpoints}
    assert set(eps) == {"web.front", "web.six", "db.back", "plain.bridge"}

    # the ports are on the endpoint whose gateway is the container's default route
    for ctr in snap.containers:
        route = json.loads(env.in_container(ctr.name, "ip", "-j", "route", "show", "default"))
        carrier = [ep for ep in ctr.endpoints if ep.ports]
        if route and carrier:
            assert ip_address(route[0]["gateway"]) == nets[carrier[0].network.split(".")[0]
                                                          ].gateway4
    assert [ep.name for ep in snap.endpoints if ep.ports] == sorted(
        ["web.six", "plain.bridge"], key=lambda n: eps[n].container_id)

    # every socket dockerd holds is a port nftnet forwards, and the reverse
    ports = {(p.proto, p.host_ip, p.family, p.host_port) for ep in snap.endpoints
             for p in ep.ports}
    assert ports == listening(env)
    assert ("tcp", None, 6, 8080) in ports  # web has IPv6 on six: [::]:8080 too

    # the gateway is the address containers see the namespace's own traffic come from
    for ep in (eps["web.six"], eps["plain.bridge"]):
        assert env.peer_seen(str(ep.ipv4)) == str(nets[ep.network].gateway4)
    assert env.peer_seen(str(eps["web.six"].ipv6)) == str(nets["six"].gateway6)


class Daemon:
    """The daemon loop in miniature: follow events, decide, inspect, keep what it holds."""

    def __init__(self, env: DockerEnv) -> None:
        self.engine = Engine(env.url)
        self.stream = self.engine.events()
        self.networks: dict[str, DockerNetwork] = {}
        self.held: dict[str, dict[str, DockerEndpoint]] = {}
        self.log: list[tuple[Event, Action]] = []
        self.lock = threading.Lock()
        self.resync_networks()
        self.thread = threading.Thread(target=self.follow, daemon=True)
        self.follower = Follower()
        self.thread.start()

    def resync_networks(self) -> None:
        self.networks = translate_networks(self.engine.networks())[0]

    def follow(self) -> None:
        for event in self.stream:
            decision = self.follower.decide(event)
            with self.lock:
                self.apply(decision.action, decision.container, decision.network)
                self.log.append((event, decision.action))

    def apply(self, action: Action, cid: str | None, nid: str | None) -> None:
        if action is Action.RESYNC_NETWORKS:
            self.resync_networks()
        elif action is Action.RESYNC_CONTAINER and cid:
            inspect = self.engine.container(cid)
            fresh = translate_container(inspect, self.networks)[0] if inspect else None
            self.held[cid] = resynced(self.held.get(cid, {}), fresh) if fresh else {}
        elif action is Action.DROP_CONTAINER and cid:
            self.held.pop(cid, None)
        elif action is Action.DROP_ENDPOINT and cid and nid:
            self.held.get(cid, {}).pop(nid, None)

    def holds(self) -> dict[str, tuple[str, ...]]:
        """Endpoint name -> its ports' -p entries, for every container held."""
        with self.lock:
            return {ep.name: tuple(p.publish for p in ep.ports)
                    for eps in self.held.values() for ep in eps.values()}

    def wait(self, predicate: Callable[[dict[str, tuple[str, ...]]], bool],
             timeout: float = 15) -> dict[str, tuple[str, ...]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(held := self.holds()):
                return held
            time.sleep(0.02)
        raise AssertionError(f"the daemon holds {self.holds()}; events: {self.actions()}")

    def actions(self) -> list[tuple[str, str, str]]:
        with self.lock:
            return [(e.type, e.action, a.value) for e, a in self.log]

    def close(self) -> None:
        self.stream.close()
        self.thread.join(10)
        self.engine.close()


def test_event_sequences_through_the_decision_table(dockerd: Callable[..., DockerEnv]) -> None:
    env = dockerd()
    env.docker("network", "create", "--subnet", "172.30.1.0/24", "front")
    daemon = Daemon(env)
    try:
        env.docker("network", "create", "--ipv6", "--subnet", "172.30.2.0/24", "--subnet",
                   "fd00:30:2::/64", "six")
        env.docker("run", "-d", "--name", "web", "--network", "front", "-p", "8080:80",
                   "bb", *HTTPD)
        held = daemon.wait(lambda h: "web.front" in h)
        assert held == {"web.front": ("0.0.0.0:8080:80/tcp",)}
        env.docker("network", "connect", "six", "web")
        held = daemon.wait(lambda h: "web.six" in h)
        assert held == {"web.front": (), "web.six": ("0.0.0.0:8080:80/tcp", "[::]:8080:80/tcp")}
        env.docker("network", "disconnect", "six", "web")
        held = daemon.wait(lambda h: "web.six" not in h)
        assert held == {"web.front": ("0.0.0.0:8080:80/tcp",)}
        env.docker("stop", "-t", "1", "web")
        daemon.wait(lambda h: not h)
        env.docker("start", "web")
        daemon.wait(lambda h: "web.front" in h)
        env.docker("rm", "-f", "web")
        daemon.wait(lambda h: not h)
        env.docker("network", "rm", "six")
        time.sleep(0.5)  # let the last events arrive
    finally:
        daemon.close()
    actions = daemon.actions()
    run = actions[:actions.index(("container", "start", "resync container")) + 1]
    assert [a for a in run if a[0] == "network" or a[1] in ("create", "start")] == [
        ("network", "create", "resync networks"), ("container", "create", "ignore"),
        ("network", "connect", "prepare endpoint"), ("container", "start", "resync container")]
    rest = actions[len(run):]
    disconnects = [a for a in rest if a[1] == "disconnect"]
    assert disconnects[:2] == [("network", "disconnect", "resync container")] * 2  # twice
    die = rest.index(("container", "die", "drop container"))
    assert rest[die + 1] == ("network", "disconnect", "drop endpoint")  # after die: nothing
    assert actions[-2:] == [("container", "destroy", "drop container"),
                            ("network", "destroy", "resync networks")]
    assert "six" not in {n.docker_name for n in daemon.networks.values()}


def test_the_inspect_sent_at_create_is_the_sdks_inspect(dockerd: Callable[..., DockerEnv]
                                                        ) -> None:
    """What the daemon reads at a ``create`` event outside the SDK is the same inspect."""
    env = dockerd()
    cid = env.docker("create", "-p", "127.0.0.1:8080:80/udp", "bb", *HTTPD).strip()
    with Engine(env.url) as engine:
        sent = engine.send_inspect(cid)
        assert sent is not None
        inspect = sent.answer()
        assert inspect == engine.container(cid)
        assert inspect is not None and inspect["HostConfig"]["PortBindings"] == {
            "80/udp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]}
        env.docker("rm", cid)
        gone = engine.send_inspect(cid)
        assert gone is not None and gone.answer() is None
