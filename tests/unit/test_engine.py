"""The engine's logic through its facade, on the in-memory kernel (Kernel.fake(): FakeNft,
FakeLinks, FakeScratch, which tests/kernel/test_fake_kernel.py and test_link_fake_kernel.py
prove against the real one): apply, runtime changes, drivers' registrations, the journal
completing a change that was cut short, check and restore. Fast, and without root."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nftnet import names as N
from nftnet.api import Engine
from nftnet.config.load import parse_config
from nftnet.errors import ConfigError, NftnetError
from nftnet.kernel import Kernel
from nftnet.runtime import Runtime

CONFIG = {
    "version": 1,
    "networks": {"front": {"bridge": "br-front", "subnets": ["172.31.1.0/24", "fd00:1::/64"]}},
    "endpoints": {"web": {"network": "front", "ipv4": "172.31.1.10", "publish": ["8080:80"]}},
}


def config(raw: dict[str, Any] = CONFIG) -> Any:
    return parse_config(json.dumps(raw), "c.json")


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    kernel = Kernel.fake()
    kernel.links.set_sysctl("net/ipv4/ip_forward", "1")  # forwarding is on already
    return Engine(tmp_path / "state", kernel)


def published(engine: Engine) -> set[str]:
    """The any-address IPv4 port map's keys, as the (fake) kernel lists them."""
    listing = engine.nft.list() or []
    elems = next((o["map"].get("elem", []) for o in listing
                  if "map" in o and o["map"]["name"] == N.PUBANY_PORT.format(v=4)), [])
    return {f"{e[0]['concat'][0]}/{e[0]['concat'][1]}" for e in elems}


def veth_on(engine: Engine, name: str, bridge: str) -> None:
    """A veth a container runtime made, its host end on ``bridge`` (as Docker's or CNI's)."""
    links = engine.kernel.links
    links.ip_link_add(name, "veth", peer=f"{name}p")
    links.ip_link_set(name, master=bridge, up=True)


def test_apply_builds_links_and_table_and_says_no_changes_the_second_time(engine: Engine
                                                                          ) -> None:
    first = engine.apply(config())
    assert first.changed and not first.dry_run
    seen = engine.kernel.links.observe()["br-front"]
    assert seen.kind == "bridge" and seen.up and seen.marked
    assert {"172.31.1.1/24", "fd00:1::1/64"} <= seen.addresses
    assert published(engine) == {"tcp/8080"}
    generation = engine.nft.generation()
    assert not engine.apply(config()).changed
    assert engine.nft.generation() == generation  # nothing was sent
    report = engine.check()
    assert report is not None and report.in_sync


def test_a_dry_run_changes_nothing(engine: Engine) -> None:
    result = engine.apply(config(), dry_run=True)
    assert result.changed and result.dry_run and result.changes
    assert engine.nft.list() is None and "br-front" not in engine.kernel.links.observe()


def test_runtime_publish_is_elements_only_and_the_next_identical_apply_changes_nothing(
        engine: Engine) -> None:
    engine.apply(config())
    change = engine.publish("web", ["9090:90/udp"])
    assert [(m.proto, m.host_port, m.container_port) for m in change.added] == [
        ("udp", 9090, 90)]
    sent = engine.nft.committed[-1]["nftables"]
    assert {next(iter(op)) for op in sent if "metainfo" not in op} == {"add"}
    assert all("element" in next(iter(op.values())) for op in sent if "metainfo" not in op)
    assert published(engine) == {"tcp/8080", "udp/9090"}
    generation = engine.nft.generation()
    assert not engine.apply(config()).changed
    assert engine.nft.generation() == generation
    with pytest.raises(ConfigError, match="already published by endpoint web"):
        engine.publish("web", ["9090:91/udp"])


def test_a_driver_registers_on_its_own_veth_and_unregisters_idempotently(engine: Engine
                                                                         ) -> None:
    engine.apply(config())
    veth_on(engine, "vethc1", "br-front")
    made = engine.register("c1", "front", owner="cni", ipv4="172.31.1.20",
                           publish=["8081:80"], host_ifname="vethc1")
    assert made.added and [str(a) for a in made.addresses] == ["172.31.1.20/24"]
    assert published(engine) == {"tcp/8080", "tcp/8081"}
    state, effective = engine.effective()
    assert engine.owners(state)["endpoints"] == {"c1": "cni"}
    assert effective.endpoints["c1"].ipv4 is not None
    # again by the same owner: replaced in one transaction (ports move)
    engine.register("c1", "front", owner="cni", ipv4="172.31.1.20", publish=["8082:80"],
                    host_ifname="vethc1")
    assert published(engine) == {"tcp/8080", "tcp/8082"}
    with pytest.raises(ConfigError, match="held by cni"):
        engine.register("c1", "front", owner="docker", ipv4="172.31.1.21")
    with pytest.raises(ConfigError, match="not on bridge br-front"):
        engine.kernel.links.ip_link_add("stray", "veth", peer="strayp")
        engine.register("c2", "front", owner="cni", ipv4="172.31.1.22", host_ifname="stray")
    gone = engine.unregister("c1", "cni")
    assert gone is not None and not gone.added
    assert published(engine) == {"tcp/8080"}
    assert "vethc1" in engine.kernel.links.observe()  # the runtime's link: never nftnet's
    assert engine.unregister("c1", "cni") is None  # DEL twice
    report = engine.check()
    assert report is not None and report.in_sync


def test_unregister_succeeds_where_nothing_was_ever_applied(tmp_path: Path) -> None:
    engine = Engine(tmp_path / "never", Kernel.fake())
    assert engine.unregister("c1", "cni") is None
    assert not (tmp_path / "never").exists()


def on_disk(state_dir: Path) -> Any:
    """The state as a command that starts now reads it (the files, no kept state)."""
    from dataclasses import asdict

    from nftnet.state import StateDir

    state = StateDir(state_dir).load()
    assert state is not None
    return asdict(state)


def test_the_state_a_change_keeps_in_memory_is_the_files_state(engine: Engine) -> None:
    """Change after change reads no file (the daemon's path), yet each next change starts
    from exactly what the files say, and a refused change leaves nothing of it kept."""
    from dataclasses import asdict

    engine.apply(config())
    for i in range(3):
        engine.register(f"c{i}", "front", owner="docker", ipv4=f"172.31.1.{20 + i}",
                        publish=[f"{8100 + i}:80"])
    engine.unregister("c1", "docker")
    with pytest.raises(ConfigError, match="already published"):
        engine.register("c9", "front", owner="docker", ipv4="172.31.1.29",
                        publish=["8110:80", "8100:80"])  # the first claimed, then refused
    engine.publish("web", ["9090:90/udp"])
    kept = engine.state_dir._kept
    assert kept is not None  # the next change reads no file
    assert asdict(kept[1]) | {"generation": None} == on_disk(engine.state_dir.path) | {
        "generation": None}
    assert published(engine) == {"tcp/8080", "tcp/8100", "tcp/8102", "udp/9090"}


def test_a_kept_state_never_hides_another_commands_change(engine: Engine) -> None:
    engine.apply(config())
    engine.register("c1", "front", owner="docker", ipv4="172.31.1.20", publish=["8100:80"])
    other = Engine(engine.state_dir.path, engine.kernel)  # another command, same directory
    other.publish("web", ["9090:90/udp"])
    engine.register("c2", "front", owner="docker", ipv4="172.31.1.21", publish=["8101:80"])
    assert published(engine) == {"tcp/8080", "tcp/8100", "tcp/8101", "udp/9090"}
    assert on_disk(engine.state_dir.path)["runtime"]["publish"] == {"web": ["9090:90/udp"]}
    with pytest.raises(ConfigError, match="already published"):
        engine.publish("c1", ["9090:90/udp"])


def test_owned_networks_are_repeatable_for_their_owner_and_refused_to_others(
        engine: Engine) -> None:
    engine.apply(config())
    engine.kernel.links.ip_link_add("cni0", "bridge")
    entry = {"bridge": "cni0", "subnets": ["10.88.0.0/24"]}
    assert engine.create_network("pods", entry, owner="cni").changed
    assert not engine.create_network("pods", entry, owner="cni").changed
    assert engine.kernel.links.observe()["cni0"].marked is False  # adopted, not made
    with pytest.raises(ConfigError, match="held by cni"):
        engine.create_network("pods", entry)
    with pytest.raises(ConfigError, match="held by cni"):
        engine.remove_network("pods")
    assert not engine.remove_network("gone", owner="cni", missing_ok=True).changed
    assert engine.remove_network("pods", owner="cni").changed
    assert "cni0" in engine.kernel.links.observe()  # adopted: never deleted


def test_a_change_cut_short_after_the_kernel_took_it_is_completed_by_the_next_command(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    engine.apply(config())

    class Killed(BaseException):
        pass

    def killed_after_commit(self: Runtime, step: Any) -> None:
        self.nft.run(step.tx.to_json())
        raise Killed  # as a kill -9 would: the journal line is never committed

    with monkeypatch.context() as m:
        m.setattr(Runtime, "_links_and_kernel", killed_after_commit)
        with pytest.raises(Killed):
            engine.publish("web", ["7070:70"])
    assert engine.state_dir.pending() is not None
    fresh = Engine(engine.state_dir.path, engine.kernel)  # the next command
    _, effective = fresh.effective()
    assert published(fresh) == {"tcp/8080", "tcp/7070"}
    assert {m.host_port for _, _, m in effective.published} == {8080, 7070}
    assert fresh.state_dir.pending() is None
    report = fresh.check()
    assert report is not None and report.in_sync


def test_a_refused_batch_leaves_no_bridge_and_no_state(engine: Engine,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(batch: Any) -> None:
        raise NftnetError("the kernel refused the batch")

    monkeypatch.setattr(engine.kernel.nft, "run", refuse)
    with pytest.raises(NftnetError):
        engine.apply(config())
    assert "br-front" not in engine.kernel.links.observe()
    assert engine.state_dir.load() is None and engine.state_dir.pending() is None


def test_check_names_a_deleted_element_and_restore_puts_it_back(engine: Engine) -> None:
    engine.apply(config())
    engine.nft.run({"nftables": [{"flush": {"map": {
        "family": N.FAMILY, "table": N.TABLE, "name": N.PUBANY_PORT.format(v=4)}}}]})
    report = engine.check()
    assert report is not None and not report.in_sync
    assert any("element missing" in str(f) for f in report.drift)
    _, unrestored = engine.restore()
    assert not unrestored and published(engine) == {"tcp/8080"}
    report = engine.check()
    assert report is not None and report.in_sync


def test_a_bridge_with_ipv6_switched_off_by_hand_is_mended(engine: Engine) -> None:
    """disable_ipv6=1 on the bridge refused its IPv6 gateway: the bridge's own settings are
    written before its addresses."""
    engine.apply(config())
    engine.kernel.links.set_sysctl("net/ipv6/conf/br-front/disable_ipv6", "1")
    report = engine.check()
    assert report is not None and not report.in_sync
    engine.restore()
    assert "fd00:1::1/64" in engine.kernel.links.observe()["br-front"].addresses
    report = engine.check()
    assert report is not None and report.in_sync


def test_a_driver_sync_checks_host_interfaces_on_the_bridge(engine: Engine) -> None:
    engine.apply(config())
    veth_on(engine, "vethd1", "br-front")
    engine.kernel.links.ip_link_add("stray", "veth", peer="strayp")
    result = engine.sync("docker", {}, {
        "d1": {"network": "front", "ipv4": "172.31.1.30", "host_ifname": "vethd1"},
        "d2": {"network": "front", "ipv4": "172.31.1.31", "host_ifname": "stray"},
        "d3": {"network": "front", "ipv4": "172.31.1.32", "host_ifname": "gone"}})
    assert result.endpoints_added == ("d1",)
    assert {(r.name, r.reason.split(": ", 1)[1]) for r in result.refused} == {
        ("d2", "host interface: stray is not on bridge br-front"),
        ("d3", "host interface: no interface gone")}
