"""Random-graph priors: generators with the authors' parameters, orientation, layers, embeddings."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import torch

from netbonsai.errors import InputError
from netbonsai.priors import (
    describe,
    layer_index,
    orient,
    random_graph,
    sample_graphs,
    to_dagnet,
    to_structure,
    vertex_units,
)


# ---------------------------------------------------------------------- generators
@pytest.mark.parametrize("n", [10, 13, 27, 50])
def test_watts_strogatz_uses_authors_parameters(n):
    graph = random_graph("watts-strogatz", n, seed=3)
    k = n // 5
    assert sorted(graph.nodes) == list(range(n))
    assert nx.is_connected(graph)
    assert graph.number_of_edges() == n * (k // 2)  # a ring lattice of k neighbours, rewired
    assert graph.graph["family"] == "watts-strogatz" and graph.graph["seed"] == 3
    reference = nx.connected_watts_strogatz_graph(n, k=k, p=1.0, seed=3)
    assert set(graph.edges) == set(reference.edges)


@pytest.mark.parametrize("n", [10, 19, 20, 50])
def test_barabasi_albert_uses_authors_parameters(n):
    graph = random_graph("barabasi-albert", n, seed=5)
    m = n // 10
    assert graph.number_of_nodes() == n
    assert graph.number_of_edges() == m * (n - m)
    assert sum(d for _, d in graph.degree) == 2 * m * (n - m)
    assert set(graph.edges) == set(nx.barabasi_albert_graph(n, m=m, seed=5).edges)


@pytest.mark.parametrize("family", ["watts-strogatz", "barabasi-albert"])
def test_generators_reproduce_with_a_seed(family):
    assert set(random_graph(family, 30, 7).edges) == set(random_graph(family, 30, 7).edges)
    assert set(random_graph(family, 30, 7).edges) != set(random_graph(family, 30, 8).edges)


def test_random_graph_rejects_bad_arguments():
    with pytest.raises(InputError, match="k = n // 5"):
        random_graph("watts-strogatz", 9, 0)
    with pytest.raises(InputError, match="m = n // 10"):
        random_graph("barabasi-albert", 9, 0)
    with pytest.raises(InputError, match="unknown graph family"):
        random_graph("erdos-renyi", 20, 0)
    with pytest.raises(InputError):
        random_graph("barabasi-albert", 20.0, 0)


def test_sample_graphs_draws_n_from_the_inclusive_range_reproducibly():
    graphs = sample_graphs("barabasi-albert", 40, n_range=(10, 12), seed=1)
    sizes = [g.number_of_nodes() for g in graphs]
    assert set(sizes) == {10, 11, 12}
    again = sample_graphs("barabasi-albert", 40, n_range=(10, 12), seed=1)
    assert [set(g.edges) for g in graphs] == [set(g.edges) for g in again]
    prefix = sample_graphs("barabasi-albert", 5, n_range=(10, 12), seed=1)
    assert [set(g.edges) for g in prefix] == [set(g.edges) for g in graphs[:5]]
    other = sample_graphs("barabasi-albert", 40, n_range=(10, 12), seed=2)
    assert [set(g.edges) for g in other] != [set(g.edges) for g in graphs]
    default = sample_graphs("watts-strogatz", 20, seed=0)
    assert all(10 <= g.number_of_nodes() <= 50 for g in default)
    with pytest.raises(InputError):
        sample_graphs("watts-strogatz", 3, n_range=(5, 20))
    with pytest.raises(InputError):
        sample_graphs("watts-strogatz", 3, n_range=(30, 20))


# ---------------------------------------------------------------------- orientation and layers
def test_orient_points_edges_from_low_to_high_id():
    graph = random_graph("watts-strogatz", 25, 2)
    dag = orient(graph)
    assert nx.is_directed_acyclic_graph(dag)
    assert all(u < v for u, v in dag.edges)
    assert {frozenset(e) for e in dag.edges} == {frozenset(e) for e in graph.edges}
    assert dag.graph["family"] == "watts-strogatz"
    # a directed input is re-oriented, isolated vertices kept
    messy = nx.DiGraph([(3, 1), (1, 2)])
    messy.add_node(9)
    assert sorted(orient(messy).edges) == [(1, 2), (1, 3)] and 9 in orient(messy)
    with pytest.raises(InputError, match="self-loop"):
        orient(nx.Graph([(1, 1)]))


# Hand-made DAG: 0 -> 1 -> 2, 0 -> 2 (skip over layer 1), 3 -> 2, 1 -> 4.
# Layers: 0 and 3 in layer 0, 1 in layer 1, 2 and 4 in layer 2. Sources {0, 3}, sinks {2, 4}.
HAND = nx.DiGraph([(0, 1), (1, 2), (0, 2), (3, 2), (1, 4)])


def test_layer_index_on_a_hand_made_dag():
    assert layer_index(HAND) == {0: 0, 1: 1, 2: 2, 3: 0, 4: 2}
    chain = nx.DiGraph([(0, 1), (1, 2), (2, 3), (0, 3)])
    assert layer_index(chain) == {0: 0, 1: 1, 2: 2, 3: 3}
    # an undirected graph is oriented first: 2-0 becomes 0 -> 2
    assert layer_index(nx.Graph([(2, 0), (2, 1)])) == {0: 0, 1: 0, 2: 1}
    with pytest.raises(InputError, match="cycle"):
        layer_index(nx.DiGraph([(0, 1), (1, 0)]))


def test_describe_summarises_the_dag():
    assert describe(HAND) == {
        "nodes": 5, "edges": 5, "layers": 3, "sources": 2, "sinks": 2, "widths": [2, 1, 2]
    }
    summary = describe(orient(random_graph("barabasi-albert", 20, 1)))
    assert summary["family"] == "barabasi-albert" and summary["n"] == 20 and summary["seed"] == 1


# ---------------------------------------------------------------------- LayeredStructure
def test_to_structure_on_a_hand_made_dag():
    s = to_structure(HAND, input_size=2)
    # unit order: layer 0 = [v0, v3], layer 1 = [v1], layer 2 = [v2, v4]
    assert s.widths == (2, 1, 2)
    assert vertex_units(HAND) == {0: (0, range(0, 1)), 3: (0, range(1, 2)), 1: (1, range(2, 3)),
                                  2: (2, range(3, 4)), 4: (2, range(4, 5))}
    np.testing.assert_array_equal(s.in_masks[0], [[True, True], [True, True]])
    # columns: in0, in1, v0, v3
    np.testing.assert_array_equal(s.in_masks[1], [[False, False, True, False]])
    # columns: in0, in1, v0, v3, v1 -- v2 reads v0 (skip), v3 and v1; v4 reads v1
    np.testing.assert_array_equal(
        s.in_masks[2], [[False, False, True, True, True], [False, False, False, False, True]]
    )
    np.testing.assert_array_equal(s.out_mask, [False, False, False, True, True])
    assert s.num_connections == 2 * 2 + 5  # input_size * sources + edges


def test_to_structure_with_several_units_per_vertex():
    upv = 3
    s = to_structure(HAND, input_size=4, units_per_vertex=upv)
    assert s.widths == (6, 3, 6)
    assert s.num_connections == upv * 4 * 2 + upv**2 * 5
    # layer 2 columns: inputs 0..3, v0 4..6, v3 7..9, v1 10..12; rows: v2 0..2, v4 3..5
    block = s.in_masks[2]
    assert block[:3, 4:7].all() and block[:3, 7:10].all() and block[:3, 10:13].all()
    assert not block[3:, 4:10].any() and block[3:, 10:13].all()
    assert not block[:, :4].any()
    np.testing.assert_array_equal(s.out_mask, [False] * 9 + [True] * 6)


@pytest.mark.parametrize("family", ["watts-strogatz", "barabasi-albert"])
def test_to_structure_counts_on_random_graphs(family):
    for graph in sample_graphs(family, 5, seed=4):
        dag = orient(graph)
        info = describe(dag)
        s = to_structure(graph, input_size=7, units_per_vertex=2)  # undirected: oriented inside
        assert s.num_layers == info["layers"]
        assert list(s.widths) == [2 * w for w in info["widths"]]
        assert s.num_connections == 2 * 7 * info["sources"] + 4 * info["edges"]
        assert int(s.out_mask.sum()) == 2 * info["sinks"]
        assert not any(m[:, :7].any() for m in s.in_masks[1:])  # only layer 0 reads the input


def test_to_structure_rejects_bad_input():
    with pytest.raises(InputError):
        to_structure(HAND, input_size=0)
    with pytest.raises(InputError):
        to_structure(HAND, input_size=2, units_per_vertex=0)
    with pytest.raises(InputError, match="no vertices"):
        to_structure(nx.DiGraph(), input_size=2)


# ---------------------------------------------------------------------- DagNet
# 0 -> 1 -> 3, 0 -> 3 (skip), 0 -> 2; sources {0}, sinks {2, 3}.
SMALL = nx.DiGraph([(0, 1), (1, 3), (0, 3), (0, 2)])


def test_to_dagnet_computes_the_hand_forward():
    net = to_dagnet(SMALL, n_inputs=2, n_outputs=2, activation="tanh", seed=3)
    # node order: in0, in1, v0, v1, v2, v3, out0, out1
    assert net.n_in == 2 and net.n_out == 2 and net.n_nodes == 8
    expected = {(0, 2), (1, 2), (2, 3), (2, 4), (3, 5), (2, 5), (4, 6), (5, 6), (4, 7), (5, 7)}
    src, dst, _ = net.edges()
    assert set(zip(src.tolist(), dst.tolist())) == expected
    assert len(expected) == 2 * 1 + 4 + 2 * 2
    assert net.activations == ("identity",) * 2 + ("tanh",) * 4 + ("identity",) * 2
    w = net.weight.detach()[0].double().numpy()
    b = net.bias.detach()[0].double().numpy()
    x = np.random.default_rng(0).normal(size=(5, 2))
    v0 = np.tanh(x[:, 0] * w[0, 2] + x[:, 1] * w[1, 2] + b[2])
    v1 = np.tanh(v0 * w[2, 3] + b[3])
    v2 = np.tanh(v0 * w[2, 4] + b[4])
    v3 = np.tanh(v1 * w[3, 5] + v0 * w[2, 5] + b[5])
    out = np.stack([v2 * w[4, j] + v3 * w[5, j] + b[j] for j in (6, 7)], axis=1)
    got = net(torch.as_tensor(x, dtype=torch.get_default_dtype())).detach().double().numpy()
    np.testing.assert_allclose(got, out, rtol=1e-5, atol=1e-6)
    # small weights within the fan-in bound, reproducible from the seed
    assert np.all(np.abs(w[0:2, 2]) <= 1 / np.sqrt(2)) and abs(w[2, 3]) <= 1.0
    again = to_dagnet(SMALL, 2, 2, seed=3)
    assert torch.equal(again.weight, net.weight) and torch.equal(again.bias, net.bias)
    assert not torch.equal(to_dagnet(SMALL, 2, 2, seed=4).weight, net.weight)
    assert net.info["prior"]["sinks"] == 2


@pytest.mark.parametrize("family", ["watts-strogatz", "barabasi-albert"])
def test_to_dagnet_live_synapses_on_random_graphs(family):
    for graph in sample_graphs(family, 3, seed=9):
        info = describe(graph)
        net = to_dagnet(graph, n_inputs=3, n_outputs=2, activation="relu")
        assert int(net.mask.sum()) == 3 * info["sources"] + info["edges"] + 2 * info["sinks"]
        assert net.n_hidden == info["nodes"]
        assert net(torch.zeros(4, 3)).shape == (4, 2)


def test_to_dagnet_isolated_vertex_reads_inputs_and_feeds_outputs():
    dag = nx.DiGraph([(0, 1)])
    dag.add_node(2)
    net = to_dagnet(dag, 1, 1, activation="identity")
    assert int(net.mask.sum()) == 1 * 2 + 1 + 2 * 1
    with pytest.raises(InputError):
        to_dagnet(dag, 1, 1, activation="sigmoidish")
    with pytest.raises(InputError):
        to_dagnet(dag, 0, 1)
