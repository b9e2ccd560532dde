"""Paper 000's grow-and-prune search as a method (the search itself: :mod:`netbonsai.grow`)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from ..data.task import Task
from ..grow.config import GrowConfig, for_task
from ..grow.search import SearchState, grow
from .base import Candidate, Method, MethodResult, measure
from .front import final_front
from .registry import register

if TYPE_CHECKING:
    from ..experiments.presets import TaskSettings
    from ..runs import RunContext


@register
class GrowMethod(Method):
    """Grow-and-prune (Shemyakova & Khashin): prune synapses while the loss stays within eps,
    add a neuron, repeat; the reported front is polished like every other method's."""

    name = "grow"
    summary = "paper 000's grow-and-prune search over neuron-level DAGs"
    Settings = GrowConfig
    tasks = ("regression", "classification")

    @classmethod
    def for_policy(cls, policy: "TaskSettings") -> "GrowMethod":
        return cls(policy.grow, policy)

    def run(self, task: Task, ctx: "RunContext") -> MethodResult:
        settings = for_task(self.settings, task)  # a classification task trains with cross-entropy
        policy = replace(self.policy, grow=settings)
        saved = ctx.restore()
        state = SearchState.from_dict(saved["search"]) if saved is not None else None
        if state is not None:
            ctx.rewind_history(state.events)  # drop any event written after the checkpoint
            ctx.reporter.message(f"grow: resuming after event {len(state.events) - 1} ({state.phase})")
        else:
            ctx.rewind_history([])
        result = grow(task, settings, state=state, on_event=ctx.emit_event,
                      checkpoint=lambda current: ctx.checkpoint({"search": current.to_dict()}))
        ctx.reporter.message("grow: polishing the front networks")
        polished = final_front(result, task, policy, ctx.executor)
        epochs = {e["index"]: e.get("epochs") for e in result.events}
        front = []
        for point in polished:
            metrics = {k: v for k, v in measure(point.net, task).items() if k not in ("train_loss", "val_loss")}
            training = {"event": point.event}
            if epochs.get(point.event) is not None:
                training["epochs"] = epochs[point.event]
            front.append(Candidate(point.net, point.params, point.train_loss, point.val_loss, metrics, training))
        return MethodResult(front, result.net, result.stop_reason, result.seconds,
                            extra={"events": len(result.events)})
