"""Masked layers: ``nn.Linear`` / ``nn.Conv2d`` whose weights carry a boolean keep-mask.

A removed weight is a mask entry set to False and its weight set to 0, as in DagNet. The forward
pass multiplies the weight by the mask, so a removed weight has zero gradient and never changes
the output, whatever an optimiser does to it; :meth:`apply_mask_` (called by
:func:`netbonsai.train.fit` after every step) also keeps its stored value exactly zero.

The mask is a registered buffer: it travels with ``state_dict()``, ``copy.deepcopy``, pickling
and ``.to(device)``. Sparsity here is the fraction of *removed* weights (the seed paper's
xi(f), the fraction of non-zero entries, is the density ``1 - sparsity``).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F


class _Masked:
    """Shared behaviour of the masked layers (a mixin over an ``nn.Module`` with ``weight``)."""

    weight: nn.Parameter
    mask: torch.Tensor

    def _init_mask(self) -> None:
        mask = torch.ones_like(self.weight, dtype=torch.bool)
        self.register_buffer("mask", mask)  # type: ignore[attr-defined]

    def masked_weight(self) -> torch.Tensor:
        """The effective weight ``weight * mask`` used by the forward pass."""
        return self.weight * self.mask

    @torch.no_grad()
    def apply_mask_(self):
        """Set removed weights to exactly zero in place; returns the layer."""
        self.weight.mul_(self.mask)
        return self

    @classmethod
    def _copy_state(cls, new: nn.Module, layer: nn.Module) -> nn.Module:
        with torch.no_grad():
            new.weight.copy_(layer.weight)
            if layer.bias is not None:
                new.bias.copy_(layer.bias)
            old_mask = getattr(layer, "mask", None)
            if isinstance(old_mask, torch.Tensor) and old_mask.shape == new.mask.shape:
                new.mask.copy_(old_mask.to(torch.bool))
        new.weight.requires_grad_(layer.weight.requires_grad)
        if layer.bias is not None:
            new.bias.requires_grad_(layer.bias.requires_grad)
        new.train(layer.training)
        return new


class MaskedLinear(_Masked, nn.Linear):
    """``nn.Linear`` computing ``x @ (weight * mask).T + bias``."""

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None
    ) -> None:
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self._init_mask()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)

    @classmethod
    def from_module(cls, layer: nn.Linear) -> "MaskedLinear":
        """A masked copy of ``layer`` (same weights, bias, dtype, device; all weights live,
        or ``layer``'s own mask when it already has one)."""
        w = layer.weight
        new = cls(
            layer.in_features, layer.out_features, bias=layer.bias is not None, device=w.device, dtype=w.dtype
        )
        return cls._copy_state(new, layer)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, live={int(self.mask.sum())}/{self.mask.numel()}"


class MaskedConv2d(_Masked, nn.Conv2d):
    """``nn.Conv2d`` convolving with ``weight * mask`` (every ``padding_mode`` supported)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._init_mask()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight * self.mask, self.bias)

    @classmethod
    def from_module(cls, layer: nn.Conv2d) -> "MaskedConv2d":
        """A masked copy of ``layer`` with the same configuration, weights and bias."""
        w = layer.weight
        new = cls(
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,
            stride=layer.stride,
            padding=layer.padding,
            dilation=layer.dilation,
            groups=layer.groups,
            bias=layer.bias is not None,
            padding_mode=layer.padding_mode,
            device=w.device,
            dtype=w.dtype,
        )
        return cls._copy_state(new, layer)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, live={int(self.mask.sum())}/{self.mask.numel()}"


MASKED_TYPES: dict[type, type] = {nn.Linear: MaskedLinear, nn.Conv2d: MaskedConv2d}


def make_prunable(model: nn.Module) -> nn.Module:
    """Replace every ``nn.Linear`` / ``nn.Conv2d`` inside ``model`` by its masked version, in place.

    Outputs are unchanged (all weights start live). Only modules of exactly these types are
    replaced: subclasses (e.g. the output projection of ``nn.MultiheadAttention``, whose owner
    reads the weight directly) are left alone. A layer shared by several parents is replaced by
    one shared masked layer. Idempotent. The new layers hold new parameters, so create the
    optimiser afterwards. A bare ``nn.Linear``/``nn.Conv2d`` cannot be replaced in place: its
    masked copy is returned instead.
    """
    if type(model) in MASKED_TYPES:
        return MASKED_TYPES[type(model)].from_module(model)
    replaced: dict[int, nn.Module] = {}
    for parent in list(model.modules()):
        for name, child in list(parent._modules.items()):
            if child is None or type(child) not in MASKED_TYPES:
                continue
            if id(child) not in replaced:
                replaced[id(child)] = MASKED_TYPES[type(child)].from_module(child)
            parent._modules[name] = replaced[id(child)]
    return model


def masked_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, layer)`` of every masked layer in ``model``, in ``named_modules`` order (shared ones once)."""
    return [(name, module) for name, module in model.named_modules() if isinstance(module, _Masked)]


@torch.no_grad()
def apply_masks_(model: nn.Module) -> nn.Module:
    """Zero the removed weights of every masked layer in place; returns ``model``."""
    for _, layer in masked_layers(model):
        layer.apply_mask_()
    return model


def mask_applier(model: nn.Module) -> Callable[[], object] | None:
    """What keeps ``model``'s removed weights at zero after an optimiser step, or None.

    A model with its own ``apply_mask_`` (DagNet) uses it; otherwise the masked layers found
    now are re-masked; a model with neither needs nothing.
    """
    own = getattr(model, "apply_mask_", None)
    if callable(own):
        return own
    layers = [layer for _, layer in masked_layers(model)]
    if not layers:
        return None

    @torch.no_grad()
    def apply() -> None:
        for layer in layers:
            layer.apply_mask_()

    return apply


def _is_recurrent(model: nn.Module) -> bool:
    """A population model with its own typed masked weights (``netbonsai.nets.recurrent.MaskedRecurrent``)."""
    return all(callable(getattr(model, name, None)) for name in ("masked_weights", "dense_weights"))


def count_weights(model: nn.Module) -> tuple[int, int]:
    """``(live, total)`` weights over the masked layers (biases and other parameters excluded).

    A :class:`~netbonsai.nets.recurrent.MaskedRecurrent` counts its i2h and h2h weights (what
    paper 001 prunes), all members together; its total is what the structures have unpruned
    (padding and connections the structure lacks are not weights).
    """
    if _is_recurrent(model):
        return int(model.live_weights().sum()), int(model.dense_weights().sum())
    live = total = 0
    for _, layer in masked_layers(model):
        live += int(layer.mask.sum())
        total += layer.mask.numel()
    return live, total


def sparsity(model: nn.Module) -> float:
    """Fraction of the masked layers' weights that are removed (0.0 with no masked layers)."""
    live, total = count_weights(model)
    return 1.0 - live / total if total else 0.0


def num_live_params(model: nn.Module) -> int:
    """Parameters a compact model would store: live masked weights plus every other parameter
    (biases, unmasked layers, normalisation) counted in full. A MaskedRecurrent counts its
    members' ``num_params_per_variant()`` (live weights, biases of real units, embeddings), all together."""
    if _is_recurrent(model):
        return int(model.num_params_per_variant().sum())
    masked = {id(layer.weight) for _, layer in masked_layers(model)}
    others = sum(p.numel() for p in model.parameters() if id(p) not in masked)
    return count_weights(model)[0] + others
