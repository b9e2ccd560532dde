"""Genotypes of the genetic architecture search (paper 001 section 4.4): labelled DAGs of CNN operations.

A :class:`Genotype` wraps a ``networkx.DiGraph`` with integer node ids. Exactly one vertex has
``op="input"`` (the only source) and exactly one has ``op="output"`` (the only sink); every other
vertex is an *operation vertex* with ``op`` in :data:`OPS` and, for a convolution, a positive int
``channels``. Every vertex lies on an input -> output path.

*Depth* is the number of operation vertices on the longest input -> output path (input and output
are not counted): ``input -> conv3 -> maxpool -> output`` has depth 2. The paper limits it to 6..12.

Equality, hashing and :meth:`Genotype.key` ignore node ids: two genotypes are equal when their
labelled graphs are isomorphic (same ops, channels and wiring), so a population can be de-duplicated
with a set. The key is an exact canonical form (colour refinement plus individualisation, pruned with
the automorphisms it finds), not a hash that could collide; it costs about a millisecond for a genotype
of the default depths. Decoding is not id-free in one detail: ``concat`` orders its inputs by the
topological order, so two equal genotypes may decode to nets whose channels are permuted.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Sequence

import networkx as nx

from ..errors import InputError

__all__ = ["CHANNELS", "CONVS", "OPS", "Genotype", "random_genotype", "validate"]

OPS = ("conv3", "conv5", "conv7", "maxpool", "avgpool", "sum", "concat", "skip")
CONVS = ("conv3", "conv5", "conv7")
CHANNELS = (8, 16, 32, 64)
INPUT, OUTPUT = "input", "output"


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


@dataclass(frozen=True, eq=False)
class Genotype:
    """An architecture: a labelled DAG (see the module docstring).

    The graph is copied on construction (node attributes reduced to ``op`` and ``channels``, the
    latter ``None`` when absent; edge attributes dropped) and frozen, so a genotype never changes:
    operators build new graphs from ``genotype.graph.copy()``.
    """

    graph: nx.DiGraph
    _key: str | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        g = self.graph
        if not isinstance(g, nx.DiGraph) or isinstance(g, nx.MultiDiGraph):
            raise InputError(f"a genotype needs a networkx DiGraph, got {type(g).__name__}")
        bad = [n for n in g.nodes if not _is_int(n)]
        if bad:
            raise InputError(f"genotype node ids must be integers, got {bad[0]!r}")
        copy = nx.DiGraph()
        for n in sorted(g.nodes):
            copy.add_node(n, op=g.nodes[n].get("op"), channels=g.nodes[n].get("channels"))
        copy.add_edges_from(sorted(g.edges))
        object.__setattr__(self, "graph", nx.freeze(copy))

    def __repr__(self) -> str:
        return f"Genotype(nodes={self.graph.number_of_nodes()}, edges={self.graph.number_of_edges()})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Genotype):
            return NotImplemented
        return self.key() == other.key()

    def __hash__(self) -> int:
        return hash(self.key())

    @property
    def input(self) -> int:
        """The id of the input vertex (InputError unless there is exactly one)."""
        return _single(self.graph, INPUT)

    @property
    def output(self) -> int:
        """The id of the output vertex (InputError unless there is exactly one)."""
        return _single(self.graph, OUTPUT)

    @property
    def depth(self) -> int:
        """Operation vertices on the longest input -> output path (input and output not counted)."""
        if not nx.is_directed_acyclic_graph(self.graph):
            raise InputError("genotype graph is not acyclic, so it has no depth")
        dist = longest_from(self.graph, self.input)
        if self.output not in dist:
            raise InputError("the output vertex is not reachable from the input vertex")
        return dist[self.output] - 1

    def operations(self) -> dict[int, str]:
        """Operation vertex id -> op name (input and output left out), in id order."""
        return {n: op for n, op in self.graph.nodes(data="op") if op not in (INPUT, OUTPUT)}

    def to_dict(self) -> dict[str, list]:
        """JSON-able form ``{"nodes": [[id, op, channels-or-None], ...], "edges": [[u, v], ...]}``."""
        nodes = [[n, d["op"], d["channels"]] for n, d in self.graph.nodes(data=True)]
        return {"nodes": nodes, "edges": [[u, v] for u, v in self.graph.edges]}

    @classmethod
    def from_dict(cls, d: dict) -> Genotype:
        """Inverse of :meth:`to_dict` (structure is not validated: call :func:`validate`)."""
        if not isinstance(d, dict) or not isinstance(d.get("nodes"), list) or not isinstance(
            d.get("edges"), list
        ):
            raise InputError("a genotype dict needs 'nodes' and 'edges' lists")
        g = nx.DiGraph()
        for entry in d["nodes"]:
            if not isinstance(entry, (list, tuple)) or len(entry) != 3:
                raise InputError(f"a genotype node must be [id, op, channels], got {entry!r}")
            n, op, channels = entry
            if n in g:
                raise InputError(f"genotype node id {n!r} appears twice")
            g.add_node(n, op=op, channels=channels)
        for entry in d["edges"]:
            if not isinstance(entry, (list, tuple)) or len(entry) != 2 or not all(e in g for e in entry):
                raise InputError(f"a genotype edge must be [u, v] between listed nodes, got {entry!r}")
            g.add_edge(entry[0], entry[1])
        return cls(g)

    def key(self) -> str:
        """Canonical string of the labelled graph, the same for isomorphic genotypes (ids ignored)."""
        if self._key is None:
            object.__setattr__(self, "_key", _canonical_key(self.graph))
        return self._key  # type: ignore[return-value]


def _single(graph: nx.DiGraph, op: str) -> int:
    found = [n for n, o in graph.nodes(data="op") if o == op]
    if len(found) != 1:
        raise InputError(f"a genotype needs exactly one {op} vertex, found {len(found)}")
    return found[0]


def longest_from(graph: nx.DiGraph, source: int) -> dict[int, int]:
    """Longest-path distance in edges from ``source`` to every vertex it reaches (graph must be a DAG)."""
    dist = {source: 0}
    for n in nx.topological_sort(graph):
        if n in dist:
            for s in graph.successors(n):
                dist[s] = max(dist.get(s, 0), dist[n] + 1)
    return dist


def longest_to(graph: nx.DiGraph, target: int) -> dict[int, int]:
    """Longest-path distance in edges from every vertex that reaches ``target`` to it (a DAG)."""
    return longest_from(graph.reverse(copy=False), target)


def validate(genotype: Genotype, min_depth: int = 6, max_depth: int = 12) -> Genotype:
    """Check the structure and the depth limits; return the genotype, or raise InputError (one sentence)."""
    if not isinstance(genotype, Genotype):
        raise InputError(f"expected a Genotype, got {type(genotype).__name__}")
    g = genotype.graph
    if not nx.is_directed_acyclic_graph(g):
        raise InputError("genotype graph has a cycle, so it is not a DAG")
    inp, out = genotype.input, genotype.output
    if g.in_degree(inp) or not g.out_degree(inp):
        raise InputError(f"input vertex {inp} must have successors and no predecessors")
    if g.out_degree(out):
        raise InputError(f"output vertex {out} must have no successors")
    for n, d in g.nodes(data=True):
        op, ch = d["op"], d["channels"]
        if n in (inp, out):
            continue
        if op not in OPS:
            raise InputError(f"vertex {n} has unknown operation {op!r}; expected one of {', '.join(OPS)}")
        if op in CONVS and not (_is_int(ch) and ch > 0):
            raise InputError(f"conv vertex {n} ({op}) needs a positive int channel count, got {ch!r}")
        if op not in CONVS and ch is not None:
            raise InputError(f"vertex {n} ({op}) is not a conv and must not carry channels, got {ch!r}")
    if g.nodes[inp]["channels"] is not None or g.nodes[out]["channels"] is not None:
        raise InputError("the input and output vertices must not carry channels")
    on_path = (nx.descendants(g, inp) & nx.ancestors(g, out)) | {inp, out}
    if out not in nx.descendants(g, inp):
        raise InputError("the output vertex is not reachable from the input vertex")
    stray = sorted(set(g.nodes) - on_path)
    if stray:
        raise InputError(f"vertex {stray[0]} does not lie on an input -> output path")
    depth = genotype.depth
    if not min_depth <= depth <= max_depth:
        raise InputError(f"genotype depth {depth} is outside the limits {min_depth}..{max_depth}")
    return genotype


def draw_label(rng: random.Random, ops: Sequence[str], channels: Sequence[int]) -> tuple[str, int | None]:
    """An operation drawn from ``ops`` and, for a conv, a channel count drawn from ``channels``."""
    op = rng.choice(list(ops))
    return op, (rng.choice(list(channels)) if op in CONVS else None)


def check_choices(ops: Sequence[str], channels: Sequence[int]) -> None:
    """Refuse labels a genotype cannot carry: unknown ops, or convs without positive channel counts."""
    if not ops or any(op not in OPS for op in ops):
        raise InputError(f"ops must be a non-empty subset of {', '.join(OPS)}, got {list(ops)!r}")
    if any(op in CONVS for op in ops) and (not channels or not all(_is_int(c) and c > 0 for c in channels)):
        raise InputError(f"channels must be a non-empty list of positive ints, got {list(channels)!r}")


def random_genotype(
    rng: random.Random,
    min_depth: int = 6,
    max_depth: int = 12,
    channels: Sequence[int] = CHANNELS,
    ops: Sequence[str] = OPS,
) -> Genotype:
    """A random valid genotype: a backbone path of a uniformly drawn depth, forward skip edges along it,
    and up to two parallel branches shorter than the stretch they bypass (so the depth is the backbone's).

    Ids: input 0, backbone 1..d, output d+1, branch vertices after that. Labels are drawn uniformly from
    ``ops`` (a conv's channel count uniformly from ``channels``). Seeded: same ``rng`` state, same genotype.
    """
    check_choices(ops, channels)
    if not (_is_int(min_depth) and _is_int(max_depth) and 0 <= min_depth <= max_depth):
        raise InputError(f"depth limits must be ints with 0 <= min <= max, got {min_depth}..{max_depth}")
    d = rng.randint(min_depth, max_depth)
    g = nx.DiGraph()
    g.add_node(0, op=INPUT, channels=None)
    for i in range(1, d + 1):
        op, ch = draw_label(rng, ops, channels)
        g.add_node(i, op=op, channels=ch)
    g.add_node(d + 1, op=OUTPUT, channels=None)
    nx.add_path(g, range(d + 2))
    for _ in range(rng.randint(0, d // 2)):  # forward skips never lengthen the longest path
        i = rng.randint(0, d)
        j = rng.randint(i + 1, d + 1)
        g.add_edge(i, j)
    nxt = d + 2
    for _ in range(rng.randint(0, 2)):
        i = rng.randint(0, d + 1)
        j = rng.randint(i, d + 1)
        if j - i < 2:  # a branch needs a stretch of at least one backbone vertex to run beside
            continue
        prev = i
        for _ in range(rng.randint(1, j - i - 1)):
            op, ch = draw_label(rng, ops, channels)
            g.add_node(nxt, op=op, channels=ch)
            g.add_edge(prev, nxt)
            prev, nxt = nxt, nxt + 1
        g.add_edge(prev, j)
    return validate(Genotype(g), min_depth, max_depth)


# ---- canonical key: colour refinement + individualisation (exact for labelled DAGs) ----


def _rank(sigs: dict[int, tuple]) -> dict[int, int]:
    order = {s: i for i, s in enumerate(sorted(set(sigs.values())))}
    return {n: order[s] for n, s in sigs.items()}


def _refine(graph: nx.DiGraph, colour: dict[int, int]) -> dict[int, int]:
    while True:
        sigs = {
            n: (
                colour[n],
                tuple(sorted(colour[p] for p in graph.predecessors(n))),
                tuple(sorted(colour[s] for s in graph.successors(n))),
            )
            for n in colour
        }
        new = _rank(sigs)
        if len(set(new.values())) == len(set(colour.values())):
            return new
        colour = new


def _leaf_string(graph: nx.DiGraph, colour: dict[int, int]) -> str:
    nodes = sorted(colour, key=colour.__getitem__)
    labels = "|".join(f"{graph.nodes[n]['op']}:{graph.nodes[n]['channels']}" for n in nodes)
    edges = sorted((colour[u], colour[v]) for u, v in graph.edges)
    return labels + ";" + ",".join(f"{u}>{v}" for u, v in edges)


class _Canon:
    """Individualise-and-refine search; the key is the least leaf string. Two leaves with equal strings
    reveal an automorphism, and a branch in the orbit of an explored one (under the automorphisms found that
    fix the individualised vertices) is skipped: it would give the same strings (McKay's pruning)."""

    def __init__(self, graph: nx.DiGraph) -> None:
        self.graph = graph
        self.best: tuple[str, dict[int, int]] | None = None
        self.autos: list[dict[int, int]] = []

    def key(self) -> str:
        labels = {n: (repr(d["op"]), repr(d["channels"])) for n, d in self.graph.nodes(data=True)}
        self._search(_refine(self.graph, _rank(labels)), [])
        return self.best[0]  # type: ignore[index]

    def _leaf(self, colour: dict[int, int]) -> None:
        s = _leaf_string(self.graph, colour)
        if self.best is None or s < self.best[0]:
            self.best = (s, colour)
        elif s == self.best[0]:
            at = {c: n for n, c in self.best[1].items()}
            self.autos.append({n: at[c] for n, c in colour.items()})

    def _orbit(self, seeds: list[int], fixed: list[int]) -> set[int]:
        gens = [a for a in self.autos if all(a[f] == f for f in fixed)]
        seen, todo = set(seeds), list(seeds)
        while todo:
            n = todo.pop()
            for a in gens:
                if a[n] not in seen:
                    seen.add(a[n])
                    todo.append(a[n])
        return seen

    def _search(self, colour: dict[int, int], fixed: list[int]) -> None:
        cells: dict[int, list[int]] = {}
        for n, c in colour.items():
            cells.setdefault(c, []).append(n)
        target = min((c for c, members in cells.items() if len(members) > 1), default=None)
        if target is None:
            self._leaf(colour)
            return
        # twins (same in- and out-neighbours) are swapped by an automorphism: branch on one of each
        reps: dict[tuple, int] = {}
        for n in sorted(cells[target]):
            reps.setdefault((frozenset(self.graph.predecessors(n)), frozenset(self.graph.successors(n))), n)
        explored: list[int] = []
        for n in reps.values():
            if explored and n in self._orbit(explored, fixed):
                continue
            explored.append(n)
            split = _rank({m: (c, 0 if m == n else 1) for m, c in colour.items()})
            self._search(_refine(self.graph, split), fixed + [n])


def _canonical_key(graph: nx.DiGraph) -> str:
    return _Canon(graph).key()
