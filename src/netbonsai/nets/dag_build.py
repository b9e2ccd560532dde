"""How a DagNet is built and checked: the node roles, the structure checks, and the dense MLP draw.

``DagNet.__init__`` validates its tensors with :func:`_validate_structure` (shapes, node counts,
activations, roles, topological order, finite values) and ``DagNet.mlp`` draws a dense layered
network's parameters with :func:`mlp_parameters`. Both are plain functions of tensors and names
that need nothing of the class, so ``dag.py`` keeps to the network's definition and forward pass;
``ROLES`` is re-exported from ``netbonsai.nets.dag``, where callers import it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..errors import InputError
from .activations import check_activation

ROLES = ("input", "hidden", "added", "output")


def mlp_params(sizes: Sequence[int]) -> int:
    """Weights and biases of a dense layered MLP with layer sizes ``sizes``."""
    return sum(a * b + b for a, b in zip(sizes, sizes[1:]))


def mlp_parameters(
    sizes: Sequence[int],
    activation: str,
    output_activation: str,
    population: int,
    generator: torch.Generator | None,
    skip: bool,
) -> tuple[int, int, torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """The ``DagNet`` arguments ``(n_in, n_out, weight, mask, bias, activations)`` of
    :meth:`DagNet.mlp <netbonsai.nets.dag.DagNet.mlp>` (which documents the draw)."""
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or any(s < 1 for s in sizes):
        raise InputError(f"MLP sizes must be at least two positive integers, got {sizes}")
    check_activation(activation)
    check_activation(output_activation)
    n_nodes = sum(sizes)
    weight = torch.zeros(population, n_nodes, n_nodes)
    mask = torch.zeros(population, n_nodes, n_nodes, dtype=torch.bool)
    bias = torch.zeros(population, n_nodes)
    offsets = np.cumsum([0] + sizes)
    for layer in range(1, len(sizes)):
        src = slice(offsets[layer - 1], offsets[layer])
        dst = slice(offsets[layer], offsets[layer + 1])
        bound = 1.0 / float(np.sqrt(sizes[layer - 1]))
        w = torch.rand(population, sizes[layer - 1], sizes[layer], generator=generator) * 2 - 1
        b = torch.rand(population, sizes[layer], generator=generator) * 2 - 1
        weight[:, src, dst] = w * bound
        bias[:, dst] = b * bound
        mask[:, src, dst] = True
    if skip and len(sizes) > 2:
        bound = 1.0 / float(np.sqrt(sizes[0]))
        w = torch.rand(population, sizes[0], sizes[-1], generator=generator) * 2 - 1
        weight[:, : sizes[0], n_nodes - sizes[-1] :] = w * bound
        mask[:, : sizes[0], n_nodes - sizes[-1] :] = True
    activations = (
        ["identity"] * sizes[0]
        + [activation] * (n_nodes - sizes[0] - sizes[-1])
        + [output_activation] * sizes[-1]
    )
    return sizes[0], sizes[-1], weight, mask, bias, activations


def _validate_structure(n_in, n_out, weight, mask, bias, activations, roles) -> None:
    """Raise :class:`InputError` unless the arguments describe a valid ``DagNet``."""
    if weight.dim() != 3 or weight.shape[1] != weight.shape[2]:
        raise InputError(f"weight must have shape (K, N, N), got {tuple(weight.shape)}")
    k, n, _ = weight.shape
    if tuple(mask.shape) != (k, n, n):
        raise InputError(f"mask shape {tuple(mask.shape)} does not match weight shape {(k, n, n)}")
    if tuple(bias.shape) != (k, n):
        raise InputError(f"bias shape {tuple(bias.shape)} does not match {(k, n)}")
    if n_in < 1 or n_out < 1 or n_in + n_out > n:
        raise InputError(f"invalid node counts: n_in={n_in}, n_out={n_out}, nodes={n}")
    if len(activations) != n or len(roles) != n:
        raise InputError(f"need one activation and one role per node ({n})")
    for name in activations:
        check_activation(name)
    if any(a != "identity" for a in activations[:n_in]):
        raise InputError("input nodes must use the identity activation")
    bad = [r for r in roles if r not in ROLES]
    if bad:
        raise InputError(f"unknown node role {bad[0]!r}; roles are {', '.join(ROLES)}")
    if any(r != "input" for r in roles[:n_in]) or any(r == "input" for r in roles[n_in:]):
        raise InputError("the first n_in nodes, and only they, must have role 'input'")
    if any(r != "output" for r in roles[n - n_out :]) or any(r == "output" for r in roles[: n - n_out]):
        raise InputError("the last n_out nodes, and only they, must have role 'output'")
    lower = torch.tril(torch.ones(n, n, dtype=torch.bool, device=mask.device))
    if (mask.to(torch.bool) & lower).any():
        raise InputError("mask has a synapse i -> j with j <= i: nodes are not in topological order")
    if mask[:, :, :n_in].to(torch.bool).any():
        raise InputError("mask has a synapse into an input node")
    if not torch.isfinite(weight).all() or not torch.isfinite(bias).all():
        raise InputError("weights or biases contain NaN or Inf")
