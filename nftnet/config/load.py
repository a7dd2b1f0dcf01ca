"""Reading a config file: YAML (or JSON, which YAML reads too) to a validated ``Config``.

Every problem is collected, not just the first, and each names its field path and line.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from marshmallow import Schema, ValidationError

from nftnet import names
from nftnet.config.checks import check_config
from nftnet.config.model import Config, Endpoint, Network, Origin
from nftnet.config.rule_languages import Entry, entry_to_nft
from nftnet.config.schema import NAME, EndpointSchema, NetworkSchema, TopSchema, check_ifname
from nftnet.errors import ConfigError

if TYPE_CHECKING:
    import yaml

Path_ = tuple[str | int, ...]


def format_path(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _flatten(messages: Any, path: Path_) -> list[tuple[Path_, str]]:
    """marshmallow's nested error messages as (path, message) pairs."""
    if isinstance(messages, dict):
        out: list[tuple[Path_, str]] = []
        for key, sub in messages.items():
            part = int(key) if isinstance(key, int) else str(key)
            out += _flatten(sub, path if key == "_schema" else (*path, part))
        return out
    if isinstance(messages, list):
        return [m for sub in messages for m in _flatten(sub, path)]
    return [(path, str(messages).replace("Unknown field.", "unknown key"))]


def _yaml() -> tuple[Any, Any]:
    """The yaml module and its fastest safe loader, imported on first use: a JSON config, read
    by the json module, spares the ~10 ms of yaml's import."""
    import yaml

    return yaml, getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _line_of(node: yaml.Node | None, path: Path_) -> int | None:
    """The line (1-based) of the deepest node along ``path`` that exists in the document."""
    if node is None:
        return None
    pyyaml, _ = _yaml()
    line = node.start_mark.line + 1
    for part in path:
        if isinstance(node, pyyaml.MappingNode):
            node = next((v for k, v in node.value if k.value == part), None)
        elif isinstance(node, pyyaml.SequenceNode) and isinstance(part, int):
            node = node.value[part] if part < len(node.value) else None
        else:
            node = None
        if node is None:
            break
        line = node.start_mark.line + 1
    return line


class _Collector:
    def __init__(self, source: str, root: yaml.Node | None) -> None:
        self.source, self.root = source, root
        self.problems: list[str] = []

    def add(self, path: Path_, message: str) -> None:
        line = _line_of(self.root, path)
        where = f"{self.source}:{line}: " if line else ""
        self.problems.append(f"{where}{format_path(path) or '(top level)'}: {message}")

    def load(self, schema: Schema, data: Any, path: Path_) -> dict[str, Any] | None:
        try:
            return schema.load(data)  # type: ignore[no-any-return]
        except ValidationError as e:
            for sub, msg in _flatten(e.messages, path):
                self.add(sub, msg)
            return None


def _section(
    col: _Collector, raw: dict[str, Any], key: str, schema: Schema
) -> dict[str, dict[str, Any]]:
    out = {}
    for name, body in (raw or {}).items():
        if not NAME.match(str(name)):
            col.add((key, str(name)), "names are letters, digits, _ . - (not starting with . - _)")
        elif not isinstance(body, dict):
            col.add((key, str(name)), "expected a mapping of settings")
        elif (loaded := col.load(schema, body, (key, str(name)))) is not None:
            out[str(name)] = loaded
    return out


def parse_config(text: str, source: str = "<config>") -> Config:
    """Validate config text; raise ConfigError listing every problem, with line numbers."""
    # JSON is YAML too, but the json module reads a large generated config far faster.
    data = _json_or_none(text)
    if data is None:
        pyyaml, loader = _yaml()
        try:
            data = pyyaml.load(text, Loader=loader)
        except pyyaml.YAMLError as e:
            raise ConfigError([f"{source}: not valid YAML or JSON: {e}"]) from None
    try:
        return replace(_validate(data, source), origin=Origin(source, text))
    except ConfigError:
        pass
    # Line numbers need the node tree: build it only to report errors.
    pyyaml, loader = _yaml()
    return _validate(data, source, pyyaml.compose(text, Loader=loader))


def located(origin: Origin | None, problems: list[tuple[Path_, str]]) -> list[str]:
    """Problems found after loading, at their file line as ``parse_config`` gives its own."""
    root = None
    if origin is not None:
        pyyaml, loader = _yaml()
        root = pyyaml.compose(origin.text, Loader=loader)
    col = _Collector(origin.source if origin else "<config>", root)
    for path, message in problems:
        col.add(path, message)
    return col.problems


def _json_or_none(text: str) -> Any:
    if not text.lstrip().startswith("{"):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _validate(data: Any, source: str, root: yaml.Node | None = None) -> Config:
    col = _Collector(source, root)
    if not isinstance(data, dict):
        raise ConfigError([f"{source}: the config must be a mapping with version: 1"])
    top = col.load(TopSchema(), data, ())
    if top is None:
        raise ConfigError(col.problems)
    networks: dict[str, Network] = {}
    for name, body in _section(col, top["networks"], "networks", NetworkSchema()).items():
        body.setdefault("bridge", f"{names.DEFAULT_BRIDGE_PREFIX}{name}")
        try:
            check_ifname(body["bridge"])
        except ValidationError as e:
            col.add(("networks", name, "bridge"), f"{e.messages[0]} (set bridge: explicitly)")
            continue
        networks[name] = Network(name=name, **body)
    endpoints = {
        name: Endpoint(name=name, **body)
        for name, body in _section(col, top["endpoints"], "endpoints", EndpointSchema()).items()
    }
    written = top["user_rules"]
    config = Config(networks, endpoints, _user_rules(col, written),
                    None if written is None else tuple(written))
    if not col.problems:
        for path, message in check_config(config):
            col.add(path, message)
    if col.problems:
        raise ConfigError(col.problems)
    return config


def _user_rules(col: _Collector, entries: list[Entry] | None) -> tuple[str, ...] | None:
    """The entries as nft text; each one that cannot be translated is a problem at its path."""
    if entries is None:
        return None
    out = []
    for i, entry in enumerate(entries):
        try:
            out.append(entry_to_nft(entry))
        except ValueError as e:
            col.add(("user_rules", i), str(e))
    return tuple(out)


def load_config(path: str | Path) -> Config:
    """Read and validate a config file ("-" is standard input)."""
    p = Path(path)
    try:
        text = p.read_text() if str(path) != "-" else sys.stdin.read()
    except OSError as e:
        raise ConfigError([f"{path}: cannot read: {e.strerror}"]) from None
    return parse_config(text, str(path))


def load_entry(kind: str, name: str, data: dict[str, Any]) -> Network | Endpoint:
    """One network or endpoint (``kind`` "networks" or "endpoints") validated on its own,
    for runtime commands that must not re-validate the whole config."""
    col = _Collector("runtime", None)
    body = _section(col, {name: data}, kind, NetworkSchema() if kind == "networks"
                    else EndpointSchema()).get(name)
    if body is None:
        raise ConfigError(col.problems)
    if kind == "networks":
        body.setdefault("bridge", f"{names.DEFAULT_BRIDGE_PREFIX}{name}")
        return Network(name=name, **body)
    return Endpoint(name=name, **body)
