"""DagNet <-> Sequential for gating and surgery: a layered DagNet as ``Affine, Linear, ReLU, ...,
Linear, Affine`` (any DagNet activation in place of ReLU) and back, with the DagNet's
standardisation kept as fixed maps rather than folded.

Why not :func:`netbonsai.nets.to_sequential`: it folds the standardisation into the weights, so
the gated network would train on raw inputs (brightness differences of std 0.06 make the first
layer's weights 16 times larger). Here the maps stay outside the weights: the gated network
trains exactly as the DagNet did, and the collapsed one converts back to a DagNet with the same
normalisation (:func:`dag_from_sequential`).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError
from ..nets.activations import MODULE_TO_NAME
from ..nets.convert import from_sequential, to_sequential
from ..nets.dag import DagNet
from .layout import DROPOUTS, flat_modules

# The activation modules a DagNet node can stand for (nn.Identity is dropped before the check).
_ACTIVATION_TYPES: tuple[type, ...] = tuple(t for t in MODULE_TO_NAME if t is not nn.Identity)


class Affine(nn.Module):
    """A fixed elementwise map ``x * scale + shift`` over the last dimension (buffers, no
    parameters): a DagNet's input standardisation or output de-standardisation."""

    def __init__(self, scale: torch.Tensor, shift: torch.Tensor) -> None:
        super().__init__()
        scale = torch.as_tensor(scale, dtype=torch.get_default_dtype()).reshape(-1)
        shift = torch.as_tensor(shift, dtype=scale.dtype).reshape(-1)
        if scale.shape != shift.shape or not bool(torch.isfinite(scale).all() and torch.isfinite(shift).all()):
            raise InputError("an Affine map needs finite scale and shift vectors of one length")
        self.register_buffer("scale", scale.clone())
        self.register_buffer("shift", shift.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.shift, x, self.scale)

    def extra_repr(self) -> str:
        return f"features={self.scale.numel()}"


def sequential_from_dag(net: DagNet) -> nn.Sequential:
    """``Affine(in), Linear, ReLU, ..., Linear, Affine(out)`` computing ``net``'s function (each
    level's activation module in place of ReLU: ``nn.Tanh`` for a tanh network).

    ``net`` must be a layered population-1 DagNet (see :func:`netbonsai.nets.to_sequential`);
    its standardisation becomes the two fixed :class:`Affine` maps (identity maps are left out).
    """
    if not isinstance(net, DagNet):
        raise InputError(f"sequential_from_dag needs a DagNet, got {type(net).__name__}")
    if net.population_size != 1:
        raise InputError("gating a DagNet needs population size 1")
    bare = net.clone()
    n_in, n_out = net.n_in, net.n_out
    bare.set_normalization(torch.zeros(n_in), torch.ones(n_in), torch.zeros(n_out), torch.ones(n_out))
    layers = list(to_sequential(bare))
    device, dtype = net.weight.device, net.weight.dtype
    in_scale = net.in_scale.to(device, dtype)
    modules: list[nn.Module] = []
    if not (bool((net.in_shift == 0).all()) and bool((net.in_scale == 1).all())):
        modules.append(Affine(1.0 / in_scale, -net.in_shift.to(device, dtype) / in_scale).to(device, dtype))
    modules.extend(layers)
    if not (bool((net.out_shift == 0).all()) and bool((net.out_scale == 1).all())):
        modules.append(Affine(net.out_scale, net.out_shift).to(device, dtype))
    return nn.Sequential(*modules)


def dag_from_sequential(model: nn.Sequential) -> DagNet | None:
    """The DagNet of a plain MLP Sequential (Linear layers, the activations DagNet knows (ReLU,
    Tanh, Sigmoid, Softplus, ELU: ``nets.activations.MODULE_TO_NAME``), Identity, Dropout, an
    opening and a closing :class:`Affine`, a leading ``Flatten``), or None when it holds anything
    else (BatchNorm, convolutions, two activations in a row). The Affine maps become the
    DagNet's standardisation."""
    modules = [m for m in flat_modules(model) if not isinstance(m, (nn.Identity, *DROPOUTS))]
    while modules and isinstance(modules[0], nn.Flatten):
        modules.pop(0)
    opening = modules.pop(0) if modules and isinstance(modules[0], Affine) else None
    closing = modules.pop() if modules and isinstance(modules[-1], Affine) else None
    if not modules or not all(type(m) is nn.Linear or type(m) in _ACTIVATION_TYPES for m in modules):
        return None
    activations = [type(m) in _ACTIVATION_TYPES for m in modules]
    if any(a and b for a, b in zip(activations, activations[1:])):
        return None
    if any(m.in_features == 0 or m.out_features == 0 for m in modules if isinstance(m, nn.Linear)):
        return None
    net = from_sequential(nn.Sequential(*modules))
    if opening is None and closing is None:
        return net
    n_in, n_out = net.n_in, net.n_out
    in_shift, in_scale = torch.zeros(n_in), torch.ones(n_in)
    out_shift, out_scale = torch.zeros(n_out), torch.ones(n_out)
    if opening is not None:  # x * a + b = (x - shift) / scale with scale = 1 / a, shift = -b / a
        a, b = opening.scale.detach().cpu().double(), opening.shift.detach().cpu().double()
        in_scale, in_shift = 1.0 / a, -b / a
    if closing is not None:
        out_scale, out_shift = closing.scale.detach().cpu(), closing.shift.detach().cpu()
    return net.set_normalization(in_shift, in_scale, out_shift, out_scale)
