"""Drawings of DagNet structures in the style of paper 000's figures."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.lines import Line2D

from ..errors import InputError
from ._figures import new_figure, save_png

if TYPE_CHECKING:
    from ..nets.dag import DagNet

ROLE_COLORS = {"input": "#9ecae1", "added": "#fdae6b", "hidden": "#d9d9d9", "output": "#f4a6c6"}
POSITIVE, NEGATIVE = "#2166ac", "#b2182b"
LABEL_LIMIT = 60  # nodes; bigger networks are drawn without index labels


def node_columns(roles: tuple[str, ...] | list[str], levels: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Column of every node and a caption per column.

    Inputs are column 0; ``added`` neurons (the paper's "1/2 layer") share the next column;
    other hidden neurons get one column per distinct level, in level order (captioned
    ``layer 1``, ``layer 2``, ... by rank); outputs come last.
    """
    n = len(roles)
    columns = np.zeros(n, dtype=np.int64)
    captions = ["inputs"]
    role_arr = np.asarray(roles)
    if (role_arr == "added").any():
        columns[role_arr == "added"] = len(captions)
        captions.append("1/2 layer")
    hidden = role_arr == "hidden"
    for rank, level in enumerate(np.unique(levels[hidden]), start=1):
        columns[hidden & (levels == level)] = len(captions)
        captions.append(f"layer {rank}")
    columns[role_arr == "output"] = len(captions)
    captions.append("outputs")
    return columns, captions


def _positions(columns: np.ndarray) -> np.ndarray:
    """``(N, 2)`` coordinates: x = column, y spread evenly and centred, lower index on top."""
    pos = np.zeros((len(columns), 2))
    pos[:, 0] = columns
    for col in np.unique(columns):
        idx = np.nonzero(columns == col)[0]  # already in index order
        pos[idx, 1] = (len(idx) - 1) / 2.0 - np.arange(len(idx))
    return pos


def _segments(src: np.ndarray, dst: np.ndarray, pos: np.ndarray) -> list[np.ndarray]:
    """One polyline per synapse: straight, or a left-bulging curve within a column."""
    t = np.linspace(0.0, 1.0, 17)[:, None]
    segments = []
    for s, d in zip(src.tolist(), dst.tolist()):
        a, b = pos[s], pos[d]
        if a[0] != b[0]:
            segments.append(np.stack([a, b]))
            continue
        bulge = min(0.45, 0.15 + 0.06 * abs(a[1] - b[1]))
        ctrl = np.array([a[0] - bulge * 2, (a[1] + b[1]) / 2])
        segments.append((1 - t) ** 2 * a + 2 * (1 - t) * t * ctrl + t**2 * b)
    return segments


def draw_network(net: "DagNet", path: str | os.PathLike, title: str | None = None) -> Path:
    """Draw a single network's live synapses (variant 0) to a PNG and return its path.

    Inputs on the left, ``added`` neurons in a column of their own, other hidden neurons in
    columns by level, outputs on the right. Line width grows with ``|w|`` (relative to the
    largest, with a thin minimum so zero-weight live synapses stay visible); colour gives the
    sign. Nodes carry their index up to 60 nodes. Raises InputError for a population > 1.
    """
    if net.population_size != 1:
        raise InputError(f"draw_network needs a population of size 1, got {net.population_size}")
    roles = tuple(net.roles)
    columns, captions = node_columns(roles, net.levels())
    pos = _positions(columns)
    src, dst, weight = net.edges(0)
    n_nodes, n_cols = len(roles), len(captions)
    tallest = int(np.bincount(columns).max())

    width = min(16.0, 2.5 + 1.7 * n_cols)
    height = min(18.0, max(3.5, 0.42 * tallest + 1.5))
    fig = new_figure(width, height)
    ax = fig.add_subplot()
    ax.set_axis_off()

    magnitude = np.abs(weight)
    scale = float(magnitude.max()) if magnitude.size else 0.0
    rel = magnitude / scale if scale > 0 else np.zeros_like(magnitude)
    order = np.argsort(rel, kind="stable")  # strongest synapses drawn on top
    colors = np.where(weight[order] >= 0, POSITIVE, NEGATIVE)
    lines = LineCollection(
        _segments(src[order], dst[order], pos),
        linewidths=0.25 + 2.75 * rel[order],
        colors=list(colors),
        alpha=float(np.clip(0.6 * np.sqrt(300 / max(len(src), 1)), 0.15, 0.6)),
        zorder=1,
        capstyle="round",
    )
    ax.add_collection(lines)

    per_node_pt = height * 72 * 0.8 / max(tallest, 1)
    diameter = float(np.clip(0.7 * per_node_pt, 3.0, 20.0))
    ax.scatter(
        pos[:, 0], pos[:, 1], s=diameter**2, c=[ROLE_COLORS[r] for r in roles],
        edgecolors="black", linewidths=0.6 if n_nodes <= LABEL_LIMIT else 0.3, zorder=2,
    )
    if n_nodes <= LABEL_LIMIT:
        fontsize = float(np.clip(diameter * 0.45, 5.0, 8.0))
        for i, (x, y) in enumerate(pos):
            ax.text(x, y, str(i), ha="center", va="center", fontsize=fontsize, zorder=3)
    top = (tallest - 1) / 2.0 + 0.8
    for col, caption in enumerate(captions):
        ax.text(col, top, caption, ha="center", va="bottom", fontsize="small", color="0.3")
    ax.set_xlim(-0.7, n_cols - 0.3)
    ax.set_ylim(-(tallest - 1) / 2.0 - 0.7, top + 0.6)

    present = [r for r in ROLE_COLORS if r in roles]
    handles = [
        Line2D([], [], marker="o", linestyle="", markerfacecolor=ROLE_COLORS[r],
               markeredgecolor="black", label=r)
        for r in present
    ] + [
        Line2D([], [], color=POSITIVE, lw=2, label="positive weight"),
        Line2D([], [], color=NEGATIVE, lw=2, label="negative weight"),
    ]
    fig.legend(handles=handles, loc="outside right upper", fontsize="small", frameon=False)
    params = int(net.num_params()[0])
    n_added = roles.count("added")
    fig.supxlabel(
        f"{params} parameters, {net.n_hidden} hidden neurons ({n_added} added), {len(src)} live synapses",
        fontsize="small",
    )
    if title:
        fig.suptitle(title)
    return save_png(fig, path)
