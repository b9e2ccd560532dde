"""Drawings of DagNet structures: neuron by neuron for small networks, one box per level for big ones.

The layout is computed apart from the rendering (:func:`network_layout`, :func:`level_summary`)
so that what is drawn can be checked without looking at pixels.

Columns: inputs first, then the neurons the search added after the inputs (the paper's "1/2
layer", fed by inputs only), then one column per level of the other hidden neurons, outputs last.
A hidden neuron's level is the longest path to it from an input, not counting synapses that leave
a "1/2 layer" neuron, so a layered MLP (grown or not) keeps each hidden layer in one column. A
neuron no input reaches (all its input synapses pruned) sits just left of the first neuron it feeds.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from matplotlib.path import Path as MplPath

from ..errors import InputError
from ._figures import new_figure, save_png

if TYPE_CHECKING:
    from ..nets.dag import DagNet

ROLE_COLORS = {"input": "#9ecae1", "added": "#fdae6b", "hidden": "#d9d9d9", "output": "#f4a6c6"}
POSITIVE, NEGATIVE = "#2166ac", "#b2182b"
LABEL_LIMIT = 60  # nodes; bigger networks are drawn without index labels
SUMMARY_NODES = 60  # above this many nodes ...
SUMMARY_SYNAPSES = 400  # ... or this many live synapses, a network is drawn as one box per level


@dataclass(frozen=True)
class NetworkLayout:
    """Where every node of one network goes, and its live synapses.

    ``columns[i]`` is node ``i``'s column (0 = inputs, last = outputs), captioned by
    ``captions[column]``; ``positions`` is ``(N, 2)`` (x = column, y centred, lower index on top);
    ``sources``/``targets``/``weights`` are the live synapses; ``summary`` says whether the network
    is too large to draw neuron by neuron (then :func:`draw_network` draws :func:`level_summary`).
    """

    roles: tuple[str, ...]
    columns: np.ndarray
    captions: list[str]
    positions: np.ndarray
    sources: np.ndarray
    targets: np.ndarray
    weights: np.ndarray
    summary: bool

    @property
    def n_nodes(self) -> int:
        return len(self.roles)

    @property
    def n_synapses(self) -> int:
        return len(self.sources)


@dataclass(frozen=True)
class LevelSummary:
    """One entry per column: its caption and node count; ``links[(a, b)]`` live synapses from
    column ``a`` to column ``b`` (``a == b``: synapses within a column)."""

    captions: list[str]
    counts: list[int]
    links: dict[tuple[int, int], int]


def node_levels(mask: np.ndarray, roles: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Drawing level of every node and which nodes form the "1/2 layer", for one ``(N, N)`` bool
    adjacency (row = source, sources before targets).

    The "1/2 layer": ``added`` neurons fed only by inputs and other such neurons. Other nodes: the
    longest path from an input, not counting synapses out of "1/2 layer" neurons (inputs are level
    0). A hidden node no input reaches gets the level just below the lowest level it feeds (an
    output counts as one level after the deepest hidden neuron; at least 1), or 1 when it feeds
    nothing. Outputs get their longest-path level too (drawn last anyway).
    """
    mask = np.asarray(mask, dtype=bool)
    role_arr = np.asarray(roles)
    n = len(role_arr)
    if mask.shape != (n, n):
        raise InputError(f"mask must be ({n}, {n}), got {mask.shape}")
    is_input = role_arr == "input"
    half = np.zeros(n, dtype=bool)
    for j in np.nonzero(role_arr == "added")[0]:
        feeders = np.nonzero(mask[:, j])[0]
        half[j] = bool(np.all(is_input[feeders] | half[feeders]))
    counted = mask & ~half[:, None]
    level = np.full(n, -1, dtype=np.int64)
    level[is_input] = 0
    for j in range(n):  # index order is topological
        if is_input[j] or half[j]:
            continue
        feeders = np.nonzero(counted[:, j])[0]
        reached = level[feeders][level[feeders] >= 0]
        if reached.size:
            level[j] = int(reached.max()) + 1
    is_output = role_arr == "output"
    inner = level[~is_input & ~is_output & ~half]
    output_column = max(1, int(inner.max(initial=0))) + 1  # where outputs are drawn: after every level
    for j in range(n - 1, -1, -1):  # unreached nodes: as late as what they feed allows
        if level[j] >= 0 or half[j]:
            continue
        fed = np.nonzero(counted[j])[0]
        fed_levels = np.where(is_output[fed], output_column, level[fed])
        fed_levels = fed_levels[fed_levels >= 0]
        level[j] = max(1, int(fed_levels.min()) - 1) if fed_levels.size else 1
    level[half] = 1
    return level, half


def node_columns(
    roles: Sequence[str], levels: np.ndarray, half: np.ndarray | None = None
) -> tuple[np.ndarray, list[str]]:
    """Column of every node and a caption per column.

    Inputs are column 0; "1/2 layer" neurons (``half``; by default every ``added`` neuron) share
    the next column; other hidden neurons get one column per distinct level, in level order
    (captioned ``layer 1``, ``layer 2``, ... by rank); outputs come last.
    """
    role_arr = np.asarray(roles)
    levels = np.asarray(levels)
    half = (role_arr == "added") if half is None else np.asarray(half, dtype=bool)
    columns = np.zeros(len(role_arr), dtype=np.int64)
    captions = ["inputs"]
    if half.any():
        columns[half] = len(captions)
        captions.append("1/2 layer")
    hidden = (role_arr != "input") & (role_arr != "output") & ~half
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


def network_layout(
    net: "DagNet",
    variant: int = 0,
    max_nodes: int = SUMMARY_NODES,
    max_synapses: int = SUMMARY_SYNAPSES,
) -> NetworkLayout:
    """The columns and positions :func:`draw_network` uses for one variant of ``net``.

    ``summary`` is True when the network has more than ``max_nodes`` nodes or more than
    ``max_synapses`` live synapses.
    """
    if not -net.population_size <= variant < net.population_size:
        raise InputError(f"variant {variant} out of range for a population of {net.population_size}")
    roles = tuple(net.roles)
    mask = net.mask[variant].detach().cpu().numpy()
    levels, half = node_levels(mask, roles)
    columns, captions = node_columns(roles, levels, half)
    sources, targets, weights = net.edges(variant)
    summary = len(roles) > max_nodes or len(sources) > max_synapses
    return NetworkLayout(roles, columns, captions, _positions(columns), sources, targets, weights, summary)


def level_summary(layout: NetworkLayout) -> LevelSummary:
    """Node count per column and live synapse count per pair of columns."""
    counts = np.bincount(layout.columns, minlength=len(layout.captions))
    pairs = Counter(zip(layout.columns[layout.sources].tolist(), layout.columns[layout.targets].tolist()))
    return LevelSummary(list(layout.captions), [int(c) for c in counts], dict(sorted(pairs.items())))


def _column_role(layout: NetworkLayout, column: int) -> str:
    """The colour role of a column: inputs, outputs, "1/2 layer" (added) or hidden."""
    caption = layout.captions[column]
    return {"inputs": "input", "outputs": "output", "1/2 layer": "added"}.get(caption, "hidden")


def _draw_neurons(fig, layout: NetworkLayout) -> None:
    """Every neuron and every live synapse, with arrowheads, width by ``|w|``, colour by sign."""
    roles, pos = layout.roles, layout.positions
    n_nodes, n_cols = layout.n_nodes, len(layout.captions)
    tallest = int(np.bincount(layout.columns).max())
    width = min(16.0, 3.0 + 1.8 * n_cols)
    height = min(14.0, max(3.8, 0.45 * tallest + 1.8))
    fig.set_size_inches(width, height)
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_xlim(-0.7, n_cols - 0.3)
    top = (tallest - 1) / 2.0 + 0.8
    ax.set_ylim(-(tallest - 1) / 2.0 - 0.7, top + 0.6)

    per_node_pt = height * 72 * 0.75 / max(tallest + 1.5, 1)
    diameter = float(np.clip(0.6 * per_node_pt, 6.0, 20.0))
    weight = layout.weights
    magnitude = np.abs(weight)
    scale = float(magnitude.max()) if magnitude.size else 0.0
    rel = magnitude / scale if scale > 0 else np.zeros_like(magnitude)
    alpha = float(np.clip(0.75 * np.sqrt(100 / max(layout.n_synapses, 1)), 0.35, 0.8))
    for k in np.argsort(rel, kind="stable"):  # strongest synapses drawn on top
        s, d = int(layout.sources[k]), int(layout.targets[k])
        same_column = layout.columns[s] == layout.columns[d]
        # within a column (a "1/2 layer" neuron feeding another): bulge to the left
        rad = 0.0 if not same_column else (0.5 if pos[s, 1] > pos[d, 1] else -0.5)
        ax.add_patch(FancyArrowPatch(
            tuple(pos[s]), tuple(pos[d]), arrowstyle="-|>", mutation_scale=7 + 5 * rel[k],
            connectionstyle=f"arc3,rad={rad}", shrinkA=diameter / 2, shrinkB=diameter / 2 + 0.5,
            linewidth=0.4 + 2.4 * rel[k], color=POSITIVE if weight[k] >= 0 else NEGATIVE,
            alpha=alpha, zorder=1,
        ))
    ax.scatter(
        pos[:, 0], pos[:, 1], s=diameter**2, c=[ROLE_COLORS[r] for r in roles],
        edgecolors="black", linewidths=0.6, zorder=2,
    )
    if n_nodes <= LABEL_LIMIT:
        fontsize = float(np.clip(diameter * 0.45, 5.0, 8.0))
        for i, (x, y) in enumerate(pos):
            ax.text(x, y, str(i), ha="center", va="center", fontsize=fontsize, zorder=3)
    counts = np.bincount(layout.columns, minlength=n_cols)
    for col, caption in enumerate(layout.captions):
        ax.text(col, top, f"{caption}\n({counts[col]})", ha="center", va="bottom", fontsize="small", color="0.3")

    present = [r for r in ROLE_COLORS if r in roles]
    handles = [
        Line2D([], [], marker="o", linestyle="", markerfacecolor=ROLE_COLORS[r], markeredgecolor="black",
               label="added (1/2 layer)" if r == "added" else r)
        for r in present
    ] + [
        Line2D([], [], color=POSITIVE, lw=2, label="positive weight"),
        Line2D([], [], color=NEGATIVE, lw=2, label="negative weight"),
    ]
    fig.legend(handles=handles, loc="outside right upper", fontsize="small", frameon=False,
               title="arrows: source to target\nwidth grows with |weight|", title_fontsize="small")


def _box_height(count: int, largest: int) -> float:
    return 0.7 + 2.3 * np.sqrt(count / max(largest, 1))


def _draw_levels(fig, layout: NetworkLayout) -> LevelSummary:
    """One box per column with its node count, arrows between columns labelled with synapse counts."""
    summary = level_summary(layout)
    n_cols = len(summary.captions)
    ax = fig.add_subplot()
    ax.set_axis_off()
    largest = max(summary.counts)
    box_w = 0.55
    heights = [_box_height(c, largest) for c in summary.counts]
    between = {pair: n for pair, n in summary.links.items() if pair[0] != pair[1]}
    thickest = max(between.values(), default=1)
    for col, (caption, count) in enumerate(zip(summary.captions, summary.counts)):
        h = heights[col]
        ax.add_patch(FancyBboxPatch(
            (col - box_w / 2, -h / 2), box_w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
            facecolor=ROLE_COLORS[_column_role(layout, col)], edgecolor="black", linewidth=0.8, zorder=2,
        ))
        if caption in ("inputs", "outputs"):
            text = f"{count:,} {caption if count != 1 else caption[:-1]}"
        else:
            text = f"{caption}\n{count:,} neuron{'s' if count != 1 else ''}"
        within = summary.links.get((col, col), 0)
        if within:
            text += f"\n+{within:,} synapses\nwithin"
        ax.text(col, 0, text, ha="center", va="center", fontsize="small", zorder=3)

    top, bottom = max(heights) / 2, -max(heights) / 2
    stacked = {1: 0, -1: 0}  # arcs drawn so far above (1) and below (-1) the boxes
    ends: Counter = Counter()  # arcs leaving or entering each (column, side) so far
    for index, ((a, b), n_syn) in enumerate(sorted(between.items(), key=lambda item: item[0][1] - item[0][0])):
        possible = summary.counts[a] * summary.counts[b]
        label = f"{n_syn:,} synapse{'s' if n_syn != 1 else ''}\n({100 * n_syn / possible:.3g}% of {possible:,})"
        width = 0.8 + 2.2 * np.log1p(n_syn) / np.log1p(thickest)
        if b - a == 1:  # neighbouring columns: a straight arrow through the middle
            ax.add_patch(FancyArrowPatch(
                (a + box_w / 2, 0), (b - box_w / 2, 0), arrowstyle="-|>", mutation_scale=10 + 2 * width,
                linewidth=width, color="0.25", zorder=1, shrinkA=0, shrinkB=0,
            ))
            ax.text((a + b) / 2, 0.12, label, ha="center", va="bottom", fontsize="x-small", color="0.15")
            continue
        # a skip over columns: an arc over the top (or under the bottom) of the boxes in between
        sign = 1 if stacked[1] <= stacked[-1] else -1
        ya, yb = sign * heights[a] / 2, sign * heights[b] / 2
        # later (wider, higher) arcs leave and enter their boxes further out, so nested arcs do not cross
        xa = a + box_w / 2 * max(-0.8, 0.5 - 0.45 * ends[(a, sign)])
        xb = b - box_w / 2 * max(-0.8, 0.5 - 0.45 * ends[(b, sign)])
        ends[(a, sign)] += 1
        ends[(b, sign)] += 1
        over = max(heights[a : b + 1]) / 2
        peak = sign * (over + 0.45 + 0.55 * stacked[sign])
        stacked[sign] += 1
        control = ((xa + xb) / 2, 2 * peak - (ya + yb) / 2)  # a quadratic Bezier peaks halfway to it
        ax.add_patch(FancyArrowPatch(
            path=MplPath([(xa, ya), control, (xb, yb)], [MplPath.MOVETO, MplPath.CURVE3, MplPath.CURVE3]),
            arrowstyle="-|>", mutation_scale=10 + 2 * width, linewidth=width, color="0.4",
            linestyle="--", zorder=1,
        ))
        ax.text((xa + xb) / 2, peak, label, ha="center", va="center", fontsize="x-small", color="0.2",
                bbox=dict(facecolor="white", edgecolor="none", pad=1.5), zorder=3)
        top, bottom = max(top, peak + 0.3), min(bottom, peak - 0.3)
    ax.set_xlim(-0.55, n_cols - 0.45)
    ax.set_ylim(bottom - 0.2, top + 0.2)
    fig.set_size_inches(min(18.0, 2.0 + 2.4 * n_cols), min(9.0, 1.6 + 1.0 * (top - bottom)))
    return summary


def draw_network(
    net: "DagNet",
    path: str | os.PathLike,
    title: str | None = None,
    max_nodes: int = SUMMARY_NODES,
    max_synapses: int = SUMMARY_SYNAPSES,
) -> Path:
    """Draw a single network (variant 0) to a PNG and return its path.

    Up to ``max_nodes`` nodes and ``max_synapses`` live synapses: every neuron (columns as in
    :func:`network_layout`) and every live synapse as an arrow from source to target, width
    growing with ``|w|`` (relative to the largest), colour giving the sign; nodes carry their
    index. Larger networks: a per-level summary (:func:`level_summary`), one box per column with
    its neuron count and arrows between columns labelled with their live synapse counts; the
    caption says so. Raises InputError for a population > 1.
    """
    if net.population_size != 1:
        raise InputError(f"draw_network needs a population of size 1, got {net.population_size}")
    layout = network_layout(net, 0, max_nodes, max_synapses)
    fig = new_figure(8.0, 5.0)
    params = net.num_params()
    roles = layout.roles
    n_added = roles.count("added")
    facts = (
        f"{params:,} parameters, {net.n_in:,} inputs, {net.n_hidden:,} hidden neurons"
        + (f" ({n_added} added)" if n_added else "")
        + f", {net.n_out:,} output{'s' if net.n_out != 1 else ''}, {layout.n_synapses:,} live synapses"
    )
    if layout.summary:
        _draw_levels(fig, layout)
        caption = (
            f"summary: {layout.n_nodes:,} neurons in {len(layout.captions)} levels; too large to draw neuron by "
            f"neuron (over {max_nodes} nodes or {max_synapses} synapses)\n{facts}"
        )
    else:
        _draw_neurons(fig, layout)
        caption = facts
    fig.supxlabel(caption, fontsize="small")
    if title:
        fig.suptitle(title)
    return save_png(fig, path)


__all__ = ["draw_network", "network_layout", "level_summary", "node_levels", "node_columns",
           "NetworkLayout", "LevelSummary"]
