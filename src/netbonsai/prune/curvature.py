"""Diagonal curvature of the loss with respect to the live weights, for Optimal Brain Damage.

Two estimates of ``h_kk = d^2 L / d w_k^2`` for the mean training loss ``L`` on ``(x, y)``:

- exact: the Hessian diagonal, from Hessian-vector products with unit vectors (forward-over-reverse
  ``torch.func.jvp(grad(L))``, vmapped over chunks of unit vectors). It costs one HVP over the data
  per live weight, so it is used for small networks only (see ``criteria.EXACT_HESSIAN_MAX``).
- fisher: the empirical Fisher diagonal, the mean over samples of squared per-sample gradients
  (``torch.func.vmap(grad)``), at the cost of about one backward pass per sample chunk. It is
  non-negative, equals the Gauss-Newton / Hessian diagonal in expectation for a likelihood loss
  (cross entropy) near a fit, and ranks weights similarly for mean squared error (its scale
  there differs by the residual variance).

Both are computed with the model in eval mode (batch norm statistics fixed, no dropout) and only
over the live weights: the network is called through ``torch.func.functional_call`` with its
weight tensors rebuilt from one flat vector of live values.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn
from torch.func import functional_call, grad, jvp, vmap

from ..errors import InputError
from ..train.losses import get_loss
from .groups import PrunableGroup

MODES = ("exact", "fisher")


def check_data(data, method: str = "obd") -> tuple[torch.Tensor, torch.Tensor]:
    """``data`` as an ``(x, y)`` pair with matching, non-zero row counts."""
    if data is None:
        raise InputError(f"{method} needs data=(x, y) to measure the loss curvature")
    try:
        x, y = data
    except (TypeError, ValueError):
        raise InputError(f"{method} data must be an (x, y) pair of tensors") from None
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise InputError(f"{method} data must be an (x, y) pair of tensors")
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise InputError(
            f"{method} data needs the same non-zero number of rows in x and y, "
            f"got {x.shape[0]} and {y.shape[0]}"
        )
    return x, y


def _live_loss(
    model: nn.Module,
    groups: list[PrunableGroup],
    group: torch.Tensor,
    position: torch.Tensor,
    loss: str,
) -> tuple[torch.Tensor, Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]]:
    """The live weights as one flat vector ``theta0`` and ``f(theta, x, y)``: the mean loss of
    the model with its live weights replaced by ``theta``."""
    loss_fn = get_loss(loss)
    params = {name: p.detach() for name, p in model.named_parameters()}
    buffers = dict(model.named_buffers())
    slots = []  # (parameter name, rows of theta, flat positions in the parameter)
    for name in dict.fromkeys(g.param for g in groups):
        ids = torch.tensor([i for i, g in enumerate(groups) if g.param == name], device=group.device)
        rows = torch.nonzero(torch.isin(group, ids)).squeeze(1)
        slots.append((name, rows, position[rows]))
    theta0 = torch.empty(group.numel(), dtype=next(iter(params.values())).dtype, device=group.device)
    for name, rows, pos in slots:
        theta0[rows] = params[name].reshape(-1)[pos]

    plan = getattr(model, "plan", None)
    if callable(plan):
        plan()  # DagNet caches its evaluation order from the mask: build it outside the transforms

    def f(theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        current = dict(params)
        for name, rows, pos in slots:
            base = params[name]
            current[name] = base.reshape(-1).index_put((pos,), theta[rows]).view(base.shape)
        out = functional_call(model, (current, buffers), (x,))
        return loss_fn(out.unsqueeze(0), y)[0]

    return theta0, f


@torch.no_grad()
def _activation_width(model: nn.Module, x1: torch.Tensor) -> int:
    """Values a forward pass produces for one sample: the outputs of all leaf modules (at
    least a DagNet's node count), the memory an HVP holds per sample and unit vector."""
    sizes: list[int] = []

    def record(_module: nn.Module, _inputs, out) -> None:
        sizes.append(out.numel() if isinstance(out, torch.Tensor) else 0)

    hooks = [m.register_forward_hook(record) for m in model.modules() if not list(m.children())]
    try:
        model(x1)
    finally:
        for hook in hooks:
            hook.remove()
    return max(sum(sizes), int(getattr(model, "n_nodes", 0)), 1)


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """The model in eval mode for the duration, its previous mode restored after."""
    mode = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(mode)


def exact_diagonal(
    model: nn.Module,
    groups: list[PrunableGroup],
    group: torch.Tensor,
    position: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    loss: str,
    max_elements: int = 1 << 24,
) -> torch.Tensor:
    """Exact Hessian diagonal ``(M,)`` of the mean loss over the listed live weights.

    Unit vectors are processed in chunks so that chunk x samples x activations per sample stays
    under ``max_elements`` (bounded memory; larger chunks amortise the shared primal pass).
    """
    theta0, f = _live_loss(model, groups, group, position, loss)
    m = theta0.numel()
    gradient = grad(lambda t: f(t, x, y))

    def hvp(v: torch.Tensor) -> torch.Tensor:
        return jvp(gradient, (theta0,), (v,))[1]

    diag = torch.empty_like(theta0)
    with _eval_mode(model), warnings.catch_warnings():
        # torch loads its forward-mode decompositions through torch.jit.script on first use
        warnings.filterwarnings("ignore", ".*torch.jit.script.*deprecated", DeprecationWarning)
        chunk = max(1, min(m, max_elements // (x.shape[0] * _activation_width(model, x[:1]))))
        for start in range(0, m, chunk):
            rows = torch.arange(start, min(start + chunk, m), device=theta0.device)
            units = torch.zeros(rows.numel(), m, dtype=theta0.dtype, device=theta0.device)
            units[torch.arange(rows.numel()), rows] = 1.0
            diag[rows] = vmap(hvp)(units)[torch.arange(rows.numel()), rows].detach()
    return diag


def fisher_diagonal(
    model: nn.Module,
    groups: list[PrunableGroup],
    group: torch.Tensor,
    position: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    loss: str,
    max_elements: int = 1 << 22,
) -> torch.Tensor:
    """Empirical Fisher diagonal ``(M,)``: mean over samples of squared per-sample gradients.

    Samples are processed in chunks of at most ``max_elements / M`` rows (bounded memory).
    """
    theta0, f = _live_loss(model, groups, group, position, loss)
    m = theta0.numel()
    per_sample = vmap(grad(lambda t, xi, yi: f(t, xi.unsqueeze(0), yi.unsqueeze(0))), in_dims=(None, 0, 0))
    step = max(1, max_elements // max(m, 1))
    total = torch.zeros_like(theta0)
    with _eval_mode(model):
        for start in range(0, x.shape[0], step):
            grads = per_sample(theta0, x[start : start + step], y[start : start + step]).detach()
            total += grads.pow(2).sum(dim=0)
    return total / x.shape[0]
