"""Population training and evaluation of sequence classifiers (``netbonsai.nets.recurrent.MaskedRecurrent``).

Sequences are right-padded ``(N, T)`` int codes (or ``(N, T, F)`` float features) with their
``lengths``; minibatches group sequences of similar length (:func:`length_batches`) and each batch
is trimmed to its own longest sequence, so short sequences cost short loops.

The K members of a population see the same batches; each member's loss is its own mean
cross-entropy and the summed loss is back-propagated, so no gradient mixes members. Gradient
clipping is per member (the norm of member k's gradient over all its parameter slices), and Adam
is element-wise: K members trained together equal K separate trainings (paper 001's setup: Adam,
lr 1e-3, batch 32, clipping at 5).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from ..data.checks import require_finite
from ..errors import InputError
from ..nets.masked import mask_applier
from .fit import Budget


@dataclass
class SequenceFitResult:
    """Per-member final training loss ``(K,)`` (evaluated after training) and the work done."""

    loss: torch.Tensor
    epochs: int
    seconds: float
    curve: list[list[float]] = field(default_factory=list)  # per epoch, the members' mean batch losses


def length_batches(
    lengths: torch.Tensor, batch_size: int, seed: int | torch.Generator = 0, shuffle: bool = True
) -> list[torch.Tensor]:
    """Sample indices in batches of similar length: every sample exactly once.

    Samples are sorted by length (ties broken by a seeded permutation when ``shuffle``, by index
    otherwise), cut into consecutive batches of ``batch_size`` and, when ``shuffle``, the batch
    order is shuffled. ``seed`` may be an int or a ``torch.Generator`` (advanced in place).
    """
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    lengths = torch.as_tensor(lengths).reshape(-1).cpu()
    n = lengths.numel()
    if not shuffle:
        order = torch.argsort(lengths, stable=True)
        return list(order.split(batch_size))
    generator = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))
    tie = torch.randperm(n, generator=generator)
    order = tie[torch.argsort(lengths[tie], stable=True)]
    batches = list(order.split(batch_size))
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def check_sequences(
    model: nn.Module, codes: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate a sequence dataset for ``model``; returns ``(codes, lengths, labels)``, integers as long."""
    if not all(isinstance(t, torch.Tensor) for t in (codes, lengths, labels)):
        raise InputError("codes, lengths and labels must be tensors")
    vocab = getattr(model, "vocab_size", None)
    if vocab is not None:
        if codes.dim() != 2 or codes.dtype.is_floating_point or codes.dtype == torch.bool:
            raise InputError(
                f"codes must be (sequences, time) integers, got {codes.dtype} {tuple(codes.shape)}"
            )
    else:
        size = getattr(model, "input_size", None)
        wrong_size = size is not None and codes.dim() == 3 and codes.shape[2] != size
        if codes.dim() != 3 or not codes.dtype.is_floating_point or wrong_size:
            raise InputError(
                f"inputs must be (sequences, time, {size}) floats, got {codes.dtype} {tuple(codes.shape)}"
            )
        require_finite("sequence inputs", codes)
    n = codes.shape[0]
    if n == 0 or codes.shape[1] == 0:
        raise InputError(f"no sequences to train or evaluate on: shape {tuple(codes.shape)}")
    if lengths.shape != (n,) or labels.shape != (n,):
        raise InputError(
            f"{n} sequences need {n} lengths and {n} labels, "
            f"got shapes {tuple(lengths.shape)} and {tuple(labels.shape)}"
        )
    if lengths.dtype.is_floating_point or labels.dtype.is_floating_point:
        raise InputError("lengths and labels must be integer tensors")
    lengths, labels = lengths.long(), labels.long()
    if int(lengths.min()) < 1 or int(lengths.max()) > codes.shape[1]:
        raise InputError(f"every length must be in [1, {codes.shape[1]}] (the padded time steps)")
    classes = getattr(model, "num_classes", None)
    if int(labels.min()) < 0 or (classes is not None and int(labels.max()) >= classes):
        raise InputError(f"labels must be class indices in [0, {classes})")
    if vocab is not None:
        if int(codes.min()) < 0 or int(codes.max()) >= vocab:
            raise InputError(f"codes must be in [0, {vocab}) (the model's vocab_size)")
        codes = codes.long()
    return codes, lengths, labels


def member_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``(K,)`` mean cross-entropy of each member's logits ``(K, B, C)`` against ``labels`` ``(B,)``."""
    k, b, c = logits.shape
    per_sample = F.cross_entropy(logits.reshape(k * b, c), labels.repeat(k), reduction="none")
    return per_sample.view(k, b).mean(1)


@torch.no_grad()
def clip_member_grads_(params: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Scale each member's gradient (slice ``k`` of every parameter) to norm at most ``max_norm``,
    exactly as ``torch.nn.utils.clip_grad_norm_`` would for that member alone; returns the ``(K,)``
    norms before clipping."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(0)
    norms = torch.stack([torch.linalg.vector_norm(g.flatten(1), dim=1) for g in grads], 1)  # (K, P)
    total = torch.linalg.vector_norm(norms, dim=1)
    scale = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale.view(-1, *([1] * (g.dim() - 1))).to(g.dtype))
    return total


def fit_sequences(
    model: nn.Module,
    codes: torch.Tensor,
    lengths: torch.Tensor,
    labels: torch.Tensor,
    budget: Budget,
    lr: float = 1e-3,
    batch_size: int = 32,
    clip_norm: float | None = 5.0,
    seed: int = 0,
    on_epoch: Callable[[int, torch.Tensor], None] | None = None,
) -> SequenceFitResult:
    """Train a population sequence classifier in place with Adam; returns per-member final losses.

    ``model(codes_batch, lengths_batch)`` must return logits ``(K, B, C)`` and every parameter must
    carry the member dimension first (as :class:`MaskedRecurrent` does). ``clip_norm`` (None: off)
    clips each member's gradient norm; masks are re-applied after every step. ``seed`` fixes the
    batch order; ``on_epoch(epoch, losses)`` receives each epoch's ``(K,)`` mean batch losses.
    """
    codes, lengths, labels = check_sequences(model, codes, lengths, labels)
    if not lr > 0:
        raise InputError(f"lr must be > 0, got {lr}")
    if clip_norm is not None and not clip_norm > 0:
        raise InputError(f"clip_norm must be > 0 (or None), got {clip_norm}")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise InputError("the model has no trainable parameters")
    population = getattr(model, "population_size", 1)
    if any(p.dim() == 0 or p.shape[0] != population for p in params):
        raise InputError("fit_sequences needs a population model: every parameter's first dimension is K")
    apply_mask = mask_applier(model)
    optimizer = torch.optim.Adam(params, lr=lr)
    generator = torch.Generator().manual_seed(int(seed))
    device = params[0].device
    curve: list[list[float]] = []
    max_epochs = budget.epochs if budget.epochs is not None else 1 << 30
    started = time.perf_counter()
    epoch = 0
    mode = model.training
    model.train()
    try:
        for epoch in range(1, max_epochs + 1):
            total = torch.zeros(population, device=device)
            batches = length_batches(lengths, batch_size, generator)
            for index in batches:
                steps = int(lengths[index].max())
                x = codes[index, :steps].to(device)
                losses = member_losses(model(x, lengths[index].to(device)), labels[index].to(device))
                optimizer.zero_grad(set_to_none=True)
                losses.sum().backward()
                if clip_norm is not None:
                    clip_member_grads_(params, clip_norm)
                optimizer.step()
                if apply_mask is not None:
                    apply_mask()
                total += losses.detach()
            epoch_losses = total.double().cpu() / len(batches)
            curve.append(epoch_losses.tolist())
            if on_epoch is not None:
                on_epoch(epoch, epoch_losses)
            if budget.seconds is not None and time.perf_counter() - started >= budget.seconds:
                break
    finally:
        model.train(mode)
    final, _ = _evaluate_checked(model, codes, lengths, labels)
    return SequenceFitResult(final, epoch, time.perf_counter() - started, curve)


@torch.no_grad()
def evaluate_sequences(
    model: nn.Module,
    codes: torch.Tensor,
    lengths: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss, accuracy)``, each ``(K,)``: every member's mean cross-entropy and accuracy.

    ``batch_size`` None picks ``max(64, 2048 // K)`` sequences per batch: a batch of K members'
    step states then stays in the CPU cache (measured: for K=32 GRUs of width 10, 64 per batch
    evaluates 1.6x faster than 1024; for K=1, 2048 is fastest).
    """
    codes, lengths, labels = check_sequences(model, codes, lengths, labels)
    return _evaluate_checked(model, codes, lengths, labels, batch_size)


@torch.no_grad()
def _evaluate_checked(model: nn.Module, codes: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor,
                      batch_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`evaluate_sequences` on inputs :func:`check_sequences` has already checked."""
    if batch_size is None:
        batch_size = max(64, 2048 // getattr(model, "population_size", 1))
    device = next(model.parameters()).device
    mode = model.training
    model.eval()
    loss_sum = correct = None
    try:
        for index in length_batches(lengths, batch_size, shuffle=False):
            steps = int(lengths[index].max())
            logits = model(codes[index, :steps].to(device), lengths[index].to(device))
            y = labels[index].to(device)
            batch_loss = member_losses(logits, y).double() * index.numel()
            batch_correct = (logits.argmax(-1) == y).sum(1)
            loss_sum = batch_loss if loss_sum is None else loss_sum + batch_loss
            correct = batch_correct if correct is None else correct + batch_correct
    finally:
        model.train(mode)
    n = labels.numel()
    return (loss_sum / n).to(logits.dtype).cpu(), (correct.double() / n).cpu()
