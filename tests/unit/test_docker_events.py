"""The event decision table on Docker's event sequences as dockerd 20.10 emits them
(shared/reference/runtimes.md and tests/drivers/test_docker_engine.py, which records them from
a real dockerd and runs the same checks), and the resync merge."""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from nftnet.drivers.docker.events import Action, Decision, Event, Follower, resynced
from nftnet.drivers.docker.translate import DockerContainer, DockerEndpoint, DockerPort

C, N1, N2 = "c" * 64, "1" * 64, "2" * 64
A = Action


def ev(kind: str, action: str, actor: str = C, **attrs: str) -> Event:
    return Event.from_json({"Type": kind, "Action": action,
                            "Actor": {"ID": actor, "Attributes": attrs}, "timeNano": 1})


def net(action: str, network: str = N1, container: str = C, kind: str = "bridge") -> Event:
    return ev("network", action, network, container=container, name="front", type=kind)


def ctr(action: str, cid: str = C) -> Event:
    return ev("container", action, cid, image="bb", name="web")


def decide_all(events: list[Event], follower: Follower | None = None) -> list[Any]:
    f = follower or Follower()
    return [(d.action, d.container, d.network) for d in map(f.decide, events)]


def test_from_json_strips_the_detail_and_keeps_the_actor() -> None:
    e = Event.from_json({"Type": "container", "Action": "exec_start: sh -c true",
                         "Actor": {"ID": C, "Attributes": {"name": "web"}},
                         "timeNano": 1700000000123456789})
    assert (e.type, e.action, e.actor, e.attributes["name"], e.time_nano) == \
        ("container", "exec_start", C, "web", 1700000000123456789)
    assert Event.from_json({}).action == ""


def test_docker_run_then_stop_then_rm() -> None:
    """run -d on two networks: connects come before start (each prepares its endpoint from
    the network's inspect); stop: die before the disconnects, which then concern nothing
    running."""
    seq = [ctr("create"), net("connect", N1), net("connect", N2), ctr("start"),
           ctr("kill"), ctr("kill"), ctr("die"), net("disconnect", N1), net("disconnect", N2),
           ctr("stop"), ctr("destroy")]
    assert decide_all(seq) == [
        (A.IGNORE, None, None), (A.PREPARE_ENDPOINT, C, N1), (A.PREPARE_ENDPOINT, C, N2),
        (A.RESYNC_CONTAINER, C, None), (A.IGNORE, None, None), (A.IGNORE, None, None),
        (A.DROP_CONTAINER, C, None), (A.DROP_ENDPOINT, C, N1), (A.DROP_ENDPOINT, C, N2),
        (A.IGNORE, None, None), (A.DROP_CONTAINER, C, None)]


def test_connect_and_disconnect_of_a_running_container_resync_it() -> None:
    """Ports move to the new gateway endpoint (and random ports change): resync the whole
    container; disconnect comes twice."""
    f = Follower(running=[C])
    assert decide_all([net("connect", N2), net("disconnect", N2), net("disconnect", N2)], f) \
        == [(A.RESYNC_CONTAINER, C, N2)] * 3


def test_restart_kill_that_is_ignored_pause_rename() -> None:
    f = Follower(running=[C])
    assert decide_all([ctr("kill"), ctr("pause"), ctr("unpause"), ctr("rename"),
                       ctr("health_status: healthy"), ctr("restart")], f) == [
        (A.IGNORE, None, None)] * 3 + [(A.RESYNC_CONTAINER, C, None), (A.IGNORE, None, None),
                                       (A.RESYNC_CONTAINER, C, None)]
    # docker restart: die, disconnects, connects, start, restart
    seq = [ctr("kill"), ctr("die"), net("disconnect"), net("connect"), ctr("start"),
           ctr("restart")]
    assert [d[0] for d in decide_all(seq, f)] == [
        A.IGNORE, A.DROP_CONTAINER, A.DROP_ENDPOINT, A.PREPARE_ENDPOINT, A.RESYNC_CONTAINER,
        A.RESYNC_CONTAINER]
    assert f.running == {C}
    assert Follower().decide(ctr("rename")) == Decision(A.IGNORE)


def test_networks_and_other_drivers() -> None:
    f = Follower(running=[C])
    assert decide_all([net("create"), net("destroy"), net("remove"),
                       ev("network", "create", N1, name="h", type="host"),
                       net("connect", kind="host"), net("prune"),
                       ev("daemon", "reload"), ev("image", "pull")], f) == [
        (A.RESYNC_NETWORKS, None, N1)] * 3 + [(A.IGNORE, None, None)] * 5


def test_reset_after_a_full_resync() -> None:
    f = Follower(running=[C])
    f.reset(["d" * 64])
    assert f.decide(net("connect")) == Decision(A.PREPARE_ENDPOINT, C, N1)
    assert f.decide(net("connect", container="d" * 64)).action is A.RESYNC_CONTAINER


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["start", "die", "destroy", "connect", "disconnect", "kill",
                                 "stop", "restart"]), max_size=30))
def test_running_is_what_start_and_die_said_last(actions: list[str]) -> None:
    f = Follower()
    running = False
    for a in actions:
        d = f.decide(net(a) if a in ("connect", "disconnect") else ctr(a))
        running = {"start": True, "die": False, "destroy": False}.get(a, running)
        assert (C in f.running) == running
        if a == "connect":
            assert d.action is (A.RESYNC_CONTAINER if running else A.PREPARE_ENDPOINT)


# --- resynced: the merge after inspect ------------------------------------------------------

P = DockerPort(4, "tcp", 8080, None, 80)


def endpoint(network: str, last: int, ports: tuple[DockerPort, ...] = ()) -> DockerEndpoint:
    return DockerEndpoint(C, "web", network, f"n{network[0]}", f"web.n{network[0]}",
                          IPv4Address(f"172.30.{network[0]}.{last}"), None, ports)


def seen(*endpoints: DockerEndpoint, pending: tuple[str, ...] = (), running: bool = True
         ) -> DockerContainer:
    return DockerContainer(C, "web", running, 42 if running else 0, endpoints, pending)


def test_resynced_takes_inspect_and_keeps_pending_networks() -> None:
    applied = {N1: endpoint(N1, 2, (P,)), N2: endpoint(N2, 2)}
    assert resynced(applied, seen(endpoint(N1, 3, (P,)), endpoint(N2, 2))) == {
        N1: endpoint(N1, 3, (P,)), N2: endpoint(N2, 2)}
    # N1 listed without an address: what was applied stays, ports too when none moved
    assert resynced(applied, seen(endpoint(N2, 2), pending=(N1,))) == applied
    # ... but its ports go when inspect puts them on N2
    assert resynced(applied, seen(endpoint(N2, 2, (P,)), pending=(N1,))) == {
        N1: endpoint(N1, 2), N2: endpoint(N2, 2, (P,))}
    # a network the container left, and a stopped container
    assert resynced(applied, seen(endpoint(N2, 2))) == {N2: endpoint(N2, 2)}
    assert resynced(applied, seen(pending=(N1, N2), running=False)) == {}
    assert resynced({}, seen(pending=(N1,))) == {}
