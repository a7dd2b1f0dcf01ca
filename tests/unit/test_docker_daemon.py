"""The daemon's pure parts: the order of a container's registrations (no port is ever taken
while another endpoint still holds it), what nftnet holds for a Docker network and endpoint
(the entries load to the translation's own model), the log lines, and the daemon lock and
status file of the state directory, the warning about a forward chain of another firewall
that drops what nftnet lets through, and what the inspect of a created container queues."""

from __future__ import annotations

import logging
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nftnet.api import Engine
from nftnet.config.load import load_entry
from nftnet.config.publish import expand
from nftnet.drivers.docker.daemon import Daemon, JournalFormatter
from nftnet.drivers.docker.engine import EngineError
from nftnet.drivers.docker.events import endpoint_changes
from nftnet.drivers.docker.translate import (
    DockerEndpoint,
    DockerPort,
    Skipped,
    endpoint_entry,
    network_entry,
    translate_networks,
)
from nftnet.errors import DaemonRunning
from nftnet.kernel import Kernel
from nftnet.state import StateDir

C = "c" * 64
NETS = [str(i) * 64 for i in range(1, 4)]


def endpoint(nid: str, ports: frozenset[int], name: str | None = None) -> DockerEndpoint:
    return DockerEndpoint(C, "web", nid, f"n{nid[0]}", name or f"web.n{nid[0]}",
                          IPv4Address(f"10.0.{nid[0]}.2"), None,
                          tuple(DockerPort(4, "tcp", p, None, 80) for p in sorted(ports)))


def assignments(draw: st.DrawFn) -> dict[str, frozenset[int]]:
    """Ports of a container's endpoints (by network id): each port on one endpoint."""
    nets = draw(st.lists(st.sampled_from(NETS), unique=True, max_size=3))
    owner = draw(st.dictionaries(st.integers(8000, 8007), st.sampled_from(nets))) if nets \
        else {}
    return {n: frozenset(p for p, o in owner.items() if o == n) for n in nets}


@st.composite
def before_after(draw: st.DrawFn) -> tuple[dict[str, DockerEndpoint], dict[str, DockerEndpoint]]:
    return ({n: endpoint(n, ports) for n, ports in assignments(draw).items()},
            {n: endpoint(n, ports) for n, ports in assignments(draw).items()})


@given(before_after())
def test_registrations_never_take_a_port_another_endpoint_still_holds(
        pair: tuple[dict[str, DockerEndpoint], dict[str, DockerEndpoint]]) -> None:
    old, new = pair
    gone, steps = endpoint_changes(old, new)
    held = {ep.name: set(ep.ports) for ep in old.values()}
    for ep in gone:
        del held[ep.name]
    for ep in steps:
        others = set().union(*(ports for name, ports in held.items() if name != ep.name))
        assert not set(ep.ports) & others, (ep.name, ep.ports, held)
        held[ep.name] = set(ep.ports)
    assert held == {ep.name: set(ep.ports) for ep in new.values()}


def test_an_unchanged_container_changes_nothing() -> None:
    eps = {NETS[0]: endpoint(NETS[0], frozenset({8080}))}
    assert endpoint_changes(eps, dict(eps)) == ([], [])


def test_a_renamed_container_is_unregistered_under_its_old_name() -> None:
    old = {NETS[0]: endpoint(NETS[0], frozenset({8080}))}
    new = {NETS[0]: endpoint(NETS[0], frozenset({8080}), name="db.n1")}
    assert endpoint_changes(old, new) == ([old[NETS[0]]], [new[NETS[0]]])


def test_entries_load_to_the_translations_model() -> None:
    nets, _ = translate_networks([{
        "Id": NETS[0], "Name": "front", "Driver": "bridge", "EnableIPv6": True,
        "Internal": False, "IPAM": {"Config": [{"Subnet": "172.30.1.0/24"},
                                               {"Subnet": "fd00:30:1::/64"}]},
        "Options": {"com.docker.network.bridge.enable_icc": "false",
                    "com.docker.network.bridge.host_binding_ipv4": "127.0.0.1"}}])
    net = nets[NETS[0]]
    assert load_entry("networks", net.name, network_entry(net)) == net.as_network()
    ep = DockerEndpoint(C, "web", NETS[0], "front", "web.front", IPv4Address("172.30.1.2"),
                        None, (DockerPort(4, "tcp", 8080, None, 80),
                               DockerPort(4, "udp", 53, IPv4Address("127.0.0.1"), 53)))
    entry = endpoint_entry(ep)
    assert entry == {"network": "front", "ipv4": "172.30.1.2",
                     "publish": ["0.0.0.0:8080:80/tcp", "127.0.0.1:53:53/udp"]}
    assert load_entry("endpoints", ep.name, entry) == ep.as_endpoint()


PORTS = st.builds(DockerPort, st.just(4), st.sampled_from(["tcp", "udp"]),
                  st.integers(8000, 8012), st.sampled_from([None, IPv4Address("127.0.0.1")]),
                  st.integers(80, 84))


@given(st.frozensets(PORTS, max_size=20))
def test_runs_of_ports_are_one_range_entry_each_standing_for_the_same_mappings(
        ports: frozenset[DockerPort]) -> None:
    """Docker lists each port of a range; nftnet holds the range as one entry."""
    ep = DockerEndpoint(C, "web", NETS[0], "n1", "web.n1", IPv4Address("10.0.1.2"), None,
                        tuple(sorted(ports, key=lambda p: p.host_port)))
    mappings = {m for spec in ep.as_endpoint().publish
                for m in expand(spec, ep.as_endpoint(), IPv4Address(0))}
    assert mappings == {m for p in ports for m in expand(p.spec(), ep.as_endpoint(),
                                                         IPv4Address(0))}
    entries = endpoint_entry(ep)["publish"]
    assert load_entry("endpoints", ep.name, endpoint_entry(ep)) == ep.as_endpoint()
    assert len(entries) <= len(ports)


def test_a_published_range_is_one_entry_and_single_ports_stay_as_they_were() -> None:
    ports = [DockerPort(4, "tcp", p, None, p) for p in range(20000, 21000)]
    ports += [DockerPort(4, "tcp", 8080, None, 80), DockerPort(4, "tcp", 8081, None, 80),
              DockerPort(4, "udp", 20000, None, 20000)]
    ep = DockerEndpoint(C, "web", NETS[0], "n1", "web.n1", IPv4Address("10.0.1.2"), None,
                        tuple(ports))
    assert endpoint_entry(ep)["publish"] == [
        "0.0.0.0:8080:80/tcp", "0.0.0.0:8081:80/tcp", "0.0.0.0:20000-20999:20000-20999/tcp",
        "0.0.0.0:20000:20000/udp"]


def test_log_lines_carry_their_syslog_priority_and_are_one_line() -> None:
    formatter = JournalFormatter("%(message)s")
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "refused a\nb", None, None)
    assert formatter.format(record) == "<4>refused a | b"


def test_one_daemon_per_state_directory(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    assert not state.daemon_running() and state.daemon_info() is None
    with state.daemon_lock():
        state.save_daemon({"pid": 42, "follows": "docker"})
        assert state.daemon_running()
        with pytest.raises(DaemonRunning, match=r"another nftnet daemon \(pid 42\) runs"), \
                StateDir(tmp_path / "state").daemon_lock():
            pass
    assert not state.daemon_running()
    assert state.daemon_info() == {"pid": 42, "follows": "docker"}
    with state.daemon_lock():  # free again
        pass


def test_a_resync_names_dockers_leftover_forward_drop(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """dockerd switched off leaves iptables' FORWARD policy drop: every published port is
    dropped there, so the daemon says so with the rule that fixes it (as ``check`` does)."""
    daemon = Daemon(Engine(tmp_path / "state", Kernel.fake()), "unix:///nowhere")
    with caplog.at_level(logging.WARNING, "nftnet.daemon"):
        daemon._foreign_drops()
        assert not caplog.records
        daemon.engine.nft.run({"nftables": [
            {"add": {"table": {"family": "ip", "name": "filter"}}},
            {"add": {"chain": {"family": "ip", "table": "filter", "name": "FORWARD",
                               "type": "filter", "hook": "forward", "prio": 0,
                               "policy": "drop"}}}]})
        daemon._foreign_drops()
    (record,) = caplog.records
    assert "ip filter FORWARD (policy drop" in record.getMessage()
    assert "iptables -I FORWARD -m mark --mark" in record.getMessage()


def test_what_is_left_alone_is_said_at_a_resync_and_else_when_new(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Each network sync lists Docker's host and none networks again; the log says them at a
    resync and then only what is new (status lists them all)."""
    daemon = Daemon(Engine(tmp_path / "state", Kernel.fake()), "unix:///nowhere")
    host, none = (Skipped("network", n, n, "not a bridge network") for n in ("h", "n"))
    with caplog.at_level(logging.INFO, "nftnet.daemon"):
        for why, skipped in (("resync", [host]), ("networks", [host]), ("networks", [host, none]),
                             ("resync", [host, none])):
            daemon._sync(why, skipped)
    said = [r.getMessage() for r in caplog.records if "left alone" in r.getMessage()]
    assert [m.split(" ")[3] for m in said] == ["h:", "n:", "h:", "n:"]
    assert len(daemon.info["skipped"]) == 2


class _Sent:
    """A ``SentInspect`` stand-in: its answer, or the error it raises."""

    def __init__(self, answer: dict[str, str] | Exception | None) -> None:
        self._answer = answer

    def answer(self) -> dict[str, str] | None:
        if isinstance(self._answer, Exception):
            raise self._answer
        return self._answer


def test_a_created_containers_inspect_is_queued_when_it_shows_one(tmp_path: Path) -> None:
    """The inspect sent at a create is queued as ``created``; one that found the container
    gone, or failed, is dropped (its start does it all), and so is the SDK's where dockerd
    cannot be reached (the client is dropped for the next)."""
    daemon = Daemon(Engine(tmp_path / "state", Kernel.fake()), f"unix://{tmp_path}/none.sock")
    client = None
    for cid, sent in (("c1", _Sent({"Id": "c1"})), ("c2", _Sent(None)),
                      ("c3", _Sent(EngineError("reset"))), ("c4", None),
                      ("c5", _Sent({"Id": "c5"}))):
        client = daemon._read_created(cid, sent, client)  # type: ignore[arg-type]
        assert client is None
    queued = []
    while not daemon.queue.empty():
        queued.append(daemon.queue.get_nowait())
    assert queued == [("created", {"Id": "c1"}), ("created", {"Id": "c5"})]
