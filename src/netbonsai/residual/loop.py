"""The pruning and growth loops of paper 004 over a :class:`~netbonsai.data.task.Task`, and the
conversion of a :class:`~netbonsai.residual.blocks.ResidualMLP` to a DagNet.

- :func:`prune_blocks`: score every removable block on the validation split, remove the least
  efficient one, retrain briefly, and stop once the validation loss leaves the tolerance (the
  last network within it is kept);
- :func:`grow_blocks`: AutoGrow's round robin (:func:`~netbonsai.residual.growth.grow_round_robin`)
  with ``fit`` as its training, stopped at a parameter budget;
- :func:`residual_mlp_to_dag`: the same function as a neuron-level DagNet (one identity node per
  unit of every sum), so saving, polish, export and drawing work on residual networks.

Losses are the task's reported units (the trainer's mean loss times ``task.loss_scale``).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any, Callable

import torch
from torch import nn

from ..data.task import Task
from ..errors import InputError
from ..nets.activations import MODULE_TO_NAME
from ..nets.dag import DagNet
from ..train.fit import Budget, TrainerConfig, fit
from ..train.losses import evaluate, get_loss, population_outputs
from .blocks import ResidualBlock, ResidualMLP, find_blocks
from .edits import count_params, insert_block, remove_blocks, stage_containers
from .efficiency import MEASURES, PER, block_scores, efficiency
from .growth import ConvergentPolicy, blocks_per_stage, grow_round_robin, round_robin

SCORE_ROWS = 2048  # blocks are scored on at most this many validation rows


@dataclass
class PruneResult:
    """The kept network (the last within tolerance), every step's record, and the sizes."""

    model: nn.Module
    steps: list[dict[str, Any]]
    start_val_loss: float
    start_val_error: float | None
    blocks_before: int
    blocks_after: int
    params_before: int
    params_after: int
    stop_reason: str


@dataclass
class GrowResult:
    """The grown network and one record per growth step (see :func:`grow_round_robin`)."""

    model: nn.Module
    records: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str = ""


def _check_task(task: Task, trainer: TrainerConfig, what: str) -> None:
    if not isinstance(task, Task) or isinstance(task.train.x, tuple):
        raise InputError(f"{what} needs a Task with tensor inputs")
    if not isinstance(trainer, TrainerConfig) or trainer.loss != task.loss:
        raise InputError(f"{what}: the trainer's loss must be the task's ({task.loss})")


def _count(value: Any, what: str, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < least:
        raise InputError(f"{what} must be an integer >= {least}, got {value!r}")
    return int(value)


@torch.no_grad()
def validation(model: nn.Module, task: Task) -> tuple[float, float | None]:
    """Validation loss in reported units, and the error rate for classification (else None)."""
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        loss = float(evaluate(model, task.x_val, task.y_val, task.loss)[0]) * task.loss_scale
        if task.kind != "classification":
            return loss, None
        wrong = int((population_outputs(model, task.x_val)[0].argmax(dim=-1) != task.y_val).sum())
    finally:
        for m, mode in modes.items():
            m.training = mode
    return loss, wrong / len(task.val)


def _least_efficient(model: nn.Module, task: Task, measure: str, per: str) -> tuple[int, list, list]:
    """Index (in ``find_blocks`` order) of the least efficient block, all scores, all efficiencies.
    A NaN efficiency (a CKA over a constant batch) counts as the lowest."""
    x, y = task.x_val[:SCORE_ROWS], task.y_val[:SCORE_ROWS]
    per_variant = get_loss(task.loss)
    scores = block_scores(model, x, y, lambda out, target: per_variant(out.unsqueeze(0), target)[0], (measure,))
    value = efficiency(scores, model, per, example=x)[measure]
    ranked = torch.nan_to_num(value, nan=-math.inf)
    return int(torch.argmin(ranked)), scores[measure].tolist(), value.tolist()


def prune_blocks(model: nn.Module, task: Task, trainer: TrainerConfig, *, measure: str = "norm_ratio",
                 per: str = "params", tolerance: float = 0.001, retrain_epochs: int = 1, seed: int = 0,
                 max_removals: int | None = None, reference_loss: float | None = None,
                 error_tolerance: float | None = None,
                 on_step: Callable[[dict[str, Any]], None] | None = None) -> PruneResult:
    """Remove the least efficient block, retrain, repeat, while within ``tolerance``.

    Each step scores every block (``measure`` of :data:`MEASURES`, ``lesion`` included) on the
    validation split (its first 2,048 rows), divides by the block's cost (``per``), removes the
    lowest, retrains for ``retrain_epochs`` (seed ``seed + step``) and measures the validation
    loss. The loop stops when that loss exceeds ``reference_loss * (1 + tolerance)`` (the
    reference defaults to the input network's loss; that step is recorded as not accepted and its
    network dropped), when no block is left, or after ``max_removals`` steps. ``on_step`` gets
    each step's record plus ``"model"``: the retrained network of that step (the caller's to
    keep). The input model is never changed.

    With ``error_tolerance`` (classification only) a step is accepted by the validation error
    instead: while it stays within ``start error + error_tolerance`` (a fraction: 0.001 is 0.1
    points), the loss limit then being unused.
    """
    _check_task(task, trainer, "prune_blocks")
    if measure not in MEASURES:
        raise InputError(f"prune_blocks: measure must be one of {', '.join(MEASURES)}, got {measure!r}")
    if per not in PER:
        raise InputError(f'prune_blocks: per must be one of {", ".join(PER)}, got {per!r}')
    if isinstance(tolerance, bool) or not isinstance(tolerance, Real) or not 0 <= tolerance < math.inf:
        raise InputError(f"prune_blocks: tolerance must be a finite number >= 0, got {tolerance!r}")
    if error_tolerance is not None:
        if task.kind != "classification":
            raise InputError("prune_blocks: error_tolerance needs a classification task")
        bad = isinstance(error_tolerance, bool) or not isinstance(error_tolerance, Real)
        if bad or not 0 <= error_tolerance < 1:
            raise InputError(f"prune_blocks: error_tolerance must be a number in [0, 1), got {error_tolerance!r}")
    retrain_epochs = _count(retrain_epochs, "prune_blocks: retrain_epochs", 0)
    limit_steps = math.inf if max_removals is None else _count(max_removals, "prune_blocks: max_removals", 0)
    start_loss, start_error = validation(model, task)
    reference = start_loss if reference_loss is None else float(reference_loss)
    limit = reference * (1 + float(tolerance))
    error_limit = None if error_tolerance is None else start_error + float(error_tolerance) + 1e-12
    kept = copy.deepcopy(model)
    steps: list[dict[str, Any]] = []
    reason = "max removals"
    while len(steps) < limit_steps:
        refs = find_blocks(kept)
        if not refs:
            reason = "no blocks left"
            break
        index, scores, efficiencies = _least_efficient(kept, task, measure, per)
        ref = refs[index]
        removed = count_params(ref.module)
        trial = remove_blocks(kept, ref)
        if retrain_epochs > 0:
            fit(trial, task.train, Budget(epochs=retrain_epochs), trainer, seed=seed + len(steps) + 1)
        val_loss, val_error = validation(trial, task)
        accepted = val_loss <= limit if error_limit is None else val_error <= error_limit  # NaN is not accepted
        record = {"step": len(steps) + 1, "block": [ref.stage, ref.index], "measure": measure,
                  "scores": scores, "efficiency": efficiencies, "removed_params": removed,
                  "params": count_params(trial), "blocks": blocks_per_stage(trial), "val_loss": val_loss,
                  "val_error": val_error, "accepted": accepted}
        steps.append(record)
        if on_step is not None:
            on_step({**record, "model": trial})
        if not accepted:
            reason = "tolerance"
            break
        kept = trial
    return PruneResult(kept, steps, start_loss, start_error, len(find_blocks(model)), len(find_blocks(kept)),
                       count_params(model), count_params(kept), reason)


def _growable_steps(model: nn.Module, steps: int, max_params: int | None) -> int:
    """How many of ``steps`` round-robin insertions keep the model within ``max_params``."""
    if max_params is None:
        return steps
    stages = stage_containers(model)
    sizes = [count_params(insert_block(model, s)) - count_params(model) for s in range(len(stages))]
    total = count_params(model)
    for step in range(steps):
        total += sizes[round_robin(len(stages), step)]
        if total > max_params:
            return step
    return steps


def grow_blocks(model: nn.Module, task: Task, trainer: TrainerConfig, *, steps: int, epochs_per_step: int = 1,
                init: str = "zero", policy: ConvergentPolicy | None = None, seed: int = 0,
                max_params: int | None = None, budget_per_step: Budget | None = None,
                on_step: Callable[[dict[str, Any]], None] | None = None) -> GrowResult:
    """Grow ``model`` (a copy) by up to ``steps`` blocks, round robin over its stages.

    Each new block (``init``: ``zero`` keeps the function, or ``random``) is followed by
    ``epochs_per_step`` of training (seed ``seed + step``) and a validation figure: accuracy for
    classification, minus the loss for regression, which ``policy`` (AutoGrow's convergent
    policy) may stop on. A step that would take the model above ``max_params`` is not taken.
    ``on_step`` gets each step's record plus ``"model"`` (the trained network, the caller's).
    ``budget_per_step`` (e.g. ``Budget(steps=...)`` for part of an epoch) replaces
    ``epochs_per_step`` when given.
    """
    _check_task(task, trainer, "grow_blocks")
    if budget_per_step is not None and not isinstance(budget_per_step, Budget):
        raise InputError(f"grow_blocks: budget_per_step must be a Budget, got {type(budget_per_step).__name__}")
    steps = _count(steps, "grow_blocks: steps", 0)
    epochs = _count(epochs_per_step, "grow_blocks: epochs_per_step", 0)
    if max_params is not None:
        max_params = _count(max_params, "grow_blocks: max_params", 1)
    allowed = _growable_steps(model, steps, max_params)
    n_stages = len(stage_containers(model))
    done: list[dict[str, Any]] = []

    def train(grown: nn.Module) -> float:
        step = len(done)
        if budget_per_step is not None:
            fit(grown, task.train, budget_per_step, trainer, seed=seed + step + 1)
        elif epochs > 0:
            fit(grown, task.train, Budget(epochs=epochs), trainer, seed=seed + step + 1)
        val_loss, val_error = validation(grown, task)
        val = 1.0 - val_error if val_error is not None else -val_loss
        record = {"step": step, "stage": round_robin(n_stages, step), "blocks_per_stage": blocks_per_stage(grown),
                  "params": count_params(grown), "val": val, "val_loss": val_loss, "val_error": val_error}
        done.append(record)
        if on_step is not None:
            on_step({**record, "model": copy.deepcopy(grown)})
        return val

    grown, records = grow_round_robin(model, allowed, train, init=init, policy=policy,
                                      generator=torch.Generator().manual_seed(seed))
    for record, extra in zip(records, done):
        record.update(val_loss=extra["val_loss"], val_error=extra["val_error"])
    if policy is not None and policy.stopped:
        reason = "policy"
    elif allowed < steps:
        reason = "max params"
    else:
        reason = "steps done"
    return GrowResult(grown, records, reason)


def _activation(module: nn.Module, where: str) -> str:
    name = MODULE_TO_NAME.get(type(module))
    if name is None:
        raise InputError(f"residual_mlp_to_dag: {where} is {type(module).__name__}, not a DagNet activation")
    return name


def residual_mlp_to_dag(model: ResidualMLP) -> DagNet:
    """The same function as a population-1 DagNet, for saving, polish, export and drawing.

    Nodes: inputs, the stem's units, then per block its hidden units (the block's activation)
    and one identity node per unit of the sum ``h + gate * (W2 a + b2)``, then the outputs. The
    skip is one synapse of weight 1 per unit and the gate is folded into ``W2`` and ``b2``, so
    the DagNet counts ``width - 1`` parameters more per block than the module (its skip synapses
    are free weights once trained, its gates are gone)."""
    if not isinstance(model, ResidualMLP):
        raise InputError(f"residual_mlp_to_dag needs a ResidualMLP, got {type(model).__name__}")
    stem = [m for m in model.stem if not isinstance(m, nn.Flatten)]
    if len(stem) != 2 or not isinstance(stem[0], nn.Linear):
        raise InputError("residual_mlp_to_dag: the stem must be Flatten, Linear and one activation")
    layers: list[ResidualBlock] = []
    for stage in model.stages:
        for block in stage:
            body = list(block.body) if isinstance(block, ResidualBlock) else []
            if (len(body) != 3 or not isinstance(body[0], nn.Linear) or not isinstance(body[2], nn.Linear)
                    or not isinstance(block.post, nn.Identity)):
                raise InputError("residual_mlp_to_dag: every block must be ResidualBlock(mlp_body(width))")
            layers.append(block)
    width, n_in, n_out = stem[0].out_features, stem[0].in_features, model.head.out_features
    n_nodes = n_in + width + 2 * width * len(layers) + n_out
    weight = torch.zeros(n_nodes, n_nodes)
    bias = torch.zeros(n_nodes)
    acts = ["identity"] * n_in + [_activation(stem[1], "the stem's activation")] * width
    with torch.no_grad():
        def dense(src: int, n_src: int, dst: int, linear: nn.Linear, scale: torch.Tensor | float = 1.0) -> None:
            weight[src:src + n_src, dst:dst + linear.out_features] = (linear.weight * scale).T.float().cpu()
            bias[dst:dst + linear.out_features] = (linear.bias * scale).float().cpu()

        dense(0, n_in, n_in, stem[0])
        h = n_in  # first node of the current sum
        for block in layers:
            a, s = h + width, h + 2 * width
            first, act, second = block.body
            dense(h, width, a, first)
            dense(a, width, s, second, block.gate.detach())
            weight[torch.arange(h, h + width), torch.arange(s, s + width)] = 1.0
            acts += [_activation(act, "a block's activation")] * width + ["identity"] * width
            h = s
        dense(h, width, n_nodes - n_out, model.head)
    acts += ["identity"] * n_out
    mask = _structural_mask(n_in, width, len(layers), n_out)  # a zero weight is still a synapse
    return DagNet(n_in, n_out, weight, mask, bias, acts)


def _structural_mask(n_in: int, width: int, blocks: int, n_out: int) -> torch.Tensor:
    """Every synapse of the residual MLP, whatever its weight: stem, per block the first layer,
    the second layer and the diagonal skip, and the head."""
    n = n_in + width + 2 * width * blocks + n_out
    mask = torch.zeros(n, n, dtype=torch.bool)
    mask[:n_in, n_in:n_in + width] = True
    h = n_in
    for _ in range(blocks):
        a, s = h + width, h + 2 * width
        mask[h:h + width, a:a + width] = True
        mask[a:a + width, s:s + width] = True
        mask[torch.arange(h, h + width), torch.arange(s, s + width)] = True
        h = s
    mask[h:h + width, n - n_out:] = True
    return mask
