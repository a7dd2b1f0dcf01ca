"""`nftnet render` needs no root: run it as nobody (user rules and --format nft go through nft
in a private, unprivileged namespace)."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = "/usr/bin/python3"
CONFIG = """\
version: 1
networks:
  front: {subnet: 172.31.1.0/24}
endpoints:
  web: {network: front, ipv4: 172.31.1.10, publish: ["8080:80"]}
user_rules:
  - 'iifname "eth0" ip saddr != 192.168.1.1 drop'
"""


def as_nobody(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run nftnet as uid 65534 with the system interpreter (root's may be unreadable to it)."""
    path = os.pathsep.join([str(ROOT), *site.getsitepackages()])
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           "env", f"PYTHONPATH={path}", SYSTEM_PYTHON, "-m", "nftnet",
                           "--state-dir", str(cwd / "state"), *args],
                          capture_output=True, text=True, cwd=cwd, timeout=60, check=False)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to become nobody")
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import sys; print(sys.version_info[:2])"],
                           capture_output=True, text=True, check=False)
    if probe.stdout.strip() != str(sys.version_info[:2]):
        pytest.skip("no system python of the same version to run as nobody")
    tmp_path.chmod(0o777)
    (tmp_path / "c.yaml").write_text(CONFIG)
    (tmp_path / "c.yaml").chmod(0o644)
    return tmp_path


def test_render_json_and_nft_as_nobody(workdir: Path) -> None:
    as_json = as_nobody("render", "-f", "c.yaml", cwd=workdir)
    assert as_json.returncode == 0, as_json.stderr
    assert '"chain": "user"' in as_json.stdout
    as_nft = as_nobody("render", "-f", "c.yaml", "--format", "nft", cwd=workdir)
    assert as_nft.returncode == 0, as_nft.stderr
    assert 'iifname "eth0" ip saddr != 192.168.1.1 drop' in as_nft.stdout
    assert "tcp . 8080 : 80" in as_nft.stdout


@pytest.mark.parametrize("owner", [0, 65534])
def test_render_as_nobody_where_the_state_is_unreadable_or_refused(workdir: Path,
                                                                  owner: int) -> None:
    """Root's state directory (0700: nobody cannot read it), or one anyone may write (refused
    even to its owner): render goes on without the state."""
    state = workdir / "state"
    state.mkdir()
    (state / "state.json").write_text('{"config": {}}')
    os.chown(state, owner, owner)
    state.chmod(0o700 if owner == 0 else 0o777)
    proc = as_nobody("render", "-f", "c.yaml", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert '"chain": "user"' in proc.stdout
