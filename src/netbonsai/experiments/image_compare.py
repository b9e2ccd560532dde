"""``netbonsai compare`` on an image task: the baselines and the search side by side, their ratios, and the pooling of several seeds."""

from __future__ import annotations

import time
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.compare import method_figures, param_ratios, ratio_summary, seed_bootstrap
from ..analysis.comparison_text import compare_printed, compare_report, seeds_report, seeds_summary
from ..analysis.pareto import pareto_front
from ..atomic import write_text
from ..errors import InputError
from ..executor import make_executor
from ..grow.search import GrowResult
from ..methods.front import final_front
from ..nets.io import load, save
from ..runs import CONFIG, MODEL, REPORT, Reporter, read_json
from .image_baselines import (collect_dense, collect_magnitude, load_dense, load_magnitude, magnitude_summary,
                              submit_dense, submit_magnitude)
from .image_run import (LOSS_UNITS, RunSummary, _model_info, budget_unit, front_file, image_environment, plots,
                        prepare, run_search, save_best, save_front, seed_list, workers)
from .presets import TaskSettings
from .run_options import RunOptions


def run_compare(options: RunOptions, out: str | Path, resume: bool = False, reporter: Reporter | None = None) -> RunSummary:
    """``netbonsai compare``: dense sweep and search side by side, then the parameter ratios.

    With the process executor the dense sweep trains in a worker process while the search runs
    here, so both cores work; inline, the sweep runs first.
    """
    reporter = reporter or Reporter()
    options.command = "compare"
    started = time.perf_counter()
    settings, data, run = prepare(options, out, resume, reporter)
    dense = load_dense(run) if resume else None
    magnitude = load_magnitude(run) if resume else None
    with make_executor(options.executor, workers=workers(options.executor)) as executor:

        def submit_baselines(settings: TaskSettings) -> tuple[Future | None, list[Future]]:
            # the longest job first, so that it never runs alone at the end
            return (submit_magnitude(executor, data, settings) if magnitude is None else None,
                    submit_dense(executor, data, settings, reporter, run) if dense is None else [])

        # dense.epochs=match: the baselines' budget is known only once the search has ended
        pruning, futures = (None, []) if settings.dense_match else submit_baselines(settings)
        result = run_search(data, settings, run, reporter)
        if settings.dense_match:
            settings = replace(settings, dense_epochs=matched_epochs(result, settings))
            reporter.message(f"training the baselines for {settings.dense_epochs} {budget_unit(settings)}, as the search's")
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
    best = save_best(polished, run, data, settings)
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
        "environment": image_environment(),
    }
    if pruned is not None:
        comparison["magnitude"] = pruned
    comparison["methods"] = methods_section(grown, dense, pruned)
    run.write_json("comparison.json", comparison)
    plots(run, data, result, dense, front, best_net=best.net, pruned=pruned)
    split = data.describe()
    write_text(run.file(REPORT), compare_report(comparison, front, device=settings.device, n_train=split["n_train"],
                                                n_val=split["n_val"]))
    return RunSummary(run.path, compare_printed(comparison), comparison)


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
    settings, data, run = prepare(options, out, resume, reporter)
    per_seed = []
    for index, seed in enumerate(seed_list(settings.grow.seed, options.seeds)):
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
    best_net = load(run.path / f"seed-{best['seed']}" / front_file(best["params"]))
    save(best_net, run.file(MODEL), info=_model_info(data, settings, {k: best[k] for k in ("params", "train_loss", "val_loss", "seed")}))
    comparison = {
        "task": data.task, "image": data.image, "preset": settings.preset, "seeds": [c["seed"] for c in per_seed],
        "loss_units": LOSS_UNITS[data.task], **pooled, "wall_seconds": time.perf_counter() - started,
        "environment": image_environment(),
    }
    comparison["methods"] = methods_section(pooled["grown"], pooled["dense"], pooled.get("magnitude"))
    comparison["methods"]["grow"]["median_ratio_interval"] = pooled.get("median_ratio_interval")
    run.write_json("comparison.json", comparison)
    series = {"dense MLP (all seeds)": comparison["dense"]}
    if "magnitude" in comparison:
        series["magnitude pruning (all seeds)"] = comparison["magnitude"]["front"]
    series.update({f"netbonsai seed {c['seed']}, polished front": c["grown"] for c in per_seed})
    from ..analysis.plots import pareto_plot

    pareto_plot(series, run.file("pareto.png"), title=f"{data.task} on {data.image}, {options.seeds} seeds",
                loss_label=f"validation loss ({LOSS_UNITS[data.task]})",
                focus="dense MLP (all seeds)")
    write_text(run.file(REPORT), seeds_report(comparison))
    return RunSummary(run.path, seeds_summary(comparison), comparison)


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


# ---------------------------------------------------------------------- training budgets
def matched_epochs(result: GrowResult, settings: TaskSettings) -> int:
    """The most training any network on the search's front had (``dense.epochs=match``); the
    start budget when the search did not count (a network given to it)."""
    by_event = _epochs_by_event(result.events)
    counted = [by_event[p.event] for p in result.front if by_event.get(p.event) is not None]
    return max(counted, default=settings.grow.start_epochs)


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
        "unit": budget_unit(settings),
        "method": settings.grow.trainer.method,
        "dense_epochs": settings.dense_epochs,
        "polish_epochs": settings.polish_epochs,
        **_grown_epochs(grown),
    }


# ---------------------------------------------------------------------- figures of the comparison
def at_train_loss(grown: list[dict[str, Any]], dense: list[dict[str, Any]]) -> dict[str, Any]:
    """The ratio at equal *training* loss, paper 000's own measure (its tables have no held-out
    set): ``{"ratios": [...], "median_ratio", "min_ratio", "max_ratio", "n"}``. ``grown`` is the
    reported front (the polished networks on the validation-loss front) and ``dense`` every dense
    network; param_ratios reduces each to its Pareto front in training loss."""
    ratios = param_ratios(grown, dense, loss_key="train_loss")
    return {"ratios": ratios, **ratio_summary(ratios)}


def _beyond_dense(grown: list[dict[str, Any]], dense: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Grown networks better than every dense network: their ratio is only bounded from below."""
    best = min(dense, key=lambda d: d["val_loss"])
    return [
        {"val_loss": g["val_loss"], "grown_params": g["params"], "dense_params_at_least": best["params"],
         "ratio_at_least": best["params"] / g["params"]}
        for g in pareto_front(grown) if g["val_loss"] < best["val_loss"]
    ]


def methods_section(grown: list[dict[str, Any]], dense: list[dict[str, Any]],
                    pruned: dict[str, Any] | None) -> dict[str, Any]:
    """comparison.json's ``methods``: the same per-method figures as ``compare --methods`` gives
    (front, ratios, loss gaps) for the search and the magnitude-pruning baseline."""
    section = {"grow": method_figures(grown, dense)}
    if pruned is not None:
        section["magnitude"] = method_figures(pruned["front"], dense)
    return section
