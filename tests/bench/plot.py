"""bench.png: time against N per contender (log-log), one change, connections per second."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.bench.common import median
from tests.bench.report import Results

LABELS = {"floor": "floor: nft -j -f", "txn": "nftnet transaction", "apply": "nftnet apply",
          "apply+br": "nftnet apply + bridges", "again": "nftnet apply, unchanged",
          "restore": "iptables-restore",
          "stack": "start-up: Python, click, marshmallow"}


def _program(ax: Any, res: Results) -> None:
    sizes = [wl.ports for wl in res.workloads]
    for contender, label in LABELS.items():
        ax.plot(sizes, [res.prog(n, contender) for n in sizes], marker="o", label=label)
    per_rule = {n: res.per_rule(n) for n in sizes}
    real = [(n, s) for n, (s, extra) in per_rule.items() if not extra]
    guess = [(n, s) for n, (s, extra) in per_rule.items() if extra]
    if real:
        line = ax.plot(*zip(*real, strict=True), marker="s", label="iptables per rule")[0]
        if guess:
            ax.plot(*zip(real[-1], *guess, strict=True), marker="s", linestyle="--",
                    fillstyle="none", color=line.get_color(),
                    label="iptables per rule (extrapolated)")
    ax.set(xscale="log", yscale="log", xlabel="published ports", ylabel="seconds",
           title="Programming the whole set")
    ax.legend(fontsize=7)


def _change(ax: Any, res: Results) -> None:
    sizes = res.change_sizes
    ax.plot(sizes, [median(res.change.publish[n]) for n in sizes], marker="o",
            label="nftnet port publish (whole process)")
    ax.plot(sizes, [median(res.change.triple[n]) for n in sizes], marker="s",
            label="Docker: 3 x iptables -A")
    ax.plot(sizes, [median(res.change.checked[n]) for n in sizes], marker="^",
            label="Docker: 3 x (iptables -C, iptables -A)")
    ax.set(xscale="log", yscale="log", xlabel="ports already published", ylabel="seconds",
           title="One change")
    ax.legend(fontsize=7)


def _packets(ax: Any, res: Results) -> None:
    sizes = res.packet_sizes
    for contender in ("nftnet", "iptables"):
        ax.plot(sizes, [res.rate(n, contender) for n in sizes], marker="o", label=contender)
    ax.set(xscale="log", xlabel="published ports", ylabel="new connections / s",
           title="Connections to the last published port")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7)


def write(res: Results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    _program(axes[0], res)
    _change(axes[1], res)
    _packets(axes[2], res)
    fig.suptitle(res.machine, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
