"""DagNet: parameter counting, population semantics, structural edits, normalization, training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from netbonsai.errors import InputError
from netbonsai.nets import DagNet
from netbonsai.train import Budget, TrainerConfig, fit

from .helpers import inputs, mlp, normalize, pruned, remove


def test_dense_mlp_counts_61_params() -> None:
    assert mlp().num_params() == 61 and isinstance(mlp().num_params(), int)
    assert mlp().num_params_per_variant().tolist() == [61]
    assert mlp(population=3).num_params_per_variant().tolist() == [61, 61, 61]
    with pytest.raises(ValueError, match="num_params_per_variant"):
        mlp(population=3).num_params()
    assert DagNet.mlp([2, 1]).num_params_per_variant().tolist() == [3]


def test_mlp_with_skip_adds_one_synapse_per_input_output_pair_and_keeps_the_layers() -> None:
    """skip: a linear input -> output part beside the layers; the layers' draws are unchanged."""
    plain = DagNet.mlp([4, 5, 5, 1], generator=torch.Generator().manual_seed(0))
    skipped = DagNet.mlp([4, 5, 5, 1], generator=torch.Generator().manual_seed(0), skip=True)
    assert skipped.num_params_per_variant().tolist() == [61 + 4]
    assert skipped.mask[0, :4, -1].all() and (skipped.weight[0, :4, -1] != 0).all()
    layers = plain.mask[0]
    assert torch.equal(skipped.weight[0][layers], plain.weight[0][layers])
    assert torch.equal(skipped.bias, plain.bias)
    # the output is the layered network's plus a linear function of the inputs
    x = inputs()
    linear = x @ skipped.weight[0, :4, -1:]
    torch.testing.assert_close(skipped(x), plain(x) + linear, atol=1e-6, rtol=0)
    assert DagNet.mlp([3, 2], skip=True).num_params() == 8  # already linear: no extra synapse


def test_mlp_variants_are_independent_draws() -> None:
    net = mlp(population=3)
    x = inputs()
    out = net.population(x)
    assert out.shape == (3, 32, 1)
    for a, b in [(0, 1), (0, 2), (1, 2)]:
        assert not torch.equal(net.weight[a], net.weight[b])
        assert (out[a] - out[b]).abs().max() > 1e-3
    # same seed, same network
    assert torch.equal(mlp(population=3).weight, net.weight)


def test_population_forward_equals_each_variant_alone() -> None:
    net = mlp(population=4)
    # different masks per variant, so the shared plan covers a union of patterns
    remove(net, [(0, 4), (1, 4), (2, 4), (3, 4)], variant=1)
    remove(net, [(9, 14), (10, 14)], variant=2)
    remove(net, [(5, 9), (6, 9), (7, 10)], variant=3)
    normalize(net)
    x = inputs()
    out = net.population(x)
    for k in range(4):
        alone = net.select(k)
        assert alone.population_size == 1
        torch.testing.assert_close(out[k], alone(x), atol=1e-6, rtol=0)
    assert net.num_params_per_variant().tolist() == [61, 51, 47, 58]
    # a per-variant input (K, B, n_in) is used per variant
    xs = torch.stack([inputs(seed=s) for s in range(4)])
    out = net.population(xs)
    for k in range(4):
        torch.testing.assert_close(out[k], net.select(k)(xs[k]), atol=1e-6, rtol=0)


def test_removing_one_synapse_costs_one_param() -> None:
    net = remove(mlp(), [(0, 4)])
    assert net.num_params_per_variant().tolist() == [60]
    assert not bool(net.mask[0, 0, 4]) and float(net.weight.detach()[0, 0, 4]) == 0.0


def test_neuron_without_outputs_drops_its_inputs_and_bias() -> None:
    # node 9 (layer 2) only feeds the output 14: 5 inputs + bias + 1 output synapse disappear
    net = remove(mlp(), [(9, 14)])
    assert net.num_params_per_variant().tolist() == [61 - 7]
    # a layer-1 neuron whose 5 outgoing synapses are all removed: 4 inputs + bias + 5
    net = remove(mlp(), [(4, j) for j in range(9, 14)])
    assert net.num_params_per_variant().tolist() == [61 - 10]


def test_neuron_without_inputs_folds_away() -> None:
    net = remove(mlp(), [(i, 4) for i in range(4)])
    with torch.no_grad():
        net.bias[0, 4] = 0.9  # the neuron is a constant tanh(0.9) feeding layer 2
    # its bias and its 5 outgoing synapses no longer count
    assert net.num_params_per_variant().tolist() == [61 - 4 - 1 - 5]
    small = net.compact()
    assert small.n_nodes == 14
    assert small.num_params_per_variant().tolist() == [51]
    x = inputs()
    torch.testing.assert_close(small(x), net(x), atol=1e-6, rtol=0)


def test_compact_preserves_outputs_and_params() -> None:
    net = pruned()
    assert net.num_params_per_variant().tolist() == [42]
    small = net.compact()
    assert small.n_nodes == 13 < net.n_nodes
    assert small.num_params_per_variant().tolist() == [42]
    assert int(small.mask.sum()) + small.n_nodes - small.n_in == 42  # nothing dead is left
    assert small.has_normalization
    x = inputs()
    torch.testing.assert_close(small(x), net(x), atol=1e-6, rtol=0)
    # compacting again changes nothing
    assert small.compact().n_nodes == 13
    with pytest.raises(InputError):
        mlp(population=2).compact()


def test_insert_neuron_keeps_order_and_live_synapses() -> None:
    net = mlp()
    x = inputs()
    grown = net.insert_neuron(9, sources=[4, 5], targets=[9, 14], activation="relu")
    assert grown.n_nodes == 16
    assert grown.roles[9] == "added" and grown.activations[9] == "relu"
    mask = grown.mask[0]
    assert not bool(torch.tril(mask).any())  # still strictly upper triangular
    for source, target in [(4, 9), (5, 9), (9, 10), (9, 15)]:
        assert bool(mask[source, target])
        assert float(grown.weight.detach()[0, source, target]) == 0.0
    assert int(mask.sum()) == int(net.mask.sum()) + 4
    assert grown.num_params_per_variant().tolist() == [61 + 4 + 1]
    torch.testing.assert_close(grown(x), net(x), atol=1e-6, rtol=0)  # zero weights: same function
    # old synapses moved with their nodes
    assert float(grown.weight.detach()[0, 10, 15]) == float(net.weight.detach()[0, 9, 14])
    with pytest.raises(InputError, match="topological"):
        net.insert_neuron(9, sources=[10], targets=[14], activation="tanh")
    with pytest.raises(InputError):
        net.insert_neuron(2, sources=[0], targets=[14], activation="tanh")


def test_levels_of_an_mlp() -> None:
    assert mlp().levels().tolist() == [0] * 4 + [1] * 5 + [2] * 5 + [3]


def test_plan_multiplies_only_levels_with_live_synapses() -> None:
    net = mlp()  # 4-5-5-1: each level reads only the level before it
    assert net.plan().sources == ((0,), (1,), (2,))
    # a skip synapse input -> output makes the inputs a source of the output level
    skip = torch.zeros_like(net.mask)
    skip[0, 0, 14] = True
    wired = net._rebuild(net.weight.detach(), net.mask | skip, net.bias.detach())
    assert wired.plan().sources == ((0,), (1,), (0, 2))
    # the output of a skipped block is exactly what the full sum of zero products gives
    reference = wired.clone()
    reference._plan = reference.plan().__class__(**{**reference.plan().__dict__, "sources": ((0,), (0, 1), (0, 1, 2))})
    reference._plan_key = wired._plan_key
    assert torch.equal(wired.population(inputs()), reference.population(inputs()))
    # a level cut off from every earlier level keeps its bias
    cut = remove(mlp(), [(i, j) for i in range(4) for j in range(4, 9)])
    assert cut.plan().sources[0] == ()
    hidden = cut.node_values(inputs())[0, :, 4:9]
    torch.testing.assert_close(hidden, torch.tanh(cut.bias.detach()[0, 4:9]).expand_as(hidden), atol=1e-6, rtol=0)


def test_fold_normalization_preserves_outputs() -> None:
    net = normalize(mlp())
    assert net.has_normalization
    x = inputs() * 3 + 1
    folded = net.fold_normalization()
    assert not folded.has_normalization
    assert folded.num_params_per_variant().tolist() == [61]
    torch.testing.assert_close(folded(x), net(x), atol=1e-5, rtol=0)
    assert (folded(x) - normalize(mlp(), seed=5)(x)).abs().max() > 1e-3  # normalization matters


def test_fold_normalization_with_output_to_output_synapse() -> None:
    # 2 inputs, 1 hidden, 2 outputs; output 3 feeds output 4
    n = 5
    mask = torch.zeros(n, n, dtype=torch.bool)
    for s, t in [(0, 2), (1, 2), (0, 3), (2, 3), (2, 4), (3, 4)]:
        mask[s, t] = True
    g = torch.Generator().manual_seed(0)
    net = DagNet(2, 2, torch.randn(n, n, generator=g), mask, torch.randn(n, generator=g),
                 ["identity", "identity", "tanh", "identity", "identity"])
    net.set_normalization(torch.tensor([0.3, -0.2]), torch.tensor([2.0, 0.5]),
                          torch.tensor([1.0, -3.0]), torch.tensor([4.0, 0.25]))
    x = inputs(n_in=2)
    torch.testing.assert_close(net.fold_normalization()(x), net(x), atol=1e-5, rtol=0)


def test_info_is_copied_into_new_networks() -> None:
    net = mlp()
    assert net.info == {}
    net.info = {"task": "demo", "config": {"lr": 0.1}}
    for other in (net.clone(), net.select(0), net.expand(2), net.compact(), net.fold_normalization(),
                  net.insert_neuron(9, [4], [14], "tanh")):
        assert other.info == net.info
        assert other.info is not net.info


def _regression_data() -> tuple[torch.Tensor, torch.Tensor]:
    x = inputs(n=64)
    y = torch.sin(x[:, :1] * 2) + 0.5 * x[:, 1:2] * x[:, 2:3]
    return x, y


@pytest.mark.parametrize("method", ["adam", "lbfgs"])
def test_removed_synapses_stay_zero_through_training(method: str) -> None:
    x, y = _regression_data()
    net = remove(mlp(population=2), [(0, 4), (5, 10), (12, 14)])
    remove(net, [(3, 8)], variant=1)
    before = net.weight.detach().clone()
    fit(net, x, y, Budget(epochs=20), TrainerConfig(method=method, lr=1e-2))
    changed = (net.weight.detach() - before).abs()
    assert float(changed[net.mask].max()) > 1e-4  # training did move the live weights
    assert bool((net.weight.detach()[~net.mask] == 0).all())
    assert float(net.weight.detach()[1, 3, 8]) == 0.0 and float(net.weight.detach()[0, 3, 8]) != 0.0
    # the forward pass ignores whatever sits in a masked weight
    out = net.population(x)
    with torch.no_grad():
        net.weight[:, 0, 4] = 5.0
        net.weight[1, 3, 8] = -7.0
    assert torch.equal(net.population(x), out)


def test_mask_must_be_strictly_upper_triangular() -> None:
    n = 4
    weight = torch.ones(n, n)
    bias = torch.zeros(n)
    acts = ["identity", "tanh", "tanh", "identity"]
    for edges in ([(0, 1), (2, 1), (1, 3)], [(0, 1), (1, 1), (1, 3)], [(0, 2), (2, 1), (1, 2), (2, 3)]):
        mask = torch.zeros(n, n, dtype=torch.bool)
        for s, t in edges:
            mask[s, t] = True
        with pytest.raises(InputError, match="topological"):
            DagNet(1, 1, weight, mask, bias, acts)
    with pytest.raises(InputError):
        DagNet(1, 1, weight, torch.zeros(3, 3, dtype=torch.bool), bias, acts)
    with pytest.raises(InputError, match="activation"):
        no_edges = torch.zeros(n, n, dtype=torch.bool)
        DagNet(1, 1, weight, no_edges, bias, ["identity", "tanh", "swish", "identity"])


def test_levels_follow_longest_path() -> None:
    net = pruned()
    levels = net.levels()
    src, dst, _ = net.edges()
    assert np.all(levels[dst] >= levels[src] + 1)
    assert levels[:4].tolist() == [0, 0, 0, 0] and levels[14] == 3
