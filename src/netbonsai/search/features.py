"""Graph features of a genotype for the performance predictor (paper 001, section 4.4).

A genotype is a DAG (``nx.DiGraph``) with one source ``op="input"``, one sink ``op="output"`` and
operation vertices with ``op`` in conv3/conv5/conv7/maxpool/avgpool/sum/concat/skip (convs carry a
positive int ``channels``). Every vertex must lie on an input->output path, else ``InputError``.
"Operation vertices" below means every vertex except the input and the output.

Features (``FEATURE_NAMES`` order; 56 of them, as many as the paper lists; it does not define them
all, so the last five here, the vertex counts per operation group, are netbonsai's choice):

* ``layer_mass_mean`` / ``layer_mass_std``: over operation vertices v,
  mass(v) = channels(v) * sum of channels(p) over predecessors p (channels from ``vertex_channels``).
* ``{shortest,longest,walk}_{group}_{mean,std}`` for group in conv (conv3/5/7), pool (max/avg),
  sum, concat, skip, any (all operation vertices); 36 features, as in the paper. For a vertex v:
  - shortest(v) = d(input, v) + d(v, output), the fewest edges of an input->output path through v;
  - longest(v) = the most edges of an input->output path through v;
  - walk(v) = F(v) + B(v), where F(v) is the expected number of edges of a forward random walk from
    v that takes a uniformly random out-edge at each vertex until it reaches the output
    (F(output) = 0, F(v) = 1 + mean F(successors)), and B(v) the same for a backward walk to the
    input over uniformly random in-edges (B(input) = 0, B(v) = 1 + mean B(predecessors)).
    On a chain walk = shortest = longest.
  A group with no vertices gives 0.0 for its six features.
* ``depth``: operation vertices on the longest input->output path (its edges minus 1);
  ``nodes`` and ``edges``: counts in the whole graph (input and output included).
* On the undirected graph, mean and std over all edges / vertices of: ``edge_betweenness``
  (networkx, normalised), ``eccentricity``, ``closeness`` ((n-1) / sum of distances),
  ``avg_neighbor_degree`` and ``degree``.
* ``count_{group}`` for group in conv, pool, sum, concat, skip: how many operation vertices the
  group has. Without them the predictor cannot tell a network of six convs from one with a single
  conv between pools: on the genetic-nas quick run's 182 records (5-fold cross-validation) the
  forest's R^2 rose from 0.08 to 0.41 with them (docs/RESULTS.md).

All std are population std (ddof=0). Means and stds are computed with ``math.fsum`` over sorted
values so that relabelling the nodes does not change the result. Every value is a finite float.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Callable, Hashable

import networkx as nx
import numpy as np

from ..errors import InputError

CONV_OPS = ("conv3", "conv5", "conv7")
POOL_OPS = ("maxpool", "avgpool")
OPERATION_OPS = CONV_OPS + POOL_OPS + ("sum", "concat", "skip")
KERNEL = {"conv3": 3, "conv5": 5, "conv7": 7}
GROUPS: dict[str, tuple[str, ...]] = {
    "conv": CONV_OPS,
    "pool": POOL_OPS,
    "sum": ("sum",),
    "concat": ("concat",),
    "skip": ("skip",),
    "any": OPERATION_OPS,
}
COUNTED_GROUPS = ("conv", "pool", "sum", "concat", "skip")  # ``any`` would repeat ``nodes`` - 2
PATH_KINDS = ("shortest", "longest", "walk")
GRAPH_PROPERTIES = ("edge_betweenness", "eccentricity", "closeness", "avg_neighbor_degree", "degree")

FEATURE_NAMES: tuple[str, ...] = (
    ("layer_mass_mean", "layer_mass_std")
    + tuple(
        f"{kind}_{group}_{stat}" for kind in PATH_KINDS for group in GROUPS for stat in ("mean", "std")
    )
    + ("depth", "nodes", "edges")
    + tuple(f"{prop}_{stat}" for prop in GRAPH_PROPERTIES for stat in ("mean", "std"))
    + tuple(f"count_{group}" for group in COUNTED_GROUPS)
)


def _as_digraph(genotype: Any) -> nx.DiGraph:
    """The DAG itself, or the ``.graph`` of a Genotype-like object (a DiGraph's own ``.graph`` is a dict)."""
    graph = genotype if isinstance(genotype, nx.DiGraph) else getattr(genotype, "graph", genotype)
    if not isinstance(graph, nx.DiGraph):
        raise InputError(f"expected an nx.DiGraph or an object with a .graph DiGraph, got {type(genotype)!r}")
    return graph


def _endpoints(graph: nx.DiGraph) -> tuple[Hashable, Hashable]:
    """Check the genotype's shape and return (input, output)."""
    if not nx.is_directed_acyclic_graph(graph):
        raise InputError("genotype graph is not a DAG")
    ops = {v: graph.nodes[v].get("op") for v in graph.nodes}
    inputs = [v for v, op in ops.items() if op == "input"]
    outputs = [v for v, op in ops.items() if op == "output"]
    if len(inputs) != 1 or len(outputs) != 1:
        raise InputError(f"need exactly one input and one output, got {len(inputs)} and {len(outputs)}")
    for v, op in ops.items():
        if op not in OPERATION_OPS and op not in ("input", "output"):
            raise InputError(f"vertex {v!r} has unknown op {op!r}")
    src, dst = inputs[0], outputs[0]
    on_path = (nx.descendants(graph, src) | {src}) & (nx.ancestors(graph, dst) | {dst})
    if len(on_path) != graph.number_of_nodes():
        raise InputError("every vertex must lie on an input->output path")
    return src, dst


def vertex_channels(genotype: Any, in_channels: int = 1) -> dict[Hashable, int]:
    """Output channels of every vertex: input = in_channels, conv = its ``channels``, concat = sum of
    its predecessors', any other op (pools, skip, sum, output) = max of its predecessors' (the decoder
    zero-pads to the largest where inputs are summed)."""
    graph = _as_digraph(genotype)
    _endpoints(graph)
    return _channels(graph, in_channels)


def _channels(graph: nx.DiGraph, in_channels: int) -> dict[Hashable, int]:
    """``vertex_channels`` on an already validated graph."""
    channels: dict[Hashable, int] = {}
    for v in nx.topological_sort(graph):
        op = graph.nodes[v]["op"]
        preds = [channels[p] for p in graph.predecessors(v)]
        if op == "input":
            channels[v] = int(in_channels)
        elif op in CONV_OPS:
            c = graph.nodes[v].get("channels")
            if not isinstance(c, (int, np.integer)) or isinstance(c, bool) or c <= 0:
                raise InputError(f"conv vertex {v!r} needs a positive int 'channels', got {c!r}")
            channels[v] = int(c)
        elif op == "concat":
            channels[v] = sum(preds)
        else:
            channels[v] = max(preds)
    return channels


def _mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Population mean and std, order-independent; (0.0, 0.0) for no values."""
    xs = sorted(float(x) for x in values)
    if not xs:
        return 0.0, 0.0
    mean = math.fsum(xs) / len(xs)
    var = math.fsum((x - mean) ** 2 for x in xs) / len(xs)
    return mean, math.sqrt(var)


def _sweep(order: list[Hashable], neighbours: Callable[[Hashable], Iterable[Hashable]], end: Hashable
           ) -> tuple[dict[Hashable, float], dict[Hashable, float], dict[Hashable, float]]:
    """Fewest edges, most edges and the expected random-walk length from every vertex to ``end``,
    visiting ``order`` so that each vertex's ``neighbours`` (one step towards ``end``) come first."""
    fewest: dict[Hashable, float] = {}
    most: dict[Hashable, float] = {}
    walk: dict[Hashable, float] = {}
    for v in order:
        if v == end:
            fewest[v] = most[v] = walk[v] = 0.0
            continue
        near = list(neighbours(v))
        fewest[v] = 1.0 + min(fewest[u] for u in near)
        most[v] = 1.0 + max(most[u] for u in near)
        walk[v] = 1.0 + math.fsum(walk[u] for u in near) / len(near)
    return fewest, most, walk


def _path_lengths(graph: nx.DiGraph, src: Hashable, dst: Hashable) -> dict[str, dict[Hashable, float]]:
    """shortest / longest / walk length through every vertex, by dynamic programming over the DAG."""
    order = list(nx.topological_sort(graph))
    s_in, l_in, b_in = _sweep(order, graph.predecessors, src)  # from the input (the walk runs backward)
    s_out, l_out, f_out = _sweep(order[::-1], graph.successors, dst)  # to the output
    return {
        "shortest": {v: s_in[v] + s_out[v] for v in order},
        "longest": {v: l_in[v] + l_out[v] for v in order},
        "walk": {v: b_in[v] + f_out[v] for v in order},
    }


def _graph_properties(graph: nx.DiGraph) -> dict[str, float]:
    """Mean and std of undirected-graph properties; all-pairs distances computed once."""
    und = graph.to_undirected(as_view=False)
    n = und.number_of_nodes()
    dist = dict(nx.all_pairs_shortest_path_length(und))
    ecc = nx.eccentricity(und, sp=dist)
    closeness = {v: (n - 1) / math.fsum(dist[v].values()) if n > 1 else 0.0 for v in und}
    values: dict[str, Iterable[float]] = {
        "edge_betweenness": nx.edge_betweenness_centrality(und, normalized=True).values(),
        "eccentricity": ecc.values(),
        "closeness": closeness.values(),
        "avg_neighbor_degree": nx.average_neighbor_degree(und).values(),
        "degree": (d for _, d in und.degree()),
    }
    out: dict[str, float] = {}
    for prop in GRAPH_PROPERTIES:
        out[f"{prop}_mean"], out[f"{prop}_std"] = _mean_std(values[prop])
    return out


def genotype_features(genotype: Any, in_channels: int = 1) -> dict[str, float]:
    """The predictor's features of one genotype, keyed by ``FEATURE_NAMES`` (see the module docstring)."""
    graph = _as_digraph(genotype)
    src, dst = _endpoints(graph)
    channels = _channels(graph, in_channels)
    ops = {v: graph.nodes[v]["op"] for v in graph.nodes}
    op_vertices = [v for v in graph.nodes if v not in (src, dst)]

    feats: dict[str, float] = {}
    masses = (channels[v] * sum(channels[p] for p in graph.predecessors(v)) for v in op_vertices)
    feats["layer_mass_mean"], feats["layer_mass_std"] = _mean_std(masses)

    lengths = _path_lengths(graph, src, dst)
    for kind in PATH_KINDS:
        for group, group_ops in GROUPS.items():
            vals = (lengths[kind][v] for v in op_vertices if ops[v] in group_ops)
            feats[f"{kind}_{group}_mean"], feats[f"{kind}_{group}_std"] = _mean_std(vals)

    feats["depth"] = lengths["longest"][src] - 1.0
    feats["nodes"] = float(graph.number_of_nodes())
    feats["edges"] = float(graph.number_of_edges())
    feats.update(_graph_properties(graph))
    for group in COUNTED_GROUPS:
        feats[f"count_{group}"] = float(sum(ops[v] in GROUPS[group] for v in op_vertices))

    out = {name: float(feats[name]) for name in FEATURE_NAMES}
    bad = [k for k, x in out.items() if not math.isfinite(x)]
    if bad:
        raise InputError(f"non-finite features: {bad}")
    return out


def feature_matrix(genotypes: Iterable[Any], in_channels: int = 1) -> np.ndarray:
    """Rows of ``genotype_features`` in ``FEATURE_NAMES`` order, shape (n, len(FEATURE_NAMES))."""
    rows = [
        [feats[name] for name in FEATURE_NAMES]
        for feats in (genotype_features(g, in_channels) for g in genotypes)
    ]
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(FEATURE_NAMES))


def baseline_features(genotype: Any, in_channels: int = 1) -> dict[str, float]:
    """Inputs of the "parameter count alone" and "depth alone" baselines.

    ``params_proxy`` = sum over conv vertices of k*k*c_in*c_out (no biases, no head: the head is not
    known here), c_in = max of the predecessors' channels (several inputs are summed after zero
    padding, as in ``vertex_channels``). The search should pass the real parameter count when it knows
    it. ``depth`` as in ``genotype_features``.
    """
    graph = _as_digraph(genotype)
    src, dst = _endpoints(graph)
    channels = _channels(graph, in_channels)
    params = 0
    for v in graph.nodes:
        op = graph.nodes[v]["op"]
        if op in CONV_OPS:
            c_in = max(channels[p] for p in graph.predecessors(v))
            params += KERNEL[op] ** 2 * c_in * channels[v]
    depth = _path_lengths(graph, src, dst)["longest"][src] - 1.0
    return {"params_proxy": float(params), "depth": float(depth)}

