"""Whatever a config file holds ends in a Config or a ConfigError naming the file (and the
line and key where there is one): never a traceback, never unbounded memory or time."""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nftnet.config import document
from nftnet.config.load import load_config, parse_config
from nftnet.config.model import Config
from nftnet.errors import ConfigError
from tests.unit.test_config import BASE

GOOD_YAML = yaml.safe_dump(BASE, sort_keys=False)
GOOD_JSON = json.dumps(BASE, indent=1)


def problems(text: str, source: str = "c.yaml") -> str:
    with pytest.raises(ConfigError) as e:
        parse_config(text, source)
    return str(e.value)


def deep(opening: str, closing: str, depth: int) -> str:
    return '{"version": 1, "networks": ' + opening * depth + closing * depth + "}"


@pytest.mark.parametrize(("text", "expected"), [
    (deep("[", "]", 3000), "c.yaml:1: not valid YAML or JSON: "),
    (deep('{"a": ', "}", 3000), "c.yaml:1: not valid YAML or JSON: "),
    (deep("[", "]", 900), "c.yaml:1: networks: Not a valid mapping type"),
    ("version: 1\nnetworks: " + "[" * 3000 + "]" * 3000, "c.yaml:2: not valid YAML or JSON: "),
    ("version: 1\nnetworks:\n  a:\n    mtu: " + "1" * 5000, "c.yaml:4: not valid YAML or JSON: "
     "cannot read this value: Exceeds the limit (4300 digits)"),
    ("version: 1\nnetworks:\n  a:\n    mtu: 2001-02-30", "c.yaml:4: not valid YAML or JSON: "
     "cannot read this value: day is out of range"),
    ("version: 1\nnetworks: !!float x", "c.yaml:2: not valid YAML or JSON: cannot read"),
    ("version: 1\nnetworks: !!binary 'x!'", "c.yaml:2: not valid YAML or JSON: "),
    ("version: 1\nnetworks: !!python/object:os.system {}", "c.yaml:2: not valid YAML"),
    ("version: 1\x00", "c.yaml: not valid YAML or JSON: unacceptable character #x0000"),
    ("version: 1\n---\nversion: 1\n", "c.yaml:2: not valid YAML or JSON: "),
    ("[1, 2]", "c.yaml: the config must be a mapping with version: 1"),
    ("", "c.yaml: the config must be a mapping with version: 1"),
])
def test_documents_that_are_no_config_are_errors(text: str, expected: str) -> None:
    assert expected in problems(text)


@pytest.mark.parametrize(("text", "expected"), [
    ("version: 1\nnetworks:\n  a: {subnet: 10.1.0.0/24}\n  a: {subnet: 10.2.0.0/24}\n",
     "c.yaml:4: networks.a: duplicate key (first at line 3)"),
    ("version: 1\nnetworks:\n  a:\n    subnet: 10.1.0.0/24\n    subnet: 10.2.0.0/24\n",
     "c.yaml:5: networks.a.subnet: duplicate key (first at line 4)"),
    ("version: 1\nversion: 1\n", "c.yaml:2: version: duplicate key (first at line 1)"),
    ('version: 1\nendpoints: {e: {network: a, publish: [{x: 1, x: 2}]}}\n',
     "c.yaml:2: endpoints.e.publish[0].x: duplicate key (first at line 2)"),
    ('{"version": 1,\n "networks": {"a": {"subnet": "10.1.0.0/24"},\n'
     '              "a": {"subnet": "10.2.0.0/24"}}}',
     "c.yaml:3: networks.a: duplicate key (first at line 2)"),
])
def test_a_key_given_twice_is_an_error_with_path_and_line(text: str, expected: str) -> None:
    assert expected in problems(text)


def test_merge_keys_may_be_overridden_and_are_no_duplicates() -> None:
    text = """\
version: 1
networks:
  a:
    subnet: 10.1.0.0/24
    <<: &defaults {icc: false, masquerade: false}
    masquerade: true
  b:
    <<: *defaults
    subnet: 10.2.0.0/24
"""
    config = parse_config(text, "c.yaml")
    a, b = config.networks["a"], config.networks["b"]
    assert (a.icc, a.masquerade, b.icc, b.masquerade) == (False, True, False, False)


def test_a_key_twice_in_an_anchor_merged_before_it_is_built_is_found() -> None:
    """Mappings are built breadth first: y merges d (and rewrites it) before d's own turn."""
    text = "version: 1\nx:\n  deeper:\n    d: &d {icc: false, icc: true}\ny: {<<: *d}\n"
    assert "c.yaml:4: x.deeper.d.icc: duplicate key (first at line 4)" in problems(text)


@pytest.mark.parametrize(("text", "expected"), [
    ("version: 1\nnetworks: &a {x: *a}\n", "c.yaml:2: networks: an alias inside its own anchor"),
    ("version: 1\n" + "l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 12)),
     "aliases expand this to more than 10,000,000 values"),
    ("version: 1\nl0: &l0 {a: 1, b: 2}\n" + "".join(
        f"l{i}: &l{i} {{<<: [*l{i - 1}, *l{i - 1}], k{i}: 1}}\n" for i in range(1, 40)),
     "aliases expand this to more than 10,000,000 values"),
])
def test_aliases_cannot_loop_or_explode(text: str, expected: str) -> None:
    start = time.process_time()
    assert expected in problems(text)
    assert time.process_time() - start < 5


def test_a_json_config_is_read_as_the_same_config_as_yaml() -> None:
    assert parse_config(GOOD_JSON) == parse_config(GOOD_YAML)


def test_a_file_is_read_up_to_the_limit_and_no_further(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(document, "MAX_BYTES", len(GOOD_YAML))
    exact = tmp_path / "exact.yaml"
    exact.write_text(GOOD_YAML)
    assert isinstance(load_config(exact), Config)
    over = tmp_path / "over.yaml"
    over.write_text(GOOD_YAML + "\n")
    with pytest.raises(ConfigError, match=r"over.yaml: larger than 0 MiB, the limit"):
        load_config(over)
    # /dev/zero has no end (and stat says 0 bytes): only a bounded read returns
    with pytest.raises(ConfigError, match="/dev/zero: larger than"):
        load_config("/dev/zero")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"#" * (len(GOOD_YAML) + 1))))
    with pytest.raises(ConfigError, match="-: larger than"):
        load_config("-")
    monkeypatch.setattr(sys, "stdin", None)
    with pytest.raises(ConfigError, match="-: there is no standard input"):
        load_config("-")


def test_the_real_limit_is_64_mib() -> None:
    assert document.MAX_BYTES == 64 * 2**20
    with pytest.raises(ConfigError, match="/dev/zero: larger than 64 MiB, the limit"):
        load_config("/dev/zero")


def test_text_must_be_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(GOOD_YAML.encode() + b"# caf\xe9\n")
    with pytest.raises(ConfigError, match=r"latin1.yaml: not UTF-8 text \(byte \d+"):
        load_config(path)


def outcome(text: str) -> None:
    """The only two outcomes: a Config, or a ConfigError whose every line names the file."""
    try:
        assert isinstance(parse_config(text, "f.yaml"), Config)
    except ConfigError as e:
        assert e.problems
        assert all(p.startswith(("f.yaml:", "f.yaml ")) or p.startswith("f.yaml")
                   for p in e.problems), e.problems


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes_give_a_config_error(data: bytes) -> None:
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return  # read_text refuses it (test_text_must_be_utf8)
    outcome(text)


KEYS = st.sampled_from(["version", "networks", "endpoints", "user_rules", "subnet", "subnets",
                        "bridge", "gateway", "gateway6", "icc", "masquerade", "internal",
                        "host_binding_ipv4", "mtu", "network", "ipv4", "ipv6", "publish",
                        "iptables", "family", "nft", "front", "web", "a", "<<"])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                    st.text(max_size=20), st.sampled_from(
                        [1, "1", "172.31.1.0/24", "fd00:1::/64", "172.31.1.10", "8080:80",
                         "0.0.0.0/0", "::ffff:1.2.3.0/120", "br-front", "-i eth0 -j DROP",
                         "ip", "ip6", "tcp dport 22 drop"]))
DOCS = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=5)), max_leaves=30)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(KEYS, DOCS, max_size=5), st.booleans())
def test_garbage_documents_give_a_config_or_a_config_error(doc: dict, as_json: bool) -> None:
    text = json.dumps(doc) if as_json else yaml.safe_dump(doc)
    outcome(text)


def leaves(node: object, path: tuple = ()) -> list[tuple]:
    if isinstance(node, dict):
        return [path] + [p for k, v in node.items() for p in leaves(v, (*path, k))]
    if isinstance(node, list):
        return [path] + [p for i, v in enumerate(node) for p in leaves(v, (*path, i))]
    return [path]


PATHS = leaves(BASE)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(PATHS), DOCS, st.booleans())
def test_a_good_config_with_any_value_anywhere_gives_a_config_or_an_error(
        path: tuple, value: object, as_json: bool) -> None:
    doc = json.loads(json.dumps(BASE))
    if not path:
        doc = value
    else:
        node = doc
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
    outcome(json.dumps(doc) if as_json else yaml.safe_dump(doc))
