"""One CNI ADD with N ports already published: nftnet-cni next to Debian's portmap plugin.

Run as root: ``python -m tests.bench.cni [--sizes 10,10000] [--rounds 7]`` (not part of
``python -m tests.bench``, whose report has fixed sections). Prints a markdown table of
medians (seconds, whole processes). Everything runs in throwaway network namespaces.

For each size and contender a namespace of its own, where a chain is run by hand as
tests/cni_env.py does. Each round adds a new container (its own namespace): the bridge plugin
(+ host-local) first, untimed, then the timed ADD of the contender for one mapping, given the
bridge plugin's result, as a whole process entered with nsenter:
- nftnet-cni (the installed entry point, nftnet's real engine) with N ports published: the
  benchmarks' sized config (tests/bench/scale.py) applied with ``nftnet apply``, and the CNI
  network made by a first, untimed ADD;
- portmap (containernetworking-plugins 1.1.1, iptables-nft) with N mappings present in
  portmap's own layout (a chain per container, three rules a mapping and a jump in
  CNI-HOSTPORT-DNAT), loaded with iptables-restore, as portmap's one process per rule would
  take hours at 10,000. Checked first: at 10 mappings the generated layout is exactly what
  five real portmap ADDs write;
- start-up only: a Python process that imports what nftnet-cni had imported at the end of an
  ADD (recorded in an untimed ADD on the existing network), the least any Python plugin
  doing the same costs.
Contenders alternate within each round; sizes are set up side by side.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from tests.bench.__main__ import _sigterm, compile_bytecode
from tests.bench.common import median, netns, nftnet_argv, run_in, sh
from tests.bench.scale import sized_config
from tests.cni_env import plugin_conf

REFERENCE = Path("/usr/lib/cni")
NFTNET_CNI = Path(sys.executable).with_name("nftnet-cni")
SUBNET = IPv4Network("10.250.0.0/16")  # the timed containers' (apart from scale.py's 10.64/10)
FILLER = IPv4Network("10.251.0.0/16")  # the containers of portmap's generated mappings
FIRST_PORT = 60000  # the timed mappings' host ports: above every size's published ones
CONTENDERS = ("nftnet-cni", "portmap", "startup")
PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class Side:
    """One contender's namespace: its chain (bridge + the plugin), plugin dir, leases."""

    name: str
    ns: str
    dir: Path
    chain: dict[str, Any]
    containers: int = 0
    boxes: list[str] = field(default_factory=list)


def _chain(plugin: dict[str, Any], bridge: str, data: Path) -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": "bench", "plugins": [
        {"type": "bridge", "bridge": bridge, "isGateway": True, "ipMasq": False,
         "hairpinMode": True, "ipam": {"type": "host-local", "dataDir": str(data),
                                       "ranges": [[{"subnet": str(SUBNET)}]]}}, plugin]}


def _exec(side: Side, plugin: str, command: str, conf: dict[str, Any], box: str | None,
          cid: str, timed: bool = False) -> tuple[float, dict[str, Any] | None]:
    """Run one plugin in the side's namespace with only the CNI environment."""
    env = [f"PATH={PATH}", f"CNI_COMMAND={command}", f"CNI_CONTAINERID={cid}",
           "CNI_IFNAME=eth0", f"CNI_PATH={side.dir / 'bin'}"]
    if box:
        env.append(f"CNI_NETNS=/run/netns/{box}")
    with tempfile.TemporaryFile("w+") as stdin:
        json.dump(conf, stdin)
        stdin.seek(0)
        run = run_in(side.ns, ["env", "-i", *env, str(side.dir / "bin" / plugin)], stdin=stdin)
    return run.seconds, json.loads(run.stdout) if run.stdout.strip() else None


def _container(stack: contextlib.ExitStack, side: Side) -> tuple[str, dict[str, Any]]:
    """A new container: its namespace and the bridge plugin's ADD (untimed)."""
    side.containers += 1
    cid = f"{side.name}-{side.containers}"
    box = stack.enter_context(netns())
    _, prev = _exec(side, "bridge", "ADD", plugin_conf(side.chain, side.chain["plugins"][0],
                                                       {}, None), box, cid)
    assert prev is not None
    side.boxes.append(box)
    return cid, prev


def _add(stack: contextlib.ExitStack, side: Side, port: int) -> float:
    """The timed ADD of the side's plugin for a new container with one mapping."""
    cid, prev = _container(stack, side)
    plugin = side.chain["plugins"][1]
    args = {"portMappings": [{"hostPort": port, "containerPort": 80, "protocol": "tcp"}]}
    seconds, _ = _exec(side, plugin["type"], "ADD",
                       plugin_conf(side.chain, plugin, args, prev), side.boxes[-1], cid)
    return seconds


def _side(stack: contextlib.ExitStack, name: str, tmp: Path, plugin: dict[str, Any]) -> Side:
    ns = stack.enter_context(netns())
    sh("ip", "-n", ns, "link", "set", "lo", "up")
    d = tmp / f"{name}-{ns}"
    (d / "bin").mkdir(parents=True)
    for ref in ("bridge", "host-local", "portmap"):
        (d / "bin" / ref).symlink_to(REFERENCE / ref)
    (d / "bin" / "nftnet-cni").symlink_to(NFTNET_CNI)
    return Side(name, ns, d, _chain(plugin, "cnibench0", d / "ipam"))


# -- portmap's layout, generated ----------------------------------------------------------

def portmap_chain(container_id: str, network: str = "bench") -> str:
    """portmap's per-container chain: CNI-DN- and 21 hex of sha512(name + id)."""
    return "CNI-DN-" + hashlib.sha512((network + container_id).encode()).hexdigest()[:21]


def portmap_restore(containers: Sequence[tuple[str, str, Sequence[int]]], subnet: str) -> str:
    """iptables-restore input with what portmap 1.1.1 writes for ``containers`` (id, IPv4
    address, host ports mapped to port 80, tcp; SNAT on, no hostIP)."""
    lines = ["*nat", ":CNI-HOSTPORT-DNAT - [0:0]", ":CNI-HOSTPORT-MASQ - [0:0]",
             ":CNI-HOSTPORT-SETMARK - [0:0]",
             *(f":{portmap_chain(cid)} - [0:0]" for cid, _, _ in containers),
             "-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
             "-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
             '-A POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" '
             "-j CNI-HOSTPORT-MASQ",
             "-A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE",
             '-A CNI-HOSTPORT-SETMARK -m comment --comment "CNI portfwd masquerade mark" '
             "-j MARK --set-xmark 0x2000/0x2000"]
    for cid, ip, ports in containers:
        chain = portmap_chain(cid)
        for i in range(0, len(ports), 15):  # multiport takes at most 15 ports
            lines.append(f'-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: '
                         f'\\"bench\\" id: \\"{cid}\\"" -m multiport --dports '
                         f"{','.join(map(str, ports[i:i + 15]))} -j {chain}")
        for port in ports:
            lines += [f"-A {chain} -s {subnet} -p tcp -m tcp --dport {port} "
                      "-j CNI-HOSTPORT-SETMARK",
                      f"-A {chain} -s 127.0.0.1/32 -p tcp -m tcp --dport {port} "
                      "-j CNI-HOSTPORT-SETMARK",
                      f"-A {chain} -p tcp -m tcp --dport {port} -j DNAT --to-destination "
                      f"{ip}:80"]
    return "\n".join([*lines, "COMMIT", ""])


def _rules(ns: str) -> list[str]:
    """The nat table's rules as iptables-save writes them, sorted (chain order is kept)."""
    out = sh("ip", "netns", "exec", ns, "iptables-save", "-t", "nat")
    return sorted(line for line in out.splitlines() if line.startswith("-A"))


def check_layout(tmp: Path) -> None:
    """Five real portmap ADDs of two mappings each write exactly the generated layout."""
    with contextlib.ExitStack() as stack:
        real = _side(stack, "real", tmp, {"type": "portmap",
                                          "capabilities": {"portMappings": True}})
        made = []
        for i in range(5):
            cid, prev = _container(stack, real)
            ports = [2000 + 2 * i, 2001 + 2 * i]
            args = {"portMappings": [{"hostPort": p, "containerPort": 80, "protocol": "tcp"}
                                     for p in ports]}
            plugin = real.chain["plugins"][1]
            _exec(real, "portmap", "ADD", plugin_conf(real.chain, plugin, args, prev),
                  real.boxes[-1], cid)
            made.append((cid, prev["ips"][0]["address"].split("/")[0], ports))
        with netns() as generated:
            sh("ip", "netns", "exec", generated, "iptables-restore", "--noflush",
               input=portmap_restore(made, str(SUBNET)))
            if _rules(generated) != _rules(real.ns):
                raise SystemExit("the generated portmap layout differs from portmap's own: "
                                 "fix portmap_restore")


def fill_portmap(side: Side, mappings: int) -> None:
    """``mappings`` mappings present, two a container, as portmap would have written them."""
    containers = [(f"fill{c}", str(FILLER[2 + c]), [1024 + 2 * c, 1025 + 2 * c][:mappings - 2 * c])
                  for c in range((mappings + 1) // 2)]
    sh("ip", "netns", "exec", side.ns, "iptables-restore", "--noflush",
       input=portmap_restore(containers, str(FILLER)))


def fill_nftnet(stack: contextlib.ExitStack, side: Side, ports: int, modules: Path) -> None:
    """``ports`` published by ``nftnet apply`` of the sized config, then the CNI network made
    by a first ADD, and a second ADD that records the modules nftnet-cni imported (untimed)."""
    config = side.dir / "config.json"
    config.write_text(json.dumps(sized_config(ports)))
    run_in(side.ns, nftnet_argv(side.dir / "state", "apply", "-f", str(config)))
    _add(stack, side, FIRST_PORT - 1)
    cid, prev = _container(stack, side)
    plugin = side.chain["plugins"][1]
    record = (f"import sys\nfrom nftnet.drivers.cni.main import main\nrc = main()\n"
              f"open({str(modules)!r}, 'w').write('\\n'.join(sorted(sys.modules)))\n"
              "sys.exit(rc)\n")
    script = side.dir / "bin" / "nftnet-cni-record"
    script.write_text(f"#!{sys.executable}\n{record}")
    script.chmod(0o755)
    _exec(side, "nftnet-cni-record", "ADD", plugin_conf(side.chain, plugin, {}, prev),
          side.boxes[-1], cid)


def startup(ns: str, modules: Path) -> float:
    code = (f"import importlib\nfor m in open({str(modules)!r}).read().split():\n    try:\n"
            "        importlib.import_module(m)\n    except Exception:\n        pass\n")
    return run_in(ns, ["env", "-i", f"PATH={PATH}", sys.executable, "-c", code]).seconds


def measure(sizes: list[int], rounds: int, tmp: Path) -> dict[int, dict[str, list[float]]]:
    out: dict[int, dict[str, list[float]]] = {n: {c: [] for c in CONTENDERS} for n in sizes}
    log("checking the generated portmap layout against portmap's own")
    check_layout(tmp)
    with contextlib.ExitStack() as stack:
        sides = {}
        for n in sizes:
            mine = _side(stack, f"nftnet{n}", tmp, {"type": "nftnet-cni",
                                                    "capabilities": {"portMappings": True}})
            mine.chain["plugins"][1]["stateDir"] = str(mine.dir / "state")
            fill_nftnet(stack, mine, n, tmp / f"modules-{n}")
            theirs = _side(stack, f"portmap{n}", tmp, {"type": "portmap",
                                                       "capabilities": {"portMappings": True}})
            fill_portmap(theirs, n)
            sides[n] = (mine, theirs)
            log(f"{n} ports: both sides ready")
        for r in range(rounds):
            for n, (mine, theirs) in sides.items():
                for i in range(len(CONTENDERS)):
                    contender = CONTENDERS[(r + i) % len(CONTENDERS)]
                    port = FIRST_PORT + r
                    if contender == "startup":
                        seconds = startup(mine.ns, tmp / f"modules-{n}")
                    else:
                        seconds = _add(stack, mine if contender == "nftnet-cni" else theirs,
                                       port)
                    out[n][contender].append(seconds)
            log(f"round {r + 1}/{rounds} done")
    return out


def table(results: dict[int, dict[str, list[float]]]) -> str:
    rows = ["| ports there | `nftnet-cni` ADD | portmap ADD (iptables) | start-up only: Python, "
            "nftnet-cni's imports |", "|---:|---:|---:|---:|"]
    for n, times in results.items():
        rows.append(f"| {n:,} | " + " | ".join(f"{median(times[c]):.3f}" for c in CONTENDERS)
                    + " |")
    return "\n".join(rows)


_START = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - _START:6.1f}s] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    tmp = Path(tempfile.mkdtemp(prefix="nftnet-bench-cni-"))
    try:
        yield tmp
    finally:
        subprocess.run(["rm", "-rf", str(tmp)], check=False)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.bench.cni", description=__doc__.split(
        "\n")[0])
    p.add_argument("--sizes", default="10,10000", help="ports already published (default "
                   "10,10000)")
    p.add_argument("--rounds", type=int, default=7, help="ADDs per size and contender")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("python -m tests.bench.cni needs root (network namespaces)", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _sigterm)
    compile_bytecode()
    with workdir() as tmp:
        results = measure([int(n) for n in args.sizes.split(",")], args.rounds, tmp)
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
