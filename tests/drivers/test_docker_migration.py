"""README's migration from Docker's own iptables rules to ``nftnet daemon --docker``, walked
through with a real dockerd in a throwaway namespace: containers with published ports and a
DOCKER-USER rule under Docker's rules; ``nftnet import iptables-save`` of that namespace's
rules; dockerd restarted with ``--iptables=false --ip6tables=false --userland-proxy=false``;
Docker's leftover rules removed as README says; the daemon started: it names the FORWARD policy
drop dockerd left in iptables, and ``nftnet check`` the one rule that lets nftnet's traffic
through it; that rule and the imported user rule added. The same probes (the LAN to published
ports with its own address, a container out masqueraded, isolation, the user rule) give the
same answers before and after."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.docker_daemon import Daemon, Lan, address, get, in_container, wait_for
from tests.docker_env import FLAGS, DockerEnv
from tests.image import HTTPD

pytestmark = pytest.mark.e2e

# README, "Docker: `nftnet daemon --docker`": remove the rules dockerd left
CLEANUP = "for t in iptables ip6tables; do $t-save | grep -v DOCKER | $t-restore; done"
RESTART = ("--restart", "always")  # back after dockerd's restart


def probes(env: DockerEnv, lan: Lan) -> dict[str, str | None]:
    """What each probe's server saw (None: blocked)."""
    web, mate = address(env, "web", "front"), address(env, "mate", "front")
    return {
        "LAN to a published port": lan.get(Lan.HOST4, 8080),
        "LAN to the port DOCKER-USER drops": lan.get(Lan.HOST4, 8081, timeout=0.5),
        "LAN to a published port on the default bridge": lan.get(Lan.HOST4, 8082),
        "container to LAN": get(in_container(env, "web"), Lan.IP4),
        "same network": get(in_container(env, "mate"), web) == mate and "mate",
        "across networks": get(in_container(env, "peer"), web, timeout=0.5),
    }


def test_migration_from_dockers_iptables_to_the_daemon(dockerd: Callable[..., DockerEnv],
                                                       tmp_path: Path) -> None:
    env = dockerd(flags=())  # Docker's defaults: its own iptables rules, the userland proxy
    daemon = Daemon(env, tmp_path)
    try:
        with Lan(env) as lan:
            walk_through(env, lan, daemon, tmp_path)
    finally:
        daemon.kill()


def walk_through(env: DockerEnv, lan: Lan, daemon: Daemon, tmp: Path) -> None:
    lan.serve()
    env.docker("network", "create", "--subnet", "172.30.9.0/24", "front")
    env.docker("run", "-d", "--name", "web", *RESTART, "--network", "front", "-p", "8080:80",
               "-p", "8081:80", "bb", *HTTPD)
    env.docker("run", "-d", "--name", "mate", *RESTART, "--network", "front", "bb", *HTTPD)
    env.docker("run", "-d", "--name", "peer", *RESTART, "-p", "8082:80", "bb", *HTTPD)
    env.ns_run("iptables", "-I", "DOCKER-USER", "-i", lan.link, "-p", "tcp", "-m", "conntrack",
               "--ctorigdstport", "8081", "-j", "DROP")
    want = {"LAN to a published port": Lan.IP4, "LAN to the port DOCKER-USER drops": None,
            "LAN to a published port on the default bridge": Lan.IP4,
            "container to LAN": Lan.HOST4, "same network": "mate", "across networks": None}
    assert wait_for(lambda: lan.get(Lan.HOST4, 8080)) == Lan.IP4
    assert probes(env, lan) == want  # Docker's own rules

    files = {"v4": env.ns_run("iptables-save"), "v6": env.ns_run("ip6tables-save"),
             "networks": env.docker("network", "inspect",
                                    *(env.docker("network", "ls", "-q") or "").split()),
             "containers": env.docker("inspect", *(env.docker("ps", "-q") or "").split())}
    for name, text in files.items():
        (tmp / name).write_text(text or "")
    daemon.nftnet("import", "iptables-save", str(tmp / "v4"), "--ip6", str(tmp / "v6"),
                  "--docker-inspect", f"{tmp / 'networks'},{tmp / 'containers'}",
                  "-o", str(tmp / "config.yaml"))
    imported = yaml.safe_load((tmp / "config.yaml").read_text())
    assert {"bridge", "front"} <= set(imported["networks"])
    assert len(imported["user_rules"]) == 1

    env.stop_daemon()
    env.start(FLAGS)
    env.ns_run("sh", "-c", CLEANUP)
    assert "DOCKER" not in env.ns_run("iptables-save")
    daemon.start()
    daemon.wait_log("drops container traffic that nftnet lets through")  # Docker's policy
    assert lan.get(Lan.HOST4, 8080) is None
    (drop,) = json.loads(daemon.nftnet("check", "-o", "json").stdout)["coexistence"]
    env.ns_run("sh", "-c", drop["remedy"])  # the one rule check names
    for rule in imported["user_rules"]:
        daemon.nftnet("user", "add", rule)
    wait_for(lambda: daemon.held() == {"web.front", "mate.front", "peer.bridge"})
    assert wait_for(lambda: lan.get(Lan.HOST4, 8080)) == Lan.IP4
    assert probes(env, lan) == want  # nftnet's
    daemon.check()
    (drop,) = json.loads(daemon.nftnet("check", "-o", "json").stdout)["coexistence"]
    assert drop["honoured"]
