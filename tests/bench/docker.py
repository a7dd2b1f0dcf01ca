"""Docker's way of programming iptables: one `iptables` process per rule.

``calls`` turns an iptables-save export into the commands Docker would have run one by one
(chains created, policies set, rules appended), each with the number of rules its table already
holds. iptables-nft reads its table back on every call, so a call's cost grows with that
number: ``Model`` fits seconds = a + b * rules_in_table to measured calls, and ``total`` sums
it over a whole replay, for the sizes too slow to replay for real (labelled "extrapolated").
Docker also runs `iptables -C` before every -A (not counted here: a lower bound for Docker).
"""

from __future__ import annotations

import shlex
import statistics
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from tests.bench.common import Target


@dataclass(frozen=True)
class Call:
    """One iptables invocation and how many rules its table held before it."""

    argv: list[str]
    table_rules: int


@dataclass(frozen=True)
class Model:
    """Seconds per iptables call = a + b * rules already in the table."""

    a: float
    b: float

    def call(self, table_rules: float) -> float:
        return self.a + self.b * table_rules

    def total(self, table_rules: Iterable[int]) -> float:
        """Seconds of a replay whose calls found these rule counts in their tables."""
        return sum(self.call(k) for k in table_rules)


def calls(export: str) -> list[Call]:
    """The iptables commands that rebuild an iptables-save text one rule at a time."""
    return list(_calls(export))


def call_sizes(export: str) -> array[int]:
    """Rules already in its table for each call of ``calls(export)`` (compact: no argv)."""
    return array("l", (c.table_rules for c in _calls(export)))


def _calls(export: str) -> Iterator[Call]:
    table, rules = "", 0
    for line in export.splitlines():
        if line.startswith("*"):
            table, rules = line[1:], 0
        elif line.startswith(":"):
            chain, policy = line[1:].split()[:2]
            if policy == "-":
                yield Call(["iptables", "-t", table, "-N", chain], rules)
            elif policy != "ACCEPT":
                yield Call(["iptables", "-t", table, "-P", chain, policy], rules)
        elif line.startswith("-A "):
            yield Call(["iptables", "-t", table, *shlex.split(line)], rules)
            rules += 1


def table_sizes(export: str) -> dict[str, int]:
    """Rules per table in an iptables-save text."""
    sizes: dict[str, int] = {}
    table = ""
    for line in export.splitlines():
        if line.startswith("*"):
            table = line[1:]
            sizes[table] = 0
        elif line.startswith("-A "):
            sizes[table] += 1
    return sizes


def triple(target: Target, host_port: int, container_port: int = 80) -> list[list[str]]:
    """The three rules Docker 20.10 appends to publish one tcp port (export's syntax)."""
    ip, br, port = target.ipv4, target.bridge, str(container_port)
    match = ["-p", "tcp", "-m", "tcp", "--dport"]
    return [
        ["iptables", "-t", "nat", "-A", "DOCKER", "!", "-i", br, *match, str(host_port),
         "-j", "DNAT", "--to-destination", f"{ip}:{port}"],
        ["iptables", "-t", "filter", "-A", "DOCKER", "-d", f"{ip}/32", "!", "-i", br, "-o", br,
         *match, port, "-j", "ACCEPT"],
        ["iptables", "-t", "nat", "-A", "POSTROUTING", "-s", f"{ip}/32", "-d", f"{ip}/32",
         *match, port, "-j", "MASQUERADE"],
    ]


def fit(points: list[tuple[float, float]], bins: int = 20) -> Model:
    """Least-squares line through (rules in table, seconds per call) points, taken as the
    medians of ``bins`` equal slices by rule count (a busy machine's outliers do not tilt it)."""
    ordered = sorted(points)
    size = max(1, len(ordered) // bins)
    slices = [ordered[i:i + size] for i in range(0, len(ordered), size)]
    points = [(statistics.median(x for x, _ in s), statistics.median(y for _, y in s))
              for s in slices]
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    b = sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0
    return Model(my - b * mx, b)
