"""The dense MLP sweep as a method: what a user would do instead (paper 000's Keras grids).

Every network of the grid is built, standardised and trained exactly as the search builds its
start network (same trainer, the policy's dense budget), then gets the same final polish as
every reported network. One executor job per network, largest first.
"""

from __future__ import annotations

from concurrent.futures import Future, as_completed
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ..data.task import Task
from ..errors import InputError
from ..grow.search import FrontPoint
from ..nets.io import net_from_state, net_to_state
from ..train.polish import shipped_task
from ..train.sweep import train_dense
from .base import Method, MethodResult, candidate, finite_front
from .front import polish
from .magnitude import mlp_params
from .registry import register

if TYPE_CHECKING:
    from ..experiments.presets import TaskSettings
    from ..runs import RunContext


def dense_job(task: Task, hidden: tuple[int, ...], policy: "TaskSettings") -> dict[str, Any]:
    """One dense training and its polish, in whatever process the executor picks (plain data back)."""
    task = task.to(policy.device)
    result = train_dense(task, hidden, policy.grow.activation, policy.dense_epochs, policy.grow.trainer, policy.grow.seed)
    summary = result.summary()
    net = result.net
    if policy.polish_epochs > 0:
        (point,) = polish([FrontPoint(summary["params"], summary["train_loss"], summary["val_loss"], -1, net)], task, policy)
        net = point.net
        summary.update(train_loss=point.train_loss, val_loss=point.val_loss)
    return {**summary, "net": net_to_state(net)}


def submit_dense_jobs(executor, task: Task, policy: "TaskSettings", on_done=None) -> list[Future]:
    """One job per grid network (largest first, so small jobs fill the gaps at the end); the
    futures come back in grid order. ``on_done(summary)`` runs as each job finishes."""
    shipped = shipped_task(task)
    grid = policy.dense_grid
    sizes = [mlp_params([task.n_in, *hidden, task.n_out]) for hidden in grid]
    submitted = {}
    for index in sorted(range(len(sizes)), key=lambda i: -sizes[i]):
        future = executor.submit(dense_job, shipped, tuple(grid[index]), policy)
        if on_done is not None:
            future.add_done_callback(lambda f: None if f.exception() else on_done(f.result()))
        submitted[index] = future
    return [submitted[i] for i in range(len(sizes))]


@dataclass(frozen=True)
class DenseSettings:
    """The grid (hidden-layer sizes per network) and budget; None: the comparison's policy."""

    grid: tuple[tuple[int, ...], ...] | None = None
    epochs: int | None = None

    def __post_init__(self) -> None:
        if self.grid is not None and (not self.grid or any(not h or min(h) < 1 for h in self.grid)):
            raise InputError(f"dense.grid must be a non-empty list of hidden-layer size lists, got {self.grid!r}")
        if self.epochs is not None and self.epochs < 0:
            raise InputError(f"dense.epochs must be >= 0, got {self.epochs}")


@register
class DenseSweep(Method):
    """Train every network of the dense grid; its front is the dense baseline."""

    name = "dense"
    summary = "a sweep of dense layered MLPs (the paper's grid), same trainer and budget"
    Settings = DenseSettings

    def effective_policy(self) -> "TaskSettings":
        policy = self.policy
        if self.settings.grid is not None:
            policy = replace(policy, dense_grid=self.settings.grid)
        if self.settings.epochs is not None:
            policy = replace(policy, dense_epochs=self.settings.epochs)
        return policy

    def run(self, task: Task, ctx: "RunContext") -> MethodResult:
        """Train the grid (one job per network); every finished network is checkpointed, so a
        resumed run trains only the networks that had not finished."""
        policy = self.effective_policy()
        saved = ctx.restore() or {}
        done: dict[str, dict[str, Any]] = dict(saved.get("done", {}))
        grid = [tuple(h) for h in policy.dense_grid]
        missing = [h for h in grid if _key(h) not in done]
        ctx.reporter.stage_started("dense MLP sweep", len(grid))
        if len(missing) < len(grid):
            ctx.reporter.stage_advanced("dense MLP sweep", len(grid) - len(missing), "trained before the interruption")
        futures = submit_dense_jobs(ctx.executor, task, replace(policy, dense_grid=tuple(missing)))
        for future in as_completed(futures):
            item = future.result()
            done[_key(item["hidden"])] = item
            ctx.checkpoint({"done": done})
            ctx.reporter.stage_advanced("dense MLP sweep", 1, f"dense {item['hidden']}")
        candidates = []
        for hidden in grid:
            item = dict(done[_key(hidden)])
            net = net_from_state(item.pop("net")).to(task.x_train.device)
            found = candidate(net, task, training={"hidden": item["hidden"], "epochs": policy.dense_epochs})
            candidates.append(found)
            ctx.emit("dense", **found.summary())
        everything = sorted(candidates, key=lambda c: c.params)
        front = finite_front(everything)
        if not front:
            raise InputError("no dense network has a finite validation loss")
        return MethodResult(everything, front[-1].net, "grid done", 0.0, extra={"grid": [list(h) for h in grid]})


def _key(hidden) -> str:
    return "x".join(str(int(h)) for h in hidden)
