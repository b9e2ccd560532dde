"""Structured (channel) pruning of Sequential CNNs: remove whole output channels, then compact.

:func:`channel_prune` ranks each hidden conv's output channels by the norm of their (masked)
weights, as Torch-Pruning's ``MagnitudeImportance`` (``"l1"``: p=1, ``"l2"``: p=2), and removes
the lowest ``amount`` fraction per layer: the channel's incoming weights *and* its consumer's
weights on it (the next conv's input channel, or after ``Flatten`` the next Linear's columns)
are masked, so the channel is dead and :func:`netbonsai.nets.compact_cnn.compact_cnn` removes it
with its BatchNorm entries. The result is a smaller dense CNN of plain layers. Like
Torch-Pruning, this changes the function (the channel's bias no longer reaches the output):
fine-tune afterwards (before compaction, pass ``compact=False`` and train the masked model).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError
from ..nets.compact_cnn import _is_conv, compact_cnn, split_cnn
from ..nets.masked import MaskedConv2d, MaskedLinear, make_prunable

IMPORTANCES = {"l1": 1, "l2": 2}


def channel_importance(layer: nn.Module, importance: str = "l1") -> torch.Tensor:
    """Per-output-channel norm of ``weight * mask`` (``(out_channels,)``)."""
    if importance not in IMPORTANCES:
        raise InputError(f"unknown importance {importance!r}; choose one of {', '.join(IMPORTANCES)}")
    w = layer.weight.detach()
    mask = getattr(layer, "mask", None)
    if mask is not None:
        w = w * mask.to(w.dtype)
    return w.reshape(w.shape[0], -1).norm(p=IMPORTANCES[importance], dim=1)


@torch.no_grad()
def channel_prune(model: nn.Sequential, amount: float, importance: str = "l1", compact: bool = True) -> nn.Module:
    """Remove the ``amount`` fraction (0 <= amount < 1, rounded, at least one channel kept) of every
    hidden conv's output channels with the lowest ``importance`` (see the module docstring).

    ``model`` (an ``nn.Sequential`` CNN as :func:`compact_cnn` accepts) is made prunable and
    masked in place; returns ``compact_cnn(model)`` (plain layers, fewer channels), or ``model``
    itself with ``compact=False``. The last weighted layer's outputs are never removed.
    """
    if not 0 <= float(amount) < 1:
        raise InputError(f"amount must be a fraction in [0, 1), got {amount}")
    cnn = split_cnn(model)
    if any(type(m) in (nn.Linear, nn.Conv2d) for m in cnn.layers):
        make_prunable(model)
        cnn = split_cnn(model)
    if not all(isinstance(m, (MaskedConv2d, MaskedLinear)) for m in cnn.layers):
        raise InputError("channel_prune needs nn.Linear / nn.Conv2d (or masked) layers")
    for i, layer in enumerate(cnn.layers[:-1]):
        if not _is_conv(layer):
            continue
        n = layer.weight.shape[0]
        count = min(int(amount * n + 0.5), n - 1)
        if count <= 0:
            continue
        scores = channel_importance(layer, importance)
        order = torch.argsort(scores, stable=True)[:count]
        layer.mask[order] = False
        consumer, s = cnn.layers[i + 1], cnn.spread[i]
        view = consumer.mask.view(consumer.mask.shape[0], n, s, -1)
        view[:, order.to(view.device)] = False
        layer.apply_mask_()
        consumer.apply_mask_()
    return compact_cnn(model) if compact else model
