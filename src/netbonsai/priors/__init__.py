"""Random-graph structural priors (paper 001, section 4.3).

A random undirected graph (Watts-Strogatz or Barabasi-Albert, with the authors' parameters) is
oriented into a DAG (edges from the lower to the higher node id), its vertices get a layer index
(sources 0, otherwise 1 + the largest layer of a predecessor), and the DAG is embedded between an
input and an output layer: as a :class:`~netbonsai.nets.structure.LayeredStructure` for the masked
recurrent networks, or as a sparse feed-forward :class:`~netbonsai.nets.dag.DagNet`.
"""

from __future__ import annotations

from .graphs import (
    FAMILIES,
    describe,
    layer_index,
    orient,
    random_graph,
    sample_graphs,
    to_dagnet,
    to_structure,
    vertex_units,
)

__all__ = [
    "FAMILIES",
    "describe",
    "layer_index",
    "orient",
    "random_graph",
    "sample_graphs",
    "to_dagnet",
    "to_structure",
    "vertex_units",
]
