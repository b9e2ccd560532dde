"""K layered MLPs of one shape trained as one population: the Surgeon's children of a cycle that
share a shape train together, one batched matrix product per layer instead of K small ones.

:class:`StackedMLP` holds each Linear layer's weights of all K networks as one ``(K, out, in)``
tensor and maps a shared input ``(B, ...)`` to ``(K, B, n_out)`` through ``population``, which
:func:`netbonsai.train.fit` recognises: it sums the K per-network losses before backpropagating,
so each network's gradient is its own, and elementwise optimisers (Adam) then train the K
networks exactly as K separate trainings would.
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import nn

from ..errors import InputError

SHAPE_ERROR = "networks of different shapes cannot share a population"


def _leaves(model: nn.Module) -> list[nn.Module]:
    """The leaf modules of a (nested) ``nn.Sequential``, in order."""
    out: list[nn.Module] = []
    for child in model:
        out.extend(_leaves(child) if isinstance(child, nn.Sequential) else [child])
    return out


def _split(net: nn.Module) -> tuple[list[nn.Module], list[nn.Linear], list[list[nn.Module]]]:
    """``net``'s prefix modules, its Linear layers and the modules after each Linear (up to the
    next one; after the last: its activation and the suffix). Every module but the Linears must
    be parameter-free, and every Linear must have a bias."""
    if not isinstance(net, nn.Sequential):
        raise InputError(f"a population needs nn.Sequential networks, got {type(net).__name__}")
    prefix: list[nn.Module] = []
    linears: list[nn.Linear] = []
    after: list[list[nn.Module]] = []
    for module in _leaves(net):
        if isinstance(module, nn.Linear):
            if module.bias is None:
                raise InputError("a population needs Linear layers with biases")
            linears.append(module)
            after.append([])
        elif any(True for _ in module.parameters()):
            raise InputError("a population holds Linear layers and parameter-free modules, "
                             f"not {type(module).__name__}")
        else:
            (after[-1] if linears else prefix).append(module)
    if not linears:
        raise InputError("a population needs networks with at least one Linear layer")
    return prefix, linears, after


def _signature(modules: list[nn.Module]) -> list[tuple]:
    """What must agree between two networks' parameter-free modules: type, settings and buffers."""
    return [(type(m), m.extra_repr(), tuple((name, tuple(b.shape), b.dtype) for name, b in m.named_buffers()))
            for m in modules]


def _same_buffers(a: list[nn.Module], b: list[nn.Module]) -> bool:
    return all(torch.equal(x, y.to(x.device)) for ma, mb in zip(a, b)
               for x, y in zip(ma.buffers(), mb.buffers()))


class _Stacked(nn.Module):
    """One Linear layer of all K networks: ``weight`` ``(K, out, in)``, ``bias`` ``(K, out)``.
    The names end in ``weight`` and ``bias`` so :func:`netbonsai.train.regularization.weight_l2`
    finds the weights (per network) as it does a DagNet's."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(bias)


class StackedMLP(nn.Module):
    """K same-shape layered MLPs (Linear layers with parameter-free modules around them) as one
    population model: ``population(x)`` is ``(K, B, n_out)``. Build it with
    :meth:`from_networks`; :meth:`networks` gives the K networks back with the trained weights.

    The modules between Linear layers act on a ``(K, B, n)`` tensor here, so they must work on
    the last dimension (elementwise activations, :class:`~netbonsai.gates.convert.Affine`,
    Identity, Dropout); the prefix sees the shared ``(B, ...)`` input (Flatten, Affine)."""

    def __init__(self, prefix: list[nn.Module], layers: list[_Stacked], after: list[list[nn.Module]],
                 template: nn.Sequential) -> None:
        super().__init__()
        self.prefix = nn.Sequential(*prefix)
        self.layers = nn.ModuleList(layers)
        self.after = nn.ModuleList(nn.Sequential(*run) for run in after)
        self._template = [template]  # a plain list: the template's parameters are no part of the model

    @classmethod
    def from_networks(cls, nets: Sequence[nn.Sequential]) -> "StackedMLP":
        """The population of ``nets`` (copies of their weights; the prefix, activations and suffix
        are copies of the first network's). All must have the same Linear sizes, the same module
        types and settings in the same places, and equal buffers (Affine maps), else
        :class:`InputError`."""
        nets = list(nets)
        if not nets:
            raise InputError("a population needs at least one network")
        parts = [_split(net) for net in nets]
        prefix, linears, after = parts[0]
        shape = [(lin.in_features, lin.out_features, lin.weight.dtype) for lin in linears]
        fixed = [prefix, *after]
        for other_prefix, other_linears, other_after in parts[1:]:
            other_fixed = [other_prefix, *other_after]
            same = ([(lin.in_features, lin.out_features, lin.weight.dtype) for lin in other_linears] == shape
                    and len(other_fixed) == len(fixed)
                    and all(_signature(a) == _signature(b) and _same_buffers(a, b)
                            for a, b in zip(fixed, other_fixed)))
            if not same:
                raise InputError(SHAPE_ERROR)
        with torch.no_grad():
            layers = [_Stacked(torch.stack([p[1][l].weight.detach() for p in parts]).clone(),
                               torch.stack([p[1][l].bias.detach() for p in parts]).clone())
                      for l in range(len(linears))]
        return cls(copy.deepcopy(prefix), layers, copy.deepcopy(after), copy.deepcopy(nets[0]))

    @property
    def population_size(self) -> int:
        """K, the number of networks."""
        return int(self.layers[0].weight.shape[0])

    @property
    def weights(self) -> list[nn.Parameter]:
        """Each Linear layer's stacked weights ``(K, out, in)``, in order."""
        return [layer.weight for layer in self.layers]

    @property
    def biases(self) -> list[nn.Parameter]:
        """Each Linear layer's stacked biases ``(K, out)``, in order."""
        return [layer.bias for layer in self.layers]

    def population(self, x: torch.Tensor) -> torch.Tensor:
        """``(K, B, n_out)``: every network on the shared input ``x`` ``(B, ...)``. The prefix runs
        once; each layer is one batched ``bias + h @ W^T`` (the first on ``x`` broadcast to the K
        networks without a copy)."""
        h = self.prefix(x)
        h = h.expand(self.population_size, *h.shape)
        for layer, run in zip(self.layers, self.after):
            h = run(torch.baddbmm(layer.bias.unsqueeze(1), h, layer.weight.transpose(1, 2)))
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The same as :meth:`population`."""
        return self.population(x)

    @torch.no_grad()
    def networks(self) -> list[nn.Sequential]:
        """K independent networks with the structure of the inputs (nested Sequentials kept), each
        with its trained weights and this model's prefix and suffix buffers, on its device."""
        fixed = [*self.prefix, *(m for run in self.after for m in run)]
        out: list[nn.Sequential] = []
        for k in range(self.population_size):
            net = copy.deepcopy(self._template[0])
            template_fixed = [m for m in _leaves(net) if not isinstance(m, nn.Linear)]
            for mine, theirs in zip(template_fixed, fixed):
                for name, buffer in theirs.named_buffers(recurse=False):
                    setattr(mine, name, buffer.detach().clone())
            for linear, layer in zip((m for m in _leaves(net) if isinstance(m, nn.Linear)), self.layers):
                linear.weight = nn.Parameter(layer.weight[k].detach().clone())
                linear.bias = nn.Parameter(layer.bias[k].detach().clone())
            out.append(net)
        return out
