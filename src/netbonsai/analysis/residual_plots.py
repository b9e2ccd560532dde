"""The residual-blocks picture (paper 004): removable blocks per stage over the growth steps
(zero and random initialisation) and over the pruning steps, with validation error beside it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from matplotlib.ticker import MaxNLocator

from ._figures import new_figure, save_png


def _series(result: dict[str, Any]) -> list[tuple[str, list[list[int]], list[float]]]:
    """(title, blocks per stage at each step, validation error at each step) per panel."""
    panels = []
    for init in ("zero", "random"):
        grown = result["growth"].get(init)
        if grown:
            records = grown.get("records", [])
            panels.append((f"growth, {init} init ({grown.get('stop_reason', '')})",
                           [r["blocks_per_stage"] for r in records], [r.get("val_error") for r in records]))
    pruning = result.get("pruning") or {}
    steps = pruning.get("steps", [])
    if steps:
        fixed = result["growth"]["fixed_3x4"]
        panels.append((f"pruning by {pruning.get('measure')} (last step {'kept' if steps[-1]['accepted'] else 'undone'})",
                       [fixed["blocks_per_stage"]] + [s["blocks"] for s in steps],
                       [pruning.get("val_error_before")] + [s["val_error"] for s in steps]))
    return panels


def plot_blocks_per_stage(result: dict[str, Any], path: str | os.PathLike) -> Path:
    """One panel per growth run and one for pruning: a line per stage (removable blocks after each
    step), the validation error on a second axis (dashed)."""
    panels = _series(result) or [("no steps", [], [])]
    fig = new_figure(4.6 * len(panels), 3.8)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, blocks, errors) in zip(axes, panels):
        steps = list(range(len(blocks)))
        stages = len(blocks[0]) if blocks else 0
        for stage in range(stages):
            ax.step(steps, [b[stage] for b in blocks], where="post", label=f"stage {stage + 1}", color=f"C{stage}")
        ax.set_xlabel("step")
        ax.set_ylabel("removable blocks")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title, fontsize=9)
        if stages:
            ax.legend(loc="upper left", fontsize=8)
        known = [(s, e) for s, e in zip(steps, errors) if e is not None]
        if known:
            twin = ax.twinx()
            twin.plot([s for s, _ in known], [100 * e for _, e in known], "k--", linewidth=1)
            twin.set_ylabel("validation error, %  (dashed)")
    return save_png(fig, path)
