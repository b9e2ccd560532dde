"""The tri-state ReLU and gate(): the three states, per-channel gates, the sites chosen, the
models accepted (MLPs of the experiments, CNNs, DagNets) and one clear error per bad model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gate_nets import cnn, mlp, set_gates
from netbonsai.errors import InputError
from netbonsai.gates import (TriStateReLU, binarize_gates, clamp_gates, gate, gate_modules, gate_parameters,
                             read_layout)
from netbonsai.nets import DagNet


def test_the_three_states_and_the_mix() -> None:
    g = TriStateReLU(3, learn_depth=True)
    x = torch.tensor([[-2.0, 0.5, 3.0], [1.0, -1.0, -0.5]])
    assert torch.equal(g(x), torch.relu(x))  # w = 1, d = 0: a ReLU (the initial state)
    with torch.no_grad():
        g.w.copy_(torch.tensor([0.0, 1.0, 0.5]))
        g.d.fill_(1.0)
    assert torch.equal(g(x)[:, 1], x[:, 1])  # w = 1, d = 1: identity
    assert torch.equal(g(x)[:, 0], torch.zeros(2))  # w = 0: dead
    with torch.no_grad():
        g.d.fill_(0.25)
    expected = torch.where(x >= 0, x, 0.25 * x) * g.w
    assert torch.allclose(g(x), expected)


def test_conv_gates_are_per_channel_and_depth_off_is_a_scaled_relu() -> None:
    g = TriStateReLU(2)  # learn_depth False: d is a buffer fixed at 0
    assert [name for name, _ in g.named_parameters()] == ["w"]
    with torch.no_grad():
        g.w.copy_(torch.tensor([0.0, 0.5]))
    x = torch.randn(4, 2, 3, 3)
    out = g(x)
    assert torch.equal(out[:, 0], torch.zeros(4, 3, 3))
    assert torch.allclose(out[:, 1], 0.5 * torch.relu(x[:, 1]))


def test_clamp_and_binarize() -> None:
    model = gate(mlp())
    with torch.no_grad():
        for g in gate_modules(model):
            g.w.uniform_(-1, 2)
            g.d.fill_(1.7)
    clamp_gates(model)
    for g in gate_modules(model):
        assert float(g.w.min()) >= 0 and float(g.w.max()) <= 1 and 0 <= float(g.d) <= 1
    with torch.no_grad():
        gate_modules(model)[0].w[:4] = torch.tensor([0.49, 0.5, 0.51, 0.0])
    binarize_gates(model)
    assert gate_modules(model)[0].w[:4].tolist() == [0.0, 1.0, 1.0, 0.0]
    with pytest.raises(InputError, match="threshold"):
        binarize_gates(model, 1.5)


def test_gate_replaces_hidden_relus_only_and_keeps_the_function() -> None:
    model = mlp()
    model.append(nn.ReLU())  # an output ReLU: never gated
    x = torch.randn(5, 12)
    before = model(x)
    assert gate(model) is model
    gates = gate_modules(model)
    assert [g.units for g in gates] == [16, 8, 6] and isinstance(model[-1], nn.ReLU)
    assert all(g.learn_depth for g in gates)  # each feeds a Linear directly: a merge is possible
    assert torch.equal(model(x), before)  # w = 1, d = 0 is the ReLU
    assert len(gate_parameters(model)) == 6


def test_a_cnn_gets_channel_gates_and_depth_only_between_linears() -> None:
    model = cnn()
    x = torch.randn(3, 1, 8, 8)
    before = model(x)
    gate(model)
    gates = gate_modules(model)
    assert [(g.units, g.learn_depth) for g in gates] == [(6, False), (5, False), (7, True)]
    assert isinstance(model[0][2], TriStateReLU)  # inside the nested Sequential
    assert torch.allclose(model(x), before)


def test_the_experiments_mlps_and_a_dagnet() -> None:
    from netbonsai.experiments.classification import build_mlp
    from netbonsai.experiments.mnist import keras_mlp

    for model in (build_mlp([10, 7, 5, 3], "relu"), keras_mlp([10, 7, 5, 3], ("relu", "relu"), 0)):
        assert [g.units for g in gate_modules(gate(model))] == [7, 5]
    net = DagNet.mlp([4, 6, 5, 2], "relu", generator=torch.Generator().manual_seed(0))
    net.set_normalization(torch.rand(4), torch.rand(4) + 0.5, torch.rand(2), torch.rand(2) + 0.5)
    x = torch.randn(7, 4)
    gated = gate(net)  # a new Sequential with the standardisation as fixed maps
    assert isinstance(gated, nn.Sequential) and len(gate_modules(gated)) == 2
    assert torch.allclose(gated(x), net(x), atol=1e-5)
    with pytest.raises(InputError, match="layered"):
        gate(DagNet.mlp([2, 3, 1], "relu", skip=True))


@pytest.mark.parametrize("model, message", [
    (nn.Linear(3, 2), "nn.Sequential"),
    (nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)), "no ReLU"),
    (nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.BatchNorm1d(4), nn.Linear(4, 1)), "put BatchNorm"),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.ReLU(), nn.Linear(8, 1)), "Flatten after the ReLU"),
    (nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(5, 1)), "4 channels feed 5"),
    (nn.Sequential(nn.Conv2d(2, 4, 3, groups=2), nn.ReLU(), nn.Flatten(), nn.Linear(4, 1)), "grouped"),
])
def test_one_clear_error_per_bad_model(model, message) -> None:
    with pytest.raises(InputError, match=message):
        gate(model)


def test_bad_arguments_and_gating_twice() -> None:
    with pytest.raises(InputError, match="width, depth or both"):
        gate(mlp(), width=False, depth=False)
    with pytest.raises(InputError, match="True or False"):
        gate(mlp(), width=1)
    model = gate(mlp())
    with pytest.raises(InputError, match="already"):
        gate(model)
    with pytest.raises(InputError, match="positive number of units"):
        TriStateReLU(0)


def test_width_only_and_depth_only() -> None:
    widths = gate(mlp(), depth=False)
    assert all(g.learn_width and not g.learn_depth for g in gate_modules(widths))
    depths = gate(mlp(), width=False)
    assert all(not g.learn_width and g.learn_depth for g in gate_modules(depths))
    set_gates(depths, [(None, 1.0)] * 3)
    assert read_layout(depths).sites[0].mergeable
