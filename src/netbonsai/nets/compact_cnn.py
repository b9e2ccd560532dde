"""Physical compaction of pruned Sequential CNNs: remove dead and constant channels, shrink the layers.

:func:`compact_cnn` turns an ``nn.Sequential`` (nested ones are flattened) of ``Conv2d`` /
``MaskedConv2d``, ``BatchNorm2d``, elementwise activations, pooling, ``Flatten``, ``Dropout`` and
``Linear`` / ``MaskedLinear`` layers into a model of **plain** layers (no mask) computing the same
function in eval mode, with fewer channels and neurons:

- a hidden channel (a conv's output channel, or a hidden Linear neuron) that no later layer reads
  (all the consumer's weights on it are removed: the next conv's input channel, or after
  ``Flatten`` the next Linear's matching input columns) is *dead* and removed, with its BatchNorm
  entries;
- a channel with no live incoming weight is *constant*: after its BatchNorm and activations it is
  one value ``v`` at every position. It is removed when that is exact: ``v == 0``, or its consumer
  is a Linear or an unpadded conv (``v * sum of the consumer's weights on it`` is added to the
  consumer's bias). A constant channel read by a padded conv (borders see the zero padding) with
  ``v != 0`` is kept;
- removals can make other channels dead or constant, so this repeats until stable.

The input channels and the last layer's outputs are never removed. Unstructured sparsity inside a
kept channel stays stored as zeros: :func:`cnn_counts` reports the stored and the live numbers.
BatchNorm must track running statistics (eval mode is what is compacted); grouped convolutions
are not supported. Anything else between weighted layers raises :class:`InputError`.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import InputError
from .compact import ELEMENTWISE, _flatten, _is_elementwise, effective_weight

_POOLS: tuple[type, ...] = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
_DROPOUTS: tuple[type, ...] = (nn.Dropout, nn.Dropout2d, nn.AlphaDropout)


def _is_conv(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d)


def _is_fc(m: nn.Module) -> bool:
    return isinstance(m, nn.Linear)


def _weighted(m: nn.Module) -> bool:
    return _is_conv(m) or _is_fc(m)


@dataclass
class _Cnn:
    """``prefix``, ``layers[0]``, ``between[0]``, ``layers[1]``, ..., ``layers[-1]``, ``suffix``."""

    prefix: list[nn.Module]
    layers: list[nn.Module]
    between: list[list[nn.Module]]
    suffix: list[nn.Module]
    spread: list[int]  # spread[i]: input columns of layers[i + 1] per output channel of layers[i]


def split_cnn(model: nn.Module) -> _Cnn:
    """Parse a Sequential CNN (raises :class:`InputError` naming the first unsupported module)."""
    if not isinstance(model, nn.Sequential):
        raise InputError(f"CNN compaction needs an nn.Sequential, got {type(model).__name__}")
    modules = _flatten(model)
    positions = [i for i, m in enumerate(modules) if _weighted(m)]
    if not positions:
        raise InputError("CNN compaction needs an nn.Sequential with at least one Conv2d or Linear layer")
    for p in positions:
        m = modules[p]
        if _is_conv(m) and m.groups != 1:
            raise InputError(f"layer {p} ({type(m).__name__}) has groups={m.groups}: grouped convolutions "
                             "are not supported")
        mask = getattr(m, "mask", None)
        if mask is not None and (not isinstance(mask, torch.Tensor) or mask.shape != m.weight.shape):
            raise InputError(f"layer {p}: mask must be a tensor of the weight's shape {tuple(m.weight.shape)}")
    layers = [modules[p] for p in positions]
    between = [modules[p + 1:q] for p, q in zip(positions, positions[1:])]
    spread = []
    for k, (a, b, mods) in enumerate(zip(layers, layers[1:], between)):
        flattened = False
        for j, m in enumerate(mods):
            where = f"module {positions[k] + 1 + j} ({type(m).__name__})"
            if isinstance(m, nn.Flatten):
                if not _is_conv(a) or flattened or m.start_dim != 1 or m.end_dim != -1:
                    raise InputError(f"{where}: only one Flatten(1, -1) after a Conv2d is supported")
                flattened = True
            elif isinstance(m, nn.BatchNorm2d) if _is_conv(a) else isinstance(m, nn.BatchNorm1d):
                if not m.track_running_stats or m.running_mean is None:
                    raise InputError(f"{where}: BatchNorm without running statistics cannot be compacted")
                if m.num_features != a.weight.shape[0]:
                    raise InputError(f"{where}: {m.num_features} features after a layer of {a.weight.shape[0]}")
            elif isinstance(m, _POOLS) and _is_conv(a) and not flattened:
                pass
            elif _is_elementwise(m) or isinstance(m, _DROPOUTS):
                pass
            else:
                raise InputError(f"cannot compact {where}: between weighted layers only BatchNorm, pooling, "
                                 "Flatten, Dropout and elementwise activations are supported")
        out, inp = a.weight.shape[0], b.weight.shape[1]
        if _is_conv(b) and (not _is_conv(a) or flattened):
            raise InputError(f"layer {positions[k + 1]} (Conv2d) must follow a Conv2d without Flatten")
        if _is_fc(b) and _is_conv(a) and not flattened:
            raise InputError(f"layer {positions[k + 1]} (Linear) after a Conv2d needs an nn.Flatten in between")
        if inp % out:
            raise InputError(f"layers {positions[k]} and {positions[k + 1]} do not chain: {out} channels feed "
                             f"{inp} inputs")
        spread.append(inp // out)
    return _Cnn(modules[: positions[0]], layers, between, modules[positions[-1] + 1:], spread)


def _is_bn(m: nn.Module) -> bool:
    return isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))


@torch.no_grad()
def _constant_values(mods: list[nn.Module], pre: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """What channels of constant pre-activation ``pre`` (one per channel) hold after ``mods``
    (eval mode), and whether they stay constant over positions (an AvgPool with padding that
    counts the padding does not keep a non-zero constant)."""
    h = pre.to(like.dtype)
    uniform = True
    for m in mods:
        if _is_bn(m):
            h = (h - m.running_mean.to(h.dtype)) / torch.sqrt(m.running_var.to(h.dtype) + m.eps)
            if m.affine:
                h = h * m.weight.detach().to(h.dtype) + m.bias.detach().to(h.dtype)
        elif isinstance(m, nn.AvgPool2d):
            pad = m.padding if isinstance(m.padding, tuple) else (m.padding,)
            if any(pad) and m.count_include_pad:
                uniform = False
        elif isinstance(m, (nn.Flatten, *_POOLS, *_DROPOUTS)):
            continue
        else:
            h = m(h.unsqueeze(0)).squeeze(0)
    return h.to(torch.float64), uniform


def _reads_constant_exactly(layer: nn.Module) -> bool:
    """Whether ``layer`` sees a constant input channel as the same constant at every position
    (a Linear, or a conv without zero padding), so the channel can be folded into its bias."""
    if _is_fc(layer) or layer.padding_mode != "zeros":
        return True
    pad = layer.padding
    return pad == "valid" if isinstance(pad, str) else not any(pad)


@dataclass
class CompactCnn:
    """Shrunk float64 weights, biases and which channels were kept (per weighted layer)."""

    weights: list[torch.Tensor]
    biases: list[torch.Tensor | None]
    kept: list[torch.Tensor]


def _cols(kept: torch.Tensor, spread: int) -> torch.Tensor:
    return kept.repeat_interleave(spread)


@torch.no_grad()
def _compact(cnn: _Cnn) -> CompactCnn:
    layers = cnn.layers
    weights = [effective_weight(m).to("cpu", torch.float64, copy=True) for m in layers]
    biases = [m.bias.detach().to("cpu", torch.float64, copy=True) if m.bias is not None
              else torch.zeros(m.weight.shape[0], dtype=torch.float64) for m in layers]
    has_bias = [m.bias is not None for m in layers]
    alive = [torch.ones(w.shape[0], dtype=torch.bool) for w in weights]
    changed = True
    while changed:
        changed = False
        for i in range(len(weights) - 1):
            nxt, s = weights[i + 1], cnn.spread[i]
            out = weights[i].shape[0]
            reads = (nxt != 0).reshape(nxt.shape[0], out, s, -1).any(dim=(0, 2, 3))  # per channel of layer i
            dead = alive[i] & ~reads
            constant = alive[i] & reads & ~(weights[i] != 0).reshape(out, -1).any(dim=1)
            if constant.any():
                values, uniform = _constant_values(cnn.between[i], biases[i], layers[i].weight)
                fold_ok = _reads_constant_exactly(layers[i + 1])
                removable = constant & ((values == 0) | (torch.tensor(fold_ok and uniform)))
                for c in torch.nonzero(removable).flatten().tolist():
                    v = values[c]
                    if v != 0:
                        block = nxt.reshape(nxt.shape[0], out, -1)[:, c]  # (n_next, s * kernel)
                        biases[i + 1] += block.sum(dim=1) * v
                        has_bias[i + 1] = True
                constant = removable
            gone = constant | dead
            if gone.any():
                alive[i] &= ~gone
                weights[i][gone] = 0
                biases[i][gone] = 0
                view = nxt.view(nxt.shape[0], out, s, -1)
                view[:, gone] = 0
                changed = True
    shrunk, shrunk_biases = [], []
    for i, w in enumerate(weights):
        rows = alive[i]
        cols = _cols(alive[i - 1], cnn.spread[i - 1]) if i > 0 else torch.ones(w.shape[1], dtype=torch.bool)
        shrunk.append(w[rows][:, cols])
        shrunk_biases.append(biases[i][rows] if has_bias[i] else None)
    return CompactCnn(shrunk, shrunk_biases, alive)


def _new_layer(old: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Module:
    like = old.weight
    with warnings.catch_warnings():  # zero-element tensors
        warnings.simplefilter("ignore", UserWarning)
        if _is_conv(old):
            new = nn.utils.skip_init(
                nn.Conv2d, weight.shape[1], weight.shape[0], old.kernel_size, stride=old.stride,
                padding=old.padding, dilation=old.dilation, groups=1, bias=bias is not None,
                padding_mode=old.padding_mode, device=like.device, dtype=like.dtype)
        else:
            new = nn.utils.skip_init(nn.Linear, weight.shape[1], weight.shape[0], bias=bias is not None,
                                     device=like.device, dtype=like.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias)
    return new


@torch.no_grad()
def _slice_bn(bn: nn.Module, keep: torch.Tensor) -> nn.Module:
    new = copy.deepcopy(bn)
    idx = torch.nonzero(keep).flatten().to(bn.running_mean.device)
    new.num_features = int(keep.sum())
    for name in ("weight", "bias"):
        p = getattr(bn, name)
        if p is not None:
            setattr(new, name, nn.Parameter(p.detach()[idx].clone(), requires_grad=p.requires_grad))
    new.running_mean = bn.running_mean[idx].clone()
    new.running_var = bn.running_var[idx].clone()
    return new


def compact_cnn(model: nn.Sequential) -> nn.Sequential:
    """A plain ``nn.Sequential`` (no masked module) computing ``model``'s function in eval mode
    with dead and constant channels removed (see the module docstring). ``model`` is not modified;
    dtypes and devices are kept. Works for MLPs too (a Sequential of Linear layers)."""
    cnn = split_cnn(model)
    result = _compact(cnn)
    out: list[nn.Module] = [_plain_copy(m) for m in cnn.prefix]
    for i, layer in enumerate(cnn.layers):
        out.append(_new_layer(layer, result.weights[i], result.biases[i]))
        if i < len(cnn.between):
            for m in cnn.between[i]:
                out.append(_slice_bn(m, result.kept[i]) if _is_bn(m) else copy.deepcopy(m))
    out.extend(_plain_copy(m) for m in cnn.suffix)
    return nn.Sequential(*out).train(model.training)


def _plain_copy(m: nn.Module) -> nn.Module:
    from ..prune.remove import remove

    return remove(copy.deepcopy(m))


@dataclass(frozen=True)
class CnnCounts:
    """``stored``: numbers the compacted model holds as parameters; ``live``: of those, the non-zero
    weights plus all other parameters (biases, BatchNorm); ``shape``: kept channels per layer."""

    stored: int
    live: int
    shape: list[int]


def cnn_counts(model: nn.Sequential) -> CnnCounts:
    """Stored and live parameter counts of :func:`compact_cnn`'s result, side by side."""
    small = compact_cnn(model)
    stored = sum(p.numel() for p in small.parameters())
    weights = [m.weight for m in small.modules() if _weighted(m)]
    zeros = sum(int((w == 0).sum()) for w in weights)
    cnn = split_cnn(model)
    first = cnn.layers[0].weight.shape[1]
    return CnnCounts(stored, stored - zeros, [first] + [int(w.shape[0]) for w in weights])


__all__ = ["CnnCounts", "cnn_counts", "compact_cnn", "split_cnn", "ELEMENTWISE"]
