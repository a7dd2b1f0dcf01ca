"""The benchmark's tables (markdown, printed and written to results.md) and target checks."""

from __future__ import annotations

import os
import platform
import subprocess
from array import array
from dataclasses import dataclass

from tests.bench import docker
from tests.bench.change import ChangeResult
from tests.bench.common import Workload, median
from tests.bench.memory import Peaks
from tests.bench.packets import PacketResult, quartiles
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
    memory: dict[int, Peaks]
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
        return self.packets.rate(n, contender)

    def vs_one(self, n: int, contender: str) -> float:
        """Median over rounds of the rate at n over the rate at 1 port (nan without 1)."""
        if self.packets.base != 1:
            return float("nan")
        return median(self.packets.paired(n, contender))

    def latency_ms(self, n: int, contender: str, q: float) -> float:
        return self.packets.latency_ms(n, contender, q)


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
           "`nftnet apply` | `nftnet apply` + bridges | `nftnet apply` unchanged | "
           "`iptables-restore` | `iptables` per rule | start-up: Python, click, marshmallow | "
           "apply ÷ floor | apply + bridges ÷ floor | unchanged ÷ start-up | transaction ÷ floor "
           "| restore ÷ apply | restore ÷ transaction |",
           "|" + "---:|" * 17]
    for wl in res.workloads:
        n = wl.ports
        floor, txn, apply, made, again, stack = (
            res.prog(n, c) for c in ("floor", "txn", "apply", "apply+br", "again", "stack"))
        restore = res.prog(n, "restore")
        seconds, extrapolated = res.per_rule(n)
        calls = len(res.replays[n])
        rule = (f"≈{_s(seconds)} (extrapolated, {calls:,} calls)" if extrapolated
                else f"{_s(seconds)} ({calls:,} calls)")
        out.append(f"| {n:,} | {wl.networks:,} | {wl.endpoints:,} | {_s(floor)} | {_s(txn)} | "
                   f"{_s(apply)} | {_s(made)} | {_s(again)} | {_s(restore)} | {rule} | "
                   f"{_s(stack)} | {_x(apply / floor)} | {_x(made / floor)} | "
                   f"{_x(again / stack)} | {_x(txn / floor)} | {_x(restore / apply)} | "
                   f"{_x(restore / txn)} |")
    return out


def change_table(res: Results) -> list[str]:
    rounds = len(next(iter(res.change.publish.values()), []))
    out = [f"### 2. One change with N ports already there (seconds, median of {rounds})", "",
           "| ports already there | `nftnet port publish` (whole process) | Docker: three "
           "`iptables -A` | Docker ÷ nftnet | Docker as it runs them: `-C`, then `-A` (six "
           "processes) | ÷ nftnet | start-up: Python, click | start-up: a publish's imports "
           "|", "|" + "---:|" * 8]
    for n in res.change_sizes:
        pub, tri = median(res.change.publish[n]), median(res.change.triple[n])
        checked = median(res.change.checked[n])
        out.append(f"| {n:,} | {_s(pub)} | {_s(tri)} | {_x(tri / pub)} | {_s(checked)} | "
                   f"{_x(checked / pub)} | {_s(median(res.change.click[n]))} | "
                   f"{_s(median(res.change.imports[n]))} |")
    return out


def _ports(n: int) -> str:
    return f"{n:,} port" + ("" if n == 1 else "s")


def _paired(pkt: PacketResult, n: int, contender: str) -> str:
    """Median paired ratio and its quartiles, e.g. "0.99 (0.98-1.01)"."""
    if n == pkt.base:
        return "1 (base)"
    def r(v: float) -> str:
        return f"{v:.2f}" if v >= 0.095 else f"{v:.2g}"

    q1, q2, q3 = quartiles(pkt.paired(n, contender))
    return "-" if q2 != q2 else f"{r(q2)} ({r(q1)}-{r(q3)})"


def packets_lines(pkt: PacketResult, sizes: list[int]) -> list[str]:
    """Section 3's table (also printed by ``python -m tests.bench.packets``)."""
    base = _ports(pkt.base)
    out = ["### 3. New TCP connections to the last published port, LAN namespace to a "
           f"container. Per contender ONE Lab for all sizes ({pkt.topology}; a serving "
           "container for each size's last published port); between runs only the ruleset "
           "is swapped (nftnet: `nft -j -f` of its rendered batch, table made anew; iptables: "
           f"`iptables-restore` of the export). Client and server pinned to CPU {pkt.cpu}. "
           f"{pkt.rounds} rounds; per round and contender the runs go {base}, N, {base}, "
           f"N', {base}, ... \"vs {base}\": a run's typical rate (1 / its median connection "
           f"time) over the mean of the {base} runs just before and after it, median over "
           "rounds (quartiles). conn/s: all connects over the run's wall time, median of the "
           "runs (other processes on the CPU move it more); latency of connect(), all runs", "",
           f"| ports | nftnet conn/s | p50 ms | p99 ms | vs {base} | iptables conn/s | "
           f"p50 ms | p99 ms | vs {base} | nftnet ÷ iptables |", "|" + "---:|" * 10]
    for n in sizes:
        cells = []
        for c in ("nftnet", "iptables"):
            cells += [f"{pkt.rate(n, c):,.0f}", f"{pkt.latency_ms(n, c, 0.5):.3f}",
                      f"{pkt.latency_ms(n, c, 0.99):.3f}", _paired(pkt, n, c)]
        ratio = pkt.rate(n, "nftnet") / pkt.rate(n, "iptables")
        out.append(f"| {n:,} | {' | '.join(cells)} | {_x(ratio)} |")
    out += ["", f"- {pkt.fails} failed connects in all runs. {_spread(pkt)}"]
    return out


def packets_table(res: Results) -> list[str]:
    return packets_lines(res.packets, res.packet_sizes)


def memory_table(res: Results) -> list[str]:
    out = ["### 4. Peak memory of whole processes (max RSS, MiB)", "",
           "| ports | `nftnet apply` (creating the bridges) | floor: `nft -j -f` of its batch | "
           "`nftnet port publish` with the ports there |", "|---:|---:|---:|---:|"]
    out += [f"| {n:,} | {p.apply / 1024:,.0f} | {p.floor / 1024:,.0f} | "
            f"{p.publish / 1024:,.0f} |" for n, p in res.memory.items()]
    return out


def verdict(ok: bool | None) -> str:
    return "not measured in this run" if ok is None else ("**met**" if ok else "**not met**")


def _ratios(res: Results, num: str, den: str, sizes: list[int]) -> tuple[bool, str]:
    pairs = [(n, res.prog(n, num) / res.prog(n, den)) for n in sizes]
    return all(r <= 1.3 for _, r in pairs), ", ".join(f"{n:,}: {r:.2f}" for n, r in pairs)


def _listed(pairs: list[tuple[int, float]], unit: str = "") -> str:
    return ", ".join(f"{n:,}: {r:.2f}{unit}" for n, r in pairs)


def targets(res: Results) -> list[str]:
    """Issue 15's targets, each met or not with the numbers, and the bounds that stop them."""
    sizes = [wl.ports for wl in res.workloads]
    big = [n for n in (10000, 50000) if n in sizes]
    out = ["### Targets", ""]
    for label, contender in (("bridges already there", "apply"),
                             ("a first apply that makes the bridges", "apply+br")):
        pairs = [(n, res.prog(n, contender) / res.prog(n, "floor")) for n in big]
        out.append(f"- whole `nftnet apply` within 2x of the floor at 10,000 and 50,000 ports, "
                   f"{label}: {verdict(all(r <= 2 for _, r in pairs) if big else None)} "
                   f"({_listed(pairs, 'x')})")
    out.append("  - bound: start-up alone (Python, click, marshmallow, the nftables binding) "
               "over the floor: " + _listed([(n, res.prog(n, "stack") / res.prog(n, "floor"))
                                           for n in sizes], "x"))
    from_1k = [n for n in sizes if n >= 1000]
    pairs = [(n, res.prog(n, "restore") / res.prog(n, "apply")) for n in from_1k]
    out.append(f"- whole `nftnet apply` faster than `iptables-restore` at every N from 1,000: "
               f"{verdict(all(r > 1 for _, r in pairs) if from_1k else None)} (restore ÷ "
               f"apply {_listed(pairs, 'x')})")
    out.append("  - bound: restore ÷ start-up alone: " + _listed(
        [(n, res.prog(n, "restore") / res.prog(n, "stack")) for n in from_1k], "x"))
    pairs = [(n, res.prog(n, "again") / res.prog(n, "stack")) for n in sizes]
    out.append(f"- `nftnet apply` of an unchanged file, nothing changed in the kernel, within "
               f"1.3x of the start-up-only bound at every N: "
               f"{verdict(all(r <= 1.3 for _, r in pairs))} ({_listed(pairs, 'x')})")
    pub = {n: median(v) for n, v in res.change.publish.items()}
    if 10000 in pub:
        click = median(res.change.click[10000])
        out.append(f"- `nftnet port publish` at 10,000 ports within 1.5x of the start-up bound "
                   f"(Python and click): {verdict(pub[10000] / click <= 1.5)} "
                   f"({pub[10000]:.3f} s / {click:.3f} s = {pub[10000] / click:.2f}x)")
        imports = median(res.change.imports[10000])
        out.append(f"  - bound: a publish's imports alone (click, nftnet's modules, the nftables "
                   f"binding) take {imports:.3f} s = {imports / click:.2f}x the start-up bound, "
                   f"and the change itself {pub[10000] - imports:.3f} s (reading the state, one "
                   f"transaction, the journal); 1.5x leaves {1.5 * click - click:.3f} s for both. "
                   f"What would move it: a resident nftnet process that takes runtime changes "
                   f"from a thin client (no imports, no state read per change)")
    else:
        out.append(f"- `nftnet port publish` at 10,000 ports within 1.5x of start-up: "
                   f"{verdict(None)}")
    mem = res.memory.get(50000)
    if mem is not None:
        out.append(f"- peak memory of `nftnet apply` at 50,000 ports under 150 MiB: "
                   f"{verdict(mem.apply < 150 * 1024)} ({mem.apply / 1024:.0f} MiB)")
        out.append(f"  - bound: `nft -j -f` of the same batch alone peaks at "
                   f"{mem.floor / 1024:.0f} MiB (libnftables' own parse of the JSON batch)")
        out.append(f"- peak memory of `nftnet port publish` at 50,000 ports under 60 MiB: "
                   f"{verdict(mem.publish < 60 * 1024)} ({mem.publish / 1024:.0f} MiB)")
    else:
        out.append(f"- peak memory at 50,000 ports: {verdict(None)}")
    out += ["", "Kept (regressions):", ""]
    ok, text = _ratios(res, "txn", "floor", sizes)
    out.append(f"- nftnet transaction within 1.3x of the floor at every N: {verdict(ok)} "
               f"({text})")
    pkt = res.packets
    if pkt.base == 1 and 50000 in res.packet_sizes:
        q1, ratio, q3 = quartiles(pkt.paired(50000, "nftnet"))
        out.append(f"- nftnet connect rate at 50,000 ports within 10% of at 1: "
                   f"{verdict(ratio >= 0.9)} (same Lab and topology, ruleset swapped; run by "
                   f"run, 50,000 over the 1-port runs around it: median {ratio:.2f}, quartiles "
                   f"{q1:.2f}-{q3:.2f}; medians {pkt.rate(50000, 'nftnet'):,.0f} and "
                   f"{pkt.rate(1, 'nftnet'):,.0f} conn/s)")
    else:
        out.append(f"- nftnet connect rate at 50,000 ports within 10% of at 1: "
                   f"{verdict(None)}")
    if 20000 in pub and 10 in pub:
        ratio = pub[20000] / pub[10]
        out.append(f"- `nftnet port publish` at 20,000 ports within 1.5x of at 10: "
                   f"{verdict(ratio <= 1.5)} ({pub[20000]:.3f} s / {pub[10]:.3f} s = "
                   f"{ratio:.2f})")
    else:
        out.append(f"- `nftnet port publish` at 20,000 within 1.5x of at 10: {verdict(None)}")
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
            "bridges already there, with their addresses and up, so that every contender "
            "programs the firewall only; `+ bridges` is `nftnet apply` creating them too. "
            "Each contender starts once the kernel has torn down the namespace before it (a "
            "thousand bridges keep a core busy for up to a minute). "
            "Processes enter the namespace through nsenter(1), spawned with vfork. The "
            "transaction is timed inside its process (no interpreter start); the floor and "
            "`iptables-restore` include their process start (milliseconds).",
            f"- Section 2 also measures {_extra(res)} for the publish target; every publish is "
            "on endpoint e0, a port of its own.",
            "- \"÷\" columns are ratios of times (or rates, in section 3): in sections 1 and 2, "
            "above 1 means nftnet took less time."]
    return out


def _extra(res: Results) -> str:
    sizes = [n for n in res.change_sizes if n not in res.packet_sizes]
    def many(k: int, what: str) -> str:
        return f"{k:,} {what}" + ("" if k == 1 else "s")

    return " and ".join(f"{many(n, 'port')} ({many(shape(n)[0], 'network')}, "
                        f"{many(shape(n)[1], 'endpoint')})" for n in sizes) or "no extra size"


def _spread(pkt: PacketResult) -> str:
    """How much two runs of the same ruleset differ: the method's noise."""
    drift = {c: quartiles(pkt.base_drift.get(c, [])) for c in ("nftnet", "iptables")}
    if any(q[1] != q[1] for q in drift.values()):
        return ""
    text = ", ".join(f"{c} {q1:.2f}-{q3:.2f}" for c, (q1, _, q3) in drift.items())
    rates = pkt.rates.get((pkt.base, "nftnet"), [])
    return (f"Noise: a {_ports(pkt.base)} run over the {_ports(pkt.base)} run before it "
            f"(same ruleset, a run apart) has quartiles {text}; nftnet's {_ports(pkt.base)} "
            f"runs ranged {min(rates):,.0f}-{max(rates):,.0f} conn/s (machine load): compare "
            "sizes through the paired ratios.")


def markdown(res: Results) -> str:
    parts = [f"Machine: {res.machine}", *([res.note] if res.note else []), "",
             *program_table(res), "", *change_table(res), "", *packets_table(res), "",
             *memory_table(res), "", *targets(res), "", *notes(res)]
    return "\n".join(parts) + "\n"
