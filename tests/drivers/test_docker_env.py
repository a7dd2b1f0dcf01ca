"""The dockerd harness itself: it runs containers from the busybox image, and leaves nothing
behind on the machine, also when dockerd fails to start."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from tests.docker_env import OUTSIDE, REGISTRY, DockerEnv, DockerEnvError, alive, leftovers
from tests.image import HTTPD

pytestmark = pytest.mark.kernel


def outside_now() -> set[str]:
    return {p for p in OUTSIDE if os.path.lexists(p)}


def test_a_container_runs_and_everything_goes_afterwards(
        dockerd: Callable[..., DockerEnv]) -> None:
    before = outside_now()
    env = dockerd()
    env.docker("run", "-d", "--name", "web", "-p", "8080:80", "bb", *HTTPD)
    assert "172.17.0.2/16" in env.in_container("web", "ip", "-br", "addr")
    # httpd answers, and its CGI prints the client address (the bridge's, from dockerd's ns)
    assert env.peer_seen("172.17.0.2") == "172.17.0.1"
    procs, mounts, root = env.processes(), env.mounts(), env.root
    assert len(procs) >= 4 and mounts  # dockerd, containerd, shim, httpd; data root, netns
    env.close()
    assert not [p for p in procs if alive(p)]
    assert not root.exists() and not env.mounts()
    assert not os.path.exists(f"/run/netns/{env.ns}")
    assert not [p for p in leftovers() if str(root) in p or env.cgroup in p]
    if not REGISTRY.exists():  # no other DockerEnv runs on this machine meanwhile
        assert outside_now() == before


def test_a_dockerd_that_fails_to_start_leaves_nothing(
        dockerd: Callable[..., DockerEnv]) -> None:
    env = DockerEnv(flags=["--no-such-flag"])
    with pytest.raises(DockerEnvError, match="dockerd exited"):
        env.__enter__()
    assert not env.root.exists() and not os.path.exists(f"/run/netns/{env.ns}")
    assert not env.processes()
