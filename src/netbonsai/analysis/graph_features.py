"""Structural features of a random-graph prior, as in paper 001 (section 4.3, Table 1).

23 features per graph, in the fixed order of :data:`FEATURES`:

* counts on the oriented DAG (edges from the lower to the higher node id): ``layers`` (longest
  path in vertices, i.e. ``1 + max`` layer index), ``nodes``, ``edges``, ``source_nodes``
  (in-degree 0), ``sink_nodes`` (out-degree 0);
* ``density`` of the DAG: ``nx.density`` of the directed graph, ``edges / (n (n - 1))``. Orienting
  keeps every edge, so this is exactly half the undirected density; Pearson correlations and
  MinMax-scaled regressions are the same with either, and the DAG is what becomes the network;
* path-based features on the undirected graph (the authors' choice: in the DAG most vertex pairs
  are unreachable): ``diameter``, ``average_shortest_path_length`` and the mean, population
  variance (numpy's default, ``ddof=0``) and standard deviation over vertices of
  ``eccentricity``, ``degree`` (degree centrality), ``closeness`` (closeness centrality) and
  ``nodes_betweenness`` (normalised betweenness centrality), and over edges of
  ``edge_betweenness`` (normalised edge betweenness centrality).

The names of the variance features match the paper's Table 1 (``eccentricity_var``,
``degree_var``, ``closeness_var``, ``nodes_betweenness_var``, ``edge_betweenness_var``).

This module does not import ``netbonsai.priors`` (analysis sits below it); its orientation and
layer count agree with ``priors.orient`` and ``priors.layer_index``.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import networkx as nx
import numpy as np

from ..errors import InputError

_STATISTICS = ("eccentricity", "degree", "closeness", "nodes_betweenness", "edge_betweenness")

FEATURES: tuple[str, ...] = (
    "layers",
    "nodes",
    "edges",
    "source_nodes",
    "sink_nodes",
    "diameter",
    "density",
    "average_shortest_path_length",
) + tuple(f"{stem}_{stat}" for stem in _STATISTICS for stat in ("mean", "var", "std"))


def _dag_and_undirected(graph: nx.Graph) -> tuple[nx.DiGraph, nx.Graph]:
    if not isinstance(graph, nx.Graph):
        raise InputError(f"graph_features() needs a networkx graph, got {type(graph).__name__}")
    if graph.is_multigraph():
        raise InputError("multigraphs are not supported: give a simple nx.Graph or nx.DiGraph")
    if graph.is_directed():
        if not nx.is_directed_acyclic_graph(graph):
            raise InputError("the directed graph has a cycle: graph features need a DAG")
        dag = graph
    else:
        if nx.number_of_selfloops(graph):
            raise InputError("the graph has a self-loop: it cannot become a DAG")
        try:
            dag = nx.DiGraph((u, v) if u < v else (v, u) for u, v in graph.edges())
        except TypeError:
            raise InputError("graph node ids must be mutually comparable (e.g. all integers)") from None
        dag.add_nodes_from(graph.nodes)
    undirected = nx.Graph(dag.to_undirected(as_view=True))
    if undirected.number_of_nodes() < 2:
        raise InputError("graph features need at least two vertices")
    if not nx.is_connected(undirected):
        raise InputError(
            "graph features need a connected graph (diameter and path lengths are undefined otherwise)"
        )
    return dag, undirected


def _stats(stem: str, values: Iterable[float]) -> dict[str, float]:
    array = np.fromiter(values, dtype=float)
    return {
        f"{stem}_mean": float(array.mean()),
        f"{stem}_var": float(array.var()),
        f"{stem}_std": float(array.std()),
    }


def graph_features(graph_or_dag: nx.Graph) -> dict[str, float]:
    """The 23 :data:`FEATURES` of a graph, in that order.

    An undirected graph is oriented (lower -> higher id); a directed graph must be acyclic and is
    used as given. The undirected graph must be connected with at least two vertices, otherwise
    :class:`InputError`.
    """
    dag, undirected = _dag_and_undirected(graph_or_dag)
    eccentricity = nx.eccentricity(undirected)
    values: dict[str, float] = {
        "layers": float(nx.dag_longest_path_length(dag) + 1),
        "nodes": float(dag.number_of_nodes()),
        "edges": float(dag.number_of_edges()),
        "source_nodes": float(sum(1 for _, d in dag.in_degree() if d == 0)),
        "sink_nodes": float(sum(1 for _, d in dag.out_degree() if d == 0)),
        "diameter": float(max(eccentricity.values())),
        "density": float(nx.density(dag)),
        "average_shortest_path_length": float(nx.average_shortest_path_length(undirected)),
    }
    values.update(_stats("eccentricity", eccentricity.values()))
    values.update(_stats("degree", nx.degree_centrality(undirected).values()))
    values.update(_stats("closeness", nx.closeness_centrality(undirected).values()))
    values.update(_stats("nodes_betweenness", nx.betweenness_centrality(undirected).values()))
    values.update(_stats("edge_betweenness", nx.edge_betweenness_centrality(undirected).values()))
    return {name: values[name] for name in FEATURES}


def feature_table(graphs: Sequence[nx.Graph]) -> tuple[np.ndarray, list[str]]:
    """Features of many graphs: a float array ``(len(graphs), 23)`` and the column names."""
    rows = [list(graph_features(g).values()) for g in graphs]
    table = np.asarray(rows, dtype=float).reshape(len(rows), len(FEATURES))
    return table, list(FEATURES)
