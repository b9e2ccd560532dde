"""Where gates go in a Sequential network, and the structure the penalty and the collapse need.

A model is an ``nn.Sequential`` (nested Sequentials are read flat) of weighted layers
(``nn.Linear``, ``nn.Conv2d`` and their masked subclasses) with ReLU, BatchNorm, pooling,
Dropout and ``Flatten`` between them (netbonsai's :class:`~netbonsai.gates.convert.Affine` may
open and close it). The first ``nn.ReLU`` between two consecutive weighted layers is a *site*:
the tri-state gate of the earlier layer's units (neurons, or channels of a conv) goes there.
A ReLU after the last weighted layer belongs to the output and is never gated.

Rules (the paper is silent on them; chosen so that the collapse stays exact):

- between a weighted layer and its gate only BatchNorm (of that layer's units), pooling (after a
  conv), Dropout and ``nn.Identity``: a ``Flatten`` there would turn channels into features;
- between a gate and the next weighted layer only pooling, Dropout, ``Flatten`` and
  ``nn.Identity``, all of which map a dead unit's zeros to zeros. A BatchNorm there would turn
  them into a constant, which a padded conv cannot absorb: put BatchNorm before the ReLU;
- a site's depth (the layer becoming linear and merging into the next) is learnable only for
  ``Linear -> [BatchNorm1d, Dropout] -> gate -> [Dropout] -> Linear``: no merge across pooling
  (the paper), and none of conv layers (their product is a larger kernel, not a smaller layer).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..errors import InputError
from ..nets.compact_cnn import split_cnn

POOLS: tuple[type, ...] = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
DROPOUTS: tuple[type, ...] = (nn.Dropout, nn.Dropout2d, nn.AlphaDropout)
BATCHNORMS: tuple[type, ...] = (nn.BatchNorm1d, nn.BatchNorm2d)


def flat_modules(model: nn.Module) -> list[nn.Module]:
    """The leaf modules of a (nested) ``nn.Sequential``, in order."""
    out: list[nn.Module] = []
    for child in model:
        out.extend(flat_modules(child) if isinstance(child, nn.Sequential) else [child])
    return out


def is_weighted(module: nn.Module) -> bool:
    """Whether ``module`` is a layer whose output units a gate can select (Linear or Conv2d)."""
    return isinstance(module, (nn.Linear, nn.Conv2d))


def _is_gate(module: nn.Module) -> bool:
    from .tristate import TriStateReLU

    return isinstance(module, TriStateReLU)


def _is_site(module: nn.Module) -> bool:
    return type(module) is nn.ReLU or _is_gate(module)


@dataclass(frozen=True)
class Site:
    """One gate position: ``position`` in :func:`flat_modules`, the weighted ``layer`` whose
    ``units`` it gates, and whether a depth merge into the next Linear is possible there."""

    position: int
    layer: int
    units: int
    mergeable: bool


@dataclass(frozen=True)
class Layout:
    """A gateable network read flat.

    ``layers[k]`` is the position of weighted layer ``k``; ``units_in`` the input units of layer
    0 (features or channels); ``per_pair[k]`` the weights of layer ``k`` per (input unit, output
    unit) pair (1 for a Linear, the kernel area for a conv, the spatial positions a channel
    spreads over after a ``Flatten``); ``bias[k]`` whether it has a bias; ``batchnorm[k]`` the
    parameters per unit of the BatchNorm between layer ``k`` and its gate (0 or 2); ``sites`` the
    gate positions, in order.
    """

    modules: list[nn.Module]
    layers: list[int]
    units_in: int
    per_pair: list[int]
    bias: list[bool]
    batchnorm: list[int]
    sites: list[Site]

    def out_units(self, k: int) -> int:
        """The output units (neurons, or channels) of weighted layer ``k``."""
        return int(self.modules[self.layers[k]].weight.shape[0])

    def site_of(self, k: int) -> Site | None:
        """The gate site of weighted layer ``k``, or None (a linear layer, or the output)."""
        for site in self.sites:
            if site.layer == k:
                return site
        return None


def read_layout(model: nn.Module) -> Layout:
    """The :class:`Layout` of ``model`` (ungated or gated); one :class:`InputError` naming the
    first module that breaks the rules of the module docstring."""
    from .convert import Affine

    if not isinstance(model, nn.Sequential):
        raise InputError(f"gates need an nn.Sequential model, got {type(model).__name__}")
    modules = flat_modules(model)
    shape_check = [m for m in modules if not _is_gate(m) and not isinstance(m, Affine)]
    split_cnn(nn.Sequential(*shape_check))  # the weighted layers chain (Flatten, channels, groups)
    layers = [i for i, m in enumerate(modules) if is_weighted(m)]
    for i, m in enumerate(modules):
        if isinstance(m, Affine) and layers[0] < i < layers[-1]:
            raise InputError(f"module {i} (Affine) sits between weighted layers; it may only open or close the model")
    sites: list[Site] = []
    batchnorm = [0] * len(layers)
    per_pair: list[int] = []
    for k, (start, stop) in enumerate(zip(layers, layers[1:] + [len(modules)])):
        layer = modules[start]
        units = int(layer.weight.shape[0])
        fan = int(layer.weight[0].numel())
        previous = int(layer.weight.shape[1]) if k == 0 else int(modules[layers[k - 1]].weight.shape[0])
        per_pair.append(fan // previous)
        between = list(range(start + 1, stop))
        found = [i for i in between if _is_site(modules[i])]
        if k == len(layers) - 1:
            if any(_is_gate(modules[i]) for i in between):
                raise InputError(f"module {found[0]} gates the output layer; only hidden layers take gates")
            continue
        if not found:
            continue
        site = found[0]
        for i in between:
            m = modules[i]
            where = f"module {i} ({type(m).__name__})"
            if i == site or isinstance(m, (nn.Identity, *DROPOUTS)):
                continue
            if i < site:
                if isinstance(m, BATCHNORMS):
                    batchnorm[k] = 2 if m.affine else 0
                    if not m.track_running_stats:
                        raise InputError(f"{where}: BatchNorm without running statistics cannot be collapsed")
                elif not (isinstance(m, POOLS) and isinstance(layer, nn.Conv2d)):
                    raise InputError(f"{where} between layer {start} and its ReLU: only BatchNorm, pooling, Dropout "
                                     "may sit there (put a Flatten after the ReLU)")
            elif not isinstance(m, (*POOLS, nn.Flatten)) or _is_site(m):
                raise InputError(f"{where} after the ReLU of layer {start}: only pooling, Dropout and Flatten may "
                                 "follow a gated ReLU (put BatchNorm and other activations before it)")
        nxt = modules[stop]
        plain_between = all(isinstance(modules[i], (nn.Identity, *DROPOUTS, nn.BatchNorm1d)) for i in between
                            if i < site) and all(isinstance(modules[i], (nn.Identity, *DROPOUTS)) for i in between
                                                 if i > site)
        mergeable = isinstance(layer, nn.Linear) and isinstance(nxt, nn.Linear) and plain_between
        sites.append(Site(site, k, units, mergeable))
    first = modules[layers[0]]
    return Layout(modules, layers, int(first.weight.shape[1]), per_pair,
                  [modules[p].bias is not None for p in layers], batchnorm, sites)
