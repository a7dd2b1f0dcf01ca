"""The generation token proves "nothing committed since", per boot and per namespace."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.kernel.conftest import Netns

pytestmark = pytest.mark.kernel

PROBE = """
import json, subprocess
from nftnet.nft.generation import after_one_commit, generation
nft = lambda cmd: subprocess.run(["nft", cmd], check=True)
t0 = generation()
nft("add table ip probe_a")
one = after_one_commit(t0)
t1 = generation()
nft("add table ip probe_b"); nft("add table ip probe_c")
two = after_one_commit(t1)
print(json.dumps([t0, one, t1, two, generation()]))
"""


def test_token_counts_commits(netns: Netns) -> None:
    t0, one, t1, two, now = json.loads(netns.run(sys.executable, "-c", PROBE))
    assert t0 and t1 and now
    boot, ns, gen = t0.split(":")
    assert t1 == f"{boot}:{ns}:{int(gen) + 1}"
    assert one == t1  # exactly one commit: nftnet may trust the table as it left it
    assert two is None  # another commit came between: unknown


def test_token_differs_per_namespace(netns: Netns) -> None:
    code = "from nftnet.nft.generation import generation; print(generation())"
    inside = netns.run(sys.executable, "-c", code).strip()
    other = Netns()
    subprocess.run(["ip", "netns", "add", other.name], check=True)
    try:
        assert other.run(sys.executable, "-c", code).strip().split(":")[1] != \
            inside.split(":")[1]
    finally:
        subprocess.run(["ip", "netns", "del", other.name], check=False)
