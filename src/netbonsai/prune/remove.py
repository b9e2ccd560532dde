"""Make pruning permanent: masked layers back to plain ``nn.Linear`` / ``nn.Conv2d``.

Like ``torch.nn.utils.prune.remove``: after :func:`remove` the model holds no mask, its removed
weights are stored as exact zeros, and its ``state_dict`` has the same keys and shapes as the
model had before :func:`netbonsai.nets.masked.make_prunable`, so it loads with
``load_state_dict(strict=True)`` into the user's original (unpruned) class and gives the same
outputs as the pruned model. To store fewer numbers, compact afterwards
(:func:`netbonsai.nets.compact.compact_mlp`, :func:`netbonsai.nets.compact_cnn.compact_cnn`).
"""

from __future__ import annotations

import torch
from torch import nn

from ..nets.masked import MaskedConv2d, MaskedLinear

_PLAIN: dict[type, type] = {MaskedLinear: nn.Linear, MaskedConv2d: nn.Conv2d}


@torch.no_grad()
def _plain(layer: nn.Module) -> nn.Module:
    """A plain copy of a masked layer with ``weight * mask`` as its weight (same dtype, device, mode)."""
    w = layer.weight
    if isinstance(layer, MaskedLinear):
        new = nn.utils.skip_init(nn.Linear, layer.in_features, layer.out_features, bias=layer.bias is not None,
                                 device=w.device, dtype=w.dtype)
    else:
        new = nn.utils.skip_init(
            nn.Conv2d, layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
            padding=layer.padding, dilation=layer.dilation, groups=layer.groups, bias=layer.bias is not None,
            padding_mode=layer.padding_mode, device=w.device, dtype=w.dtype,
        )
    new.weight.copy_(layer.masked_weight())
    new.weight.requires_grad_(w.requires_grad)
    if layer.bias is not None:
        new.bias.copy_(layer.bias)
        new.bias.requires_grad_(layer.bias.requires_grad)
    return new.train(layer.training)


def remove(model: nn.Module) -> nn.Module:
    """Replace every ``MaskedLinear`` / ``MaskedConv2d`` in ``model`` by a plain layer, in place.

    The new layer's weight is ``weight * mask`` (removed weights exactly 0); bias, dtype, device,
    ``requires_grad`` and train/eval mode are kept; a layer shared by several parents stays shared.
    Returns ``model`` (a bare masked layer cannot be replaced in place: its plain copy is returned).
    The new layers hold new parameters: create any optimiser afterwards. Other modules are untouched.
    """
    if type(model) in _PLAIN:
        return _plain(model)
    replaced: dict[int, nn.Module] = {}
    for parent in list(model.modules()):
        for name, child in list(parent._modules.items()):
            if child is None or type(child) not in _PLAIN:
                continue
            if id(child) not in replaced:
                replaced[id(child)] = _plain(child)
            parent._modules[name] = replaced[id(child)]
    return model
