"""LibNft against the kernel: "absent" is decided by a listing that succeeds, not by wording."""

from __future__ import annotations

import json
import sys

import pytest

from tests.kernel.conftest import Netns

pytestmark = pytest.mark.kernel

PROBE = """
import json
from nftnet.errors import TransactionError
from nftnet.nft.libnft import LibNft

nft = LibNft()

def seen():
    return [nft.list(), nft.list("chain inet nftnet user"), nft.chain_rules_text("user")]

def refused(what):
    try:
        nft.list(what)
    except TransactionError as e:
        return str(e).splitlines()[0]

out = seen()
nft.run_text("add table inet nftnet")
out += seen()
nft.run_text("add chain inet nftnet user; add rule inet nftnet user accept")
out += seen()
out += [refused("chain inet nftnet 'bad name'"), refused("table inet"), nft.list("chains")]
print(json.dumps(out))
"""


def test_absent_is_none_and_other_failures_are_errors(netns: Netns) -> None:
    out = json.loads(netns.run(sys.executable, "-c", PROBE))
    assert out[:3] == [None, None, None]  # no table
    assert [o["table"]["name"] for o in out[3]] == ["nftnet"] and out[4:6] == [None, None]
    (handle, text), = out[8]
    assert text == "accept" and [o["rule"]["handle"] for o in out[7] if "rule" in o] == [handle]
    assert out[9].startswith("cannot list chain inet nftnet 'bad name'")
    assert out[10].startswith("cannot list table inet")
    assert [o["chain"]["name"] for o in out[11]] == ["user"]
