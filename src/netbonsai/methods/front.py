"""Reported fronts: the same final training (polish) for every reported network, and the
choice of which search-front networks are reported."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..analysis.pareto import pareto_front
from ..data.task import Task
from ..grow.search import FrontPoint, GrowResult
from ..train.polish import polish_nets

if TYPE_CHECKING:
    from ..experiments.presets import TaskSettings


def polish(points: list[FrontPoint], data: Task, settings: "TaskSettings", executor=None) -> list[FrontPoint]:
    """Give every reported network the same final training (``polish_epochs``; see
    :func:`netbonsai.train.polish.polish_nets`), in populations of ``settings.polish_group``."""
    if settings.polish_epochs <= 0 or not points:
        return points
    trained = polish_nets([p.net for p in points], data, settings.polish_epochs, settings.grow.trainer,
                          settings.grow.seed, device=settings.device, group=settings.polish_group, executor=executor)
    return [FrontPoint(item["params"], item["train_loss"], item["val_loss"], point.event, item["net"])
            for point, item in zip(points, trained)]


def final_front(result: GrowResult, data: Task, settings: "TaskSettings", executor=None) -> list[FrontPoint]:
    """The reported front: up to ``polish_points`` search-front networks (evenly spread over
    the parameter range), polished (on ``executor``), then reduced to their own Pareto front."""
    points = sorted(result.front, key=lambda p: p.params)
    limit = settings.polish_points
    if settings.polish_epochs > 0 and len(points) > limit:
        chosen = sorted({round(i * (len(points) - 1) / (limit - 1)) for i in range(limit)})
        points = [points[i] for i in chosen]
    points = polish(points, data, settings, executor)
    kept = {p["event"] for p in pareto_front([p.summary() for p in points])}
    return [p for p in points if p.event in kept]
