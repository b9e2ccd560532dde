"""Polish: the same final training for every reported network, dense and grown alike.

Front networks and dense baselines are compared after the same final budget rather than at
whatever point of training a search happened to leave them. Networks are trained in groups
(each group one padded population, one executor job); the grouping, not the executor, fixes the
result.
"""

from __future__ import annotations

from concurrent.futures import Executor
from typing import Any, Sequence

from ..data.task import Task
from ..nets.dag import DagNet
from ..nets.io import net_from_state, net_to_state
from .fit import Budget, TrainerConfig, fit
from .losses import evaluate


def polish_nets(
    nets: Sequence[DagNet], task: Task, epochs: int, trainer: TrainerConfig, seed: int, *,
    device: str = "cpu", group: int = 1, executor: Executor | None = None,
) -> list[dict[str, Any]]:
    """Train copies of ``nets`` for ``epochs`` each; returns per network ``{"params",
    "train_loss", "val_loss" (reported units), "net"}`` in the given order. ``group`` networks
    (consecutive) share one population and one job on ``executor`` (this process when None)."""
    size = max(1, group)
    groups = [[net_to_state(n) for n in nets[i : i + size]] for i in range(0, len(nets), size)]
    if executor is None:
        done = [polish_job(task, g, epochs, trainer, seed, device) for g in groups]
    else:
        shipped = shipped_task(task)
        futures = [executor.submit(polish_job, shipped, g, epochs, trainer, seed, device) for g in groups]
        done = [future.result() for future in futures]
    return [{**item, "net": net_from_state(item["net"])} for group_items in done for item in group_items]


def polish_job(task: Task, states: list[dict[str, Any]], epochs: int, trainer: TrainerConfig, seed: int,
               device: str = "cpu") -> list[dict[str, Any]]:
    """Polish one population of networks (given as states); returns plain data per network."""
    task = task.to(device)
    result = fit([net_from_state(state).to(device) for state in states], task.train, Budget(epochs=epochs),
                 trainer, seed=seed)
    return [
        {
            "params": net.num_params(),
            "train_loss": float(evaluate(net, task.x_train, task.y_train, trainer.loss)[0]) * task.loss_scale,
            "val_loss": float(evaluate(net, task.x_val, task.y_val, trainer.loss)[0]) * task.loss_scale,
            "net": net_to_state(net),
        }
        for net in result.models
    ]


def shipped_task(task: Task) -> Task:
    """A copy of ``task`` for executor jobs.

    Workers get their own copy: a process pool pickles tensors in a feeder thread, and torch's
    pickling moves a tensor's storage into shared memory *in place*. Done on the search's own
    tensors, that move races with the search reading them in this thread (measured: the
    neuron-attempt sample of a compare run read as garbage, attempt losses of 3.8e25). The copy
    is on the CPU (a GPU tensor does not pickle into another process); each job moves it to the
    run's device.
    """
    return task.to("cpu", copy=True)
