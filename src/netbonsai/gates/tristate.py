"""The tri-state ReLU (Srinivas & Babu 2016, paper 003) and putting it into a network.

``f(x) = w x`` for ``x >= 0`` and ``w d x`` for ``x < 0``: one ``w`` per unit (a neuron, or a
channel of a conv layer's output), one ``d`` per layer, both kept in [0, 1]. ``w = 0`` is a dead
unit, ``(w, d) = (1, 0)`` a ReLU, ``(1, 1)`` the identity (the layer became linear and can merge
into the next one). ``w`` starts at 1 and ``d`` at 0, so a freshly gated network computes exactly
what the ReLU network did (the paper starts from the full network).

The forward pass is ``w * lerp(relu(x), x, d)`` (``relu(x) + d * (x - relu(x))``): three
vectorised operations, or ``w * relu(x)`` where ``d`` is not learnt. Keeping ``w`` and ``d`` in
[0, 1] is a projection after each optimiser step (:func:`clamp_gates`; the paper clips), which
:func:`~netbonsai.gates.training.train_gated` does for you.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError
from ..nets.dag import DagNet
from .layout import read_layout


class TriStateReLU(nn.Module):
    """A tri-state ReLU over ``units`` units (dimension 1 of its input: features or channels).

    ``learn_width``: ``w`` is a parameter (else a buffer of ones). ``learn_depth``: ``d`` is a
    parameter (else a buffer fixed at 0, and the forward pass is a scaled ReLU).
    """

    def __init__(self, units: int, learn_width: bool = True, learn_depth: bool = False) -> None:
        super().__init__()
        if isinstance(units, bool) or not isinstance(units, int) or units < 1:
            raise InputError(f"a tri-state ReLU needs a positive number of units, got {units!r}")
        self.units = units
        self.learn_width = bool(learn_width)
        self.learn_depth = bool(learn_depth)
        w, d = torch.ones(units), torch.zeros(())
        if self.learn_width:
            self.w = nn.Parameter(w)
        else:
            self.register_buffer("w", w)
        if self.learn_depth:
            self.d = nn.Parameter(d)
        else:
            self.register_buffer("d", d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, units, ...) -> (B, units, ...)``."""
        w = self.w if x.dim() == 2 else self.w.view(-1, *([1] * (x.dim() - 2)))
        positive = torch.relu(x)
        if self.learn_depth:
            return torch.lerp(positive, x, self.d) * w
        return positive * w

    @torch.no_grad()
    def clamp_(self) -> "TriStateReLU":
        """Project ``w`` and ``d`` onto [0, 1] (in place)."""
        self.w.clamp_(0.0, 1.0)
        self.d.clamp_(0.0, 1.0)
        return self

    @torch.no_grad()
    def binarize_(self, threshold: float = 0.5) -> "TriStateReLU":
        """Round ``w`` and ``d`` to 0 or 1 (``>= threshold`` is 1), in place."""
        self.w.copy_((self.w >= threshold).to(self.w.dtype))
        self.d.copy_((self.d >= threshold).to(self.d.dtype))
        return self

    def alive(self, threshold: float = 0.5) -> int:
        """Units whose ``w`` binarises to 1."""
        return int((self.w.detach() >= threshold).sum())

    def extra_repr(self) -> str:
        return f"units={self.units}, learn_width={self.learn_width}, learn_depth={self.learn_depth}"


def gate_modules(model: nn.Module) -> list[TriStateReLU]:
    """The tri-state ReLUs of ``model``, in module order."""
    return [m for m in model.modules() if isinstance(m, TriStateReLU)]


def gate_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The learnable ``w`` and ``d`` of every gate (they get their own learning rate, no decay)."""
    return [p for g in gate_modules(model) for p in (g.w, g.d) if isinstance(p, nn.Parameter)]


def clamp_gates(model: nn.Module) -> nn.Module:
    """Project every gate's ``w`` and ``d`` onto [0, 1] (call after each optimiser step)."""
    for g in gate_modules(model):
        g.clamp_()
    return model


def binarize_gates(model: nn.Module, threshold: float = 0.5) -> nn.Module:
    """Round every gate's ``w`` and ``d`` to 0 or 1 in place (the paper's final network)."""
    check_threshold(threshold)
    for g in gate_modules(model):
        g.binarize_(threshold)
    return model


def check_threshold(threshold: float) -> None:
    """One :class:`InputError` unless ``threshold`` is in (0, 1)."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold < 1:
        raise InputError(f"the binarising threshold must be in (0, 1), got {threshold!r}")


def gate(model: nn.Module | DagNet, width: bool = True, depth: bool = True) -> nn.Sequential:
    """Replace each hidden ReLU of ``model`` by a :class:`TriStateReLU` and return the model.

    ``model`` is an ``nn.Sequential`` (nested ones too) of Linear / Conv2d layers with ReLU,
    BatchNorm, pooling, Dropout and Flatten (see :mod:`netbonsai.gates.layout`); it is changed in
    place (the new gates sit on its device and dtype). A layered ReLU :class:`DagNet` (population
    size 1) is first turned into an equivalent Sequential (:func:`~netbonsai.gates.convert.sequential_from_dag`,
    its standardisation kept as fixed Affine maps), and that new Sequential is returned.

    ``width``: learn each unit's ``w``; ``depth``: learn ``d`` where a merge into the next layer
    is possible (a Linear feeding a Linear); elsewhere ``d`` stays 0.
    """
    from .convert import sequential_from_dag

    for name, flag in (("width", width), ("depth", depth)):
        if not isinstance(flag, bool):
            raise InputError(f"gate(): {name} must be True or False, got {flag!r}")
    if not width and not depth:
        raise InputError("gate(): learn width, depth or both; with neither a gate is a plain ReLU")
    if isinstance(model, DagNet):
        model = sequential_from_dag(model)
    layout = read_layout(model)
    if any(isinstance(m, TriStateReLU) for m in layout.modules):
        raise InputError("the model already has tri-state gates")
    if not layout.sites:
        raise InputError("the model has no ReLU after a hidden Linear or Conv2d layer to gate")
    where = _parents(model)
    for site in layout.sites:
        relu = layout.modules[site.position]
        weight = layout.modules[layout.layers[site.layer]].weight
        new = TriStateReLU(site.units, learn_width=width, learn_depth=depth and site.mergeable)
        parent, name = where[id(relu)]
        parent._modules[name] = new.to(weight.device, weight.dtype)
    return model


def _parents(model: nn.Sequential) -> dict[int, tuple[nn.Module, str]]:
    """Leaf module id -> (its parent Sequential, its name there)."""
    found: dict[int, tuple[nn.Module, str]] = {}
    for parent in model.modules():
        if isinstance(parent, nn.Sequential):
            for name, child in parent._modules.items():
                if child is not None and not isinstance(child, nn.Sequential):
                    if id(child) in found:
                        raise InputError(f"module {type(child).__name__} appears twice in the model; "
                                         "gates need each layer once")
                    found[id(child)] = (parent, name)
    return found

