"""Graph features of structural priors against hand-computed values."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from netbonsai.analysis.graph_features import FEATURES, feature_table, graph_features
from netbonsai.errors import InputError
from netbonsai.priors import layer_index, orient, sample_graphs


def test_feature_names_and_order():
    assert len(FEATURES) == 23 and len(set(FEATURES)) == 23
    assert FEATURES[:8] == (
        "layers", "nodes", "edges", "source_nodes", "sink_nodes",
        "diameter", "density", "average_shortest_path_length",
    )
    # the spellings of the paper's Table 1
    for stem in ("eccentricity", "degree", "closeness", "nodes_betweenness", "edge_betweenness"):
        assert f"{stem}_var" in FEATURES
    assert FEATURES[8:11] == ("eccentricity_mean", "eccentricity_var", "eccentricity_std")
    assert FEATURES[-3:] == ("edge_betweenness_mean", "edge_betweenness_var", "edge_betweenness_std")


def test_path_graph_p4():
    f = graph_features(nx.path_graph(4))
    assert list(f) == list(FEATURES)
    hand = {
        "layers": 4, "nodes": 4, "edges": 3, "source_nodes": 1, "sink_nodes": 1,
        "diameter": 3,
        "density": 3 / 12,  # directed: edges / (n (n - 1))
        "average_shortest_path_length": 10 / 6,
        # eccentricities 3, 2, 2, 3
        "eccentricity_mean": 2.5, "eccentricity_var": 0.25, "eccentricity_std": 0.5,
        # degree centralities 1/3, 2/3, 2/3, 1/3
        "degree_mean": 0.5, "degree_var": 1 / 36, "degree_std": 1 / 6,
        # closeness 3/6, 3/4, 3/4, 3/6
        "closeness_mean": 0.625, "closeness_var": 0.125**2, "closeness_std": 0.125,
        # inner nodes lie on 2 of the 3 normalising pairs
        "nodes_betweenness_mean": 1 / 3,
        "nodes_betweenness_var": 1 / 9,
        "nodes_betweenness_std": 1 / 3,
        # edge betweenness 3/6, 4/6, 3/6
        "edge_betweenness_mean": 5 / 9,
        "edge_betweenness_var": 1 / 162,
        "edge_betweenness_std": np.sqrt(1 / 162),
    }
    assert set(hand) == set(FEATURES)
    for name, value in hand.items():
        assert f[name] == pytest.approx(value, abs=1e-12), name


def test_star_graph_orientation_changes_sources_not_paths():
    # centre 0 -> leaves 1..4: one source, four sinks
    low = graph_features(nx.star_graph(4))
    assert (low["layers"], low["source_nodes"], low["sink_nodes"], low["edges"]) == (2, 1, 4, 4)
    assert low["diameter"] == 2 and low["density"] == pytest.approx(4 / 20)
    assert low["average_shortest_path_length"] == pytest.approx((4 * 1 + 6 * 2) / 10)
    assert low["nodes_betweenness_mean"] == pytest.approx(0.2)  # centre 1.0, leaves 0
    assert low["nodes_betweenness_var"] == pytest.approx(0.16)
    assert low["edge_betweenness_mean"] == pytest.approx(0.4)
    assert low["edge_betweenness_var"] == pytest.approx(0)
    assert low["eccentricity_mean"] == pytest.approx((1 + 4 * 2) / 5)
    # centre 4 <- leaves 0..3: four sources, one sink; undirected features unchanged
    high = graph_features(nx.relabel_nodes(nx.star_graph(4), {0: 4, 4: 0}))
    assert (high["source_nodes"], high["sink_nodes"]) == (4, 1)
    for name in FEATURES[5:]:
        assert high[name] == pytest.approx(low[name]), name


def test_directed_input_is_used_as_given():
    reversed_path = nx.DiGraph([(3, 2), (2, 1), (1, 0)])
    assert graph_features(reversed_path) == graph_features(nx.path_graph(4))
    two_sources = nx.DiGraph([(0, 2), (1, 2), (2, 3)])
    f = graph_features(two_sources)
    assert (f["layers"], f["source_nodes"], f["sink_nodes"]) == (3, 2, 1)


def test_layers_agree_with_layer_index_on_random_graphs():
    graphs = sample_graphs("watts-strogatz", 4, seed=1) + sample_graphs("barabasi-albert", 4, seed=1)
    table, names = feature_table(graphs)
    assert table.shape == (8, 23) and names == list(FEATURES)
    assert np.isfinite(table).all()
    for row, graph in zip(table, graphs):
        assert row[0] == max(layer_index(orient(graph)).values()) + 1
        assert row[1] == graph.number_of_nodes() and row[2] == graph.number_of_edges()
        assert row[FEATURES.index("density")] == pytest.approx(nx.density(graph) / 2)


def test_bad_graphs_raise():
    disconnected = nx.Graph([(0, 1), (2, 3)])
    with pytest.raises(InputError, match="connected"):
        graph_features(disconnected)
    with pytest.raises(InputError, match="cycle"):
        graph_features(nx.DiGraph([(0, 1), (1, 0)]))
    with pytest.raises(InputError, match="two vertices"):
        graph_features(nx.empty_graph(1))
    assert feature_table([])[0].shape == (0, 23)
