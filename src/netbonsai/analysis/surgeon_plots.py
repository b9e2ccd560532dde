"""The Surgeon's picture (paper 002): validation accuracy against epochs for every start, rule
set and optimiser, the kept surgeries marked where each cycle ended, the start alone beside it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from ._figures import new_figure, save_png

STYLES = {"authors": "-", "netbonsai": "-."}


def plot_surgeon_curves(runs: Sequence[dict[str, Any]], path: str | os.PathLike) -> Path:
    """One panel per optimiser; per start the Surgeon's main line under each rule set (a marker
    and the kept surgery at every cycle that changed the network) and the start alone (dotted)."""
    optimizers = list(dict.fromkeys(r["optimizer"] for r in runs)) or ["-"]
    fig = new_figure(6.4 * len(optimizers), 4.6)
    axes = fig.subplots(1, len(optimizers), squeeze=False)[0]
    starts = list(dict.fromkeys(r["start"] for r in runs))
    for ax, optimizer in zip(axes, optimizers):
        drawn_alone: set[str] = set()
        for r in (r for r in runs if r["optimizer"] == optimizer):
            color = f"C{starts.index(r['start'])}"
            rules = r.get("rules", "authors")
            line = r["surgeon"]["curve"]
            ax.plot([p["epoch"] for p in line], [p["val"] for p in line], STYLES.get(rules, "-"), color=color,
                    label=f"{r['start']}: Surgeon ({rules})")
            if r["start"] not in drawn_alone:
                drawn_alone.add(r["start"])
                alone = r["same_start"]["curve"]
                ax.plot([p["epoch"] for p in alone], [p["val"] for p in alone], ":", color=color, alpha=0.7,
                        label=f"{r['start']}: alone")
            for cycle in r["surgeon"]["cycles"]:
                if cycle["kept"] == "identity":
                    continue
                ax.plot([cycle["epoch"]], [cycle["val"]], "o", color=color, markersize=3)
                ax.annotate(cycle["kept"], (cycle["epoch"], cycle["val"]), fontsize=5, color=color,
                            textcoords="offset points", xytext=(2, -7))
        ax.set_xlabel("epoch (main line)")
        ax.set_ylabel("validation accuracy")
        ax.set_title(f"optimiser: {optimizer}")
        ax.legend(fontsize=5, ncols=2)
    return save_png(fig, path)
