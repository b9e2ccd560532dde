"""Layered MLPs as nn.Sequential: parse_mlp reads the canonical parts (or names the bad module),
build_mlp / copy_mlp write them back, make_mlp is reproducible, the description helpers count
right, and DagNet round trips (relu and tanh, standardised) keep the outputs (atol 1e-6)."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from netbonsai.errors import InputError
from netbonsai.gates.convert import Affine, dag_from_sequential
from netbonsai.nets.dag import DagNet
from netbonsai.surgery import (
    activation_names, build_mlp, copy_mlp, count_params, dag_from_mlp, hidden_widths, layer_sizes, make_mlp,
    mlp_from_dag, parse_mlp, shape_key,
)
from netbonsai.train.losses import population_outputs


def standardised_dag(activation: str, seed: int = 0) -> DagNet:
    """A [3, 5, 4, 2] DagNet with non-trivial input and output standardisation."""
    dag = DagNet.mlp([3, 5, 4, 2], activation, generator=torch.Generator().manual_seed(seed))
    return dag.set_normalization(torch.tensor([0.5, -1.0, 2.0]), torch.tensor([2.0, 0.5, 3.0]),
                                 torch.tensor([1.0, -2.0]), torch.tensor([4.0, 0.25]))


def test_parse_reads_nested_sequentials_and_build_rebuilds_canonical_form() -> None:
    lin1, lin2, lin3 = nn.Linear(4, 6), nn.Linear(6, 5), nn.Linear(5, 2)
    affine = Affine(torch.full((2,), 2.0), torch.zeros(2))
    net = nn.Sequential(nn.Flatten(), nn.Sequential(lin1, nn.Tanh(), nn.Identity()), lin2, nn.Identity(),
                        lin3, nn.Sigmoid(), affine)
    parts = parse_mlp(net)
    assert [type(m) for m in parts.prefix] == [nn.Flatten]
    assert parts.linears[0] is lin1 and parts.linears[1] is lin2 and parts.linears[2] is lin3  # no copies
    assert [type(a) for a in parts.activations] == [nn.Tanh, nn.Identity, nn.Sigmoid]
    assert parts.suffix == [affine]
    rebuilt = build_mlp(parts)
    expected = [nn.Flatten, nn.Linear, nn.Tanh, nn.Linear, nn.Linear, nn.Sigmoid, Affine]
    assert [type(m) for m in rebuilt] == expected
    assert rebuilt[1] is lin1
    x = torch.randn(7, 2, 2)
    assert torch.equal(rebuilt(x), net(x))
    copied = copy_mlp(net)
    assert copied[1] is not lin1 and torch.equal(copied(x), net(x))
    with torch.no_grad():
        copied[1].weight.zero_()
    assert lin1.weight.abs().sum() > 0  # a deep copy
    assert layer_sizes(net) == [4, 6, 5, 2] and hidden_widths(net) == [6, 5]
    assert count_params(net) == 4 * 6 + 6 + 6 * 5 + 5 + 5 * 2 + 2
    assert activation_names(net) == ["tanh", "identity", "sigmoid"]


@pytest.mark.parametrize("make, position", [
    (lambda: nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)), "module 1 (BatchNorm1d)"),
    (lambda: nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.1), nn.Linear(4, 2)), "module 1 (Dropout)"),
    (lambda: nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(4, 2)), "module 0 (Conv2d)"),
    (lambda: nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Tanh(), nn.Linear(4, 2)), "module 2 (Tanh) is a"),
    (lambda: nn.Sequential(nn.ReLU(), nn.Linear(3, 2)), "module 0 (ReLU) comes before"),
    (lambda: nn.Sequential(nn.Linear(3, 4), nn.Sequential(nn.ReLU(), nn.Linear(5, 2))), "module 1.1 (Lin"),
    (lambda: nn.Sequential(nn.Linear(3, 0)), "module 0"),
    (lambda: nn.Sequential(nn.Flatten(), nn.ReLU()), "module 1 (ReLU)"),
    (lambda: nn.Sequential(nn.Flatten()), "no nn.Linear"),
    (lambda: nn.Sequential(nn.Linear(3, 4), nn.ELU(alpha=0.5)), "module 1"),
    (lambda: nn.Sequential(nn.Linear(3, 4), Affine(torch.ones(4), torch.ones(4)), nn.Linear(4, 2)), "2 (Lin"),
    (lambda: nn.Linear(3, 4), "nn.Sequential"),
    (lambda: "not a module", "nn.Sequential"),
])
@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
def test_parse_rejects_anything_but_a_layered_mlp(make, position: str) -> None:
    with pytest.raises(InputError, match=re.escape(position)):
        parse_mlp(make())


def test_make_mlp_is_reproducible_and_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    a, b = make_mlp([4, 8, 8, 3], "tanh", seed=5), make_mlp([4, 8, 8, 3], "tanh", seed=5)
    c = make_mlp([4, 8, 8, 3], "tanh")
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a[0].weight, c[0].weight)
    assert [type(m) for m in a] == [nn.Linear, nn.Tanh, nn.Linear, nn.Tanh, nn.Linear]
    assert bound_ok(a[0].weight, 4) and bound_ok(a[2].weight, 8)  # nn.Linear's U(-1/sqrt(fan_in), ...)
    assert activation_names(make_mlp([2, 3, 1], output_activation="sigmoid")) == ["relu", "sigmoid"]
    for sizes in ([4], [4, 0, 2], [4, 2.5, 1], "42", [4, True]):
        with pytest.raises(InputError, match="sizes"):
            make_mlp(sizes)
    with pytest.raises(InputError, match="unknown activation"):
        make_mlp([2, 3, 1], "swish")
    with pytest.raises(InputError, match="unknown activation"):
        make_mlp([2, 3, 1], output_activation="softmax")


def bound_ok(weight: torch.Tensor, fan_in: int) -> bool:
    return bool(weight.abs().max() <= fan_in ** -0.5)


def test_shape_key_tells_stackable_networks_apart() -> None:
    key = shape_key(make_mlp([4, 6, 2], seed=0))
    assert key == shape_key(make_mlp([4, 6, 2], seed=1)) and hash(key) == hash(shape_key(make_mlp([4, 6, 2])))
    assert key != shape_key(make_mlp([4, 7, 2]))
    assert key != shape_key(make_mlp([4, 6, 2], "tanh"))
    assert key != shape_key(nn.Sequential(nn.Flatten(), *make_mlp([4, 6, 2])))
    plain = mlp_from_dag(DagNet.mlp([3, 5, 4, 2], "relu"))
    assert shape_key(mlp_from_dag(standardised_dag("relu"))) != shape_key(plain)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_dag_round_trip_keeps_outputs_and_standardisation(activation: str) -> None:
    dag = standardised_dag(activation)
    net = mlp_from_dag(dag)
    parts = parse_mlp(net)
    assert [type(m) for m in parts.prefix] == [Affine] and [type(m) for m in parts.suffix] == [Affine]
    assert activation_names(net) == [activation, activation, "identity"] and layer_sizes(net) == [3, 5, 4, 2]
    x = torch.randn(50, 3) * 3
    with torch.no_grad():
        expected = population_outputs(dag, x)[0]
        assert torch.allclose(net(x), expected, atol=1e-6)
        back = dag_from_mlp(net)
        assert torch.allclose(population_outputs(back, x)[0], expected, atol=1e-6)
    assert torch.allclose(back.in_scale.double(), dag.in_scale.double())
    assert torch.allclose(back.out_shift, dag.out_shift)


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "elu", "softplus"])
def test_make_mlp_round_trip_through_a_dag(activation: str) -> None:
    net = make_mlp([3, 6, 4, 2], activation, seed=2)
    x = torch.randn(40, 3)
    with torch.no_grad():
        dag = dag_from_mlp(net)
        assert torch.allclose(population_outputs(dag, x)[0], net(x), atol=1e-6)
        again = mlp_from_dag(dag)
        assert torch.allclose(again(x), net(x), atol=1e-6)
    assert activation_names(again) == activation_names(net)


def test_dag_from_sequential_takes_other_activations_but_not_two_in_a_row() -> None:
    assert dag_from_sequential(nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1))) is not None
    for middle in (nn.Sigmoid(), nn.BatchNorm1d(3)):
        assert dag_from_sequential(nn.Sequential(nn.Linear(2, 3), nn.Tanh(), middle, nn.Linear(3, 1))) is None
    assert dag_from_sequential(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.ReLU(), nn.Linear(3, 1))) is None
    with pytest.raises(InputError, match="DagNet"):
        twice = Affine(torch.ones(2), torch.zeros(2)), Affine(torch.ones(2), torch.zeros(2))
        dag_from_mlp(nn.Sequential(*twice, nn.Linear(2, 1)))
