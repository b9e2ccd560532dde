"""The baselines of the image runs in a run directory: the dense sweep's and the magnitude-pruning jobs, their saved networks and figures."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import replace
from typing import Any

from ..analysis.compare import param_ratios, ratio_summary
from ..analysis.pareto import pareto_front
from ..data.task import Task
from ..methods.dense import submit_dense_jobs
from ..methods.magnitude import magnitude_job
from ..nets.io import load, net_from_state, net_to_state, save
from ..runs import Reporter, RunContext, read_json
from ..train.polish import shipped_task
from .image_run import _model_info
from .presets import TaskSettings


# ---------------------------------------------------------------------- dense sweep
DENSE_PARTIAL = "dense_partial.json"  # the sweep's finished networks while it runs (a resume keeps them)


def submit_dense(executor, data: Task, settings: TaskSettings, reporter: Reporter,
                 run: RunContext | None = None) -> list[Future]:
    """Submit one job per architecture of the grid (:func:`netbonsai.methods.dense.submit_dense_jobs`);
    progress is reported as each finishes. On a resumed ``run``, the networks an interrupted sweep
    had finished (``dense_partial.json`` and their files) are not trained again: their futures
    come back already done."""
    reporter.dense_started(len(settings.dense_grid))
    finished = _finished_dense(run) if run is not None and run.resume else {}
    missing = tuple(tuple(h) for h in settings.dense_grid if _key(h) not in finished)
    for _ in range(len(settings.dense_grid) - len(missing)):
        reporter.dense_done({"hidden": "trained before the interruption"})
    submitted = iter(submit_dense_jobs(executor, data, replace(settings, dense_grid=missing), on_done=reporter.dense_done))
    futures = []
    for hidden in settings.dense_grid:
        if _key(hidden) in finished:
            done: Future = Future()
            done.set_result(finished[_key(hidden)])
            futures.append(done)
        else:
            futures.append(next(submitted))
    return futures


def _key(hidden) -> str:
    return "x".join(str(int(h)) for h in hidden)


def _finished_dense(run: RunContext) -> dict[str, dict[str, Any]]:
    """The records (with their networks' states) of an interrupted sweep's finished networks."""
    path = run.file(DENSE_PARTIAL)
    if not path.exists():
        return {}
    finished = {}
    for record in read_json(path, list):
        file = run.path / dense_file(record["hidden"])
        if file.exists():
            finished[_key(record["hidden"])] = {**record, "net": net_to_state(load(file))}
    return finished


def collect_dense(
    futures: list[Future], run: RunContext, data: Task, settings: TaskSettings
) -> list[dict[str, Any]]:
    """Wait for the dense jobs, save their networks under dense/ (with the task's preprocessing,
    loss scale and training config) as each finishes, with ``dense_partial.json`` listing them
    (so an interrupted sweep resumes with only the rest), then write dense.json."""
    (run.path / "dense").mkdir(exist_ok=True)
    results = []
    for future in futures:
        item = future.result()
        net = net_from_state(item.pop("net"))
        save(net, run.path / dense_file(item["hidden"]), info=_model_info(data, settings, {"hidden": item["hidden"]}))
        results.append(item)
        run.write_json(DENSE_PARTIAL, results)
    run.write_json("dense.json", results)
    run.file(DENSE_PARTIAL).unlink(missing_ok=True)
    return results


def dense_file(hidden: list[int] | tuple[int, ...]) -> str:
    """Where a run directory keeps the dense network with these hidden layers (``dense/10x11``)."""
    return "dense/" + "x".join(str(h) for h in hidden)


def load_dense(run: RunContext) -> list[dict[str, Any]] | None:
    """Dense results of an earlier (interrupted) run, if its sweep had finished."""
    path = run.file("dense.json")
    return read_json(path, list) if path.exists() else None


# ---------------------------------------------------------------------- magnitude pruning
def submit_magnitude(executor, data: Task, settings: TaskSettings) -> Future | None:
    """The magnitude-pruning baseline as one executor job (None when it is switched off)."""
    if not settings.magnitude.enabled:
        return None
    return executor.submit(magnitude_job, shipped_task(data), settings)


def collect_magnitude(future: Future, run: RunContext, data: Task, settings: TaskSettings) -> dict[str, Any]:
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


def load_magnitude(run: RunContext) -> dict[str, Any] | None:
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
