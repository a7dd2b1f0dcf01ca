"""A config document: text read within a size limit, to data (JSON or YAML) and, for line
numbers, YAML's node tree.

Whatever a file holds ends in data or a ConfigError, never a traceback, and costs no more
memory or time than a file of the size limit: bytes are read up to the limit, not to the end;
YAML aliases may not expand the document past ``MAX_VALUES``; libyaml stops at a nesting depth
of 1,000 and the json module at the recursion limit. A key given twice in one mapping is an
error, as an unknown key is.
"""

from __future__ import annotations

import json
import sys
from functools import cache
from typing import TYPE_CHECKING, Any

from nftnet.errors import ConfigError, shown

if TYPE_CHECKING:
    import yaml

MAX_BYTES = 64 * 2**20
# Values (keys, items, scalars) after YAML aliases expand: what a document of MAX_BYTES
# without aliases holds at most, so that an alias costs nothing a large file does not.
MAX_VALUES = 10_000_000
_MERGE = "tag:yaml.org,2002:merge"

Path_ = tuple[str | int, ...]


def format_path(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def read_text(path: str) -> str:
    """The text of file ``path`` ("-": standard input), read up to ``MAX_BYTES`` and not a
    byte further (/dev/zero has no end and stat gives its size as 0); ConfigError if it is
    larger, unreadable or not UTF-8."""
    try:
        if path == "-":
            if sys.stdin is None:
                raise ConfigError(["-: there is no standard input"])
            data = sys.stdin.buffer.read(MAX_BYTES + 1)
        else:
            with open(path, "rb") as f:
                data = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise ConfigError([f"{path}: cannot read: {e.strerror}"]) from None
    if len(data) > MAX_BYTES:
        raise ConfigError([f"{path}: larger than {MAX_BYTES // 2**20} MiB, the limit for a "
                           "config file"])
    try:
        return data.decode()
    except UnicodeDecodeError as e:
        raise ConfigError([f"{path}: not UTF-8 text (byte {e.start}: {e.reason})"]) from None


def parse(text: str, source: str) -> tuple[Any, yaml.Node | None]:
    """The document's data, and its node tree where YAML read it (``node_tree`` builds one
    for a JSON document when an error needs line numbers)."""
    # JSON is YAML too, but the json module reads a large generated config far faster.
    try:
        return _json(text), None
    except _NotJson as e:
        duplicate = e.duplicate
    data, root = _yaml_document(text, source)
    if duplicate is not None:  # YAML read it without the key twice: say so without a line
        raise ConfigError([f"{source}: key {shown(duplicate)} is given twice in one mapping"])
    return data, root


class _NotJson(Exception):
    def __init__(self, duplicate: str | None = None) -> None:
        self.duplicate = duplicate


class _DuplicateKey(Exception):
    pass


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) < len(pairs):
        raise _DuplicateKey(next(k for i, (k, _) in enumerate(pairs)
                                 if any(k == other for other, _ in pairs[:i])))
    return out


def _json(text: str) -> Any:
    """The document as JSON; _NotJson where the json module cannot read it (not JSON, nested
    past the recursion limit, a key twice): YAML then reads it and says where."""
    if not text.lstrip().startswith("{"):
        raise _NotJson
    try:
        return json.loads(text, object_pairs_hook=_unique)
    except _DuplicateKey as e:
        raise _NotJson(e.args[0]) from None
    except (ValueError, RecursionError):
        raise _NotJson from None


@cache
def _yaml() -> tuple[Any, Any]:
    """The yaml module and a loader on its fastest safe one, imported on first use: a JSON
    config, read by the json module, spares the ~10 ms of yaml's import. The loader records
    keys given twice, and turns a scalar Python cannot make (``2001-02-30``, an int of 5,000
    digits) into a YAMLError with its line."""
    import yaml

    class Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
        def __init__(self, stream: str) -> None:
            super().__init__(stream)
            self.duplicates: list[tuple[yaml.Node, yaml.Node, yaml.Node]] = []
            self._checked: set[int] = set()

        def flatten_mapping(self, node: yaml.MappingNode) -> None:
            # Every mapping passes here before it is built, and before merge keys (<<)
            # rewrite it, as a mapping or as what another one merges.
            if id(node) not in self._checked:
                self._checked.add(id(node))
                self.duplicates += _duplicates(node)
            super().flatten_mapping(node)

        def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
            try:
                return super().construct_object(node, deep)
            except (ValueError, OverflowError) as e:
                raise yaml.constructor.ConstructorError(
                    None, None, f"cannot read this value: {e}", node.start_mark) from None

    return yaml, Loader


def _yaml_document(text: str, source: str) -> tuple[Any, yaml.Node | None]:
    pyyaml, loader_class = _yaml()
    loader = loader_class(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, None
        # No "&", no anchor, no alias: a tree no larger than its text.
        if "&" in text and (problem := _alias_problem(root, source)):
            raise ConfigError([problem])
        data = loader.construct_document(root)
        if loader.duplicates:
            raise ConfigError(_duplicate_problems(root, loader.duplicates, source))
        return data, root
    except pyyaml.YAMLError as e:
        raise ConfigError([_yaml_error(e, source)]) from None
    except RecursionError:  # the pure-Python composer, where libyaml is missing
        raise ConfigError([f"{source}: not valid YAML or JSON: nested too deeply"]) from None
    finally:
        loader.dispose()


def _yaml_error(e: yaml.YAMLError, source: str) -> str:
    mark = getattr(e, "problem_mark", None)
    if mark is None:
        return f"{source}: not valid YAML or JSON: {e}"
    what = ", ".join(p for p in (getattr(e, "context", None), getattr(e, "problem", None)) if p)
    return f"{source}:{mark.line + 1}: not valid YAML or JSON: {what} (column {mark.column + 1})"


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node.value, str):  # a scalar
        return []
    return [n for pair in node.value for n in pair] if node.id == "mapping" else node.value


def _duplicate_problems(root: yaml.Node, found: list[tuple[yaml.Node, yaml.Node, yaml.Node]],
                        source: str) -> list[str]:
    paths = _paths(root)
    return [f"{source}:{key.start_mark.line + 1}: {format_path((*paths[id(node)], key.value))}:"
            f" duplicate key (first at line {first.start_mark.line + 1})"
            for node, key, first in sorted(found, key=lambda f: f[1].start_mark.index)]


def _duplicates(node: yaml.MappingNode) -> list[tuple[yaml.Node, yaml.Node, yaml.Node]]:
    """(mapping, key, its first occurrence) for each scalar key given twice; merge keys
    (``<<``) may repeat, and what they merge may be overridden."""
    out = []
    seen: dict[tuple[str, str], yaml.Node] = {}
    for key, _ in node.value:
        if isinstance(key.value, str) and key.tag != _MERGE:
            first = seen.setdefault((key.tag, key.value), key)
            if first is not key:
                out.append((node, key, first))
    return out


def _alias_problem(root: yaml.Node, source: str) -> str | None:
    """Why the aliases (merge keys too) of the document cannot be expanded, or None: values
    counted bottom-up, each node once, so that counting costs no more than the nodes."""
    size: dict[int, int] = {}  # values under a collection (itself too), aliases expanded
    open_: set[int] = set()  # collections being counted: met again below itself, a loop
    stack: list[tuple[yaml.Node, list[yaml.Node] | None]] = [(root, None)]
    while stack:
        node, children = stack.pop()
        if children is not None:  # every child counted
            open_.discard(id(node))
            size[id(node)] = 1 + sum(size.get(id(c), 1) for c in children)
            if size[id(node)] > MAX_VALUES:
                return f"{_where(root, node, source)}: aliases expand this to more than " \
                       f"{MAX_VALUES:,} values"
        elif id(node) in open_:
            return f"{_where(root, node, source)}: an alias inside its own anchor"
        elif id(node) not in size:
            children = _children(node)
            open_.add(id(node))
            stack.append((node, children))
            stack += [(c, None) for c in children if not isinstance(c.value, str)]
    return None


def _paths(root: yaml.Node) -> dict[int, Path_]:
    """The path of every node, by id, as first reached (for messages only)."""
    paths: dict[int, Path_] = {id(root): ()}
    stack = [root]
    while stack:
        node = stack.pop()
        path = paths[id(node)]
        if node.id == "mapping":
            steps = [(k, path) for k, _ in node.value] + [
                (v, (*path, k.value if isinstance(k.value, str) else "?")) for k, v in node.value]
        else:
            steps = [(c, (*path, i)) for i, c in enumerate(_children(node))]
        for child, at in steps:
            if id(child) not in paths:
                paths[id(child)] = at
                stack.append(child)
    return paths


def _where(root: yaml.Node, node: yaml.Node, source: str) -> str:
    return f"{source}:{node.start_mark.line + 1}: {format_path(_paths(root)[id(node)]) or '(top)'}"


def node_tree(text: str) -> yaml.Node | None:
    """YAML's node tree of a document the json module read, for line numbers; None where
    YAML cannot read it."""
    pyyaml, loader_class = _yaml()
    try:
        return pyyaml.compose(text, Loader=loader_class)  # type: ignore[no-any-return]
    except (pyyaml.YAMLError, RecursionError):
        return None


def line_of(node: yaml.Node | None, path: Path_) -> int | None:
    """The line (1-based) of the deepest node along ``path`` that exists in the document;
    of a key given more than once (merged, then set), the last, which is the one that counts."""
    if node is None:
        return None
    pyyaml, _ = _yaml()
    line = node.start_mark.line + 1
    for part in path:
        if isinstance(node, pyyaml.MappingNode):
            node = next((v for k, v in reversed(node.value) if k.value == part), None)
        elif isinstance(node, pyyaml.SequenceNode) and isinstance(part, int):
            node = node.value[part] if part < len(node.value) else None
        else:
            node = None
        if node is None:
            break
        line = node.start_mark.line + 1
    return line
