"""Collapse a trained gated network into the small plain network it stands for.

Steps (the paper's second phase, automated; it did the depth part by hand):

1. binarise every gate (``>= threshold`` is 1; the paper's final network uses binary values);
2. a unit with ``w = 0`` outputs 0: its columns in the next weighted layer are zeroed, and
   :func:`netbonsai.nets.compact_cnn.compact_cnn` removes it with its fan-in, fan-out and
   BatchNorm entries (and any unit that thereby became dead or constant);
3. a gate with ``d = 1`` is the identity, ``d = 0`` a ReLU;
4. each run of Linear layers with nothing nonlinear between them (the identity gates, Dropout,
   BatchNorm1d, folded) is merged where that lowers the parameter count: the cheapest choice of
   which layers of the run to keep, by dynamic programming over the run (ties keep the layer).
   Never across pooling or a conv (only Linear layers merge).

The result is a plain ``nn.Sequential`` in eval mode (Linear, Conv2d, BatchNorm, ReLU, pooling,
Flatten, Dropout, the opening / closing :class:`~netbonsai.gates.convert.Affine` maps) computing
the binarised gated network's function in eval mode, up to float rounding; its parameter count
is what it stores. A plain MLP also comes back as a DagNet.

A layer whose every gate is 0 leaves the network constant from there on; it collapses to a
zero-width layer (a ``Linear(0, n)`` supplies its consumer's bias), which torch runs but ONNX and
DagNet cannot hold (``dag`` is None then).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from ..nets.compact_cnn import compact_cnn
from ..nets.dag import DagNet
from .convert import dag_from_sequential
from .layout import DROPOUTS, flat_modules, read_layout
from .tristate import TriStateReLU, check_threshold, binarize_gates

_AFFINE_LINKS = (nn.Identity, nn.BatchNorm1d, *DROPOUTS)


@dataclass
class Collapsed:
    """The collapsed network: ``module`` (plain, eval mode), its stored ``params``, the live
    ``widths`` of its weighted layers' outputs (input first), how many layers were ``merged``
    away, and ``dag`` (the same network as a DagNet, or None when it is not a plain MLP)."""

    module: nn.Sequential
    params: int
    widths: list[int]
    merged: int
    dag: DagNet | None

    def summary(self) -> dict:
        """JSON-ready record (no network)."""
        return {"params": self.params, "widths": self.widths, "merged": self.merged}


def binarized(model: nn.Module, threshold: float = 0.5) -> nn.Sequential:
    """A flat copy of gated ``model`` with binarised gates, in eval mode (what is collapsed)."""
    check_threshold(threshold)
    copied = binarize_gates(copy.deepcopy(model), threshold)
    return nn.Sequential(*flat_modules(copied)).eval()


@torch.no_grad()
def collapse(model: nn.Module, threshold: float = 0.5, merge: bool = True) -> Collapsed:
    """The plain network of gated ``model`` (see the module docstring); ``model`` is unchanged.
    ``merge=False`` keeps every layer (identity gates then leave no activation)."""
    flat = binarized(model, threshold)
    layout = read_layout(flat)
    modules = list(flat)
    for site in layout.sites:
        gate = modules[site.position]
        if not isinstance(gate, TriStateReLU):
            continue
        dead = gate.w.detach() == 0
        if bool(dead.any()):
            consumer = modules[layout.layers[site.layer + 1]]
            view = consumer.weight.data.view(consumer.weight.shape[0], site.units, -1)
            view[:, dead.to(view.device)] = 0
        modules[site.position] = nn.Identity() if bool(gate.d.detach() >= 0.5) else nn.ReLU()
    small = list(compact_cnn(nn.Sequential(*modules)).eval())
    merged = 0
    if merge:
        small, merged = _merge_linear_runs(small)
    small = [m for m in small if type(m) is not nn.Identity]
    module = nn.Sequential(*small).eval()
    widths = [int(m.weight.shape[0]) for m in module if isinstance(m, (nn.Linear, nn.Conv2d))]
    first = next(m for m in module if isinstance(m, (nn.Linear, nn.Conv2d)))
    return Collapsed(module, sum(p.numel() for p in module.parameters()), [int(first.weight.shape[1])] + widths,
                     merged, dag_from_sequential(module))


def _merge_linear_runs(modules: list[nn.Module]) -> tuple[list[nn.Module], int]:
    """Merge the runs of Linear layers joined only by affine modules where it pays."""
    out: list[nn.Module] = []
    merged = 0
    i = 0
    while i < len(modules):
        if type(modules[i]) is not nn.Linear:
            out.append(modules[i])
            i += 1
            continue
        run, links = [modules[i]], []  # links[j]: the modules between run[j] and run[j + 1]
        j = i + 1
        while True:
            k = j
            while k < len(modules) and isinstance(modules[k], _AFFINE_LINKS):
                k += 1
            if k < len(modules) and type(modules[k]) is nn.Linear:
                links.append(modules[j:k])
                run.append(modules[k])
                j = k + 1
            else:
                break
        kept, gone = _merge_run(run, links)
        out.extend(kept)
        merged += gone
        i = j
    return out, merged


def _merge_run(run: list[nn.Linear], links: list[list[nn.Module]]) -> tuple[list[nn.Module], int]:
    """The cheapest mix of kept and merged layers for one run (dynamic programming), and how
    many layers merging removed."""
    if len(run) == 1:
        return [run[0]], 0
    sizes = [run[0].in_features] + [layer.out_features for layer in run]
    norm_params = [0] + [sum(p.numel() for m in link for p in m.parameters()) for link in links] + [0]
    has_norm = [False] + [any(isinstance(m, nn.BatchNorm1d) for m in link) for link in links] + [False]

    def cost(a: int, b: int) -> int:  # one Linear from boundary a to boundary b, plus b's BatchNorm
        bias = any(run[j].bias is not None for j in range(a, b)) or any(has_norm[a + 1 : b])
        return sizes[a] * sizes[b] + (sizes[b] if bias else 0) + norm_params[b]

    n = len(run)
    best, back = [0] + [None] * n, [0] * (n + 1)
    for b in range(1, n + 1):
        for a in range(b - 1, -1, -1):  # the nearest start first: a tie keeps the layers apart
            value = best[a] + cost(a, b)
            if best[b] is None or value < best[b]:
                best[b], back[b] = value, a
    cuts, b = [], n
    while b > 0:
        cuts.append((back[b], b))
        b = back[b]
    out: list[nn.Module] = []
    for a, b in reversed(cuts):
        out.append(run[a] if b == a + 1 else _compose(run[a:b], links[a : b - 1]))
        if b < n:
            out.extend(links[b - 1])
    return out, n - len(cuts)


def _compose(layers: list[nn.Linear], links: list[list[nn.Module]]) -> nn.Linear:
    """One Linear equal to ``layers`` with the affine ``links`` between them (eval mode), in float64."""
    first = layers[0].weight
    weight = torch.eye(layers[0].in_features, dtype=torch.float64, device=first.device)
    shift = torch.zeros(layers[0].in_features, dtype=torch.float64, device=first.device)
    for j, layer in enumerate(layers):
        w = layer.weight.detach().double()
        weight, shift = w @ weight, w @ shift
        if layer.bias is not None:
            shift = shift + layer.bias.detach().double()
        for m in links[j] if j < len(links) else []:
            if isinstance(m, nn.BatchNorm1d):
                scale = 1.0 / torch.sqrt(m.running_var.double() + m.eps)
                offset = -m.running_mean.double() * scale
                if m.affine:
                    scale, offset = scale * m.weight.detach().double(), offset * m.weight.detach().double() + m.bias.detach().double()
                weight, shift = scale[:, None] * weight, scale * shift + offset
    bias = any(layer.bias is not None for layer in layers) or any(isinstance(m, nn.BatchNorm1d) for link in links for m in link)
    new = nn.Linear(weight.shape[1], weight.shape[0], bias=bias, device=first.device, dtype=first.dtype)
    new.weight.copy_(weight)
    if bias:
        new.bias.copy_(shift)
    return new
