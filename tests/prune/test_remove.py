"""netbonsai.prune.remove: pruning made permanent, loadable into the user's original class."""

from __future__ import annotations

import copy

import torch
from torch import nn

from netbonsai.nets.masked import MaskedConv2d, MaskedLinear, count_weights, make_prunable, masked_layers
from netbonsai.prune import prune_step, remove


class SmallCnn(nn.Module):
    """A user's own class (not a Sequential), with a shared head."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2))
        self.conv2 = nn.Conv2d(4, 6, 3, bias=False)
        self.fc = nn.Linear(6 * 2 * 2, 5)
        self.out = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv2(self.features(x)))
        return self.out(torch.relu(self.fc(h.flatten(1))))


def pruned() -> tuple[SmallCnn, int]:
    torch.manual_seed(0)
    model = make_prunable(SmallCnn()).eval()
    removed = prune_step(model, "magnitude-blinded", 0.6)
    return model, removed


def test_remove_gives_plain_layers_whose_state_dict_loads_into_the_original_class() -> None:
    model, removed = pruned()
    live, total = count_weights(model)
    assert removed > 0 and live == total - removed
    x = torch.randn(7, 1, 8, 8)
    expected = model(x)
    result = remove(model)
    assert result is model
    assert not masked_layers(result)
    assert not any(isinstance(m, (MaskedLinear, MaskedConv2d)) for m in result.modules())
    assert {type(m) for m in result.modules()} >= {nn.Conv2d, nn.Linear}
    original = SmallCnn().eval()
    original.load_state_dict(result.state_dict(), strict=True)  # same keys, same shapes, no mask
    torch.testing.assert_close(original(x), expected, atol=1e-6, rtol=0)
    weights = [m.weight for m in original.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    assert sum(int((w == 0).sum()) for w in weights) >= removed  # the removed weights are exact zeros


def test_remove_keeps_sharing_mode_and_grad_flags() -> None:
    shared = nn.Linear(4, 4)
    model = make_prunable(nn.Sequential(shared, nn.ReLU(), shared)).train()
    model[0].bias.requires_grad_(False)
    remove(model)
    assert type(model[0]) is nn.Linear and model[0] is model[2]
    assert model[0].training and not model[0].bias.requires_grad and model[0].weight.requires_grad


def test_bare_masked_layer_gives_a_plain_copy() -> None:
    layer = MaskedConv2d.from_module(nn.Conv2d(2, 3, 3, stride=2, padding=1, padding_mode="reflect"))
    with torch.no_grad():
        layer.mask[1] = False
    plain = remove(layer)
    assert type(plain) is nn.Conv2d and plain.padding_mode == "reflect" and plain.stride == (2, 2)
    assert bool((plain.weight[1] == 0).all())
    x = torch.randn(2, 2, 5, 5)
    torch.testing.assert_close(plain(x), layer(x))
    assert "mask" not in plain.state_dict()
