"""The kernel proves FakeNft and FakeScratch: the same batches, sent to both, leave the same
listings, commits and refusals; the same user rules parse to the same JSON and text."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nftnet import names as N
from nftnet.compile import HostFacts, compile_config
from nftnet.compile import expr as E
from nftnet.config.load import parse_config
from nftnet.nft import scratch
from nftnet.nft.backend import RuleProblem
from nftnet.nft.fake import FakeNft, FakeScratch
from nftnet.nft.fake_text import parse_rule
from nftnet.nft.objects import Chain, Elements, Json, Rule, Set, Table
from nftnet.nft.transaction import Transaction
from nftnet.runtime import _elements_tx
from tests.kernel.conftest import Netns
from tests.kernel.replay import normalised, ranks_of, step

pytestmark = pytest.mark.kernel
ROOT = Path(__file__).resolve().parents[2]
CONFIG: dict[str, Any] = {
    "version": 1,
    "networks": {"front": {"bridge": "br-front", "subnets": ["172.31.1.0/24", "fd00:1::/64"]},
                 "back": {"subnet": "172.31.2.0/24", "icc": False, "internal": True}},
    "endpoints": {"web": {"network": "front", "ipv4": "172.31.1.10", "ipv6": "fd00:1::10",
                          "publish": ["8080:80", "127.0.0.1:9000-9001:9000-9001/udp"]}},
}
# Within fake_text.py's subset of nft.
USER_RULES = ['iifname "eth0" tcp dport 22 counter drop', "ip saddr 10.0.0.0/8 udp sport 53 return",
              'meta l4proto tcp oifname != "br-front" accept', "ip6 daddr fd00:1::10 jump icc-off",
              "ip saddr @subnets4 meta nfproto ipv4 continue", "ip daddr != 10.1.2.3 goto icc-off"]


class Kernel:
    """``step`` on LibNft in a child process inside the namespace."""

    def __init__(self, ns: Netns) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns.name, sys.executable, "-m", "tests.kernel.replay"],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def step(self, batch: Json) -> dict[str, Any]:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(batch) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())  # type: ignore[no-any-return]


@pytest.fixture
def kernel(netns: Netns) -> Iterator[Kernel]:
    k = Kernel(netns)
    try:
        yield k
    finally:
        assert k.proc.stdin
        k.proc.stdin.close()
        k.proc.wait(timeout=30)


def same(kernel: dict[str, Any], fake: dict[str, Any], label: str) -> None:
    assert kernel["refused"] == fake["refused"], label
    assert kernel == fake, label


def compiled(user_rules: list[list[Any]] | None = None) -> Json:
    config = parse_config(json.dumps(CONFIG))
    return compile_config(config, HostFacts(True, False), user_rules).to_json()


def tx(*ops: tuple[str, Any]) -> Json:
    out = Transaction()
    for verb, obj in ops:
        getattr(out, verb)(obj)
    return out.to_json()


def sequence() -> list[tuple[str, Json]]:
    """What apply, runtime changes, restore and teardown send, with refused batches between."""
    extra = parse_config(json.dumps({**CONFIG, "endpoints": {"web": {
        **CONFIG["endpoints"]["web"], "publish": ["8090:90"]}}}))
    maps = [m for _, _, m in extra.published]
    taken = Elements(N.PUBANY_ADDR.format(v=4), ([E.concat_value("tcp", 8080), "172.31.1.99"],))
    recreate = Chain(N.FILTER_FORWARD)
    return [
        ("apply", compiled()),
        ("rules by hand", tx(*(("add", Rule(N.USER_CHAIN, tuple(parse_rule(r))))
                               for r in USER_RULES))),
        ("apply again, keeping them", compiled()),
        ("publish", _elements_tx(maps, "add").to_json()),
        ("publish again: no commit", _elements_tx(maps, "add").to_json()),
        ("unpublish", _elements_tx(maps, "delete").to_json()),
        ("unpublish again", _elements_tx(maps, "delete").to_json()),
        ("a port taken", tx(("add", taken))),
        ("a rule to a missing chain", tx(("add", Rule("nosuch", (E.ACCEPT,))))),
        ("a good step, then a refused one", tx(*_elements_tx(maps, "add").ops,
                                               *_elements_tx(maps, "delete").ops,
                                               *_elements_tx(maps, "delete").ops)),
        ("a jump to a base chain", tx(("add", Rule(N.USER_CHAIN, (E.jump(N.FILTER_FORWARD),))))),
        ("a set in use deleted", tx(("delete", Set(N.MASQUERADE.format(v=4), ("ipv4_addr",))))),
        ("restore: a chain made again", tx(("flush", recreate), ("delete", recreate))),
        ("restore: converge", compiled()),
        ("user_rules", compiled([parse_rule(r) for r in USER_RULES[:2]])),
        ("teardown", tx(("delete", Table()))),
        ("teardown again", tx(("delete", Table()))),
        ("a table", tx(("add", Table()))),
        ("the table again: no commit", tx(("add", Table()))),
    ]


def test_the_kernel_and_the_fake_agree_step_by_step(kernel: Kernel) -> None:
    fake = FakeNft()
    for label, batch in sequence():
        same(kernel.step(batch), step(fake, batch), label)


ELEMENTS = {  # a map, a set and an interval set, and elements for them
    "m": (Set("m", ("inet_proto", "inet_service"), "ipv4_addr"),
          st.builds(lambda p, port, ip: [E.concat_value(p, port), f"10.0.0.{ip}"],
                    st.sampled_from(["tcp", "udp"]), st.integers(80, 82), st.integers(1, 2))),
    "s": (Set("s", ("ifname",)), st.sampled_from(["a", "b", "c"])),
    "iv": (Set("iv", ("ipv4_addr",), interval=True), st.sampled_from(
        ["10.0.0.5", "10.0.1.0/24", "10.0.0.0/16", "10.0.0.128/25", "10.0.0.0/24"]).map(
        lambda t: E.prefix(ip_network(t)) if "/" in t else t)),
}
COMMAND = st.sampled_from(sorted(ELEMENTS)).flatmap(lambda name: st.tuples(
    st.sampled_from(["add", "delete"]), st.just(name),
    st.lists(ELEMENTS[name][1], min_size=1, max_size=3, unique_by=json.dumps)))


def intervals_once(cmds: list[tuple[str, str, list[Any]]]) -> bool:
    """No interval twice in one batch: libnftables keeps a copy of each in its cache, so that
    one delete leaves one behind (which FakeNft does not model; nftnet never does it)."""
    seen = [json.dumps(e) for _, name, items in cmds if name == "iv" for e in items]
    return len(seen) == len(set(seen))


BATCH = st.lists(COMMAND, min_size=1, max_size=3).filter(intervals_once)


def test_random_element_changes_agree(kernel: Kernel) -> None:
    """Adds and deletes of elements, a few commands per batch: refused or applied, and what
    then is listed, the same on both."""
    reset = tx(("add", Table()), ("delete", Table()), ("add", Table()),
               *(("add", s) for s, _ in ELEMENTS.values()))

    @settings(max_examples=50, deadline=None)
    @given(st.lists(BATCH, min_size=1, max_size=6))
    def agree(batches: list[list[tuple[str, str, list[Any]]]]) -> None:
        fake = FakeNft()
        same(kernel.step(reset), step(fake, reset), "reset")
        for cmds in batches:
            batch = tx(*((verb, Elements(name, tuple(items))) for verb, name, items in cmds))
            same(kernel.step(batch), step(fake, batch), json.dumps(cmds))

    agree()


def test_fake_scratch_parses_as_nft_does() -> None:
    """User rules in fake_text.py's subset, and ones nft refuses for a reason the fake sees."""
    rules = [*USER_RULES, "ip saddr @nosuch drop", "tcp dport 70000 drop", "jump nosuch",
             "jump filter-forward"]
    skeleton = compiled([])
    def described(result: tuple[list[Json], dict[int, RuleProblem]]
                  ) -> tuple[list[Json], dict[int, str]]:
        parsed, problems = result
        return parsed, {i: p.describe(rules[i]) for i, p in problems.items()}

    want = described(scratch.parse_user_rules(skeleton, rules))
    assert described(FakeScratch().parse_user_rules(skeleton, rules)) == want
    fake, kernel = FakeScratch().listing(skeleton), scratch.listing(skeleton)
    assert normalised(fake, ranks_of(fake)) == normalised(kernel, ranks_of(kernel))
