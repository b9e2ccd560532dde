"""``fit()``: train any model (a DagNet population or a plain module) with Adam, SGD or L-BFGS.

Budgets are in epochs (L-BFGS: iterations, each one full-batch pass or more), optimiser steps
(minibatch methods: "train 1 batch after an edit") and/or seconds.
Masked weights stay exactly zero: DagNet's and the masked layers' forward multiplies by the mask,
so their gradient is zero, and the mask is re-applied after every optimiser step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..data.checks import require_finite
from ..data.task import Split
from ..errors import InputError
from ..nets.dag import DagNet
from ..nets.masked import mask_applier
from .lbfgs import lbfgs
from .lm import levenberg_marquardt
from .losses import evaluate, get_loss, population_outputs

METHODS = ("lbfgs", "adam", "sgd", "lm")
MINIBATCH = ("adam", "sgd")  # the methods that train on shuffled minibatches


@dataclass(frozen=True)
class Budget:
    """How long to train: ``epochs`` (iterations for the full-batch ``lbfgs`` and ``lm``),
    ``steps`` (optimiser steps, i.e. minibatches, for ``adam`` and ``sgd``; iterations for the
    full-batch methods) and/or ``seconds``; training stops at whichever comes first."""

    epochs: int | None = None
    seconds: float | None = None
    steps: int | None = None

    def __post_init__(self) -> None:
        if self.epochs is None and self.seconds is None and self.steps is None:
            raise InputError("a training budget needs epochs, steps or seconds")
        if self.epochs is not None and self.epochs < 0:
            raise InputError(f"budget epochs must be >= 0, got {self.epochs}")
        if self.steps is not None and (isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 0):
            raise InputError(f"budget steps must be an integer >= 0, got {self.steps!r}")
        if self.seconds is not None and not self.seconds > 0:  # NaN fails too
            raise InputError(f"budget seconds must be > 0, got {self.seconds}")


@dataclass(frozen=True)
class TrainerConfig:
    """Optimiser settings shared by every training call of a run."""

    method: str = "lbfgs"
    loss: str = "mse"
    lr: float = 1e-3  # Adam / SGD learning rate
    batch_size: int = 256  # Adam / SGD minibatch size
    history_size: int = 10  # L-BFGS memory
    weight_decay: float = 0.0  # Adam's L2 penalty (coupled, as torch.optim.Adam applies it)
    clip_norm: float | None = None  # Adam: clip each variant's gradient norm (sequence models)
    # L2 penalty l2 * (sum of squared weights, biases excluded) per network, added to the mean loss
    # by L-BFGS and Adam alike: the guard against overfitting on small tables (train.regularization)
    l2: float = 0.0
    momentum: float = 0.0  # SGD momentum (0: plain SGD, as Keras' default)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"unknown training method {self.method!r}; choose one of {', '.join(METHODS)}")
        get_loss(self.loss)
        if not 0 < self.lr < float("inf") or self.batch_size < 1 or self.history_size < 1:
            raise InputError(f"trainer lr (a finite number), batch_size and history_size must be positive, got lr {self.lr}")
        if not self.weight_decay >= 0:
            raise InputError(f"trainer weight_decay must be >= 0, got {self.weight_decay}")
        if self.clip_norm is not None and not self.clip_norm > 0:
            raise InputError(f"trainer clip_norm must be > 0 (or None), got {self.clip_norm}")
        if not 0 <= self.l2 < float("inf"):
            raise InputError(f"trainer l2 must be a finite number >= 0, got {self.l2}")
        if self.l2 > 0 and self.method == "lm":
            raise InputError("Levenberg-Marquardt ('lm') minimises a sum of squares and takes no l2 penalty; use lbfgs or adam")
        if self.weight_decay > 0 and self.method not in MINIBATCH:
            raise InputError(f"weight_decay is an Adam/SGD setting; method {self.method!r} does not use it")
        if not 0 <= self.momentum < 1:
            raise InputError(f"trainer momentum must be in [0, 1), got {self.momentum}")
        if self.momentum > 0 and self.method != "sgd":
            raise InputError(f"momentum is an SGD setting; method {self.method!r} does not use it")


@dataclass
class FitResult:
    """Per-variant final training loss (the data loss, without a penalty) and the work done."""

    loss: torch.Tensor  # (K,)
    epochs: int
    seconds: float
    curve: list[list[float]] = field(default_factory=list)  # per-epoch losses, one list per epoch
    models: list[nn.Module] | None = None  # the trained copies, when fit was given a list of networks


# a differentiable regulariser of the model: a scalar, or one value per population variant
Penalty = Callable[[nn.Module], torch.Tensor]


def fit(
    model: nn.Module | Sequence[DagNet],
    split: Split | torch.Tensor,
    budget: Budget | torch.Tensor,
    trainer: TrainerConfig | Budget = TrainerConfig(),
    *legacy: Any,
    seed: int = 0,
    penalty: Penalty | None = None,
    on_epoch: Callable[[int, torch.Tensor], None] | None = None,
    snapshot: Callable[[dict[str, Any]], None] | None = None,
    resume_from: dict[str, Any] | None = None,
) -> FitResult:
    """Train ``model`` on ``split`` for ``budget`` with ``trainer``; the one training entry point.

    - A DagNet population (or any module whose parameters carry the variant dimension): each
      variant's loss is its own mean loss and the optimiser treats variants independently, so K
      variants trained together equal K separate trainings. Trained in place.
    - A list of population-1 DagNets: trained together as one padded population (or one by
      one where they cannot share one, same result); the trained copies are ``result.models``.
    - A sequence split (``split.x`` is ``(codes, lengths)``): a population sequence classifier
      trained with minibatch Adam (``trainer.lr``, ``trainer.batch_size``, ``trainer.clip_norm``).

    ``penalty(model)`` adds a differentiable regulariser (a scalar or one value per variant) to
    the loss being minimised; the reported losses stay the data loss. Levenberg-Marquardt
    (``lm``) refuses a penalty. ``seed`` fixes the minibatch order (Adam); L-BFGS is
    deterministic given the data. ``on_epoch(epoch, losses)`` sees every epoch's ``(K,)`` losses.
    The older form ``fit(model, x, y, budget, trainer, seed)`` is still accepted.

    Adam only: ``snapshot(state)`` is called after every epoch with everything needed to go on
    (model and optimiser state, the minibatch generator, the curve so far; plain tensors for
    ``torch.save``, to be written before it returns), and ``fit(..., resume_from=state)``
    continues from it exactly: a training interrupted and resumed equals one that ran through.

    Modules train in train mode (batch norm, dropout) whatever mode they came in; each module's
    mode is restored on return. Minibatch training reports its final loss in eval mode.
    """
    if isinstance(split, torch.Tensor):  # the older form: fit(model, x, y, budget, trainer=..., seed=...)
        split, budget, trainer, legacy = _legacy_arguments(split, budget, trainer, legacy)
    if legacy:
        seed = legacy[0]
    if not isinstance(budget, Budget):
        raise InputError(f"fit needs a Budget, got {type(budget).__name__}")
    if not isinstance(trainer, TrainerConfig):
        raise InputError(f"fit needs a TrainerConfig, got {type(trainer).__name__}")
    if (snapshot is not None or resume_from is not None) and (trainer.method not in MINIBATCH or isinstance(split.x, tuple)
                                                               or isinstance(model, (list, tuple))):
        raise InputError("fit snapshots and resume_from apply to Adam/SGD training of one model on a tensor split")
    if isinstance(model, (list, tuple)):
        from .together import fit_together

        if penalty is not None:
            raise InputError("a penalty applies to one model (or one population), not to a list of networks")
        trained, result = fit_together(model, split.x, split.y, budget, trainer, seed=seed)
        result.models = trained
        return result
    modes = {m: m.training for m in model.modules()}
    model.train()  # batch norm and dropout train as they should; each module's mode is restored after
    try:
        if isinstance(split.x, tuple):
            return _fit_sequences(model, split, budget, trainer, seed, penalty, on_epoch)
        return _fit_tensors(model, split.x, split.y, budget, trainer, seed, penalty, on_epoch, snapshot, resume_from)
    finally:
        for module, mode in modes.items():
            module.training = mode


def _legacy_arguments(x: torch.Tensor, y: Any, budget: Any, rest: tuple) -> tuple[Split, Budget, TrainerConfig, tuple]:
    """``(x, y, budget[, trainer[, seed]])`` of the older call form as a split, budget, trainer, rest."""
    if not isinstance(y, torch.Tensor):
        raise InputError(f"fit(model, x, y, budget, ...) needs y as a tensor, got {type(y).__name__}")
    if x.shape[0] != y.shape[0]:
        raise InputError(f"x has {x.shape[0]} rows but y has {y.shape[0]}")
    trainer = rest[0] if rest else TrainerConfig()
    return Split(x, y), budget, trainer, tuple(rest[1:])


def _fit_sequences(model, split: Split, budget: Budget, trainer: TrainerConfig, seed: int, penalty, on_epoch) -> FitResult:
    from .sequences import fit_sequences

    if penalty is not None or trainer.l2 > 0:
        raise InputError("sequence training takes no penalty (and no trainer l2)")
    if trainer.method != "adam":
        raise InputError(f"sequence models train with minibatch Adam; trainer method {trainer.method!r} does not apply")
    codes, lengths = split.x
    result = fit_sequences(model, codes, lengths, split.y, budget, lr=trainer.lr, batch_size=trainer.batch_size,
                           clip_norm=trainer.clip_norm, seed=seed, on_epoch=on_epoch)
    return FitResult(result.loss, result.epochs, result.seconds, result.curve)


def _fit_tensors(model, x, y, budget: Budget, trainer: TrainerConfig, seed: int, penalty, on_epoch,
                 snapshot=None, resume_from=None) -> FitResult:
    """Adam, L-BFGS or LM on one tensor split (see :func:`fit`)."""
    if x.shape[0] == 0:
        raise InputError("cannot train on an empty dataset")
    require_finite("training inputs x", x)
    require_finite("training targets y", y)
    data_loss = get_loss(trainer.loss)
    penalty = with_l2(penalty, trainer.l2)
    loss_fn = data_loss if penalty is None else (lambda out, target: data_loss(out, target) + penalty(model))
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise InputError("the model has no trainable parameters")
    population = getattr(model, "population_size", 1)
    apply_mask = mask_applier(model)
    curve: list[list[float]] = []

    def record(epoch: int, losses: torch.Tensor) -> None:
        curve.append(losses.detach().cpu().tolist())
        if on_epoch is not None:
            on_epoch(epoch, losses)

    started = time.perf_counter()
    max_epochs = budget.epochs if budget.epochs is not None else 1 << 30
    if trainer.method in ("lbfgs", "lm") and budget.steps is not None:  # full batch: a step is an iteration
        max_epochs = min(max_epochs, budget.steps)
    if trainer.method == "lbfgs":
        result = lbfgs(
            params,
            lambda: loss_fn(population_outputs(model, x), y),
            max_iter=max_epochs,
            population=population,
            max_seconds=budget.seconds,
            history_size=trainer.history_size,
            on_iteration=record,
            member_losses=_member_losses(model, x, y, data_loss, penalty),
        )
        final = result.loss if penalty is None else evaluate(model, x, y, trainer.loss)
        epochs = result.iterations
    elif trainer.method == "lm":
        if penalty is not None:
            raise InputError("Levenberg-Marquardt ('lm') minimises a sum of squares and takes no penalty; use lbfgs or adam")
        if not hasattr(model, "sensitivities") or trainer.loss != "mse":
            raise InputError("Levenberg-Marquardt ('lm') trains DagNet models with the mse loss")
        result = levenberg_marquardt(model, x, y, max_iter=max_epochs, max_seconds=budget.seconds, on_iteration=record)
        final, epochs = result.loss, result.iterations
    else:
        if resume_from is not None:
            curve.extend(resume_from["curve"])
            started -= float(resume_from["seconds"])  # the seconds of the sessions before a resume count too
        final, epochs = _minibatch(model, params, x, y, loss_fn, trainer, seed, max_epochs, budget, started, record,
                                   snapshot=snapshot, resume_from=resume_from, curve=curve)
    if apply_mask is not None:
        apply_mask()
    return FitResult(final, epochs, time.perf_counter() - started, curve)


def with_l2(penalty: "Penalty | None", l2: float) -> "Penalty | None":
    """``penalty`` plus the trainer's L2 penalty on the weights (unchanged when ``l2`` is 0)."""
    if l2 <= 0:
        return penalty
    from .regularization import weight_l2

    if penalty is None:
        return lambda model: l2 * weight_l2(model)
    return lambda model: penalty(model) + l2 * weight_l2(model)


def _member_losses(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn,
                   penalty: "Penalty | None" = None) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The losses of chosen variants alone, for models that can compute a subset of their
    population (DagNet); None for the others."""
    if not isinstance(model, DagNet) or model.population_size == 1:
        return None
    if penalty is None:
        return lambda members: loss_fn(model.population(x, members=members), y)
    return lambda members: loss_fn(model.population(x, members=members), y) + _per_variant(penalty(model), members)


def _per_variant(value: torch.Tensor, members: torch.Tensor) -> torch.Tensor:
    """A penalty's values for the chosen variants (a scalar penalty applies to each)."""
    return value[members] if value.dim() > 0 else value


def _optimizer(params, trainer: TrainerConfig) -> torch.optim.Optimizer:
    """The minibatch optimiser ``trainer`` names (Adam, or SGD with optional momentum)."""
    if trainer.method == "sgd":
        return torch.optim.SGD(params, lr=trainer.lr, momentum=trainer.momentum, weight_decay=trainer.weight_decay)
    return torch.optim.Adam(params, lr=trainer.lr, weight_decay=trainer.weight_decay)


def _minibatch(model, params, x, y, loss_fn, trainer, seed, max_epochs, budget, started, record,
               snapshot=None, resume_from=None, curve=None):
    """Minibatch Adam or SGD; every variant sees the same batches, so variants stay independent.

    ``budget.steps`` stops after that many optimiser steps (a partial epoch is recorded with the
    mean loss of the batches it saw); ``seed`` fixes the batch order."""
    optimizer = _optimizer(params, trainer)
    generator = torch.Generator().manual_seed(seed)
    apply_mask = mask_applier(model)
    n = x.shape[0]
    epoch = 0
    steps_left = budget.steps if budget.steps is not None else -1
    if resume_from is not None:
        model.load_state_dict(resume_from["model"])
        optimizer.load_state_dict(resume_from["optimizer"])
        generator.set_state(resume_from["generator"])
        epoch = int(resume_from["epoch"])
    for epoch in range(epoch + 1, max_epochs + 1):
        if steps_left == 0:
            epoch -= 1
            break
        order = torch.randperm(n, generator=generator).to(x.device)
        total, seen = None, 0
        for start in range(0, n, trainer.batch_size):
            index = order[start : start + trainer.batch_size]
            optimizer.zero_grad(set_to_none=True)
            losses = loss_fn(population_outputs(model, x[index]), y[index])
            losses.sum().backward()
            optimizer.step()
            if apply_mask is not None:
                apply_mask()
            batch_total = losses.detach() * index.numel()
            total = batch_total if total is None else total + batch_total
            seen += index.numel()
            steps_left -= 1
            if steps_left == 0:
                break
        record(epoch, total / seen)  # mean loss over the epoch's batches
        if snapshot is not None:
            snapshot({"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                      "generator": generator.get_state(), "curve": list(curve or []),
                      "seconds": time.perf_counter() - started})
        if budget.seconds is not None and time.perf_counter() - started >= budget.seconds:
            break
    model.eval()  # the final loss as the trained model computes it (batch norm's running statistics)
    return evaluate(model, x, y, trainer.loss), epoch


def averaged_fit(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, trainer: TrainerConfig, seed: int = 0
) -> FitResult:
    """Fine-tune ``model`` in place for ``epochs`` Adam epochs and end at the mean of the weights
    after each epoch (stochastic weight averaging, Izmailov et al. 2018).

    Why: the last minibatch steps of a small network move its test error by +-15 of 10,000
    images; the average of several end-of-epoch weights sits nearer the centre of the basin and
    is much less sensitive to which batches came last. Removed weights are zero in every
    snapshot, so they stay exactly zero in the average. Returns the per-variant training loss of
    the averaged model.
    """
    if epochs < 1:
        raise InputError(f"averaged_fit needs at least one epoch, got {epochs}")
    if trainer.method not in MINIBATCH:
        raise InputError("averaged_fit averages minibatch epochs; use an adam or sgd trainer")
    params = [p for p in model.parameters() if p.requires_grad]
    total = [torch.zeros_like(p) for p in params]
    started = time.perf_counter()
    for epoch in range(epochs):
        fit(model, Split(x, y), Budget(epochs=1), trainer, seed=seed + epoch)
        with torch.no_grad():
            for acc, p in zip(total, params):
                acc.add_(p)
    with torch.no_grad():
        for acc, p in zip(total, params):
            p.copy_(acc / epochs)
    apply_mask = mask_applier(model)
    if apply_mask is not None:
        apply_mask()
    return FitResult(evaluate(model, x, y, trainer.loss), epochs, time.perf_counter() - started)
