"""user_rules in either language: iptables entries reach nftnet as nft text through the
``nftnet.rule_languages`` entry point, errors name the entry, and the config dumps as written."""

from __future__ import annotations

import json

import pytest
import yaml

from compat.iptables_save.export import export_save
from nftnet.config.dump import dump_config
from nftnet.config.load import located, parse_config
from nftnet.config.model import Config
from nftnet.config.rule_languages import languages, to_nft
from nftnet.errors import ConfigError

RULES = [
    "tcp dport 22 accept",
    {"iptables": "-i eth0 ! -s 192.168.1.1 -j DROP"},
    {"iptables": "-s fd00::/8 -p tcp -m multiport --dports 80,443 -j ACCEPT", "family": "ip6"},
    {"nft": "ip saddr 10.0.0.0/8 drop"},
    {"iptables": "-i eth+ -j REJECT"},
]


def load(rules: list[object]) -> Config:
    return parse_config(yaml.safe_dump({"version": 1, "user_rules": rules}), "c.yaml")


def test_installed_languages() -> None:
    assert languages() == ["iptables", "nft"]


def test_entries_become_nft_text() -> None:
    assert load(RULES).user_rules == (
        "tcp dport 22 accept",
        'iifname "eth0" ip saddr != 192.168.1.1 drop',
        "ip6 saddr fd00::/8 tcp dport { 80, 443 } accept",
        "ip saddr 10.0.0.0/8 drop",
        'meta nfproto ipv4 iifname "eth*" reject with icmp port-unreachable',
    )


def test_dump_keeps_the_entries_as_written() -> None:
    config = load(RULES)
    dumped = dump_config(config)
    assert dumped["user_rules"] == RULES
    again = parse_config(json.dumps(dumped))
    assert again == config and again.user_rules_written == config.user_rules_written


def test_translated_config_equals_the_nft_one() -> None:
    assert load(RULES) == load(list(load(RULES).user_rules or ()))


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"iptables": "-m recent --set -j DROP"}, "unsupported match '-m recent'"),
        ({"iptables": "-j MARK --set-mark 1"}, "MARK"),
        ({"iptables": "-s 10.0.0.1 -j DROP", "family": "ip6"}, "not family ip6"),
        ({"iptables": "-j DROP", "family": "ip7"}, "unsupported family 'ip7'"),
        ({"pf": "block all"}, "unknown rule language 'pf' (installed: iptables, nft)"),
        ({"nft": "drop", "family": "ip6"}, "family applies to translated rules only"),
        ({"nft": "drop", "iptables": "-j DROP"}, "give one language"),
        ({"iptables": ["-j", "DROP"]}, "give one language"),
        (42, "a user rule is nft text or a mapping"),
    ],
)
def test_bad_entry_names_its_index(entry: object, expected: str) -> None:
    with pytest.raises(ConfigError) as e:
        load(["drop", entry])
    assert str(e.value).startswith("c.yaml:3: user_rules[1]: ")
    assert expected in str(e.value)


def test_every_bad_entry_is_reported() -> None:
    with pytest.raises(ConfigError) as e:
        load([{"iptables": "-m recent -j DROP"}, "drop", {"iptables": "-j NOPE"}])
    assert [p.split(": ")[1] for p in e.value.problems] == ["user_rules[0]", "user_rules[2]"]


def test_to_nft_passes_nft_through() -> None:
    assert to_nft("nft", "tcp dport 22 drop") == "tcp dport 22 drop"


def test_export_puts_each_family_in_its_file() -> None:
    config = load(RULES)
    user = [[line for line in export_save(config, f)[0].splitlines()
             if line.startswith("-A DOCKER-USER")] for f in (4, 6)]
    assert user[0] == ["-A DOCKER-USER -p tcp -m tcp --dport 22 -j ACCEPT",
                       "-A DOCKER-USER ! -s 192.168.1.1/32 -i eth0 -j DROP",
                       "-A DOCKER-USER -s 10.0.0.0/8 -j DROP",
                       "-A DOCKER-USER -i eth+ -j REJECT --reject-with icmp-port-unreachable",
                       "-A DOCKER-USER -j RETURN"]
    assert user[1] == ["-A DOCKER-USER -p tcp -m tcp --dport 22 -j ACCEPT",
                       "-A DOCKER-USER -s fd00::/8 -p tcp -m multiport --dports 80,443 -j ACCEPT",
                       "-A DOCKER-USER -j RETURN"]


def test_problems_found_after_loading_carry_the_file_line() -> None:
    """nft's verdict on an entry comes after loading (in a scratch namespace); it is located
    as the loader locates its own problems, and without a line where there is no file."""
    config = load(["drop", {"iptables": "-j DROP"}, "tcp dport 22 accept"])
    problems = [(("user_rules", 2), "nft cannot use it")]
    assert located(config.origin, problems) == ["c.yaml:4: user_rules[2]: nft cannot use it"]
    assert located(None, problems) == ["user_rules[2]: nft cannot use it"]
    flow = parse_config('{"version": 1,\n "user_rules": ["drop",\n  "accept"]}', "c.json")
    assert located(flow.origin, [(("user_rules", 1), "x")]) == [
        "c.json:3: user_rules[1]: x"]
