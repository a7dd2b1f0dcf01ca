"""FakeNft and FakeScratch without a kernel: atomic batches, the generation, the refusals the
engine meets, listings the engine reads (tests/kernel/test_fake_kernel.py proves them)."""

from __future__ import annotations

import inspect
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nftnet import coexist
from nftnet import names as N
from nftnet.check import _Index
from nftnet.compile import HostFacts, compile_config
from nftnet.compile import expr as E
from nftnet.config.load import parse_config
from nftnet.errors import TransactionError
from nftnet.nft import scratch
from nftnet.nft.backend import USER_CHAIN_SPEC, NftBackend, Scratch, user_chain_rules
from nftnet.nft.fake import FakeNft, FakeScratch
from nftnet.nft.generation import follows
from nftnet.nft.libnft import LibNft
from nftnet.nft.objects import Chain, Elements, Json, NftObject, Rule, Set, Table
from nftnet.nft.transaction import Transaction

CONFIG = {"version": 1, "networks": {"n": {"subnet": "10.1.0.0/24", "icc": False}},
          "endpoints": {"e": {"network": "n", "ipv4": "10.1.0.2", "publish": ["8080:80"]}}}
PORT = (E.concat_value("tcp", 8080), "10.1.0.2")
PUBANY = N.PUBANY_ADDR.format(v=4)


def tx(*ops: tuple[str, NftObject]) -> Json:
    out = Transaction()
    for verb, obj in ops:
        getattr(out, verb)(obj)
    return out.to_json()


def applied() -> FakeNft:
    nft = FakeNft()
    nft.run(compile_config(parse_config(json.dumps(CONFIG)), HostFacts()).to_json())
    return nft


@pytest.mark.parametrize(("impl", "proto"), [(LibNft, NftBackend), (FakeNft, NftBackend),
                                             (FakeScratch, Scratch), (scratch, Scratch)])
def test_each_implements_its_protocol(impl: Any, proto: type) -> None:
    methods = {n: m for n, m in vars(proto).items()
               if inspect.isfunction(m) and not n.startswith("_")}
    assert len(methods) >= 2
    for name, method in methods.items():
        want = list(inspect.signature(method).parameters.values())
        got = list(inspect.signature(getattr(impl, name)).parameters.values())
        if inspect.isclass(impl):
            assert [(p.name, p.default) for p in got] == [(p.name, p.default) for p in want]
        else:  # a module: no self
            assert [p.name for p in got] == [p.name for p in want[1:]]


def test_a_refused_step_leaves_everything_as_it_was() -> None:
    nft = applied()
    before, token = nft.list(), nft.generation()
    cases = [
        tx(("add", Elements(PUBANY, ([E.concat_value("tcp", 9), "10.1.0.3"],))),
           ("delete", Elements(PUBANY, ([E.concat_value("tcp", 1), "10.1.0.3"],)))),
        tx(("add", Rule(N.USER_CHAIN, (E.ACCEPT,))), ("add", Rule("nosuch", (E.ACCEPT,)))),
        tx(("add", Elements(PUBANY, ((PORT[0], "10.1.0.9"),)))),  # the port is taken
        tx(("delete", Chain(N.USER_CHAIN))),  # filter-forward jumps to it
        tx(("delete", Set(N.BRIDGES, ("ifname",)))),  # rules use it
        tx(("add", Set(N.BRIDGES, ("ipv4_addr",)))),
        tx(("add", Chain(N.FILTER_FORWARD, "filter", "forward", 5))),
        tx(("add", Rule(N.USER_CHAIN, (E.jump(N.FILTER_FORWARD),)))),
        tx(("add", Elements(N.SUBNETS.format(v=4), ({"prefix": {"addr": "10.0.0.0",
                                                                 "len": 8}},)))),
        tx(("delete", Table()), ("delete", Table())),
    ]
    for batch in cases:
        with pytest.raises(TransactionError, match="refused"):
            nft.run(batch)
        assert nft.list() == before and nft.generation() == token, batch


def test_generation_counts_the_batches_that_change_something() -> None:
    nft = FakeNft()
    t0 = nft.generation()
    nft.run(tx(("add", Table())))
    assert follows(t0, nft.generation())
    t1 = nft.generation()
    nft.run(tx(("add", Table())))  # there already: no commit, as in the kernel
    assert nft.generation() == t1
    nft.run(tx(("add", Chain("c"))))
    nft.run(tx(("add", Chain("c"))))  # the kernel records an update all the same
    assert follows(t1, nft.generation()) is None
    assert FakeNft().generation() != FakeNft().generation()  # another namespace
    assert len(nft.committed) == 4


def test_elements_added_again_change_nothing_deleted_by_key() -> None:
    nft = applied()
    token = nft.generation()
    nft.run(tx(("add", Elements(PUBANY, (list(PORT),)))))
    assert nft.generation() == token
    nft.run(tx(("delete", Elements(PUBANY, ([PORT[0], "10.9.9.9"],)))))  # by key
    assert follows(token, nft.generation())
    assert not [o for o in nft.list() or [] if o.get("map", {}).get("name") == PUBANY
                and "elem" in o["map"]]


def test_listings_are_what_the_engine_reads() -> None:
    nft = applied()
    index = _Index(nft.list() or [])
    assert set(index.chains) >= {N.FILTER_FORWARD, N.USER_CHAIN, N.PUBLISHED}
    assert index.sets[PUBANY][0] == "map" and len(index.sets[PUBANY][2]) == 1
    assert "comment" not in index.sets[N.BRIDGES][1]  # nft 1.0.6 does not list it
    assert nft.list("table inet other") is None and nft.list("chain inet nftnet x") is None
    assert user_chain_rules(nft.list(USER_CHAIN_SPEC)) == []
    listing = nft.list()
    assert listing is not None
    listing.clear()  # a copy
    assert nft.list()


def test_user_chain_rules_as_text_with_handles() -> None:
    nft = applied()
    nft.run(tx(("add", Rule(N.USER_CHAIN, (E.match(E.IIF, "eth0"), E.COUNTER, E.DROP)))))
    ((handle, text),) = nft.chain_rules_text(N.USER_CHAIN) or []
    assert text == 'iifname "eth0" counter packets 0 bytes 0 drop'
    nft.run({"nftables": [{"delete": {"rule": {"family": "inet", "table": "nftnet",
                                               "chain": N.USER_CHAIN, "handle": handle}}}]})
    assert nft.chain_rules_text(N.USER_CHAIN) == []
    assert FakeNft().chain_rules_text(N.USER_CHAIN) is None


def test_coexist_reads_other_tables_through_the_protocol() -> None:
    nft = applied()
    nft.run({"nftables": [{"add": {"table": {"family": "inet", "name": "filter"}}}, {"add": {
        "chain": {"family": "inet", "table": "filter", "name": "forward", "type": "filter",
                  "hook": "forward", "prio": 0, "policy": "drop"}}}]})
    (drop,) = coexist.foreign_drops(nft)
    assert (drop.spec, drop.honoured) == ("inet filter forward", False)


def test_what_the_fake_does_not_model_is_said() -> None:
    with pytest.raises(NotImplementedError):
        FakeNft().run({"nftables": [{"insert": {"rule": {}}}]})
    with pytest.raises(NotImplementedError):
        FakeNft().list("ruleset")


def test_fake_scratch_parses_and_refuses() -> None:
    skeleton = compile_config(parse_config(json.dumps(CONFIG)), HostFacts(), []).to_json()
    rules = ["tcp dport 22 drop", "ct state established accept", "ip saddr @nosuch drop",
             "drop; flush ruleset", 'iifname "eth0']
    parsed, problems = FakeScratch().parse_user_rules(skeleton, rules)
    assert parsed == [
        {"expr": [E.match({"payload": {"protocol": "tcp", "field": "dport"}}, 22), E.DROP]},
        {"expr": [{"nft-text": "ct state established accept"}]}]
    assert {i: (p.refused, p.message) for i, p in problems.items()} == {
        2: (True, "Error: No such file or directory"),
        3: (True, "Error: syntax error, one rule expected"),
        4: (True, "Error: syntax error, unterminated string")}
    nft = FakeNft()
    nft.run(compile_config(parse_config(json.dumps(CONFIG)), HostFacts(), parsed).to_json())
    assert [t for _, t in nft.chain_rules_text(N.USER_CHAIN) or []] == rules[:2]
    fresh = FakeNft()
    fresh.run(skeleton)
    assert FakeScratch().listing(skeleton) == fresh.list()


SET = st.sampled_from(["a", "b", "c"])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.tuples(st.sampled_from(["add", "delete"]),
                                   st.lists(SET, min_size=1, max_size=2)),
                         min_size=1, max_size=3), max_size=8))
def test_batches_apply_whole_or_not_at_all(batches: list[list[tuple[str, list[str]]]]) -> None:
    """Against a plain model: a batch applies in order, and is refused whole as soon as one
    delete finds nothing; the generation moves on only when the set changed."""
    nft = FakeNft()
    nft.run(tx(("add", Table()), ("add", Set("s", ("ifname",)))))
    model: set[str] = set()
    for cmds in batches:
        after, ok, changed = set(model), True, False
        for verb, items in cmds:
            for item in items:
                changed |= verb == "delete" or item not in after
                ok &= verb == "add" or item in after
                (after.add if verb == "add" else after.discard)(item)
        token = nft.generation()
        try:
            nft.run(tx(*((verb, Elements("s", tuple(items))) for verb, items in cmds)))
        except TransactionError:
            assert not ok
        else:
            assert ok
            model = after
        (s,) = [o["set"] for o in nft.list() or [] if "set" in o]
        assert set(s.get("elem", [])) == model
        assert (nft.generation() != token) == (ok and changed)
