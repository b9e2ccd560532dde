"""Physical compaction of masked MLPs: remove dead and constant hidden neurons, shrink the matrices.

A masked MLP (an ``nn.Sequential`` of ``MaskedLinear`` / ``nn.Linear`` layers and elementwise
activations) still stores and multiplies every removed weight. :func:`compact_mlp` turns it into
the plain ``nn.Sequential`` of ``nn.Linear`` that a model file should hold and inference should
run, with the same outputs:

- a hidden neuron with no live outgoing weight (*dead*) is removed: nothing reads it;
- a hidden neuron with no live incoming weight (*constant*) outputs ``act(bias)`` for every input;
  it is removed and ``act(bias) * W_next[:, j]`` is added to the next layer's bias;
- removing one neuron can make others dead or constant (chains), so this repeats until stable.

Input features and outputs are never removed (the input and output widths are the module's
contract). Removed weights that remain inside the shrunk matrices stay exactly 0.

A weight is *live* when ``weight * mask`` is non-zero (``mask`` optional): any layer with a 2-D
``weight``, a ``bias`` attribute (possibly None) and an optional bool ``mask`` of the weight's
shape counts as a linear layer computing ``x @ (weight * mask).T + bias``. Layers pruned with
``torch.nn.utils.prune`` work too (their ``weight`` is already masked).

:func:`to_sparse_mlp` gives the same network with torch sparse CSR weights (sparse @ dense).
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import InputError

# Modules that act on each element independently, so a neuron's output depends only on its own
# pre-activation (Dropout and AlphaDropout count as the identity: compaction is exact in eval mode).
ELEMENTWISE: tuple[type, ...] = (
    nn.Identity, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Tanh, nn.Sigmoid, nn.Hardtanh, nn.Hardsigmoid, nn.Hardswish, nn.Softplus, nn.Softsign,
    nn.Tanhshrink, nn.Softshrink, nn.Hardshrink, nn.LogSigmoid, nn.Threshold, nn.Dropout, nn.AlphaDropout,
)


def _is_linear(module: nn.Module) -> bool:
    weight = getattr(module, "weight", None)
    return isinstance(weight, torch.Tensor) and weight.dim() == 2 and hasattr(module, "bias")


def _is_elementwise(module: nn.Module) -> bool:
    if isinstance(module, nn.PReLU):
        return module.weight.numel() == 1  # one slope for all features; per-feature slopes would need slicing
    return isinstance(module, ELEMENTWISE)


def _flatten(model: nn.Module) -> list[nn.Module]:
    out: list[nn.Module] = []
    for child in model:
        out.extend(_flatten(child) if isinstance(child, nn.Sequential) else [child])
    return out


@dataclass
class _Mlp:
    """An MLP split into its parts: ``prefix``, then ``layers[0]``, ``acts[0]``, ..., ``layers[-1]``, ``suffix``."""

    prefix: list[nn.Module]
    layers: list[nn.Module]
    acts: list[list[nn.Module]]  # acts[i]: the elementwise modules between layers[i] and layers[i + 1]
    suffix: list[nn.Module]


def _split(model: nn.Module) -> _Mlp:
    if not isinstance(model, nn.Sequential):
        raise InputError(f"compaction needs an nn.Sequential of Linear layers and activations, got {type(model).__name__}")
    modules = _flatten(model)
    positions = [i for i, m in enumerate(modules) if _is_linear(m)]
    if not positions:
        raise InputError("compaction needs an nn.Sequential with at least one Linear layer; found none")
    for i, m in enumerate(modules):
        weight = getattr(m, "weight", None)
        if isinstance(m, nn.modules.conv._ConvNd) or (isinstance(weight, torch.Tensor) and weight.dim() > 2):
            raise InputError(f"cannot compact layer {i} ({type(m).__name__} (weight of shape "
                             f"{tuple(weight.shape)})): compact_mlp handles MLPs only; for CNNs use "
                             "netbonsai.nets.compact_cnn.compact_cnn")
        if positions[0] < i < positions[-1] and not _is_linear(m) and not _is_elementwise(m):
            kind = f"{type(m).__name__} (weight of shape {tuple(weight.shape)})" if isinstance(weight, torch.Tensor) \
                else type(m).__name__
            raise InputError(f"cannot compact layer {i} ({kind}): between Linear layers only elementwise "
                             "activations (ReLU, Tanh, Sigmoid, Identity, ...) are supported")
    layers = [modules[p] for p in positions]
    for k, (a, b) in enumerate(zip(layers, layers[1:])):
        if a.weight.shape[0] != b.weight.shape[1]:
            raise InputError(f"Linear layers {k} and {k + 1} do not chain: {a.weight.shape[0]} outputs feed "
                             f"{b.weight.shape[1]} inputs")
    for k, layer in enumerate(layers):
        mask = getattr(layer, "mask", None)
        if mask is not None and (not isinstance(mask, torch.Tensor) or mask.shape != layer.weight.shape):
            raise InputError(f"Linear layer {k}: mask must be a tensor of the weight's shape {tuple(layer.weight.shape)}")
        bias = layer.bias
        if bias is not None and (not isinstance(bias, torch.Tensor) or bias.shape != layer.weight.shape[:1]):
            raise InputError(f"Linear layer {k}: bias must have shape ({layer.weight.shape[0]},)")
    acts = [modules[p + 1:q] for p, q in zip(positions, positions[1:])]
    return _Mlp(modules[: positions[0]], layers, acts, modules[positions[-1] + 1:])


def effective_weight(layer: nn.Module) -> torch.Tensor:
    """``weight * mask`` of a linear-like layer (``weight`` when it has no mask), detached."""
    weight = layer.weight.detach()
    mask = getattr(layer, "mask", None)
    return weight * mask.to(weight.dtype) if mask is not None else weight


@dataclass
class _Compacted:
    """Shrunk (float64) weights and biases per layer, which biases exist, and what was kept."""

    weights: list[torch.Tensor]
    biases: list[torch.Tensor | None]
    kept: list[torch.Tensor]  # kept[i]: bool over layers[i]'s outputs


@torch.no_grad()
def _compact(mlp: _Mlp, remove: bool = True) -> _Compacted:
    # computed on the CPU in float64 (folded biases exact to float rounding); copied back by the callers
    weights = [effective_weight(layer).to("cpu", torch.float64, copy=True) for layer in mlp.layers]
    biases = [layer.bias.detach().to("cpu", torch.float64, copy=True) if layer.bias is not None
              else torch.zeros(layer.weight.shape[0], dtype=torch.float64) for layer in mlp.layers]
    has_bias = [layer.bias is not None for layer in mlp.layers]
    alive = [torch.ones(w.shape[0], dtype=torch.bool) for w in weights]
    changed = remove
    while changed:
        changed = False
        for i in range(len(weights) - 1):  # hidden layers only: outputs stay
            constant = alive[i] & ~(weights[i] != 0).any(dim=1)
            dead = alive[i] & ~(weights[i + 1] != 0).any(dim=0)
            if constant.any():
                values = _activate(mlp.acts[i], biases[i][constant], mlp.layers[i].weight)
                fold = weights[i + 1][:, constant] @ values
                if (fold != 0).any():
                    biases[i + 1] += fold
                    has_bias[i + 1] = True
            gone = constant | dead
            if gone.any():
                alive[i] &= ~gone
                weights[i][gone] = 0
                biases[i][gone] = 0
                weights[i + 1][:, gone] = 0
                changed = True
    shrunk, shrunk_biases = [], []
    for i, weight in enumerate(weights):
        rows = alive[i]
        cols = alive[i - 1] if i > 0 else torch.ones(weight.shape[1], dtype=torch.bool)
        shrunk.append(weight[rows][:, cols])
        shrunk_biases.append(biases[i][rows] if has_bias[i] else None)
    return _Compacted(shrunk, shrunk_biases, alive)


def _activate(modules: list[nn.Module], values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The composed elementwise modules applied to ``values`` (in eval mode, in the layer's dtype)."""
    h = values.to(like.device, like.dtype).unsqueeze(0)
    for module in modules:
        if isinstance(module, (nn.Dropout, nn.AlphaDropout)):
            continue
        h = module(h)
    return h.squeeze(0).to("cpu", torch.float64)


def _linear(weight: torch.Tensor, bias: torch.Tensor | None, like: torch.Tensor) -> nn.Linear:
    with warnings.catch_warnings():  # "Initializing zero-element tensors is a no-op" (a layer emptied out)
        warnings.simplefilter("ignore", UserWarning)
        layer = nn.utils.skip_init(nn.Linear, weight.shape[1], weight.shape[0], bias=bias is not None,
                                   device=like.device, dtype=like.dtype)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)
    return layer


def compact_mlp(model: nn.Sequential, masked: bool = False) -> nn.Sequential:
    """A plain ``nn.Sequential`` of ``nn.Linear`` computing the same function with dead and constant
    hidden neurons removed (see the module docstring).

    ``model`` is an ``nn.Sequential`` (nested ones are flattened) of linear layers (``nn.Linear``,
    ``MaskedLinear``, anything with a 2-D ``weight``, a ``bias`` and an optional bool ``mask``) with
    elementwise activations between them; modules before the first or after the last linear layer
    (``nn.Flatten``, ``nn.Softmax``, ...) are copied unchanged. The input and output widths are kept.
    Outputs are equal in eval mode (Dropout between layers is treated as the identity). Weights keep
    their dtype and device; ``model`` is not modified. Raises :class:`InputError` for other layers
    (CNNs: use :func:`netbonsai.nets.compact_cnn.compact_cnn`).

    With ``masked`` the layers are ``MaskedLinear`` whose masks are the kept part of the input's
    masks (all True for a layer without one), so the removed-but-kept zeros stay removed through
    later conversions (``from_sequential(compact_mlp(m, masked=True)).num_params()`` is the live count).
    """
    from .masked import MaskedLinear

    mlp = _split(model)
    result = _compact(mlp)
    modules: list[nn.Module] = [copy.deepcopy(m) for m in mlp.prefix]
    for i, layer in enumerate(mlp.layers):
        new = _linear(result.weights[i], result.biases[i], layer.weight)
        if masked:
            new = MaskedLinear.from_module(new)
            old_mask = getattr(layer, "mask", None)
            if old_mask is not None:
                rows = result.kept[i].to(old_mask.device)
                cols = result.kept[i - 1].to(old_mask.device) if i > 0 else slice(None)
                with torch.no_grad():
                    new.mask.copy_(old_mask.to(torch.bool)[rows][:, cols])
        modules.append(new)
        if i < len(mlp.acts):
            modules.extend(copy.deepcopy(m) for m in mlp.acts[i])
    modules.extend(copy.deepcopy(m) for m in mlp.suffix)
    return nn.Sequential(*modules).train(model.training)


def compacted_params(model: nn.Sequential) -> int:
    """Parameters the compacted ``model`` stores: weights (removed-but-kept zeros included) and biases
    of :func:`compact_mlp`'s result, plus any parameters of the other modules."""
    return sum(p.numel() for p in compact_mlp(model).parameters())


def compacted_shape(model: nn.Sequential) -> list[int]:
    """Widths of the compacted network: inputs, then each layer's kept outputs (e.g. ``[784, 212, 87, 10]``)."""
    mlp = _split(model)
    result = _compact(mlp)
    return [mlp.layers[0].weight.shape[1]] + [int(kept.sum()) for kept in result.kept]


# ---------------------------------------------------------------------------------- sparse CSR
def _to_csr(dense: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state"
        warnings.simplefilter("ignore", UserWarning)
        return dense.to_sparse_csr()


class SparseLinear(nn.Module):
    """A linear layer whose weight is a torch sparse CSR tensor: ``y = (W @ x.T).T + b``.

    ``weight`` (CSR, ``out x in``) and ``bias`` are buffers: this is an inference module (no
    gradients). ``nnz`` is the number of stored weights.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        super().__init__()
        if weight.dim() != 2:
            raise InputError(f"SparseLinear needs a 2-D weight, got shape {tuple(weight.shape)}")
        self.in_features, self.out_features = int(weight.shape[1]), int(weight.shape[0])
        dense = weight.detach().to_dense() if weight.layout != torch.strided else weight.detach()
        self.register_buffer("weight", _to_csr(dense.contiguous()))
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    @property
    def nnz(self) -> int:
        return int(self.weight.values().numel())

    def forward_t(self, x_t: torch.Tensor) -> torch.Tensor:
        """Transposed layout: ``x_t`` is ``(in, batch)``; returns ``(out, batch)``."""
        y = torch.matmul(self.weight, x_t)
        return y + self.bias.unsqueeze(1) if self.bias is not None else y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        y = self.forward_t(x.reshape(-1, self.in_features).T).T
        return y.reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, nnz={self.nnz}, " \
               f"bias={self.bias is not None}"


class SparseMLP(nn.Module):
    """``prefix``, then sparse layers with elementwise activations between them, then ``suffix``.

    Runs the hidden activations in ``(features, batch)`` layout, so each layer is one CSR @ dense
    product with no transposing copies in between.
    """

    def __init__(self, prefix: list[nn.Module], layers: list[SparseLinear], acts: list[list[nn.Module]],
                 suffix: list[nn.Module]) -> None:
        super().__init__()
        self.prefix = nn.Sequential(*prefix)
        self.layers = nn.ModuleList(layers)
        self.acts = nn.ModuleList(nn.Sequential(*a) for a in acts)
        self.suffix = nn.Sequential(*suffix)

    @property
    def nnz(self) -> int:
        """Stored weights over all layers."""
        return sum(layer.nnz for layer in self.layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prefix(x)
        lead = x.shape[:-1]
        h = x.reshape(-1, x.shape[-1]).T
        for i, layer in enumerate(self.layers):
            h = layer.forward_t(h)
            if i < len(self.acts):
                h = self.acts[i](h)
        return self.suffix(h.T.reshape(*lead, h.shape[0]))


def to_sparse_mlp(model: nn.Sequential, compact: bool = True) -> SparseMLP:
    """The same network with each weight stored as a torch sparse CSR tensor (only live weights).

    With ``compact`` (the default) dead and constant neurons are removed first (as in
    :func:`compact_mlp`); otherwise the layer shapes stay as they are. Same outputs in eval mode.
    """
    mlp = _split(model)
    result = _compact(mlp, remove=compact)
    layers = []
    for i, layer in enumerate(mlp.layers):
        like = layer.weight
        bias = result.biases[i]
        layers.append(SparseLinear(result.weights[i].to(like.dtype).to(like.device),
                                   None if bias is None else bias.to(like.dtype).to(like.device)))
    sparse = SparseMLP([copy.deepcopy(m) for m in mlp.prefix], layers,
                       [[copy.deepcopy(m) for m in a] for a in mlp.acts], [copy.deepcopy(m) for m in mlp.suffix])
    return sparse.train(model.training)
