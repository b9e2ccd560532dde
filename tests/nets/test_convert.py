"""Conversions: nn.Sequential, networkx and the standalone DagModule."""

from __future__ import annotations

import networkx as nx
import pytest
import torch
from torch import nn

from netbonsai.errors import InputError
from netbonsai.nets import DagModule, DagNet, from_networkx, from_sequential, to_module, to_networkx
from netbonsai.nets.convert import to_sequential

from .helpers import inputs, mlp, normalize, pruned


def _trained(model: nn.Module, steps: int = 5) -> nn.Module:
    """A few Adam steps on random data, so the weights are not just the initialisation."""
    torch.manual_seed(0)
    x = torch.randn(64, 4)
    y = torch.randn(64, model[-1].out_features if isinstance(model[-1], nn.Linear) else 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
    return model


def test_from_sequential_is_exact() -> None:
    torch.manual_seed(3)
    seq = _trained(nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 5), nn.Tanh(), nn.Linear(5, 1)))
    net = from_sequential(seq)
    assert (net.n_in, net.n_hidden, net.n_out, net.n_nodes) == (4, 10, 1, 15)
    assert net.num_params_per_variant().tolist() == [61]
    assert net.activations == ("identity",) * 4 + ("tanh",) * 10 + ("identity",)
    assert net.levels().tolist() == [0] * 4 + [1] * 5 + [2] * 5 + [3]
    # weight[0, i, j] = linear.weight[j_local, i_local]
    assert float(net.weight.detach()[0, 1, 6]) == float(seq[0].weight.detach()[2, 1])
    assert float(net.weight.detach()[0, 12, 14]) == float(seq[4].weight.detach()[0, 3])
    assert float(net.bias.detach()[0, 10]) == float(seq[2].bias.detach()[1])
    x = inputs(n=100)
    with torch.no_grad():
        expected = seq(x)
    torch.testing.assert_close(net(x), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "module,name", [(nn.ReLU(), "relu"), (nn.Sigmoid(), "sigmoid"), (nn.Softplus(), "softplus")]
)
def test_from_sequential_output_activation(module: nn.Module, name: str) -> None:
    torch.manual_seed(4)
    seq = nn.Sequential(nn.Linear(4, 6), nn.ELU(), nn.Linear(6, 3), module)
    net = from_sequential(seq)
    assert net.activations[-3:] == (name,) * 3
    assert net.activations[4:10] == ("elu",) * 6
    x = inputs(n=200) * 2
    with torch.no_grad():
        expected = seq(x)
    torch.testing.assert_close(net(x), expected, atol=1e-6, rtol=0)


def test_from_sequential_linear_without_activation_or_bias() -> None:
    torch.manual_seed(5)
    seq = nn.Sequential(nn.Linear(4, 3, bias=False), nn.Linear(3, 2), nn.Identity())
    net = from_sequential(seq)
    assert net.activations == ("identity",) * 9
    with torch.no_grad():
        expected = seq(inputs())
    torch.testing.assert_close(net(inputs()), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "modules,match",
    [
        ([nn.Linear(4, 5), nn.Dropout(0.1), nn.Linear(5, 1)], "Dropout"),
        ([nn.Conv1d(1, 1, 3), nn.Linear(5, 1)], "Conv1d"),
        ([nn.Linear(4, 5), nn.Tanh(), nn.ReLU(), nn.Linear(5, 1)], "second activation"),
        ([nn.Linear(4, 5), nn.Tanh(), nn.Linear(6, 1)], "takes 6 features"),
        ([nn.Tanh(), nn.Linear(4, 1)], "before the first Linear"),
        ([nn.Linear(4, 5), nn.LeakyReLU(), nn.Linear(5, 1)], "LeakyReLU"),
        ([nn.Linear(4, 5), nn.ELU(alpha=0.5), nn.Linear(5, 1)], "alpha"),
        ([], "no nn.Linear"),
    ],
)
def test_from_sequential_rejects_unsupported(modules: list[nn.Module], match: str) -> None:
    with pytest.raises(InputError, match=match):
        from_sequential(nn.Sequential(*modules))


def test_to_sequential_round_trip() -> None:
    net = normalize(mlp())
    seq = to_sequential(net)
    assert [type(m) for m in seq] == [nn.Linear, nn.Tanh, nn.Linear, nn.Tanh, nn.Linear]
    x = inputs()
    with torch.no_grad():
        torch.testing.assert_close(seq(x), net(x), atol=1e-5, rtol=0)
    back = from_sequential(seq)
    torch.testing.assert_close(back(x), net(x), atol=1e-5, rtol=0)
    skip = net.insert_neuron(9, sources=[0], targets=[14], activation="tanh")  # 0 -> new -> output
    with pytest.raises(InputError, match="layered"):
        to_sequential(skip)


def test_networkx_attributes() -> None:
    net = pruned()
    graph = to_networkx(net)
    assert graph.number_of_nodes() == net.n_nodes
    assert graph.number_of_edges() == int(net.mask.sum())
    assert graph.graph["n_in"] == 4 and graph.graph["n_out"] == 1
    assert graph.graph["in_scale"] == net.in_scale.tolist()
    assert graph.graph["out_shift"] == net.out_shift.tolist()
    node = graph.nodes[12]
    assert node["role"] == "hidden" and node["activation"] == "softplus" and node["level"] == 2
    assert node["bias"] == float(net.bias.detach()[0, 12])
    assert graph.edges[5, 9]["weight"] == float(net.weight.detach()[0, 5, 9])
    assert not graph.has_edge(1, 6) and not graph.has_edge(0, 4)  # removed synapses are absent
    assert nx.is_directed_acyclic_graph(graph)


def test_networkx_round_trip_is_exact() -> None:
    net = pruned().insert_neuron(9, sources=[5, 6], targets=[10, 14], activation="sigmoid")
    with torch.no_grad():
        net.weight[0, 5, 9] = 0.25
        net.weight[0, 9, 15] = -1.5
    net.info = {"task": "demo"}
    back = from_networkx(to_networkx(net))
    assert torch.equal(back.weight, net.weight)
    assert torch.equal(back.mask, net.mask)
    assert torch.equal(back.bias, net.bias)
    for name in ("in_shift", "in_scale", "out_shift", "out_scale"):
        assert torch.equal(getattr(back, name), getattr(net, name))
    assert back.activations == net.activations and back.roles == net.roles
    assert back.num_params_per_variant().tolist() == net.num_params_per_variant().tolist()
    assert back.info == {"task": "demo"}
    x = inputs()
    assert torch.equal(back(x), net(x))


def test_from_networkx_orders_nodes_topologically() -> None:
    # hidden nodes listed against their dependency order, outputs before hidden nodes
    graph = nx.DiGraph()
    graph.add_node("y", role="output", activation="identity", bias=0.5)
    graph.add_node("h2", role="hidden", activation="tanh", bias=0.1)
    graph.add_node("x", role="input", activation="identity", bias=0.0)
    graph.add_node("h1", role="hidden", activation="relu", bias=-0.2)
    graph.add_weighted_edges_from([("x", "h1", 2.0), ("h1", "h2", -1.0), ("h2", "y", 3.0), ("x", "y", 0.5)])
    net = from_networkx(graph)
    assert net.activations == ("identity", "relu", "tanh", "identity")
    assert net.n_in == 1 and net.n_out == 1
    x = torch.linspace(-2, 2, 9)[:, None]
    expected = 3.0 * torch.tanh(-torch.relu(2 * x - 0.2) + 0.1) + 0.5 * x + 0.5
    torch.testing.assert_close(net(x), expected, atol=1e-6, rtol=0)


def _small_graph() -> nx.DiGraph:
    return to_networkx(DagNet.mlp([2, 2, 1], generator=torch.Generator().manual_seed(0)))


def test_from_networkx_rejects_bad_graphs() -> None:
    cyclic = _small_graph()
    cyclic.add_edge(3, 2, weight=1.0)
    cyclic.add_edge(2, 3, weight=1.0)
    with pytest.raises(InputError, match="cycle"):
        from_networkx(cyclic)
    for attr in ("role", "activation", "bias"):
        graph = _small_graph()
        del graph.nodes[3][attr]
        with pytest.raises(InputError, match=attr):
            from_networkx(graph)
    graph = _small_graph()
    del graph.edges[0, 2]["weight"]
    with pytest.raises(InputError, match="weight"):
        from_networkx(graph)
    graph = _small_graph()
    graph.add_node("z", role="hidden", activation="tanh", bias=0.0)
    graph.add_edge("z", 1, weight=1.0)  # into an input
    with pytest.raises(InputError, match="input"):
        from_networkx(graph)
    graph = _small_graph()
    graph.nodes[3]["activation"] = "gelu"
    with pytest.raises(InputError, match="gelu"):
        from_networkx(graph)
    graph = _small_graph()
    graph.graph["n_out"] = 2
    with pytest.raises(InputError, match="n_out"):
        from_networkx(graph)


def _module_params(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach() for p in module.parameters()]


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_to_module_matches_pruned_normalized_net() -> None:
    net = pruned()
    module = to_module(net)
    assert isinstance(module, DagModule)
    x = inputs(n=100) * 2
    with torch.no_grad():
        out = module(x)
    assert out.shape == (100, 1)
    torch.testing.assert_close(out, net(x), atol=1e-5, rtol=0)
    params = _module_params(module)
    stored = sum(p.numel() for p in params)
    nonzero = sum(int((p != 0).sum()) for p in params)
    assert module.n_params == 42
    assert stored >= 42  # dense blocks hold every synapse of the compacted net, and more
    assert nonzero <= 42  # only live synapses and biases of kept nodes are non-zero
    assert not any(isinstance(b, torch.Tensor) and b.is_floating_point() for b in module.buffers())
    scripted = torch.jit.script(module)
    torch.testing.assert_close(scripted(x), out, atol=1e-6, rtol=0)
    with pytest.raises(InputError):
        to_module(mlp(population=2))


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_to_module_with_outputs_on_different_levels() -> None:
    # output 3 reads the input directly (level 1), output 4 reads the hidden node and output 3
    n = 5
    mask = torch.zeros(n, n, dtype=torch.bool)
    for s, t in [(0, 2), (1, 2), (0, 3), (1, 3), (2, 4), (3, 4)]:
        mask[s, t] = True
    g = torch.Generator().manual_seed(1)
    net = DagNet(2, 2, torch.randn(n, n, generator=g), mask, torch.randn(n, generator=g),
                 ["identity", "identity", "sigmoid", "identity", "identity"])
    normalize(net)
    module = to_module(net)
    assert not module.outputs_last
    x = inputs(n_in=2)
    with torch.no_grad():
        torch.testing.assert_close(module(x), net(x), atol=1e-5, rtol=0)
        torch.testing.assert_close(torch.jit.script(module)(x), net(x), atol=1e-5, rtol=0)
