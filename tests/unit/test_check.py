"""check's comparison and wording, and coexist's remedies, without a kernel."""

from __future__ import annotations

from collections.abc import Callable

from nftnet import names
from nftnet.check import Finding, Report, _element_drift, _Index, _rule_drift, _show
from nftnet.cli.format import format_report
from nftnet.coexist import ForeignDrop


def rule(chain: str, comment: str | None = None, port: int = 1) -> dict:
    body = {"family": "inet", "table": "nftnet", "chain": chain, "handle": port,
            "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "th",
                                                                 "field": "dport"}},
                                "right": port}}, {"counter": {"packets": port, "bytes": 9}},
                     {"accept": None}]}
    return {"rule": body | ({"comment": comment} if comment else {})}


def test_index_ignores_handles_and_counters() -> None:
    rewritten = rule("c", "x", 1)
    rewritten["rule"]["handle"] = 99
    rewritten["rule"]["expr"][1]["counter"]["packets"] = 1234
    assert _Index([rewritten]).rules == _Index([rule("c", "x", 1)]).rules


def test_elements_shown_as_nft_writes_them() -> None:
    assert _show([{"concat": ["tcp", 8080]}, "172.31.1.10"]) == "tcp . 8080 : 172.31.1.10"
    assert _show({"prefix": {"addr": "fd00:1::", "len": 64}}) == "fd00:1::/64"
    assert _show([{"concat": ["br-a", "br-a"]}, {"jump": {"target": "icc-off"}}]) == \
        "br-a . br-a : jump icc-off"
    assert _show([{"concat": ["br-a", "br-a"]}, {"accept": None}]) == "br-a . br-a : accept"
    assert _show({"range": ["10.0.0.1", "10.0.0.9"]}) == "10.0.0.1-10.0.0.9"


def labels(rules: list[dict]) -> tuple[Callable[[int], str], Callable[[int, dict], str]]:
    def want(i: int) -> str:
        return rules[i].get("comment", f"#{i}")

    def live(j: int, r: dict) -> str:
        return r.get("comment", "text of a rule of people's")
    return want, live


def test_rule_drift_missing_added_and_moved() -> None:
    want = [rule("c", "a", 1)["rule"], rule("c", "b", 2)["rule"], rule("c", "d", 4)["rule"]]
    have = [want[1], want[0], rule("c", None, 7)["rule"]]
    found = {f.problem for f in _rule_drift("c", want, have, *labels(want))}
    moved = found & {"rule changed or moved: a", "rule changed or moved: b"}
    assert len(moved) == 1  # one of the two swapped rules, whichever the matcher keeps
    assert found - moved == {"rule missing: d", "rule added: text of a rule of people's"}
    assert _rule_drift("c", want, list(want), *labels(want)) == []


def test_element_drift_is_capped() -> None:
    want = {f"k{i}": f"e{i:02}" for i in range(30)}
    have = {"k0": "e00", "x": "people's"}
    found = [f.problem for f in _element_drift("set s", want, have)]
    assert found[0] == "element missing: e01"
    assert "and 19 more elements missing" in found
    assert found[-1] == "element added: people's"
    assert len(found) == 12


def test_report_wording_and_json() -> None:
    report = Report([Finding("table inet nftnet", "missing"),
                     Finding("endpoint x", "veth gone", fixable=False)], ["a note"])
    text = format_report(report)
    assert text.splitlines()[1:] == ["  table inet nftnet: missing",
                                     "  endpoint x: veth gone  [restore cannot]",
                                     "note: a note"]
    data = report.to_json()
    assert data["in_sync"] is False
    assert data["drift"][1] == {"subject": "endpoint x", "problem": "veth gone",
                                "fixable": False, "recreate": None,
                                "message": "endpoint x: veth gone"}
    assert format_report(Report()).startswith("in sync")


def test_remedies_name_the_mark_in_each_tool() -> None:
    mark = f"{names.MARK_BIT:#x}"
    nft = ForeignDrop("inet", "filter", "forward", 0, honoured=False)
    assert nft.remedy == (f"nft insert rule inet filter forward meta mark and {mark} == {mark} "
                          "accept")
    assert nft.remedy in nft.message() and not nft.too_early
    ipt = ForeignDrop("ip", "filter", "FORWARD", 0, honoured=False)
    assert ipt.remedy == f"iptables -I FORWARD -m mark --mark {mark}/{mark} -j ACCEPT"
    assert ForeignDrop("ip6", "filter", "FORWARD", 0, False).remedy.startswith("ip6tables -I")
    assert "fine" in ForeignDrop("inet", "filter", "forward", 0, honoured=True).message()


def test_chains_that_see_flows_before_the_mark_is_set() -> None:
    assert ForeignDrop("inet", "fw", "f", names.PRIO_FORWARD, False).too_early
    assert not ForeignDrop("inet", "fw", "f", names.PRIO_FORWARD + 1, False).too_early
    early = ForeignDrop("bridge", "filter", "forward", -200, honoured=True)
    assert early.too_early
    assert "priority 1 or later" in early.message()
