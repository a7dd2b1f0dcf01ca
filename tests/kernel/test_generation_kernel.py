"""The generation token proves "nothing committed since", per boot and per namespace."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from nftnet.nft.generation import Reader, follows, generation
from tests.kernel.conftest import Netns
from tests.lab import in_netns

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


def test_a_reader_counts_commits_on_its_socket_in_the_callers_namespace(
        netns: Netns, container: Netns) -> None:
    """The daemon's reader (one socket kept open) reads what a fresh socket reads, and
    follows the calling thread into another namespace."""
    reader = Reader()
    try:
        t0 = in_netns(netns.name, reader.read)
        netns.run("nft", "add table ip probe_a")
        t1 = in_netns(netns.name, reader.read)
        assert t1 is not None and follows(t0, t1) == t1
        elsewhere = in_netns(container.name, reader.read)
        assert elsewhere == in_netns(container.name, generation) != t1
        assert in_netns(netns.name, reader.read) == t1
    finally:
        reader.close()
