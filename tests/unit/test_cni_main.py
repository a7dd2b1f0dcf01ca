"""nftnet-cni as a runtime sees it: environment and stdin in, JSON on stdout, an exit status;
with a fake engine (tests/cni_fake.py), in process, and the installed executable itself."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nftnet.drivers.cni import spec
from nftnet.drivers.cni.engine import Attachment, Readiness
from nftnet.drivers.cni.main import main
from nftnet.errors import ConfigError, LinkError, LockTimeout
from tests.cni_fake import FakeEngine
from tests.unit.test_cni_request import bridge_result
from tests.unit.test_cni_spec import extra, json_values

ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/run/netns/c1",
       "CNI_IFNAME": "eth0", "CNI_PATH": "/usr/lib/cni"}
PORTS = [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "127.0.0.1"}]


class Run:
    """One invocation's exit status, parsed stdout (None when empty) and stderr."""

    def __init__(self, engine: FakeEngine | None, env: dict[str, str], stdin: bytes) -> None:
        out, err = io.StringIO(), io.StringIO()
        self.made: list[str] = []

        def factory(state_dir: str) -> FakeEngine:
            self.made.append(state_dir)
            if engine is None:
                raise AssertionError("this command must not start an engine")
            return engine

        self.status = main(factory, env, io.BytesIO(stdin), out, err)
        self.stdout, self.stderr = out.getvalue(), err.getvalue()
        self.json: Any = json.loads(self.stdout) if self.stdout else None
        assert "Traceback" not in self.stdout + self.stderr

    def failed(self, code: int) -> dict[str, Any]:
        """The error JSON, checked: the spec's keys, a non-zero exit, one line on stderr."""
        assert self.status != 0 and self.json["code"] == code, (self.status, self.json)
        assert set(self.json) <= {"cniVersion", "code", "msg", "details"}
        assert self.stdout.count("\n") == 1 and self.stderr.count("\n") == 1
        return dict(self.json)


def conf(command: str = "ADD", **keys: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"cniVersion": "1.0.0", "name": "front", "type": "nftnet-cni",
                           "capabilities": {"portMappings": True}}
    if command in ("ADD", "CHECK"):
        out["prevResult"] = bridge_result()
    return {**out, **keys}


def run(engine: FakeEngine | None, command: str = "ADD", config: Any = None,
        **env: str) -> Run:
    data = config if isinstance(config, bytes) else json.dumps(
        conf(command) if config is None else config).encode()
    return Run(engine, {**ENV, "CNI_COMMAND": command, **env}, data)


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


# -- ADD -----------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["0.4.0", "1.0.0", "1.1.0"])
def test_add_passes_the_previous_result_on_unchanged(engine: FakeEngine, version: str) -> None:
    prev = bridge_result(version="0.4.0" if version == "0.4.0" else "1.0.0")
    r = run(engine, config=conf(cniVersion=version, prevResult=prev,
                                runtimeConfig={"portMappings": PORTS}))
    assert r.status == 0
    assert r.json == {**prev, "cniVersion": version}
    [call] = engine.calls
    assert call["call"] == "add" and call["owner"] == "cni"
    assert call["endpoint"]["host_ifname"] == "veth0a1b2c3d"
    assert call["ports"] == [{"host_port": 8080, "container_port": 80, "protocol": "tcp",
                              "host_ip": "127.0.0.1"}]


@given(extra, extra, extra, st.dictionaries(st.sampled_from(["routes", "dns", "mtu", "x-y"]),
                                           json_values, max_size=3))
def test_add_loses_nothing_of_any_prev_result(on_interface: dict[str, Any],
                                              on_ip: dict[str, Any], on_bridge: dict[str, Any],
                                              top: dict[str, Any]) -> None:
    prev = {**bridge_result(), **top}
    prev["interfaces"][2] |= on_interface
    prev["interfaces"][0] |= on_bridge
    prev["ips"][0] |= on_ip
    r = run(FakeEngine(), config=conf(prevResult=prev))
    assert r.status == 0 and r.json == {**prev, "cniVersion": "1.0.0"}


def test_add_without_prev_result_is_refused_and_changes_nothing(engine: FakeEngine) -> None:
    error = run(engine, config=conf("DEL")).failed(spec.INVALID_CONFIG)
    assert "chained plugin" in error["msg"] and engine.calls == []


@pytest.mark.parametrize("raised, code, words", [
    (ConfigError(["publish: host port 8080 is held by endpoint c0"]), spec.INVALID_CONFIG,
     "host port 8080 is held"),
    (LockTimeout("state lock held longer than 10 s"), spec.TRY_AGAIN_LATER, "10 s"),
    (LinkError("bridge cni-front is not there"), spec.NFTNET_FAILED, "cni-front"),
])
def test_nftnet_errors_become_cni_errors(engine: FakeEngine, raised: Exception, code: int,
                                         words: str) -> None:
    engine.refuse = raised  # type: ignore[assignment]
    error = run(engine).failed(code)
    assert words in error["msg"] and error["cniVersion"] == "1.0.0"


def test_an_unexpected_error_is_code_999_with_the_traceback_logged(tmp_path: Path) -> None:
    class Broken(FakeEngine):
        def add(self, *args: object) -> None:
            raise KeyError("oops")

    r = run(Broken(), config=conf(stateDir=str(tmp_path)))
    error = r.failed(spec.INTERNAL)
    assert r.status == 3 and "KeyError('oops')" in error["msg"]
    assert str(tmp_path / "error.log") in error["details"]
    assert "Traceback" in (tmp_path / "error.log").read_text()


def test_an_unexpected_error_without_a_log_still_prints_no_traceback(tmp_path: Path) -> None:
    class Broken(FakeEngine):
        def delete(self, *args: object) -> None:
            raise RuntimeError("oops")

    (tmp_path / "file").write_text("")
    r = run(Broken(), "DEL", conf("DEL", stateDir=str(tmp_path / "file")))
    assert "cannot be written" in r.failed(spec.INTERNAL)["details"]


def test_interrupted_is_try_again_later(engine: FakeEngine) -> None:
    class Interrupted(FakeEngine):
        def add(self, *args: object) -> None:
            raise KeyboardInterrupt

    r = run(Interrupted())
    assert r.failed(spec.TRY_AGAIN_LATER) and r.status == 130


# -- errors before any engine --------------------------------------------------------------

@pytest.mark.parametrize("config, env, code", [
    (b"{", {}, spec.DECODING_FAILURE),
    (b"[]", {}, spec.DECODING_FAILURE),
    ({"name": "front", "cniVersion": "0.3.1"}, {}, spec.INCOMPATIBLE_VERSION),
    ({"name": "front"}, {}, spec.INCOMPATIBLE_VERSION),
    ({"name": "front", "cniVersion": "one"}, {}, spec.DECODING_FAILURE),
    ({**conf(), "ipMasq": False}, {}, spec.UNSUPPORTED_FIELD),
    ({**conf(), "name": "a b"}, {}, spec.INVALID_CONFIG),
    (None, {"CNI_IFNAME": "a/b"}, spec.INVALID_ENVIRONMENT),
    (None, {"CNI_PATH": ""}, spec.INVALID_ENVIRONMENT),
    (None, {"CNI_COMMAND": "REMOVE"}, spec.INVALID_ENVIRONMENT),
])
def test_bad_input_is_an_error_json_and_exit_2(config: Any, env: dict[str, str],
                                               code: int) -> None:
    r = run(None, config=config, **env)
    r.failed(code)
    assert r.status == 2 and r.made == []


def test_an_error_before_the_version_is_known_speaks_the_newest() -> None:
    assert run(None, config=b"{").json["cniVersion"] == "1.1.0"
    assert run(None, config={"name": "front", "cniVersion": "0.3.1"}).json["cniVersion"] == \
        "1.1.0"


def test_a_stdin_that_cannot_be_read_is_code_5() -> None:
    class Unreadable(io.BytesIO):
        def read(self, *args: object) -> bytes:
            raise OSError(5, "Input/output error")

    out, err = io.StringIO(), io.StringIO()
    assert main(lambda d: FakeEngine(), ENV, Unreadable(), out, err) == 1
    assert json.loads(out.getvalue())["code"] == spec.IO_FAILURE


# -- DEL -----------------------------------------------------------------------------------

def test_del_without_prev_result_twice_and_with_nothing_held_succeeds(
        engine: FakeEngine) -> None:
    assert run(engine).status == 0
    bare = conf("DEL")
    assert "prevResult" not in bare
    for _ in range(2):
        r = run(engine, "DEL", bare)
        assert (r.status, r.stdout) == (0, "")
    assert engine.held == {}
    assert run(FakeEngine(), "DEL", bare, CNI_CONTAINERID="never-added").status == 0
    assert [c["call"] for c in engine.calls] == ["add", "delete", "delete"]
    assert engine.calls[1]["attachment"] == {"container_id": "c1", "ifname": "eth0"}


def test_del_needs_no_netns_and_passes_over_what_it_does_not_read(engine: FakeEngine) -> None:
    env = {k: v for k, v in ENV.items() if k != "CNI_NETNS"}
    r = Run(engine, {**env, "CNI_COMMAND": "DEL"}, json.dumps(
        {**conf("DEL"), "prevResult": {"garbage": 1}, "unknownKey": 1}).encode())
    assert r.status == 0 and engine.calls[0]["call"] == "delete"


# -- CHECK, GC, STATUS, VERSION -------------------------------------------------------------

def test_check_passes_while_held_and_fails_once_lost(engine: FakeEngine) -> None:
    config = conf(runtimeConfig={"portMappings": PORTS})
    run(engine, "ADD", config)
    r = run(engine, "CHECK", config)
    assert (r.status, r.stdout) == (0, "")
    engine.held.clear()
    error = run(engine, "CHECK", config).failed(spec.NOT_AS_ADDED)
    assert "nothing held for front/c1/eth0" in error["details"]


def test_check_needs_the_prev_result(engine: FakeEngine) -> None:
    run(engine, "CHECK", conf("DEL")).failed(spec.INVALID_CONFIG)


def test_gc_removes_what_the_runtime_no_longer_knows(engine: FakeEngine) -> None:
    for cid in ("c1", "c2", "c3"):
        run(engine, CNI_CONTAINERID=cid)
    valid = [{"containerID": "c2", "ifname": "eth0"}]
    r = run(engine, "GC", {**conf("GC", cniVersion="1.1.0"),
                           "cni.dev/valid-attachments": valid})
    assert (r.status, r.stdout) == (0, "")
    assert list(engine.held) == ["front/c2/eth0"]
    assert engine.calls[-1]["valid"] == [{"container_id": "c2", "ifname": "eth0"}]


def test_gc_needs_1_1_and_the_list(engine: FakeEngine) -> None:
    run(engine, "GC", {**conf("GC"), "cni.dev/valid-attachments": []}).failed(
        spec.INCOMPATIBLE_VERSION)
    run(engine, "GC", conf("GC", cniVersion="1.1.0")).failed(spec.INVALID_CONFIG)
    assert engine.calls == []


@pytest.mark.parametrize("readiness, code", [
    (Readiness(), 0), (Readiness("nftables is not usable"), spec.NOT_AVAILABLE),
    (Readiness("table inet nftnet is gone", limited=True), spec.LIMITED_CONNECTIVITY),
])
def test_status(engine: FakeEngine, readiness: Readiness, code: int) -> None:
    engine.readiness = readiness
    r = run(engine, "STATUS", conf("STATUS", cniVersion="1.1.0"))
    if code:
        assert readiness.problem in r.failed(code)["msg"]
    else:
        assert (r.status, r.stdout) == (0, "")


def test_version_starts_no_engine_and_reads_no_config() -> None:
    r = Run(None, {"CNI_COMMAND": "VERSION"}, b'{"cniVersion": "0.4.0"}')
    assert (r.status, r.json) == (0, {"cniVersion": "0.4.0",
                                      "supportedVersions": ["0.4.0", "1.0.0", "1.1.0"]})


@pytest.mark.parametrize("config_dir, env_dir, used", [
    ("/from/config", "/from/env", "/from/config"), (None, "/from/env", "/from/env"),
    (None, None, "/var/lib/nftnet"),
])
def test_the_state_dir_is_the_configs_then_the_environments(
        engine: FakeEngine, config_dir: str | None, env_dir: str | None, used: str) -> None:
    config = conf("DEL", **({"stateDir": config_dir} if config_dir else {}))
    r = run(engine, "DEL", config, **({"NFTNET_STATE_DIR": env_dir} if env_dir else {}))
    assert r.made == [used]


def test_attachments_are_keyed_by_network_container_and_interface(engine: FakeEngine) -> None:
    run(engine)
    run(engine, config=conf(name="back"))
    run(engine, "DEL", conf("DEL", name="back"))
    assert list(engine.held) == [FakeEngine.key("front", Attachment("c1", "eth0"))]


# -- the executable ------------------------------------------------------------------------

def test_the_installed_executable_speaks_the_spec() -> None:
    exe = Path(sys.executable).with_name("nftnet-cni")
    assert exe.exists(), "pyproject.toml's nftnet-cni entry point is not installed"
    version = subprocess.run([exe], env={"CNI_COMMAND": "VERSION"}, input=b"",
                             capture_output=True, timeout=30, check=False)
    assert version.returncode == 0
    assert json.loads(version.stdout)["supportedVersions"] == ["0.4.0", "1.0.0", "1.1.0"]
    bad = subprocess.run([exe], env={**ENV}, input=b"{not json", capture_output=True,
                         timeout=30, check=False)
    assert bad.returncode == 2 and b"Traceback" not in bad.stdout + bad.stderr
    assert json.loads(bad.stdout)["code"] == spec.DECODING_FAILURE
