"""Throwaway network namespaces for kernel tests; always deleted, even on failure."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest


class Netns:
    def __init__(self) -> None:
        self.name = f"nk{uuid.uuid4().hex[:8]}"

    def run(self, *cmd: str, check: bool = True, input: str | None = None) -> str:
        proc = subprocess.run(["ip", "netns", "exec", self.name, *cmd], capture_output=True,
                              text=True, input=input, timeout=120, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)}: {proc.stderr}")
        return proc.stdout

    def __str__(self) -> str:
        return self.name


def _throwaway() -> Iterator[Netns]:
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    ns = Netns()
    subprocess.run(["ip", "netns", "add", ns.name], check=True)
    try:
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns.name], check=False)


netns = pytest.fixture(_throwaway, name="netns")
# a second namespace for a test that needs one besides ``netns`` (a container's)
container = pytest.fixture(_throwaway, name="container")
