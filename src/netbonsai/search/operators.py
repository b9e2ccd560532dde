"""Genotypical operators of the genetic search (paper 001 section 4.4): two mutations, three crossovers.

Every operator takes ``rng: random.Random`` (its only source of randomness: the same seed gives the same
child) and the depth limits ``min_depth=6, max_depth=12``, and returns a NEW genotype that passes
:func:`~netbonsai.search.genotype.validate` within those limits. Inputs are never changed (genotype graphs
are frozen). Parents must be structurally valid (else InputError); their depth may lie outside the limits.

An operator draws up to :data:`TRIES` candidates; when none is valid within the limits it returns a copy of
the (first) parent, so a search loop never has to handle a failure (the copy is as valid as that parent).

New vertices get ids above the largest id of the (first) parent, never a removed vertex's id; kept vertices
keep their ids.
"""

from __future__ import annotations

import random
from typing import Callable, Sequence

import networkx as nx

from ..errors import InputError
from .genotype import CHANNELS, CONVS, OPS, Genotype, check_choices, draw_label, longest_from, validate

__all__ = [
    "CROSSOVERS",
    "MUTATIONS",
    "TRIES",
    "bridges",
    "crossover_average",
    "crossover_bridge",
    "crossover_subpaths",
    "insert_subgraph",
    "layer_index",
    "relabel",
]

TRIES = 10


def _is_valid(child: Genotype | None, min_depth: int, max_depth: int) -> bool:
    if child is None:
        return False
    try:
        validate(child, min_depth, max_depth)
    except InputError:
        return False
    return True


def _attempt(
    parent: Genotype, draw: Callable[[], Genotype | None], min_depth: int, max_depth: int
) -> Genotype:
    """Up to TRIES draws; the first valid child, else a copy of ``parent``."""
    for _ in range(TRIES):
        child = draw()
        if _is_valid(child, min_depth, max_depth):
            return child  # type: ignore[return-value]
    return Genotype(parent.graph)


def _parents(*gs: Genotype) -> None:
    for g in gs:
        validate(g, min_depth=0, max_depth=10**9)


# ---------------------------------------------------------------- mutations


def relabel(
    g: Genotype,
    rng: random.Random,
    min_depth: int = 6,
    max_depth: int = 12,
    *,
    ops: Sequence[str] = OPS,
    channels: Sequence[int] = CHANNELS,
) -> Genotype:
    """Give one random operation vertex another label: an op drawn uniformly from ``ops`` (a conv also
    gets a channel count from ``channels``), redrawn until (op, channels) differs from the old label.

    The structure, hence the depth, is unchanged. No operation vertex, or no other label possible: a copy.
    """
    _parents(g)
    check_choices(ops, channels)
    vertices = sorted(g.operations())
    labels = {(op, c) for op in ops for c in (channels if op in CONVS else (None,))}
    if not vertices:
        return Genotype(g.graph)

    def draw() -> Genotype | None:
        v = rng.choice(vertices)
        old = (g.graph.nodes[v]["op"], g.graph.nodes[v]["channels"])
        if not labels - {old}:
            return None
        new = old
        while new == old:
            new = draw_label(rng, ops, channels)
        child = g.graph.copy()
        child.nodes[v]["op"], child.nodes[v]["channels"] = new
        return Genotype(child)

    return _attempt(g, draw, min_depth, max_depth)


def insert_subgraph(
    g: Genotype,
    rng: random.Random,
    min_depth: int = 6,
    max_depth: int = 12,
    *,
    ops: Sequence[str] = OPS,
    channels: Sequence[int] = CHANNELS,
) -> Genotype:
    """Replace a random edge ``u -> v`` by a depth-2 sub-graph ``u -> a -> b -> v``; with probability 1/2
    also a parallel one-vertex branch ``u -> c -> b`` (so ``b`` merges two inputs). Adds 2 or 3 vertices
    with labels drawn like :func:`relabel`'s; the child's depth must stay within the limits (paper: Fig. 8a).
    """
    _parents(g)
    check_choices(ops, channels)
    edges = sorted(g.graph.edges)

    def draw() -> Genotype:
        u, v = rng.choice(edges)
        child = g.graph.copy()
        child.remove_edge(u, v)
        a = max(child.nodes) + 1
        new = [a, a + 1] + ([a + 2] if rng.random() < 0.5 else [])
        for n in new:
            op, ch = draw_label(rng, ops, channels)
            child.add_node(n, op=op, channels=ch)
        nx.add_path(child, [u, a, a + 1, v])
        if len(new) == 3:
            nx.add_path(child, [u, a + 2, a + 1])
        return Genotype(child)

    return _attempt(g, draw, min_depth, max_depth)


# ---------------------------------------------------------------- crossovers


def _longest_path(g: Genotype) -> list[int]:
    """A longest input -> output path (deterministic: ties broken by the lexicographic topological order)."""
    order = list(nx.lexicographical_topological_sort(g.graph))
    return nx.dag_longest_path(g.graph, topo_order=order)


def _graft(base: nx.DiGraph, donor: nx.DiGraph, nodes: Sequence[int], start: int) -> dict[int, int]:
    """Copy ``donor``'s ``nodes`` (labels and the edges among them) into ``base`` with ids from ``start``."""
    ids = {n: start + i for i, n in enumerate(sorted(nodes))}
    for n, new in ids.items():
        base.add_node(new, op=donor.nodes[n]["op"], channels=donor.nodes[n]["channels"])
    base.add_edges_from((ids[u], ids[v]) for u, v in donor.subgraph(nodes).edges)
    return ids


def crossover_subpaths(
    a: Genotype, b: Genotype, rng: random.Random, min_depth: int = 6, max_depth: int = 12
) -> Genotype:
    """Swap longest simple sub-paths: a random run of interior vertices of a longest input -> output path of
    ``a`` is replaced by a random run of one of ``b`` (the path vertices only, with fresh ids).

    Vertices of ``a`` lying between the run's ends (branches inside it) go with the run; edges from the rest
    of ``a`` into the run now enter the new run's first vertex, edges out of it leave its last vertex (so the
    child stays acyclic and every vertex stays on an input -> output path). One child; swap the parents
    for the other.
    """
    _parents(a, b)
    pa, pb = _longest_path(a)[1:-1], _longest_path(b)[1:-1]
    if not pa or not pb:
        return Genotype(a.graph)

    def segment(path: list[int]) -> list[int]:
        i = rng.randrange(len(path))
        j = rng.randrange(i, len(path))
        return path[i : j + 1]

    def draw() -> Genotype:
        sa, sb = segment(pa), segment(pb)
        g = a.graph
        removed = (nx.descendants(g, sa[0]) & nx.ancestors(g, sa[-1])) | set(sa)
        into = {u for s in sa for u in g.predecessors(s)} - removed
        out_of = {v for s in sa for v in g.successors(s)} - removed
        child = g.copy()
        child.remove_nodes_from(removed)
        ids = _graft(child, b.graph, sb, max(g.nodes) + 1)
        nx.add_path(child, [ids[n] for n in sb])
        child.add_edges_from((u, ids[sb[0]]) for u in sorted(into))
        child.add_edges_from((ids[sb[-1]], v) for v in sorted(out_of))
        return Genotype(child)

    return _attempt(a, draw, min_depth, max_depth)


def bridges(g: Genotype) -> list[tuple[int, int]]:
    """Edges ``u -> v`` that lie on every input -> output path (undirected bridges separating input from
    output), in id order."""
    und = g.graph.to_undirected(as_view=True)
    found = []
    for u, v in nx.bridges(und):
        if not g.graph.has_edge(u, v):
            u, v = v, u
        cut = nx.restricted_view(und, [], [(u, v)])
        if not nx.has_path(cut, g.input, g.output):
            found.append((u, v))
    return sorted(found)


def _side(g: Genotype, edge: tuple[int, int], end: int) -> set[int]:
    """Vertices on ``end``'s side of the bridge ``edge``."""
    cut = nx.restricted_view(g.graph.to_undirected(as_view=True), [], [edge])
    return nx.node_connected_component(cut, end)


def crossover_bridge(
    a: Genotype, b: Genotype, rng: random.Random, min_depth: int = 6, max_depth: int = 12
) -> Genotype:
    """Bridge crossover: the part of ``a`` before a random bridge ``ua -> va`` of ``a`` (the input's side)
    joined by an edge ``ua -> vb`` to the part of ``b`` after a random bridge ``ub -> vb`` of ``b`` (the
    output's side, fresh ids). Every backbone cut point is a bridge, so a chain-like parent has many.
    """
    _parents(a, b)
    ba, bb = bridges(a), bridges(b)
    if not ba or not bb:
        return Genotype(a.graph)

    def draw() -> Genotype:
        ua, va = rng.choice(ba)
        ub, vb = rng.choice(bb)
        child = a.graph.subgraph(_side(a, (ua, va), a.input)).copy()
        ids = _graft(child, b.graph, sorted(_side(b, (ub, vb), b.output)), max(a.graph.nodes) + 1)
        child.add_edge(ua, ids[vb])
        return Genotype(child)

    return _attempt(a, draw, min_depth, max_depth)


def layer_index(g: Genotype) -> dict[int, int]:
    """Vertex id -> layer, its longest-path distance (in edges) from the input."""
    return longest_from(g.graph, g.input)


def crossover_average(
    a: Genotype, b: Genotype, rng: random.Random, min_depth: int = 6, max_depth: int = 12
) -> Genotype:
    """Average matched channel counts: layers are matched by index (longest-path distance from the input);
    each conv vertex of ``a`` in a layer where ``b`` has convs is matched with one of them drawn at random
    and gets ``round_half_up((c_a + c_b) / 2)`` channels. ``a``'s structure and ops are kept.
    """
    _parents(a, b)
    la, lb = layer_index(a), layer_index(b)
    b_convs: dict[int, list[int]] = {}
    for n in sorted(b.operations()):
        if b.graph.nodes[n]["op"] in CONVS:
            b_convs.setdefault(lb[n], []).append(n)

    def draw() -> Genotype:
        child = a.graph.copy()
        for n in sorted(a.operations()):
            if child.nodes[n]["op"] in CONVS and la[n] in b_convs:
                m = rng.choice(b_convs[la[n]])
                total = child.nodes[n]["channels"] + b.graph.nodes[m]["channels"]
                child.nodes[n]["channels"] = max(1, (total + 1) // 2)
        return Genotype(child)

    return _attempt(a, draw, min_depth, max_depth)


MUTATIONS = {"relabel": relabel, "insert": insert_subgraph}
CROSSOVERS = {"subpaths": crossover_subpaths, "bridge": crossover_bridge, "average": crossover_average}
