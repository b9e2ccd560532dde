"""StackedMLP: K same-shape MLPs as one population, trained by fit exactly as K separate trainings."""

import copy

import pytest
import torch
from torch import nn

from netbonsai.data.task import Split
from netbonsai.errors import InputError
from netbonsai.gates.convert import Affine
from netbonsai.surgery.population import StackedMLP
from netbonsai.train import Budget, TrainerConfig, fit
from netbonsai.train.regularization import weight_l2

TRAINER = TrainerConfig(method="adam", loss="cross_entropy", lr=1e-2, batch_size=16)


def mlp(seed: int, act: type[nn.Module] = nn.ReLU, prefix: list[nn.Module] | None = None) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(*(prefix or []), nn.Linear(6, 8), act(), nn.Linear(8, 5), act(), nn.Linear(5, 3))


def data(rows: int = 40) -> Split:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(rows, 6, generator=g)
    return Split(x, (x[:, 0] + x[:, 1] > 0).long() + (x[:, 2] > 1).long())


def trained_alone(net: nn.Sequential, split: Split) -> nn.Sequential:
    net = copy.deepcopy(net)
    fit(net, split, Budget(epochs=2), TRAINER, seed=0)
    return net


def check_population(nets: list[nn.Sequential]) -> None:
    split = data()
    stacked = StackedMLP.from_networks(nets)
    assert stacked.population_size == len(nets)
    out = stacked(split.x)
    assert out.shape == (len(nets), len(split), 3)
    for k, net in enumerate(nets):
        assert torch.allclose(out[k], net(split.x), atol=1e-6)
    result = fit(stacked, split, Budget(epochs=2), TRAINER, seed=0)
    assert result.loss.shape == (len(nets),)
    for k, (back, net) in enumerate(zip(stacked.networks(), nets)):
        alone = trained_alone(net, split)
        for a, b in zip(back.parameters(), alone.parameters()):
            assert torch.allclose(a, b, atol=1e-5)
        assert torch.allclose(stacked(split.x)[k], alone(split.x), atol=1e-5)
        assert [type(m) for m in back.modules()] == [type(m) for m in net.modules()]


def test_relu_population_equals_separate_networks_before_and_after_training():
    nets = [mlp(seed) for seed in range(3)]
    before = [copy.deepcopy(n.state_dict()) for n in nets]
    check_population(nets)
    for net, state in zip(nets, before):  # the inputs are copied, never trained in place
        assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())


def test_tanh_population_with_an_affine_prefix_and_suffix():
    scale, shift = torch.linspace(0.5, 2.0, 6), torch.linspace(-1.0, 1.0, 6)
    nets = [mlp(seed, nn.Tanh, [nn.Flatten(), Affine(scale, shift)]) for seed in range(2)]
    for net in nets:
        net.append(Affine(torch.tensor([1.0, 2.0, 3.0]), torch.zeros(3)))
    check_population(nets)


def test_nested_sequentials_and_a_single_network():
    net = nn.Sequential(nn.Sequential(nn.Linear(6, 8), nn.ReLU()), nn.Sequential(nn.Linear(8, 3)))
    check_population([net])
    back = StackedMLP.from_networks([net]).networks()[0]
    assert isinstance(back[0], nn.Sequential) and isinstance(back[1][0], nn.Linear)


def test_stacked_weights_are_per_network_parameters():
    nets = [mlp(seed) for seed in range(3)]
    stacked = StackedMLP.from_networks(nets)
    assert [tuple(w.shape) for w in stacked.weights] == [(3, 8, 6), (3, 5, 8), (3, 3, 5)]
    assert [tuple(b.shape) for b in stacked.biases] == [(3, 8), (3, 5), (3, 3)]
    assert sum(p.numel() for p in stacked.parameters()) == 3 * sum(p.numel() for p in nets[0].parameters())
    expected = torch.stack([sum(p.pow(2).sum() for n, p in net.named_parameters() if n.endswith("weight"))
                            for net in nets])
    assert torch.allclose(weight_l2(stacked), expected)  # the trainer's l2 sees each network's weights


def test_networks_of_different_shapes_cannot_share_a_population():
    base = mlp(0)
    wider = nn.Sequential(nn.Linear(6, 9), nn.ReLU(), nn.Linear(9, 5), nn.ReLU(), nn.Linear(5, 3))
    other_act = mlp(1, nn.Tanh)
    other_prefix = mlp(2, prefix=[Affine(torch.ones(6), torch.ones(6))])
    shifted = mlp(3, prefix=[Affine(torch.ones(6), torch.zeros(6))])
    for other in (wider, other_act, other_prefix, mlp(4, nn.LeakyReLU)):
        with pytest.raises(InputError, match="different shapes"):
            StackedMLP.from_networks([base, other])
    with pytest.raises(InputError, match="different shapes"):
        StackedMLP.from_networks([other_prefix, shifted])  # same modules, different Affine buffers
    with pytest.raises(InputError, match="different shapes"):
        StackedMLP.from_networks([mlp(5, nn.LeakyReLU), nn.Sequential(*mlp(6, lambda: nn.LeakyReLU(0.2)))])
    with pytest.raises(InputError):
        StackedMLP.from_networks([])
    with pytest.raises(InputError):
        StackedMLP.from_networks([nn.Sequential(nn.Linear(6, 4), nn.BatchNorm1d(4), nn.Linear(4, 3))])
