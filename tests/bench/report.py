"""The benchmark's tables (markdown, printed and written to results.md) and target checks."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
from array import array
from dataclasses import dataclass

from tests.bench import docker
from tests.bench.change import ChangeResult
from tests.bench.common import Workload, median
from tests.bench.packets import PacketResult
from tests.bench.program import ProgramResult
from tests.bench.scale import shape


@dataclass
class Results:
    machine: str
    note: str
    rounds: int
    workloads: list[Workload]
    change_sizes: list[int]
    program: ProgramResult
    change: ChangeResult
    packets: PacketResult
    packet_sizes: list[int]
    memory: dict[int, int]
    replays: dict[int, array[int]]  # per size: rules in its table before each per-rule call

    def prog(self, n: int, contender: str) -> float:
        return median(self.program.times[n][contender])

    def model(self) -> tuple[int, docker.Model] | None:
        """The per-call model, fitted to the largest real replay: (its size, model)."""
        if not self.program.per_call:
            return None
        n = max(self.program.per_call)
        return n, docker.fit([(float(k), s) for k, s in self.program.per_call[n].points])

    def per_rule(self, n: int) -> tuple[float, bool]:
        """Seconds of the one-process-per-rule replay at n, and whether it is extrapolated."""
        if n in self.program.per_call:
            return self.program.per_call[n].seconds, False
        fitted = self.model()
        return (fitted[1].total(self.replays[n]) if fitted else float("nan")), True

    def rate(self, n: int, contender: str) -> float:
        return median(self.packets.rates.get((n, contender), []))

    def vs_one(self, n: int, contender: str) -> float:
        """Median over rounds of the rate at n over the rate at 1 port (nan without 1)."""
        if 1 not in self.packet_sizes:
            return float("nan")
        return median(self.packets.paired(n, 1, contender))

    def latency_ms(self, n: int, contender: str, q: float) -> float:
        lat = sorted(self.packets.latencies.get((n, contender), []))
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1e3 if lat else float("nan")


def machine() -> str:
    """One line: cores, CPU, memory, kernel, nft, iptables, Python."""
    cpu = mem = ""
    with open("/proc/cpuinfo") as f:
        cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    with open("/proc/meminfo") as f:
        kib = int(next(ln for ln in f if ln.startswith("MemTotal")).split()[1])
        mem = f"{kib / 2**20:.0f} GiB"

    def version(*argv: str) -> str:
        return subprocess.run(argv, capture_output=True, text=True).stdout.strip()

    return (f"{os.cpu_count()} cores ({cpu}), {mem}, Linux {platform.release()}, "
            f"{version('nft', '--version')}, {version('iptables', '--version')}, "
            f"Python {platform.python_version()}")


def _s(seconds: float) -> str:
    if seconds != seconds:  # nan
        return "-"
    return f"{seconds:.3f}" if seconds < 10 else f"{seconds:,.1f}"


def _x(ratio: float) -> str:
    return "-" if ratio != ratio else f"{ratio:.2f}"


def program_table(res: Results) -> list[str]:
    out = [f"### 1. Programming the whole set (seconds, median of {res.rounds}; fresh namespace "
           "each)", "",
           "| ports | networks | endpoints | floor: `nft -j -f` | nftnet transaction | "
           "`nftnet apply` | `nftnet apply` + bridges | `iptables-restore` | `iptables` per "
           "rule | apply ÷ floor | transaction ÷ floor | restore ÷ apply | restore ÷ "
           "transaction |",
           "|" + "---:|" * 13]
    for wl in res.workloads:
        n = wl.ports
        floor, txn, apply = (res.prog(n, c) for c in ("floor", "txn", "apply"))
        restore = res.prog(n, "restore")
        seconds, extrapolated = res.per_rule(n)
        calls = len(res.replays[n])
        rule = (f"≈{_s(seconds)} (extrapolated, {calls:,} calls)" if extrapolated
                else f"{_s(seconds)} ({calls:,} calls)")
        out.append(f"| {n:,} | {wl.networks:,} | {wl.endpoints:,} | {_s(floor)} | {_s(txn)} | "
                   f"{_s(apply)} | {_s(res.prog(n, 'apply+br'))} | {_s(restore)} | {rule} | "
                   f"{_x(apply / floor)} | {_x(txn / floor)} | {_x(restore / apply)} | "
                   f"{_x(restore / txn)} |")
    return out


def change_table(res: Results) -> list[str]:
    rounds = len(next(iter(res.change.publish.values()), []))
    out = [f"### 2. One change with N ports already there (seconds, median of {rounds})", "",
           "| ports already there | `nftnet port publish` (whole process) | Docker: three "
           "`iptables -A` | Docker ÷ nftnet | Docker as it runs them: `-C`, then `-A` (six "
           "processes) | ÷ nftnet |", "|---:|---:|---:|---:|---:|---:|"]
    for n in res.change_sizes:
        pub, tri = median(res.change.publish[n]), median(res.change.triple[n])
        checked = median(res.change.checked[n])
        out.append(f"| {n:,} | {_s(pub)} | {_s(tri)} | {_x(tri / pub)} | {_s(checked)} | "
                   f"{_x(checked / pub)} |")
    return out


def packets_table(res: Results) -> list[str]:
    rounds = len(next(iter(res.packets.rates.values()), []))
    out = ["### 3. New TCP connections to the last published port, LAN namespace to a "
           f"container (median of {rounds} short runs; latency of connect(), all runs; "
           "\"vs 1 port\": the rate over the same contender's at 1 port in the same round, "
           "median)", "",
           "| ports | nftnet conn/s | p50 ms | p99 ms | vs 1 port | iptables conn/s | p50 ms | "
           "p99 ms | vs 1 port | nftnet ÷ iptables |", "|" + "---:|" * 10]
    for n in res.packet_sizes:
        cells = []
        for c in ("nftnet", "iptables"):
            cells += [f"{res.rate(n, c):,.0f}", f"{res.latency_ms(n, c, 0.5):.3f}",
                      f"{res.latency_ms(n, c, 0.99):.3f}", _x(res.vs_one(n, c))]
        ratio = res.rate(n, "nftnet") / res.rate(n, "iptables")
        out.append(f"| {n:,} | {' | '.join(cells)} | {_x(ratio)} |")
    return out


def memory_table(res: Results) -> list[str]:
    out = ["### 4. Peak memory of the whole `nftnet apply` process (creating the bridges)", "",
           "| ports | max RSS (MiB) |", "|---:|---:|"]
    out += [f"| {n:,} | {kib / 1024:,.0f} |" for n, kib in res.memory.items()]
    return out


def _verdict(ok: bool | None) -> str:
    return "not measured in this run" if ok is None else ("**met**" if ok else "**not met**")


def _ratios(res: Results, num: str, den: str, sizes: list[int]) -> tuple[bool, str]:
    pairs = [(n, res.prog(n, num) / res.prog(n, den)) for n in sizes]
    return all(r <= 1.3 for _, r in pairs), ", ".join(f"{n:,}: {r:.2f}" for n, r in pairs)


def targets(res: Results) -> list[str]:
    """The issue's targets, each met or not with the numbers."""
    sizes = [wl.ports for wl in res.workloads]
    out = ["### Targets", ""]
    for label, contender in (("whole `nftnet apply` process", "apply"),
                             ("nftnet transaction", "txn")):
        ok, text = _ratios(res, contender, "floor", sizes)
        out.append(f"- {label} within 1.3x of the floor at every N: {_verdict(ok)} ({text})")
    big = [n for n in (10000, 50000) if n in sizes]
    for label, contender in (("whole `nftnet apply` process", "apply"),
                             ("nftnet transaction", "txn")):
        speed = [(n, res.prog(n, "restore") / res.prog(n, contender)) for n in big]
        ok = all(s >= 5 for _, s in speed) if big else None
        text = ", ".join(f"{n:,}: {s:.1f}x" for n, s in speed)
        out.append(f"- {label} at least 5x faster than `iptables-restore` at 10,000 and 50,000 "
                   f"ports: {_verdict(ok)} ({text})")
    pub = {n: median(v) for n, v in res.change.publish.items()}
    if 20000 in pub and 10 in pub:
        ratio = pub[20000] / pub[10]
        out.append(f"- `nftnet port publish` at 20,000 ports within 1.5x of at 10: "
                   f"{_verdict(ratio <= 1.5)} ({pub[20000]:.3f} s / {pub[10]:.3f} s = "
                   f"{ratio:.2f})")
    else:
        out.append(f"- `nftnet port publish` at 20,000 within 1.5x of at 10: {_verdict(None)}")
    if 10000 in pub:
        tri = median(res.change.triple[10000])
        checked = median(res.change.checked[10000])
        out.append(f"- `nftnet port publish` faster than Docker's `iptables -A` triple at 10,000 "
                   f"ports: {_verdict(pub[10000] < tri)} ({pub[10000]:.3f} s vs {tri:.3f} s; "
                   f"with the `-C` check Docker runs before each `-A`: {checked:.3f} s)")
    if 1 in res.packet_sizes and 50000 in res.packet_sizes:
        pairs = sorted(res.packets.paired(50000, 1, "nftnet"))
        ratio = median(pairs)
        quart = statistics.quantiles(pairs, n=4)
        out.append(f"- nftnet connect rate at 50,000 ports within 10% of at 1: "
                   f"{_verdict(ratio >= 0.9)} (round by round, 50,000 over 1: median "
                   f"{ratio:.2f}, quartiles {quart[0]:.2f}-{quart[2]:.2f}; medians "
                   f"{res.rate(50000, 'nftnet'):,.0f} and {res.rate(1, 'nftnet'):,.0f} conn/s)")
    return out


def notes(res: Results) -> list[str]:
    out = ["### Notes", ""]
    fitted = res.model()
    if fitted:
        n, model = fitted
        out.append(f"- `iptables` per rule: measured for real up to {n:,} ports. Each call "
                   "reads its table back, so a call costs more the more rules the table holds: "
                   f"fitted to the {len(res.program.per_call[n].points):,} calls of the "
                   f"{n:,}-port replay, a call takes {model.a * 1e3:.1f} ms + "
                   f"{model.b * 1e6:.2f} µs per rule already in its table; larger sizes are "
                   "that model summed over their calls (\"extrapolated\"). Docker also runs "
                   "`iptables -C` before each `-A`, not counted: these are lower bounds.")
        if res.change.calls:
            k = max(k for k, _ in res.change.calls)
            s = median([s for kk, s in res.change.calls if kk >= k - 100])
            out.append(f"- Check of the model: the largest table in section 2 held {k:,} rules; "
                       f"an `iptables -A` on it took {s * 1e3:.0f} ms measured (median), "
                       f"{model.call(k) * 1e3:.0f} ms by the model"
                       + (": the extrapolation is on the low side." if s > model.call(k)
                          else "."))
    out += ["- `nftnet apply` (and the floor, the transaction and `iptables-restore`) find the "
            "bridges already there; `+ bridges` is `nftnet apply` creating them too. "
            "Processes enter the namespace through nsenter(1), spawned with vfork. The "
            "transaction is timed inside its process (no interpreter start); the floor and "
            "`iptables-restore` include their process start (milliseconds).",
            f"- Section 2 also measures {_extra(res)} for the publish target; every publish is "
            "on endpoint e0, a port of its own.",
            "- \"÷\" columns are ratios of times (or rates, in section 3): in sections 1 and 2, "
            "above 1 means nftnet took less time.",
            f"- Section 3: {res.packets.fails} failed connects in all runs. {_spread(res)}"]
    return out


def _extra(res: Results) -> str:
    sizes = [n for n in res.change_sizes if n not in res.packet_sizes]
    def many(k: int, what: str) -> str:
        return f"{k:,} {what}" + ("" if k == 1 else "s")

    return " and ".join(f"{many(n, 'port')} ({many(shape(n)[0], 'network')}, "
                        f"{many(shape(n)[1], 'endpoint')})" for n in sizes) or "no extra size"


def _spread(res: Results) -> str:
    """How much one Lab's rate moved from run to run: the machine's noise."""
    key = (min(res.packet_sizes), "nftnet")
    rates = res.packets.rates.get(key, [])
    if len(rates) < 2:
        return ""
    ports = f"{key[0]:,} port" + ("" if key[0] == 1 else "s")
    return (f"Run to run, nftnet's rate at {ports} ranged {min(rates):,.0f}-"
            f"{max(rates):,.0f} conn/s (machine load): compare sizes through the paired "
            "ratios.")


def markdown(res: Results) -> str:
    parts = [f"Machine: {res.machine}", *([res.note] if res.note else []), "",
             *program_table(res), "", *change_table(res), "", *packets_table(res), "",
             *memory_table(res), "", *targets(res), "", *notes(res)]
    return "\n".join(parts) + "\n"
