"""What each Engine API event means for nftnet: a small decision table (pure).

Docker's order and repeats, measured with dockerd 20.10 (shared/reference/runtimes.md):

- ``docker run``: container create, one network ``connect`` per network (0.2-0.6 s before
  ``docker run`` returns), then container ``start`` (a few ms before). Inspecting the container
  on ``connect`` blocks until the start is over, but the network's inspect lists its address
  already, and its inspect on ``create`` (when it comes before the start takes the
  container's lock) the ports asked: a connect of a container that is not running yet
  prepares its endpoint (``translate.prepared_endpoint``), so that its fixed ports answer as
  soon as ``docker run`` returns, and the ``start`` resyncs it (changing only what differs:
  random ports). A start that fails emits ``disconnect`` (no ``die``), which drops it;
- ``docker stop``: kill (repeated), ``die``, one ``disconnect`` per network, stop; ``rm`` adds
  ``destroy``. After ``die`` inspect shows no addresses and ``Ports {}``, so the endpoints are
  dropped on ``die`` from what the daemon applied, never recomputed from inspect;
- ``docker network connect/disconnect`` of a running container: its published ports move to
  the new gateway endpoint, and random host ports are allocated anew, so the whole container
  is resynced; ``disconnect`` comes twice (the second resync changes nothing).

``Follower`` remembers the one thing the table needs: which containers run (a full resync
tells it, ``reset``); everything else is in the event.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from nftnet.drivers.docker.translate import DockerContainer, DockerEndpoint

FILTERS = {"type": ["container", "network"]}  # the /events filter the daemon follows


class Action(Enum):
    IGNORE = "ignore"
    RESYNC_CONTAINER = "resync container"  # inspect it; its endpoints become ``resynced(...)``
    DROP_CONTAINER = "drop container"  # remove every endpoint the daemon applied for it
    DROP_ENDPOINT = "drop endpoint"  # remove its endpoint on one network
    PREPARE_ENDPOINT = "prepare endpoint"  # a starting container's, from the network's inspect
    RESYNC_NETWORKS = "resync networks"  # list the networks again and apply the difference


@dataclass(frozen=True)
class Event:
    """One ``/events`` message: ``action`` without Docker's ``: detail`` suffix
    (``exec_start: sh``, ``health_status: healthy``)."""

    type: str
    action: str
    actor: str
    attributes: Mapping[str, str] = field(default_factory=dict)
    time_nano: int = 0

    @classmethod
    def from_json(cls, msg: Mapping[str, Any]) -> Event:
        actor = msg.get("Actor") or {}
        return cls(str(msg.get("Type") or ""), str(msg.get("Action") or "").split(":")[0],
                   str(actor.get("ID") or ""), dict(actor.get("Attributes") or {}),
                   int(msg.get("timeNano") or 0))


@dataclass(frozen=True)
class Decision:
    action: Action
    container: str | None = None
    network: str | None = None


IGNORE = Decision(Action.IGNORE)


class Follower:
    """The decision table, and the set of containers it believes running."""

    def __init__(self, running: Iterable[str] = ()) -> None:
        self.running = set(running)

    def reset(self, running: Iterable[str]) -> None:
        """After a full resync: the containers the listing showed running."""
        self.running = set(running)

    def decide(self, event: Event) -> Decision:
        if event.type == "container":
            return self._container(event.action, event.actor)
        if event.type == "network" and event.attributes.get("type") == "bridge":
            return self._network(event)
        return IGNORE

    def _container(self, action: str, cid: str) -> Decision:
        if action == "start":
            self.running.add(cid)
            return Decision(Action.RESYNC_CONTAINER, cid)
        if action in ("die", "destroy"):
            self.running.discard(cid)
            return Decision(Action.DROP_CONTAINER, cid)
        if action in ("restart", "rename") and cid in self.running:
            return Decision(Action.RESYNC_CONTAINER, cid)  # rename: endpoint names change
        return IGNORE  # create, kill, stop, pause, oom, exec, health, update, ...

    def _network(self, event: Event) -> Decision:
        if event.action in ("create", "destroy", "remove"):
            return Decision(Action.RESYNC_NETWORKS, network=event.actor)
        cid = event.attributes.get("container")
        if not cid or event.action not in ("connect", "disconnect"):
            return IGNORE
        if cid in self.running:
            return Decision(Action.RESYNC_CONTAINER, cid, event.actor)
        if event.action == "disconnect":
            return Decision(Action.DROP_ENDPOINT, cid, event.actor)
        return Decision(Action.PREPARE_ENDPOINT, cid, event.actor)  # connect before start


def resynced(applied: Mapping[str, DockerEndpoint], fresh: DockerContainer
             ) -> dict[str, DockerEndpoint]:
    """A container's endpoints after a resync, by network id: inspect's, plus what was applied
    on networks inspect lists without an address (kept; never an endpoint without one). Kept
    endpoints lose their ports when inspect puts ports elsewhere: a host port has one target.
    A container inspect shows stopped has none."""
    if not fresh.running:
        return {}
    out = {ep.network_id: ep for ep in fresh.endpoints}
    moved = any(ep.ports for ep in fresh.endpoints)
    for nid in fresh.pending:
        if nid in applied:
            out[nid] = replace(applied[nid], ports=()) if moved else applied[nid]
    return out


def endpoint_changes(applied: Mapping[str, DockerEndpoint], fresh: Mapping[str, DockerEndpoint]
                     ) -> tuple[list[DockerEndpoint], list[DockerEndpoint]]:
    """What a container's resync changes of what nftnet holds (by network id, before and
    after): the endpoints to unregister (gone, or renamed), then the registrations, in an
    order in which no port is taken while another of the container's endpoints still holds
    it (ports move between endpoints, to the gateway endpoint): those that take no new port
    first, then those that do, each first without the ports it gives up where it gives up
    some."""
    names = {ep.name for ep in fresh.values()}
    before = {ep.name: ep for ep in applied.values()}
    gone = [ep for ep in applied.values() if ep.name not in names]
    first: list[DockerEndpoint] = []
    last: list[DockerEndpoint] = []
    for ep in fresh.values():
        old = before.get(ep.name)
        if old == ep:
            continue
        held = set(old.ports) if old is not None else set()
        if not set(ep.ports) - held:
            first.append(ep)
            continue
        if held - set(ep.ports):
            first.append(replace(ep, ports=tuple(p for p in ep.ports if p in held)))
        last.append(ep)
    return gone, first + last
