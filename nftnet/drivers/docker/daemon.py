"""``nftnet daemon --docker``: dockerd drives nftnet, and the firewall heals itself.

Three threads read and only queue what they read: one follows dockerd's ``/events`` (and
reconnects, with backoff, whenever the stream ends or dockerd is down), and sends the inspect
of each container the moment its ``create`` event comes, to read the ports asked before the
start takes the container's lock (a race, nearly always won, lost harmlessly); one reads those
inspects' answers; one nftables' change notifications (``Engine.watch``). The main thread
alone changes anything, taking the queue's items in order; signals only set flags it reads
between items (SIGTERM, SIGINT: stop, the firewall left as it is; SIGHUP: a full resync), so
that no change is ever cut short by one.

- Connected (the event stream is open, so nothing that happens from then on is missed):
  preflight (dockerd writes no rules of its own and runs no userland proxy), then a snapshot
  of every network and running container, translated, made true with ``Engine.sync``: one
  transaction, removing what nftnet held for Docker that Docker no longer has (containers
  removed or networks gone while the daemon was down or dockerd restarted).
- Each event, as ``events.Follower`` decides: a container that connects before its start has
  its endpoint prepared from the network's inspect (its address, and the fixed ports its
  ``create`` inspect asked), so that the ports answer when ``docker run`` returns; one that
  starts (or connects) has its endpoints registered as its inspect shows them (what differs
  from the prepared one only); each a transaction of map elements: the same cost with 10 or
  10,000 ports published. One that dies, is destroyed or disconnects has them unregistered;
  a network created or removed is a sync of the networks.
- nftables changed by someone else in nftnet's table (a flush, a deletion, a rule added to the
  user chain by hand): after a short debounce, ``Engine.heal``, which puts back what is
  missing (the user chain as last recorded) or records the chain as it now is.

Log lines go to stderr, one per line, with a syslog priority prefix (``<6>``) that journald
reads as the level.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from nftnet.drivers.docker import preflight
from nftnet.drivers.docker.engine import Engine as DockerEngine
from nftnet.drivers.docker.engine import EngineError, SentInspect, engine_url
from nftnet.drivers.docker.events import (
    Action,
    Decision,
    Event,
    Follower,
    endpoint_changes,
    resynced,
)
from nftnet.drivers.docker.translate import (
    DockerEndpoint,
    DockerNetwork,
    Inspect,
    Skipped,
    endpoint_entry,
    endpoint_name,
    network_entry,
    prepared_endpoint,
    snapshot,
    translate_container,
    translate_networks,
)
from nftnet.errors import EXIT_BUG, EXIT_INTERRUPTED, ConfigError, DaemonRunning, NftnetError

if TYPE_CHECKING:
    from nftnet.api import Engine
    from nftnet.results import Refusal, SyncResult

OWNER = "docker"
EXIT_STOPPED = 0  # SIGTERM: stopped cleanly, the firewall left as it is
EXIT_REFUSED = 4  # preflight: dockerd writes its own rules or runs the userland proxy
EXIT_RUNNING = 5  # another daemon runs on the state directory
BACKOFF = (0.2, 5.0)  # seconds: the first retry, doubled up to the last
TICK = 0.2  # seconds the main thread waits for an item before it looks at its flags
HEAL_QUIET = 0.1  # seconds without another commit before healing (a burst heals once) ...
HEAL_LATEST = 0.4  # ... but no later than this after the first commit of the burst
PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
            logging.CRITICAL: 2}

log = logging.getLogger("nftnet.daemon")


class JournalFormatter(logging.Formatter):
    """One line per record, prefixed with its syslog priority (journald's ``<N>``)."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record).replace("\n", " | ")
        return f"<{PRIORITY.get(record.levelno, 6)}>{text}"


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JournalFormatter("%(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(level.upper())
    log.propagate = False


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Refused(Exception):
    """Preflight refused dockerd (the problems are logged)."""


class Daemon:
    """The daemon on one nftnet engine (state directory) and one dockerd."""

    def __init__(self, engine: Engine, url: str | None = None,
                 default_bridge_masquerade: bool = True) -> None:
        self.engine = engine
        self.url = engine_url(url)
        self.masquerade = default_bridge_masquerade
        self.queue: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.follower = Follower()
        self.networks: dict[str, DockerNetwork] = {}  # by Docker id
        self.held: dict[str, dict[str, DockerEndpoint]] = {}  # container id -> network id ->
        self.created: dict[str, Inspect] = {}  # inspect at create, of containers not started
        # created containers: (id, its inspect sent by the event thread, or None)
        self.to_inspect: queue.SimpleQueue[tuple[str, SentInspect | None]] = queue.SimpleQueue()
        self.docker: DockerEngine | None = None  # the main thread's own client
        self.signal: int | None = None
        self.resync_asked = False
        self.resync_at: float | None = None  # a failed change: resync then (backoff)
        self.retry = BACKOFF[0]
        self.heal_at: float | None = None  # someone else changed nftnet's table: heal then
        self.heal_first = 0.0
        self.changed_by: set[str] = set()
        self.info: dict[str, Any] = {"pid": os.getpid(), "follows": "docker", "url": self.url,
                                     "started": now(), "docker": {"connected": False},
                                     "synced": None, "skipped": [], "refused": [],
                                     "heals": 0}

    # -- running ---------------------------------------------------------------------------

    def run(self) -> int:
        """Follow dockerd until a signal stops it; the exit code."""
        self._signals()
        self.engine.chains()  # nftables usable (NftnetError, exit 1, otherwise)
        self._record()
        threading.Thread(target=self._follow_nftables, name="nftables", daemon=True).start()
        threading.Thread(target=self._follow_docker, name="docker-events", daemon=True).start()
        threading.Thread(target=self._inspect_created, name="docker-created", daemon=True
                         ).start()
        log.info("following Docker at %s (state directory %s)", self.url,
                 self.engine.state_dir.path)
        self.heal_at = time.monotonic()  # whatever happened while no daemon ran
        try:
            while self.signal is None:
                wait = TICK if self.heal_at is None else max(
                    0.0, min(TICK, self.heal_at - time.monotonic()))
                try:
                    kind, data = self.queue.get(timeout=wait)
                except queue.Empty:
                    kind, data = "tick", None
                self._step(kind, data)
        except Refused:
            return EXIT_REFUSED
        finally:
            self._close_client()
        log.info("stopped by %s; the firewall stays as it is", signal.Signals(self.signal).name)
        self.info["docker"] = {"connected": False, "error": "the daemon stopped"}
        self._record()
        return EXIT_INTERRUPTED if self.signal == signal.SIGINT else EXIT_STOPPED

    def _signals(self) -> None:
        def stop(signum: int, frame: Any) -> None:
            self.signal = signum

        def resync(signum: int, frame: Any) -> None:
            self.resync_asked = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, resync)

    def _step(self, kind: str, data: Any) -> None:
        """One queue item, then whatever is due."""
        if kind == "up":
            self._connected(data)
        elif kind == "down":
            self._disconnected(data)
        elif kind == "event" and self.docker is not None:
            self._event(data)
        elif kind == "created":
            self._created(data)
        elif kind == "nft":
            self._changed(data)
        if self.heal_at is not None and time.monotonic() >= self.heal_at:
            self._heal()
        if self.resync_asked and self.docker is not None:
            self.resync_asked = False
            log.info("SIGHUP: full resync")
            self._resync()
        if self.resync_at is not None and time.monotonic() >= self.resync_at \
                and self.docker is not None:
            self._resync()

    # -- self-healing ------------------------------------------------------------------------

    def _follow_nftables(self) -> None:
        """The nftables thread: queue who committed each batch that touched nftnet's table
        (the daemon's own commits, from the main thread, aside)."""
        while True:
            try:
                with self.engine.watch() as monitor:
                    touched = False
                    while True:
                        batch = monitor.read()
                        if batch is None:
                            continue
                        if batch.lost:
                            self.queue.put(("nft", "someone (notifications were lost)"))
                        for notice in batch.notices:
                            touched |= notice.touches_nftnet
                            if notice.ends_batch:
                                if touched and notice.pid != os.getpid():
                                    self.queue.put(("nft", f"{notice.process or '?'} (pid "
                                                           f"{notice.pid})"))
                                touched = False
            except OSError as e:
                log.error("cannot follow nftables' notifications: %s; trying again in 1 s", e)
                time.sleep(1)

    def _changed(self, by: str) -> None:
        """A commit touched nftnet's table: heal once the burst is over."""
        moment = time.monotonic()
        if self.heal_at is None:
            self.heal_first = moment
        self.heal_at = min(moment + HEAL_QUIET, self.heal_first + HEAL_LATEST)
        self.changed_by.add(by)

    def _heal(self) -> None:
        """Put back what is missing of nftnet's table, or record the user chain as it now
        is; nothing when the generation proves the change was nftnet's."""
        when = (f"after a change by {', '.join(sorted(self.changed_by))}" if self.changed_by
                else "at start")
        self.heal_at, self.changed_by = None, set()
        start = time.monotonic()
        try:
            done = self.engine.heal()
        except NftnetError as e:
            log.error("healing %s failed: %s; trying again in 1 s", when, e)
            self.heal_at = self.heal_first = time.monotonic() + 1
            return
        if done is None:
            log.debug("%s: nftnet's own", when)
            return
        lines, unfixable = done
        took = (time.monotonic() - start) * 1000
        if any(line == "restored:" for line in lines):
            self.info["heals"] += 1
            self.info["last_heal"] = now()
            log.warning("healed %s (%d ms): %s", when, took,
                        "; ".join(line.strip() for line in lines if line != "restored:"))
            self._record()
        else:
            log.info("%s (%d ms): %s", when, took, "; ".join(lines))
        for finding in unfixable:
            log.warning("cannot heal %s", finding)

    # -- dockerd's connection ---------------------------------------------------------------

    def _follow_docker(self) -> None:
        """The event thread: open the stream, say so, queue every event; when it ends or
        dockerd is down, say so and try again after a growing pause."""
        delay = BACKOFF[0]
        while True:
            try:
                client = DockerEngine(self.url)
                stream = client.events()
                version = client.version()
            except EngineError as e:
                self.queue.put(("down", str(e)))
            else:
                delay = BACKOFF[0]
                self.queue.put(("up", version))
                try:
                    for event in stream:
                        if event.type == "container" and event.action == "create":
                            self.to_inspect.put((event.actor, self._send_inspect(client,
                                                                                 event.actor)))
                        self.queue.put(("event", event))
                    reason = "the event stream ended (dockerd stopped or restarts)"
                except Exception as e:  # the SDK's read errors: any means the stream is gone
                    reason = f"the event stream broke: {e}"
                finally:
                    client.close()
                self.queue.put(("down", reason))
            time.sleep(delay)
            delay = min(delay * 2, BACKOFF[1])

    @staticmethod
    def _send_inspect(client: DockerEngine, cid: str) -> SentInspect | None:
        """A created container's inspect, sent at once (to come before the start: see the
        engine module); None when the SDK is to do it."""
        try:
            return client.send_inspect(cid)
        except EngineError as e:
            log.debug("sending the inspect of created container %s: %s", cid[:12], e)
            return None

    def _inspect_created(self) -> None:
        """The created-containers thread: read each created container's inspect (sent by the
        event thread, else made here) and queue what it shows (after the start, when the
        start took the container's lock first: ``_created`` drops it)."""
        client: DockerEngine | None = None
        while True:
            client = self._read_created(*self.to_inspect.get(), client)

    def _read_created(self, cid: str, sent: SentInspect | None, client: DockerEngine | None
                      ) -> DockerEngine | None:
        """One created container's inspect, queued as ``created`` (nothing when it is gone
        or dockerd failed: its start does it all then); the SDK's client, for the next."""
        try:
            if sent is not None:
                inspect = sent.answer()
            else:
                client = client or DockerEngine(self.url)
                inspect = client.container(cid)
        except EngineError as e:
            log.debug("inspecting created container %s: %s", cid[:12], e)
            if client is not None:
                client.close()
            return None
        if inspect is not None:
            self.queue.put(("created", inspect))
        return client

    def _connected(self, version: dict[str, Any]) -> None:
        """The stream is open: check dockerd, then resync from its truth."""
        report = preflight.check(self.url, listing=self.engine.chains())
        refusals = [p for p in report.problems if not p.unreachable]
        for problem in refusals:
            log.error("refusing to follow dockerd: %s (fix: %s)", problem.reason, problem.fix)
        if refusals:
            self.info["docker"] = {"connected": False, "error": "refused: " + "; ".join(
                p.reason for p in refusals)}
            self._record()
            raise Refused
        for note in report.notes:
            log.info("note: %s", note)
        self._close_client()
        try:
            self.docker = DockerEngine(self.url)
        except EngineError as e:
            self._failed("connecting", e)
            return
        log.info("connected to Docker %s (API %s) at %s", version.get("Version"),
                 version.get("ApiVersion"), self.url)
        self.info["docker"] = {"connected": True, "version": version.get("Version"),
                               "since": now()}
        self._resync()

    def _disconnected(self, reason: str) -> None:
        if self.docker is not None or self.info["docker"].get("error") != reason:
            log.warning("Docker at %s: %s; the firewall stays as it is, reconnecting", self.url,
                        reason)
        self._close_client()
        self.info["docker"] = {"connected": False, "error": reason}
        self._record()

    def _close_client(self) -> None:
        if self.docker is not None:
            self.docker.close()
            self.docker = None

    # -- resyncs -----------------------------------------------------------------------------

    def _resync(self) -> None:
        """Docker's whole truth, made nftnet's in one transaction."""
        assert self.docker is not None
        try:
            snap = snapshot(self.docker.networks(), self.docker.running_containers(),
                            default_bridge_masquerade=self.masquerade)
        except EngineError as e:
            self._failed("reading Docker's networks and containers", e)
            return
        self.networks = {n.id: n for n in snap.networks}
        self.held = {c.id: {ep.network_id: ep for ep in c.endpoints} for c in snap.containers}
        self.follower.reset(c.id for c in snap.containers if c.running)
        self._sync("resync", snap.skipped)
        self._foreign_drops()

    def _foreign_drops(self) -> None:
        """Another firewall's forward chain with policy drop (the FORWARD DROP dockerd leaves
        in iptables when switched off, above all) drops what nftnet lets through: said at each
        resync with the one rule that fixes it, as ``nftnet check`` says it."""
        try:
            drops = self.engine.foreign_drops()
        except NftnetError as e:
            log.debug("listing other firewalls' chains: %s", e)
            return
        for drop in drops:
            if not drop.honoured or drop.too_early:
                log.warning("%s", drop.message())

    def _resync_networks(self) -> None:
        """A network came or went: the networks again, the endpoints nftnet holds renamed
        where a network's nftnet name changed (two Docker networks of one name)."""
        assert self.docker is not None
        try:
            self.networks, skipped = translate_networks(
                self.docker.networks(), default_bridge_masquerade=self.masquerade)
        except EngineError as e:
            self._failed("reading Docker's networks", e)
            return
        for cid, eps in list(self.held.items()):
            self.held[cid] = {nid: self._renamed(ep) for nid, ep in eps.items()
                              if nid in self.networks}
        self._sync("networks", skipped)

    def _renamed(self, ep: DockerEndpoint) -> DockerEndpoint:
        net = self.networks[ep.network_id].name
        return replace(ep, network=net, name=endpoint_name(ep.container_name, net,
                                                            ep.container_id))

    def _sync(self, why: str, skipped: Iterable[Skipped]) -> None:
        networks = {n.name: network_entry(n) for n in self.networks.values()}
        endpoints = {ep.name: endpoint_entry(ep) for eps in self.held.values()
                     for ep in eps.values()}
        start = time.monotonic()
        try:
            result = self.engine.sync(OWNER, networks, endpoints)
        except NftnetError as e:
            self._failed(f"{why} sync", e)
            return
        self.resync_at, self.retry = None, BACKOFF[0]
        self._log_sync(why, result, time.monotonic() - start)
        said = []
        for s in skipped:  # said at a resync, else when new: status lists them all
            said.append(item := _said(s))
            if why == "resync" or item not in self.info["skipped"]:
                log.info("left alone: %s %s: %s", s.kind, s.name, s.reason)
        self.info.update(synced=now(), skipped=said, refused=[_said(r) for r in result.refused])
        self._record()

    def _log_sync(self, why: str, result: SyncResult, seconds: float) -> None:
        for r in result.refused:
            log.warning("refused %s %s: %s", r.kind, r.name, r.reason)
        if not result.changed:
            log.info("%s: nftnet holds what Docker has already (%d ms)", why, seconds * 1000)
            return
        parts = [f"{sign}{kind} {', '.join(names)}" for sign, kind, names in (
            ("+", "network", result.networks_added), ("-", "network", result.networks_removed),
            ("~", "network", result.networks_replaced), ("+", "endpoint", result.endpoints_added),
            ("-", "endpoint", result.endpoints_removed),
            ("~", "endpoint", result.endpoints_replaced)) if names]
        log.info("%s: one transaction (%d ms): %s", why, seconds * 1000, "; ".join(parts))

    def _failed(self, what: str, error: NftnetError) -> None:
        """A change nftnet refused, or dockerd did not answer: the firewall is as it was; a
        full resync after a pause (growing while it fails)."""
        log.error("%s failed: %s; full resync in %.1f s", what, error, self.retry)
        self.resync_at = time.monotonic() + self.retry
        self.retry = min(self.retry * 2, BACKOFF[1])

    # -- events ------------------------------------------------------------------------------

    def _event(self, event: Event) -> None:
        decision = self.follower.decide(event)
        if decision.action is not Action.IGNORE:
            log.debug("%s %s %s: %s", event.type, event.action, event.actor[:12],
                      decision.action.value)
        handlers: dict[Action, Callable[[Decision], None]] = {
            Action.RESYNC_CONTAINER: self._resync_container,
            Action.DROP_CONTAINER: lambda d: self._container(d.container or "", {}),
            Action.DROP_ENDPOINT: self._drop_endpoint,
            Action.RESYNC_NETWORKS: lambda d: self._resync_networks(),
            Action.PREPARE_ENDPOINT: self._prepare,
        }
        if decision.action in (Action.RESYNC_CONTAINER, Action.DROP_CONTAINER,
                               Action.DROP_ENDPOINT):  # started, or stopped: not starting
            self.created.pop(decision.container or "", None)
        if (handler := handlers.get(decision.action)) is not None:
            handler(decision)

    def _created(self, inspect: Inspect) -> None:
        """A created container's inspect: kept until it starts, for ``_prepare``; where its
        connect came first, its endpoints are prepared again, with their ports."""
        cid = str(inspect.get("Id") or "")
        if (inspect.get("State") or {}).get("Running") or cid in self.follower.running:
            return  # the start took the lock first: its own inspect does it all
        self.created[cid] = inspect
        for nid in list(self.held.get(cid, {})):
            self._prepare(Decision(Action.PREPARE_ENDPOINT, cid, nid))

    def _prepare(self, decision: Decision) -> None:
        """A starting container connected: its endpoint from the network's inspect (nothing
        when it shows none; the start does it then)."""
        assert self.docker is not None and decision.container is not None
        cid, nid = decision.container, decision.network or ""
        net = self.networks.get(nid)
        if net is None:
            return
        try:
            inspect = self.docker.network(nid)
            ep = None if inspect is None else prepared_endpoint(net, inspect, cid,
                                                                self.created.get(cid))
        except EngineError as e:
            log.debug("preparing %s on %s: %s; its start registers it", cid[:12], net.name, e)
            return
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            log.warning("left alone until it starts: container %s on %s: unexpected inspect "
                        "data: %s", cid[:12], net.name, e)
            return
        if ep is not None and cid not in self.follower.running:
            self._container(cid, {**self.held.get(cid, {}), nid: ep})

    def _resync_container(self, decision: Decision) -> None:
        assert self.docker is not None and decision.container is not None
        try:
            inspect = self.docker.container(decision.container)
        except EngineError as e:
            self._failed(f"inspecting container {decision.container[:12]}", e)
            return
        if inspect is None:
            self._container(decision.container, {})
            return
        try:
            fresh, skipped = translate_container(inspect, self.networks)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            log.warning("left alone: container %s: unexpected inspect data: %s",
                        decision.container[:12], e)
            return
        for s in skipped:
            log.info("left alone: %s %s: %s", s.kind, s.name, s.reason)
        self._container(fresh.id, resynced(self.held.get(fresh.id, {}), fresh))

    def _drop_endpoint(self, decision: Decision) -> None:
        cid, nid = decision.container or "", decision.network or ""
        self._container(cid, {n: ep for n, ep in self.held.get(cid, {}).items() if n != nid})

    def _container(self, cid: str, fresh: dict[str, DockerEndpoint]) -> None:
        """Make nftnet hold ``fresh`` for container ``cid``: elements only."""
        gone, changed = endpoint_changes(self.held.get(cid, {}), fresh)
        if fresh:
            self.held[cid] = fresh
        else:
            self.held.pop(cid, None)
        for ep in gone:
            self._change(f"unregister {ep.name}", lambda ep=ep: self.engine.unregister(
                ep.name, OWNER))
        for ep in changed:
            entry = endpoint_entry(ep)
            self._change(f"register {ep.name}", lambda ep=ep, entry=entry: self.engine.register(
                ep.name, entry["network"], owner=OWNER, ipv4=entry.get("ipv4"),
                ipv6=entry.get("ipv6"), publish=entry["publish"]))

    def _change(self, what: str, call: Callable[[], object]) -> None:
        start = time.monotonic()
        try:
            call()
        except ConfigError as e:  # what Docker has, nftnet cannot hold: say so, go on
            log.warning("%s refused: %s", what, e)
            return
        except NftnetError as e:
            self._failed(what, e)
            return
        log.info("%s (%.1f ms)", what, (time.monotonic() - start) * 1000)

    # -- the status file ---------------------------------------------------------------------

    def _record(self) -> None:
        try:
            self.engine.record_daemon(self.info)
        except NftnetError as e:
            log.warning("cannot write the daemon's status file: %s", e)


def _said(item: Skipped | Refusal) -> dict[str, str]:
    return {"kind": item.kind, "name": item.name, "reason": item.reason}


def run(engine: Engine, url: str | None, log_level: str = "info",
        default_bridge_masquerade: bool = True) -> int:
    """``nftnet daemon --docker``: the exit code (see EXIT_CODES)."""
    setup_logging(log_level)
    try:
        with engine.daemon_lock():
            return Daemon(engine, url, default_bridge_masquerade).run()
    except DaemonRunning as e:
        log.error("%s", e)
        return EXIT_RUNNING
    except NftnetError as e:
        log.error("%s", e)
        return e.exit_code
    except Exception:
        where = engine.state_dir.log_error(traceback.format_exc())
        log.critical("unexpected error (%r); details in %s", sys.exc_info()[1],
                     where or "stderr")
        if where is None:
            traceback.print_exc()
        return EXIT_BUG
