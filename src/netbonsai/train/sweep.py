"""The dense baseline: a sweep of layered MLPs trained with the same trainer and budget."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ..data.task import Task
from ..nets.dag import DagNet
from ..nets.normalization import standardize_for
from .fit import Budget, TrainerConfig, fit
from .losses import evaluate


@dataclass
class DenseResult:
    """One trained dense MLP of the sweep; losses in reported units."""

    hidden: list[int]
    params: int
    train_loss: float
    val_loss: float
    seconds: float
    net: DagNet

    def summary(self) -> dict:
        return {
            "hidden": self.hidden,
            "params": self.params,
            "train_loss": self.train_loss,
            "val_loss": self.val_loss,
            "seconds": round(self.seconds, 3),
        }


def train_dense(
    data: Task,
    hidden: Sequence[int],
    activation: str,
    epochs: int,
    trainer: TrainerConfig,
    seed: int,
) -> DenseResult:
    """Build, standardise and train one dense MLP exactly as the search builds its start network."""
    generator = torch.Generator().manual_seed(seed)
    net = DagNet.mlp([data.n_in, *hidden, data.n_out], activation, generator=generator).to(data.x_train.device)
    standardize_for(net, data.x_train, data.y_train)
    result = fit(net, data.train, Budget(epochs=epochs), trainer, seed=seed)
    val = float(evaluate(net, data.x_val, data.y_val, trainer.loss)[0])
    return DenseResult(
        hidden=[int(h) for h in hidden],
        params=net.num_params(),
        train_loss=float(result.loss[0]) * data.loss_scale,
        val_loss=val * data.loss_scale,
        seconds=result.seconds,
        net=net,
    )


def dense_sweep(
    data: Task,
    grid: Sequence[Sequence[int]],
    activation: str,
    epochs: int,
    trainer: TrainerConfig,
    seed: int,
    on_result: Callable[[DenseResult], None] | None = None,
) -> list[DenseResult]:
    """Train every architecture of ``grid`` (hidden layer sizes) with the same budget and seed."""
    results = []
    for hidden in grid:
        result = train_dense(data, hidden, activation, epochs, trainer, seed)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results
