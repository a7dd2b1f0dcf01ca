"""The proof that an apply of the same file changes nothing (applied.py), on the in-memory
kernel: taken when nothing changed since, and never when the file, the state, the kernel, the
links, forwarding or nftnet's code did; whatever it decides, an apply of a file says what the
full path says."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nftnet import applied
from nftnet.api import Engine
from nftnet.config import load
from nftnet.errors import NftnetError
from nftnet.kernel import Kernel
from nftnet.state import NEXT_FILE, PENDING_FILE

CONFIG = {
    "version": 1,
    "networks": {"front": {"bridge": "br-front", "subnets": ["172.31.1.0/24"]}},
    "endpoints": {"web": {"network": "front", "ipv4": "172.31.1.10", "publish": ["8080:80"]}},
}


DELETE_TABLE = {"nftables": [{"delete": {"table": {"family": "inet", "name": "nftnet"}}}]}


def new_engine(where: Path) -> Engine:
    kernel = Kernel.fake()
    kernel.links.set_sysctl("net/ipv4/ip_forward", "1")
    return Engine(where, kernel)


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return new_engine(tmp_path / "state")


@pytest.fixture
def parsed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The sources the full path read as a config (the proof reads none)."""
    calls: list[str] = []
    real = load.parse_config

    def spy(text: str, source: str = "<config>") -> Any:
        calls.append(source)
        return real(text, source)

    monkeypatch.setattr(load, "parse_config", spy)
    return calls


def write(path: Path, raw: dict[str, Any] = CONFIG) -> str:
    path.write_text(json.dumps(raw))
    return str(path)


def applied_twice(engine: Engine, tmp_path: Path, parsed: list[str]) -> str:
    """The file applied, then applied again without being read: the proof holds."""
    path = write(tmp_path / "c.json")
    assert engine.apply_file(path).changed
    assert not engine.apply_file(path).changed
    assert parsed == [path]
    return path


def test_an_unchanged_file_is_not_read_again(engine: Engine, tmp_path: Path,
                                             parsed: list[str]) -> None:
    path = applied_twice(engine, tmp_path, parsed)
    generation = engine.nft.generation()
    assert not engine.apply_file(path, dry_run=True).changed
    assert parsed == [path] and engine.nft.generation() == generation


def test_a_changed_file_is_read(engine: Engine, tmp_path: Path, parsed: list[str]) -> None:
    path = applied_twice(engine, tmp_path, parsed)
    Path(path).write_text(json.dumps(CONFIG, indent=1))  # the same config, other bytes
    assert not engine.apply_file(path).changed
    assert parsed == [path, path]
    assert not engine.apply_file(path).changed  # recorded again
    assert parsed == [path, path]


def test_a_runtime_change_voids_the_proof(engine: Engine, tmp_path: Path,
                                          parsed: list[str]) -> None:
    path = applied_twice(engine, tmp_path, parsed)
    engine.publish("web", ["9090:90"])
    assert not engine.apply_file(path).changed  # runtime ports survive an apply
    assert parsed == [path, path]
    engine.unpublish("web", ["9090:90"])
    assert not engine.apply_file(path).changed
    assert parsed == [path, path, path]


def test_a_commit_by_anyone_voids_the_proof(engine: Engine, tmp_path: Path,
                                            parsed: list[str]) -> None:
    path = applied_twice(engine, tmp_path, parsed)
    engine.nft.run(DELETE_TABLE)
    assert engine.apply_file(path).changed
    assert parsed == [path, path]


def test_a_changed_bridge_voids_the_proof(engine: Engine, tmp_path: Path,
                                          parsed: list[str]) -> None:
    path = applied_twice(engine, tmp_path, parsed)
    engine.kernel.links.ip_addr_del("br-front", "172.31.1.1/24")
    assert engine.apply_file(path).changed
    assert "172.31.1.1/24" in engine.kernel.links.observe()["br-front"].addresses
    engine.kernel.links.ip_link_set("br-front", up=False)
    assert engine.apply_file(path).changed
    assert parsed == [path, path, path]


def test_forwarding_switched_off_voids_the_proof(engine: Engine, tmp_path: Path,
                                                 parsed: list[str]) -> None:
    path = applied_twice(engine, tmp_path, parsed)
    engine.kernel.links.set_sysctl("net/ipv4/ip_forward", "0")
    engine.apply_file(path)
    assert parsed == [path, path]


def test_other_code_voids_the_proof(engine: Engine, tmp_path: Path, parsed: list[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    path = applied_twice(engine, tmp_path, parsed)
    monkeypatch.setattr(applied, "_code", lambda: b"nftnet of another version")
    assert not engine.apply_file(path).changed
    assert parsed == [path, path]


@pytest.mark.parametrize("spoil", ["forwarding", "links", "generation", "links_digest"])
def test_a_record_missing_a_field_takes_the_full_path(engine: Engine, tmp_path: Path,
                                                      parsed: list[str], spoil: str) -> None:
    """A record with the state's identity but not as ``record`` writes it (an older or a
    hand-edited one) proves nothing: the full path, not an error."""
    path = applied_twice(engine, tmp_path, parsed)
    proof = engine.state_dir.applied()
    assert proof is not None
    engine.state_dir.save_applied({k: v for k, v in proof.items() if k != spoil})
    assert not engine.apply_file(path).changed
    assert parsed == [path, path]


def test_the_code_digested_is_nftnets_and_compats() -> None:
    """compat translates ``iptables:`` user_rules: a compat upgrade voids the proof too."""
    modules = {line.split(b":")[0] for line in applied._code().splitlines()}
    assert {b"nftnet/applied.py", b"nftnet/config/load.py", b"compat/rules.py"} <= modules


@pytest.mark.parametrize("name", [NEXT_FILE, PENDING_FILE])
def test_a_pending_change_voids_the_proof(engine: Engine, tmp_path: Path, name: str) -> None:
    path = write(tmp_path / "c.json")
    engine.apply_file(path)
    assert engine.state_dir.applied() is not None
    (engine.state_dir.path / name).write_text("{}")
    assert engine.state_dir.applied() is None


def test_a_dry_run_with_changes_records_nothing(engine: Engine, tmp_path: Path,
                                                parsed: list[str]) -> None:
    path = write(tmp_path / "c.json")
    assert engine.apply_file(path, dry_run=True).changed
    assert engine.apply_file(path).changed  # not "no changes" from a proof of the dry run
    assert parsed == [path, path]


def test_teardown_removes_the_proof(engine: Engine, tmp_path: Path, parsed: list[str]) -> None:
    path = applied_twice(engine, tmp_path, parsed)
    engine.teardown(engine.teardown_plan(keep_bridges=False))
    assert not (engine.state_dir.path / "applied.json").exists()
    assert engine.apply_file(path).changed


def _config(ports: list[int], masquerade: bool) -> dict[str, Any]:
    return {**CONFIG, "networks": {"front": {**CONFIG["networks"]["front"],
                                             "masquerade": masquerade}},
            "endpoints": {"web": {**CONFIG["endpoints"]["web"],
                                  "publish": [f"{p}:80" for p in ports]}}}


STEPS = st.lists(st.one_of(
    st.tuples(st.just("apply"), st.lists(st.sampled_from([8080, 8081, 8082]), unique=True,
                                         max_size=2), st.booleans()),
    st.tuples(st.just("publish"), st.sampled_from(["9090:90", "9091:91"]), st.booleans()),
    st.tuples(st.just("delete"), st.none(), st.none()),
), max_size=8)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(STEPS)
def test_apply_of_a_file_says_what_the_full_path_says(tmp_path_factory: pytest.TempPathFactory,
                                                      steps: list[Any]) -> None:
    """Two engines take the same steps; one applies files (proof first), the other configs:
    every apply answers the same and the tables end up the same."""
    where = tmp_path_factory.mktemp("prop")
    files, configs = new_engine(where / "a"), new_engine(where / "b")
    path = where / "c.json"
    for kind, arg, flag in [("apply", [8080], True), *steps]:
        if kind == "apply":
            write(path, _config(arg, flag))
            got = files.apply_file(str(path))
            want = configs.apply(load.parse_config(path.read_text(), str(path)))
            assert (got.changed, got.changes) == (want.changed, want.changes)
        elif kind == "publish":
            outcomes = []
            for engine in (files, configs):
                try:
                    outcomes.append((engine.publish if flag else engine.unpublish)("web", [arg]))
                except NftnetError as e:
                    outcomes.append(str(e))
            assert outcomes[0] == outcomes[1]
        else:
            for engine in (files, configs):
                if engine.nft.list() is not None:
                    engine.nft.run(DELETE_TABLE)
    assert files.nft.list() == configs.nft.list()
