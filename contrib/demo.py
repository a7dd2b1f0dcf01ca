"""nftnet's main job, shown in throwaway network namespaces (run by contrib/demo.sh).

A "host" namespace gets two bridge networks and three containers from one config; a "LAN"
namespace plays a machine next to the host. Real connections show what gets through and which
source address arrives. Everything is deleted at the end.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.lab import Lab

CONFIG = """\
version: 1
networks:
  front:
    bridge: br-front
    subnets: [172.31.1.0/24, "fd00:1::/64"]
  back:
    bridge: br-back
    subnet: 172.31.2.0/24
    icc: false
endpoints:
  web:
    network: front
    ipv4: 172.31.1.10
    ipv6: fd00:1::10
    publish: ["8080:80", "127.0.0.1:8081:81"]
  db:
    network: back
    ipv4: 172.31.2.10
  worker:
    network: back
    ipv4: 172.31.2.11
user_rules:
  - 'iifname "eth0" tcp dport 22 drop'
"""


def nftnet(lab: Lab, state: Path, *args: str) -> None:
    cmd = [sys.executable, "-m", "nftnet", "--state-dir", str(state), *args]
    print(f"\n$ nftnet {' '.join(args)}")
    out = lab.run(lab.host, *cmd)
    print(out.stdout.rstrip())


def show(what: str, result: str | None, expect: str) -> None:
    got = "blocked" if result is None else f"connected, server saw {result}"
    print(f"  {what:<52} {got:<40} ({expect})")


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="nftnet-demo-"))
    config = tmp / "config.yaml"
    config.write_text(CONFIG)
    state = tmp / "state"
    with Lab() as lab:
        print(f"namespaces: host={lab.host} lan={lab.lan} (deleted at the end)")
        print(f"\n$ cat {config}\n{CONFIG}")
        nftnet(lab, state, "apply", "-f", str(config))
        nftnet(lab, state, "apply", "-f", str(config))
        web = lab.container("web", "br-front", "172.31.1.10", "172.31.1.1", "fd00:1::10",
                            "fd00:1::1")
        db = lab.container("db", "br-back", "172.31.2.10", "172.31.2.1")
        worker = lab.container("worker", "br-back", "172.31.2.11", "172.31.2.1")
        for ns in (web, db):
            lab.serve(ns, 80)
        lab.serve(web, 81)
        lab.serve(lab.lan, 7000)
        lab.lan_route("172.31.1.0/24")
        print("\nreal traffic:")
        show("LAN -> host 192.168.77.1:8080 (published)", lab.probe(lab.lan, Lab.HOST_IP4, 8080),
             "published: the LAN client's address arrives")
        show("LAN -> host [fd77::1]:8080 (published, IPv6)", lab.probe(lab.lan, Lab.HOST_IP6,
             8080), "same over IPv6")
        show("LAN -> host 192.168.77.1:8081", lab.probe(lab.lan, Lab.HOST_IP4, 8081),
             "published on 127.0.0.1 only")
        show("host -> 127.0.0.1:8081", lab.probe(lab.host, "127.0.0.1", 8081),
             "the host itself may")
        show("LAN -> 172.31.1.10:80 by direct route", lab.probe(lab.lan, "172.31.1.10", 80),
             "no direct routing into containers")
        show("web -> LAN 192.168.77.2:7000", lab.probe(web, Lab.LAN_IP4, 7000),
             "masqueraded as the host")
        show("web -> db 172.31.2.10:80", lab.probe(web, "172.31.2.10", 80),
             "networks are isolated")
        show("worker -> db 172.31.2.10:80", lab.probe(worker, "172.31.2.10", 80),
             "icc: false on back")
        show("db -> host 192.168.77.1:8080", lab.probe(db, Lab.HOST_IP4, 8080),
             "a published port is public")
        nftnet(lab, state, "status")
        print("\n$ nft list chain inet nftnet filter-forward")
        print(lab.run(lab.host, "nft", "list", "chain", "inet", "nftnet",
                      "filter-forward").stdout.rstrip())
    subprocess.run(["rm", "-rf", str(tmp)], check=False)
    print("\nnamespaces deleted; nothing on this machine changed.")


if __name__ == "__main__":
    main()
