"""Functional core, imperative shell: the pure layers import nothing that touches the host."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PURE = ["nftnet/compile", "nftnet/config", "nftnet/desired", "nftnet/nft/objects.py",
        "nftnet/nft/transaction.py", "nftnet/records.py",
        "nftnet/nft/backend.py", "nftnet/nft/fake.py", "nftnet/nft/fake_tables.py",
        "nftnet/nft/fake_sets.py", "nftnet/nft/fake_text.py", "nftnet/link/model.py",
        "nftnet/link/backend.py", "nftnet/link/fake.py",
        "nftnet/drivers/cni/spec.py", "nftnet/drivers/cni/request.py",
        "nftnet/drivers/cni/engine.py", "nftnet/drivers/cni/plugin.py",
        "nftnet/drivers/docker/translate.py", "nftnet/drivers/docker/events.py"]
FORBIDDEN = {"nftables", "pyroute2", "subprocess", "os", "socket"}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module.split(".")[0])
    return out


@pytest.mark.parametrize("target", PURE)
def test_pure_layers_do_no_io(target: str) -> None:
    path = ROOT / target
    for file in [path] if path.is_file() else sorted(path.rglob("*.py")):
        assert not imports(file) & FORBIDDEN, file


def test_only_libnft_imports_nftables() -> None:
    users = [p.relative_to(ROOT).as_posix() for p in (ROOT / "nftnet").rglob("*.py")
             if "nftables" in imports(p)]
    assert users == ["nftnet/nft/libnft.py"]


def runtime_imports(path: Path) -> set[str]:
    """The nftnet modules ``path`` imports when it runs (not those under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
            and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
            for n in ast.walk(node)}
    out = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out |= ({f"nftnet.{a.name}" for a in node.names} if node.module == "nftnet"
                    else {node.module})
    return {m for m in out if m.split(".")[0] == "nftnet"}


FACADE = ("nftnet.api", "nftnet.results", "nftnet.errors", "nftnet.desired.plan",
          "nftnet.config")


@pytest.mark.parametrize("layer", ["nftnet/cli", "nftnet/drivers"])
def test_cli_and_drivers_import_only_the_facade_and_the_model(layer: str) -> None:
    """The CLI and the drivers are thin adapters: they reach the engine through nftnet.api
    only (besides the pure model and formatting), so every driver gets the same engine."""
    own = layer.replace("/", ".")
    for file in sorted((ROOT / layer).rglob("*.py")):
        others = {m for m in runtime_imports(file) if not m.startswith(own)}
        assert not {m for m in others if not m.startswith(FACADE)}, file


def test_nftnet_never_imports_compat() -> None:
    assert not [p for p in (ROOT / "nftnet").rglob("*.py") if "compat" in imports(p)]


def loaded(code: str, modules: tuple[str, ...]) -> list[str]:
    """Which of ``modules`` a fresh interpreter has imported after running ``code``."""
    probe = f"import sys\n{code}\nprint(sorted(m for m in {modules!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    return ast.literal_eval(out.stdout.strip())  # type: ignore[no-any-return]


def test_publish_path_imports_no_heavy_library() -> None:
    """`port publish` is what scripts run most: its start-up must not pay for marshmallow
    (tens of milliseconds for one regex), pyroute2 or the YAML loader (see cli/main.py)."""
    code = ("from nftnet.cli.main import cli; import click; "
            "ctx = click.Context(cli); group = cli.get_command(ctx, 'port'); "
            "group.get_command(ctx, 'publish'); import nftnet.runtime")
    assert loaded(code, ("marshmallow", "pyroute2", "yaml", "compat")) == []


def test_apply_of_a_json_config_imports_no_library_it_does_not_use() -> None:
    """Generated configs are JSON: read by json, they spare yaml's import; entry points are
    looked up only for user rules in another language; pyroute2 only when a link changes
    (tests/kernel/test_bridges_kernel.py)."""
    code = ("import nftnet.apply, nftnet.cli.commands; "
            "from nftnet.config.load import parse_config; "
            "parse_config('{\"version\": 1, \"networks\": {\"n\": {\"subnet\": "
            "\"10.1.0.0/24\"}}, \"user_rules\": [\"tcp dport 22 drop\"]}')")
    assert loaded(code, ("yaml", "importlib.metadata", "pyroute2")) == []


def test_the_links_backend_loads_the_kernel_modules_only_when_called() -> None:
    """KernelLinks imports link/bridges.py, link/veth.py (and with it pyroute2) on the first
    call that needs them: the engine may hold one on every path, `port publish` too."""
    code = ("from nftnet.link.backend import KernelLinks, LinkBackend; "
            "from nftnet.link.fake import FakeLinks; KernelLinks(); FakeLinks()")
    assert loaded(code, ("pyroute2", "nftnet.link.bridges", "nftnet.link.veth",
                         "nftnet.link.sysctl", "socket")) == []


def test_every_command_is_listed_and_loads() -> None:
    from click import Context

    from nftnet.cli.main import COMMANDS, cli

    ctx = Context(cli)
    names = cli.list_commands(ctx)
    assert set(COMMANDS) | {"import", "export"} == set(names)
    assert all(cli.get_command(ctx, n) is not None for n in names)
    assert cli.get_command(ctx, "no-such-command") is None


def test_cni_plugin_imports_no_heavy_library() -> None:
    """Runtimes run nftnet-cni for every container and probe it with VERSION: its own code
    pays for none of click, marshmallow, pyroute2, yaml, libnftables (the engine imports what
    a change needs)."""
    code = ("import io; from nftnet.drivers.cni.main import main; "
            "main(None, {'CNI_COMMAND': 'VERSION'}, io.BytesIO(), io.StringIO(), io.StringIO())")
    assert loaded(code, ("click", "marshmallow", "pyroute2", "yaml", "nftables")) == []
