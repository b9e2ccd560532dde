"""``netbonsai compare TASK --methods a,b,c``: any registered methods against the dense sweep.

Every method and the dense sweep get the same task split, trainer and budget policy (the
preset's :class:`~netbonsai.experiments.presets.TaskSettings`). Each method runs in its own
sub-run ``methods/NAME/`` (its history, checkpoints and front networks), the sweep in
``dense/``; ``--resume`` skips what finished and continues what did not. The figures per
method: its Pareto front, the parameter ratio at equal validation loss against the dense front
(median, min, max; with ``--seeds`` an interval over seeds) and the validation-loss gap at equal
parameters, which stays meaningful where the dense front is flat.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.compare import flat_dense, method_figures, seed_bootstrap
from ..data.specs import parse_task_spec, task_from_spec
from ..data.tables import data_task
from ..data.task import Task
from ..errors import InputError
from ..methods.base import Method, MethodResult
from ..methods.registry import METHODS, parse_methods
from ..nets.io import load, save
from ..runs import MODEL, Reporter, RunContext, read_json
from ..train.regularization import choose_l2, reference_network
from ..analysis.methods_text import LOSS_UNITS, loss_units, methods_report
from .image_runs import RunOptions, RunSummary
from .presets import l2_record

DENSE = "dense"
METHOD_FILE = "method.json"


def build_task(options: RunOptions, settings) -> Task:
    """The task a run's options name (or its --data table), split as its preset says
    (validated; nothing written)."""
    d = settings.data
    test_fraction = settings.extras.get("test_fraction", 0.2)
    if options.data is not None:
        return data_task(options.data, list(options.target) or None, task_type=options.task_type,
                         val_fraction=d.val_fraction, test_fraction=test_fraction, seed=d.split_seed,
                         drop_missing=options.drop_missing)
    spec = parse_task_spec(options.task, options.image)
    return task_from_spec(spec, val_fraction=d.val_fraction, seed=d.split_seed, max_train=d.max_train,
                          max_val=d.max_val, val_size=d.max_val or 5000, test_fraction=test_fraction)


def task_spec_text(options: RunOptions) -> str:
    """How the run names its task: the task name, or ``FILE -> TARGET`` for --data."""
    if options.data is not None:
        return f"{options.data} -> {', '.join(options.target) or 'y'}"
    return str(parse_task_spec(options.task, options.image))


def fitted_to_task(settings, task: Task):
    """The policy fitted to the task: the trainer's loss is the task's (cross-entropy for a
    classifier, MSE for regression), and where the preset asks for it (tables: ``extras["l2"] ==
    "auto"``) the trainer's L2 strength is chosen on the validation split (recorded in
    ``extras["l2_choice"]``: every candidate's validation loss)."""
    trainer = settings.grow.trainer
    if trainer.loss != task.loss:
        trainer = replace(trainer, loss=task.loss)
    extras = settings.extras
    if extras.get("l2") == "auto":
        hidden = reference_network(settings.dense_grid, task.n_in, task.n_out)
        l2, losses = choose_l2(task, hidden, settings.grow.activation, settings.dense_epochs, trainer,
                               seed=settings.grow.seed)
        trainer = replace(trainer, l2=l2)
        extras = {**extras, "l2": "chosen", "l2_choice": {"network": list(hidden), "val_loss": losses, "l2": l2}}
    if trainer == settings.grow.trainer and extras is settings.extras:
        return settings
    return replace(settings, grow=replace(settings.grow, trainer=trainer), extras=extras)


def target_record(task: Task) -> dict[str, Any]:
    """``{"target": NAME}`` for a table task (a list for several regression targets); empty otherwise."""
    targets = task.preprocessing.get("targets")
    if not targets:
        return {}
    return {"target": targets[0] if len(targets) == 1 else list(targets)}


def build_methods(names: list[str], settings, overrides: dict[str, dict[str, Any]]) -> list[Method]:
    """The named methods for the comparison's policy, with their ``--set NAME.KEY=VALUE`` settings."""
    built = []
    for name in names:
        method = METHODS[name].for_policy(settings)
        built.append(method.with_overrides(overrides.get(name, {})))
    unknown = sorted(set(overrides) - set(names) - {"grow"})
    if unknown:
        raise InputError(f"--set {unknown[0]}.* sets a method that is not in --methods ({', '.join(names)})")
    return built


def run_compare_methods(
    options: RunOptions, methods: str | list[str], out: str | Path, resume: bool = False,
    reporter: Reporter | None = None, method_overrides: dict[str, dict[str, Any]] | None = None,
) -> RunSummary:
    """Run the named methods and the dense sweep on one task; write comparison.json, report.md,
    pareto.png and model (the lowest-validation-loss network of any method's front)."""
    reporter = reporter or Reporter()
    options.command = "compare"
    names = parse_methods(methods) if isinstance(methods, str) else parse_methods(",".join(methods))
    started = time.perf_counter()
    settings = options.settings()
    task = build_task(options, settings)
    settings = fitted_to_task(settings, task)
    built = build_methods(names, settings, method_overrides or {})
    for method in built:
        method.check(task)
    config = {
        "command": "compare", "task_spec": task_spec_text(options), "seed": settings.grow.seed,
        **settings.to_dict(), "methods": {m.name: m.settings_dict() for m in built},
        "split": {k: v for k, v in task.describe().items() if k not in ("task", "image")},
        "loss_units": loss_units(task), "executor": options.executor, "device": settings.device, **l2_record(settings),
        **({"seeds": list(range(settings.grow.seed, settings.grow.seed + options.seeds))} if options.seeds > 1 else {}),
    }
    task = task.to(settings.device)
    with RunContext(out, config, kind="compare", resume=resume, executor=options.executor, device=settings.device,
                    reporter=reporter) as ctx:
        if options.seeds == 1:
            figures = compare_once(task, settings, built, ctx)
        else:
            per_seed = []
            for index, seed in enumerate(range(settings.grow.seed, settings.grow.seed + options.seeds)):
                reporter.message(f"seed {seed} ({index + 1} of {options.seeds})")
                policy = replace(settings, grow=replace(settings.grow, seed=seed))
                seeded = [type(m)(_reseeded(m.settings, seed), policy) for m in built]
                child = ctx.child(f"seed-{seed}", {"seed": seed})
                once = compare_once(task, policy, seeded, child)
                if task.test is not None:
                    test_figures(child.path, once, task)
                per_seed.append(once)
            figures = pool_seeds(per_seed)
            if task.test is not None:
                per_seed_test_figures(figures, per_seed)
        figures.update(task=task.name, task_spec=config["task_spec"], image=task.source, preset=settings.preset,
                       seed=settings.grow.seed, loss_units=loss_units(task), task_type=task.kind,
                       wall_seconds=time.perf_counter() - started, environment=ctx.environment(),
                       **target_record(task))
        if task.test is not None:
            test_figures(ctx.path, figures, task)
        _save_best(ctx, figures)
        ctx.write_json("comparison.json", figures)
        text = methods_report(figures, ctx.path)
        ctx.write_report(text["report"])
    return RunSummary(Path(out), text["printed"], figures)


def _reseeded(settings: Any, seed: int) -> Any:
    """A method's settings with its own ``seed`` field (if it has one) set to ``seed``."""
    return replace(settings, seed=seed) if hasattr(settings, "seed") else settings


def compare_once(task: Task, policy, methods: list[Method], ctx: RunContext) -> dict[str, Any]:
    """One seed: the dense sweep and every method, each in its own sub-run; the figures."""
    from ..methods.dense import DenseSweep

    dense = run_or_load(DenseSweep.for_policy(policy), task, ctx, DENSE)
    fronts = {m.name: run_or_load(m, task, ctx, f"methods/{m.name}") for m in methods}
    figures: dict[str, Any] = {"seed": policy.grow.seed, "dense": dense["points"], "methods": {}}
    for name, result in fronts.items():
        figures["methods"][name] = method_figures(result["points"], dense["points"])
        figures["methods"][name].update(stop_reason=result["stop_reason"], seconds=result["seconds"],
                                        folder=f"methods/{name}", extra=result.get("extra", {}))
    if "grow" in figures["methods"]:  # the older top-level keys describe the grow method
        grow = figures["methods"]["grow"]
        figures.update(grown=grow["front"], ratios=grow["ratios"], median_ratio=grow["median_ratio"],
                       min_ratio=grow["min_ratio"], max_ratio=grow["max_ratio"], n_ratios=grow["n_ratios"])
    return figures


def run_or_load(method: Method, task: Task, ctx: RunContext, folder: str) -> dict[str, Any]:
    """Run ``method`` in the sub-run ``folder`` and save its front networks there, or (on resume)
    read what a finished run of it saved."""
    child = ctx.child(folder, {"method": method.name, "settings": method.settings_dict()}, kind="method")
    done = child.file(METHOD_FILE)
    if child.resume and done.exists():
        ctx.reporter.message(f"{method.name}: finished before, results read from {folder}/")
        return read_json(done)
    ctx.reporter.stage_started(method.name)
    started = time.perf_counter()
    result: MethodResult = method.run(task, child)
    (child.path / "front").mkdir(exist_ok=True)
    points = []
    for found in result.front:
        name = f"front/params_{found.params:06d}"
        if any(p["file"] == f"{folder}/{name}" for p in points):  # two networks of one size (a dense grid)
            name += f"_{len(points)}"
        info = {"task": task.name, "method": method.name, "loss_units": loss_units(task), "loss_scale": task.loss_scale,
                "preprocessing": task.preprocessing, **found.summary()}
        save(found.net.cpu() if hasattr(found.net, "cpu") else found.net, child.file(name), info=info)
        points.append({**found.summary(), "file": f"{folder}/{name}"})
    record = {"method": method.name, "points": points, "stop_reason": result.stop_reason,
              "seconds": result.seconds or time.perf_counter() - started, "extra": result.extra}
    child.write_result(record, METHOD_FILE)
    return read_json(done)


def pool_seeds(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Several seeds' figures pooled per method: fronts over all seeds against all dense networks,
    an interval over seeds, each seed's own median, and whether the compared range is flat."""
    dense = [{**d, "seed": c["seed"]} for c in per_seed for d in c["dense"]]
    best_dense = [min(d["val_loss"] for d in c["dense"]) for c in per_seed]
    spread = float(np.std(best_dense, ddof=1)) if len(best_dense) > 1 else None
    pooled: dict[str, Any] = {"seeds": [c["seed"] for c in per_seed], "dense": dense, "methods": {},
                              "dense_spread_over_seeds": spread}
    for name in per_seed[0]["methods"]:
        points = [{**p, "seed": c["seed"]} for c in per_seed for p in c["methods"][name]["front"]]
        figures = method_figures(points, dense)
        figures["flat_dense"] = flat_dense(figures["ratios"], dense, spread)
        medians = [c["methods"][name]["median_ratio"] for c in per_seed if c["methods"][name]["median_ratio"] is not None]
        figures["per_seed"] = [{"seed": c["seed"], **{k: c["methods"][name][k] for k in ("median_ratio", "min_ratio", "median_gap")}}
                               for c in per_seed]
        figures["per_seed_median"] = {"mean": float(np.mean(medians)) if medians else None,
                                      "std": float(np.std(medians, ddof=1)) if len(medians) > 1 else None}
        figures["median_ratio_interval"] = seed_bootstrap([(c["methods"][name]["front"], c["dense"]) for c in per_seed])
        pooled["methods"][name] = figures
    if "grow" in pooled["methods"]:
        grow = pooled["methods"]["grow"]
        pooled.update(grown=grow["front"], ratios=grow["ratios"], median_ratio=grow["median_ratio"],
                      min_ratio=grow["min_ratio"], max_ratio=grow["max_ratio"], n_ratios=grow["n_ratios"],
                      median_ratio_interval=grow["median_ratio_interval"])
    return pooled


def test_figures(root: Path, figures: dict[str, Any], task: Task) -> None:
    """Each method's (and the dense sweep's) best-validation network on the test split, which no
    search or selection saw: ``figures["methods"][name]["test"]`` and ``figures["dense_test"]``
    (with several seeds: the best over all seeds; ``root`` is the run's folder)."""
    from ..methods.base import measure_on

    seeded = "seeds" in figures

    def measured(points: list[dict[str, Any]]) -> dict[str, Any]:
        best = min(points, key=lambda p: p["val_loss"])
        net = load(root / (f"seed-{best['seed']}" if seeded else "") / best["file"])
        return {"params": best["params"], **({"hidden": best["hidden"]} if best.get("hidden") else {}),
                **measure_on(net, task, task.test)}

    for m in figures["methods"].values():
        points = [p for p in m["front"] if p.get("file")]
        if points:
            m["test"] = measured(points)
    dense = [d for d in figures["dense"] if d.get("val_loss") is not None and d.get("file")]
    if dense:
        figures["dense_test"] = measured(dense)


def per_seed_test_figures(figures: dict[str, Any], per_seed: list[dict[str, Any]]) -> None:
    """``test_per_seed`` per method and ``dense_test_per_seed``: each seed's own best-validation
    network on the test split (``per_seed``: the seeds' figures, each after :func:`test_figures`)."""
    for seed, once in zip(figures["seeds"], per_seed):
        for name, m in figures["methods"].items():
            if "test" in once["methods"].get(name, {}):
                m.setdefault("test_per_seed", []).append({"seed": seed, **once["methods"][name]["test"]})
        if "dense_test" in once:
            figures.setdefault("dense_test_per_seed", []).append({"seed": seed, **once["dense_test"]})


def _save_best(ctx: RunContext, figures: dict[str, Any]) -> None:
    """The run's model: the network with the lowest validation loss on any method's front."""
    points = [p for m in figures["methods"].values() for p in m["front"] if p.get("file")]
    if not points:
        return
    best = min(points, key=lambda p: p["val_loss"])
    source = ctx.path / (f"seed-{best['seed']}/" if "seed" in best and "seeds" in figures else "") / best["file"]
    save(load(source), ctx.file(MODEL))
    figures["model"] = {k: best.get(k) for k in ("params", "val_loss", "train_loss", "file", "seed")}
    figures["model"]["method"] = best["file"].split("/")[1]




def compare(
    task: str, methods: str | list[str], out: str | Path, *, preset: str = "quick", seed: int | None = None,
    seeds: int = 1, settings: dict[str, Any] | None = None, max_params: int | None = None,
    max_seconds: float | None = None, executor: str = "process", device: str = "auto", resume: bool = False,
    reporter: Reporter | None = None,
) -> RunSummary:
    """Python form of ``netbonsai compare TASK --methods ...``: run registered methods (names;
    register a new one with :func:`netbonsai.methods.register` first) and the dense sweep on one
    task, with the same split, trainer and budget policy; returns the figures
    (``summary.figures`` is comparison.json). ``settings`` holds ``--set`` pairs
    (``{"grow.max_cycles": 3, "loss-aware.eps": 0.01}``)."""
    if seeds < 1:
        raise InputError(f"seeds must be at least 1, got {seeds}")
    options = RunOptions(task=task, preset=preset, seed=seed, seeds=seeds, executor=executor, device=device,
                         overrides=dict(settings or {}), max_params=max_params, max_seconds=max_seconds)
    options.settings()  # validates, and sorts the methods' own --set keys out
    return run_compare_methods(options, methods, out, resume=resume, reporter=reporter,
                               method_overrides=options.method_overrides)


__all__ = ["compare", "run_compare_methods", "compare_once", "pool_seeds", "method_figures", "LOSS_UNITS"]
