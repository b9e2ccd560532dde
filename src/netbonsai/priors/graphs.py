"""Random graphs as structural priors: generate, orient, layer, and embed them in a network.

The recipe of paper 001 (section 4.3), with the parameters of the authors' code:

1. :func:`random_graph` / :func:`sample_graphs`: a connected Watts-Strogatz graph
   (``k = n // 5`` nearest neighbours, rewiring probability ``p = 1``) or a Barabasi-Albert graph
   (``m = n // 10`` edges per new node), ``n`` drawn from ``[10, 50]``.
2. :func:`orient`: every edge points from the lower to the higher node id, which gives a DAG.
3. :func:`layer_index`: sources get layer 0, every other vertex ``1 + max`` of its predecessors'
   layers (the paper's ``v -> max({ind(s) | (s, v) in E} u {-1}) + 1``).
4. :func:`to_structure` (for the masked recurrent networks) or :func:`to_dagnet` (a sparse
   feed-forward :class:`DagNet`): the DAG is embedded between an input and an output layer. The
   network input feeds every source vertex, each edge ``u -> v`` is a connection from ``u``'s
   units to ``v``'s units (a skip connection when it spans more than one layer), and the output
   reads every sink vertex (out-degree 0).

Functions that take a ``dag`` also accept an undirected graph, which they orient with
:func:`orient` first; a directed graph must be acyclic.

Vertex order: vertices are ordered by ``(layer, id)``. This is the order of the hidden units in
:func:`to_structure` (``units_per_vertex`` consecutive units per vertex, see :func:`vertex_units`)
and the order of the hidden nodes of :func:`to_dagnet`'s network.
"""

from __future__ import annotations

import math
from numbers import Integral
from typing import Any, Hashable, Sequence

import networkx as nx
import numpy as np

from ..errors import InputError
from ..nets.convert import from_networkx
from ..nets.dag import DagNet
from ..nets.structure import LayeredStructure

FAMILIES = ("watts-strogatz", "barabasi-albert")

# The smallest n for which the authors' parameters are valid: k = n // 5 >= 2 and m = n // 10 >= 1.
_MIN_NODES = {"watts-strogatz": 10, "barabasi-albert": 10}


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise InputError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise InputError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def _check_family(family: str) -> str:
    if family not in FAMILIES:
        raise InputError(f"unknown graph family {family!r}; choose one of {', '.join(FAMILIES)}")
    return family


# ---------------------------------------------------------------------- generation
def random_graph(family: str, n: int, seed: int) -> nx.Graph:
    """One random undirected graph of ``family`` with ``n`` vertices ``0..n-1``.

    ``"watts-strogatz"``: ``nx.connected_watts_strogatz_graph(n, k=n // 5, p=1.0, seed=seed)``
    (``n * (k // 2)`` edges, connected); ``"barabasi-albert"``: ``nx.barabasi_albert_graph(n,
    m=n // 10, seed=seed)`` (``m * (n - m)`` edges). Both need ``n >= 10`` (``k >= 2``,
    ``m >= 1``); smaller ``n`` raises :class:`InputError`. The graph attributes ``family``, ``n``
    and ``seed`` record how it was made.
    """
    _check_family(family)
    n = _check_int(n, "n", 1)
    seed = _check_int(seed, "seed", 0)
    if n < _MIN_NODES[family]:
        what = "k = n // 5 >= 2" if family == "watts-strogatz" else "m = n // 10 >= 1"
        raise InputError(f"{family} graphs need n >= {_MIN_NODES[family]} ({what}), got n={n}")
    if family == "watts-strogatz":
        try:
            graph = nx.connected_watts_strogatz_graph(n, k=n // 5, p=1.0, seed=seed)
        except nx.NetworkXError as exc:  # no connected graph in networkx's 100 tries
            raise InputError(f"no connected watts-strogatz graph for n={n}, seed={seed}: {exc}") from None
    else:
        graph = nx.barabasi_albert_graph(n, m=n // 10, seed=seed)
    graph.graph.update(family=family, n=n, seed=seed)
    return graph


def sample_graphs(
    family: str, count: int, n_range: tuple[int, int] = (10, 50), seed: int = 0
) -> list[nx.Graph]:
    """``count`` random graphs of ``family``, each with ``n`` drawn uniformly from the inclusive
    ``n_range``.

    A ``numpy`` generator seeded with ``seed`` draws ``(n, graph seed)`` for one graph after the
    other, so the same arguments give the same graphs and a smaller ``count`` gives a prefix of a
    larger one.
    """
    _check_family(family)
    count = _check_int(count, "count", 0)
    seed = _check_int(seed, "seed", 0)
    try:
        low, high = (int(v) for v in n_range)
    except (TypeError, ValueError):
        raise InputError(f"n_range must be two integers (low, high), got {n_range!r}") from None
    if low > high:
        raise InputError(f"n_range must have low <= high, got {tuple(n_range)}")
    if low < _MIN_NODES[family]:
        raise InputError(f"{family} graphs need n >= {_MIN_NODES[family]}, but n_range starts at {low}")
    rng = np.random.default_rng(seed)
    graphs = []
    for _ in range(count):
        n = int(rng.integers(low, high + 1))
        graph_seed = int(rng.integers(0, 2**31 - 1))
        graphs.append(random_graph(family, n, graph_seed))
    return graphs


# ---------------------------------------------------------------------- orientation and layers
def _sorted_nodes(graph: nx.Graph) -> list[Hashable]:
    try:
        return sorted(graph.nodes)
    except TypeError:
        raise InputError(
            "graph node ids must be mutually comparable (e.g. all integers) to orient the graph"
        ) from None


def orient(graph: nx.Graph) -> nx.DiGraph:
    """The DAG with every edge of ``graph`` pointing from the lower to the higher node id.

    Nodes are added in sorted order (isolated vertices are kept) and the graph attributes are
    copied. A directed input is re-oriented the same way; a self-loop raises :class:`InputError`.
    """
    if not isinstance(graph, nx.Graph):
        raise InputError(f"orient() needs a networkx graph, got {type(graph).__name__}")
    dag = nx.DiGraph()
    dag.graph.update(graph.graph)
    dag.add_nodes_from(_sorted_nodes(graph))
    for u, v in graph.edges():
        if u == v:
            raise InputError(f"graph has a self-loop at node {u!r}: it cannot become a DAG")
        dag.add_edge(*((u, v) if u < v else (v, u)))
    return dag


def _as_dag(graph: nx.Graph) -> nx.DiGraph:
    """A directed acyclic graph: undirected graphs are oriented, directed ones checked."""
    if not isinstance(graph, nx.Graph):
        raise InputError(f"expected a networkx graph, got {type(graph).__name__}")
    if graph.is_multigraph():
        raise InputError("multigraphs are not supported: give a simple nx.Graph or nx.DiGraph")
    if not graph.is_directed():
        return orient(graph)
    if not nx.is_directed_acyclic_graph(graph):
        raise InputError("the directed graph has a cycle: a structural prior must be a DAG")
    return graph


def layer_index(dag: nx.DiGraph) -> dict[Hashable, int]:
    """Layer of every vertex: 0 for sources, otherwise 1 + the largest layer of a predecessor.

    An edge may span several layers (a skip connection). An undirected graph is oriented first.
    """
    dag = _as_dag(dag)
    layers: dict[Hashable, int] = {}
    for v in nx.topological_sort(dag):
        preds = dag.pred[v]
        layers[v] = 1 + max(layers[u] for u in preds) if preds else 0
    return {v: layers[v] for v in dag.nodes}


def _ordered(dag: nx.DiGraph) -> tuple[dict[Hashable, int], list[list[Hashable]]]:
    """Layer indices and the vertices of each layer, sorted by id (graph order if ids do not compare)."""
    layers = layer_index(dag)
    per_layer: list[list[Hashable]] = [[] for _ in range(max(layers.values()) + 1)]
    for v in dag.nodes:
        per_layer[layers[v]].append(v)
    try:
        per_layer = [sorted(vs) for vs in per_layer]
    except TypeError:
        pass
    return layers, per_layer


def _check_nonempty(dag: nx.DiGraph) -> None:
    if dag.number_of_nodes() == 0:
        raise InputError("the graph has no vertices")


def vertex_units(dag: nx.DiGraph, units_per_vertex: int = 1) -> dict[Hashable, tuple[int, range]]:
    """Where each vertex lives in :func:`to_structure`'s network: ``vertex -> (layer, units)``.

    ``units`` is a range of indices into the flat hidden-unit order (all layers in order, the
    order of ``LayeredStructure.out_mask``); unit ``g`` is column ``input_size + g`` of the input
    masks of later layers. Vertices are ordered by ``(layer, id)``.
    """
    dag = _as_dag(dag)
    _check_nonempty(dag)
    upv = _check_int(units_per_vertex, "units_per_vertex", 1)
    layers, per_layer = _ordered(dag)
    units: dict[Hashable, tuple[int, range]] = {}
    start = 0
    for layer, vertices in enumerate(per_layer):
        for v in vertices:
            units[v] = (layer, range(start, start + upv))
            start += upv
    return units


# ---------------------------------------------------------------------- embedding
def to_structure(dag: nx.DiGraph, input_size: int, units_per_vertex: int = 1) -> LayeredStructure:
    """Embed ``dag`` between an input and an output layer as a :class:`LayeredStructure`.

    * Hidden layer ``l`` holds the vertices with layer index ``l``, sorted by id, each as
      ``units_per_vertex`` consecutive units: ``widths[l] = units_per_vertex * #vertices in l``.
    * The network input (all ``input_size`` columns) feeds every unit of every source vertex
      (in-degree 0; these are exactly the vertices of layer 0, so only layer 0 reads the input).
    * An edge ``u -> v`` connects every unit of ``u`` to every unit of ``v``; when
      ``layer(v) - layer(u) > 1`` this is a skip connection in ``in_masks[layer(v)]``.
    * ``out_mask`` selects the units of the sink vertices (out-degree 0), whatever their layer.

    Hence ``num_connections = upv * input_size * #sources + upv**2 * #edges`` (recurrent
    connections are added by the recurrent network, not here). An undirected graph is oriented
    first with :func:`orient`; :func:`vertex_units` maps vertices to unit indices.
    """
    dag = _as_dag(dag)
    input_size = _check_int(input_size, "input_size", 1)
    units = vertex_units(dag, units_per_vertex)
    n_layers = 1 + max(layer for layer, _ in units.values())
    widths = [0] * n_layers
    for layer, unit_range in units.values():
        widths[layer] += len(unit_range)
    offsets = np.cumsum([0] + widths).tolist()
    masks = [np.zeros((widths[l], input_size + offsets[l]), dtype=bool) for l in range(n_layers)]
    out_mask = np.zeros(offsets[-1], dtype=bool)
    for v, (layer, unit_range) in units.items():
        rows = slice(unit_range.start - offsets[layer], unit_range.stop - offsets[layer])
        if dag.in_degree(v) == 0:
            masks[layer][rows, :input_size] = True
        for u in dag.pred[v]:
            source = units[u][1]
            masks[layer][rows, input_size + source.start : input_size + source.stop] = True
        if dag.out_degree(v) == 0:
            out_mask[unit_range.start : unit_range.stop] = True
    return LayeredStructure(input_size, tuple(widths), tuple(masks), out_mask)


def to_dagnet(
    dag: nx.DiGraph, n_inputs: int, n_outputs: int, activation: str = "tanh", seed: int = 0
) -> DagNet:
    """The same embedding as :func:`to_structure` (one neuron per vertex) as a sparse
    feed-forward :class:`DagNet`.

    Synapses: every input -> every source vertex, every edge of ``dag``, every sink vertex ->
    every output, so the network has ``n_inputs * #sources + #edges + #sinks * n_outputs`` live
    synapses (checked). Vertex neurons use ``activation``, outputs are linear (identity). Hidden
    nodes are ordered by ``(layer, id)``. Weights and biases are drawn from
    ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (PyTorch's ``nn.Linear`` default range) with a
    ``numpy`` generator seeded by ``seed``, target node by target node in node order.
    ``net.info["prior"]`` holds :func:`describe` of the DAG.
    """
    dag = _as_dag(dag)
    _check_nonempty(dag)
    n_inputs = _check_int(n_inputs, "n_inputs", 1)
    n_outputs = _check_int(n_outputs, "n_outputs", 1)
    seed = _check_int(seed, "seed", 0)
    if not isinstance(activation, str):
        raise InputError(f"activation must be a name, got {activation!r}")
    vertices = list(vertex_units(dag, 1))  # (layer, id) order
    sinks = [v for v in vertices if dag.out_degree(v) == 0]
    inputs = [("input", i) for i in range(n_inputs)]
    outputs = [("output", j) for j in range(n_outputs)]
    rng = np.random.default_rng(seed)

    graph = nx.DiGraph(n_in=n_inputs, n_out=n_outputs, info={"prior": describe(dag)})
    for node in inputs:
        graph.add_node(node, role="input", activation="identity", bias=0.0)

    def add_target(node: Hashable, role: str, act: str, sources: Sequence[Hashable]) -> None:
        bound = 1.0 / math.sqrt(len(sources))
        weights = rng.uniform(-bound, bound, size=len(sources) + 1)
        graph.add_node(node, role=role, activation=act, bias=float(weights[-1]))
        graph.add_weighted_edges_from((s, node, float(w)) for s, w in zip(sources, weights[:-1]))

    position = {v: i for i, v in enumerate(vertices)}
    for v in vertices:
        preds = [("vertex", u) for u in sorted(dag.pred[v], key=position.__getitem__)] or inputs
        add_target(("vertex", v), "hidden", activation, preds)
    for node in outputs:
        add_target(node, "output", "identity", [("vertex", v) for v in sinks])

    net = from_networkx(graph)
    n_sources = sum(1 for v in vertices if dag.in_degree(v) == 0)
    expected = n_inputs * n_sources + dag.number_of_edges() + len(sinks) * n_outputs
    live = int(net.mask.sum())
    if live != expected:  # pragma: no cover - an internal invariant
        raise RuntimeError(f"to_dagnet built {live} synapses, expected {expected}")
    return net


def describe(dag: nx.DiGraph) -> dict[str, Any]:
    """A JSON-ready summary for logs: ``nodes``, ``edges``, ``layers``, ``sources``, ``sinks``,
    ``widths`` (vertices per layer) and, when the graph records them, ``family``, ``n``, ``seed``."""
    dag = _as_dag(dag)
    _check_nonempty(dag)
    layers = layer_index(dag)
    n_layers = max(layers.values()) + 1
    widths = [0] * n_layers
    for layer in layers.values():
        widths[layer] += 1
    summary: dict[str, Any] = {
        "nodes": dag.number_of_nodes(),
        "edges": dag.number_of_edges(),
        "layers": n_layers,
        "sources": sum(1 for v in dag if dag.in_degree(v) == 0),
        "sinks": sum(1 for v in dag if dag.out_degree(v) == 0),
        "widths": widths,
    }
    for key in ("family", "n", "seed"):
        if key in dag.graph:
            summary[key] = dag.graph[key]
    return summary
