"""Every bad input, through the real CLI on a real kernel: exit 2, the field named on stderr,
no traceback, and nothing applied (the ruleset, the links and the state directory's files
the same, byte for byte, before and after)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from nftnet.errors import ConfigError
from nftnet.link.veth import netns_path
from tests.kernel.conftest import Netns
from tests.nftnet_run import nftnet, write_config

pytestmark = pytest.mark.kernel

GOOD: dict[str, Any] = {
    "version": 1,
    "networks": {"front": {"bridge": "br-front", "subnets": ["172.31.1.0/24", "fd00:1::/64"]}},
    "endpoints": {"web": {"network": "front", "ipv4": "172.31.1.10", "ipv6": "fd00:1::10",
                          "publish": ["8080:80"]}},
}
NO_PID = str(2**22 + 1)  # above the largest pid_max: never a process


def changed(path: str, value: Any) -> dict[str, Any]:
    """GOOD with ``value`` at dotted ``path`` (list items by index)."""
    config = json.loads(json.dumps(GOOD))
    *parents, last = path.split(".")
    node = config
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    node[int(last) if isinstance(node, list) else last] = value
    return config


GOOD_YAML = yaml.safe_dump(GOOD, sort_keys=False)
DUPLICATE_YAML = GOOD_YAML.replace("networks:\n", "networks:\n  front:\n    subnet: 10.9.0.0/24\n")
DUPLICATE_JSON = json.dumps(GOOD).replace('"networks": {', '"networks": {"front": {}, ')

# (what, how, input, what stderr must name). How: "config" a dict as YAML, "json" a dict as
# JSON, "text"/"bytes" a file's content, "path" a file given as is, "stdin" a file given as
# -f -, "run" a command ({ctr}: a container namespace).
CASES: list[tuple[str, str, Any, str]] = [
    ("wrong CIDR", "config", changed("networks.front.subnets.0", "172.31.1.0/33"),
     "networks.front.subnets[0]: '172.31.1.0/33' is not a CIDR"),
    ("host bits", "config", changed("networks.front.subnets.0", "172.31.1.5/24"),
     "networks.front.subnets[0]: '172.31.1.5/24' has host bits set"),
    ("overlapping subnets", "config", changed("networks.back", {"subnet": "172.31.1.128/25"}),
     "networks.back.subnets: 172.31.1.128/25 overlaps 172.31.1.0/24 of network front"),
    ("address outside its subnet", "config", changed("endpoints.web.ipv4", "172.31.2.10"),
     "endpoints.web.ipv4: 172.31.2.10 is outside"),
    ("host port taken twice", "config", changed("endpoints.web.publish", ["8080:80", "8080:81"]),
     "endpoints.web.publish[1]: tcp port 8080"),
    ("over-long interface name", "config", changed("networks.front.bridge", "x" * 16),
     "networks.front.bridge: interface name"),
    ("unknown key", "config", changed("networks.front.colour", "red"),
     "networks.front.colour: unknown key"),
    ("duplicate key (YAML)", "text", DUPLICATE_YAML, ":5: networks.front: duplicate key"),
    ("duplicate key (JSON)", "text", DUPLICATE_JSON, ":1: networks.front: duplicate key"),
    ("version as text", "config", changed("version", "1"), "version: must be 1"),
    ("version as float", "json", changed("version", 1.0), "version: must be 1"),
    ("default route", "config", changed("networks.x", {"subnet": "0.0.0.0/0"}),
     "networks.x.subnet: '0.0.0.0/0' is the default route"),
    ("loopback", "config", changed("networks.x", {"subnet": "127.0.0.0/8"}),
     "networks.x.subnet: '127.0.0.0/8' holds loopback"),
    ("multicast", "config", changed("networks.x", {"subnet": "224.0.0.0/24"}),
     "networks.x.subnet: '224.0.0.0/24' holds multicast"),
    ("IPv4-mapped", "config", changed("networks.x", {"subnet": "::ffff:172.31.9.0/120"}),
     "networks.x.subnet: '::ffff:172.31.9.0/120' holds IPv4-mapped"),
    ("3,000 deep", "text", '{"version": 1, "networks": ' + "[" * 3000 + "]" * 3000 + "}",
     "not valid YAML or JSON"),
    ("random bytes", "bytes", random.Random(6).randbytes(4096), "not UTF-8 text"),
    ("/dev/zero", "path", "/dev/zero", "/dev/zero: larger than 64 MiB"),
    ("/dev/zero on stdin", "stdin", "/dev/zero", "-: larger than 64 MiB"),
    ("over-long --ifname", "run", ["endpoint", "attach", "c", "--network", "front", "--netns",
                                   "{ctr}", "--ifname", "abcdefghijklmnopq"],
     "endpoint c: --ifname: interface name 'abcdefghijklmnopq' must be 1-15"),
    ("--netns not a namespace", "run", ["endpoint", "attach", "c", "--network", "front",
                                        "--netns", "/etc/passwd"],
     "--netns: no network namespace at /etc/passwd"),
    ("--netns of another kind", "run", ["endpoint", "attach", "c", "--network", "front",
                                        "--netns", "/proc/self/ns/uts"],
     "--netns: no network namespace at /proc/self/ns/uts"),
    ("--pid of no process", "run", ["endpoint", "attach", "c", "--network", "front",
                                    "--pid", NO_PID], f"--pid: no process {NO_PID}"),
    ("--ipv4 not an address", "run", ["endpoint", "attach", "c", "--network", "front",
                                      "--netns", "{ctr}", "--ipv4", "bogus"],
     "endpoint c: --ipv4: 'bogus' is not an IP address"),
    ("--ipv4 outside the subnet", "run", ["endpoint", "attach", "c", "--network", "front",
                                          "--netns", "{ctr}", "--ipv4", "172.31.2.10"],
     "endpoint c: --ipv4: 172.31.2.10 is outside"),
    ("--ipv6 with a scope", "run", ["endpoint", "attach", "c", "--network", "front",
                                    "--netns", "{ctr}", "--ipv6", "fd00:1::5%eth0"],
     "endpoint c: --ipv6: 'fd00:1::5%eth0': a scope"),
    ("-p out of range", "run", ["endpoint", "attach", "c", "--network", "front", "--netns",
                                "{ctr}", "-p", "70000:80"],
     "endpoint c: -p 70000:80: host port 70000 is outside 1-65535"),
    ("-p taken", "run", ["endpoint", "attach", "c", "--network", "front", "--netns", "{ctr}",
                         "-p", "9000:90", "-p", "8080:80"],
     "endpoint c: -p 8080:80: tcp port 8080 on every address (IPv4) is already published by "
     "endpoint web"),
    ("--subnet default route", "run", ["network", "create", "n", "--subnet", "0.0.0.0/0"],
     "network n: --subnet 0.0.0.0/0: '0.0.0.0/0' is the default route"),
    ("--subnet wrong CIDR", "run", ["network", "create", "n", "--subnet", "10.9.0.0/33"],
     "network n: --subnet 10.9.0.0/33: '10.9.0.0/33' is not a CIDR"),
    ("--subnet overlapping", "run", ["network", "create", "n", "--subnet", "172.31.1.0/25"],
     "network n: --subnet: 172.31.1.0/25 overlaps 172.31.1.0/24 of network front"),
    ("--bridge taken", "run", ["network", "create", "n", "--subnet", "10.9.0.0/24",
                               "--bridge", "br-front"],
     "network n: --bridge: bridge br-front is already used by network front"),
    ("--bridge over-long", "run", ["network", "create", "n", "--subnet", "10.9.0.0/24",
                                   "--bridge", "x" * 16], "network n: --bridge: interface name"),
    ("port publish out of range", "run", ["port", "publish", "web", "70000:80"],
     "publish[0]: host port 70000 is outside 1-65535"),
]


@pytest.fixture
def container() -> Iterator[str]:
    """A named network namespace for --netns (global, as `ip netns add` makes them)."""
    name = f"nkc{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def addresses(ns: str) -> dict[str, list[str]]:
    out = subprocess.run(["ip", "netns", "exec", ns, "ip", "-j", "addr"], capture_output=True,
                         text=True, check=True).stdout
    return {link["ifname"]: sorted(f"{a['local']}/{a['prefixlen']}" for a in link["addr_info"])
            for link in json.loads(out)}


def snapshot(ns: Netns, container: str, state: Path) -> dict[str, Any]:
    return {
        "ruleset": ns.run("nft", "-j", "list", "ruleset"),
        "links": addresses(ns.name),
        "container links": addresses(container),
        "state": {p.relative_to(state).as_posix(): p.read_bytes()
                  for p in sorted(state.rglob("*")) if p.is_file()},
    }


def run_case(ns: Netns, state: Path, tmp: Path, container: str, how: str,
             given: Any) -> subprocess.CompletedProcess[str]:
    path = tmp / f"bad-{uuid.uuid4().hex[:6]}.yaml"
    if how == "config":
        path.write_text(yaml.safe_dump(given))
    elif how == "json":
        path.write_text(json.dumps(given))
    elif how == "text":
        path.write_text(given)
    elif how == "bytes":
        path.write_bytes(given)
    elif how == "path":
        path = Path(given)
    elif how == "stdin":
        with open(given, "rb") as stdin:
            return nftnet(ns, "apply", "-f", "-", state_dir=state, check=False, stdin=stdin)
    if how == "run":
        args = [a.replace("{ctr}", container) for a in given]
        return nftnet(ns, *args, state_dir=state, check=False)
    return nftnet(ns, "apply", "-f", str(path), state_dir=state, check=False)


def test_every_bad_input_exits_2_naming_its_field_and_applies_nothing(
        netns: Netns, tmp_path: Path, container: str) -> None:
    state = tmp_path / "state"
    nftnet(netns, "apply", "-f", str(write_config(tmp_path, GOOD)), state_dir=state)
    nftnet(netns, "network", "create", "extra", "--subnet", "172.31.5.0/24", state_dir=state)
    nftnet(netns, "endpoint", "attach", "c0", "--network", "extra", "--netns", container,
           "-p", "8081:80", state_dir=state)
    before = snapshot(netns, container, state)
    failures = []
    for what, how, given, expected in CASES:
        proc = run_case(netns, state, tmp_path, container, how, given)
        output = proc.stdout + proc.stderr
        after = snapshot(netns, container, state)
        problems = [p for p, bad in (
            (f"exit {proc.returncode}", proc.returncode != 2),
            (f"no {expected!r}", expected not in proc.stderr),
            ("a traceback", "Traceback" in output),
            *((f"{key} changed", after[key] != before[key]) for key in before),
        ) if bad]
        if problems:
            failures.append(f"{what}: {', '.join(problems)}\n{output}")
        before = after  # one input applied must not fail the ones after it
    assert not failures, "\n".join(failures)


def test_concurrent_network_creates_name_the_loser_and_the_holder(netns: Netns,
                                                                   tmp_path: Path) -> None:
    """The one that finds the subnet taken names itself, its --subnet and the winner."""
    state = tmp_path / "state"
    nftnet(netns, "apply", "-f", str(write_config(tmp_path, GOOD)), state_dir=state)
    for first, second in (("zz", "aa"), ("ab", "zy")):  # either order of names
        nftnet(netns, "network", "create", first, "--subnet", "10.20.0.0/24", state_dir=state)
        lost = nftnet(netns, "network", "create", second, "--subnet", "10.20.0.0/24",
                      state_dir=state, check=False)
        assert lost.returncode == 2
        assert f"network {second}: --subnet: 10.20.0.0/24 overlaps 10.20.0.0/24 of network " \
            f"{first}" in lost.stderr
        nftnet(netns, "network", "rm", first, state_dir=state)
    procs = {name: subprocess.Popen(
        ["ip", "netns", "exec", netns.name, sys.executable, "-m", "nftnet", "--state-dir",
         str(state), "network", "create", name, "--subnet", "10.21.0.0/24"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name in ("n1", "n2")}
    results = {name: (p.wait(timeout=120), p.communicate()[1]) for name, p in procs.items()}
    codes = sorted(code for code, _ in results.values())
    assert codes == [0, 2], results
    loser = next(name for name, (code, _) in results.items() if code == 2)
    winner = next(name for name in results if name != loser)
    assert f"network {loser}: --subnet: 10.21.0.0/24 overlaps 10.21.0.0/24 of network " \
        f"{winner}" in results[loser][1]


def test_netns_path_accepts_network_namespaces_only(tmp_path: Path) -> None:
    """The kernel decides what a namespace file is (NS_GET_NSTYPE); a FIFO is not opened."""
    assert netns_path(None, os.getpid()) == f"/proc/{os.getpid()}/ns/net"
    assert netns_path("/proc/self/ns/net", None) == "/proc/self/ns/net"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for given, expected in ((str(fifo), "not a namespace file"),
                            ("/etc/passwd", "not a namespace file"),
                            ("/proc/self/ns/uts", "a namespace of another kind"),
                            (str(tmp_path), "not a namespace file"),
                            ("no-such-name", "/run/netns/no-such-name (No such file")):
        with pytest.raises(ConfigError, match=r"^--netns: no network namespace at") as e:
            netns_path(given, None)
        assert expected in str(e.value)
    with pytest.raises(ConfigError, match=f"--pid: no process {NO_PID}"):
        netns_path(None, int(NO_PID))
