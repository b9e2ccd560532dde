"""Pareto fronts of (complexity, loss) points."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence


def _finite(value: Any) -> bool:
    """True for a real number that is neither NaN nor infinite (None and non-numbers are False)."""
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def pareto_front(points: Sequence[Mapping], x: str = "params", y: str = "val_loss") -> list[dict]:
    """The non-dominated points, sorted by ``x`` ascending, with ``y`` strictly decreasing.

    A point is kept when its ``y`` is strictly lower than that of every point with equal or
    smaller ``x``; of several points with the same ``x`` only the lowest ``y`` (the first one
    given, on an exact tie) is kept. Points whose ``x`` or ``y`` is None, NaN or infinite are
    ignored (a diverged run); a point without the key raises ``KeyError``. Returns copies of the
    input dicts with all their keys.
    """
    usable = [(i, p) for i, p in enumerate(points) if _finite(p[x]) and _finite(p[y])]
    usable.sort(key=lambda item: (float(item[1][x]), float(item[1][y]), item[0]))
    front: list[dict] = []
    best = math.inf
    for _, point in usable:
        value = float(point[y])
        if value < best:
            front.append(dict(point))
            best = value
    return front
