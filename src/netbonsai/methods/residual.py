"""Paper 004 as a method: prune whole residual blocks, or grow zero-initialised ones.

The network is a :class:`~netbonsai.residual.ResidualMLP` of the policy's activation (``width``
by default the largest whose ``blocks``-block network stays within ``max_params``, at least 4)
trained on the standardised task (inputs, and regression targets, scaled as the dense sweep's
networks are) for the policy's dense budget with its trainer. ``mode=prune`` then removes the
least efficient block (``measure`` per parameter) and retrains for the retraining budget while
the validation loss stays within ``tolerance`` of the start's; ``mode=grow`` starts from one
block and adds zero-initialised blocks up to ``blocks``, training each; ``mode=cycle`` starts
from one block and runs ``cycles`` grow/prune cycles: grow (round robin, zero-initialised,
training each new block) while AutoGrow's convergent policy sees the validation accuracy (minus
the loss for regression) improve by ``grow_threshold`` and the network stays within ``blocks``
and ``max_params`` (and above ``target_val_loss`` when one is set), then prune while the
validation loss stays within ``tolerance`` of the loss the growth reached. Every added or removed block is a ``block`` event in the history, and
``blocks.png`` shows the blocks over the steps.

The front: the start and the network after every step (a pruning step beyond the tolerance
included: it is a network the path visited, though not the one kept), each converted to a
DagNet (:func:`~netbonsai.residual.loop.residual_mlp_to_dag`: an identity node per unit of every
sum, the skip a weight-1 synapse per unit, the standardisation in its fixed maps), polished like
every reported network and reduced to its Pareto front. Its ``params`` are the DagNet's:
``width - 1`` more per block than the module's (``module_params``), skips counted, gates folded.
Checkpointed after the first training and after every step (module states and block counts),
so ``--resume`` continues where a run stopped.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Callable

import torch

from ..data.task import Split, Task
from ..errors import InputError
from ..grow.search import FrontPoint
from ..nets.dag import DagNet
from ..nets.normalization import standardization
from ..residual.blocks import ResidualMLP
from ..residual.edits import count_params
from ..residual.efficiency import MEASURES
from ..residual.growth import ConvergentPolicy
from ..residual.loop import grow_blocks, prune_blocks, residual_mlp_to_dag, validation
from ..train import Budget, fit
from .base import Method, MethodResult, candidate, finite_front, measure
from .front import polish
from .registry import register

if TYPE_CHECKING:
    from ..runs import RunContext

MODES = ("prune", "grow", "cycle")
MIN_WIDTH = 4


def _integer(name: str, value: Any, least: int, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise InputError(f"residual.{name} must be an integer >= {least}{' (or null)' if optional else ''}, "
                         f"got {value!r}")


@dataclass(frozen=True)
class ResidualSettings:
    """The network, the measure and the stopping rule (None: taken from the comparison's policy)."""

    width: int | None = None  # None: the largest width within max_params (at least 4)
    blocks: int = 6  # blocks of the start (prune) or of the end (grow)
    measure: str = "norm_ratio"  # one of residual.efficiency.MEASURES, divided by the block's parameters
    tolerance: float = 0.01  # prune while val loss <= start * (1 + tolerance)
    retrain_epochs: int | None = None  # after each step; None: the policy's retraining budget
    mode: str = "prune"  # or "grow": from one block to ``blocks``; or "cycle": grow/prune cycles
    cycles: int = 2  # mode "cycle": grow/prune cycles
    grow_threshold: float = 0.001  # mode "cycle": least gain of the moving validation figure to grow on
    target_val_loss: float | None = None  # mode "cycle": no growth once the validation loss is this low

    def __post_init__(self) -> None:
        _integer("width", self.width, 1, optional=True)
        _integer("blocks", self.blocks, 1)
        if self.measure not in MEASURES:
            raise InputError(f"residual.measure must be one of {', '.join(MEASURES)}, got {self.measure!r}")
        ok = not isinstance(self.tolerance, bool) and isinstance(self.tolerance, (int, float))
        if not ok or not 0 <= self.tolerance < math.inf:
            raise InputError(f"residual.tolerance must be a finite number >= 0, got {self.tolerance!r}")
        _integer("retrain_epochs", self.retrain_epochs, 0, optional=True)
        if self.mode not in MODES:
            raise InputError(f"residual.mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        _integer("cycles", self.cycles, 1)
        ok = not isinstance(self.grow_threshold, bool) and isinstance(self.grow_threshold, (int, float))
        if not ok or not math.isfinite(self.grow_threshold):
            raise InputError(f"residual.grow_threshold must be a finite number, got {self.grow_threshold!r}")
        if self.target_val_loss is not None:
            ok = not isinstance(self.target_val_loss, bool) and isinstance(self.target_val_loss, (int, float))
            if not ok or not 0 <= self.target_val_loss < math.inf:
                raise InputError(f"residual.target_val_loss must be a finite number >= 0 (or null), "
                                 f"got {self.target_val_loss!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def mlp_params(n_in: int, width: int, blocks: int, n_out: int) -> int:
    """Parameters of ``ResidualMLP(n_in, width, blocks, n_out)`` (gates included)."""
    return n_in * width + width + blocks * (2 * width * width + 2 * width + 1) + width * n_out + n_out


def default_width(n_in: int, n_out: int, blocks: int, max_params: int) -> int:
    """The largest width whose ``blocks``-block residual MLP has at most ``max_params``
    parameters, and at least :data:`MIN_WIDTH`."""
    width = MIN_WIDTH
    while mlp_params(n_in, width + 1, blocks, n_out) <= max_params:
        width += 1
    return width


def standardized(task: Task) -> tuple[Task, tuple[torch.Tensor, ...]]:
    """The task with standardised inputs (and regression targets), as ``standardize_for`` scales
    a dense network, and the maps ``(in_shift, in_scale, out_shift, out_scale)`` that undo it."""
    in_shift, in_scale, out_shift, out_scale = standardization(task.x_train, task.y_train, task.n_out)

    def scaled(split: Split) -> Split:
        target = split.y if task.kind == "classification" else (split.y - out_shift) / out_scale
        return Split((split.x - in_shift) / in_scale, target)

    inner = Task(task.name, scaled(task.train), scaled(task.val), None, task.loss, 1.0, task.metrics, dict(task.meta))
    return inner, (in_shift, in_scale, out_shift, out_scale)


@register
class ResidualBlocks(Method):
    """Whole residual blocks as the unit of pruning and growth (paper 004)."""

    name = "residual"
    summary = "whole residual blocks: prune the least efficient, grow zero-initialised ones (paper 004)"
    sequences = False
    Settings = ResidualSettings

    def run(self, task: Task, ctx: "RunContext") -> MethodResult:
        """Train, then prune, grow, or cycle one block per step; checkpointed after every step."""
        policy, settings = self.policy, self.settings
        grow = policy.grow
        width = settings.width or default_width(task.n_in, task.n_out, settings.blocks, grow.max_params)
        retrain = grow.grow_epochs if settings.retrain_epochs is None else settings.retrain_epochs
        first = settings.blocks if settings.mode == "prune" else 1
        inner, maps = standardized(task)

        def build(blocks: int, state: dict[str, torch.Tensor] | None = None) -> ResidualMLP:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(grow.seed)
                model = ResidualMLP(task.n_in, width, blocks, task.n_out, grow.activation)
            if state is not None:
                model.load_state_dict(state)
            return model.to(task.x_train.device)

        def as_dag(model: ResidualMLP) -> DagNet:
            return residual_mlp_to_dag(model).set_normalization(*(m.cpu() for m in maps)).to(task.x_train.device)

        def cpu_state(model: ResidualMLP) -> dict[str, torch.Tensor]:
            return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}

        state = ctx.restore()
        if state is None:
            start = build(first)
            fit(start, inner.train, Budget(epochs=policy.dense_epochs), grow.trainer, seed=grow.seed)
            state = {"start": {"blocks": first, "state": cpu_state(start), "val_loss": validation(start, inner)[0]},
                     "path": [], "stop": None, "cycle": 0, "phase": "grow"}
            ctx.checkpoint(state)
        path: list[dict[str, Any]] = state["path"]
        total = {"prune": settings.blocks, "grow": settings.blocks - 1}.get(settings.mode, 2 * settings.blocks)
        ctx.reporter.stage_started("residual blocks", total)

        def record(step: dict[str, Any], action: str) -> None:
            net = step.pop("model")
            blocks = len(net.stages[0])
            entry = {"step": len(path) + 1, "action": action, "blocks": blocks, "module_params": count_params(net),
                     "accepted": bool(step.get("accepted", True)), "cycle": state.get("cycle", 0)}
            if action == "remove":
                entry.update(block=step["block"], efficiency=step["efficiency"])
            else:
                entry["val"] = step["val"]  # what the convergent policy sees
            path.append({"blocks": blocks, "state": cpu_state(net), "entry": entry})
            if not entry["accepted"] and settings.mode == "prune":
                state["stop"] = "tolerance"
            ctx.checkpoint(state)
            dag = as_dag(net)
            figures = measure(dag, task)
            ctx.emit("block", method=self.name, **entry, params=dag.num_params(),
                     **{k: v for k, v in figures.items() if k != "train_loss"})
            ctx.reporter.stage_advanced("residual blocks", 1, f"{action} block: {blocks} blocks, "
                                        f"val loss {figures['val_loss']:.4g}")

        def current() -> tuple[ResidualMLP, dict[str, Any]]:
            """The last accepted network of the path (the start when none)."""
            last = next((item for item in reversed(path) if item["entry"]["accepted"]), state["start"])
            return build(last["blocks"], last["state"]), last

        def grow_one(net: ResidualMLP) -> bool:
            """One zero-initialised block, trained; False when none fits ``max_params``."""
            taken = len(path)
            grow_blocks(net, inner, grow.trainer, steps=1, epochs_per_step=retrain, seed=grow.seed + len(path),
                        max_params=grow.max_params if settings.mode == "cycle" else None,
                        on_step=lambda step: record(step, "add"))
            return len(path) > taken

        def prune(net: ResidualMLP, reference: float) -> str:
            keep_one = len(net.stages[0]) - 1 if settings.mode == "cycle" else None  # cycles grow from >= 1 block
            return prune_blocks(net, inner, grow.trainer, measure=settings.measure, tolerance=settings.tolerance,
                                retrain_epochs=retrain, seed=grow.seed + len(path), reference_loss=reference,
                                max_removals=keep_one, on_step=lambda step: record(step, "remove")).stop_reason

        if state["stop"] is None:
            if settings.mode == "prune":
                state["stop"] = prune(current()[0], state["start"]["val_loss"])
            elif settings.mode == "grow":  # one step per call: a resumed growth draws and trains as one that ran through
                net, last = current()
                while last["blocks"] < settings.blocks and grow_one(net):
                    net, last = current()
                state["stop"] = f"grew to {last['blocks']} blocks"
            else:
                self._cycle(state, inner, current, grow_one, prune, lambda net: measure(as_dag(net), task)["val_loss"],
                            ctx)
            ctx.checkpoint(state)
        self._plot(state, ctx)
        return self._front(task, state, build, as_dag, width, retrain, ctx)

    def _cycle(self, state: dict[str, Any], inner: Task, current: Callable, grow_one: Callable, prune: Callable,
               reported_val_loss: Callable, ctx: "RunContext") -> None:
        """Grow/prune cycles from the checkpointed ``cycle`` and ``phase``; the policy replays the
        validation figures of this cycle's added blocks. Growth also stops at ``target_val_loss``
        (the task's reported units)."""
        settings = self.settings
        while state["cycle"] < settings.cycles:
            net, last = current()
            if state["phase"] == "grow":
                policy = ConvergentPolicy(settings.grow_threshold, window=2)
                for item in state["path"]:
                    if item["entry"]["action"] == "add" and item["entry"]["cycle"] == state["cycle"]:
                        policy.update(item["entry"]["val"])
                target = settings.target_val_loss
                reached = target is not None and reported_val_loss(net) <= target
                if not reached and not policy.stopped and last["blocks"] < settings.blocks and grow_one(net):
                    continue
                state.update(phase="prune", reference=validation(net, inner)[0])
                ctx.checkpoint(state)
            else:
                prune(net, state["reference"])
                state.update(cycle=state["cycle"] + 1, phase="grow")
                ctx.checkpoint(state)
        state["stop"] = f"{settings.cycles} cycles: {current()[1]['blocks']} blocks"

    def _plot(self, state: dict[str, Any], ctx: "RunContext") -> None:
        """blocks.png: blocks over the steps, each step marked by its action."""
        from ..analysis._figures import new_figure, save_png

        blocks = [state["start"]["blocks"]] + [item["blocks"] for item in state["path"]]
        actions = ["start"] + [item["entry"]["action"] for item in state["path"]]
        fig = new_figure(6.0, 3.6)
        ax = fig.subplots()
        ax.step(range(len(blocks)), blocks, where="post", color="C0")
        for action, marker, color in (("add", "^", "C2"), ("remove", "v", "C3")):
            steps = [i for i, a in enumerate(actions) if a == action]
            ax.plot(steps, [blocks[i] for i in steps], marker, color=color, linestyle="none", label=action)
        ax.set_xlabel("step")
        ax.set_ylabel("residual blocks")
        ax.set_title(f"residual ({self.settings.mode}): {state['stop']}", fontsize=9)
        ax.legend(fontsize=8)
        save_png(fig, ctx.file("blocks.png"))

    def _front(self, task: Task, state: dict[str, Any], build: Callable[..., ResidualMLP],
               as_dag: Callable[[ResidualMLP], DagNet], width: int, retrain: int, ctx: "RunContext") -> MethodResult:
        """Every network of the path as a polished DagNet candidate; the front and the kept one."""
        start = state["start"]
        entries = [{"step": 0, "action": "start", "blocks": start["blocks"], "accepted": True}]
        nets = [build(start["blocks"], start["state"])]
        for item in state["path"]:
            entries.append(item["entry"])
            nets.append(build(item["blocks"], item["state"]))
        module_params = [count_params(n) for n in nets]
        dags = [as_dag(n).cpu() for n in nets]
        points = [FrontPoint(d.num_params(), math.nan, math.nan, i, d) for i, d in enumerate(dags)]
        points = polish(points, task, self.policy, ctx.executor)
        found = []
        for point in points:
            entry = entries[point.event]
            training = {k: entry[k] for k in ("step", "action", "blocks", "accepted")}
            found.append(candidate(point.net.to(task.x_train.device), task,
                                   training={**training, "module_params": module_params[point.event]}))
        kept = max(i for i, e in enumerate(entries) if e["accepted"])
        front = finite_front(found) or found
        extra = {"mode": self.settings.mode, "width": width, "measure": self.settings.measure,
                 "retrain_epochs": retrain, "start_blocks": start["blocks"], "blocks": entries[kept]["blocks"],
                 "module_params": module_params[kept], "params": found[kept].params, "steps": len(state["path"])}
        return MethodResult(front, found[kept].net, state["stop"], 0.0, extra=extra)
