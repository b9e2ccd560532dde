"""Training networks of different structure as one padded population."""

from __future__ import annotations

import torch

from netbonsai.nets import DagNet, standardize_for
from netbonsai.train import Budget, TrainerConfig, evaluate, fit
from netbonsai.train.together import fit_together, stack_padded, unstack_padded


def _data(n: int = 800) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, generator=g) * 2 - 1
    y = torch.sin(2 * x[:, :1]) * x[:, 1:2] + 0.3 * x[:, 2:3]
    return x, y


def _nets(x: torch.Tensor, y: torch.Tensor) -> list[DagNet]:
    nets = []
    for seed, sizes in enumerate(([3, 4, 1], [3, 5, 3, 1], [3, 2, 2, 2, 1])):
        net = standardize_for(DagNet.mlp(sizes, generator=torch.Generator().manual_seed(seed)), x, y)
        with torch.no_grad():  # prune one synapse so the masks differ from a dense MLP
            net.remove_synapses_(torch.tensor([0]), torch.tensor([3]))
        nets.append(net)
    nets[1] = nets[1].insert_neuron(3, range(3), [3, 4], "tanh")
    return nets


def test_stack_and_unstack_are_exact() -> None:
    x, y = _data()
    nets = _nets(x, y)
    stacked = stack_padded(nets)
    assert stacked.population_size == 3 and stacked.n_nodes == max(n.n_nodes for n in nets)
    outputs = stacked.population(x)
    for k, (net, back) in enumerate(zip(nets, unstack_padded(stacked, nets))):
        assert torch.allclose(outputs[k], net(x), atol=1e-6)
        assert back.roles == net.roles and back.activations == net.activations
        assert torch.equal(back.mask, net.mask) and torch.equal(back.weight, net.weight)


def test_training_together_equals_training_alone() -> None:
    x, y = _data()
    nets = _nets(x, y)
    trainer = TrainerConfig(method="adam", lr=1e-2, batch_size=100)
    together, result = fit_together(nets, x, y, Budget(epochs=5), trainer, seed=3)
    for net, trained in zip(nets, together):
        alone = net.clone()
        fit(alone, x, y, Budget(epochs=5), trainer, seed=3)
        assert torch.allclose(trained.weight, alone.weight, atol=1e-5)
        assert torch.equal(trained.mask, net.mask)  # structure untouched, pruned synapses stay pruned
        assert trained.num_params() == net.num_params()
    assert result.loss.shape == (3,)


def test_networks_that_cannot_share_a_population_fall_back() -> None:
    x, y = _data()
    relu = standardize_for(DagNet.mlp([3, 4, 1], activation="relu"), x, y)
    tanh = standardize_for(DagNet.mlp([3, 4, 1]), x, y)
    originals = [net.clone() for net in (relu, tanh)]
    trainer = TrainerConfig(method="lbfgs")
    trained, result = fit_together([relu, tanh], x, y, Budget(epochs=3), trainer)
    assert [t.activations for t in trained] == [relu.activations, tanh.activations]
    assert result.loss.shape == (2,) and result.epochs == 3
    # the same result as training each alone: copies are trained, the given networks untouched
    for net, original, copy, loss in zip((relu, tanh), originals, trained, result.loss):
        assert copy is not net and torch.equal(net.weight, original.weight) and torch.equal(net.bias, original.bias)
        alone = original.clone()
        fitted = fit(alone, x, y, Budget(epochs=3), trainer)
        torch.testing.assert_close(copy.weight, alone.weight, atol=1e-6, rtol=0)
        torch.testing.assert_close(copy.bias, alone.bias, atol=1e-6, rtol=0)
        torch.testing.assert_close(loss, fitted.loss[0], atol=0, rtol=1e-6)
        assert float(loss) < float(evaluate(original, x, y)[0])  # trained, not just copied
