"""Genotype: structure checks, random genotypes, the dict round trip and the id-free canonical key."""

from __future__ import annotations

import json
import pickle
import random
import warnings

import networkx as nx
import pytest

from netbonsai.errors import InputError
from netbonsai.search import CHANNELS, OPS, Genotype, random_genotype, validate
from .genotypes import chain


SIX = [("conv3", 8), ("maxpool", None), ("conv5", 16), ("sum", None), ("avgpool", None), ("conv7", 32)]


def edited(g: Genotype, edit) -> Genotype:
    graph = g.graph.copy()
    edit(graph)
    return Genotype(graph)


def test_depth_counts_operation_vertices_on_the_longest_path() -> None:
    g = chain(*SIX, skips=((0, 4), (2, 7)))
    assert g.depth == 6 and validate(g) is g
    assert chain(("skip", None)).depth == 1 and chain().depth == 0
    assert g.operations() == {i: op for i, (op, _) in enumerate(SIX, start=1)}
    assert (g.input, g.output) == (0, 7)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda gr: gr.add_edge(5, 2), "has a cycle"),
        (lambda gr: gr.add_node(9, op="input"), "exactly one input vertex, found 2"),
        (lambda gr: gr.nodes[7].update(op="skip"), "exactly one output vertex, found 0"),
        (lambda gr: gr.add_edge(3, 9) or gr.nodes[9].update(op="skip"), "vertex 9 does not lie on an input"),
        (lambda gr: gr.add_edge(9, 3) or gr.nodes[9].update(op="skip"), "vertex 9 does not lie on an input"),
        (lambda gr: gr.nodes[2].update(op="dropout"), "vertex 2 has unknown operation 'dropout'"),
        (lambda gr: gr.nodes[1].update(channels=0), r"conv vertex 1 \(conv3\) needs a positive int channel"),
        (lambda gr: gr.nodes[1].update(channels=None), "conv vertex 1 .* got None"),
        (lambda gr: gr.nodes[1].update(channels=8.0), "conv vertex 1 .* got 8.0"),
        (lambda gr: gr.nodes[2].update(channels=8), r"vertex 2 \(maxpool\) is not a conv and must not carry"),
        (lambda gr: gr.remove_edges_from([(0, 1)]) or gr.add_edge(2, 0), "input vertex 0 must have succ"),
        (lambda gr: gr.remove_edges_from([(3, 4), (0, 4)]), "output vertex is not reachable"),
    ],
)
def test_validate_rejects_each_bad_structure_with_one_sentence(edit, message) -> None:
    bad = edited(chain(*SIX, skips=((0, 4),)), edit)
    with pytest.raises(InputError, match=message) as err:
        validate(bad)
    assert str(err.value).count(". ") == 0 and "\n" not in str(err.value)


def test_validate_applies_the_depth_limits() -> None:
    g = chain(*SIX)
    with pytest.raises(InputError, match="genotype depth 6 is outside the limits 7..12"):
        validate(g, min_depth=7)
    with pytest.raises(InputError, match="depth 6 is outside the limits 0..5"):
        validate(g, min_depth=0, max_depth=5)
    assert validate(g, 6, 6) is g
    with pytest.raises(InputError, match="depth 5 is outside the limits 6..12"):
        validate(chain(*SIX[:5]))


def test_construction_rejects_non_integer_ids_and_non_digraphs() -> None:
    with pytest.raises(InputError, match="node ids must be integers, got 'a'"):
        Genotype(nx.DiGraph([("a", "b")]))
    with pytest.raises(InputError, match="networkx DiGraph, got Graph"):
        Genotype(nx.Graph([(0, 1)]))


def test_the_graph_is_a_frozen_copy() -> None:
    source = chain(*SIX).graph.copy()
    g = Genotype(source)
    source.nodes[1]["op"] = "skip"
    assert g.graph.nodes[1]["op"] == "conv3" and g.graph is not source
    with pytest.raises(nx.NetworkXError, match="Frozen"):
        g.graph.add_edge(0, 7)
    back = pickle.loads(pickle.dumps(g))  # populations travel to worker processes
    assert back == g and back.to_dict() == g.to_dict() and nx.is_frozen(back.graph)


@pytest.mark.parametrize("seed", range(50))
def test_random_genotypes_are_valid_within_the_limits(seed: int) -> None:
    g = random_genotype(random.Random(seed))
    assert validate(g) is g and 6 <= g.depth <= 12
    convs = [n for n, op in g.operations().items() if op.startswith("conv")]
    assert all(g.graph.nodes[n]["channels"] in CHANNELS for n in convs)
    assert random_genotype(random.Random(seed)).to_dict() == g.to_dict()


def test_random_genotypes_cover_every_depth_op_and_some_merges() -> None:
    gs = [random_genotype(random.Random(s)) for s in range(200)]
    assert {g.depth for g in gs} == set(range(6, 13))
    assert {op for g in gs for op in g.operations().values()} == set(OPS)
    assert sum(any(g.graph.in_degree(n) > 1 for n in g.graph) for g in gs) > 50
    assert len({g.key() for g in gs}) == 200
    narrow = random_genotype(random.Random(3), 10, 10, channels=(5,), ops=("conv3", "skip"))
    assert narrow.depth == 10 and set(narrow.operations().values()) <= {"conv3", "skip"}
    with pytest.raises(InputError, match="ops must be a non-empty subset"):
        random_genotype(random.Random(0), ops=("conv9",))
    with pytest.raises(InputError, match="depth limits"):
        random_genotype(random.Random(0), 8, 7)


def test_dict_round_trip_is_exact_and_json_able() -> None:
    for seed in range(10):
        g = random_genotype(random.Random(seed))
        d = json.loads(json.dumps(g.to_dict()))
        back = Genotype.from_dict(d)
        assert back.to_dict() == g.to_dict() and back == g
    d = chain(("conv3", 8)).to_dict()
    nodes = [[0, "input", None], [1, "conv3", 8], [2, "output", None]]
    assert d == {"nodes": nodes, "edges": [[0, 1], [1, 2]]}
    with pytest.raises(InputError, match="needs 'nodes' and 'edges'"):
        Genotype.from_dict({"nodes": []})
    with pytest.raises(InputError, match="edge must be"):
        Genotype.from_dict({"nodes": [[0, "input", None]], "edges": [[0, 5]]})
    with pytest.raises(InputError, match="appears twice"):
        Genotype.from_dict({"nodes": [[0, "input", None], [0, "output", None]], "edges": []})


def test_key_ignores_node_ids_but_not_labels_or_wiring() -> None:
    for seed in range(20):
        g = random_genotype(random.Random(seed))
        ids = list(g.graph.nodes)
        shuffled = ids[:]
        random.Random(seed).shuffle(shuffled)
        renamed = Genotype(nx.relabel_nodes(g.graph, {n: 100 + 7 * m for n, m in zip(ids, shuffled)}))
        assert renamed.key() == g.key() and renamed == g and hash(renamed) == hash(g)
        assert renamed.to_dict() != g.to_dict()
        assert len({g, renamed}) == 1
    g = chain(*SIX, skips=((0, 4),))
    assert edited(g, lambda gr: gr.nodes[1].update(channels=16)) != g
    assert edited(g, lambda gr: gr.nodes[2].update(op="avgpool")) != g
    assert edited(g, lambda gr: gr.remove_edge(0, 4) or gr.add_edge(0, 3)) != g
    assert (g == "not a genotype") is False


def test_key_separates_graphs_colour_refinement_alone_cannot() -> None:
    """Four convs feeding four skips as one 8-cycle or as two 4-cycles: every vertex has the same label and
    degrees, so colour refinement (Weisfeiler-Lehman hashing) sees no difference; they are not isomorphic."""

    def layered(pairs: list[tuple[int, int]]) -> Genotype:
        g = nx.DiGraph()
        g.add_node(0, op="input")
        g.add_node(9, op="output")
        for i in range(1, 5):
            g.add_node(i, op="conv3", channels=8)
            g.add_node(i + 4, op="skip")
            g.add_edges_from([(0, i), (i + 4, 9)])
        g.add_edges_from((a, b + 4) for a, b in pairs)
        return Genotype(g)

    one_cycle = layered([(1, 1), (1, 2), (2, 2), (2, 3), (3, 3), (3, 4), (4, 4), (4, 1)])
    two_cycles = layered([(1, 1), (1, 2), (2, 1), (2, 2), (3, 3), (3, 4), (4, 3), (4, 4)])
    with warnings.catch_warnings():  # networkx 3.5+ warns that directed hashes changed
        warnings.simplefilter("ignore", UserWarning)
        wl = [nx.weisfeiler_lehman_graph_hash(g.graph, node_attr="op") for g in (one_cycle, two_cycles)]
    assert wl[0] == wl[1]
    assert one_cycle != two_cycles
    perm = {1: 3, 2: 4, 3: 1, 4: 2, 5: 8, 6: 7, 7: 6, 8: 5}
    assert Genotype(nx.relabel_nodes(two_cycles.graph, perm)) == two_cycles
    assert Genotype(nx.relabel_nodes(one_cycle.graph, {1: 2, 2: 3, 3: 4, 4: 1})) == one_cycle


def test_key_of_symmetric_genotypes_is_invariant_and_still_separates_them() -> None:
    """Eight identical two-vertex branches (8! leaves without automorphism pruning) and variants."""

    def branches(channels: list[int], cross: tuple[int, int] | None = None) -> Genotype:
        g = nx.DiGraph()
        g.add_nodes_from([(0, {"op": "input"}), (1, {"op": "output"})])
        for i, ch in enumerate(channels):
            a, b = 2 + 2 * i, 3 + 2 * i
            g.add_nodes_from([(a, {"op": "conv3", "channels": ch}), (b, {"op": "skip"})])
            g.add_edges_from([(0, a), (a, b), (b, 1)])
        if cross:
            g.add_edge(2 + 2 * cross[0], 3 + 2 * cross[1])
        return Genotype(g)

    g = branches([8] * 8)
    for seed in range(5):
        ids = list(g.graph)
        perm = ids[:]
        random.Random(seed).shuffle(perm)
        assert Genotype(nx.relabel_nodes(g.graph, dict(zip(ids, perm)))) == g
    assert branches([8] * 7 + [16]) != g and branches([8] * 7 + [16]) == branches([16] + [8] * 7)
    assert branches([8] * 8, cross=(0, 1)) == branches([8] * 8, cross=(5, 2)) != g
    assert branches([8] * 4 + [16] * 4, cross=(0, 1)) != branches([8] * 4 + [16] * 4, cross=(0, 7))
