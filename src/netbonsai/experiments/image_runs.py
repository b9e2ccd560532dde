"""The image-task runs behind ``netbonsai grow|baseline|compare``: run directories, reports, plots.

Each function validates its inputs before it creates anything, writes every output atomically,
checkpoints after every search event, and resumes from the last checkpoint when asked.
"""

from __future__ import annotations

import os
import platform
import time
import warnings
from concurrent.futures import Future
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .. import __version__
from ..analysis.compare import param_ratios, ratio_summary, seed_bootstrap
from ..analysis.pareto import pareto_front
from ..analysis.report import budget_line, comparison_table, front_table, markdown_table
from ..data.task import Task
from ..data.specs import parse_task_spec
from ..data.tasks import load_task
from ..errors import InputError
from ..executor import make_executor
from ..grow.config import GrowConfig
from ..grow.search import FrontPoint, GrowResult, SearchState, grow
from ..nets.dag import DagNet
from ..nets.io import load, net_from_state, net_to_state, save
from ..runs import CONFIG, DEVICE_KEY, MODEL, REPORT, RunDir, read_json
from ..runtime import resolve_device
from ..train import Budget, evaluate
from ..train.sweep import train_dense
from ..methods.front import final_front, polish
from ..train.polish import shipped_task
from ..methods.magnitude import magnitude_job, mlp_params
from .presets import TaskSettings, task_settings

LOSS_UNITS = {"brightness": "MSE in 8-bit units (MSE * 255^2)", "approx": "MSE of brightness in [0, 1]"}


@dataclass
class RunOptions:
    """Command-line level choices shared by grow, baseline and compare."""

    task: str
    image: str | None = None
    preset: str = "quick"
    seed: int | None = None
    max_params: int | None = None
    max_seconds: float | None = None
    executor: str = "process"
    command: str = "compare"
    seeds: int = 1  # compare: independent comparisons with seeds seed, seed + 1, ... (pooled)
    device: str = "auto"  # torch device: auto (a GPU when present), cpu, cuda, cuda:N
    overrides: dict[str, Any] = field(default_factory=dict)  # GrowConfig fields, "trainer.x" for the trainer
    method_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # compare --methods: NAME -> {key: value}

    def settings(self) -> TaskSettings:
        """The preset's settings with the command-line overrides applied (validated)."""
        spec = parse_task_spec(self.task, self.image)
        if not spec.is_image and self.command in ("grow", "baseline"):
            raise InputError(f"{self.command} runs the image tasks (brightness, approx); compare {spec} --methods "
                             "magnitude,loss-aware runs pruning methods on it")
        settings = task_settings(spec.kind, self.preset)
        config = settings.grow.to_dict()
        overrides, self.method_overrides, deprecated = split_overrides(self.overrides)
        if self.command == "baseline":
            self._check_baseline_options(overrides)
        for key, value in overrides.items():
            if key.startswith("magnitude.") and self.command != "compare":
                raise InputError(f"{key} sets the magnitude-pruning baseline, which only compare runs")
            if key == "dense.epochs" and value == "match" and self.command != "compare":
                raise InputError("dense.epochs=match trains the dense networks as long as the search's; only compare runs both")
            if key in BASELINE_OVERRIDES:
                settings = BASELINE_OVERRIDES[key](settings, value)
            elif key.split(".", 1)[0] in ("dense", "magnitude", "polish"):
                raise InputError(f"unknown baseline setting {key!r}; choose one of {', '.join(BASELINE_OVERRIDES)}")
            elif key.startswith("trainer."):
                config["trainer"] = {**config["trainer"], key.split(".", 1)[1]: value}
            else:
                config[key] = value
        try:
            grow_config = GrowConfig.from_dict(config)
        except TypeError as exc:
            raise InputError(f"invalid --set value: {exc}") from None
        grow_config = grow_config.with_overrides(seed=self.seed, max_params=self.max_params, max_seconds=self.max_seconds)
        if "start_epochs" in overrides and "dense.epochs" not in overrides:
            # the dense networks keep the starting network's budget (the same budget policy)
            settings = replace(settings, dense_epochs=grow_config.start_epochs)
        settings = replace(settings, grow=grow_config, device=resolve_device(self.device))
        for key in deprecated:  # once the settings are valid: a bad value is the one line printed
            warnings.warn(f"--set {key} is deprecated; write --set grow.{key} (the grow method's setting)",
                          FutureWarning, stacklevel=2)
        return settings

    def _check_baseline_options(self, overrides: dict[str, Any]) -> None:
        """baseline runs no search: refuse the options that would only change one (they would be
        silently ignored otherwise)."""
        for flag, value in (("--max-params", self.max_params), ("--max-seconds", self.max_seconds)):
            if value is not None:
                raise InputError(f"{flag} limits the search, which baseline does not run (use compare or grow)")
        search_keys = search_only_keys()
        for key in overrides:
            if key in search_keys:  # an unknown key is refused as unknown below, as for every command
                raise InputError(f"--set {key} changes the search, which baseline does not run; baseline takes "
                                 f"dense.grid, dense.epochs, polish.epochs, trainer.* and "
                                 f"{', '.join(sorted(BASELINE_GROW_KEYS))}")
        if "start_epochs" in overrides and "dense.epochs" in overrides:
            raise InputError("--set start_epochs sets the dense networks' budget only without dense.epochs: give one of them")


SHARED_PREFIXES = ("trainer", "dense", "magnitude", "polish")


def split_overrides(overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]], list[str]]:
    """``--set`` keys as (the search's and the shared settings', the other methods' by name, the
    flat research keys used).

    ``grow.KEY`` is the grow-and-prune search's ``KEY`` (a GrowConfig field); ``trainer.*``,
    ``dense.*``, ``magnitude.*`` and ``polish.*`` are shared settings; ``NAME.KEY`` of another
    registered method (``loss-aware.eps``) goes to that method. A flat research key of the
    search (``n_attempts``) still works, with a one-line deprecation notice.
    """
    from ..methods.registry import method_names

    search, methods, deprecated = {}, {}, []
    research = search_only_keys()
    names = set(method_names()) - {"grow", "magnitude"}
    for key, value in overrides.items():
        prefix, dot, rest = key.partition(".")
        if dot and prefix == "grow":
            search[rest] = value
        elif dot and prefix in names and prefix not in SHARED_PREFIXES:
            methods.setdefault(prefix, {})[rest] = value
        else:
            if not dot and key in research:
                deprecated.append(key)
            search[key] = value
    return search, methods, deprecated


def _dense_grid(settings: TaskSettings, value: Any) -> TaskSettings:
    """``--set dense.grid=[[10],[5,5],...]``: the baseline's hidden-layer sizes, one list per network."""
    if (
        not isinstance(value, list)
        or not value
        or not all(
            isinstance(h, list) and h and all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in h)
            for h in value
        )
    ):
        raise InputError(f"dense.grid must be a non-empty list of hidden-layer size lists, e.g. [[10], [5, 5]]; got {value!r}")
    return replace(settings, dense_grid=tuple(tuple(h) for h in value))


def _epochs_setting(name: str, field_name: str, allowed: str = "") -> Callable[[TaskSettings, Any], TaskSettings]:
    """``--set polish.epochs=N`` (and the number of ``dense.epochs``): a training budget >= 0
    (0, like start_epochs=0: untrained), validated; ``allowed`` names other accepted values."""

    def apply(settings: TaskSettings, value: Any) -> TaskSettings:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InputError(f"{name} must be an integer >= 0{allowed}, got {value!r}")
        return replace(settings, **{field_name: value})

    return apply


_dense_budget = _epochs_setting("dense.epochs", "dense_epochs", " or match")


def _dense_epochs(settings: TaskSettings, value: Any) -> TaskSettings:
    """``--set dense.epochs=N``, or ``match``: as long as the search's most trained front network."""
    if value == "match":
        return replace(settings, dense_match=True)
    return replace(_dense_budget(settings, value), dense_match=False)


def _magnitude_setting(name: str) -> Callable[[TaskSettings, Any], TaskSettings]:
    """``--set magnitude.NAME=VALUE``: a field of the magnitude-pruning baseline (validated)."""

    def apply(settings: TaskSettings, value: Any) -> TaskSettings:
        return replace(settings, magnitude=replace(settings.magnitude, **{name: value}))

    return apply


# search settings that the dense sweep also reads: its networks' activation and seed, and the
# start network's budget (the dense budget unless dense.epochs is given)
BASELINE_GROW_KEYS = frozenset({"activation", "seed", "start_epochs"})


def search_only_keys() -> set[str]:
    """GrowConfig fields that only the search reads (baseline refuses them and ignores their
    recorded values on resume)."""
    return {f.name for f in fields(GrowConfig)} - BASELINE_GROW_KEYS - {"trainer"}


# --set keys that change the baselines or the final polish rather than the search. Without
# dense.epochs the dense networks get the starting network's budget (start_epochs), overridden or not.
BASELINE_OVERRIDES: dict[str, Callable[[TaskSettings, Any], TaskSettings]] = {
    "dense.grid": _dense_grid,
    "dense.epochs": _dense_epochs,
    "polish.epochs": _epochs_setting("polish.epochs", "polish_epochs"),
    **{f"magnitude.{name}": _magnitude_setting(name) for name in ("enabled", "method", "schedule", "sparsity")},
}


class Reporter:
    """Progress callbacks; the CLI plugs a rich display in, library use stays silent."""

    def dense_started(self, total: int) -> None: ...
    def dense_done(self, summary: dict[str, Any]) -> None: ...
    def event(self, event: dict[str, Any]) -> None: ...
    def message(self, text: str) -> None: ...


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
        "loss_units": LOSS_UNITS[settings.task],
        "executor": options.executor,
        DEVICE_KEY: settings.device,
        **({"seeds": _seed_list(settings.grow.seed, options.seeds)} if options.seeds > 1 else {}),
    }


def _seed_list(first: int, count: int) -> list[int]:
    return list(range(first, first + count))


def _cpu_model() -> str | None:
    """The CPU's model name from /proc/cpuinfo (Linux), else platform's guess, else None."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _environment() -> dict[str, Any]:
    """Where the figures were measured (recorded next to them, not in config.json).

    The CPU model and the vector instruction set torch dispatches to are part of it: they set
    the float rounding, and a search that accepts or rejects steps on loss differences near eps
    can take another path on another CPU from the same seed.
    """
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def prepare(options: RunOptions, out: str | Path, resume: bool) -> tuple[TaskSettings, Task, RunDir]:
    """Validate settings and data, then open the run directory (nothing is created on bad input)."""
    settings = options.settings()
    d = settings.data
    spec = parse_task_spec(options.task, options.image)
    data = load_task(
        spec.kind, spec.argument, val_fraction=d.val_fraction, seed=d.split_seed,
        max_train=d.max_train, max_val=d.max_val,
    )
    run = RunDir(out, resume=resume)
    # baseline records the search settings too (the preset's), but reads none of them: a run
    # started before it refused them (with --max-params, say) still resumes
    unused = {f"grow.{key}" for key in search_only_keys()} if options.command == "baseline" else set()
    run.write_config(_config(options, settings, data), unused=unused)
    return settings, data.to(settings.device), run


# ---------------------------------------------------------------------- dense baseline
def _dense_job(data: Task, hidden: tuple[int, ...], settings: TaskSettings) -> dict[str, Any]:
    """One dense training, in whatever process the executor picks (returns plain data)."""
    data = data.to(settings.device)
    result = train_dense(
        data, hidden, settings.grow.activation, settings.dense_epochs, settings.grow.trainer, settings.grow.seed
    )
    summary = result.summary()
    net = result.net
    if settings.polish_epochs > 0:
        (point,) = polish([FrontPoint(summary["params"], summary["train_loss"], summary["val_loss"], -1, net)], data, settings)
        net = point.net
        summary.update(train_loss=point.train_loss, val_loss=point.val_loss)
    return {**summary, "net": net_to_state(net)}


_shipped = shipped_task


def submit_dense(executor, data: Task, settings: TaskSettings, reporter: Reporter) -> list[Future]:
    """Submit one job per architecture of the grid; progress is reported as each finishes."""
    reporter.dense_started(len(settings.dense_grid))
    shipped = _shipped(data)
    # largest first: the big networks take longest, so the pool ends with small jobs filling the
    # gaps instead of one big job running alone at the end; futures stay in grid order
    sizes = [mlp_params([data.n_in, *hidden, data.n_out]) for hidden in settings.dense_grid]
    submitted = {}
    for index in sorted(range(len(sizes)), key=lambda i: -sizes[i]):
        future = executor.submit(_dense_job, shipped, tuple(settings.dense_grid[index]), settings)
        future.add_done_callback(lambda f: None if f.exception() else reporter.dense_done(f.result()))
        submitted[index] = future
    return [submitted[i] for i in range(len(sizes))]


def collect_dense(
    futures: list[Future], run: RunDir, data: Task, settings: TaskSettings
) -> list[dict[str, Any]]:
    """Wait for the dense jobs, save their networks under dense/ (with the task's preprocessing,
    loss scale and training config), write dense.json."""
    (run.path / "dense").mkdir(exist_ok=True)
    results = []
    for future in futures:
        item = future.result()
        net = net_from_state(item.pop("net"))
        save(net, run.path / dense_file(item["hidden"]), info=_model_info(data, settings, {"hidden": item["hidden"]}))
        results.append(item)
    run.write_json("dense.json", results)
    return results


def submit_magnitude(executor, data: Task, settings: TaskSettings) -> Future | None:
    """The magnitude-pruning baseline as one executor job (None when it is switched off)."""
    if not settings.magnitude.enabled:
        return None
    return executor.submit(magnitude_job, _shipped(data), settings)


def collect_magnitude(future: Future, run: RunDir, data: Task, settings: TaskSettings) -> dict[str, Any]:
    """Wait for the magnitude-pruning job, save its networks under magnitude/, write magnitude.json."""
    item = future.result()
    (run.path / "magnitude").mkdir(exist_ok=True)
    for point, state in zip(item["points"], item.pop("nets")):
        point["file"] = f"magnitude/round_{point['round']:03d}"  # rounds may share a parameter count
        save(net_from_state(state), run.path / point["file"],
             info=_model_info(data, settings, {**point, "pruned_from": item["from"]}))
    item.update(method=settings.magnitude.method, schedule=settings.magnitude.schedule,
                sparsity=settings.magnitude.sparsity)
    run.write_json("magnitude.json", item)
    return item


def load_magnitude(run: RunDir) -> dict[str, Any] | None:
    """Magnitude-pruning results of an earlier (interrupted) run, if that job had finished."""
    path = run.file("magnitude.json")
    return read_json(path, dict) if path.exists() else None


def magnitude_summary(magnitude: dict[str, Any], dense: list[dict[str, Any]], grown: list[dict[str, Any]]) -> dict[str, Any]:
    """The magnitude baseline's figures for comparison.json: its Pareto front, its own ratios against
    the dense front, and netbonsai's ratios against it (``pruned_params``: the pruned networks' count)."""
    points = [{k: p[k] for k in ("params", "train_loss", "val_loss")} for p in magnitude["points"]]
    ratios = param_ratios(points, dense)
    against = [{"val_loss": r["val_loss"], "grown_params": r["grown_params"], "pruned_params": r["dense_params"],
                "ratio": r["ratio"]} for r in param_ratios(grown, points)]
    return {
        "from": magnitude["from"], "method": magnitude["method"], "schedule": magnitude["schedule"],
        "sparsity": magnitude.get("sparsity"),
        "front": pareto_front(points), "ratios": ratios, **ratio_summary(ratios),
        "netbonsai_ratios": against, "netbonsai": ratio_summary(against),
    }


def dense_file(hidden: list[int] | tuple[int, ...]) -> str:
    """Where a run directory keeps the dense network with these hidden layers (``dense/10x11``)."""
    return "dense/" + "x".join(str(h) for h in hidden)


def load_dense(run: RunDir) -> list[dict[str, Any]] | None:
    """Dense results of an earlier (interrupted) run, if its sweep had finished."""
    path = run.file("dense.json")
    return read_json(path, list) if path.exists() else None


# ---------------------------------------------------------------------- grow
def run_search(
    data: Task, settings: TaskSettings, run: RunDir, reporter: Reporter
) -> GrowResult:
    """The grow-and-prune search with events in history.jsonl and a checkpoint after each."""
    state = None
    if run.resume:
        saved = run.load_checkpoint()
        if saved is not None:
            state = SearchState.from_dict(saved["search"])
            run.write_history(state.events)  # drop any event written after the checkpoint
            reporter.message(f"resuming after event {len(state.events) - 1} ({state.phase})")
    if state is None:
        run.write_history([])

    def on_event(event: dict[str, Any]) -> None:
        run.append_event(event)
        reporter.event(event)

    def checkpoint(current: SearchState) -> None:
        run.save_checkpoint({"search": current.to_dict()})

    return grow(data, settings.grow, state=state, on_event=on_event, checkpoint=checkpoint)


def _model_info(data: Task, settings: TaskSettings, extra: dict[str, Any]) -> dict[str, Any]:
    """What a saved model carries: the task's preprocessing (``netbonsai predict`` rebuilds the
    samples of a new image from it), the loss scale and units, and the training config."""
    info = {
        "task": data.task,
        "image": data.image,
        "preprocessing": data.preprocessing,
        "loss_units": LOSS_UNITS[data.task],
        "loss_scale": data.loss_scale,
        "config": settings.to_dict(),
    }
    return {**info, **extra}


def save_front(front: list[FrontPoint], run: RunDir, data: Task, settings: TaskSettings) -> list[dict[str, Any]]:
    """Save every front network under front/ and return the front as plain records."""
    (run.path / "front").mkdir(exist_ok=True)
    records = []
    for point in front:
        save(point.net, run.path / _front_file(point.params), info=_model_info(data, settings, point.summary()))
        records.append({**point.summary(), "file": _front_file(point.params)})
    return records


# ---------------------------------------------------------------------- commands
@dataclass
class RunSummary:
    """What a command produced: paths, key figures, and the text it prints."""

    out: Path
    text: str
    figures: dict[str, Any]


def run_grow(options: RunOptions, out: str | Path, resume: bool = False, reporter: Reporter | None = None) -> RunSummary:
    """``netbonsai grow``: the search alone; writes model, front/, history.jsonl, report.md, plots."""
    reporter = reporter or Reporter()
    options.command = "grow"
    started = time.perf_counter()
    settings, data, run = prepare(options, out, resume)
    result = run_search(data, settings, run, reporter)
    reporter.message("polishing the front networks")
    with make_executor(options.executor, workers=_workers(options.executor)) as executor:
        front = save_front(final_front(result, data, settings, executor), run, data, settings)
    final = result.net
    save(final, run.file(MODEL), info=_model_info(data, settings, {"params": final.num_params()}))
    wall = time.perf_counter() - started
    _plots(run, data, result, None, front, best_net=final)
    scale_note = LOSS_UNITS[data.task]
    text = (
        f"# netbonsai grow: {data.task} on {data.image}\n\n"
        f"Preset `{settings.preset}`, seed {settings.grow.seed}, device {settings.device}, stopped by `{result.stop_reason}` after "
        f"{len(result.events)} events in {result.seconds:.1f} s (wall {wall:.1f} s). Losses: {scale_note}.\n\n"
        f"Final network: {final.num_params()} parameters, {final.n_hidden} hidden neurons"
        f"{_trained_note(result.events, settings)}.\n\n"
        f"## Pareto front (validation loss vs parameters)\n\n{front_table(front)}\n"
        f"![history](history.png) ![front](pareto.png) ![network](network.png)\n"
    )
    from ..atomic import write_text

    write_text(run.file(REPORT), text)
    run.write_json("result.json", {"task": data.task, "image": data.image, "preset": settings.preset,
                                   "front": front, "stop_reason": result.stop_reason,
                                   "final_params": final.num_params(), "wall_seconds": wall,
                                   "environment": _environment()})
    return RunSummary(run.path, front_table(front), {"front": front, "wall_seconds": wall})


def run_baseline(options: RunOptions, out: str | Path, resume: bool = False, reporter: Reporter | None = None) -> RunSummary:
    """``netbonsai baseline``: the dense MLP sweep alone; writes dense.json, dense/, report.md,
    pareto.png and model (the dense network with the lowest validation loss)."""
    reporter = reporter or Reporter()
    options.command = "baseline"
    started = time.perf_counter()
    settings, data, run = prepare(options, out, resume)
    dense = load_dense(run) if resume else None
    if dense is None:
        with make_executor(options.executor, workers=_workers(options.executor)) as executor:
            dense = collect_dense(submit_dense(executor, data, settings, reporter), run, data, settings)
    front = pareto_front(dense)  # finite losses only; its last network has the lowest validation loss
    if not front:
        raise InputError(f"no dense network of {run.path} has a finite validation loss: no model to save")
    best = front[-1]  # the run's model: the best dense network
    save(load(run.path / dense_file(best["hidden"])), run.file(MODEL))
    wall = time.perf_counter() - started
    from ..analysis.plots import pareto_plot
    from ..atomic import write_text

    pareto_plot({"dense MLP": dense}, run.file("pareto.png"), title=f"{data.task}: dense baseline",
                loss_label=f"validation loss ({LOSS_UNITS[data.task]})")
    table = front_table(dense)
    write_text(run.file(REPORT), f"# netbonsai baseline: {data.task} on {data.image}\n\nLosses: {LOSS_UNITS[data.task]}. "
               f"Wall time {wall:.1f} s.\n\n{table}\n![front](pareto.png)\n")
    return RunSummary(run.path, table, {"dense": dense, "wall_seconds": wall})


def _front_file(params: int) -> str:
    """Where a run directory keeps its front network with ``params`` parameters."""
    return f"front/params_{params:05d}"


def run_compare(options: RunOptions, out: str | Path, resume: bool = False, reporter: Reporter | None = None) -> RunSummary:
    """``netbonsai compare``: dense sweep and search side by side, then the parameter ratios.

    With the process executor the dense sweep trains in a worker process while the search runs
    here, so both cores work; inline, the sweep runs first.
    """
    reporter = reporter or Reporter()
    options.command = "compare"
    started = time.perf_counter()
    settings, data, run = prepare(options, out, resume)
    dense = load_dense(run) if resume else None
    magnitude = load_magnitude(run) if resume else None
    with make_executor(options.executor, workers=_workers(options.executor)) as executor:

        def submit_baselines(settings: TaskSettings) -> tuple[Future | None, list[Future]]:
            # the longest job first, so that it never runs alone at the end
            return (submit_magnitude(executor, data, settings) if magnitude is None else None,
                    submit_dense(executor, data, settings, reporter) if dense is None else [])

        # dense.epochs=match: the baselines' budget is known only once the search has ended
        pruning, futures = (None, []) if settings.dense_match else submit_baselines(settings)
        result = run_search(data, settings, run, reporter)
        if settings.dense_match:
            settings = replace(settings, dense_epochs=matched_epochs(result, settings))
            reporter.message(f"training the baselines for {settings.dense_epochs} {_budget_unit(settings)}, as the search's")
            pruning, futures = submit_baselines(settings)
        reporter.message("polishing the front networks")
        polished = final_front(result, data, settings, executor)
        if dense is None:
            dense = collect_dense(futures, run, data, settings)
        if pruning is not None:
            magnitude = collect_magnitude(pruning, run, data, settings)
    front = save_front(polished, run, data, settings)
    grown = _with_epochs([{k: p[k] for k in ("params", "train_loss", "val_loss")} for p in front], front, result.events)
    pruned = magnitude_summary(magnitude, dense, grown) if magnitude is not None else None
    ratios = param_ratios(grown, dense)
    summary = ratio_summary(ratios)
    best = min(polished, key=lambda p: p.val_loss)
    save(best.net, run.file(MODEL), info=_model_info(data, settings, best.summary()))
    beyond = _beyond_dense(grown, dense)
    wall = time.perf_counter() - started
    comparison = {
        "task": data.task,
        "image": data.image,
        "preset": settings.preset,
        "seed": settings.grow.seed,
        "loss_units": LOSS_UNITS[data.task],
        "dense": dense,
        "grown": grown,
        "ratios": ratios,
        "median_ratio": summary["median_ratio"],
        "min_ratio": summary["min_ratio"],
        "max_ratio": summary["max_ratio"],
        "n_ratios": summary["n"],
        "n_outside_dense_range": len(pareto_front(grown)) - len(ratios),
        "budget": training_budget(settings, grown),
        "beyond_dense": beyond,
        "at_train_loss": at_train_loss(grown, dense),
        "search_seconds": result.seconds,
        "stop_reason": result.stop_reason,
        "wall_seconds": wall,
        "environment": _environment(),
    }
    if pruned is not None:
        comparison["magnitude"] = pruned
    run.write_json("comparison.json", comparison)
    _plots(run, data, result, dense, front, best_net=best.net, pruned=pruned)
    table = comparison_table(ratios, loss_format="{:.6g}")
    headline = _headline(summary, comparison)
    from ..atomic import write_text

    write_text(
        run.file(REPORT),
        f"# netbonsai compare: {data.task} on {data.image}\n\n"
        f"Preset `{settings.preset}`, seed {settings.grow.seed}, device {settings.device}; {data.describe()['n_train']} training and "
        f"{data.describe()['n_val']} validation samples (seeded split). Losses: {LOSS_UNITS[data.task]}, "
        f"on the validation set. Wall time {wall:.1f} s.\n\n{headline}\n\n{budget_line(comparison['budget'])}\n\n"
        f"## Parameter ratio at equal validation loss\n\n{table}\n"
        f"## Dense MLPs (same trainer; budgets in the Training line above)\n\n{front_table(dense)}\n"
        f"{_magnitude_section(pruned)}"
        f"## netbonsai Pareto front\n\n{front_table(front)}\n"
        "![front](pareto.png) ![history](history.png) ![network](network.png)\n",
    )
    printed = table + "\n" + headline + "\n" + budget_line(comparison["budget"])
    if pruned is not None:
        printed += f"\nMagnitude pruning of the dense {'-'.join(map(str, pruned['from']))} MLP: {_ratio_line(pruned)} " \
                   f"against the dense front; netbonsai against it: {_ratio_line(pruned['netbonsai'])}."
    return RunSummary(run.path, printed, comparison)


def run_compare_seeds(
    options: RunOptions, out: str | Path, resume: bool = False, reporter: Reporter | None = None
) -> RunSummary:
    """``netbonsai compare --seeds N``: N complete comparisons, then the ratio over all of them.

    One seed decides both the search and the dense networks' initial weights, so a single
    comparison measures the ratio to about +-0.2 on these tasks (RESULTS.md). Seed ``s`` runs in
    ``DIR/seed-s`` (a full compare run directory; the data split is the same for all). The pooled
    figure compares the Pareto front of every seed's grown networks with the Pareto front of
    every seed's dense networks: best of N on both sides, so neither side gets more tries. Each
    seed's own median ratio is reported next to it (mean, spread). ``--resume`` skips finished
    seeds and continues an interrupted one.
    """
    if options.seeds < 1:
        raise InputError(f"--seeds must be at least 1, got {options.seeds}")
    if options.seeds == 1:
        return run_compare(options, out, resume, reporter)
    reporter = reporter or Reporter()
    options.command = "compare"
    started = time.perf_counter()
    settings, data, run = prepare(options, out, resume)
    per_seed = []
    for index, seed in enumerate(_seed_list(settings.grow.seed, options.seeds)):
        sub = run.path / f"seed-{seed}"
        if (sub / "comparison.json").exists():
            figures = read_json(sub / "comparison.json")
        else:
            reporter.message(f"seed {seed} ({index + 1} of {options.seeds})")
            single = replace(options, seed=seed, seeds=1)
            figures = run_compare(single, sub, resume and (sub / CONFIG).exists(), reporter).figures
        per_seed.append(figures)
    pooled = pool_comparisons(per_seed)
    best = min(pooled["grown"], key=lambda g: g["val_loss"])
    best_net = load(run.path / f"seed-{best['seed']}" / _front_file(best["params"]))
    save(best_net, run.file(MODEL), info=_model_info(data, settings, {k: best[k] for k in ("params", "train_loss", "val_loss", "seed")}))
    comparison = {
        "task": data.task, "image": data.image, "preset": settings.preset, "seeds": [c["seed"] for c in per_seed],
        "loss_units": LOSS_UNITS[data.task], **pooled, "wall_seconds": time.perf_counter() - started,
        "environment": _environment(),
    }
    run.write_json("comparison.json", comparison)
    series = {"dense MLP (all seeds)": comparison["dense"]}
    if "magnitude" in comparison:
        series["magnitude pruning (all seeds)"] = comparison["magnitude"]["front"]
    series.update({f"netbonsai seed {c['seed']}, polished front": c["grown"] for c in per_seed})
    from ..analysis.plots import pareto_plot

    pareto_plot(series, run.file("pareto.png"), title=f"{data.task} on {data.image}, {options.seeds} seeds",
                loss_label=f"validation loss ({LOSS_UNITS[data.task]})",
                focus="dense MLP (all seeds)")
    text = seeds_summary(comparison)
    from ..atomic import write_text

    write_text(
        run.file(REPORT),
        f"# netbonsai compare: {data.task} on {data.image}, seeds {comparison['seeds']}\n\n"
        f"Preset `{settings.preset}`; the same data split for every seed. Losses: {LOSS_UNITS[data.task]}, on "
        f"the validation set. Wall time {comparison['wall_seconds']:.1f} s. Each seed's run: `seed-S/`.\n\n"
        f"{text}\n\n![front](pareto.png)\n",
    )
    return RunSummary(run.path, text, comparison)


def pool_comparisons(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """The pooled ratio of several compare runs (``comparison.json`` contents) and each run's own.

    ``dense`` holds every run's dense networks and ``grown`` the Pareto front of every run's
    grown networks, each tagged with its ``seed``; the ratios compare the two pooled fronts.
    """
    if not per_seed:
        raise InputError("pooling needs at least one comparison")
    dense = [{**d, "seed": c["seed"]} for c in per_seed for d in c["dense"]]
    grown = pareto_front([{**g, "seed": c["seed"]} for c in per_seed for g in c["grown"]])
    ratios = param_ratios(grown, dense)
    summary = ratio_summary(ratios)
    medians = [c["median_ratio"] for c in per_seed if c.get("median_ratio") is not None]
    pooled_magnitude = {}
    if per_seed and all("magnitude" in c for c in per_seed):
        first = per_seed[0]["magnitude"]
        points = [{**p, "seed": c["seed"]} for c in per_seed for p in c["magnitude"]["front"]]
        summary_m = magnitude_summary({**{k: first.get(k) for k in ("from", "method", "schedule", "sparsity")},
                                       "points": points}, dense, grown)
        pooled_magnitude = {"magnitude": {**summary_m, "front": pareto_front(points)}}
    return {
        **pooled_magnitude,
        **_pooled_budget(per_seed, grown),
        "dense": dense, "grown": grown, "ratios": ratios,
        "median_ratio": summary["median_ratio"], "min_ratio": summary["min_ratio"],
        "max_ratio": summary["max_ratio"], "n_ratios": summary["n"],
        "at_train_loss": at_train_loss(grown, dense),
        "median_ratio_interval": seed_bootstrap([(c["grown"], c["dense"]) for c in per_seed]),
        "per_seed": [
            {k: c.get(k) for k in ("seed", "median_ratio", "min_ratio", "max_ratio", "n_ratios", "wall_seconds")}
            for c in per_seed
        ],
        "per_seed_median": {
            "mean": float(np.mean(medians)) if medians else None,
            "std": float(np.std(medians, ddof=1)) if len(medians) > 1 else None,
            "min": min(medians, default=None), "max": max(medians, default=None),
        },
    }


def _pooled_budget(per_seed: list[dict[str, Any]], grown: list[dict[str, Any]]) -> dict[str, Any]:
    """``{"budget": ...}`` of the pooled comparison (the grown range over the pooled front's
    networks, as compared), or {} when a run lacks one."""
    budgets = [c.get("budget") for c in per_seed]
    if not all(isinstance(b, dict) for b in budgets):
        return {}
    pooled = {**budgets[0], **_grown_epochs(grown)}
    dense = [b["dense_epochs"] for b in budgets]
    if min(dense) != max(dense):  # dense.epochs=match: each seed's own search set its dense budget
        pooled.update(dense_epochs=max(dense), dense_epochs_min=min(dense))
    return {"budget": pooled}


def seeds_summary(comparison: dict[str, Any]) -> str:
    """The printed summary of a multi-seed comparison: per-seed table, pooled table, headline."""
    rows = [[r["seed"], _fmt(r["median_ratio"]), _fmt(r["min_ratio"]), _fmt(r["max_ratio"]), r["n_ratios"],
             _fmt(r["wall_seconds"], ".1f")] for r in comparison["per_seed"]]
    spread = comparison["per_seed_median"]
    pooled = (f"**{comparison['median_ratio']:.2f}** (min {comparison['min_ratio']:.2f}, max "
              f"{comparison['max_ratio']:.2f}, {comparison['n_ratios']} front points)"
              if comparison["n_ratios"] else "none (no pooled grown network inside the dense loss range)")
    interval = comparison.get("median_ratio_interval")
    if comparison["n_ratios"] and interval:
        pooled += (f"; {interval['confidence']:.0%} interval over seeds (bootstrap) "
                   f"{interval['low']:.2f}-{interval['high']:.2f}")
    per_seed = (f"{spread['mean']:.2f} +- {spread['std']:.2f} (mean +- sd over seeds)"
                if spread["std"] is not None else "-")
    return (
        "## Each seed\n\n"
        + markdown_table(["seed", "median ratio", "min", "max", "front points", "wall (s)"], rows)
        + "\n## All seeds pooled (Pareto front of every grown network against that of every dense one)\n\n"
        + comparison_table(comparison["ratios"], loss_format="{:.6g}")
        + f"\nPooled median parameter ratio at equal validation loss: {pooled}. Per-seed median ratio: {per_seed}."
        + _train_loss_line(comparison)
        + (f"\n\n{budget_line(comparison['budget'])}" if "budget" in comparison else "")
        + (f"\n\n{_magnitude_section(comparison['magnitude'])}".rstrip() if "magnitude" in comparison else "")
    )


def _fmt(value: Any, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def _magnitude_section(pruned: dict[str, Any] | None) -> str:
    """The report's section on the magnitude-pruning baseline (empty when it was not run)."""
    if pruned is None:
        return ""
    source = "-".join(str(h) for h in pruned["from"])
    return (
        f"## Magnitude pruning of the dense {source} MLP ({pruned['method']}, {pruned['schedule']} up to "
        f"sparsity {pruned.get('sparsity')}, retrained after every round)\n\n{front_table(pruned['front'])}\n"
        f"Against the dense front: {_ratio_line(pruned)}. netbonsai against magnitude pruning: "
        f"{_ratio_line(pruned['netbonsai'])}.\n\n"
    )


def _ratio_line(summary: dict[str, Any]) -> str:
    if not summary.get("n"):
        return "no ratio (no network inside the other front's loss range)"
    return (f"median ratio **{summary['median_ratio']:.2f}** (min {summary['min_ratio']:.2f}, "
            f"max {summary['max_ratio']:.2f}, {summary['n']} points)")


def matched_epochs(result: GrowResult, settings: TaskSettings) -> int:
    """The most training any network on the search's front had (``dense.epochs=match``); the
    start budget when the search did not count (a network given to it)."""
    by_event = _epochs_by_event(result.events)
    counted = [by_event[p.event] for p in result.front if by_event.get(p.event) is not None]
    return max(counted, default=settings.grow.start_epochs)


def _trained_note(events: list[dict[str, Any]], settings: TaskSettings) -> str:
    """", trained N iterations in the search" for the final network (empty when not counted)."""
    epochs = events[-1].get("epochs") if events else None
    if epochs is None:
        return ""
    return f", trained {epochs} {_budget_unit(settings)} in the search"


def _budget_unit(settings: TaskSettings) -> str:
    """What a training budget counts: Adam epochs, or full-batch (L-BFGS, LM) iterations."""
    return "epochs" if settings.grow.trainer.method == "adam" else "iterations"


def _with_epochs(grown: list[dict[str, Any]], front: list[dict[str, Any]], events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each grown record with ``epochs``: the training its network had in the search (from its event)."""
    by_event = _epochs_by_event(events)
    for record, point in zip(grown, front):
        epochs = by_event.get(point.get("event"))
        if epochs is not None:
            record["epochs"] = epochs
    return grown


def _epochs_by_event(events: list[dict[str, Any]]) -> dict[int, int | None]:
    """Event index -> the training its network had (None where the search did not count)."""
    return {e["index"]: e.get("epochs") for e in events}


def _grown_epochs(grown: list[dict[str, Any]]) -> dict[str, int | None]:
    """The range of ``epochs`` over grown records (None where none was counted)."""
    counted = [g["epochs"] for g in grown if "epochs" in g]
    return {"grown_epochs_min": min(counted, default=None), "grown_epochs_max": max(counted, default=None)}


def training_budget(settings: TaskSettings, grown: list[dict[str, Any]]) -> dict[str, Any]:
    """How much training each side got, so a reader can check the comparison is fair.

    Dense networks get ``dense_epochs``; a grown network got the start network's training plus
    every accepted trial retraining and every post-addition training on its way (``epochs`` of
    its history event); both then get the same polish. These are the budgets asked for: an
    L-BFGS run that converges early counts in full, and so does a trial retraining on a
    ``trial_samples`` subsample or a search that trains on the part of the training split left
    by ``selection_fraction`` (so the count can overstate the grown side, never understate it).
    """
    return {
        "unit": _budget_unit(settings),
        "method": settings.grow.trainer.method,
        "dense_epochs": settings.dense_epochs,
        "polish_epochs": settings.polish_epochs,
        **_grown_epochs(grown),
    }


def at_train_loss(grown: list[dict[str, Any]], dense: list[dict[str, Any]]) -> dict[str, Any]:
    """The ratio at equal *training* loss, paper 000's own measure (its tables have no held-out
    set): ``{"ratios": [...], "median_ratio", "min_ratio", "max_ratio", "n"}``. ``grown`` is the
    reported front (the polished networks on the validation-loss front) and ``dense`` every dense
    network; param_ratios reduces each to its Pareto front in training loss."""
    ratios = param_ratios(grown, dense, loss_key="train_loss")
    return {"ratios": ratios, **ratio_summary(ratios)}


def _train_loss_line(comparison: dict[str, Any]) -> str:
    """One sentence on the ratio at equal training loss (empty when there is none)."""
    train = comparison.get("at_train_loss") or {}
    if not train.get("n"):
        return ""
    return (f" At equal training loss (paper 000's measure): median {train['median_ratio']:.2f} "
            f"(min {train['min_ratio']:.2f}, max {train['max_ratio']:.2f}, {train['n']} points).")


def _headline(summary: dict[str, Any], comparison: dict[str, Any]) -> str:
    if not summary["n"]:
        return ("No grown network falls inside the dense networks' validation-loss range: no ratio to report."
                + _train_loss_line(comparison))
    return (
        f"Median parameter ratio (dense / netbonsai) at equal validation loss: "
        f"**{summary['median_ratio']:.2f}** (min {summary['min_ratio']:.2f}, max {summary['max_ratio']:.2f}, "
        f"{summary['n']} front points; {comparison['n_outside_dense_range']} outside the dense loss range)."
        + _train_loss_line(comparison)
    )


def _workers(kind: str) -> int:
    """Worker processes for independent trainings: one per core (at least one).

    The search runs in the main process meanwhile; with one torch thread per process a briefly
    oversubscribed core only time-slices, and the workers keep every core busy once it ends.
    """
    return max(1, os.cpu_count() or 1)


def _beyond_dense(grown: list[dict[str, Any]], dense: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Grown networks better than every dense network: their ratio is only bounded from below."""
    best = min(dense, key=lambda d: d["val_loss"])
    return [
        {"val_loss": g["val_loss"], "grown_params": g["params"], "dense_params_at_least": best["params"],
         "ratio_at_least": best["params"] / g["params"]}
        for g in pareto_front(grown) if g["val_loss"] < best["val_loss"]
    ]


def _plots(
    run: RunDir, data: Task, result: GrowResult, dense: list[dict[str, Any]] | None,
    front: list[dict[str, Any]], best_net: DagNet, pruned: dict[str, Any] | None = None,
) -> None:
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
                loss_label=f"validation loss ({LOSS_UNITS[data.task]})",
                focus="dense MLP" if dense is not None else None)
    history_plot(result.events, run.file("history.png"), x="seconds", title="grow-and-prune history",
                 loss_label=f"loss ({LOSS_UNITS[data.task]})")
    draw_network(best_net, run.file("network.png"))


def load_model(path: str | Path) -> DagNet:
    """Load a model file (or a run directory's model)."""
    return load(path)
