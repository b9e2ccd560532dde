"""How much each removable residual block matters, and how much it matters per parameter.

Measures (one score per block of :func:`~netbonsai.residual.blocks.find_blocks`; larger means
the block changes more, so it matters more, for every measure):

- ``lesion``: loss with the block skipped minus the loss of the full model (Veit et al. 2016);
  the exact reference, one extra forward pass per block;
- ``norm_ratio``: mean over samples of ``||F(h)|| / ||h||`` with ``F(h) = h_out - h_in``, which
  holds for any identity-skip block (a ReLU after the sum included);
- ``cosine``: mean over samples of ``1 - cos(h_in, h_out)`` (ShortGPT 2024);
- ``taylor``: ``|dL/dg|`` at ``g = 1`` for a scalar ``g`` with ``h_out -> h_in + g (h_out - h_in)``,
  the first-order Taylor score of a block gate (works for blocks without a gate);
- ``taylor2``: the second-order Taylor estimate of the lesion itself, ``L(g=0) - L(g=1) ~
  mean_n(-l_n' + l_n'^2 / 2)`` with ``l_n' = dl_n/dg`` per sample and the curvature taken as the
  empirical Fisher (``E[l_n'^2]``, exact in expectation for a log-likelihood loss): at a trained
  network the first-order term nearly vanishes, so ``taylor`` ranks blocks poorly while the
  curvature term carries the lesion (netbonsai's measure; ``loss_fn`` must be a mean over samples);
- ``cka``: ``1 -`` linear CKA between block input and output over the batch (its first
  ``CKA_ROWS`` samples, in float32).

The cheap measures take one forward and (for ``taylor`` and ``taylor2``) one backward pass for
all blocks together. :func:`efficiency` divides by the block's parameters (or FLOPs); :func:`spearman` is
the rank correlation used to compare a cheap measure with the lesion.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import torch
from torch import nn

from ..errors import InputError
from .blocks import BlockRef, block_params, find_blocks, flops_per_block, skipped

PER = ("params", "flops", "block")  # what efficiency divides a score by
MEASURES = ("lesion", "norm_ratio", "cosine", "taylor", "taylor2", "cka")
_CHEAP = ("norm_ratio", "cosine", "cka")  # computed from (h_in, h_out) inside the forward hook
# CKA compares the batch's Gram matrices (n x n when the features outnumber the samples): on the
# first CKA_ROWS rows, in float32. On all 2,000 rows of a conv block in float64 it took 20.8 s
# for 9 blocks, 1.6x the whole lesion (benchmarks/bench_block_scores.py)
CKA_ROWS = 512

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _check_measures(measures: str | Iterable[str]) -> tuple[str, ...]:
    wanted = (measures,) if isinstance(measures, str) else tuple(measures)
    unknown = [m for m in wanted if m not in MEASURES]
    if unknown or not wanted or len(set(wanted)) != len(wanted):
        raise InputError(f"measures must be distinct names from {', '.join(MEASURES)}; got {list(wanted)}")
    return wanted


def _loss(loss_fn: LossFn, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    loss = loss_fn(outputs, y)
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        raise InputError("loss_fn(outputs, y) must return a scalar tensor (use a mean or sum reduction)")
    return loss


def _cosine_gap(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-row ``1 - cos(a, b)`` as ``(||a - b||^2 - (||a|| - ||b||)^2) / (2 ||a|| ||b||)``: exactly
    0 when ``a == b`` and accurate for nearly equal rows, where ``1 - cos`` cancels."""
    na, nb, d = a.norm(dim=1), b.norm(dim=1), (b - a).norm(dim=1)
    denom = 2 * na * nb
    gap = ((d.square() - (na - nb).square()) / denom.clamp_min(torch.finfo(a.dtype).tiny)).clamp(0, 2)
    return torch.where(denom > 0, gap, (d > 0).to(a.dtype))  # a zero row: cos taken as 0 unless a == b


def _cka_gap(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``1 -`` linear CKA of the rows of ``a`` and ``b`` (samples x features, centred):
    ``||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)``, through the n x n Gram matrices when the
    features outnumber the samples. NaN when a side is constant over the batch."""
    x, y = a - a.mean(0), b - b.mean(0)
    if x.shape[1] <= x.shape[0]:
        cross, xx, yy = (y.T @ x).square().sum(), (x.T @ x).norm(), (y.T @ y).norm()
    else:
        kx, ky = x @ x.T, y @ y.T
        cross, xx, yy = (kx * ky).sum(), kx.norm(), ky.norm()
    denom = xx * yy
    return 1 - cross / denom if denom > 0 else torch.full((), float("nan"), dtype=a.dtype)


def _statistics(h_in: torch.Tensor, h_out: torch.Tensor, wanted: Sequence[str]) -> dict[str, torch.Tensor]:
    """The cheap measures of one block from its input and output, as float64 scalars.

    Per-sample rows are reduced in the activations' own precision (at least float32): a float64
    copy of a conv stage's activations cost more than the forward pass itself; the rows' norms
    are exact to float32 rounding and only their means are taken in float64."""
    dtype = h_in.dtype if h_in.dtype in (torch.float32, torch.float64) else torch.float32
    a, b = h_in.detach().flatten(1).to(dtype), h_out.detach().flatten(1).to(dtype)
    tiny = torch.finfo(a.dtype).tiny
    found = {}
    if "norm_ratio" in wanted:
        found["norm_ratio"] = ((b - a).norm(dim=1) / a.norm(dim=1).clamp_min(tiny)).double().mean()
    if "cosine" in wanted:
        found["cosine"] = _cosine_gap(a, b).double().mean()
    if "cka" in wanted:
        rows = min(a.shape[0], CKA_ROWS)
        found["cka"] = _cka_gap(a[:rows].float(), b[:rows].float()).double()
    return found


def _one_pass(model: nn.Module, refs: list[BlockRef], x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn,
              wanted: Sequence[str]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The cheap measures of every block from one forward (and one backward for ``taylor`` and
    ``taylor2``), and the full model's loss."""
    n, taylor = len(refs), "taylor" in wanted or "taylor2" in wanted
    stats: list[dict[str, torch.Tensor] | None] = [None] * n
    gains: list[torch.Tensor | None] = [None] * n
    versions: list[int] = [0] * n

    def before(i: int) -> Callable:
        def hook(module: nn.Module, inputs: tuple) -> None:
            if stats[i] is not None:
                raise InputError(f"block {refs[i].name!r} of stage {refs[i].stage} runs twice in one forward "
                                 "pass; scores need each block once")
            if not inputs or not isinstance(inputs[0], torch.Tensor) or inputs[0].dim() < 2:
                raise InputError(f"block {refs[i].name!r} must take one batched tensor")
            versions[i] = inputs[0]._version
        return hook

    def after(i: int) -> Callable:
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor | None:
            h_in = inputs[0]
            if not isinstance(output, torch.Tensor) or output.shape != h_in.shape:
                raise InputError(f"block {refs[i].name!r} of stage {refs[i].stage} must return a tensor of "
                                 "its input's shape (an identity skip)")
            if h_in._version != versions[i]:
                raise InputError(f"block {refs[i].name!r} of stage {refs[i].stage} changes its input in "
                                 "place; its input is then unknown")
            stats[i] = _statistics(h_in, output, wanted)
            if not taylor:
                return None
            # one gate per sample: its gradient is sample n's share of dL/dg, all in one backward pass
            shape = (output.shape[0],) + (1,) * (output.dim() - 1)
            gains[i] = g = torch.ones(shape, dtype=output.dtype, device=output.device, requires_grad=True)
            return output + (g - 1) * (output - h_in).detach()  # exactly output at g = 1
        return hook

    handles = []
    try:
        for i, ref in enumerate(refs):
            handles.append(ref.module.register_forward_pre_hook(before(i)))
            handles.append(ref.module.register_forward_hook(after(i)))
        with torch.set_grad_enabled(taylor):
            loss = _loss(loss_fn, model(x), y)
            missing = [refs[i].name for i in range(n) if stats[i] is None]
            if missing:
                raise InputError(f"blocks {missing} were not called in the forward pass")
            if taylor:
                grads = torch.autograd.grad(loss, gains, allow_unused=True)
    finally:
        for handle in handles:
            handle.remove()
    found = {m: torch.stack([s[m] for s in stats]) for m in _CHEAP if m in wanted}
    if taylor:
        rows = x.shape[0] if isinstance(x, torch.Tensor) else len(y)
        per_sample = [torch.zeros(rows, dtype=torch.float64) if g is None else g.detach().flatten().double().cpu() * rows
                      for g in grads]  # dl_n/dg for a loss that is the mean of l_n
        if "taylor" in wanted:
            found["taylor"] = torch.stack([d.mean().abs() for d in per_sample])
        if "taylor2" in wanted:
            found["taylor2"] = torch.stack([(-d + d.square() / 2).mean() for d in per_sample])
    return {m: v.cpu() for m, v in found.items()}, loss.detach()


def block_scores(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn,
                 measures: str | Iterable[str] = MEASURES) -> dict[str, torch.Tensor]:
    """Each measure's score of every block of :func:`find_blocks` (in that order) on a held-out
    batch ``(x, y)``: ``{measure: float64 CPU tensor of shape (blocks,)}`` in ``measures`` order.

    ``loss_fn(outputs, y)`` returns a scalar (e.g. ``nn.functional.cross_entropy``). The model is
    scored in eval mode (each module's mode is restored after) and is not changed; no parameter
    gradient is stored. The cheap measures take exactly one forward pass of ``model``; ``lesion``
    adds one per block. A model without removable blocks gets empty tensors and no forward pass.
    """
    wanted = _check_measures(measures)
    if not isinstance(model, nn.Module):
        raise InputError(f"block_scores needs a torch module, got {type(model).__name__}")
    refs = find_blocks(model)
    if not refs:
        return {m: torch.zeros(0, dtype=torch.float64) for m in wanted}
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        found, base = _one_pass(model, refs, x, y, loss_fn, wanted)
        if "lesion" in wanted:
            with torch.no_grad():
                lesions = []
                for ref in refs:
                    with skipped(model, ref):
                        lesions.append((_loss(loss_fn, model(x), y) - base).double().cpu())
            found["lesion"] = torch.stack(lesions)
    finally:
        for m, mode in modes.items():
            m.training = mode
    return {m: found[m] for m in wanted}


def efficiency(scores: dict[str, torch.Tensor], model: nn.Module, per: str = "params",
               example: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Every score divided by its block's cost: parameters (``per="params"``, the gate excluded),
    multiply-adds per sample (``per="flops"``, counted on the model input ``example``), or 1
    (``per="block"``: the score itself, when the count of blocks is what matters)."""
    refs = find_blocks(model)
    if per == "block":
        cost = [1] * len(refs)
    elif per == "params":
        cost = [block_params(ref) for ref in refs]
    elif per == "flops":
        if example is None:
            raise InputError('efficiency(per="flops") needs an example input batch')
        cost = flops_per_block(model, example)
    else:
        raise InputError(f'efficiency: per must be one of {", ".join(PER)}, got {per!r}')
    cost_t = torch.tensor(cost, dtype=torch.float64)
    if (cost_t == 0).any():
        bare = [f"{r.stage}.{r.index}" for r, c in zip(refs, cost) if c == 0]
        raise InputError(f"blocks {bare} (stage.index) have no {per}; their efficiency is undefined")
    found = {}
    for name, values in scores.items():
        values = torch.as_tensor(values).detach().double().cpu()
        if values.shape != cost_t.shape:
            raise InputError(f"scores {name!r} have shape {tuple(values.shape)}; "
                             f"the model has {len(refs)} blocks")
        found[name] = values / cost_t
    return found


def _ranks(values: torch.Tensor) -> torch.Tensor:
    """1-based ranks, ties given their average rank."""
    order = torch.argsort(values, stable=True)
    _, inverse, counts = torch.unique_consecutive(values[order], return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    average = (ends - counts + 1 + ends) / 2
    ranks = torch.empty_like(values)
    ranks[order] = average[inverse]
    return ranks


def spearman(a: torch.Tensor | Sequence[float], b: torch.Tensor | Sequence[float]) -> float:
    """Spearman rank correlation of two equally long vectors (ties averaged); NaN when either
    is constant."""
    a = torch.as_tensor(a).detach().double().cpu()
    b = torch.as_tensor(b).detach().double().cpu()
    if a.dim() != 1 or a.shape != b.shape or a.numel() < 2:
        raise InputError(f"spearman needs two vectors of equal length >= 2, got shapes "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")
    if torch.isnan(a).any() or torch.isnan(b).any():
        raise InputError("spearman: the vectors contain NaN")
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = ra.norm() * rb.norm()
    return float(((ra * rb).sum() / denom).clamp(-1, 1)) if denom > 0 else float("nan")
