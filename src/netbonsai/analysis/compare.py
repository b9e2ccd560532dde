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
