"""The Surgeon's picture (paper 002): validation accuracy against epochs for every start and
optimiser, the kept surgeries marked where each cycle ended, the start trained alone beside it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from ._figures import new_figure, save_png


def plot_surgeon_curves(runs: Sequence[dict[str, Any]], path: str | os.PathLike) -> Path:
    """One panel per optimiser; per start the Surgeon's main line (solid, a marker and the kept
    surgery at every cycle that changed the network) and the start alone (dashed)."""
    optimizers = sorted({r["optimizer"] for r in runs}) or ["-"]
    fig = new_figure(6.0 * len(optimizers), 4.2)
    axes = fig.subplots(1, len(optimizers), squeeze=False)[0]
    starts = list(dict.fromkeys(r["start"] for r in runs))
    for ax, optimizer in zip(axes, optimizers):
        for r in (r for r in runs if r["optimizer"] == optimizer):
            color = f"C{starts.index(r['start'])}"
            line = r["surgeon"]["curve"]
            ax.plot([p["epoch"] for p in line], [p["val"] for p in line], "-", color=color,
                    label=f"{r['start']}: Surgeon")
            alone = r["same_start"]["curve"]
            ax.plot([p["epoch"] for p in alone], [p["val"] for p in alone], "--", color=color, alpha=0.6,
                    label=f"{r['start']}: alone")
            for cycle in r["surgeon"]["cycles"]:
                if cycle["kept"] == "identity":
                    continue
                ax.plot([cycle["epoch"]], [cycle["val"]], "o", color=color, markersize=4)
                ax.annotate(cycle["kept"], (cycle["epoch"], cycle["val"]), fontsize=6, color=color,
                            textcoords="offset points", xytext=(2, -8))
        ax.set_xlabel("epoch (main line)")
        ax.set_ylabel("validation accuracy")
        ax.set_title(f"optimiser: {optimizer}")
        ax.legend(fontsize=6, ncols=2)
    return save_png(fig, path)
