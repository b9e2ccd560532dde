"""Synapse-removal trials: the one implementation of paper 000's removal step, shared by the
grow-and-prune search (:func:`netbonsai.grow.steps.removal_step`) and loss-aware removal
(:func:`netbonsai.prune.loss_aware.loss_aware_prune`).

A trial takes the N1 lowest-scored live synapses (:func:`~netbonsai.nets.synapses.lowest_synapses`),
computes the loss right after each single removal (one batched pass), builds one variant per
*window* of the cost-ordered candidates (``[offset, offset + size)``), retrains the variants
together as one population and returns them with their losses. Paper 000's step is the trial
whose windows are the ``n_trials`` cheapest single synapses (``variant_windows(1, n_trials)``);
loss-aware removal runs trials with larger windows and halves them when none passes.

Two kernels compute the same functions and differ only in float rounding: ``fast=True`` takes
the exact costs from :func:`single_removal_losses` (levels before a removal's target are shared
by every candidate) and retrains through :func:`train_population` (only the weights into
non-input nodes: 34x fewer for MNIST's 784 inputs); ``fast=False`` evaluates the candidate
population and trains it with :func:`~netbonsai.train.fit` directly, the arithmetic the search's
seeded results (``make demo``) were recorded with, which the search keeps using.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..data.task import Split
from ..errors import InputError
from ..nets.dag import DagNet, activate_level, run_levels
from ..train import Budget, TrainerConfig, evaluate, fit
from ..train.losses import get_loss

__all__ = [
    "RemovalTrials", "removal_costs", "removal_trials", "remove_windows", "retrain_variants",
    "single_removal_losses", "train_population", "variant_windows",
]

# Evaluation chunk for small populations (K x samples x nodes held at once, in elements).
_EVAL_ROWS = 1 << 24


@torch.no_grad()
def single_removal_losses(
    net: DagNet,
    sources: torch.Tensor,
    targets: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    loss: str = "mse",
    max_elements: int = 1 << 23,
) -> torch.Tensor:
    """Exact loss of ``net`` on ``(x, y)`` without each synapse ``sources[k] -> targets[k]``, ``(K,)``.

    Equal (up to float rounding) to ``evaluate(net.expand(K).remove_synapses_(sources, targets),
    x, y, loss)``, computed as one batched population pass that shares everything the removals do
    not change: removing i -> j shifts node j's pre-activation by ``-w_ij * a_i`` and leaves every
    node before j's level untouched, so those are computed once for all candidates and only the
    levels from the earliest target on are evaluated per candidate. ``max_elements`` bounds
    candidates x samples x recomputed nodes held at once (samples and, if needed, candidates are
    chunked). ``net`` must have population size 1; its synapses must be live.
    """
    if net.population_size != 1:
        raise InputError("single_removal_losses() needs a network with population size 1")
    sources = torch.as_tensor(sources, dtype=torch.long, device=net.mask.device).reshape(-1)
    targets = torch.as_tensor(targets, dtype=torch.long, device=net.mask.device).reshape(-1)
    if sources.shape != targets.shape:
        raise InputError("sources and targets must have the same length")
    k = sources.numel()
    if k == 0:
        return torch.zeros(0, dtype=net.weight.dtype, device=net.weight.device)
    if not bool(net.mask[0, sources, targets].all()):
        raise InputError("single_removal_losses() was given a synapse that is not live")
    if x.shape[0] == 0:
        raise InputError("cannot evaluate on an empty dataset")
    loss_fn = get_loss(loss)
    plan = net.plan()
    n = net.n_nodes
    perm = plan.perm
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(n, device=perm.device)
    weight = net.weight.detach()[0] * net.mask[0]
    weight_t = weight[perm][:, perm].t().contiguous()  # weight_t[q, p]: synapse at position p -> q
    bias = net.bias.detach()[0][perm]
    removed_w = weight[sources, targets]
    src_pos, dst_pos = inverse[sources], inverse[targets]
    # Levels (in plan positions) from the one holding the earliest target on are recomputed.
    first = int(dst_pos.min())
    levels = [lv for lv in plan.levels if lv[1] > first]
    s0 = levels[0][0]
    late = n - s0  # nodes recomputed per candidate
    out_pos = plan.out_pos
    last_level_out = plan.out_slice is not None and plan.out_slice == plan.bounds[-1]
    early_out = out_pos < s0
    cand_chunk = max(1, min(k, max_elements // (late * 64)))
    total = torch.zeros(k, dtype=weight.dtype, device=weight.device)
    n_samples = x.shape[0]
    step = max(1, max_elements // (cand_chunk * late))
    for start in range(0, n_samples, step):
        xb, yb = x[start : start + step], y[start : start + step]
        b = xb.shape[0]
        values = net.node_values(xb)[0].t()[perm]  # (N, B) in plan order, inputs standardised
        shared_pre = [bias[s:e, None] + weight_t[s:e, :s0] @ values[:s0] for s, e, _ in levels]
        for c0 in range(0, k, cand_chunk):
            c1 = min(k, c0 + cand_chunk)
            kc = c1 - c0
            blocks: list[tuple[int, int, torch.Tensor]] = []  # recomputed levels: (start, end, (kc, n, B))
            for (s, e, groups), shared in zip(levels, shared_pre):
                pre = shared.expand(kc, -1, -1)
                for bs, be, block in blocks:
                    pre = pre + torch.matmul(weight_t[s:e, bs:be], block)
                hit = torch.nonzero((dst_pos[c0:c1] >= s) & (dst_pos[c0:c1] < e)).squeeze(1)
                if hit.numel():
                    if not blocks:
                        pre = pre.clone()
                    cand = hit + c0
                    pre[hit, dst_pos[cand] - s] -= removed_w[cand, None] * values[src_pos[cand]]
                blocks.append((s, e, activate_level(groups, pre, s)))
            if last_level_out:
                out = blocks[-1][2]
            else:
                late_rows = torch.cat([blk for _, _, blk in blocks], dim=1)  # positions s0..N-1
                out = late_rows.new_empty(kc, net.n_out, b)
                out[:, early_out] = values[out_pos[early_out]]
                out[:, ~early_out] = late_rows[:, out_pos[~early_out] - s0]
            out = out * net.out_scale[:, None] + net.out_shift[:, None]
            total[c0:c1] += _summed_loss(loss, loss_fn, out, yb)
    return total / n_samples


def _summed_loss(name: str, loss_fn, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-variant loss summed over samples, for outputs laid out ``(K, n_out, B)``.

    The two built-in losses are computed in that layout (a softmax over 10 strided rows is
    several times faster this way than transposing to ``(K, B, n_out)``); others go through
    the generic per-variant loss.
    """
    b = out.shape[-1]
    if name == "cross_entropy":
        top = out.amax(dim=1, keepdim=True)
        lse = top.squeeze(1) + (out - top).exp().sum(dim=1).log()
        picked = out[:, y.reshape(-1), torch.arange(b, device=out.device)]
        return (lse - picked).sum(dim=1)
    if name == "mse":
        return (out - y.t().to(out.dtype)).pow(2).mean(dim=1).sum(dim=1)
    return loss_fn(out.transpose(1, 2), y) * b


# ---------------------------------------------------------------------- fast trial training
class _TargetColumns(nn.Module):
    """A trainable view of a DagNet population holding only the weights *into* non-input nodes.

    A DagNet stores ``(K, N, N)`` weights, but no synapse ever enters an input node, so the first
    ``n_in`` columns are structurally zero. For a wide input layer (MNIST: 784 of 808 nodes) they
    are almost all of the tensor, and Adam would update ``K x N x N`` values per minibatch. This
    module trains the ``(K, N, N - n_in)`` block instead (34x smaller for 784-7-7-10) and computes
    exactly the function of :meth:`DagNet.population` (same plan, levels and activations), so
    training it equals training the DagNet itself; :meth:`write_back` copies the result back.
    """

    def __init__(self, net: DagNet) -> None:
        super().__init__()
        self.net = [net]  # not a submodule: its parameters are not trained through this view
        c0 = net.n_in
        self.c0 = c0
        self.population_size = net.population_size
        self.weight = nn.Parameter(net.weight.detach()[:, :, c0:].clone())
        self.bias = nn.Parameter(net.bias.detach()[:, c0:].clone())
        self.register_buffer("mask", net.mask[:, :, c0:].clone())
        self.plan = net.plan()

    def population(self, x: torch.Tensor) -> torch.Tensor:
        net, plan, c0 = self.net[0], self.plan, self.c0
        k = self.population_size
        weight = self.weight * self.mask
        bias = self.bias
        if not plan.identity:
            cols = plan.perm[c0:] - c0  # inputs are exactly level 0, so they stay first
            weight = weight[:, plan.perm][:, :, cols]
            bias = bias[:, cols]
        weight_t = weight.transpose(1, 2)  # weight_t[k, q, p]: synapse at position p -> c0 + q
        if x.dim() == 2:
            x = x.unsqueeze(0)
        x = (x.to(weight.dtype) - net.in_shift) / net.in_scale
        blocks = [x.transpose(1, 2).contiguous().expand(k, -1, -1)]
        run_levels(plan, weight_t, bias, blocks, offset=c0)
        if plan.out_slice is not None and plan.out_slice == plan.bounds[-1]:
            out = blocks[-1]
        else:
            out = torch.cat(blocks, dim=1)[:, plan.out_pos]
        return out.transpose(1, 2) * net.out_scale + net.out_shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.population(x)

    @torch.no_grad()
    def apply_mask_(self) -> "_TargetColumns":
        self.weight.mul_(self.mask)
        return self

    @torch.no_grad()
    def write_back(self) -> DagNet:
        net = self.net[0]
        net.weight[:, :, self.c0 :] = self.weight * self.mask
        net.bias[:, self.c0 :] = self.bias
        return net.apply_mask_()


def train_population(net: DagNet, x: torch.Tensor, y: torch.Tensor, budget: Budget, trainer: TrainerConfig, seed: int = 0):
    """``fit(net, ...)`` for a DagNet population, faster when the input layer is wide.

    Trains only the weights into non-input nodes (see :class:`_TargetColumns`), which is the
    same computation as ``fit(net, x, y, budget, trainer, seed)``; ``net`` is updated in place and
    the :class:`~netbonsai.train.FitResult` is returned.
    """
    view = _TargetColumns(net)
    result = fit(view, Split(x, y), budget, trainer, seed=seed)
    view.write_back()
    return result


def variant_windows(chunk: int, n_trials: int, variants: str = "sizes") -> list[tuple[int, int]]:
    """The ``(offset, size)`` windows of the cost-ordered candidates that the trial variants remove.

    ``"sizes"``: ``(0, chunk), (0, chunk // 2), ...`` (distinct sizes >= 1), then shifted windows
    ``(1, chunk), (2, chunk), ...`` to make up ``n_trials``; ``"shifts"``: ``(0, chunk), (1, chunk), ...``.
    """
    windows: list[tuple[int, int]] = []
    if variants == "sizes":
        size = chunk
        while size >= 1 and len(windows) < n_trials:
            windows.append((0, size))
            size //= 2
    shift = 1 if windows else 0
    while len(windows) < n_trials:
        windows.append((shift, chunk))
        shift += 1
    return windows


@torch.no_grad()
def remove_windows(
    net: DagNet, sources: torch.Tensor, targets: torch.Tensor, chosen: list[torch.Tensor]
) -> DagNet:
    """A population with one variant per entry of ``chosen`` (indices into sources/targets) removed."""
    trials = net.expand(len(chosen))
    rows = torch.cat([torch.full((len(c),), v, dtype=torch.long) for v, c in enumerate(chosen)]).to(net.mask.device)
    index = torch.cat(chosen).to(net.mask.device)
    trials.mask[rows, sources[index], targets[index]] = False
    trials.weight[rows, sources[index], targets[index]] = 0.0
    return trials


# ---------------------------------------------------------------------- one removal trial
@dataclass
class RemovalTrials:
    """The variants of one removal trial, retrained, and what led to them."""

    trials: DagNet  # one variant per distinct window, retrained
    chosen: list[torch.Tensor]  # per variant: the candidate indices (into sources/targets) it removes
    sizes: list[int]  # per variant: how many synapses it removes
    costs: torch.Tensor  # (N1,) loss right after each single removal, on the scoring data
    losses: torch.Tensor | None  # (V,) training loss after retraining on (x, y); None if not computed


def removal_costs(net: DagNet, sources: torch.Tensor, targets: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                  loss: str = "mse", fast: bool = True) -> torch.Tensor:
    """Loss of ``net`` on ``(x, y)`` without each synapse ``sources[k] -> targets[k]``, ``(K,)``,
    in one batched pass (see the module docstring for ``fast``)."""
    if fast:
        return single_removal_losses(net, sources, targets, x, y, loss)
    return evaluate(net.expand(sources.numel()).remove_synapses_(sources, targets), x, y, loss)


def retrain_variants(trials: DagNet, x: torch.Tensor, y: torch.Tensor, trainer: TrainerConfig, epochs: int,
                     seed: int, trial_data: tuple[torch.Tensor, torch.Tensor] | None = None,
                     fast: bool = True) -> torch.Tensor | None:
    """Retrain every variant of ``trials`` for ``epochs`` in one population training (in place),
    on ``trial_data`` when given, else on ``(x, y)``; returns the losses on ``(x, y)`` when the
    training saw exactly that data (None otherwise, or when ``epochs`` is 0)."""
    if epochs <= 0:
        return None
    tx, ty = trial_data if trial_data is not None else (x, y)
    budget = Budget(epochs=epochs)
    if fast:
        result = train_population(trials, tx, ty, budget, trainer, seed=seed)
    else:
        result = fit(trials, Split(tx, ty), budget, trainer, seed=seed)
    return result.loss if tx is x else None


def removal_trials(
    net: DagNet,
    sources: torch.Tensor,
    targets: torch.Tensor,
    windows: list[tuple[int, int]],
    x: torch.Tensor,
    y: torch.Tensor,
    trainer: TrainerConfig,
    trial_epochs: int,
    seed: int,
    *,
    score_data: tuple[torch.Tensor, torch.Tensor] | None = None,
    trial_data: tuple[torch.Tensor, torch.Tensor] | None = None,
    fast: bool = True,
) -> RemovalTrials:
    """One removal trial on a population-1 ``net`` over the candidate synapses ``sources[k] ->
    targets[k]``: their single-removal costs (on ``score_data``, default ``(x, y)``), one variant
    per distinct non-empty window of the cost order, retrained together (on ``trial_data``,
    default ``(x, y)``)."""
    sx, sy = score_data if score_data is not None else (x, y)
    costs = removal_costs(net, sources, targets, sx, sy, trainer.loss, fast)
    order = torch.argsort(costs, stable=True)
    chosen: list[torch.Tensor] = []
    sizes: list[int] = []
    seen: set[tuple[int, ...]] = set()
    for offset, size in windows:
        window = order[offset : offset + size]
        key = tuple(sorted(window.tolist()))
        if window.numel() == 0 or key in seen:
            continue
        seen.add(key)
        chosen.append(window)
        sizes.append(int(window.numel()))
    trials = remove_windows(net, sources, targets, chosen)
    losses = retrain_variants(trials, x, y, trainer, trial_epochs, seed, trial_data, fast)
    return RemovalTrials(trials=trials, chosen=chosen, sizes=sizes, costs=costs, losses=losses)
