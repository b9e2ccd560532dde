"""Pictures of the genetic architecture search (paper 001 section 4.4): each search's best
validation accuracy so far against its training compute, and a genotype drawn as its DAG."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import networkx as nx

from ._figures import new_figure, save_png

OP_COLORS = {"input": "#dddddd", "output": "#dddddd", "conv3": "#9ecae1", "conv5": "#6baed6", "conv7": "#4292c6",
             "maxpool": "#fdae6b", "avgpool": "#fdd0a2", "sum": "#a1d99b", "concat": "#c7e9c0", "skip": "#f2f2f2"}


def plot_search_curves(curves: Mapping[str, Mapping[str, list]], labels: Mapping[str, str],
                       path: str | os.PathLike) -> Path:
    """Two panels: the best validation accuracy so far of every search against its cumulative
    training seconds, and against the genotypes it trained. ``curves[name]`` holds the lists
    ``seconds``, ``trained`` and ``best`` (one entry per trained genotype, in training order)."""
    fig = new_figure(10.0, 4.0)
    by_seconds, by_count = fig.subplots(1, 2)
    for i, (name, curve) in enumerate(curves.items()):
        label = labels.get(name, name)
        by_seconds.step(curve["seconds"], curve["best"], where="post", color=f"C{i}", label=label)
        by_count.step(curve["trained"], curve["best"], where="post", color=f"C{i}", label=label)
    by_seconds.set_xlabel("cumulative training seconds")
    by_count.set_xlabel("genotypes trained")
    for ax in (by_seconds, by_count):
        ax.set_ylabel("best validation accuracy so far")
        ax.grid(alpha=0.3)
    by_count.legend(fontsize=8, loc="lower right")
    fig.suptitle("search at equal training compute", fontsize=10)
    return save_png(fig, path)


def _label(op: str, channels: Any) -> str:
    return f"{op}\n{channels}" if channels is not None else op


def genotype_graph(genotype: Mapping[str, list]) -> nx.DiGraph:
    """A genotype dict (``{"nodes": [[id, op, channels], ...], "edges": [[u, v], ...]}``) as a
    DiGraph whose vertices carry ``op``, ``channels`` and ``layer``: the longest-path distance from
    the input vertex (the vertices without predecessors)."""
    graph = nx.DiGraph()
    for node, op, channels in genotype["nodes"]:
        graph.add_node(node, op=op, channels=channels)
    graph.add_edges_from((u, v) for u, v in genotype["edges"])
    layer = {n: 0 for n in graph if graph.in_degree(n) == 0}
    for n in nx.topological_sort(graph):
        for s in graph.successors(n):
            layer[s] = max(layer.get(s, 0), layer.get(n, 0) + 1)
    nx.set_node_attributes(graph, layer, "layer")
    return graph


def draw_genotype(genotype: Mapping[str, list], path: str | os.PathLike, title: str | None = None) -> Path:
    """The genotype's DAG from left (input) to right (output), one column per longest-path layer,
    each vertex boxed with its operation (and channels), coloured by operation."""
    graph = genotype_graph(genotype)
    positions = nx.multipartite_layout(graph, subset_key="layer", align="vertical") if len(graph) else {}
    layers = max((d for _, d in graph.nodes(data="layer")), default=0) + 1
    fig = new_figure(max(4.0, 1.1 * layers), 3.6)
    ax = fig.subplots()
    for u, v in graph.edges:
        ax.annotate("", xy=positions[v], xytext=positions[u],
                    arrowprops={"arrowstyle": "-|>", "color": "#555555", "lw": 0.8, "shrinkA": 14, "shrinkB": 14,
                                "connectionstyle": "arc3,rad=0.08"})
    for n, data in graph.nodes(data=True):
        ax.text(*positions[n], _label(data["op"], data["channels"]), ha="center", va="center", fontsize=7,
                bbox={"boxstyle": "round,pad=0.3", "facecolor": OP_COLORS.get(data["op"], "white"),
                      "edgecolor": "#333333", "lw": 0.6})
    if positions:
        xs, ys = zip(*positions.values())
        ax.set_xlim(min(xs) - 0.15, max(xs) + 0.15)
        ax.set_ylim(min(ys) - 0.2, max(ys) + 0.2)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    return save_png(fig, path)


__all__ = ["draw_genotype", "genotype_graph", "plot_search_curves"]
