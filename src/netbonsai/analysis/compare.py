"""Parameter ratios at equal loss between a grown front and a dense baseline front."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import InputError
from .pareto import pareto_front


def _log_params(front: Sequence[Mapping], what: str) -> np.ndarray:
    params = np.array([float(p["params"]) for p in front], dtype=np.float64)
    if (params <= 0).any():
        raise InputError(f"{what} points need a positive parameter count")
    return np.log(params)


def param_ratios(
    grown: Sequence[Mapping],
    dense: Sequence[Mapping],
    loss_key: str = "val_loss",
) -> list[dict[str, Any]]:
    """For each point of the grown front, the dense front's parameters at the same loss.

    Both inputs are reduced to their Pareto fronts (``params`` vs ``loss_key``) first. The dense
    parameter count at a loss is interpolated linearly in ``log(params)`` against loss between
    the two neighbouring dense front points. Grown points whose loss lies outside the dense
    front's loss range get no ratio and are left out (``len(front) - len(result)`` of them).

    Returns one dict per matched grown point, in ascending ``grown_params`` order:
    ``{loss_key, "grown_params", "dense_params" (rounded to 0.1), "ratio"}`` where
    ``ratio = dense_params / grown_params`` is computed before rounding.
    """
    grown_front = pareto_front(grown, "params", loss_key)
    dense_front = pareto_front(dense, "params", loss_key)
    if not grown_front or not dense_front:
        return []
    # Along the front loss strictly decreases, so reversed it is increasing, as np.interp needs.
    dense_loss = np.array([float(p[loss_key]) for p in dense_front])[::-1]
    dense_log = _log_params(dense_front, "dense")[::-1]
    _log_params(grown_front, "grown")
    low, high = dense_loss[0], dense_loss[-1]
    result: list[dict[str, Any]] = []
    for point in grown_front:
        loss = float(point[loss_key])
        if not low <= loss <= high:
            continue
        dense_params = math.exp(float(np.interp(loss, dense_loss, dense_log)))
        grown_params = point["params"]
        result.append(
            {
                loss_key: loss,
                "grown_params": grown_params,
                "dense_params": round(dense_params, 1),
                "ratio": dense_params / float(grown_params),
            }
        )
    return result


def ratio_summary(ratios: Sequence[Mapping]) -> dict[str, float | int | None]:
    """Median, minimum and maximum of the ``ratio`` values, and their count ``n``.

    The statistics are None when ``ratios`` is empty.
    """
    values = np.array([float(r["ratio"]) for r in ratios], dtype=np.float64)
    if values.size == 0:
        return {"median_ratio": None, "min_ratio": None, "max_ratio": None, "n": 0}
    return {
        "median_ratio": float(np.median(values)),
        "min_ratio": float(values.min()),
        "max_ratio": float(values.max()),
        "n": int(values.size),
    }


def seed_bootstrap(
    runs: Sequence[tuple[Sequence[Mapping], Sequence[Mapping]]],
    n_resamples: int = 2000,
    confidence: float = 0.9,
    loss_key: str = "val_loss",
    seed: int = 0,
) -> dict[str, Any] | None:
    """A percentile bootstrap interval, over seeds, of the pooled median parameter ratio.

    ``runs`` holds one ``(grown, dense)`` pair of point lists per seed. Each resample draws
    ``len(runs)`` seeds with replacement, pools the drawn seeds' grown and dense points (both
    sides reduced to their Pareto fronts, as a multi-seed comparison pools them) and takes the
    median of ``param_ratios``. The seed is the unit of resampling because one seed decides a
    whole search and a whole dense sweep: the points of one front are not independent.

    Returns ``{"low", "high", "confidence", "resamples", "without_ratio"}``, where
    ``without_ratio`` counts resamples with no grown point inside the dense loss range (left out
    of the percentiles), or None with fewer than 3 runs (too few distinct resamples to mean
    anything) or when no resample has a ratio. Deterministic for a given ``seed``.
    """
    if not 0 < confidence < 1:
        raise InputError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    if n_resamples < 1:
        raise InputError(f"n_resamples must be at least 1, got {n_resamples}")
    if len(runs) < 3:
        return None
    draws = np.random.default_rng(seed).integers(0, len(runs), size=(n_resamples, len(runs)))
    medians: dict[tuple[int, ...], float | None] = {}  # a seed drawn twice adds nothing to a front
    values: list[float] = []
    for draw in draws:
        key = tuple(sorted(set(draw.tolist())))
        if key not in medians:
            grown = [point for index in key for point in runs[index][0]]
            dense = [point for index in key for point in runs[index][1]]
            medians[key] = ratio_summary(param_ratios(grown, dense, loss_key))["median_ratio"]
        if medians[key] is not None:
            values.append(medians[key])
    if not values:
        return None
    tail = (1 - confidence) / 2
    low, high = np.quantile(np.array(values), [tail, 1 - tail])
    return {"low": float(low), "high": float(high), "confidence": confidence, "resamples": n_resamples,
            "without_ratio": n_resamples - len(values)}


def loss_gaps(
    front: Sequence[Mapping], dense: Sequence[Mapping], loss_key: str = "val_loss",
) -> list[dict[str, Any]]:
    """For each point of a method's front, the dense front's loss at the same parameter count.

    The counterpart of :func:`param_ratios` that stays meaningful where the dense front is flat
    (where a small loss difference moves the parameter ratio a lot): the dense front's loss is
    interpolated linearly in ``log(params)`` between its neighbouring points (a step function
    would overstate the gap), and points outside the dense front's parameter range get none.
    ``gap = (dense_loss - loss) / dense_loss``: the share of the dense network's loss the method
    saves at equal size (positive: the method is better).
    """
    method_front = pareto_front(front, "params", loss_key)
    dense_front = pareto_front(dense, "params", loss_key)
    if not method_front or not dense_front:
        return []
    dense_log = _log_params(dense_front, "dense")  # ascending params along a front
    dense_loss = np.array([float(p[loss_key]) for p in dense_front])
    result = []
    for point, log_params in zip(method_front, _log_params(method_front, "method")):
        if not dense_log[0] <= log_params <= dense_log[-1]:
            continue
        at_dense = float(np.interp(log_params, dense_log, dense_loss))
        loss = float(point[loss_key])
        result.append({"params": point["params"], loss_key: loss, "dense_loss": at_dense,
                       "gap": (at_dense - loss) / at_dense if at_dense > 0 else 0.0})
    return result


def gap_summary(gaps: Sequence[Mapping]) -> dict[str, float | int | None]:
    """Median, minimum and maximum relative loss gap and their count ``n``."""
    values = np.array([float(g["gap"]) for g in gaps], dtype=np.float64)
    if values.size == 0:
        return {"median_gap": None, "min_gap": None, "max_gap": None, "n": 0}
    return {"median_gap": float(np.median(values)), "min_gap": float(values.min()),
            "max_gap": float(values.max()), "n": int(values.size)}


def method_figures(points: list[dict[str, Any]], dense: list[dict[str, Any]]) -> dict[str, Any]:
    """A method's front against the dense networks: ratios at equal loss and gaps at equal size."""
    front = pareto_front(points)
    ratios = param_ratios(front, dense)
    summary = ratio_summary(ratios)
    gaps = loss_gaps(front, dense)
    return {"front": front, "ratios": ratios, "median_ratio": summary["median_ratio"], "min_ratio": summary["min_ratio"],
            "max_ratio": summary["max_ratio"], "n_ratios": summary["n"], "loss_gaps": gaps, **gap_summary(gaps),
            "n_outside_dense_range": len(front) - len(ratios), "flat_dense": flat_dense(ratios, dense)}


def flat_dense(ratios: list[dict[str, Any]], dense: list[dict[str, Any]], spread: float | None = None) -> bool:
    """Whether the compared loss range is too narrow for the ratio to mean much: the dense front's
    losses across it differ by less than ``spread`` (the spread over seeds) or, without one,
    by less than 1% of the loss."""
    if len(ratios) < 1:
        return False
    losses = [r["val_loss"] for r in ratios]
    low, high = min(losses), max(losses)
    front = pareto_front(dense)
    inside = [d["val_loss"] for d in front if low <= d["val_loss"] <= high] or losses
    width = max(inside + [high]) - min(inside + [low])
    limit = spread if spread is not None else 0.01 * max(abs(high), 1e-12)
    return bool(width <= limit)
