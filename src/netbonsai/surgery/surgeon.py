"""The Surgeon (Schiessler et al. 2021, paper 002): training and topology search in one run.

Plain training for the first epochs, then a cycle every ``cycle_epochs`` epochs until
``total_epochs``: the recommendation module (:func:`~netbonsai.surgery.recommend.recommend`)
proposes edits; the cycle's children are, for each kind of edit, the untried one with the
highest probability, the parent's copy and one random leftover; each child retrains briefly (1
minibatch after an exact edit, 10 after an approximate one) and is scored

    score = a_new + exp(a_new - a_parent) * exp(-params_new / params_parent)

(``a`` the validation accuracy; regression tasks use the negative validation loss in the
training units). The best ``branches`` children train on for the rest of the cycle; a branch
survives if its validation figure is at least the parent's, otherwise the next untried edits
are tried (up to ``retries`` times).

Choices where the paper and the authors' code are silent, or where the code is wrong:

- of the surviving branches the one with the best score (recomputed with its accuracy after
  the cycle) is kept (``keep="score"``); ``keep="accuracy"`` keeps the most accurate and
  ``keep="smallest"`` the smallest within ``tolerance`` of the most accurate;
- ``branch="recommended"`` (not the authors'): the second branch is the edit the
  recommendations rate highest rather than the second-best score. Under the authors' rule an
  exact growth edit never trains on: after 1-10 minibatches it is exactly as accurate as the
  parent and larger, so the parent's copy (size reward e^-1) and the cheapest edit outscore it,
  and an insufficient start only grows in depth (docs/RESULTS.md measures both);

- children of the same shape retrained for the same number of steps train as one population
  (:class:`~netbonsai.surgery.population.StackedMLP`) on the same minibatches, so grouping
  never changes a result; other groups go to the executor as separate jobs;
- every child and branch of a cycle sees the same minibatch order (seeded by the run seed and
  the cycle), so children differ by their edit only;
- a new optimiser (fresh Adam moments) after every edit, as a recompiled Keras model has;
- when no branch reaches the parent's validation figure after all retries, the branch with the
  best one is kept anyway (the cycle's epochs are spent either way) and the event says so;
- added neurons get ``noise`` (relative to their incoming weights' RMS) on their incoming
  weights: without it the copies of a neuron stay identical under SGD and Adam forever (the
  authors' code divides the incoming weights instead, which preserves the function only for
  ReLU-like activations and breaks no symmetry either);
- ``train_flops`` counts 6 x weights per training row (forward 2, backward 4) over every
  training of the run: children, branches, retries and the main line.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from concurrent.futures import Executor
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from ..data.task import Task
from ..errors import InputError
from ..executor import InlineExecutor
from ..train import Budget, TrainerConfig, fit
from ..train.losses import evaluate, population_outputs
from ..train.polish import shipped_task
from .edits import SurgeryResult, add_layer, add_neurons, remove_layer, svd_narrow, svd_split
from .mlp import copy_mlp, count_params, hidden_widths, shape_key
from .population import StackedMLP
from .recommend import KINDS, Modification, modifications, plan_children, recommend
from .state import mlp_from_state, mlp_to_state

RULES = ("threshold", "bic")
BRANCH_RULES = ("score", "recommended")
KEEP_RULES = ("score", "accuracy", "smallest")


def _integer(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InputError(f"surgeon.{name} must be an integer >= {low}, got {value!r}")


@dataclass(frozen=True)
class SurgeonSettings:
    """The Surgeon's schedule and rules (defaults: the authors' code)."""

    first_epochs: int = 10  # plain training before the first cycle
    cycle_epochs: int = 10  # epochs per cycle (the main line's)
    total_epochs: int = 100  # main-line epochs in all
    branches: int = 2  # children trained on for the rest of a cycle
    retries: int = 3  # further attempts when no branch reaches the parent's validation figure
    exact_steps: int = 1  # minibatches of retraining after an exact edit
    approximate_steps: int = 10  # ... after an approximate one
    random_child: bool = True  # one random untried edit per cycle
    rule: str = "threshold"  # removable directions: singular-value thresholds, or "bic"
    noise: float = 0.01  # symmetry-breaking noise on added neurons' incoming weights
    max_params: int | None = None  # children above this size are not built
    # which children train on: "score" (the authors': the best by score) or "recommended" (the
    # best by score and the edit the recommendations rate highest)
    branch: str = "score"
    # which surviving branch is kept: "score" (the score with the branch's own accuracy after the
    # cycle), "accuracy" (the most accurate, the smaller on a tie) or "smallest" (the fewest
    # parameters within ``tolerance`` of the most accurate survivor)
    keep: str = "score"
    tolerance: float = 0.002

    def __post_init__(self) -> None:
        for name, low in (("first_epochs", 0), ("cycle_epochs", 1), ("total_epochs", 1), ("branches", 1),
                          ("retries", 0), ("exact_steps", 0), ("approximate_steps", 0)):
            _integer(name, getattr(self, name), low)
        if self.first_epochs > self.total_epochs:
            raise InputError(f"surgeon.first_epochs ({self.first_epochs}) exceeds surgeon.total_epochs ({self.total_epochs})")
        if not isinstance(self.random_child, bool):
            raise InputError(f"surgeon.random_child must be true or false, got {self.random_child!r}")
        if self.rule not in RULES:
            raise InputError(f"surgeon.rule must be one of {', '.join(RULES)}, got {self.rule!r}")
        if isinstance(self.noise, bool) or not isinstance(self.noise, (int, float)) or not 0 <= self.noise < math.inf:
            raise InputError(f"surgeon.noise must be a finite number >= 0, got {self.noise!r}")
        if self.max_params is not None:
            _integer("max_params", self.max_params, 1)
        if isinstance(self.tolerance, bool) or not isinstance(self.tolerance, (int, float)) or not 0 <= self.tolerance < 1:
            raise InputError(f"surgeon.tolerance must be a number in [0, 1), got {self.tolerance!r}")
        if self.branch not in BRANCH_RULES:
            raise InputError(f"surgeon.branch must be one of {', '.join(BRANCH_RULES)}, got {self.branch!r}")
        if self.keep not in KEEP_RULES:
            raise InputError(f"surgeon.keep must be one of {', '.join(KEEP_RULES)}, got {self.keep!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SurgeonResult:
    """The kept network, the main line's validation curve (one entry per epoch), one record per
    cycle, and the work done."""

    net: nn.Sequential
    epochs: int
    train_flops: float
    curve: list[dict[str, Any]] = field(default_factory=list)
    cycles: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    # the main line: the start after its first training, then the network kept by each cycle
    # ({"epoch", "val", "kept", "net": plain state (surgery.state)})
    lineage: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"params": count_params(self.net), "widths": hidden_widths(self.net), "epochs": self.epochs,
                "train_flops": self.train_flops, "cycles": len(self.cycles), "seconds": self.seconds}


def score(a_new: float, a_parent: float, params_new: int, params_parent: int) -> float:
    """The authors' branch score: accuracy, plus a size reward that grows with the accuracy gain."""
    return a_new + math.exp(a_new - a_parent) * math.exp(-params_new / params_parent)


@torch.no_grad()
def validation_figures(model: nn.Module, task: Task, loss: str) -> list[float]:
    """Per population member: validation accuracy (classification) or minus the validation loss
    in training units (regression): larger is better either way."""
    if task.kind == "classification":
        predicted = population_outputs(model, task.x_val).argmax(dim=-1)
        return (predicted == task.y_val).double().mean(dim=1).tolist()
    return (-evaluate(model, task.x_val, task.y_val, loss).double()).tolist()


def apply_modification(net: nn.Sequential, modification: Modification, noise: float,
                       generator: torch.Generator) -> SurgeryResult:
    """Perform one recommended edit on a copy of ``net``."""
    kind, layer, amount = modification.kind, modification.layer, modification.amount
    if kind == "identity":
        return SurgeryResult(copy_mlp(net), "identity", -1, True, {})
    if kind == "add-neurons":
        return add_neurons(net, layer, amount, noise=noise, generator=generator)
    if kind == "add-layer":
        return add_layer(net, layer)
    if kind == "svd-narrow":
        return svd_narrow(net, layer, amount)
    if kind == "svd-split":
        return svd_split(net, layer, amount)
    if kind == "remove-layer":
        return remove_layer(net, layer)
    raise InputError(f"unknown modification kind {kind!r}")


def train_job(nets: list[nn.Sequential], task: Task, budget: Budget, trainer: TrainerConfig, seed: int,
              track: bool, device: str = "cpu") -> dict[str, Any]:
    """Train copies of same-shape ``nets`` as one population (one network alone when there is
    one; the given networks are never modified); with ``track``, each member's validation figure
    after every epoch. Runs in any process."""
    task = task.to(device)
    nets = [copy_mlp(n).to(device) for n in nets]
    model = StackedMLP.from_networks(nets) if len(nets) > 1 else nets[0]
    curves: list[list[float]] = [[] for _ in nets]

    def on_epoch(epoch: int, losses: torch.Tensor) -> None:
        for curve, value in zip(curves, validation_figures(model, task, trainer.loss)):
            curve.append(value)

    result = fit(model, task.train, budget, trainer, seed=seed, on_epoch=on_epoch if track else None)
    trained = model.networks() if len(nets) > 1 else [model]
    rows = _rows_seen(budget, result.epochs, len(task.train), trainer)
    return {"nets": [n.cpu() for n in trained], "curves": curves, "final": validation_figures_each(trained, task, trainer),
            "flops": sum(6.0 * _weights(n) * rows for n in trained)}


def validation_figures_each(nets: list[nn.Sequential], task: Task, trainer: TrainerConfig) -> list[float]:
    return [validation_figures(n, task, trainer.loss)[0] for n in nets]


def _weights(net: nn.Sequential) -> int:
    return sum(m.weight.numel() for m in net.modules() if isinstance(m, nn.Linear))


def _rows_seen(budget: Budget, epochs: int, n: int, trainer: TrainerConfig) -> int:
    """Training rows one member processed (full-batch methods: every row per iteration)."""
    if budget.steps is not None and trainer.method in ("adam", "sgd"):
        per_epoch = math.ceil(n / trainer.batch_size)
        steps = min(budget.steps, (budget.epochs or budget.steps) * per_epoch)
        return min(steps * trainer.batch_size, steps // per_epoch * n + (steps % per_epoch) * trainer.batch_size)
    return epochs * n


class _Trainer:
    """Trains lists of networks: grouped by shape into populations, groups on the executor."""

    def __init__(self, task: Task, trainer: TrainerConfig, executor: Executor | None, device: str) -> None:
        self.task, self.trainer, self.device = task, trainer, device
        self.executor = None if executor is None or isinstance(executor, InlineExecutor) else executor
        self.shipped = shipped_task(task) if self.executor is not None else None
        self.flops = 0.0

    def train(self, nets: list[nn.Sequential], budget: Budget, seed: int, track: bool = False
              ) -> tuple[list[nn.Sequential], list[list[float]], list[float]]:
        """Trained copies, per-epoch validation curves (with ``track``) and final figures, in order."""
        groups: dict[Any, list[int]] = defaultdict(list)
        for index, net in enumerate(nets):
            groups[shape_key(net)].append(index)
        jobs = list(groups.values())
        if self.executor is None or len(jobs) == 1:
            done = [train_job([nets[i] for i in job], self.task, budget, self.trainer, seed, track, self.device)
                    for job in jobs]
        else:
            futures = [self.executor.submit(train_job, [nets[i] for i in job], self.shipped, budget, self.trainer,
                                            seed, track, self.device) for job in jobs]
            done = [future.result() for future in futures]
        out_nets: list[Any] = [None] * len(nets)
        curves: list[Any] = [None] * len(nets)
        finals: list[Any] = [None] * len(nets)
        for job, result in zip(jobs, done):
            self.flops += result["flops"]
            for slot, index in enumerate(job):
                out_nets[index] = result["nets"][slot].to(self.task.x_train.device)
                curves[index] = result["curves"][slot]
                finals[index] = result["final"][slot]
        return out_nets, curves, finals


def run_surgeon(net: nn.Sequential, task: Task, trainer: TrainerConfig, settings: SurgeonSettings = SurgeonSettings(),
                *, seed: int = 0, executor: Executor | None = None, device: str = "cpu",
                on_event: Callable[..., None] | None = None, resume: dict[str, Any] | None = None,
                checkpoint: Callable[[dict[str, Any]], None] | None = None) -> SurgeonResult:
    """Run the Surgeon from ``net`` (a layered MLP, not modified) on ``task``.

    ``on_event(kind, **fields)`` sees ``surgeon-start`` and one ``surgeon-cycle`` per cycle;
    ``checkpoint(state)`` gets plain data after the first training and every cycle, and
    ``resume=state`` continues from it (the same result as a run that went through)."""
    started = time.perf_counter()
    emit = on_event or (lambda kind, **fields: None)
    work = _Trainer(task, trainer, executor, device)
    generator = torch.Generator().manual_seed(seed)
    if resume is None:
        parent, curves, finals = work.train([copy_mlp(net)], Budget(epochs=settings.first_epochs), seed, track=True)
        parent = parent[0]
        if settings.first_epochs == 0:
            finals = [validation_figures(parent, task, trainer.loss)[0]]
        curve = [_point(epoch + 1, value, parent) for epoch, value in enumerate(curves[0])]
        cycles: list[dict[str, Any]] = []
        epoch, parent_figure = settings.first_epochs, finals[0]
        lineage = [{"epoch": epoch, "val": parent_figure, "kept": "start", "net": mlp_to_state(parent)}]
        emit("surgeon-start", epoch=epoch, val=parent_figure, params=count_params(parent), widths=hidden_widths(parent))
        save = True
    else:
        parent = mlp_from_state(resume["parent"]).to(task.x_train.device)
        curve, cycles, epoch, parent_figure = resume["curve"], resume["cycles"], resume["epoch"], resume["figure"]
        lineage = resume["lineage"]
        work.flops = resume["flops"]
        generator.set_state(resume["generator"])
        started -= resume["seconds"]
        save = False
    while True:
        if checkpoint is not None and save:
            checkpoint({"parent": mlp_to_state(parent), "curve": curve, "cycles": cycles, "lineage": lineage,
                        "epoch": epoch, "figure": parent_figure, "flops": work.flops,
                        "generator": generator.get_state(), "seconds": time.perf_counter() - started})
        if epoch + settings.cycle_epochs > settings.total_epochs:
            break
        record, parent, branch_curve = _cycle(parent, parent_figure, len(cycles) + 1, task, settings, work, generator,
                                              seed)
        curve.extend(_point(epoch + i + 1, value, parent) for i, value in enumerate(branch_curve))
        epoch += settings.cycle_epochs
        parent_figure = record["val"]
        cycles.append({**record, "epoch": epoch})
        lineage.append({"epoch": epoch, "val": parent_figure, "kept": record["kept"], "net": mlp_to_state(parent)})
        emit("surgeon-cycle", **cycles[-1])
        save = True
    return SurgeonResult(parent, epoch, work.flops, curve, cycles, time.perf_counter() - started, lineage)


def _point(epoch: int, value: float, net: nn.Sequential) -> dict[str, Any]:
    return {"epoch": epoch, "val": value, "params": count_params(net)}


def _cycle(parent: nn.Sequential, parent_figure: float, index: int, task: Task, settings: SurgeonSettings,
           work: _Trainer, generator: torch.Generator, seed: int
           ) -> tuple[dict[str, Any], nn.Sequential, list[float]]:
    """One cycle: children, brief retraining, scores, branches, retries. Returns the cycle's
    record, the kept network and its per-epoch validation curve."""
    cycle_seed = seed * 100_003 + index
    parent_params = count_params(parent)
    candidates = modifications(recommend(parent, settings.rule))
    tried: set[str] = set()
    attempts: list[dict[str, Any]] = []
    trained: list[tuple[dict[str, Any], nn.Sequential, list[float], dict[str, Any]]] = []
    for attempt in range(settings.retries + 1):
        plan = plan_children(candidates, tried, generator)
        if not settings.random_child:
            plan = _without_random(plan)
        tried.update(m.label for m in plan)
        if attempt > 0:  # the parent's copy was scored in the first attempt
            plan = [m for m in plan if m.kind != "identity"]
        children = _build(parent, plan, settings, generator)
        if not children:
            break
        scored = _retrain_and_score(children, parent_figure, parent_params, settings, work, cycle_seed)
        chosen = _branches(scored, settings)
        nets, curves, finals = work.train([c["net"] for c in chosen], Budget(epochs=settings.cycle_epochs),
                                          cycle_seed, track=True)
        branches = []
        for child, net, curve, final in zip(chosen, nets, curves, finals):
            params = count_params(net)
            branches.append({"label": child["label"], "val": final, "params": params,
                             "score": score(final, parent_figure, params, parent_params)})
            trained.append((branches[-1], net, curve, child))
        attempts.append({"children": [{k: v for k, v in c.items() if k != "net"} for c in scored],
                         "branches": branches})
        if max(finals) >= parent_figure:
            break
    if not trained:
        raise InputError("the Surgeon found no edit to try (every candidate failed)")
    survivors = [item for item in trained if item[0]["val"] >= parent_figure]
    if not survivors:  # after every retry: the most accurate branch (the cycle's epochs are spent)
        kept = max(trained, key=lambda item: item[0]["val"])
    elif settings.keep == "score":
        kept = max(survivors, key=lambda item: item[0]["score"])
    elif settings.keep == "accuracy":
        kept = max(survivors, key=lambda item: (item[0]["val"], -item[0]["params"]))
    else:  # "smallest": the fewest parameters within ``tolerance`` of the most accurate survivor
        best = max(item[0]["val"] for item in survivors)
        kept = min((item for item in survivors if item[0]["val"] >= best - settings.tolerance),
                   key=lambda item: (item[0]["params"], -item[0]["val"]))
    branch, net, curve, child = kept
    record = {"cycle": index, "kept": child["label"], "surgery": child["surgery"], "exact": child["exact"],
              "accepted": bool(survivors), "val": branch["val"], "parent_val": parent_figure,
              "params": branch["params"], "widths": hidden_widths(net), "attempts": attempts}
    return record, net, curve


def _branches(scored: list[dict[str, Any]], settings: SurgeonSettings) -> list[dict[str, Any]]:
    """The children trained on: the best ``branches`` by score (``branch="score"``, the authors'),
    or the best by score plus the most recommended edit (highest ``p``, not the parent's copy),
    then by score (``branch="recommended"``)."""
    if settings.branch == "score":
        return scored[: settings.branches]
    chosen = scored[:1]
    edits = [c for c in scored if c["label"] != "identity" and c is not scored[0]]
    if edits and settings.branches > 1:  # the highest p; ties in the recommendations' kind order, larger edits first
        chosen.append(min(edits, key=lambda c: (-c["p"], KINDS.index(c["kind"]), c["layer"], -c["amount"])))
    chosen += [c for c in scored if all(c is not k for k in chosen)][: settings.branches - len(chosen)]
    return chosen


def _without_random(plan: list[Modification]) -> list[Modification]:
    """The plan less its random leftover (:func:`plan_children` puts it after the parent's copy)."""
    kinds = [m.kind for m in plan]
    return plan[: kinds.index("identity") + 1] if "identity" in kinds else plan


def _build(parent: nn.Sequential, plan: list[Modification], settings: SurgeonSettings,
           generator: torch.Generator) -> list[dict[str, Any]]:
    """The children of ``plan`` (an edit that cannot apply, or a child over ``max_params``, is left out)."""
    children = []
    for modification in plan:
        try:
            result = apply_modification(parent, modification, settings.noise, generator)
        except InputError:
            continue
        if settings.max_params is not None and count_params(result.net) > settings.max_params:
            continue
        children.append({"label": modification.label, "kind": modification.kind, "layer": modification.layer,
                         "amount": modification.amount, "surgery": result.surgery, "exact": result.exact,
                         "p": modification.p, "net": result.net})
    return children


def _retrain_and_score(children: list[dict[str, Any]], parent_figure: float, parent_params: int,
                       settings: SurgeonSettings, work: _Trainer, seed: int) -> list[dict[str, Any]]:
    """Retrain each child briefly (exact edits ``exact_steps`` minibatches, approximate ones
    ``approximate_steps``), score it, and return the children best score first."""
    for exact in (True, False):
        group = [c for c in children if c["exact"] == exact]
        steps = settings.exact_steps if exact else settings.approximate_steps
        if not group:
            continue
        if steps > 0:
            nets, _, finals = work.train([c["net"] for c in group], Budget(steps=steps), seed)
        else:
            nets = [c["net"] for c in group]
            finals = validation_figures_each(nets, work.task, work.trainer)
        for child, net, final in zip(group, nets, finals):
            child.update(net=net, val=final, params=count_params(net),
                         score=score(final, parent_figure, count_params(net), parent_params))
    return sorted(children, key=lambda c: -c["score"])
