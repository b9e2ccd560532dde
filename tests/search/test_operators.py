"""Mutations and crossovers: valid children within the depth limits, untouched parents, seeded, and what
each operator does to the structure."""

from __future__ import annotations

import random

import networkx as nx
import pytest

from netbonsai.errors import InputError
from netbonsai.search import (
    CROSSOVERS,
    MUTATIONS,
    Genotype,
    bridges,
    crossover_average,
    crossover_bridge,
    crossover_subpaths,
    insert_subgraph,
    layer_index,
    random_genotype,
    relabel,
    validate,
)

from .genotypes import chain

SEEDS = range(30)


def parents(seed: int) -> tuple[Genotype, Genotype]:
    return random_genotype(random.Random(seed)), random_genotype(random.Random(1000 + seed))


def apply(name: str, a: Genotype, b: Genotype, seed: int, **limits) -> Genotype:
    if name in MUTATIONS:
        return MUTATIONS[name](a, random.Random(seed), **limits)
    return CROSSOVERS[name](a, b, random.Random(seed), **limits)


def path_ops(g: Genotype) -> list[str]:
    """The ops along a chain genotype, input to output."""
    order = list(nx.topological_sort(g.graph))
    assert all(g.graph.out_degree(n) <= 1 for n in order)
    return [g.graph.nodes[n]["op"] for n in order[1:-1]]


@pytest.mark.parametrize("name", [*MUTATIONS, *CROSSOVERS])
def test_children_are_valid_seeded_new_and_leave_parents_untouched(name: str) -> None:
    changed = 0
    for seed in SEEDS:
        a, b = parents(seed)
        before = (a.to_dict(), b.to_dict())
        child = apply(name, a, b, seed)
        assert validate(child) is child and 6 <= child.depth <= 12
        assert (a.to_dict(), b.to_dict()) == before
        assert child is not a and child is not b
        assert apply(name, a, b, seed).to_dict() == child.to_dict()
        changed += child.to_dict() != a.to_dict()
    # the fallback (a copy of a) must stay the exception, or the checks above prove nothing
    assert changed >= {"average": 12, "bridge": 15}.get(name, 24)


@pytest.mark.parametrize("name", [*MUTATIONS, *CROSSOVERS])
def test_other_limits_are_respected(name: str) -> None:
    for seed in range(10):
        a = random_genotype(random.Random(seed), 3, 5)
        b = random_genotype(random.Random(500 + seed), 3, 5)
        child = apply(name, a, b, seed, min_depth=3, max_depth=6)
        assert 3 <= validate(child, 3, 6).depth <= 6


def test_operators_reject_broken_parents() -> None:
    g = nx.DiGraph(chain(*[("skip", None)] * 6).graph)
    g.add_edge(3, 2)
    with pytest.raises(InputError, match="cycle"):
        relabel(Genotype(g), random.Random(0))
    with pytest.raises(InputError, match="cycle"):
        crossover_bridge(chain(*[("skip", None)] * 6), Genotype(g), random.Random(0))


def test_relabel_changes_exactly_one_label() -> None:
    for seed in SEEDS:
        a, _ = parents(seed)
        child = relabel(a, random.Random(seed))
        assert sorted(child.graph.edges) == sorted(a.graph.edges)
        diff = [n for n in a.graph if dict(a.graph.nodes[n]) != dict(child.graph.nodes[n])]
        assert len(diff) == 1 and diff[0] not in (a.input, a.output)
        op, ch = child.graph.nodes[diff[0]]["op"], child.graph.nodes[diff[0]]["channels"]
        assert (ch in (8, 16, 32, 64)) if op.startswith("conv") else ch is None
    only = chain(*[("conv3", 8)] * 6)
    child = relabel(only, random.Random(0), ops=("conv3",), channels=(8, 16))
    assert [child.graph.nodes[n]["channels"] for n in range(1, 7)].count(16) == 1
    assert relabel(only, random.Random(0), ops=("conv3",), channels=(8,)) == only  # no other label: a copy


def test_insert_subgraph_replaces_an_edge_by_two_or_three_vertices() -> None:
    sizes = set()
    for seed in SEEDS:
        a, _ = parents(seed)
        child = insert_subgraph(a, random.Random(seed))
        if child == a:  # with depth <= 10 every edge has room for two more vertices
            assert a.depth >= 11 and child.to_dict() == a.to_dict()
            continue
        new = sorted(set(child.graph) - set(a.graph))
        assert len(new) in (2, 3) and set(a.graph) <= set(child.graph) and min(new) > max(a.graph)
        sizes.add(len(new))
        lost = set(a.graph.edges) - set(child.graph.edges)
        assert len(lost) == 1
        (u, v), x, y = lost.pop(), new[0], new[1]
        assert {(u, x), (x, y), (y, v)} <= set(child.graph.edges)
        if len(new) == 3:
            assert {(u, new[2]), (new[2], y)} <= set(child.graph.edges) and child.graph.in_degree(y) == 2
        assert child.graph.number_of_edges() == a.graph.number_of_edges() - 1 + 3 + 2 * (len(new) == 3)
    assert sizes == {2, 3}


def test_insert_subgraph_falls_back_to_a_copy_when_nothing_fits() -> None:
    full = chain(*[("skip", None)] * 12)
    child = insert_subgraph(full, random.Random(0))
    assert child == full and child.to_dict() == full.to_dict() and child is not full
    # with a skip edge beside a short stretch there is room: only edges off the longest path fit
    roomy = chain(*[("skip", None)] * 11, skips=((0, 12),))
    grown = insert_subgraph(roomy, random.Random(0), max_depth=12)
    assert grown.depth <= 12 and (0, 12) not in grown.graph.edges and len(grown.graph) == len(roomy.graph) + 2


def test_crossover_subpaths_puts_a_run_of_b_into_a() -> None:
    a = chain(*[("conv3", 8)] * 6)
    b = chain(*[("maxpool", None)] * 9)
    kinds = set()
    for seed in SEEDS:
        ops = path_ops(crossover_subpaths(a, b, random.Random(seed)))
        runs = "".join("c" if op == "conv3" else "m" for op in ops)
        assert "m" in runs and runs.strip("c").count("c") == 0  # one contiguous run of b's vertices
        assert runs.count("m") >= 9 - runs.count("c") - 3 and 6 <= len(ops) <= 12
        kinds.add(runs)
    assert len(kinds) >= 8


def test_crossover_subpaths_keeps_branches_outside_the_run_and_drops_those_inside() -> None:
    # a: backbone of 7 skips (ids 1..7, output 8), a conv branch 1 -> 9 -> 3 and a skip edge 5 -> 8
    g = nx.DiGraph(chain(*[("skip", None)] * 7, skips=((5, 8),)).graph)
    g.add_node(9, op="conv3", channels=8)
    g.add_edges_from([(1, 9), (9, 3)])
    a, b = Genotype(g), chain(*[("avgpool", None)] * 6)
    cases = set()
    for seed in range(100):
        graph = crossover_subpaths(a, b, random.Random(seed), max_depth=20).graph
        removed = set(a.graph) - set(graph)
        assert removed and removed <= set(range(1, 10))

        def new(n: int) -> bool:
            return graph.nodes[n]["op"] == "avgpool"

        if {1, 3} <= removed:  # the branch lay inside the run: gone with it
            assert 9 not in graph
            cases.add("inside")
            continue
        preds, succs = list(graph.predecessors(9)), list(graph.successors(9))
        assert preds == [1] if 1 not in removed else len(preds) == 1 and new(preds[0])
        assert succs == [3] if 3 not in removed else len(succs) == 1 and new(succs[0])
        cases.add(("from new" if 1 in removed else "from 1") + (", into new" if 3 in removed else ", into 3"))
        assert graph.has_edge(5, 8) if 5 not in removed else any(new(p) for p in graph.predecessors(8))
    assert cases == {"inside", "from new, into 3", "from 1, into new", "from 1, into 3"}


def test_bridges_are_the_edges_on_every_input_output_path() -> None:
    g = chain(*[("skip", None)] * 6, skips=((0, 4),))
    assert bridges(g) == [(4, 5), (5, 6), (6, 7)]
    assert bridges(chain(*[("skip", None)] * 2)) == [(0, 1), (1, 2), (2, 3)]
    assert bridges(chain(*[("skip", None)] * 2, skips=((0, 3),))) == []


def test_crossover_bridge_joins_a_prefix_of_a_to_a_suffix_of_b() -> None:
    a = chain(*[("conv3", 8)] * 8)
    b = chain(*[("maxpool", None)] * 8)
    seen = set()
    for seed in SEEDS:
        child = crossover_bridge(a, b, random.Random(seed))
        runs = "".join("c" if op == "conv3" else "m" for op in path_ops(child))
        assert runs == "c" * runs.count("c") + "m" * runs.count("m") and 6 <= len(runs) <= 12
        assert set(range(runs.count("c") + 1)) <= set(child.graph)  # a's prefix keeps its ids
        seen.add(runs)
    assert len(seen) >= 8 and any(r.count("c") and r.count("m") for r in seen)


def test_crossover_bridge_without_bridges_returns_a_copy() -> None:
    a = chain(*[("skip", None)] * 6, skips=((0, 7),))
    assert crossover_bridge(a, chain(*[("conv3", 8)] * 6), random.Random(0)).to_dict() == a.to_dict()


def test_crossover_average_rounds_half_up_layer_by_layer() -> None:
    a = chain(*[("conv3", 8), ("conv3", 8), ("maxpool", None), ("conv5", 32), ("conv3", 64), ("conv7", 16)])
    b = chain(*[("conv7", 9), ("skip", None), ("conv3", 16), ("avgpool", None), ("conv3", 64), ("conv3", 1)])
    child = crossover_average(a, b, random.Random(0))
    assert [child.graph.nodes[n]["channels"] for n in range(1, 7)] == [9, 8, None, 32, 64, 9]
    assert sorted(child.graph.edges) == sorted(a.graph.edges) and child.operations() == a.operations()


def test_crossover_average_keeps_structure_and_only_averages_conv_channels() -> None:
    for seed in SEEDS:
        a, b = parents(seed)
        child = crossover_average(a, b, random.Random(seed))
        assert sorted(child.graph.edges) == sorted(a.graph.edges) and child.operations() == a.operations()
        la, lb = layer_index(a), layer_index(b)
        for n in a.operations():
            old, new = a.graph.nodes[n]["channels"], child.graph.nodes[n]["channels"]
            if new == old:
                continue
            assert a.graph.nodes[n]["op"].startswith("conv")
            convs = [m for m, op in b.operations().items() if op.startswith("conv")]
            partners = [m for m in convs if lb[m] == la[n]]
            assert any(new == (old + b.graph.nodes[m]["channels"] + 1) // 2 for m in partners)
