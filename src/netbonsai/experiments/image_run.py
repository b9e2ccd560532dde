"""The shared pieces of an image run (grow, baseline, compare): its config, run directory, search, saved networks and plots."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..data.specs import parse_task_spec
from ..data.task import Task
from ..data.tasks import load_task
from ..grow.search import FrontPoint, GrowResult, SearchState, grow
from ..nets.dag import DagNet
from ..nets.io import load, save
from ..train.fit import MINIBATCH
from ..runs import DEVICE_KEY, MODEL, Reporter, RunContext, environment
from ..analysis.methods_text import LOSS_UNITS as _UNITS
from ..analysis.methods_text import loss_units
from .presets import TaskSettings, l2_record
from .run_options import RunOptions, search_only_keys

LOSS_UNITS = {task: _UNITS[task] for task in ("brightness", "approx")}  # the image tasks


@dataclass
class RunSummary:
    """What a command produced: paths, key figures, and the text it prints."""

    out: Path
    text: str
    figures: dict[str, Any]


def _config(options: RunOptions, settings: TaskSettings, data: Task) -> dict[str, Any]:
    recorded = settings.to_dict()
    if options.command != "compare":
        del recorded["dense"]["magnitude"]  # only compare runs the magnitude-pruning baseline
    return {
        "command": options.command,
        "netbonsai_version": __version__,
        "seed": settings.grow.seed,
        "image": data.image,
        **recorded,
        "split": {k: v for k, v in data.describe().items() if k not in ("task", "image")},
        "loss_units": loss_units(data),
        "executor": options.executor,
        DEVICE_KEY: settings.device,
        **l2_record(settings),
        **({"seeds": seed_list(settings.grow.seed, options.seeds)} if options.seeds > 1 else {}),
    }


def seed_list(first: int, count: int) -> list[int]:
    return list(range(first, first + count))


def image_environment() -> dict[str, Any]:
    """Where the figures were measured (:func:`netbonsai.runs.environment`; the image runs record
    the netbonsai version in config.json instead)."""
    return {key: value for key, value in environment().items() if key != "netbonsai"}


def prepare(options: RunOptions, out: str | Path, resume: bool,
            reporter: Reporter | None = None) -> tuple[TaskSettings, Task, RunContext]:
    """Validate settings and data, then open the run (nothing is created on bad input)."""
    settings = options.settings()
    d = settings.data
    if options.task_kind() in ("brightness", "approx"):
        spec = parse_task_spec(options.task, options.image)
        data = load_task(
            spec.kind, spec.argument, val_fraction=d.val_fraction, seed=d.split_seed,
            max_train=d.max_train, max_val=d.max_val,
        )
    else:  # a table, sklearn:NAME or idx:DIR: the same builders as compare --methods
        from .compare_methods import build_task, fitted_to_task

        data = build_task(options, settings)
        settings = fitted_to_task(settings, data)
    # baseline records the search settings too (the preset's), but reads none of them: a run
    # started before it refused them (with --max-params, say) still resumes
    unused = {f"grow.{key}" for key in search_only_keys()} if options.command == "baseline" else set()
    run = RunContext(out, _config(options, settings, data), kind=options.command, resume=resume, unused=unused,
                     executor=options.executor, device=settings.device, reporter=reporter)
    return settings, data.to(settings.device), run


def workers(kind: str) -> int:
    """Worker processes for independent trainings: one per core (at least one).

    The search runs in the main process meanwhile; with one torch thread per process a briefly
    oversubscribed core only time-slices, and the workers keep every core busy once it ends.
    """
    return max(1, os.cpu_count() or 1)


def budget_unit(settings: TaskSettings) -> str:
    """What a training budget counts: minibatch (Adam, SGD) epochs, or full-batch (L-BFGS, LM) iterations."""
    return "epochs" if settings.grow.trainer.method in MINIBATCH else "iterations"


# ---------------------------------------------------------------------- the search and its networks
def run_search(
    data: Task, settings: TaskSettings, run: RunContext, reporter: Reporter
) -> GrowResult:
    """The grow-and-prune search with events in history.jsonl and a checkpoint after each."""
    state = None
    saved = run.restore()
    if saved is not None:
        state = SearchState.from_dict(saved["search"])
        run.rewind_history(state.events)  # drop any event written after the checkpoint
        reporter.message(f"resuming after event {len(state.events) - 1} ({state.phase})")
    if state is None:
        run.rewind_history([])

    def checkpoint(current: SearchState) -> None:
        run.checkpoint({"search": current.to_dict()})

    return grow(data, settings.grow, state=state, on_event=run.emit_event, checkpoint=checkpoint)


def _model_info(data: Task, settings: TaskSettings, extra: dict[str, Any]) -> dict[str, Any]:
    """What a saved model carries: the task's preprocessing (``netbonsai predict`` rebuilds the
    samples of a new image from it), the loss scale and units, and the training config."""
    info = {
        "task": data.task,
        "image": data.image,
        "preprocessing": data.preprocessing,
        "loss_units": loss_units(data),
        "loss_scale": data.loss_scale,
        "config": settings.to_dict(),
    }
    return {**info, **extra}


def front_file(params: int) -> str:
    """Where a run directory keeps its front network with ``params`` parameters."""
    return f"front/params_{params:05d}"


def save_front(front: list[FrontPoint], run: RunContext, data: Task, settings: TaskSettings) -> list[dict[str, Any]]:
    """Save every front network under front/ and return the front as plain records."""
    (run.path / "front").mkdir(exist_ok=True)
    records = []
    for point in front:
        save(point.net, run.path / front_file(point.params), info=_model_info(data, settings, point.summary()))
        records.append({**point.summary(), "file": front_file(point.params)})
    return records


def save_best(front: list[FrontPoint], run: RunContext, data: Task, settings: TaskSettings) -> FrontPoint:
    """Save the (polished) front network with the lowest validation loss as the run's model."""
    best = min(front, key=lambda p: p.val_loss)
    save(best.net, run.file(MODEL), info=_model_info(data, settings, best.summary()))
    return best


def plots(
    run: RunContext, data: Task, result: GrowResult, dense: list[dict[str, Any]] | None,
    front: list[dict[str, Any]], best_net: DagNet, pruned: dict[str, Any] | None = None,
) -> None:
    """pareto.png (the fronts), history.png (the search) and network.png (``best_net``)."""
    from ..analysis.draw import draw_network
    from ..analysis.plots import history_plot, pareto_plot

    series: dict[str, Any] = {}
    if dense is not None:
        series["dense MLP"] = dense
    if pruned is not None:
        series["magnitude pruning"] = pruned["front"]
    series["netbonsai, search front (before polish)"] = [p.summary() for p in result.front]
    series["netbonsai, polished front"] = front
    pareto_plot(series, run.file("pareto.png"), title=f"{data.task} on {data.image}",
                loss_label=f"validation loss ({loss_units(data)})",
                focus="dense MLP" if dense is not None else None)
    history_plot(result.events, run.file("history.png"), x="seconds", title="grow-and-prune history",
                 loss_label=f"loss ({loss_units(data)})")
    draw_network(best_net, run.file("network.png"))


def load_model(path: str | Path) -> DagNet:
    """Load a model file (or a run directory's model)."""
    return load(path)
