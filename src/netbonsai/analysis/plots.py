"""Pareto plots (loss vs parameters, one series per method) and run-history plots."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ._figures import new_figure, save_png
from .pareto import pareto_front

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
LEGEND_INSIDE = 3  # series; more get a legend below the axes


def _style(i: int) -> tuple[str, str]:
    """Colour and marker of series ``i``: ten colours, and a marker that differs from the previous
    series' as well, so that neighbours stay apart in greyscale and for colour-blind readers."""
    return f"C{i % 10}", MARKERS[i % len(MARKERS)]


def _values(points: Sequence[Mapping], key: str, scale: float = 1.0) -> np.ndarray:
    """``key`` of every point as floats (NaN where missing or None), times ``scale``."""
    out = np.full(len(points), np.nan)
    for i, p in enumerate(points):
        value = p.get(key)
        if value is not None:
            try:
                out[i] = float(value) * scale
            except (TypeError, ValueError):
                pass
    return out


def pareto_plot(
    series: Mapping[str, Sequence[Mapping]],
    path: str | os.PathLike,
    loss_scale: float = 1.0,
    title: str = "",
    log_x: bool = True,
    x: str = "params",
    y: str = "val_loss",
    focus: str | None = None,
    loss_label: str = "validation loss",
) -> Path:
    """Validation loss against parameter count, one colour and marker per method; returns the PNG path.

    For each series (e.g. ``"dense MLP"``, ``"netbonsai"``, ``"magnitude pruning"``) all points
    are drawn as faint markers and its Pareto front as a step line with markers (the best loss
    reachable with at most that many parameters). Losses are multiplied by ``loss_scale``.
    ``loss_label`` names the vertical axis with its units (e.g. ``"validation loss (MSE in 8-bit
    units)"``). Up to three series the legend sits inside the axes, more go in columns below.
    ``focus`` names a series whose loss range sets the vertical axis (see :func:`focus_limits`),
    so that a method with much worse points (a pruned network near a constant predictor) does
    not squash the region where the methods compete; points above the top edge are noted.
    """
    below = len(series) > LEGEND_INSIDE
    fig = new_figure(7.5, 4.8 + (0.25 * ((len(series) + 1) // 2) + 0.5 if below else 0.0))
    ax = fig.add_subplot()
    for i, (name, points) in enumerate(series.items()):
        color, marker = _style(i)
        xs, ys = _values(points, x), _values(points, y, loss_scale)
        ok = np.isfinite(xs) & np.isfinite(ys)
        ax.scatter(xs[ok], ys[ok], s=14, color=color, marker=marker, alpha=0.25, linewidths=0)
        front = pareto_front([p for p, good in zip(points, ok) if good], x, y)
        fx, fy = _values(front, x), _values(front, y, loss_scale)
        ax.plot(
            fx, fy, drawstyle="steps-post", marker=marker, markersize=4.5, color=color,
            label=f"{name} ({len(front)} on front, {int(ok.sum())} in all)",
        )
    limits = focus_limits(series, focus, y, loss_scale) if focus is not None else None
    if limits is not None:
        ax.set_ylim(*limits)
        hidden = sum(int((_values(points, y, loss_scale) > limits[1]).sum()) for points in series.values())
        shown = np.concatenate([_values(points, x)[_values(points, y, loss_scale) <= limits[1]]
                                for points in series.values()])
        shown = shown[np.isfinite(shown) & (shown > 0)] if log_x else shown[np.isfinite(shown)]
        if hidden and shown.size:  # the horizontal axis follows the points that are shown
            low, high = float(shown.min()), float(shown.max())
            if log_x:
                ax.set_xlim(low / 1.25, high * 1.25)
            else:
                margin = 0.05 * (high - low or 1.0)
                ax.set_xlim(low - margin, high + margin)
        if hidden:
            ax.text(0.01, 0.99, f"{hidden} point{'s' if hidden > 1 else ''} above the top edge", transform=ax.transAxes,
                    va="top", ha="left", fontsize="small", color="0.4")
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel("parameters" + (" (log scale)" if log_x else ""))
    ax.set_ylabel(loss_label + (f" (x {loss_scale:g})" if loss_scale != 1.0 else ""))
    if title:
        ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    if series:
        explain = "lines: Pareto front (best loss at up to that many parameters); faint markers: every network"
        if below:
            fig.legend(loc="outside lower center", ncols=2, fontsize="small", title=explain,
                       title_fontsize="small", frameon=False)
        else:
            ax.legend(loc="best", fontsize="small", title=explain.replace("; ", "\n"), title_fontsize="x-small")
    return save_png(fig, path)


def focus_limits(
    series: Mapping[str, Sequence[Mapping]], focus: str, y: str = "val_loss", loss_scale: float = 1.0
) -> tuple[float, float] | None:
    """Vertical limits that show every series' points from the lowest loss of all up to the
    worst loss of series ``focus`` plus half its span; None when ``focus`` has no finite loss."""
    if focus not in series:
        return None
    worst = _values(series[focus], y, loss_scale)
    worst = worst[np.isfinite(worst)]
    every = np.concatenate([_values(points, y, loss_scale) for points in series.values()])
    every = every[np.isfinite(every)]
    if worst.size == 0:
        return None
    low, high = float(every.min()), float(worst.max())
    span = high - low or abs(high) * 0.1 or 1.0
    return low - 0.05 * span, high + 0.5 * span


def history_plot(
    events: Sequence[Mapping[str, Any]],
    path: str | os.PathLike,
    loss_scale: float = 1.0,
    x: str | None = None,
    title: str = "",
    loss_label: str = "loss",
) -> Path:
    """Parameters (top) and train/validation loss (bottom) over a run's events; returns the path.

    The horizontal axis is the event index, or the event field ``x`` (e.g. elapsed seconds)
    when given. Events lacking a value leave a gap; losses are multiplied by ``loss_scale``;
    ``loss_label`` names the loss axis with its units.
    """
    fig = new_figure(7.0, 5.5)
    ax_params, ax_loss = fig.subplots(2, 1, sharex=True)
    xs = np.arange(len(events), dtype=float) if x is None else _values(events, x)
    ax_params.plot(xs, _values(events, "params"), drawstyle="steps-post", color="C0", marker=".")
    ax_params.set_ylabel("parameters")
    for key, label, color in (("train_loss", "train loss", "C1"), ("val_loss", "validation loss", "C2")):
        values = _values(events, key, loss_scale)
        if np.isfinite(values).any():
            ax_loss.plot(xs, values, color=color, marker=".", markersize=3, label=label)
    ax_loss.set_ylabel(loss_label + (f" (x {loss_scale:g})" if loss_scale != 1.0 else ""))
    ax_loss.set_xlabel("event" if x is None else x)
    if ax_loss.get_legend_handles_labels()[0]:
        ax_loss.legend(loc="best", fontsize="small")
    for ax in (ax_params, ax_loss):
        ax.grid(True, alpha=0.3)
    if title:
        fig.suptitle(title)
    return save_png(fig, path)


def curve_plot(
    panels: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]],
    path: str | os.PathLike,
    x: str,
    ys: Mapping[str, str],
    title: str = "",
    xlabel: str | None = None,
    ylabel: str | None = None,
    ylim: tuple[float, float] | None = None,
) -> Path:
    """Line plots, one panel per key of ``panels``, one colour per series, one line style per y key.

    ``panels[panel][series]`` is a list of points; ``ys`` maps a point field to its legend label
    (e.g. ``{"accuracy_retrained": "retrained", "accuracy_no_retrain": "no retraining"}``: solid,
    dashed, dotted, ... in that order). Points lacking a value leave a gap.
    """
    styles = ("-", "--", ":", "-.")
    fig = new_figure(6.0 * max(1, len(panels)), 4.6)
    axes = fig.subplots(1, max(1, len(panels)), squeeze=False)[0]
    for ax, (panel, series) in zip(axes, panels.items()):
        for i, (name, points) in enumerate(series.items()):
            xs = _values(points, x)
            for j, (key, label) in enumerate(ys.items()):
                values = _values(points, key)
                if np.isfinite(values).any():
                    ax.plot(xs, values, linestyle=styles[j % len(styles)], marker="o", markersize=3,
                            color=f"C{i % 10}", label=f"{name}, {label}" if len(ys) > 1 else name)
        ax.set_title(panel)
        ax.set_xlabel(xlabel or x)
        ax.set_ylabel(ylabel or ", ".join(ys.values()))
        if ylim is not None:
            ax.set_ylim(*ylim)
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize="x-small")
    if title:
        fig.suptitle(title)
    return save_png(fig, path)


__all__ = ["pareto_plot", "history_plot", "curve_plot"]
