"""The Method protocol: what every method family (grow-and-prune, pruning criteria, loss-aware
removal, the dense sweep, and the families to come) provides so that ``compare`` can run it.

A method is a class with a ``name``, a frozen settings dataclass (the paper's defaults, validated
in one place) and ``run(task, ctx) -> MethodResult``. It is built with its settings and the
comparison's shared :class:`~netbonsai.experiments.presets.TaskSettings` (the *policy*: the
trainer, the dense grid and budgets, the polish, the seed, the device), so that every method gets
the same trainer, data split and budget policy. It writes nothing itself: events, checkpoints
and files go through the :class:`~netbonsai.runs.RunContext` it is given.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from ..data.task import Task
from ..errors import InputError
from ..train.losses import evaluate, population_outputs

if TYPE_CHECKING:
    from ..experiments.presets import TaskSettings
    from ..runs import RunContext


@dataclass
class Candidate:
    """One network a method offers: its size, losses (the task's reported units), metrics
    (classification: ``val_accuracy``, ``val_errors``) and the training it had (``epochs``...)."""

    net: nn.Module
    params: int
    train_loss: float
    val_loss: float
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-ready record (no network)."""
        return {"params": self.params, "train_loss": self.train_loss, "val_loss": self.val_loss,
                **self.metrics, **self.training}


@dataclass
class MethodResult:
    """What a method returns: its Pareto front of candidates (ascending params), its final
    network, why it stopped, and how long it ran."""

    front: list[Candidate]
    final: nn.Module
    stop_reason: str
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)  # method-specific figures (JSON-ready)

    def best(self) -> Candidate:
        """The front's candidate with the lowest validation loss (a run's ``model``)."""
        if not self.front:
            raise InputError("the method returned no candidate")
        return min(self.front, key=lambda c: c.val_loss)


@torch.no_grad()
def measure(net: nn.Module, task: Task, loss: str | None = None) -> dict[str, Any]:
    """``train_loss`` and ``val_loss`` of (variant 0 of) ``net`` in the task's reported units, and
    ``val_accuracy`` / ``val_errors`` for classification tasks."""
    loss = loss or task.loss
    figures: dict[str, Any] = {
        "train_loss": float(evaluate(net, task.x_train, task.y_train, loss)[0]) * task.loss_scale,
        "val_loss": float(evaluate(net, task.x_val, task.y_val, loss)[0]) * task.loss_scale,
    }
    if task.kind == "classification":
        wrong = int((population_outputs(net, task.x_val)[0].argmax(dim=-1) != task.y_val).sum())
        figures.update(val_errors=wrong, val_accuracy=1.0 - wrong / len(task.val))
    return figures


@torch.no_grad()
def measure_on(net: nn.Module, task: Task, split) -> dict[str, Any]:
    """(Variant 0 of) ``net`` on one split of ``task``: ``loss`` in reported units, and
    ``accuracy`` / ``errors`` for classifiers or ``rmse`` (the target's units) for regression."""
    loss = float(evaluate(net, split.x, split.y, task.loss)[0])
    figures: dict[str, Any] = {"loss": loss * task.loss_scale}
    if task.kind == "classification":
        wrong = int((population_outputs(net, split.x)[0].argmax(dim=-1) != split.y).sum())
        figures.update(accuracy=1.0 - wrong / len(split), errors=wrong)
    else:
        figures["rmse"] = math.sqrt(loss * task.loss_scale)
        if "r2" in task.metrics:  # tables: 1 - SSE/SST per target (scale-free), averaged as scikit-learn does
            with torch.no_grad():
                out = population_outputs(net, split.x)[0].to(torch.float64)
            y = split.y.to(torch.float64).reshape(out.shape)
            sse = (out - y).pow(2).sum(dim=0)
            sst = (y - y.mean(dim=0)).pow(2).sum(dim=0)
            figures["r2"] = float((1 - sse / sst.clamp_min(torch.finfo(torch.float64).tiny)).mean())
    return figures


def candidate(net: nn.Module, task: Task, training: dict[str, Any] | None = None) -> Candidate:
    """A :class:`Candidate` for ``net``, measured on ``task`` (params: ``num_params``)."""
    figures = measure(net, task)
    params = net.num_params() if callable(getattr(net, "num_params", None)) else sum(p.numel() for p in net.parameters())
    train_loss, val_loss = figures.pop("train_loss"), figures.pop("val_loss")
    return Candidate(net, int(params), train_loss, val_loss, figures, dict(training or {}))


def finite_front(candidates: list[Candidate]) -> list[Candidate]:
    """The candidates on the Pareto front of (params, validation loss), ascending params;
    non-finite losses are dropped."""
    ordered = sorted((c for c in candidates if math.isfinite(c.val_loss)), key=lambda c: (c.params, c.val_loss))
    front, best = [], math.inf
    for c in ordered:
        if c.val_loss < best:
            front.append(c)
            best = c.val_loss
    return front


def layer_widths(value: Any, setting: str) -> tuple[int, ...]:
    """``value`` as a tuple of positive hidden-layer widths, or one InputError naming ``setting``."""
    if (not isinstance(value, (list, tuple)) or not value
            or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in value)):
        raise InputError(f"{setting} must be a list of positive layer widths, got {value!r}")
    return tuple(value)


def settings_with(settings: Any, overrides: dict[str, Any], prefix: str) -> Any:
    """A copy of a frozen settings dataclass with ``overrides`` (field -> value) applied; an
    unknown field or a bad value is one :class:`InputError` naming ``prefix.field``."""
    if not overrides:
        return settings
    known = {f.name for f in fields(settings)}
    for key in overrides:
        if key not in known:
            raise InputError(f"unknown setting {prefix}.{key}; {prefix} takes {', '.join(sorted(known))}")
    try:
        return replace(settings, **overrides)
    except TypeError as exc:
        raise InputError(f"invalid {prefix} setting: {exc}") from None


class Method:
    """Base of every method: ``name`` (the registry key), ``Settings`` (a frozen dataclass with
    the paper's defaults), ``summary`` (one line for ``netbonsai methods``), and :meth:`run`.

    ``Method(settings=None, policy=None)``: settings default to ``Settings()``; the policy is the
    comparison's shared trainer and budgets (set by ``compare``; needed by :meth:`run`).
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    Settings: ClassVar[type] = type(None)
    tasks: ClassVar[tuple[str, ...]] = ("regression", "classification")  # task kinds it runs on
    sequences: ClassVar[bool] = True  # False: refuses sequence tasks (inputs ``(codes, lengths)``)

    def __init__(self, settings: Any = None, policy: "TaskSettings | None" = None) -> None:
        self.settings = settings if settings is not None else self.Settings()
        self.policy = policy

    @classmethod
    def for_policy(cls, policy: "TaskSettings") -> "Method":
        """The method with its default settings for a comparison's policy (a method whose
        defaults depend on the task, such as grow's start network, overrides this)."""
        return cls(None, policy)

    def with_overrides(self, overrides: dict[str, Any]) -> "Method":
        """A copy with some settings replaced (validated; unknown keys named)."""
        return type(self)(settings_with(self.settings, overrides, self.name), self.policy)

    def check(self, task: Task) -> None:
        """Refuse a task this method cannot run, with one clear line (before any work starts)."""
        if task.kind not in self.tasks:
            raise InputError(f"method {self.name!r} runs on {' and '.join(self.tasks)} tasks, not on "
                             f"{task.kind} ({task.name})")
        if not self.sequences and isinstance(task.train.x, tuple):
            raise InputError(f"method {self.name!r} needs tensor inputs; task {task.name} is a sequence task")

    def settings_dict(self) -> dict[str, Any]:
        """The settings as JSON-ready data (config.json)."""
        value = self.settings
        if hasattr(value, "to_dict"):
            return value.to_dict()
        return asdict(value) if is_dataclass(value) else {}

    def run(self, task: Task, ctx: "RunContext") -> MethodResult:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings!r})"
