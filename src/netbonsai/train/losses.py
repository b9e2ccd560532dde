"""Per-variant losses and chunked evaluation for population models.

A *population model* maps ``(B, n_in)`` to ``(K, B, n_out)`` through a ``population`` method
(DagNet); any other ``nn.Module`` is treated as a population of one.
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch
from torch import nn

from ..errors import InputError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def mse_per_variant(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean squared error of each variant: ``(K, B, n_out)``, ``(B, n_out)`` -> ``(K,)``."""
    return (outputs - targets).pow(2).mean(dim=(1, 2))


def cross_entropy_per_variant(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean softmax cross-entropy of each variant; ``targets`` are class indices ``(B,)``."""
    k, b, c = outputs.shape
    flat = nn.functional.cross_entropy(
        outputs.reshape(k * b, c), targets.reshape(-1).repeat(k), reduction="none"
    )
    return flat.view(k, b).mean(dim=1)


LOSSES: dict[str, LossFn] = {"mse": mse_per_variant, "cross_entropy": cross_entropy_per_variant}


def get_loss(name: str) -> LossFn:
    """The per-variant loss function called ``name``."""
    if name not in LOSSES:
        raise InputError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    return LOSSES[name]


def population_outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``(K, B, n_out)`` outputs of a population model, or ``(1, B, n_out)`` for a plain module."""
    population = getattr(model, "population", None)
    if callable(population):
        return population(x)
    return model(x).unsqueeze(0)


def sample_chunks(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk_rows: int = 1 << 20
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(x, y)`` in consecutive sample chunks holding at most about ``chunk_rows`` population
    size x samples x nodes values each (about 4 MB of activations, which stays in cache)."""
    k = getattr(model, "population_size", 1)
    width = max(getattr(model, "n_nodes", 64), 1)
    step = max(1, chunk_rows // (k * width))
    for start in range(0, x.shape[0], step):
        yield x[start : start + step], y[start : start + step]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss: str = "mse",
    chunk_rows: int = 1 << 20,
) -> torch.Tensor:
    """Loss of every variant on ``(x, y)``, ``(K,)``, computed in sample chunks to bound memory.

    ``chunk_rows`` bounds population size x samples x nodes held at once: about 4 MB of
    activations, which stays in cache (measured 1.6x faster than 16 MB chunks for 100 variants).
    """
    loss_fn = get_loss(loss)
    n = x.shape[0]
    if n == 0:
        raise InputError("cannot evaluate on an empty dataset")
    total = None
    for xb, yb in sample_chunks(model, x, y, chunk_rows):
        part = loss_fn(population_outputs(model, xb), yb) * xb.shape[0]
        total = part if total is None else total + part
    return total / n


@torch.no_grad()
def correct_predictions(model: nn.Module, x: torch.Tensor, y: torch.Tensor, rows: int = 2_000) -> int:
    """How many rows of ``x`` a classifier module labels ``y`` (argmax of its outputs), in eval mode
    and in slices of ``rows`` (a CNN's activations over a whole split need not fit at once); each
    module's mode is restored after."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        return sum(int((model(x[i:i + rows]).argmax(-1) == y[i:i + rows]).sum()) for i in range(0, len(y), rows))
    finally:
        for module, mode in modes.items():
            module.training = mode
