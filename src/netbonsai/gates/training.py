"""Training a gated network: Adam with the gates projected onto [0, 1] after every step.

:func:`netbonsai.train.fit` has no per-step hook, and the paper clips ``w`` and ``d`` after each
update, so this is a small loop of its own with ``fit``'s Adam conventions: the same
``TrainerConfig`` (``lr``, ``batch_size``, ``weight_decay``, ``l2``, ``loss``), the same seeded
minibatch order (a ``torch.Generator`` seeded with ``seed``, one ``randperm`` per epoch), the
penalty added to the minimised loss and the data loss reported. Masked layers stay masked.

Choices where the paper is silent:

- the gate parameters form their own Adam group with learning rate ``gate_lr`` (default
  ``trainer.lr``) and no weight decay: Adam moves a parameter by about ``lr`` per step, so at
  lr 1e-3 a gate needs some 500 steps to cross from 1 to 1/2; a larger ``gate_lr`` lets short
  budgets binarise;
- a full-batch trainer (``lbfgs``, ``lm``) cannot take the projection inside its line search, so
  its budget is spent as full-batch Adam steps: one step per epoch, as one L-BFGS iteration is.
"""

from __future__ import annotations

import math
import time
from typing import Callable

import torch
from torch import nn

from ..data.task import Split
from ..errors import InputError
from ..nets.masked import mask_applier
from ..train.fit import MINIBATCH, Budget, FitResult, Penalty, TrainerConfig, with_l2
from ..train.losses import evaluate, get_loss, population_outputs
from .tristate import gate_modules, gate_parameters


def train_gated(
    model: nn.Module, split: Split, budget: Budget, trainer: TrainerConfig, penalty: Penalty | None = None, *,
    seed: int = 0, gate_lr: float | None = None, on_epoch: Callable[[int, torch.Tensor], None] | None = None,
) -> FitResult:
    """Train gated ``model`` in place on ``split`` for ``budget`` and return the data loss.

    Minibatch Adam (``trainer.batch_size``) when ``trainer.method`` is ``adam``, else one
    full-batch Adam step per epoch; every step is followed by :func:`clamp_gates`.
    ``penalty(model)`` (e.g. a :class:`~netbonsai.gates.objective.GatePenalty`) is added to the
    minimised loss; ``FitResult.loss`` and the curve hold the data loss alone.
    """
    if not isinstance(budget, Budget):
        raise InputError(f"train_gated needs a Budget, got {type(budget).__name__}")
    if not isinstance(trainer, TrainerConfig):
        raise InputError(f"train_gated needs a TrainerConfig, got {type(trainer).__name__}")
    if not isinstance(split, Split) or isinstance(split.x, tuple):
        raise InputError("train_gated needs a Split of tensor inputs")
    if gate_lr is not None and (isinstance(gate_lr, bool) or not 0 < gate_lr < math.inf):
        raise InputError(f"gate_lr must be a finite number > 0, got {gate_lr!r}")
    gates = gate_parameters(model)
    projected = gate_modules(model)
    gate_ids = {id(p) for p in gates}
    weights = [p for p in model.parameters() if p.requires_grad and id(p) not in gate_ids]
    groups = [group for group in (
        {"params": weights, "lr": trainer.lr, "weight_decay": trainer.weight_decay},
        {"params": gates, "lr": gate_lr or trainer.lr, "weight_decay": 0.0},
    ) if group["params"]]
    if not groups:
        raise InputError("the model has no trainable parameters")
    optimizer = torch.optim.Adam(groups)
    x, y = split.x, split.y
    n = x.shape[0]
    batch = trainer.batch_size if trainer.method in MINIBATCH else n
    data_loss = get_loss(trainer.loss)
    extra = with_l2(penalty, trainer.l2)
    apply_mask = mask_applier(model)
    generator = torch.Generator().manual_seed(seed)
    max_epochs = budget.epochs if budget.epochs is not None else 1 << 30
    curve: list[list[float]] = []
    started = time.perf_counter()
    epoch = 0
    for epoch in range(1, max_epochs + 1):
        order = torch.randperm(n, generator=generator).to(x.device) if batch < n else None
        total = torch.zeros((), device=x.device)
        for start in range(0, n, batch):
            index = order[start : start + batch] if order is not None else None
            xb, yb = (x, y) if index is None else (x[index], y[index])
            optimizer.zero_grad(set_to_none=True)
            loss = data_loss(population_outputs(model, xb), yb)[0]
            objective = loss if extra is None else loss + extra(model).reshape(())
            objective.backward()
            optimizer.step()
            for g in projected:  # the paper's clipping (clamp_gates, without the module walk)
                g.clamp_()
            if apply_mask is not None:
                apply_mask()
            total = total + loss.detach() * xb.shape[0]
        losses = (total / n).reshape(1)
        curve.append(losses.cpu().tolist())
        if on_epoch is not None:
            on_epoch(epoch, losses)
        if budget.seconds is not None and time.perf_counter() - started >= budget.seconds:
            break
    final = evaluate(model, x, y, trainer.loss)
    return FitResult(final, epoch, time.perf_counter() - started, curve)
