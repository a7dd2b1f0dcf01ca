"""How the CLI shows the engine's results to people: tables and lines (JSON output is the
results' own data)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nftnet.results import ApplyResult, EndpointChange, NetworkChange, PortChange

if TYPE_CHECKING:
    from nftnet.check import Report


def apply_lines(result: ApplyResult) -> list[str]:
    if not result.changed:
        return ["no changes: the kernel already matches the config"]
    head = "dry run, nothing applied; would change:" if result.dry_run else "applied:"
    return [head, *result.changes]


def port_lines(change: PortChange | None) -> list[str]:
    if change is None:
        return []
    from nftnet.desired.plan import format_port  # the compiler's modules: not for every command

    return ([f"+ port {format_port(m)}" for m in change.added]
            + [f"- port {format_port(m)}" for m in change.removed])


def endpoint_lines(change: EndpointChange) -> list[str]:
    if not change.added:
        return [f"- endpoint {change.name}"]
    return [f"+ endpoint {change.name} on {change.network}: "
            + " ".join(str(a) for a in change.addresses), *port_lines(change.ports)]


def network_lines(change: NetworkChange) -> list[str]:
    if change.added:
        return [f"+ network {change.name}"]
    return [*(f"- endpoint {e}" for e in change.endpoints), f"- network {change.name}",
            *change.notes]


def format_report(report: Report) -> str:
    lines = ["in sync: the kernel holds what nftnet last applied"] if report.in_sync else [
        "drift: the kernel differs from what nftnet last applied (nftnet restore puts back "
        "what it can):", *(f"  {f}" + ("" if f.fixable else "  [restore cannot]")
                           for f in report.drift)]
    lines += [f"warning: {f.message()}" for f in report.foreign if not f.honoured or f.too_early]
    lines += [f"note: {f.message()}" for f in report.foreign if f.honoured and not f.too_early]
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines)


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


def daemon_lines(daemon: dict[str, Any] | None, status: dict[str, Any]) -> list[str]:
    """Whether a daemon runs on the state directory, what it follows and how it stands, and
    what nftnet holds for it (the entries of ``status`` it is the source of)."""
    if daemon is None:
        return ["daemon: none runs"]
    if not daemon["running"]:
        return [f"daemon: not running (it last ran as pid {daemon.get('pid', '?')}, "
                f"following {daemon.get('follows', '?')})"]
    docker = daemon.get("docker") or {}
    link = (f"connected to Docker {docker.get('version') or '?'} since {docker.get('since')}"
            if docker.get("connected") else
            f"not connected ({docker.get('error') or 'connecting'}), retrying")
    held = [sum(e["source"] == daemon.get("follows") for e in status.get(kind) or [])
            for kind in ("networks", "endpoints")]
    lines = [f"daemon: pid {daemon.get('pid')} follows {daemon.get('follows')} at "
             f"{daemon.get('url')}: {link}",
             f"  nftnet holds {held[0]} network(s) and {held[1]} endpoint(s) for it, last "
             f"synced {daemon.get('synced') or 'never'}; "
             f"{daemon.get('heals', 0)} heal(s)"
             + (f", the last at {daemon['last_heal']}" if daemon.get("last_heal") else "")]
    lines += [f"  left alone: {s['kind']} {s['name']}: {s['reason']}"
              for s in daemon.get("skipped") or []]
    lines += [f"  refused: {r['kind']} {r['name']}: {r['reason']}"
              for r in daemon.get("refused") or []]
    return lines


def format_status(status: dict[str, Any]) -> str:
    daemon = daemon_lines(status.get("daemon"), status) if "daemon" in status else []
    if not status["applied"]:
        return "\n".join(["nothing applied yet (run nftnet apply -f FILE)", *daemon])
    sync = {True: "yes", False: "NO (table inet nftnet is gone)",
            None: "unknown: the ruleset changed since (nftnet check compares)"}
    parts = [f"kernel in sync with the last apply: {sync[status['in_sync']]}", *daemon, ""]
    parts.append(_table([["NETWORK", "BRIDGE", "STATE", "SUBNETS", "ICC", "MASQ", "INTERNAL",
                          "SOURCE"]] + [
        [n["name"], n["bridge"], n["bridge_state"], ",".join(n["subnets"]), str(n["icc"]),
         str(n["masquerade"]), str(n["internal"]), n["source"]] for n in status["networks"]]))
    if status["endpoints"]:
        parts += ["", _table([["ENDPOINT", "NETWORK", "IPV4", "IPV6", "SOURCE"]] + [
            [e["name"], e["network"], e["ipv4"] or "-", e["ipv6"] or "-", e["source"]]
            for e in status["endpoints"]])]
    if status["ports"]:
        parts += ["", "PUBLISHED", *(f"  {p}" for p in status["ports"])]
    parts += ["", _table([["CHAIN", "RULE", "PACKETS", "BYTES"]] + [
        [c["chain"], c["rule"], str(c["packets"]), str(c["bytes"])] for c in status["counters"]])]
    return "\n".join(parts)
