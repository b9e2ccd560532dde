"""``netbonsai grow`` and ``netbonsai baseline`` on an image task: the search alone, the dense sweep alone."""

from __future__ import annotations

import time
from pathlib import Path

from ..analysis.comparison_text import baseline_report, grow_report
from ..analysis.methods_text import loss_units
from ..analysis.pareto import pareto_front
from ..analysis.report import front_table
from ..atomic import write_text
from ..errors import InputError
from ..executor import make_executor
from ..methods.base import measure_on
from ..methods.front import final_front
from ..nets.io import load, save
from ..runs import MODEL, REPORT, Reporter
from .image_baselines import collect_dense, dense_file, load_dense, submit_dense
from .image_run import (RunSummary, budget_unit, image_environment, plots, prepare, run_search, save_best,
                        save_front, workers)
from .run_options import RunOptions


def run_grow(options: RunOptions, out: str | Path, resume: bool = False, reporter: Reporter | None = None) -> RunSummary:
    """``netbonsai grow``: the search alone; writes model (the polished front network with the
    lowest validation loss), front/, history.jsonl, result.json, report.md, plots."""
    reporter = reporter or Reporter()
    options.command = "grow"
    started = time.perf_counter()
    settings, data, run = prepare(options, out, resume, reporter)
    result = run_search(data, settings, run, reporter)
    reporter.message("polishing the front networks")
    with make_executor(options.executor, workers=workers(options.executor)) as executor:
        polished = final_front(result, data, settings, executor)
    front = save_front(polished, run, data, settings)
    if not polished:
        raise InputError(f"no front network of {run.path} has a finite validation loss: no model to save")
    best = save_best(polished, run, data, settings)
    final = result.net
    wall = time.perf_counter() - started
    plots(run, data, result, None, front, best_net=best.net)
    record = {"task": data.task, "image": data.image, "preset": settings.preset,
              "front": front, "stop_reason": result.stop_reason,
              "final_params": final.num_params(),
              "model": {k: best.summary()[k] for k in ("params", "val_loss", "train_loss")},
              "wall_seconds": wall, "environment": image_environment()}
    if data.test is not None:  # the held-back test split, seen by no search or selection
        record["test"] = {"params": best.params, **measure_on(best.net, data, data.test)}
    write_text(run.file(REPORT), grow_report(record, seed=settings.grow.seed, device=settings.device,
                                             events=result.events, search_seconds=result.seconds,
                                             final_hidden=final.n_hidden, unit=budget_unit(settings),
                                             units=loss_units(data)))
    run.write_json("result.json", record)
    return RunSummary(run.path, front_table(front), {"front": front, "wall_seconds": wall})


def run_baseline(options: RunOptions, out: str | Path, resume: bool = False, reporter: Reporter | None = None) -> RunSummary:
    """``netbonsai baseline``: the dense MLP sweep alone; writes dense.json, dense/, report.md,
    pareto.png and model (the dense network with the lowest validation loss)."""
    reporter = reporter or Reporter()
    options.command = "baseline"
    started = time.perf_counter()
    settings, data, run = prepare(options, out, resume, reporter)
    dense = load_dense(run) if resume else None
    if dense is None:
        with make_executor(options.executor, workers=workers(options.executor)) as executor:
            dense = collect_dense(submit_dense(executor, data, settings, reporter, run), run, data, settings)
    front = pareto_front(dense)  # finite losses only; its last network has the lowest validation loss
    if not front:
        raise InputError(f"no dense network of {run.path} has a finite validation loss: no model to save")
    best = front[-1]  # the run's model: the best dense network
    save(load(run.path / dense_file(best["hidden"])), run.file(MODEL))
    wall = time.perf_counter() - started
    from ..analysis.plots import pareto_plot

    pareto_plot({"dense MLP": dense}, run.file("pareto.png"), title=f"{data.task}: dense baseline",
                loss_label=f"validation loss ({loss_units(data)})")
    write_text(run.file(REPORT), baseline_report(data.task, data.image, loss_units(data), wall, dense))
    return RunSummary(run.path, front_table(dense), {"dense": dense, "wall_seconds": wall})
