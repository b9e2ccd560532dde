"""Pruning schedules: how much to remove per round, and the prune / retrain / evaluate loop.

Schedule strings (``KIND:VALUE``):

- ``oneshot:F``  one round removing the fraction F (0 < F <= 1) of the weights live at the start;
- ``fixed:N``    N weights (an integer >= 1) per round;
- ``relative:F`` the fraction F (0 < F <= 1) of the weights still live, each round (at least one);
- ``bucket:V``   per round, the lowest-saliency weights whose saliencies sum to at most V (V >= 0),
  and at least one. The bucket fills in the global order of the method's scores, for
  ``magnitude-uniform`` too.

Sparsity is the fraction of removed weights, relative to all weights of the masked layers (dense
size), to the unpruned weights of the selected ``parts`` of a MaskedRecurrent, or, for a DagNet
(which has no dense size), to its live synapses when the schedule starts.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from ..errors import InputError
from ..nets.dag import DagNet
from ..nets.masked import mask_applier
from ..train.fit import Budget, TrainerConfig, fit
from ..train.losses import get_loss
from .criteria import Criterion, check_method, remove_, saliency, select, select_bucket
from .groups import live_params, live_weights, prunable_groups, total_weights
from ..data.task import Split

KINDS = ("oneshot", "fixed", "relative", "bucket")
STOP_REASONS = ("target", "accuracy", "exhausted", "oneshot", "max_rounds", "stop")


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule: ``kind`` (one of :data:`KINDS`) and its ``value``."""

    kind: str
    value: float

    def __str__(self) -> str:
        return f"{self.kind}:{int(self.value) if self.kind == 'fixed' else self.value:g}"

    def count(self, live: int, start_live: int) -> int:
        """Weights to remove this round with ``live`` left of ``start_live`` (not for ``bucket``)."""
        if self.kind == "oneshot":
            wanted = int(self.value * start_live + 0.5)
        elif self.kind == "fixed":
            wanted = int(self.value)
        elif self.kind == "relative":
            wanted = int(self.value * live + 0.5)
        else:
            raise InputError("a bucket schedule removes by saliency, not by count")
        return max(1, min(wanted, live)) if live else 0


def parse_schedule(text: str | Schedule) -> Schedule:
    """Parse ``oneshot:0.9``, ``fixed:5000``, ``relative:0.2`` or ``bucket:0.5``."""
    if isinstance(text, Schedule):
        return text
    usage = f"expected KIND:VALUE with KIND one of {', '.join(KINDS)} (e.g. relative:0.2)"
    kind, sep, raw = str(text).strip().partition(":")
    kind = kind.strip().lower()
    if not sep or kind not in KINDS:
        raise InputError(f"bad pruning schedule {text!r}: {usage}")
    try:
        value = float(raw)
    except ValueError:
        raise InputError(f"bad pruning schedule {text!r}: {raw.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise InputError(f"bad pruning schedule {text!r}: the value must be finite")
    if kind in ("oneshot", "relative") and not 0.0 < value <= 1.0:
        raise InputError(f"bad pruning schedule {text!r}: {kind} needs a fraction in (0, 1]")
    if kind == "fixed" and (value < 1 or value != int(value)):
        raise InputError(f"bad pruning schedule {text!r}: fixed needs a whole number of weights >= 1")
    if kind == "bucket" and value < 0:
        raise InputError(f"bad pruning schedule {text!r}: bucket needs a saliency budget >= 0")
    return Schedule(kind, value)


@dataclass
class ScheduleResult:
    """What :func:`run_schedule` did: one record per round (round 0 = before pruning).

    ``final_round`` is the round whose state the model is left in (earlier than the last record
    when the accuracy tolerance rolled it back); ``stopped`` is one of :data:`STOP_REASONS`.
    """

    records: list[dict] = field(default_factory=list)
    stopped: str = "max_rounds"
    final_round: int = 0

    @property
    def final(self) -> dict:
        """The record of the state the model is left in."""
        return self.records[self.final_round]


def run_schedule(
    model: nn.Module,
    method: "str | Criterion",
    schedule: str | Schedule,
    *,
    evaluate: Callable[[nn.Module], dict],
    retrain: Callable[[nn.Module], None] | None = None,
    data: tuple[torch.Tensor, torch.Tensor] | None = None,
    target_sparsity: float | None = None,
    max_accuracy_drop: float | None = None,
    metric: str = "accuracy",
    on_round: Callable[[dict], None] | None = None,
    max_rounds: int = 1000,
    loss: str = "cross_entropy",
    generator: torch.Generator | None = None,
    curvature: str = "auto",
    resume_from: ScheduleResult | None = None,
    on_checkpoint: Callable[[ScheduleResult], None] | None = None,
    parts: str | None = None,
    stop: Callable[[dict], bool] | None = None,
) -> ScheduleResult:
    """Prune ``model`` in place round by round: prune, ``retrain`` (if given), ``evaluate``.

    Each round's record holds ``round``, ``sparsity``, ``params`` (live parameters: see
    :func:`netbonsai.prune.groups.live_params`), ``live_weights``, ``removed`` (this round) and
    everything ``evaluate(model)`` returns; ``on_round`` receives each record once it is final.
    Stops when ``target_sparsity`` is reached (the last round removes only what reaches it,
    never more), when no weight is left, after one round of ``oneshot``, after ``max_rounds``
    rounds in all, or when ``evaluate(model)[metric]`` (higher is better) falls more than
    ``max_accuracy_drop`` (an absolute difference) below its round-0 value: that round is
    recorded with ``rolled_back=True`` and the model is restored to the last round within the
    tolerance (``result.final_round``). ``stop(record)`` returning True after a round ends the
    schedule there (``stopped="stop"``), e.g. once no input reaches an output any more.

    ``data``, ``loss``, ``generator`` and ``curvature`` go to the criterion (see ``saliency``).
    ``parts`` (a MaskedRecurrent's ``i2h``, ``h2h``, ``both`` or ``all`` weights) limits what is
    pruned; ``live_weights``, ``sparsity`` and ``target_sparsity`` then count those weights only.
    Resuming: ``on_checkpoint(result)`` is called after every round with the model in the state
    of ``result.final_round``; to continue an interrupted run, load that model state and pass
    the saved result as ``resume_from`` (round 0 is not re-evaluated; the generator and the
    retrainer continue from wherever the caller set them).
    """
    check_method(method)
    plan = parse_schedule(schedule)
    if target_sparsity is not None and not 0.0 <= target_sparsity <= 1.0:
        raise InputError(f"target sparsity must be in [0, 1], got {target_sparsity}")
    if max_accuracy_drop is not None and not max_accuracy_drop >= 0:
        raise InputError(f"max accuracy drop must be >= 0, got {max_accuracy_drop}")
    if max_rounds < 1:
        raise InputError(f"max_rounds must be >= 1, got {max_rounds}")
    prunable_groups(model, parts)  # rejects a model without prunable layers, a population, a bad part
    if resume_from is not None and not resume_from.records:
        raise InputError("resume_from holds no records: start the schedule afresh")
    if resume_from is None:
        start_live = live_weights(model, parts)
    else:
        start_live = int(resume_from.records[0]["live_weights"])
    total = start_live if isinstance(model, DagNet) else total_weights(model, parts)
    goal = None if target_sparsity is None else int(target_sparsity * total + 0.5)  # weights removed

    def measure(round_: int, removed: int) -> dict:
        live = live_weights(model, parts)
        entry = {
            "round": round_,
            "sparsity": 1.0 - live / total if total else 0.0,
            "params": live_params(model),
            "live_weights": live,
            "removed": removed,
        }
        for key, value in evaluate(model).items():
            entry[key] = value.item() if isinstance(value, torch.Tensor) and value.numel() == 1 else value
        return entry

    def reached() -> bool:
        return goal is not None and total - live_weights(model, parts) >= goal

    if resume_from is None:
        result = ScheduleResult(records=[measure(0, 0)])
        if on_round is not None:
            on_round(result.records[0])
    else:
        result = ScheduleResult(list(resume_from.records), resume_from.stopped, resume_from.final_round)
    baseline = None
    if max_accuracy_drop is not None:
        if metric not in result.records[0]:
            raise InputError(f"max_accuracy_drop needs evaluate() to return {metric!r}")
        baseline = float(result.records[0][metric])
    snapshot = _snapshot(model) if baseline is not None else None
    first = result.records[-1]["round"] + 1
    if any(r.get("rolled_back") for r in result.records):
        result.stopped = "accuracy"
        return result
    if plan.kind == "oneshot" and first > 1:
        result.stopped = "target" if reached() else "oneshot"
        return result
    result.stopped = "max_rounds"
    for round_ in range(first, max_rounds + 1):
        live = live_weights(model, parts)
        if reached():
            result.stopped = "target"
            break
        if live == 0:
            result.stopped = "exhausted"
            break
        limit = live if goal is None else goal - (total - live)
        table = saliency(
            model, method, data=data, loss=loss, generator=generator, curvature=curvature, parts=parts
        )
        if plan.kind == "bucket":
            rows = select_bucket(table, plan.value)[:limit]
        else:
            rows = select(table, min(plan.count(live, start_live), limit))
        removed = remove_(model, table, rows)
        if retrain is not None:
            retrain(model)
            apply = mask_applier(model)
            if apply is not None:
                apply()
        entry = measure(round_, removed)
        result.records.append(entry)
        rolled_back = baseline is not None and baseline - float(entry[metric]) > max_accuracy_drop
        if rolled_back:
            entry["rolled_back"] = True
            model.load_state_dict(snapshot)
            result.stopped = "accuracy"
        else:
            result.final_round = round_
            if snapshot is not None:
                snapshot = _snapshot(model)
        if on_round is not None:
            on_round(entry)
        if on_checkpoint is not None:
            on_checkpoint(result)
        if rolled_back:
            break
        if stop is not None and stop(entry):
            result.stopped = "stop"
            break
        if plan.kind == "oneshot":
            result.stopped = "target" if reached() else "oneshot"
            break
    else:
        live = live_weights(model, parts)
        result.stopped = "target" if reached() else ("exhausted" if live == 0 else "max_rounds")
    return result


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def retrainer(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int | None = None,
    seconds: float | None = None,
    method: str = "adam",
    loss: str = "cross_entropy",
    lr: float = 1e-3,
    batch_size: int = 256,
    weight_decay: float = 0.0,
    seed: int = 0,
) -> Callable[[nn.Module], None]:
    """A ``retrain`` callable for :func:`run_schedule`: ``netbonsai.train.fit`` on ``(x, y)`` with
    the given budget (removed weights stay zero). Each call uses the next seed, so rounds see
    different minibatch orders, deterministically."""
    budget = Budget(epochs=epochs, seconds=seconds)
    trainer = TrainerConfig(method=method, loss=loss, lr=lr, batch_size=batch_size, weight_decay=weight_decay)
    seeds = itertools.count(seed)

    def retrain(model: nn.Module) -> None:
        fit(model, Split(x, y), budget, trainer, seed=next(seeds))

    return retrain


def classification_evaluator(
    x: torch.Tensor, y: torch.Tensor, *, loss: str = "cross_entropy", chunk: int = 4096
) -> Callable[[nn.Module], dict]:
    """An ``evaluate`` callable: ``{"accuracy", "loss"}`` of a classifier on ``(x, y)`` (class
    indices), computed in eval mode and in chunks of ``chunk`` rows."""
    loss_fn = get_loss(loss)
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise InputError(
            f"evaluation data needs the same non-zero number of rows, got {x.shape[0]} and {y.shape[0]}"
        )

    @torch.no_grad()
    def evaluate(model: nn.Module) -> dict:
        mode = model.training
        model.eval()
        try:
            correct, total_loss = 0, 0.0
            for start in range(0, x.shape[0], chunk):
                xb, yb = x[start : start + chunk], y[start : start + chunk]
                out = model(xb)
                correct += int((out.argmax(dim=-1) == yb).sum())
                total_loss += float(loss_fn(out.unsqueeze(0), yb)[0]) * xb.shape[0]
        finally:
            model.train(mode)
        return {"accuracy": correct / x.shape[0], "loss": total_loss / x.shape[0]}

    return evaluate
