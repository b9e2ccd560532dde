"""Pruning criteria: a saliency score per live weight, and which weights to remove.

Methods (lower score = removed first; only live weights are candidates, biases are never pruned):

- ``random``: uniform random scores from ``generator`` (the global RNG when None).
- ``magnitude-blinded``: ``|w|``, one global ranking over all layers ("class-blinded").
- ``magnitude-uniform``: ``|w|`` ranked within each layer; every layer loses the same fraction
  of its live weights ("class-uniform"; per-layer counts by largest remainder so the total is
  exact).
- ``magnitude-distributed``: remove ``|w| < lambda * sigma_layer``, where ``sigma_layer`` is the
  standard deviation of the live weight magnitudes in that layer ("class-distributed", as the
  seed paper defines it). This equals one global ranking of ``|w| / sigma_layer``, with lambda
  the score of the last weight removed, so choosing lambda "so that the requested amount is
  removed" is an exact sort, not a bisection. A layer whose magnitudes have no spread
  (sigma = 0, e.g. a single live weight) scores ``+inf`` and goes last.
- ``obd``: Optimal Brain Damage, ``s_k = h_kk w_k^2 / 2`` with ``h_kk`` the loss curvature on
  ``data``. ``curvature="auto"`` uses the exact Hessian diagonal while there are at most
  :data:`EXACT_HESSIAN_MAX` live weights (it costs one Hessian-vector product per weight, so its
  cost grows with the square of the network size) and the empirical Fisher diagonal above that
  (one per-sample gradient per sample). See :mod:`netbonsai.prune.curvature`. The exact diagonal
  can be negative for a non-convex loss; such weights are predicted to lower the loss when removed
  and rank first.

``saliency()`` returns the scores as a flat table so that schedules (a fixed count, a bucket
budget) and other code can use them directly; ``prune_step()`` is the one-call surface.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import InputError
from ..nets.recurrent import MaskedRecurrent
from .curvature import check_data, exact_diagonal, fisher_diagonal
from .groups import PrunableGroup, prunable_groups, remove_positions_

METHODS = ("random", "magnitude-blinded", "magnitude-uniform", "magnitude-distributed", "obd")
CURVATURES = ("auto", "exact", "fisher")
# Largest number of live weights for which curvature="auto" computes the exact Hessian diagonal.
# Its cost is one Hessian-vector product over the data per weight, i.e. grows with weights^2 x
# samples: measured on 2 CPU cores, 1800 weights x 1000 samples took 7-11 s, while the Fisher
# estimate took 0.5 s (and 9 s for a 784-100-10 MNIST net, 79k weights). 1024 keeps the exact
# diagonal at a few seconds for a thousand samples; pass curvature="exact" to force it.
EXACT_HESSIAN_MAX = 1024


@dataclass(frozen=True)
class Saliency:
    """Scores of every live prunable weight, one row each (lower = less important).

    Row ``i`` is weight ``position[i]`` (a flat index into ``groups[group[i]].weight``), with
    current value ``weight[i]`` and score ``scores[i]``. Rows are ordered by group, then position.
    """

    method: str
    groups: tuple[PrunableGroup, ...]
    group: torch.Tensor  # (M,) long
    position: torch.Tensor  # (M,) long
    weight: torch.Tensor  # (M,) float, detached copy
    scores: torch.Tensor  # (M,) float
    per_group: bool = False  # select the same fraction of every group (a Criterion object's choice)

    def __len__(self) -> int:
        return int(self.scores.numel())

    def group_sizes(self) -> torch.Tensor:
        """``(G,)`` number of live weights in each group."""
        return torch.bincount(self.group, minlength=len(self.groups))


class Criterion:
    """A pruning criterion as an object (as Torch-Pruning's importances): subclass it and give
    ``name`` and :meth:`scores`; pass the object wherever a method name is accepted
    (``prune_step``, ``run_schedule``, ``saliency``). Lower scores are removed first.
    ``per_group``: remove the same fraction of every layer (as ``magnitude-uniform``) instead of
    one global ranking; ``needs_data``: :meth:`scores` reads ``data``."""

    name: str = "custom"
    per_group: bool = False
    needs_data: bool = False

    def scores(self, table: "Saliency", model: nn.Module, *, data=None, loss: str = "cross_entropy",
               generator: torch.Generator | None = None) -> torch.Tensor:
        """One score per row of ``table`` (its ``weight`` column holds the live weights)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def check_method(method: "str | Criterion") -> "str | Criterion":
    """``method`` if it is a known criterion name or a :class:`Criterion` object, else
    :class:`InputError` listing the methods (names stop at the command-line edge)."""
    if isinstance(method, Criterion):
        return method
    if method not in METHODS:
        raise InputError(f"unknown pruning method {method!r}; choose one of {', '.join(METHODS)}")
    return method


def live_table(model: nn.Module, method: str = "magnitude-blinded", parts: str | None = None) -> Saliency:
    """Every live weight of ``model`` (of the ``parts`` selected, for a MaskedRecurrent) with
    ``|w|`` as its score (the magnitude criteria's base)."""
    groups = tuple(prunable_groups(model, parts))  # never empty: it raises on a model without layers
    positions = [g.positions() for g in groups]
    group = torch.cat([torch.full_like(p, i) for i, p in enumerate(positions)])
    position = torch.cat(positions)
    weight = torch.cat([g.weight.detach().reshape(-1)[p] for g, p in zip(groups, positions)])
    return Saliency(method, groups, group, position, weight, weight.abs())


def saliency(
    model: nn.Module,
    method: "str | Criterion",
    *,
    data: tuple[torch.Tensor, torch.Tensor] | None = None,
    loss: str = "cross_entropy",
    generator: torch.Generator | None = None,
    curvature: str = "auto",
    parts: str | None = None,
) -> Saliency:
    """Score every live weight of ``model`` (masked layers, a DagNet or a MaskedRecurrent) with ``method``.

    ``data=(x, y)`` and ``loss`` (a :mod:`netbonsai.train.losses` name) are needed by ``obd``;
    ``curvature`` picks its Hessian estimate (``auto``, ``exact`` or ``fisher``); ``parts``
    limits a MaskedRecurrent to its ``i2h``, ``h2h``, ``both`` (default) or ``all`` weights
    (see :func:`netbonsai.prune.groups.prunable_groups`).
    """
    check_method(method)
    if curvature not in CURVATURES:
        raise InputError(f"unknown curvature {curvature!r}; choose one of {', '.join(CURVATURES)}")
    if isinstance(method, Criterion):
        if method.needs_data:
            check_data(data)
        table = live_table(model, method.name, parts)
        scores = method.scores(table, model, data=data, loss=loss, generator=generator)
        if scores.shape != table.scores.shape:
            raise InputError(f"criterion {method.name!r} gave {tuple(scores.shape)} scores for {len(table)} weights")
        return Saliency(method.name, table.groups, table.group, table.position, table.weight, scores.to(table.scores),
                        per_group=method.per_group)
    if method == "obd":
        if isinstance(model, MaskedRecurrent):
            raise InputError(
                "obd is not available for recurrent models (MaskedRecurrent): "
                "use a magnitude or random criterion"
            )
        x, y = check_data(data)
    table = live_table(model, method, parts)
    scores = table.scores
    if method == "random":
        scores = torch.rand(len(table), generator=generator).to(scores)
    elif method == "magnitude-distributed":
        scores = scores / _group_spread(table)[table.group]
        scores = torch.where(torch.isnan(scores), torch.zeros_like(scores), scores)  # 0 / 0
    elif method == "obd" and len(table):
        use_exact = curvature == "exact" or (curvature == "auto" and len(table) <= EXACT_HESSIAN_MAX)
        estimate = exact_diagonal if use_exact else fisher_diagonal
        h = estimate(model, list(table.groups), table.group, table.position, x, y, loss)
        scores = h * table.weight.pow(2) / 2
    return Saliency(method, table.groups, table.group, table.position, table.weight, scores)


def _group_spread(table: Saliency) -> torch.Tensor:
    """``(G,)`` population standard deviation of the live weight magnitudes of each group."""
    n = table.group_sizes().to(table.scores.dtype).clamp_min(1)
    magnitude = table.scores
    mean = torch.zeros_like(n).index_add_(0, table.group, magnitude) / n
    var = torch.zeros_like(n).index_add_(0, table.group, (magnitude - mean[table.group]).pow(2)) / n
    return var.sqrt()


def resolve_amount(amount: int | float, live: int) -> int:
    """How many weights ``amount`` means: an int is a count (capped at ``live``), a float in
    [0, 1] a fraction of the ``live`` weights (rounded half up)."""
    if isinstance(amount, bool) or not isinstance(amount, numbers.Real):
        raise InputError(f"amount must be an int count or a float fraction, got {amount!r}")
    if isinstance(amount, numbers.Integral):
        if amount < 0:
            raise InputError(f"amount must be >= 0, got {amount}")
        return min(int(amount), live)
    amount = float(amount)
    if not 0.0 <= amount <= 1.0:
        raise InputError(f"a fractional amount must be in [0, 1], got {amount}")
    return min(live, int(amount * live + 0.5))


def select(table: Saliency, count: int, *, per_group: bool | None = None) -> torch.Tensor:
    """Rows of the ``count`` weights to remove: the lowest scores overall, or (``per_group``,
    the default for ``magnitude-uniform``) the lowest of each group with the same fraction of
    every group. Ties go to the earlier row."""
    count = max(0, min(int(count), len(table)))
    if per_group is None:
        per_group = table.per_group or table.method == "magnitude-uniform"
    if not per_group:
        return torch.argsort(table.scores, stable=True)[:count]
    sizes = table.group_sizes()
    quota = _largest_remainder(sizes, count)
    by_score = torch.argsort(table.scores, stable=True)
    order = by_score[torch.argsort(table.group[by_score], stable=True)]  # by group, then score
    starts = torch.cumsum(sizes, 0) - sizes
    sorted_group = table.group[order]
    rank = torch.arange(len(table), device=order.device) - starts[sorted_group]
    return order[rank < quota[sorted_group]]


def _largest_remainder(sizes: torch.Tensor, count: int) -> torch.Tensor:
    """Split ``count`` over groups in proportion to ``sizes`` with integer parts summing to ``count``."""
    total = int(sizes.sum())
    if total == 0:
        return torch.zeros_like(sizes)
    exact = sizes.to(torch.float64) * count / total
    quota = exact.floor().to(torch.long)
    left = count - int(quota.sum())
    if left > 0:
        extra = torch.argsort(exact - quota, descending=True, stable=True)[:left]
        quota[extra] += 1
    return quota


def select_bucket(table: Saliency, value: float) -> torch.Tensor:
    """Rows of the lowest-score weights whose running sum of scores stays <= ``value`` (at least one)."""
    if len(table) == 0:
        return torch.zeros(0, dtype=torch.long)
    order = torch.argsort(table.scores, stable=True)
    running = torch.cumsum(table.scores[order].to(torch.float64), 0)
    over = torch.nonzero(running > value)
    count = int(over[0]) if over.numel() else len(table)
    return order[: max(count, 1)]


def remove_(model: nn.Module, table: Saliency, rows: torch.Tensor) -> int:
    """Remove the weights at ``rows`` of ``table`` from ``model`` (mask False, weight 0)."""
    if rows.numel() == 0:
        return 0
    return remove_positions_(model, list(table.groups), table.group[rows], table.position[rows])


def prune_step(
    model: nn.Module,
    method: "str | Criterion",
    amount: int | float,
    *,
    data: tuple[torch.Tensor, torch.Tensor] | None = None,
    loss: str = "cross_entropy",
    generator: torch.Generator | None = None,
    curvature: str = "auto",
    parts: str | None = None,
) -> int:
    """Remove ``amount`` live weights from ``model`` in place by ``method``; returns how many.

    ``amount``: an int count, or a float fraction of the currently live weights (of the
    ``parts`` selected, for a MaskedRecurrent).
    """
    check_method(method)
    # also rejects a model without layers, a population, or parts it does not have
    live = sum(int(g.live().sum()) for g in prunable_groups(model, parts))
    if resolve_amount(amount, live) == 0:
        return 0
    table = saliency(
        model, method, data=data, loss=loss, generator=generator, curvature=curvature, parts=parts
    )
    return remove_(model, table, select(table, resolve_amount(amount, len(table))))
