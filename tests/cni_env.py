"""CNI chains run by hand as a runtime runs them, in throwaway network namespaces.

A ``CniHost`` is a host namespace, a plugin directory (Debian's reference plugins from
/usr/lib/cni linked in, nftnet-cni as a test installs it) and host-local's dataDir, all under
one temporary directory; its sandboxes are the containers' namespaces. ``run_chain`` runs a
conflist as libcni does. Plugins run inside the host namespace with only the ``CNI_*``
environment (``ip netns exec HOST env -i ...``) and the config on stdin.

Nothing is left behind: ``close`` deletes the namespaces (and with them the bridge and the
veths); host-local's leases live in the temporary directory, never in /var/lib/cni.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REFERENCE = Path("/usr/lib/cni")  # Debian's containernetworking-plugins
REFERENCE_PLUGINS = ("bridge", "host-local", "loopback")
ROOT = Path(__file__).resolve().parents[1]
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class CniFailure(AssertionError):
    """A plugin exited non-zero; ``error`` is the error JSON it printed (None if none)."""

    def __init__(self, plugin: str, command: str, returncode: int, stdout: str,
                 stderr: str) -> None:
        try:
            self.error: dict[str, Any] | None = json.loads(stdout)
        except ValueError:
            self.error = None
        self.returncode = returncode
        super().__init__(f"{plugin} {command} exited {returncode}: {stdout}{stderr}")


class Sandbox:
    """A container's network namespace (``name``: one that exists already, else a new name)."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name or f"cnic{uuid.uuid4().hex[:8]}"
        self.path = f"/run/netns/{self.name}"

    def ip(self, *args: str) -> Any:
        """``ip -j ARGS`` inside the sandbox, parsed."""
        return ip_json("-n", self.name, *args)


def ip_json(*args: str) -> Any:
    out = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=True,
                         timeout=30).stdout
    return json.loads(out) if out.strip() else []


class CniHost:
    """A host namespace with a CNI plugin directory and an IPAM data directory; ``netns``
    names an existing host namespace (a Lab's), which ``close`` then leaves to its owner."""

    def __init__(self, tmp: Path, netns: str | None = None) -> None:
        self.name = netns or f"cnih{uuid.uuid4().hex[:8]}"
        self.own_netns = netns is None
        self.dir = tmp
        self.bin = tmp / "bin"
        self.ipam_data = tmp / "ipam"
        self.sandboxes: list[Sandbox] = []
        self.env: dict[str, str] = {}  # more of the plugins' environment (as a runtime's)
        self.bin.mkdir(parents=True)
        for plugin in REFERENCE_PLUGINS:
            (self.bin / plugin).symlink_to(REFERENCE / plugin)
        if self.own_netns:
            subprocess.run(["ip", "netns", "add", self.name], check=True)
            subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True)

    def sandbox(self, netns: str | None = None) -> Sandbox:
        """A new sandbox namespace, or ``netns`` (an existing one, left to its owner)."""
        box = Sandbox(netns)
        if netns is None:
            subprocess.run(["ip", "netns", "add", box.name], check=True)
            self.sandboxes.append(box)
        return box

    def install(self, plugin: str, script: str) -> Path:
        """An executable plugin named ``plugin`` in the plugin directory."""
        path = self.bin / plugin
        path.write_text(script)
        path.chmod(0o755)
        return path

    def ip(self, *args: str) -> Any:
        """``ip -j ARGS`` in the host namespace, parsed."""
        return ip_json("-n", self.name, *args)

    def exec(self, plugin: str, command: str, conf: Mapping[str, Any],
             sandbox: Sandbox | None = None, container_id: str = "",
             ifname: str = "eth0") -> dict[str, Any] | None:
        """Run one plugin found by its type in the plugin directory; its parsed stdout (None
        when empty), or CniFailure."""
        env = {"PATH": PATH, **self.env, "CNI_COMMAND": command, "CNI_PATH": str(self.bin)}
        if container_id:
            env |= {"CNI_CONTAINERID": container_id, "CNI_IFNAME": ifname}
        if sandbox is not None:
            env["CNI_NETNS"] = sandbox.path
        argv = ["ip", "netns", "exec", self.name, "env", "-i",
                *(f"{k}={v}" for k, v in env.items()), str(self.bin / plugin)]
        proc = subprocess.run(argv, input=json.dumps(conf), capture_output=True, text=True,
                              timeout=60, check=False)
        if proc.returncode != 0:
            raise CniFailure(plugin, command, proc.returncode, proc.stdout, proc.stderr)
        return json.loads(proc.stdout) if proc.stdout.strip() else None

    def close(self) -> None:
        for name in [box.name for box in self.sandboxes] + [self.name] * self.own_netns:
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


def plugin_conf(conflist: Mapping[str, Any], plugin: Mapping[str, Any],
                capability_args: Mapping[str, Any], prev: Mapping[str, Any] | None,
                ) -> dict[str, Any]:
    """One plugin's stdin as libcni builds it: its entry with the list's name and cniVersion,
    ``runtimeConfig`` for the capabilities it declares that the runtime has values for, and
    ``prevResult`` when there is one."""
    conf = {**plugin, "name": conflist["name"], "cniVersion": conflist["cniVersion"]}
    runtime = {cap: capability_args[cap]
               for cap, on in plugin.get("capabilities", {}).items()
               if on and cap in capability_args}
    if runtime:
        conf["runtimeConfig"] = runtime
    if prev is not None:
        conf["prevResult"] = prev
    return conf


def run_chain(host: CniHost, conflist: Mapping[str, Any], command: str, container_id: str,
              sandbox: Sandbox | None, ifname: str = "eth0",
              capability_args: Mapping[str, Any] | None = None,
              cached: Mapping[str, Any] | None = None) -> list[dict[str, Any] | None]:
    """Run a conflist as libcni does; every plugin's output, in the order they ran.

    ADD: in order, each plugin given the previous one's result (the last output is the
    runtime's result, which it caches). CHECK: in order, and DEL: in reverse order, each
    plugin given the cached ADD result (DEL: if any). The first failure stops the list
    (CniFailure), as libcni stops it.
    """
    args = capability_args or {}
    plugins: Sequence[Mapping[str, Any]] = conflist["plugins"]
    outputs: list[dict[str, Any] | None] = []
    if command == "ADD":
        prev: Mapping[str, Any] | None = None
        for plugin in plugins:
            prev = host.exec(plugin["type"], command, plugin_conf(conflist, plugin, args, prev),
                             sandbox, container_id, ifname)
            outputs.append(prev)
        return outputs
    order = reversed(plugins) if command == "DEL" else plugins
    for plugin in order:
        outputs.append(host.exec(plugin["type"], command,
                                 plugin_conf(conflist, plugin, args, cached), sandbox,
                                 container_id, ifname))
    return outputs


def fake_nftnet_cni(record: Path) -> str:
    """An nftnet-cni executable that runs the real plugin on the tests' fake engine, which
    keeps what it holds and every call in ``record`` (tests/cni_fake.py)."""
    return (f"#!{sys.executable}\n"
            f'"""nftnet-cni on the tests\' FakeEngine, recording into {record}."""\n'
            "import sys\n"
            f"sys.path.insert(0, {str(ROOT)!r})\n"
            "from nftnet.drivers.cni.main import main\n"
            "from tests.cni_fake import FakeEngine\n"
            f"sys.exit(main(lambda state_dir: FakeEngine({str(record)!r}, state_dir)))\n")


def nftnet_cni_installed() -> str:
    """An nftnet-cni executable that runs the installed entry point (the real engine)."""
    return f"#!/bin/sh\nexec {Path(sys.executable).with_name('nftnet-cni')} \"$@\"\n"


CONFLIST = ROOT / "contrib" / "cni" / "nftnet.conflist"


def conflist(host: CniHost, name: str, bridge: str, subnets: Sequence[str], state_dir: Path,
             version: str = "1.0.0", **nftnet: Any) -> dict[str, Any]:
    """contrib/cni/nftnet.conflist as shipped, for network ``name`` on ``bridge`` with
    ``subnets``, host-local's leases in the host's directory and nftnet's state in
    ``state_dir``; ``nftnet`` sets more of nftnet-cni's keys."""
    chain = json.loads(CONFLIST.read_text())
    bridge_conf, mine = chain["plugins"]
    assert (bridge_conf["type"], mine["type"]) == ("bridge", "nftnet-cni")
    bridge_conf["bridge"] = bridge
    bridge_conf["ipam"] |= {"dataDir": str(host.ipam_data),
                            "ranges": [[{"subnet": s}] for s in subnets]}
    mine |= {"stateDir": str(state_dir), **nftnet}
    return {**chain, "cniVersion": version, "name": name}


def port_mappings(*specs: tuple[int, int, str, str]) -> dict[str, Any]:
    """``capability_args`` with portMappings (hostPort, containerPort, protocol, hostIP)."""
    return {"portMappings": [{"hostPort": h, "containerPort": c, "protocol": p, "hostIP": ip}
                             for h, c, p, ip in specs]}
