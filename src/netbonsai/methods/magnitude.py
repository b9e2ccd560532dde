"""The second baseline of the image comparisons: iterative magnitude pruning of a dense MLP.

What a user would do instead of growing (DESIGN.md, "Baselines and comparisons"): train a dense
MLP, then remove the smallest-magnitude synapses globally, round by round, retraining after each
round. Every budget is the search's own, so the comparison stays fair: the dense network is
trained exactly as its run of the dense sweep (same architecture, seed and epochs: the same
network, before the sweep's final polish), each round is retrained for ``grow_epochs`` (what the
search gives a network after each addition), and every reported network gets the same final
polish as the grown and dense ones. Pruning stops at the target sparsity or at the first round
that leaves no path from the inputs to an output (a constant predictor, not a network worth
reporting).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Sequence

import torch

from ..nets.dag_build import mlp_params  # noqa: F401 - re-exported: callers import it from here
from ..errors import InputError
from ..grow.search import FrontPoint
from ..nets.dag import DagNet
from ..nets.io import net_to_state
from ..prune import check_method, parse_schedule, run_schedule
from ..train import Budget, evaluate, fit
from ..train.sweep import train_dense
from .front import polish  # the same final training as every other reported network
from ..data.task import Split

if TYPE_CHECKING:
    from ..data.task import Task
    from ..experiments.presets import TaskSettings


@dataclass(frozen=True)
class MagnitudeSettings:
    """How the magnitude-pruning baseline prunes (see :mod:`netbonsai.prune` for the names)."""

    enabled: bool = True
    method: str = "magnitude-blinded"  # global |w| ranking over every synapse
    schedule: str = "relative:0.2"  # a fifth of the live synapses per round
    sparsity: float = 0.9  # stop once this fraction of the dense network's synapses is gone

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise InputError(f"magnitude.enabled must be true or false, got {self.enabled!r}")
        check_method(self.method)
        parse_schedule(self.schedule)
        if isinstance(self.sparsity, bool) or not isinstance(self.sparsity, (int, float)) or not 0 < self.sparsity < 1:
            raise InputError(f"magnitude.sparsity must be a fraction in (0, 1), got {self.sparsity!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pruned_architecture(grid: Sequence[Sequence[int]], n_in: int, n_out: int, max_params: int) -> tuple[int, ...]:
    """The grid network that is pruned: the largest with at most ``max_params`` parameters (the
    search's own ceiling, so both methods work in the same range), else the smallest."""
    if not grid:
        raise InputError("the dense grid is empty: there is no network to prune")
    sizes = [mlp_params([n_in, *hidden, n_out]) for hidden in grid]
    within = [i for i, size in enumerate(sizes) if size <= max_params]
    index = max(within, key=lambda i: sizes[i]) if within else min(range(len(grid)), key=lambda i: sizes[i])
    return tuple(int(h) for h in grid[index])


def inputs_reach_outputs(net: DagNet) -> bool:
    """Whether every output of a population-1 network still varies with its input (some path of
    live synapses leads to it from an input)."""
    return bool(net.liveness().varies[0, net.n_nodes - net.n_out :].all())


def magnitude_job(data: "Task", settings: "TaskSettings") -> dict[str, Any]:
    """Train the dense network, prune it round by round, polish every round's network.

    Returns ``{"from": hidden, "points": [{"round", "params", "train_loss", "val_loss"}, ...],
    "nets": [state, ...]}`` (losses in reported units, after the polish), one point per round
    after the first removal, up to the target sparsity or the last round before an output lost
    every path from the inputs.
    """
    config = settings.magnitude
    grow = settings.grow
    trainer = grow.trainer
    data = data.to(settings.device)
    hidden = pruned_architecture(settings.dense_grid, data.n_in, data.n_out, grow.max_params)
    net = train_dense(data, hidden, grow.activation, settings.dense_epochs, trainer, grow.seed).net
    x, y = data.x_train, data.y_train
    snapshots: list[tuple[int, DagNet]] = []
    collapsed = False

    def retrain(model: DagNet) -> None:
        fit(model, Split(x, y), Budget(epochs=grow.grow_epochs), trainer, seed=grow.seed)

    def keep(record: dict[str, Any]) -> None:
        nonlocal collapsed
        if record["round"] == 0:  # the dense network itself, already in the sweep
            return
        if not inputs_reach_outputs(net):
            collapsed = True
            return
        snapshots.append((int(record["round"]), net.clone()))

    run_schedule(
        net, config.method, config.schedule, evaluate=lambda model: {}, retrain=retrain,
        target_sparsity=config.sparsity, loss=trainer.loss, on_round=keep, stop=lambda record: collapsed,
        data=(x, y), generator=torch.Generator().manual_seed(grow.seed),  # for obd and random
    )
    points = [FrontPoint(n.num_params(), math.nan, math.nan, r, n) for r, n in snapshots]
    points = polish(points, data, settings)
    for point in points:
        if math.isnan(point.val_loss):  # no polish: measure the networks as the rounds left them
            point.train_loss = float(evaluate(point.net, x, y, trainer.loss)[0]) * data.loss_scale
            point.val_loss = float(evaluate(point.net, data.x_val, data.y_val, trainer.loss)[0]) * data.loss_scale
    return {
        "from": list(hidden),
        "points": [
            {"round": p.event, "params": p.params, "train_loss": p.train_loss, "val_loss": p.val_loss} for p in points
        ],
        "nets": [net_to_state(p.net.cpu()) for p in points],
    }
