"""Tests of the genotype predictor features on hand-built DAGs (paper 001, section 4.4)."""

from __future__ import annotations

import math
import random
from types import SimpleNamespace

import networkx as nx
import numpy as np
import pytest

from netbonsai.search.features import (
    FEATURE_NAMES,
    GROUPS,
    PATH_KINDS,
    baseline_features,
    feature_matrix,
    genotype_features,
    vertex_channels,
)

OPS = ("conv3", "conv5", "conv7", "maxpool", "avgpool", "sum", "concat", "skip")


def dag(nodes: dict[int, dict], edges: list[tuple[int, int]]) -> nx.DiGraph:
    g = nx.DiGraph()
    for v, attrs in nodes.items():
        g.add_node(v, **attrs)
    g.add_edges_from(edges)
    return g


def chain() -> nx.DiGraph:
    """input(0) -> conv3(8) -> maxpool -> conv5(16) -> output(4)."""
    return dag(
        {0: {"op": "input"}, 1: {"op": "conv3", "channels": 8}, 2: {"op": "maxpool"},
         3: {"op": "conv5", "channels": 16}, 4: {"op": "output"}},
        [(0, 1), (1, 2), (2, 3), (3, 4)],
    )


def diamond() -> nx.DiGraph:
    """input(0) -> conv3(8)(1) -> sum(2) -> output(3), plus the skip edge input -> sum."""
    return dag(
        {0: {"op": "input"}, 1: {"op": "conv3", "channels": 8}, 2: {"op": "sum"}, 3: {"op": "output"}},
        [(0, 1), (1, 2), (0, 2), (2, 3)],
    )


def random_dag(rng: random.Random) -> nx.DiGraph:
    """A chain of random operations with random forward skip edges."""
    k = rng.randint(1, 15)
    g = nx.DiGraph()
    g.add_node(0, op="input")
    for i in range(1, k + 1):
        op = rng.choice(OPS)
        g.add_node(i, op=op, **({"channels": rng.choice([4, 8, 16, 32])} if op.startswith("conv") else {}))
    g.add_node(k + 1, op="output")
    for i in range(k + 1):
        g.add_edge(i, i + 1)
    for _ in range(rng.randint(0, 2 * k)):
        a, b = sorted(rng.sample(range(k + 2), 2))
        g.add_edge(a, b)
    return g


def relabelled(g: nx.DiGraph, rng: random.Random) -> nx.DiGraph:
    """The same graph with new integer ids, inserted in a shuffled order."""
    ids = rng.sample(range(1000, 5000), g.number_of_nodes())
    mapping = dict(zip(g.nodes, ids))
    nodes = list(g.nodes(data=True))
    edges = list(g.edges)
    rng.shuffle(nodes)
    rng.shuffle(edges)
    h = nx.DiGraph()
    for v, attrs in nodes:
        h.add_node(mapping[v], **attrs)
    h.add_edges_from((mapping[a], mapping[b]) for a, b in edges)
    return h


def test_feature_names_unique_and_count() -> None:
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES) == 56
    assert sum(n.split("_")[0] in PATH_KINDS for n in FEATURE_NAMES) == 36


def test_chain_channels_masses_and_depth() -> None:
    g = chain()
    assert vertex_channels(g) == {0: 1, 1: 8, 2: 8, 3: 16, 4: 16}
    assert vertex_channels(g, in_channels=3)[0] == 3
    f = genotype_features(g)
    masses = [8 * 1, 8 * 8, 16 * 8]  # conv3, maxpool, conv5
    assert f["layer_mass_mean"] == pytest.approx(np.mean(masses))
    assert f["layer_mass_std"] == pytest.approx(np.std(masses))
    assert f["depth"] == 3.0
    assert f["nodes"] == 5.0 and f["edges"] == 4.0
    counts = {name: f[name] for name in FEATURE_NAMES if name.startswith("count_")}
    assert counts == {"count_conv": 2.0, "count_pool": 1.0, "count_sum": 0.0, "count_concat": 0.0, "count_skip": 0.0}
    assert genotype_features(diamond())["count_sum"] == 1.0 and genotype_features(diamond())["count_conv"] == 1.0


def test_chain_path_lengths_all_four_and_absent_groups_zero() -> None:
    f = genotype_features(chain())
    for kind in PATH_KINDS:
        for group in ("conv", "pool", "any"):
            assert f[f"{kind}_{group}_mean"] == pytest.approx(4.0)
            assert f[f"{kind}_{group}_std"] == pytest.approx(0.0)
        for group in ("sum", "concat", "skip"):
            assert f[f"{kind}_{group}_mean"] == 0.0
            assert f[f"{kind}_{group}_std"] == 0.0


def test_chain_graph_properties_of_a_path_of_five() -> None:
    f = genotype_features(chain())
    assert f["degree_mean"] == pytest.approx(1.6)
    assert f["degree_std"] == pytest.approx(math.sqrt(0.24))
    assert f["eccentricity_mean"] == pytest.approx(3.2)
    assert f["eccentricity_std"] == pytest.approx(math.sqrt(0.56))
    assert f["edge_betweenness_mean"] == pytest.approx(0.5)  # 0.4, 0.6, 0.6, 0.4
    assert f["edge_betweenness_std"] == pytest.approx(0.1)
    closeness = [0.4, 4 / 7, 4 / 6, 4 / 7, 0.4]
    assert f["closeness_mean"] == pytest.approx(np.mean(closeness))
    assert f["closeness_std"] == pytest.approx(np.std(closeness))
    assert f["avg_neighbor_degree_mean"] == pytest.approx(1.8)  # 2, 1.5, 2, 1.5, 2
    assert f["avg_neighbor_degree_std"] == pytest.approx(math.sqrt(0.06))


def test_diamond_paths_and_walks_by_hand() -> None:
    f = genotype_features(diamond())
    # conv3: only input -> conv3 -> sum -> output, 3 edges.
    assert f["shortest_conv_mean"] == 3.0 and f["longest_conv_mean"] == 3.0
    # sum: shortest input -> sum -> output (2), longest through conv3 (3).
    assert f["shortest_sum_mean"] == 2.0 and f["longest_sum_mean"] == 3.0
    # Forward to output: F(sum) = 1, F(conv3) = 2. Backward to input: B(conv3) = 1,
    # B(sum) = 1 + (B(conv3) + B(input)) / 2 = 1.5. walk(conv3) = 3, walk(sum) = 2.5.
    assert f["walk_conv_mean"] == pytest.approx(3.0)
    assert f["walk_sum_mean"] == pytest.approx(2.5)
    assert f["walk_sum_std"] == 0.0
    assert f["shortest_any_mean"] == pytest.approx(2.5) and f["shortest_any_std"] == pytest.approx(0.5)
    assert f["longest_any_mean"] == pytest.approx(3.0) and f["longest_any_std"] == pytest.approx(0.0)
    assert f["walk_any_mean"] == pytest.approx(2.75) and f["walk_any_std"] == pytest.approx(0.25)
    assert f["depth"] == 2.0
    # Channels: sum = max(8, 1) = 8; masses conv3 = 8 * 1, sum = 8 * (8 + 1).
    assert vertex_channels(diamond())[2] == 8
    assert f["layer_mass_mean"] == pytest.approx(40.0) and f["layer_mass_std"] == pytest.approx(32.0)


def test_walk_differs_from_paths_on_uneven_branches() -> None:
    # input(0) -> skip(1) -> output(4), input -> conv3(2) -> conv3(3) -> output, and skip -> conv3(3).
    g = dag(
        {0: {"op": "input"}, 1: {"op": "skip"}, 2: {"op": "conv3", "channels": 4},
         3: {"op": "conv3", "channels": 4}, 4: {"op": "output"}},
        [(0, 1), (1, 4), (0, 2), (2, 3), (3, 4), (1, 3)],
    )
    f = genotype_features(g)
    # skip(1): F = 1 + (F(out) + F(3)) / 2 = 1 + (0 + 1) / 2 = 1.5; B = 1 -> 2.5.
    assert f["walk_skip_mean"] == pytest.approx(2.5)
    assert f["shortest_skip_mean"] == 2.0 and f["longest_skip_mean"] == 3.0
    # conv3(3): F = 1, B = 1 + (B(2) + B(1)) / 2 = 2 -> 3; conv3(2): F = 2, B = 1 -> 3.
    assert f["walk_conv_mean"] == pytest.approx(3.0)
    assert f["depth"] == 2.0


def test_concat_sums_channels_and_sum_takes_max() -> None:
    nodes = {0: {"op": "input"}, 1: {"op": "conv3", "channels": 8}, 2: {"op": "conv5", "channels": 16},
             3: {"op": "concat"}, 4: {"op": "output"}}
    edges = [(0, 1), (0, 2), (1, 3), (2, 3), (3, 4)]
    cat = dag(nodes, edges)
    assert vertex_channels(cat)[3] == 24 and vertex_channels(cat)[4] == 24
    f = genotype_features(cat)
    masses = [8 * 1, 16 * 1, 24 * (8 + 16)]
    assert f["layer_mass_mean"] == pytest.approx(np.mean(masses))
    nodes[3] = {"op": "sum"}
    assert vertex_channels(dag(nodes, edges))[3] == 16
    nodes[3] = {"op": "avgpool"}
    assert vertex_channels(dag(nodes, edges))[3] == 16


def test_baseline_features() -> None:
    b = baseline_features(chain())
    assert b == {"params_proxy": float(9 * 1 * 8 + 25 * 8 * 16), "depth": 3.0}
    assert baseline_features(chain(), in_channels=3)["params_proxy"] == float(9 * 3 * 8 + 25 * 8 * 16)


def test_random_dags_finite_matrix_shape_and_relabel_invariance() -> None:
    rng = random.Random(0)
    graphs = [random_dag(rng) for _ in range(20)]
    m = feature_matrix(graphs, in_channels=3)
    assert m.shape == (20, len(FEATURE_NAMES)) and m.dtype == np.float64
    assert np.isfinite(m).all()
    assert feature_matrix([]).shape == (0, len(FEATURE_NAMES))
    for g, row in zip(graphs, m):
        f = genotype_features(relabelled(g, rng), in_channels=3)
        assert [f[n] for n in FEATURE_NAMES] == pytest.approx(list(row), rel=1e-12, abs=1e-12)
        und = g.to_undirected()
        assert row[FEATURE_NAMES.index("closeness_mean")] == pytest.approx(
            np.mean(list(nx.closeness_centrality(und).values())))
        assert row[FEATURE_NAMES.index("depth")] == nx.dag_longest_path_length(g) - 1
        for kind in PATH_KINDS:  # "any" is the vertex-count-weighted mix of the other groups
            any_mean = row[FEATURE_NAMES.index(f"{kind}_any_mean")]
            counts = {gr: sum(g.nodes[v]["op"] in ops for v in g) for gr, ops in GROUPS.items()}
            mix = sum(counts[gr] * row[FEATURE_NAMES.index(f"{kind}_{gr}_mean")]
                      for gr in GROUPS if gr != "any")
            assert any_mean * counts["any"] == pytest.approx(mix)


def test_relabelled_hand_graph_identical() -> None:
    g = diamond()
    h = nx.relabel_nodes(g, {0: 7, 1: 3, 2: 11, 3: 5})
    assert genotype_features(h) == genotype_features(g)


def test_genotype_like_object_accepted() -> None:
    g = chain()
    assert genotype_features(SimpleNamespace(graph=g)) == genotype_features(g)
    assert vertex_channels(SimpleNamespace(graph=g)) == vertex_channels(g)


@pytest.mark.parametrize("case", ["cycle", "two_inputs", "dead_end", "bad_op", "no_channels"])
def test_invalid_graphs_raise(case: str) -> None:
    g = chain()
    if case == "cycle":
        g.add_edge(3, 1)
    elif case == "two_inputs":
        g.add_node(9, op="input")
        g.add_edge(9, 2)
    elif case == "dead_end":
        g.add_node(9, op="skip")
        g.add_edge(1, 9)
    elif case == "bad_op":
        g.nodes[2]["op"] = "conv9"
    else:
        del g.nodes[1]["channels"]
    with pytest.raises(ValueError):
        genotype_features(g)
