"""Function-preserving edits of layered MLPs (Schiessler et al. 2021, "Neural network surgery").

Each surgery returns a new network (the input is never modified) in a :class:`SurgeryResult`
that says whether the edit is exact (same outputs up to float rounding) and what it did.
``layer`` i is the output of Linear i (0-based); the hidden layers are 0..L-2 for L Linears.

- :func:`add_layer`: a Linear(n, n) with weight I and bias 0 (exact);
- :func:`remove_layer`: merge a hidden layer into the next Linear (exact for a linear layer);
- :func:`add_neurons`: copy neurons and divide their outgoing weights among the copies (exact
  for any activation; optional noise on the copies' incoming weights breaks their symmetry);
- :func:`svd_narrow`: a hidden layer to ``rank`` units through the SVD of its incoming kernel
  (the authors' one-layer SVD, with its bias update done right);
- :func:`svd_split`: a Linear as a linear rank-k layer followed by a k-to-out layer.

In the paper's ``x W + b`` convention the kernel W is in x out; torch stores its transpose.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, Sequence

import torch
from torch import nn

from ..errors import InputError
from ..gates.convert import Affine
from ..nets.activations import NAME_TO_MODULE, check_activation
from .mlp import MlpParts, activation_name, build_mlp, count_params, layer_sizes, parse_mlp

_LIPSCHITZ = {"identity": 1.0, "relu": 1.0, "tanh": 1.0, "softplus": 1.0, "elu": 1.0, "sigmoid": 0.25}
_NONNEGATIVE = ("relu", "sigmoid", "softplus")  # relu is the identity on these activations' outputs


@dataclass
class SurgeryResult:
    """The edited network ``net``, the ``surgery`` done at ``layer``, whether it is ``exact``,
    JSON-ready ``detail`` and, for the SVD surgeries, the ``dropped`` singular values (descending)."""

    net: nn.Sequential
    surgery: str
    layer: int
    exact: bool
    detail: dict[str, Any]
    dropped: torch.Tensor | None = None

    def summary(self) -> dict:
        """JSON-ready record (no network): the surgery, the new widths and parameter count."""
        return {"surgery": self.surgery, "layer": self.layer, "exact": self.exact,
                "detail": dict(self.detail), "widths": layer_sizes(self.net),
                "params": count_params(self.net),
                "dropped": None if self.dropped is None else [float(s) for s in self.dropped]}


def _parts(net: nn.Module) -> MlpParts:
    """A deep copy of ``net``'s parts (validated first): edits never touch the input."""
    return copy.deepcopy(parse_mlp(net))


def _index(parts: MlpParts, layer: Any, what: str, hidden: bool = True) -> int:
    last = len(parts.linears) - (2 if hidden else 1)
    kind = "hidden layer" if hidden else "layer"
    if last < 0:
        raise InputError(f"{what} needs a hidden layer; this network has a single Linear")
    if not isinstance(layer, Integral) or isinstance(layer, bool) or not 0 <= layer <= last:
        raise InputError(f"{what}: {kind} {layer!r} out of range 0..{last}")
    return int(layer)


def _bias(linear: nn.Linear) -> torch.Tensor:
    """``linear``'s bias, zeros where it has none."""
    if linear.bias is not None:
        return linear.bias.detach()
    w = linear.weight.detach()
    return torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)


def _linear(weight: torch.Tensor, bias: torch.Tensor) -> nn.Linear:
    """An ``nn.Linear`` holding ``weight`` (torch layout, out x in) and ``bias``."""
    linear = nn.Linear(weight.shape[1], weight.shape[0], device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        linear.weight.copy_(weight)
        linear.bias.copy_(bias)
    return linear


def _svd(linear: nn.Linear) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``U, S, Vh`` of the kernel ``W`` (in x out) = ``linear.weight.T``, computed in float64."""
    u, s, vh = torch.linalg.svd(linear.weight.detach().T.double(), full_matrices=False)
    dtype = linear.weight.dtype
    return u.to(dtype), s.to(dtype), vh.to(dtype)


def _rank(rank: Any, limit: int, what: str) -> int:
    if not isinstance(rank, Integral) or isinstance(rank, bool) or not 1 <= rank <= limit:
        raise InputError(f"{what}: rank {rank!r} out of range 1..{limit}")
    return int(rank)


def add_layer(net: nn.Module, after: int, activation: str | None = None) -> SurgeryResult:
    """Insert a Linear(n, n) with weight I and bias 0 after hidden layer ``after``.

    With ``activation`` None the new layer repeats a ReLU before it (relu(relu(z)) = relu(z)) and
    is linear otherwise: exact either way. A named activation is exact only where it is the
    identity on its inputs (``identity``; ``relu`` after relu, sigmoid or softplus). ``layer`` of
    the result is the new layer's index, ``after + 1``."""
    parts = _parts(net)
    after = _index(parts, after, "add_layer")
    before = activation_name(parts.activations[after])
    if activation is None:
        name, exact = ("relu" if before == "relu" else "identity"), True
    else:
        name = check_activation(activation)
        exact = name == "identity" or (name == "relu" and before in _NONNEGATIVE)
    w = parts.linears[after].weight.detach()
    n = w.shape[0]
    eye = torch.eye(n, dtype=w.dtype, device=w.device)
    parts.linears.insert(after + 1, _linear(eye, torch.zeros(n, dtype=w.dtype, device=w.device)))
    parts.activations.insert(after + 1, NAME_TO_MODULE[name]())
    return SurgeryResult(build_mlp(parts), "add-layer", after + 1, exact,
                         {"after": after, "width": n, "activation": name})


def remove_layer(net: nn.Module, layer: int) -> SurgeryResult:
    """Merge hidden layer ``layer`` into the next Linear, dropping its activation: ``W' = W_{i+1}
    W_i``, ``b' = W_{i+1} b_i + b_{i+1}`` (torch layout). Exact iff that activation is the
    identity; otherwise ``"remove-nonlinear-layer"``, an approximation."""
    parts = _parts(net)
    i = _index(parts, layer, "remove_layer")
    first, second = parts.linears[i], parts.linears[i + 1]
    w2 = second.weight.detach()
    merged = _linear(w2 @ first.weight.detach(), w2 @ _bias(first) + _bias(second))
    name = activation_name(parts.activations[i])
    exact = name == "identity"
    parts.linears[i : i + 2] = [merged]
    del parts.activations[i]
    detail = {"removed_width": first.out_features, "activation": name, "approximation": not exact}
    surgery = "remove-layer" if exact else "remove-nonlinear-layer"
    return SurgeryResult(build_mlp(parts), surgery, i, exact, detail)


def add_neurons(net: nn.Module, layer: int, count: int, *, neurons: Sequence[int] | None = None,
                noise: float = 0.0, generator: torch.Generator | None = None) -> SurgeryResult:
    """Append ``count`` copies of neurons to hidden layer ``layer``.

    The copied neurons are ``neurons`` (one per copy, repeats allowed) or, by default, those
    with the largest outgoing weight norms, cycling through the layer again if ``count`` exceeds
    its width. A copy gets its neuron's incoming weights and bias; a neuron with c copies and the
    copies each carry 1/(c+1) of its outgoing weights, so the sum is unchanged for any
    activation. Without ``noise`` the copies get identical gradients and stay identical under
    SGD or Adam: ``noise`` > 0 adds N(0, (noise * rms of the neuron's incoming weights)^2) to
    each copy's incoming weights (then inexact)."""
    parts = _parts(net)
    i = _index(parts, layer, "add_neurons")
    if not isinstance(count, Integral) or isinstance(count, bool) or count < 1:
        raise InputError(f"add_neurons: count must be a positive integer, got {count!r}")
    if not isinstance(noise, Real) or isinstance(noise, bool) or not 0.0 <= float(noise) < float("inf"):
        raise InputError(f"add_neurons: noise must be a finite number >= 0, got {noise!r}")
    first, second = parts.linears[i], parts.linears[i + 1]
    w1, b1, w2 = first.weight.detach(), _bias(first), second.weight.detach()
    n = w1.shape[0]
    if neurons is None:
        order = torch.argsort(w2.norm(dim=0), descending=True, stable=True)
        sources = order[torch.arange(count, device=w1.device) % n]
    else:
        picked = list(neurons)
        if len(picked) != count or not all(isinstance(j, Integral) and not isinstance(j, bool)
                                           and 0 <= j < n for j in picked):
            raise InputError(f"add_neurons: neurons must be {count} indices in 0..{n - 1}, got {picked}")
        sources = torch.as_tensor([int(j) for j in picked], dtype=torch.long, device=w1.device)
    share = 1.0 / (torch.bincount(sources, minlength=n).to(w2.dtype) + 1.0)
    incoming = w1[sources]  # advanced indexing copies
    if noise > 0:
        std = float(noise) * incoming.pow(2).mean(dim=1, keepdim=True).sqrt()
        incoming += torch.randn(incoming.shape, generator=generator, dtype=w1.dtype, device=w1.device) * std
    parts.linears[i] = _linear(torch.cat([w1, incoming]), torch.cat([b1, b1[sources]]))
    outgoing = w2 * share
    parts.linears[i + 1] = _linear(torch.cat([outgoing, outgoing[:, sources]], dim=1), _bias(second))
    exact = not noise > 0
    detail = {"count": int(count), "neurons": sources.tolist(), "noise": float(noise), "width": n + count}
    return SurgeryResult(build_mlp(parts), "add-neurons", i, exact, detail)


def svd_narrow(net: nn.Module, layer: int, rank: int) -> SurgeryResult:
    """Hidden layer ``layer`` to ``rank`` units through the SVD ``W_i = U S Vh`` of its incoming
    kernel: ``W_i' = (U S)[:, :k]``, ``b_i' = b_i Vh_k^T``, ``W_{i+1}' = Vh_k W_{i+1}``.

    The new units are the kernel's top singular directions, so for a linear layer the network
    changes by the dropped singular values only; there the bias part outside the kept subspace,
    ``(b_i - b_i Vh_k^T Vh_k) W_{i+1}``, moves into the next bias (exact at full rank). Through a
    nonlinear activation the rotation does not commute with it: inexact at any rank."""
    parts = _parts(net)
    i = _index(parts, layer, "svd_narrow")
    first, second = parts.linears[i], parts.linears[i + 1]
    limit = min(first.in_features, first.out_features)
    k = _rank(rank, limit, "svd_narrow")
    u, s, vh = _svd(first)
    b1, w2 = _bias(first), second.weight.detach()
    vh_k = vh[:k]
    b2 = _bias(second)
    name = activation_name(parts.activations[i])
    if name == "identity":
        b2 = b2 + w2 @ (b1 - vh_k.T @ (vh_k @ b1))
    parts.linears[i] = _linear((u[:, :k] * s[:k]).T, vh_k @ b1)
    parts.linears[i + 1] = _linear(w2 @ vh_k.T, b2)
    exact = name == "identity" and k >= limit
    return SurgeryResult(build_mlp(parts), "svd-narrow", i, exact,
                         {"rank": k, "width": first.out_features, "activation": name}, s[k:].clone())


def svd_split(net: nn.Module, layer: int, rank: int) -> SurgeryResult:
    """Linear ``layer`` (the output layer too) as ``Linear(in, k)`` with kernel ``U_k S_k`` and
    no activation, then ``Linear(k, out)`` with kernel ``Vh_k``, the original bias and the
    original activation. The first layer's bias is zero (kept so that every Linear has one; it
    is free to train). Exact iff ``rank >= min(in, out)``."""
    parts = _parts(net)
    i = _index(parts, layer, "svd_split", hidden=False)
    linear = parts.linears[i]
    limit = min(linear.in_features, linear.out_features)
    k = _rank(rank, limit, "svd_split")
    u, s, vh = _svd(linear)
    low = _linear((u[:, :k] * s[:k]).T, torch.zeros(k, dtype=s.dtype, device=s.device))
    parts.linears[i : i + 1] = [low, _linear(vh[:k].T, _bias(linear))]
    parts.activations.insert(i, nn.Identity())
    return SurgeryResult(build_mlp(parts), "svd-split", i, k >= limit,
                         {"rank": k, "activation": activation_name(parts.activations[i + 1])}, s[k:].clone())


@torch.no_grad()
def output_change(before: nn.Module, after: nn.Module, x: torch.Tensor) -> float:
    """The largest L2 norm, over the samples of ``x``, of the change of the output."""
    if x.shape[0] == 0:
        return 0.0
    diff = after(x).double() - before(x).double()
    return float(diff.reshape(diff.shape[0], -1).norm(dim=1).max())


@torch.no_grad()
def change_bound(original: nn.Module, result: SurgeryResult, x: torch.Tensor) -> float | None:
    """An upper bound of ``output_change(original, result.net, x)`` for :func:`svd_split` and
    :func:`svd_narrow` of a linear layer (None for other surgeries): the max over samples of
    ``||x_i|| s_{k+1}`` times the Lipschitz constants of everything after the edited kernel (the
    activations, ``||W_j||_2`` of the later Linears, the closing Affine's max ``|scale|``).

    Proof: only the map ``x_i -> x_i W_i`` changes (a narrowed linear layer is ``W_i W_{i+1}``
    with the same bias), by ``x_i (W_i - W_i,k)``, whose norm is at most ``||x_i|| s_{k+1}``;
    the rest is the same composition of Lipschitz maps, which stretches a change by at most their product."""
    if result.surgery != "svd-split" and not (result.surgery == "svd-narrow"
                                              and result.detail.get("activation") == "identity"):
        return None
    parts = parse_mlp(original)
    i = result.layer
    if result.dropped is None or i >= len(parts.linears) or result.dropped.numel() != min(
            parts.linears[i].in_features, parts.linears[i].out_features) - result.detail["rank"]:
        raise InputError("change_bound: the result does not come from this original network")
    h = x
    for module in parts.prefix:
        h = module(h)
    for linear, act in zip(parts.linears[:i], parts.activations[:i]):
        h = act(linear(h))
    factor = float(result.dropped[0]) if result.dropped.numel() else 0.0
    for j in range(i, len(parts.linears)):
        if j > i:
            factor *= float(torch.linalg.matrix_norm(parts.linears[j].weight.detach().double(), ord=2))
        factor *= _LIPSCHITZ[activation_name(parts.activations[j])]
    for module in parts.suffix:
        if isinstance(module, Affine):
            factor *= float(module.scale.abs().max())
    if h.shape[0] == 0:
        return 0.0
    return float(h.double().reshape(h.shape[0], -1).norm(dim=1).max()) * factor
