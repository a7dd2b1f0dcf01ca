"""A fake of nftnet's engine for nftnet-cni's tests: it holds attachments as the real one
would (idempotent DEL, GC by the runtime's list) and records every call, in memory or, given a
file, in JSON there, so that the separate nftnet-cni processes of a chain test share it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path
from typing import Any

from nftnet.drivers.cni.engine import Attachment, Endpoint, Network, PortMap, Readiness
from nftnet.errors import NftnetError


def jsonable(value: Any) -> Any:
    """Dataclasses, addresses and tuples as JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, IPv4Address | IPv6Address | IPv4Network | IPv6Network):
        return str(value)
    if isinstance(value, list | tuple | frozenset | set):
        items = [jsonable(v) for v in value]
        return sorted(items, key=json.dumps) if isinstance(value, frozenset | set) else items
    return value


class FakeEngine:
    """An Engine (engine.Engine) on nothing but a dict. ``refuse`` makes every change fail
    with that error; ``readiness`` is what STATUS gets."""

    def __init__(self, path: str | Path | None = None, state_dir: str | None = None) -> None:
        self.path = Path(path) if path else None
        self.held: dict[str, dict[str, Any]] = {}
        self.calls: list[dict[str, Any]] = []
        self.refuse: NftnetError | None = None
        self.readiness = Readiness()
        if self.path and self.path.exists():
            saved = json.loads(self.path.read_text())
            self.held, self.calls = saved["held"], saved["calls"]
        self.state_dir = state_dir

    @staticmethod
    def key(network: str, attachment: Attachment) -> str:
        return f"{network}/{attachment.container_id}/{attachment.ifname}"

    def _record(self, call: str, **args: Any) -> None:
        self.calls.append({"call": call, "state_dir": self.state_dir, **jsonable(args)})
        if self.path:
            self.path.write_text(json.dumps({"held": self.held, "calls": self.calls}))

    def _change(self) -> None:
        if self.refuse is not None:
            raise self.refuse

    def add(self, owner: str, network: Network, endpoint: Endpoint,
            ports: Sequence[PortMap]) -> None:
        self._change()
        self.held[self.key(network.name, endpoint.attachment)] = jsonable(
            {"owner": owner, "network": network, "endpoint": endpoint, "ports": list(ports)})
        self._record("add", owner=owner, network=network, endpoint=endpoint, ports=list(ports))

    def delete(self, owner: str, network: str, attachment: Attachment) -> None:
        self._change()
        self.held.pop(self.key(network, attachment), None)
        self._record("delete", owner=owner, network=network, attachment=attachment)

    def check(self, owner: str, network: Network, endpoint: Endpoint,
              ports: Sequence[PortMap]) -> list[str]:
        held = self.held.get(self.key(network.name, endpoint.attachment))
        self._record("check", owner=owner, network=network, endpoint=endpoint, ports=list(ports))
        if held is None:
            return [f"nothing held for {self.key(network.name, endpoint.attachment)}"]
        asked = jsonable({"owner": owner, "network": network, "endpoint": endpoint,
                          "ports": list(ports)})
        return [f"{part} differs" for part in asked if asked[part] != held[part]]

    def gc(self, owner: str, network: str, valid: frozenset[Attachment]) -> list[Attachment]:
        self._change()
        keep = {self.key(network, a) for a in valid}
        gone = sorted(k for k, v in self.held.items() if v["owner"] == owner
                      and v["network"]["name"] == network and k not in keep)
        for k in gone:
            del self.held[k]
        self._record("gc", owner=owner, network=network, valid=valid)
        return [Attachment(*k.split("/")[1:]) for k in gone]

    def status(self, owner: str, network: str) -> Readiness:
        self._record("status", owner=owner, network=network)
        return self.readiness
