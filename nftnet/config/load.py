"""Reading a config file: YAML (or JSON, which YAML reads too) to a validated ``Config``.

Every problem is collected, not just the first, and each names its field path and line.
How the text becomes data, within limits, is document.py's part.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from marshmallow import Schema, ValidationError

from nftnet import names
from nftnet.config.checks import check_config
from nftnet.config.document import Path_, format_path, line_of, node_tree, parse, read_text
from nftnet.config.model import Config, Endpoint, Network, Origin
from nftnet.config.rule_languages import Entry, entry_to_nft
from nftnet.config.schema import NAME, EndpointSchema, NetworkSchema, TopSchema, check_ifname
from nftnet.errors import ConfigError

if TYPE_CHECKING:
    import yaml

__all__ = ["format_path", "load_config", "load_entry", "parse_config"]


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


class _Collector:
    """Problems as they are found, each as ``label(path): message``; the label is the file,
    line and field path, or what else names the field to the user (a command's option)."""

    def __init__(self, source: str, root: yaml.Node | None,
                 label: Callable[[Path_], str] | None = None) -> None:
        self.source, self.root = source, root
        self.label = label or self._where
        self.problems: list[str] = []

    def _where(self, path: Path_) -> str:
        line = line_of(self.root, path)
        where = f"{self.source}:{line}: " if line else f"{self.source}: "
        return f"{where}{format_path(path) or '(top level)'}"

    def add(self, path: Path_, message: str) -> None:
        self.problems.append(f"{self.label(path)}: {message}")

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
    data, root = parse(text, source)
    if root is not None:
        return replace(_validate(data, source, root), origin=Origin(source, text))
    try:
        return replace(_validate(data, source), origin=Origin(source, text))
    except ConfigError:
        pass
    # Line numbers need the node tree: build it only to report errors.
    return _validate(data, source, node_tree(text))


def located(origin: Origin | None, problems: list[tuple[Path_, str]]) -> list[str]:
    """Problems found after loading, at their file line as ``parse_config`` gives its own."""
    if origin is None:  # rebuilt from the state: no file to point at
        col = _Collector("", None, lambda path: format_path(path) or "(top level)")
    else:
        col = _Collector(origin.source, node_tree(origin.text))
    for path, message in problems:
        col.add(path, message)
    return col.problems


def _validate(data: Any, source: str, root: yaml.Node | None = None) -> Config:
    col = _Collector(source, root)
    if not isinstance(data, dict):
        raise ConfigError([f"{source}: the config must be a mapping with version: 1"])
    top = col.load(TopSchema(), data, ())
    if top is None:
        raise ConfigError(col.problems)
    networks: dict[str, Network] = {}
    for name, body in _section(col, top["networks"], "networks", NetworkSchema()).items():
        if (net := _network(col, name, body)) is not None:
            networks[name] = net
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


def _network(col: _Collector, name: str, body: dict[str, Any]) -> Network | None:
    """The network of a loaded entry; its default bridge name, nft-NAME, must fit too."""
    body.setdefault("bridge", f"{names.DEFAULT_BRIDGE_PREFIX}{name}")
    try:
        check_ifname(body["bridge"])
    except ValidationError as e:
        col.add(("networks", name, "bridge"), f"{e.messages[0]} (set bridge: explicitly)")
        return None
    return Network(name=name, **body)


def load_config(path: str | Path) -> Config:
    """Read and validate a config file ("-" is standard input)."""
    return parse_config(read_text(str(path)), str(path))


@cache
def _entry_schema(kind: str) -> Schema:
    """The schema of one entry, built once per process: building one deep-copies its fields,
    a third of a runtime change's validation (the daemon validates an entry per change)."""
    return NetworkSchema() if kind == "networks" else EndpointSchema()


def load_entry(kind: str, name: str, data: dict[str, Any],
               label: Callable[[Path_], str] | None = None) -> Network | Endpoint:
    """One network or endpoint (``kind`` "networks" or "endpoints") validated on its own,
    for runtime commands that must not re-validate the whole config; ``label`` names a
    field as the command's user gave it (default: its path)."""
    col = _Collector("runtime", None, label)
    body = _section(col, {name: data}, kind, _entry_schema(kind)).get(name)
    entry: Network | Endpoint | None = None
    if body is not None:
        entry = _network(col, name, body) if kind == "networks" else Endpoint(name=name, **body)
    if entry is None:
        raise ConfigError(col.problems)
    return entry
