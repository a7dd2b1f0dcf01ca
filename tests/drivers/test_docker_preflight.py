"""Preflight against a real dockerd: with iptables and the userland proxy on it is refused
(Docker's chains in the namespace's ruleset, the proxy from dockerd's configuration and its
docker-proxy processes); switched off, its leftover chains still are, until the documented
command removes them; the documented daemon.json passes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nftnet.drivers.docker.preflight import DAEMON_JSON, REMOVE_CHAINS
from tests.docker_env import FLAGS, DockerEnv
from tests.image import HTTPD

pytestmark = pytest.mark.kernel
ROOT = Path(__file__).resolve().parents[2]
PROBE = ("import json, sys; from nftnet.drivers.docker.preflight import check; "
         "r = check(sys.argv[1]); print(json.dumps({'problems': [p.reason for p in r.problems],"
         " 'fixes': [p.fix for p in r.problems], 'notes': r.notes}))")


def preflight(env: DockerEnv) -> dict[str, Any]:
    """check() run inside dockerd's namespace, where nftnet would run."""
    out = subprocess.run(["ip", "netns", "exec", env.ns, sys.executable, "-c", PROBE, env.url],
                         capture_output=True, text=True, check=True, cwd=ROOT, timeout=60)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_dockerd_with_its_own_rules_and_proxy_is_refused_until_migrated(
        dockerd: Callable[..., DockerEnv]) -> None:
    env = dockerd(flags=())  # Docker's defaults: iptables and the userland proxy on
    env.docker("run", "-d", "--name", "web", "-p", "8080:80", "bb", *HTTPD)
    report = preflight(env)
    assert len(report["problems"]) == 2, report
    rules, proxy = report["problems"]
    for chain in ("ip filter DOCKER", "ip filter DOCKER-USER", "ip filter "
                  "DOCKER-ISOLATION-STAGE-1", "ip nat DOCKER"):
        assert f"chain {chain}," in rules or f"chain {chain} " in rules
    assert "userland-proxy is on" in proxy and "docker-proxy runs (pid " in proxy
    assert all(DAEMON_JSON in fix for fix in report["fixes"])

    env.docker("rm", "-f", "web")
    env.stop_daemon()
    env.start(FLAGS)  # switched off: no proxy, but the chains stay behind
    report = preflight(env)
    assert [p.split(" (")[0] for p in report["problems"]] == [
        "dockerd writes its own firewall rules"]
    env.ns_run("sh", "-c", REMOVE_CHAINS)
    assert preflight(env) == {"problems": [], "fixes": [], "notes": []}
    assert "DOCKER" not in env.ns_run("nft", "list", "ruleset")


def test_the_documented_daemon_json_passes(dockerd: Callable[..., DockerEnv]) -> None:
    env = dockerd(flags=(), config=json.loads(DAEMON_JSON))
    env.docker("run", "-d", "--name", "web", "-p", "8080:80", "bb", *HTTPD)
    assert preflight(env) == {"problems": [], "fixes": [], "notes": []}
    assert env.ns_run("nft", "list", "ruleset").strip() == ""
    # without the proxy, dockerd itself holds the published port, and no docker-proxy runs
    listening = env.ns_run("ss", "-Hltnp", "sport", "= :8080")
    assert "dockerd" in listening and "docker-proxy" not in listening
