"""Surgeries on float64 relu and tanh MLPs, plain and with a DagNet's Affine standardisation:
the exact ones keep the outputs (atol 1e-6), the approximate ones say so and stay within the
Lipschitz change_bound, parameter counts follow the formulas, the input network is untouched,
and bad arguments raise InputError."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from netbonsai.errors import InputError
from netbonsai.surgery import (
    SurgeryResult, activation_names, add_layer, add_neurons, build_mlp, change_bound, count_params, copy_mlp,
    layer_sizes, make_mlp, mlp_from_dag, output_change, parse_mlp, remove_layer, svd_narrow, svd_split,
)

from .test_mlp import standardised_dag

NETS = ["relu", "tanh", "relu-dag", "tanh-dag"]


def network(kind: str) -> nn.Sequential:
    """A float64 MLP: [4, 7, 6, 3] from make_mlp, or [3, 5, 4, 2] with Affine prefix and suffix."""
    activation, _, dag = kind.partition("-")
    if dag:
        return mlp_from_dag(standardised_dag(activation, seed=3)).double()
    return make_mlp([4, 7, 6, 3], activation, seed=1).double()


def with_linear_layer(net: nn.Module, layer: int = 0) -> nn.Sequential:
    """A copy of ``net`` whose hidden layer ``layer`` has no activation."""
    parts = parse_mlp(copy_mlp(net))
    parts.activations[layer] = nn.Identity()
    return build_mlp(parts)


def inputs(net: nn.Module, n: int = 64) -> torch.Tensor:
    generator = torch.Generator().manual_seed(7)
    return 2 * torch.randn(n, layer_sizes(net)[0], dtype=torch.float64, generator=generator)


def check(original: nn.Module, result: SurgeryResult, exact: bool) -> float:
    """Assert ``result``'s exactness flag (and, if exact, equal outputs) and that ``original`` is
    untouched by the surgery; returns the output change."""
    snapshot = {k: v.clone() for k, v in original.state_dict().items()}
    x = inputs(original)
    assert result.exact is exact
    change = output_change(original, result.net, x)
    if exact:
        with torch.no_grad():
            assert torch.allclose(result.net(x), original(x), atol=1e-6, rtol=0), change
    own = {p.data_ptr() for p in original.parameters()}
    assert not any(p.data_ptr() in own for p in result.net.parameters())
    assert all(torch.equal(v, snapshot[k]) for k, v in original.state_dict().items())
    json.dumps(result.summary())
    return change


def untouched(net: nn.Module, surgery, *args, **kwargs) -> SurgeryResult:
    """Run ``surgery`` and assert that it left ``net`` as it was."""
    before = {k: v.clone() for k, v in net.state_dict().items()}
    result = surgery(net, *args, **kwargs)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    return result


@pytest.mark.parametrize("kind", NETS)
def test_exact_surgeries_keep_the_outputs(kind: str) -> None:
    net = network(kind)
    sizes = layer_sizes(net)
    params = count_params(net)
    activation = kind.partition("-")[0]
    for after in range(len(sizes) - 2):
        result = untouched(net, add_layer, after)
        check(net, result, exact=True)
        n = sizes[after + 1]
        assert result.layer == after + 1 and count_params(result.net) == params + n * n + n
        assert activation_names(result.net)[after + 1] == ("relu" if activation == "relu" else "identity")
        # a linear layer added and removed again: exact both ways
        result = untouched(net, add_layer, after, "identity")
        check(net, result, exact=True)
        removed = untouched(result.net, remove_layer, after + 1)
        assert removed.surgery == "remove-layer" and not removed.detail["approximation"]
        check(result.net, removed, exact=True)
        assert layer_sizes(removed.net) == sizes and count_params(removed.net) == params
    for count in (3, 2 * sizes[1] + 1):  # more copies than neurons: some get several
        result = untouched(net, add_neurons, 0, count)
        check(net, result, exact=True)
        assert result.surgery == "add-neurons" and layer_sizes(result.net)[1] == sizes[1] + count
        assert count_params(result.net) == params + count * (sizes[0] + 1 + sizes[2])
    for layer in range(len(sizes) - 1):  # the output layer too
        full = min(sizes[layer], sizes[layer + 1])
        result = untouched(net, svd_split, layer, full)
        check(net, result, exact=True)
        assert result.dropped is not None and result.dropped.numel() == 0
        assert layer_sizes(result.net) == sizes[: layer + 1] + [full] + sizes[layer + 1 :]
        assert count_params(result.net) == params + sizes[layer] * full + full + full * sizes[layer + 1] - (
            sizes[layer] * sizes[layer + 1])
    linear = with_linear_layer(net)  # layer 0 is wider than its input: narrowing to n_in is exact
    result = untouched(linear, svd_narrow, 0, sizes[0])
    check(linear, result, exact=True)
    assert layer_sizes(result.net) == [sizes[0], sizes[0]] + sizes[2:]
    assert count_params(result.net) == params - (sizes[1] - sizes[0]) * (sizes[0] + 1 + sizes[2])


@pytest.mark.parametrize("kind", NETS)
def test_approximate_surgeries_say_so_and_stay_within_the_bound(kind: str) -> None:
    net = network(kind)
    x = inputs(net)
    sizes = layer_sizes(net)
    for layer in range(len(sizes) - 1):
        result = untouched(net, svd_split, layer, 1)
        change = check(net, result, exact=False)
        bound = change_bound(net, result, x)
        assert result.surgery == "svd-split"
        assert result.dropped.numel() == min(sizes[layer], sizes[layer + 1]) - 1
        assert bool((result.dropped[:-1] >= result.dropped[1:]).all()) and result.dropped[0] > 0
        assert 0 < change <= bound + 1e-9, (layer, change, bound)
    linear = with_linear_layer(net)
    for rank in (1, 2):
        result = untouched(linear, svd_narrow, 0, rank)
        change = check(linear, result, exact=False)
        bound = change_bound(linear, result, x)
        assert layer_sizes(result.net)[1] == rank and result.detail["activation"] == "identity"
        assert 0 < change <= bound + 1e-9, (rank, change, bound)
    nonlinear = untouched(net, svd_narrow, 0, sizes[0])  # full rank, but through the activation
    assert check(net, nonlinear, exact=False) > 0 and change_bound(net, nonlinear, x) is None
    removed = untouched(net, remove_layer, 0)
    assert removed.surgery == "remove-nonlinear-layer" and removed.detail["approximation"] is True
    assert check(net, removed, exact=False) > 0 and change_bound(net, removed, x) is None
    assert count_params(removed.net) == count_params(net) - sum(
        a * b + b for a, b in zip(sizes, sizes[1:3])) + sizes[0] * sizes[2] + sizes[2]
    noisy = untouched(net, add_neurons, 1, 2, noise=0.1, generator=torch.Generator().manual_seed(0))
    assert check(net, noisy, exact=False) > 0 and change_bound(net, noisy, x) is None


def test_add_layer_with_a_named_activation_is_exact_only_where_it_is_idempotent() -> None:
    relu, tanh = network("relu"), network("tanh")
    assert check(relu, add_layer(relu, 0, "relu"), exact=True) < 1e-12
    assert check(tanh, add_layer(tanh, 1, "identity"), exact=True) < 1e-12
    assert check(relu, add_layer(relu, 0, "tanh"), exact=False) > 0
    assert check(tanh, add_layer(tanh, 0, "relu"), exact=False) > 0
    sigmoid = make_mlp([3, 4, 2], "sigmoid").double()
    assert check(sigmoid, add_layer(sigmoid, 0, "relu"), exact=True) < 1e-12  # sigmoid's outputs are >= 0


def test_add_neurons_divides_outgoing_weights_and_copies_incoming_ones() -> None:
    net = network("tanh")
    first, second = net[0].weight.detach(), net[2].weight.detach()
    result = add_neurons(net, 0, 3, neurons=[2, 2, 4])
    new_first, new_second = result.net[0].weight.detach(), result.net[2].weight.detach()
    n = first.shape[0]
    assert result.detail["neurons"] == [2, 2, 4] and result.detail["width"] == n + 3
    assert torch.equal(new_first[n:], first[[2, 2, 4]])
    assert torch.equal(result.net[0].bias[n:], net[0].bias[[2, 2, 4]])
    assert torch.allclose(new_second[:, [2, n, n + 1]], (second[:, 2] / 3)[:, None].expand(-1, 3))
    assert torch.allclose(new_second[:, [2, n, n + 1]].sum(dim=1), second[:, 2])
    assert torch.allclose(new_second[:, [4, n + 2]].sum(dim=1), second[:, 4])
    others = [j for j in range(n) if j not in (2, 4)]
    assert torch.equal(new_second[:, others], second[:, others])
    top = torch.argsort(second.norm(dim=0), descending=True)[:3].tolist()
    assert add_neurons(net, 0, 3).detail["neurons"] == top  # by default the largest outgoing norms
    noisy = add_neurons(net, 0, 2, neurons=[1, 1], noise=0.5, generator=torch.Generator().manual_seed(1))
    copies = noisy.net[0].weight.detach()[n:]
    assert not torch.allclose(copies[0], first[1]) and not torch.allclose(copies[0], copies[1])
    rms = first[1].pow(2).mean().sqrt()
    assert float((copies - first[1]).abs().max()) < 5 * 0.5 * rms  # N(0, (0.5 rms)^2) noise
    again = add_neurons(net, 0, 2, neurons=[1, 1], noise=0.5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(again.net[0].weight, noisy.net[0].weight)


def test_svd_narrow_moves_the_dropped_bias_part_into_the_next_bias() -> None:
    net = with_linear_layer(network("relu"))  # layer 0: 4 -> 7, no activation
    result = svd_narrow(net, 0, 4)
    kernel = net[0].weight.detach().T
    s = torch.linalg.svdvals(kernel)
    narrow = result.net[0].weight.detach()  # (U S)^T, so Vh = S^-2 (U S)^T W whatever the signs
    vh = narrow @ kernel / s[:, None] ** 2
    assert torch.allclose(vh @ vh.T, torch.eye(4, dtype=vh.dtype), atol=1e-10)
    assert torch.allclose(result.net[0].bias, vh @ net[0].bias.detach(), atol=1e-12)
    assert not torch.allclose(result.net[1].bias, net[1].bias)  # the part outside Vh's rows moved there
    assert torch.allclose(torch.linalg.svdvals(result.net[0].weight.detach()), s, atol=1e-12)


def test_summary_is_json_ready() -> None:
    net = network("relu-dag")
    result = svd_split(net, 1, 2)
    summary = json.loads(json.dumps(result.summary()))
    assert summary["surgery"] == "svd-split" and summary["layer"] == 1 and summary["exact"] is False
    assert summary["widths"] == [3, 5, 2, 4, 2] and summary["detail"] == {"rank": 2, "activation": "relu"}
    assert summary["dropped"] == pytest.approx(result.dropped.tolist()) and len(summary["dropped"]) == 2


def test_bad_arguments_raise_input_error() -> None:
    net = network("relu")  # [4, 7, 6, 3]: hidden layers 0 and 1
    bad = [
        (add_layer, (net, -1), "out of range 0..1"), (add_layer, (net, 2), "out of range"),
        (add_layer, (net, True), "out of range"), (add_layer, (net, 0, "swish"), "unknown activation"),
        (remove_layer, (net, 2), "out of range"), (remove_layer, (net, 0.0), "out of range"),
        (add_neurons, (net, 0, 0), "count"), (add_neurons, (net, 0, 2.0), "count"),
        (svd_narrow, (net, 0, 0), "rank 0"), (svd_narrow, (net, 0, 5), "out of range 1..4"),
        (svd_narrow, (net, 2, 1), "out of range"), (svd_split, (net, 3, 1), "out of range 0..2"),
        (svd_split, (net, 2, 4), "out of range 1..3"), (add_layer, (make_mlp([3, 2]), 0), "single Linear"),
        (add_layer, (nn.Sequential(nn.Linear(3, 4), nn.Dropout(), nn.Linear(4, 2)), 0), "module 1"),
    ]
    for surgery, args, message in bad:
        with pytest.raises(InputError, match=message):
            surgery(*args)
    for kwargs in ({"neurons": [0]}, {"neurons": [0, 7]}, {"neurons": [-1, 0]}, {"neurons": [0, 1.5]}):
        with pytest.raises(InputError, match="neurons"):
            add_neurons(net, 0, 2, **kwargs)
    for noise in (-0.1, float("nan"), float("inf"), "0.1", True):
        with pytest.raises(InputError, match="noise"):
            add_neurons(net, 0, 2, noise=noise)
    with pytest.raises(InputError, match="does not come from"):
        change_bound(network("tanh-dag"), svd_split(net, 2, 1), inputs(net))
