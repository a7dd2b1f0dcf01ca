"""nftnet-cni's spec plumbing: environment, version negotiation, error JSON, the result."""

from __future__ import annotations

import copy
import json
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nftnet.drivers.cni import spec
from nftnet.drivers.cni.spec import CniError, Env, negotiate, parse_env, result, version_output

ADD_ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/run/netns/c1",
           "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin:/usr/lib/cni"}


def code_of(call, *args):  # type: ignore[no-untyped-def]
    with pytest.raises(CniError) as e:
        call(*args)
    return e.value


# -- environment ---------------------------------------------------------------------------

def test_add_environment_is_parsed() -> None:
    env = parse_env({**ADD_ENV, "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAME=web;"})
    assert env == Env(command="ADD", container_id="c1", netns="/run/netns/c1", ifname="eth0",
                      args=(("IgnoreUnknown", "1"), ("K8S_POD_NAME", "web")),
                      path=("/opt/cni/bin", "/usr/lib/cni"))


@pytest.mark.parametrize("environ, names", [
    ({}, ["CNI_COMMAND"]),
    ({"CNI_COMMAND": "ADD"}, ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"]),
    ({"CNI_COMMAND": "CHECK", "CNI_PATH": "/x"}, ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"]),
    ({"CNI_COMMAND": "DEL", "CNI_NETNS": "/x"}, ["CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"]),
    ({"CNI_COMMAND": "GC"}, ["CNI_PATH"]),
    ({"CNI_COMMAND": "ADD", **{k: "" for k in ADD_ENV if k != "CNI_COMMAND"}},
     ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"]),
])
def test_missing_variables_are_code_4_and_all_named(environ: dict[str, str],
                                                    names: list[str]) -> None:
    error = code_of(parse_env, environ)
    assert error.code == spec.INVALID_ENVIRONMENT
    assert all(name in error.msg for name in names), error.msg


def test_unknown_command_is_code_4() -> None:
    error = code_of(parse_env, {**ADD_ENV, "CNI_COMMAND": "add"})
    assert error.code == spec.INVALID_ENVIRONMENT and "'add'" in error.msg


@pytest.mark.parametrize("environ", [
    {"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "c1", "CNI_IFNAME": "eth0", "CNI_PATH": "/x"},
    {"CNI_COMMAND": "GC", "CNI_PATH": "/x"},
    {"CNI_COMMAND": "STATUS"},
    {"CNI_COMMAND": "VERSION"},
])
def test_commands_need_only_their_variables(environ: dict[str, str]) -> None:
    assert parse_env(environ).command == environ["CNI_COMMAND"]


@pytest.mark.parametrize("var, value", [
    ("CNI_CONTAINERID", "-c1"), ("CNI_CONTAINERID", "c 1"), ("CNI_CONTAINERID", "c/1"),
    ("CNI_IFNAME", "a" * 16), ("CNI_IFNAME", "."), ("CNI_IFNAME", ".."), ("CNI_IFNAME", "e/0"),
    ("CNI_IFNAME", "e:0"), ("CNI_IFNAME", "e 0"), ("CNI_ARGS", "novalue"), ("CNI_ARGS", "=1"),
])
def test_invalid_variables_are_code_4_naming_them(var: str, value: str) -> None:
    error = code_of(parse_env, {**ADD_ENV, var: value})
    assert error.code == spec.INVALID_ENVIRONMENT and var in error.msg


def test_every_invalid_variable_is_reported() -> None:
    error = code_of(parse_env, {**ADD_ENV, "CNI_CONTAINERID": "-", "CNI_IFNAME": "."})
    assert "CNI_CONTAINERID" in error.msg and "CNI_IFNAME" in error.details


# -- versions ------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["0.4.0", "1.0.0", "1.1.0", "1.0"])
def test_supported_versions_are_echoed(version: str) -> None:
    assert negotiate({"cniVersion": version}, "ADD") == version


@pytest.mark.parametrize("conf", [{}, {"cniVersion": ""}, {"cniVersion": "0.3.1"},
                                  {"cniVersion": "0.1.0"}, {"cniVersion": "1.2.0"},
                                  {"cniVersion": "2.0.0"}])
def test_unsupported_versions_are_code_1(conf: dict[str, str]) -> None:
    error = code_of(negotiate, conf, "ADD")
    assert error.code == spec.INCOMPATIBLE_VERSION
    assert "0.4.0, 1.0.0, 1.1.0" in error.details


@pytest.mark.parametrize("version", ["abc", "1.0.0-rc1", 1, "1..0", ["1.0.0"]])
def test_undecodable_versions_are_code_6(version: object) -> None:
    assert code_of(negotiate, {"cniVersion": version}, "ADD").code == spec.DECODING_FAILURE


@pytest.mark.parametrize("command, version, ok", [
    ("GC", "1.0.0", False), ("GC", "1.1.0", True), ("STATUS", "0.4.0", False),
    ("STATUS", "1.1.0", True), ("CHECK", "0.4.0", True), ("DEL", "0.4.0", True),
])
def test_commands_need_the_version_that_has_them(command: str, version: str, ok: bool) -> None:
    if ok:
        assert negotiate({"cniVersion": version}, command) == version
    else:
        error = code_of(negotiate, {"cniVersion": version}, command)
        assert error.code == spec.INCOMPATIBLE_VERSION and command in error.msg


@pytest.mark.parametrize("stdin, version", [
    (b'{"cniVersion": "1.0.0"}', "1.0.0"), (b'{"cniVersion": "0.4.0"}', "0.4.0"),
    (b'{"cniVersion": "0.3.1"}', "1.1.0"), (b"", "1.1.0"), (b"not json", "1.1.0"),
    (b"[1]", "1.1.0"), (b'{"cniVersion": 7}', "1.1.0"),
])
def test_version_answers_whatever_stdin_holds(stdin: bytes, version: str) -> None:
    assert version_output(stdin) == {"cniVersion": version,
                                     "supportedVersions": ["0.4.0", "1.0.0", "1.1.0"]}


# -- errors --------------------------------------------------------------------------------

def test_error_json_has_the_spec_keys() -> None:
    assert CniError(7, "bad", "worse").output("1.0.0") == {
        "cniVersion": "1.0.0", "code": 7, "msg": "bad", "details": "worse"}
    assert CniError(11, "later").output("0.4.0") == {"cniVersion": "0.4.0", "code": 11,
                                                     "msg": "later"}


@pytest.mark.parametrize("code, status", [(1, 2), (2, 2), (4, 2), (6, 2), (7, 2), (5, 1),
                                          (11, 1), (50, 1), (51, 1), (100, 1), (101, 1),
                                          (999, 3)])
def test_exit_status_follows_nftnet(code: int, status: int) -> None:
    assert CniError(code, "x").exit_status == status


# -- the result: prevResult passed on, nothing lost -----------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                  max_size=3),
    max_leaves=8)
extra = st.dictionaries(st.text(max_size=10).filter(lambda k: k not in (
    "name", "mac", "sandbox", "address", "gateway", "interface", "version", "cniVersion")),
    json_values, max_size=2)
addresses = (st.builds(lambda a, p: f"{IPv4Address(a)}/{p}", st.integers(0, 2**32 - 1),
                       st.integers(0, 32))
             | st.builds(lambda a, p: f"{IPv6Address(a)}/{p}", st.integers(0, 2**128 - 1),
                         st.integers(0, 128)))


@st.composite
def ip_entries(draw: st.DrawFn) -> dict[str, object]:
    address = draw(addresses)
    entry: dict[str, object] = {"address": address, **draw(extra)}
    if draw(st.booleans()):
        entry["version"] = "6" if ":" in address else "4"
    if draw(st.booleans()):
        entry["gateway"] = address.split("/")[0]
    if draw(st.booleans()):
        entry["interface"] = draw(st.integers(0, 3))
    return entry


interfaces = st.builds(lambda name, mac, sandbox, more: {
    "name": name, **({"mac": mac} if mac else {}), **({"sandbox": sandbox} if sandbox else {}),
    **more}, st.text(min_size=1, max_size=15), st.text(max_size=17), st.text(max_size=20), extra)
prev_results = st.builds(
    lambda version, ifaces, ips, rest: {**({"cniVersion": version} if version else {}),
                                        "interfaces": ifaces, "ips": ips, **rest},
    st.sampled_from([None, "0.4.0", "1.0.0", "1.1.0"]), st.lists(interfaces, max_size=4),
    st.lists(ip_entries(), max_size=3),
    st.dictionaries(st.sampled_from(["routes", "dns", "mtu", "x-extra", "cniVersion"]),
                    json_values, max_size=3))


@given(prev_results, st.sampled_from(["1.0.0", "1.1.0"]))
def test_result_is_prev_result_in_the_config_version(prev: dict[str, object],
                                                     version: str) -> None:
    before = copy.deepcopy(prev)
    out = result(prev, version)
    assert prev == before  # the input is not changed
    assert out["cniVersion"] == version
    assert {k: v for k, v in out.items() if k != "cniVersion"} == \
        {k: v for k, v in prev.items() if k != "cniVersion"}
    assert json.loads(json.dumps(out)) == out


@given(prev_results)
def test_result_before_1_0_names_every_ip_version_and_loses_nothing(
        prev: dict[str, object]) -> None:
    out = result(prev, "0.4.0")
    assert out["cniVersion"] == "0.4.0"
    assert {k: v for k, v in out.items() if k not in ("cniVersion", "ips")} == \
        {k: v for k, v in prev.items() if k not in ("cniVersion", "ips")}
    for mine, theirs in zip(out["ips"], prev["ips"], strict=True):  # type: ignore[call-overload]
        assert {k: v for k, v in mine.items() if k != "version"} == \
            {k: v for k, v in theirs.items() if k != "version"}
        assert mine["version"] == theirs.get("version", "6" if ":" in theirs["address"] else "4")
