"""Hand-built genotypes shared by the search tests."""

from __future__ import annotations

import networkx as nx

from netbonsai.search import Genotype


def chain(*labels: tuple[str, int | None], skips: tuple[tuple[int, int], ...] = ()) -> Genotype:
    """input 0 -> labels 1..n -> output n+1, plus extra edges ``skips``."""
    g = nx.DiGraph()
    g.add_node(0, op="input")
    for i, (op, ch) in enumerate(labels, start=1):
        g.add_node(i, op=op, channels=ch)
    g.add_node(len(labels) + 1, op="output")
    nx.add_path(g, range(len(labels) + 2))
    g.add_edges_from(skips)
    return Genotype(g)
