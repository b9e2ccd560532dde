"""Pruning a dense network as methods: the criteria of paper 001 on a schedule with retraining
(magnitude, random, OBD, ...), and paper 000's loss-aware synapse removal.

Both start from the same dense network: the largest grid network within the policy's
``max_params`` (:func:`~netbonsai.methods.magnitude.pruned_architecture`), trained exactly as its
run of the dense sweep. Every reported network gets the same polish as every other method's.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

from ..data.task import Task
from ..errors import InputError
from ..grow.search import FrontPoint
from ..nets.dag import DagNet
from ..nets.io import net_from_state
from ..prune.loss_aware import LossAwareConfig, loss_aware_prune
from ..train.sweep import train_dense
from .base import Method, MethodResult, candidate, finite_front
from .front import polish
from .magnitude import MagnitudeSettings, magnitude_job, pruned_architecture
from .registry import register

if TYPE_CHECKING:
    from ..experiments.presets import TaskSettings
    from ..runs import RunContext


class CriterionPruning(Method):
    """Iterative pruning of the dense source network by one criterion, retrained after every
    round for the policy's retraining budget, up to the target sparsity (or the first round
    that cuts every input-output path)."""

    criterion: ClassVar[str] = "magnitude-blinded"
    Settings = MagnitudeSettings

    @classmethod
    def for_policy(cls, policy: "TaskSettings") -> "CriterionPruning":
        return cls(replace(policy.magnitude, enabled=True, method=cls.criterion), policy)

    def run(self, task: Task, ctx: "RunContext") -> MethodResult:
        policy = replace(self.policy, magnitude=self.settings)
        ctx.reporter.stage_started(f"{self.name} pruning")
        item = ctx.executor.submit(magnitude_job, task.to("cpu", copy=True), policy).result()
        front = []
        for point, state in zip(item["points"], item["nets"]):
            net = net_from_state(state).to(task.x_train.device)
            found = candidate(net, task, training={"round": point["round"]})
            found.train_loss, found.val_loss = point["train_loss"], point["val_loss"]  # as measured after the polish
            front.append(found)
            ctx.emit("round", method=self.name, **found.summary())
        final = front[-1].net if front else None
        return MethodResult(sorted(front, key=lambda c: c.params), final, "sparsity reached or paths cut", 0.0,
                            extra={"from": item["from"]})


def _criterion_method(name: str, criterion: str, text: str) -> type[CriterionPruning]:
    cls = type(f"{criterion.title().replace('-', '')}Pruning", (CriterionPruning,),
               {"name": name, "criterion": criterion, "summary": text, "__doc__": CriterionPruning.__doc__})
    return register(cls)


MagnitudePruning = _criterion_method("magnitude", "magnitude-blinded",
                                     "iterative global magnitude pruning with retraining (Han et al.; paper 001)")
_criterion_method("magnitude-uniform", "magnitude-uniform", "magnitude pruning, the same share from every layer (paper 001)")
_criterion_method("magnitude-distributed", "magnitude-distributed",
                  "magnitude pruning, shares spread by layer spread (paper 001)")
_criterion_method("random", "random", "random synapse removal with retraining (paper 001's control)")
_criterion_method("obd", "obd", "Optimal Brain Damage: lowest curvature-weighted saliency first (paper 001)")


@dataclass(frozen=True)
class LossAwareSettings:
    """Paper 000's removal phase on a dense network: remove the synapses whose removal costs the
    least loss, retrain the best N2 variants briefly, accept while the loss stays within
    ``(1 + eps)`` of the start. ``chunk`` None: 1 synapse per step (the paper) for networks of up
    to 1,000 synapses, else a hundredth of the live synapses (bigger networks would take a step
    per synapse)."""

    eps: float = 0.002
    n_candidates: int = 8
    n_trials: int = 3
    chunk: int | None = None
    max_fraction: float | None = None  # None: the policy's target sparsity (magnitude.sparsity)
    max_seconds: float | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.eps < 1:
            raise InputError(f"loss-aware.eps must be in [0, 1), got {self.eps}")
        if self.n_candidates < 1 or self.n_trials < 1 or self.n_trials > self.n_candidates:
            raise InputError("loss-aware.n_candidates and n_trials must be >= 1, with n_trials <= n_candidates")
        if self.chunk is not None and self.chunk < 1:
            raise InputError(f"loss-aware.chunk must be at least 1, got {self.chunk}")
        if self.max_fraction is not None and not 0 < self.max_fraction <= 1:
            raise InputError(f"loss-aware.max_fraction must be in (0, 1], got {self.max_fraction}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@register
class LossAwarePruning(Method):
    """Paper 000's loss-aware synapse removal (its prune phase, on a dense network)."""

    name = "loss-aware"
    summary = "paper 000's prune phase on a dense network: least-loss removals, retrained, within eps"
    Settings = LossAwareSettings

    @classmethod
    def for_policy(cls, policy: "TaskSettings") -> "LossAwarePruning":
        """Paper defaults; the quick preset caps the removal at two minutes (a step costs seconds on
        MNIST-sized networks, where it would otherwise run for many minutes)."""
        return cls(LossAwareSettings(max_seconds=120.0 if policy.preset == "quick" else None), policy)

    def run(self, task: Task, ctx: "RunContext") -> MethodResult:
        policy, settings = self.policy, self.settings
        grow = policy.grow
        hidden = pruned_architecture(policy.dense_grid, task.n_in, task.n_out, grow.max_params)
        ctx.reporter.stage_started("loss-aware removal")
        net = train_dense(task, hidden, grow.activation, policy.dense_epochs, grow.trainer, grow.seed).net
        live = int(net.mask[0].sum())
        chunk = settings.chunk or (1 if live <= 1000 else max(1, live // 100))
        config = LossAwareConfig(
            chunk=chunk, n_candidates=settings.n_candidates, n_trials=settings.n_trials, eps=settings.eps,
            trial_epochs=grow.trial_epochs, max_fraction=settings.max_fraction or policy.magnitude.sparsity,
            max_seconds=settings.max_seconds, seed=grow.seed, trainer=grow.trainer,
        )
        snapshots: list[tuple[int, DagNet]] = []

        def on_step(record: dict[str, Any], accepted: DagNet) -> None:
            snapshots.append((int(record["step"]), accepted.clone()))
            ctx.emit("remove", method=self.name, step=record["step"], removed=record["removed"],
                     params=record.get("params"), train_loss=record.get("train_loss"))
            ctx.reporter.stage_advanced("loss-aware removal", 1, f"{record['removed']} synapses removed")

        result = loss_aware_prune(net, task.x_train, task.y_train, config, on_step=on_step)
        limit = max(2, policy.polish_points)
        if len(snapshots) > limit:
            chosen = sorted({round(i * (len(snapshots) - 1) / (limit - 1)) for i in range(limit)})
            snapshots = [snapshots[i] for i in chosen]
        points = [FrontPoint(n.num_params(), math.nan, math.nan, step, n) for step, n in snapshots]
        points = polish(points, task, policy, ctx.executor)
        front = [candidate(p.net, task, training={"step": p.event}) for p in points]
        return MethodResult(finite_front(front) or front, result.net, result.stop_reason, result.seconds,
                            extra={"from": list(hidden), "removed": result.removed, "start_live": result.start_live})


def criterion_names() -> list[str]:
    """The registered criterion-pruning methods."""
    from .registry import METHODS

    return [name for name, cls in METHODS.items() if isinstance(cls, type) and issubclass(cls, CriterionPruning)]

