"""Masked layers: identical outputs, mask persistence, removed weights stay zero through training."""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
from torch import nn

from netbonsai.nets.masked import (
    MaskedConv2d,
    MaskedLinear,
    apply_masks_,
    count_weights,
    make_prunable,
    mask_applier,
    masked_layers,
    num_live_params,
    sparsity,
)
from netbonsai.train import Budget, TrainerConfig, fit

from .helpers import mlp as dag_mlp


def mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 10), nn.Tanh(), nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 3))


class Head(nn.Module):
    """A custom submodule holding a ModuleDict, to check recursive replacement."""

    def __init__(self) -> None:
        super().__init__()
        self.parts = nn.ModuleDict({"hidden": nn.Linear(32, 16), "out": nn.Linear(16, 4, bias=False)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.parts["out"](torch.relu(self.parts["hidden"](x)))


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(4, 8, 3, stride=2, padding=1, padding_mode="reflect", bias=False),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding="same", groups=2, dilation=2),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
        )
        self.head = Head()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def remove_some(
    model: nn.Module, seed: int = 3, fraction: float = 0.5, zero: bool = True
) -> dict[str, torch.Tensor]:
    """Remove a random fraction of every masked layer's weights (their stored values are zeroed
    unless ``zero`` is False); returns the masks."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in masked_layers(model):
            layer.mask.copy_(torch.rand(layer.mask.shape, generator=g) >= fraction)
    if zero:
        apply_masks_(model)
    return {name: layer.mask.clone() for name, layer in masked_layers(model)}


@pytest.mark.parametrize("build, shape", [(mlp, (16, 6)), (SmallCNN, (5, 1, 8, 8))])
def test_make_prunable_keeps_outputs_and_replaces_every_layer(build, shape) -> None:
    torch.manual_seed(1)
    model = build()
    x = torch.randn(*shape)
    expected = model(x)
    n_layers = sum(type(m) in (nn.Linear, nn.Conv2d) for m in model.modules())
    original = copy.deepcopy(model)
    prunable = make_prunable(model)
    assert prunable is model
    assert len(masked_layers(model)) == n_layers
    assert not any(type(m) in (nn.Linear, nn.Conv2d) for m in model.modules())
    torch.testing.assert_close(model(x), expected, atol=1e-6, rtol=0)
    for (name, p), (name0, p0) in zip(model.named_parameters(), original.named_parameters()):
        assert name == name0 and torch.equal(p, p0)  # copied exactly, same names
    assert count_weights(model) == (sum(m.weight.numel() for _, m in masked_layers(model)),) * 2
    assert sparsity(model) == 0.0


def test_make_prunable_is_idempotent_and_keeps_shared_layers_shared() -> None:
    shared = nn.Linear(4, 4)
    model = nn.Sequential(shared, nn.Tanh(), shared)
    make_prunable(model)
    assert isinstance(model[0], MaskedLinear) and model[0] is model[2]
    first = model[0]
    make_prunable(model)
    assert model[0] is first  # not wrapped again
    assert len(masked_layers(model)) == 1


def test_bare_layer_and_configuration_are_copied() -> None:
    conv = nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2, bias=False,
                     padding_mode="circular", dtype=torch.float64)
    masked = make_prunable(conv)
    assert isinstance(masked, MaskedConv2d) and masked.bias is None and masked.weight.dtype == torch.float64
    assert masked.padding_mode == "circular"
    for attr in ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups"):
        assert getattr(masked, attr) == getattr(conv, attr)
    x = torch.randn(2, 4, 7, 7, dtype=torch.float64)
    torch.testing.assert_close(masked(x), conv(x), atol=1e-12, rtol=0)
    linear = nn.Linear(3, 2)
    assert torch.equal(MaskedLinear.from_module(linear).weight, linear.weight)


def test_forward_uses_the_mask_and_removed_weights_get_zero_gradient() -> None:
    layer = MaskedLinear(5, 3)
    with torch.no_grad():
        layer.mask[0, 1] = False
        layer.mask[2, 4] = False  # stored weights deliberately left non-zero
    x = torch.randn(7, 5)
    reference = nn.Linear(5, 3)
    with torch.no_grad():
        reference.weight.copy_(layer.weight * layer.mask)
        reference.bias.copy_(layer.bias)
    torch.testing.assert_close(layer(x), reference(x), atol=1e-6, rtol=0)
    layer(x).pow(2).sum().backward()
    assert layer.weight.grad[0, 1] == 0 and layer.weight.grad[2, 4] == 0
    assert int((layer.weight.grad != 0).sum()) == 13
    layer.apply_mask_()
    assert layer.weight[0, 1] == 0 and layer.weight[2, 4] == 0


def test_mask_survives_state_dict_deepcopy_and_pickle() -> None:
    model = make_prunable(SmallCNN())
    masks = remove_some(model)
    x = torch.randn(3, 1, 8, 8)
    out = model(x)
    assert "features.0.mask" in model.state_dict()

    fresh = make_prunable(SmallCNN())
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    for copy_ in (fresh, copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert {n: m.mask for n, m in masked_layers(copy_)}.keys() == masks.keys()
        for name, layer in masked_layers(copy_):
            assert layer.mask.dtype == torch.bool and torch.equal(layer.mask, masks[name])
        torch.testing.assert_close(copy_(x), out, atol=0, rtol=0)


def test_counts_sparsity_and_live_params() -> None:
    model = make_prunable(mlp())  # weights 60 + 80 + 24 = 164, biases 10 + 8 + 3 = 21
    assert count_weights(model) == (164, 164)
    assert num_live_params(model) == 185
    with torch.no_grad():
        model[0].mask[:, :3] = False  # 30 removed
        model[4].mask[0] = False  # 8 removed
    assert count_weights(model) == (126, 164)
    assert sparsity(model) == pytest.approx(38 / 164)
    assert num_live_params(model) == 126 + 21
    assert count_weights(nn.Sequential(nn.Tanh())) == (0, 0) and sparsity(nn.Tanh()) == 0.0


def test_mask_applier_choices() -> None:
    assert mask_applier(nn.Sequential(nn.Linear(2, 2))) is None
    net = dag_mlp()
    assert mask_applier(net) == net.apply_mask_
    model = make_prunable(mlp())
    with torch.no_grad():
        model[0].mask[0, 0] = False
        model[0].weight[0, 0] = 5.0
    mask_applier(model)()
    assert model[0].weight[0, 0] == 0


def classification(n: int = 96, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long() + (x[:, 2] > 1).long()
    return x, y


@pytest.mark.parametrize("method, epochs", [("adam", 3), ("lbfgs", 15)])
def test_removed_weights_stay_exactly_zero_through_fit(method: str, epochs: int) -> None:
    model = make_prunable(mlp(seed=4))
    # Stored values of removed weights left non-zero: fit() itself must zero them (the forward
    # pass already ignores them, and Adam never moves a weight whose gradient is always zero).
    masks = remove_some(model, fraction=0.6, zero=False)
    before = {name: layer.weight.detach().clone() for name, layer in masked_layers(model)}
    x, y = classification()
    trainer = TrainerConfig(method=method, loss="cross_entropy", lr=1e-2, batch_size=16)
    fit(model, x, y, Budget(epochs=epochs), trainer)
    for name, layer in masked_layers(model):
        assert torch.equal(layer.mask, masks[name])
        assert bool((layer.weight[~layer.mask] == 0).all())
        assert not torch.equal(layer.weight[layer.mask], before[name][layer.mask])  # live ones trained
