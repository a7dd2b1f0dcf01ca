"""The shell completion scripts in contrib/completions are what click generates today, and
they complete nftnet's commands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

COMPLETIONS = Path(__file__).resolve().parents[2] / "contrib/completions"
NFTNET = Path(sys.executable).with_name("nftnet")  # the console script of this environment

pytestmark = pytest.mark.skipif(not NFTNET.exists(), reason=f"no {NFTNET} (pip install .)")


def complete(**env: str) -> str:
    return subprocess.run([str(NFTNET)], env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=60, check=True).stdout


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_scripts_are_current(shell: str) -> None:
    assert (COMPLETIONS / f"nftnet.{shell}").read_text() == complete(
        _NFTNET_COMPLETE=f"{shell}_source"), "run contrib/completions/generate.sh"


def test_bash_completes_commands_and_options() -> None:
    words = complete(_NFTNET_COMPLETE="bash_complete", COMP_WORDS="nftnet re", COMP_CWORD="1")
    assert words.split() == ["plain,render", "plain,restore"]
    words = complete(_NFTNET_COMPLETE="bash_complete", COMP_WORDS="nftnet teardown --",
                     COMP_CWORD="2")
    assert {"plain,--yes", "plain,--keep-bridges"} <= set(words.split())
