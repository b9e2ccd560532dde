"""The guard against overfitting on small tables: an L2 penalty on the weights, its strength
chosen on the validation split.

A table of a few hundred rows lets a 32-32 MLP drive its training loss to zero while its
validation loss rises with size, and then no network of the dense sweep is "as good as" any
other at equal validation loss. ``TrainerConfig(l2=...)`` adds ``l2 * sum(w**2)`` (weights
only, per network) to every training of a run, so every method and the dense sweep get the
same guard. :func:`choose_l2` picks the strength the way scikit-learn's ``RidgeCV`` does: train
one reference network per candidate value on the training split and keep the value with the
lowest validation loss (the test split is never looked at).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import torch
from torch import nn

from ..data.task import Task
from ..errors import InputError
from .fit import TrainerConfig

# candidate strengths, on the mean loss of standardised targets (cross-entropy for classifiers)
L2_GRID = (0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def weight_l2(model: nn.Module) -> torch.Tensor:
    """Sum of squared weights (parameters named ``*weight`` with two or more dimensions; biases
    excluded), one value per variant for a population model (its weights lead with the variant
    dimension), a scalar otherwise. Masked weights are zero and add nothing."""
    population = getattr(model, "population_size", 1)
    total: torch.Tensor | float = 0.0
    for name, parameter in model.named_parameters():
        if not name.endswith("weight") or parameter.dim() < 2:
            continue
        if population > 1 and parameter.shape[0] == population:
            total = total + parameter.pow(2).flatten(1).sum(dim=1)
        else:
            total = total + parameter.pow(2).sum()
    if isinstance(total, float):
        return torch.zeros(())
    return total


def reference_network(grid: Sequence[Sequence[int]], n_in: int, n_out: int) -> tuple[int, ...]:
    """The grid network :func:`choose_l2` trains: the one of median parameter count (the lower
    middle for an even grid), large enough to overfit and small enough to be cheap."""
    from ..nets.dag_build import mlp_params

    ordered = sorted((tuple(int(h) for h in hidden) for hidden in grid), key=lambda h: mlp_params([n_in, *h, n_out]))
    return ordered[(len(ordered) - 1) // 2]


def choose_l2(task: Task, hidden: Sequence[int], activation: str, epochs: int, trainer: TrainerConfig,
              seed: int = 0, grid: Sequence[float] = L2_GRID) -> tuple[float, dict[str, float]]:
    """The L2 strength of ``grid`` whose reference network (``hidden``, built, standardised and
    trained ``epochs`` on the training split exactly as the dense sweep trains one) has the lowest
    validation loss; returns it and every candidate's validation loss (in the task's reporting
    units), keyed by the value as text. Ties go to the weaker penalty.

    The candidates are one population (the same start weights, one penalty strength per variant,
    trained together; variants never mix), which for small networks costs little more than one
    training: the per-iteration overhead is shared.
    """
    from ..nets.dag import DagNet
    from ..nets.normalization import standardize_for
    from .fit import Budget, fit
    from .losses import evaluate

    values = [float(v) for v in grid]
    if not values or any(not 0 <= v < float("inf") for v in values):
        raise InputError(f"the L2 grid must be finite values >= 0, got {list(grid)}")
    generator = torch.Generator().manual_seed(seed)
    net = DagNet.mlp([task.n_in, *hidden, task.n_out], activation, generator=generator).to(task.x_train.device)
    standardize_for(net, task.x_train, task.y_train)
    population = net.expand(len(values))
    strengths = torch.tensor(values, dtype=population.weight.dtype, device=population.weight.device)
    fit(population, task.train, Budget(epochs=epochs), replace(trainer, l2=0.0), seed=seed,
        penalty=lambda model: strengths * weight_l2(model))
    val = evaluate(population, task.x_val, task.y_val, trainer.loss) * task.loss_scale
    losses = {repr(v): float(loss) for v, loss in zip(values, val)}
    finite = [i for i, loss in enumerate(val.tolist()) if loss == loss and loss != float("inf")]
    best = min(finite, key=lambda i: (float(val[i]), i)) if finite else 0
    return values[best], losses
