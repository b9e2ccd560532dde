"""Paper 004 on MNIST: which blocks matter, how many can go, and growing a residual CNN.

``netbonsai reproduce residual-mnist`` runs four jobs (each one executor job, checkpointed when it
ends, so ``--resume`` runs only the others):

- ``cnn``: the hand-picked residual CNN (3 stages x 4 blocks: a downsampling block and 3
  removable blocks per stage) trained for the preset's epochs; (a) every block scored on the
  held-out batch by the lesion and each cheap measure, and what each costs against one forward
  pass; (b) whole-block pruning: the least efficient block (the cheap measure that ranked the
  blocks most like the lesion on the validation rows; per block by default, per parameter as an
  option) removed and the network retrained briefly, while the validation error stays within 0.1
  points of the start's;
- ``mlp``: (a) for a residual MLP (8 blocks);
- ``grow-zero`` and ``grow-random``: (c) from one block per stage (the downsampling blocks
  alone), AutoGrow's round robin inserts a zero-initialised (or random) block every growth
  interval until its convergent policy stops it (or the 3 x 4 network is reached), then the
  network trains on: every network of (c) gets the same optimiser steps as the fixed one.

Every training is minibatch Adam at the preset's learning rate, its last ``anneal_epochs`` at a
tenth of it. Validation images (held out of the training images, seeded) drive every
decision; test errors (fractions) are measured once per network, at the end of its job.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..data.idx import resolve_data_root
from ..data.specs import idx_task
from ..data.task import Task
from ..errors import InputError
from ..residual import (
    ConvergentPolicy, ResidualCNN, ResidualMLP, block_scores, blocks_per_stage, count_params, find_blocks,
    grow_blocks, prune_blocks, spearman,
)
from ..residual.efficiency import MEASURES, PER
from ..residual.io import load_residual_cnn, save_residual_cnn
from ..residual.loop import validation
from ..runs import RunContext
from ..train import Budget, TrainerConfig, fit
from ..train.losses import correct_predictions
from .presets import reproduce_config

KIND = "residual-mnist"
CHEAP = tuple(m for m in MEASURES if m != "lesion")
JOBS = ("cnn", "grow-zero", "grow-random", "mlp")  # longest first: two workers overlap cnn with the rest
EVAL_ROWS = 2_000  # test images per forward pass when measuring errors


@dataclass(frozen=True)
class ResidualMnistSettings:
    """One preset: the data, the networks, the training schedule, pruning and growth."""

    max_train: int | None = None  # training images (None: all but the validation ones)
    val_size: int = 5_000
    max_test: int | None = None
    score_rows: int = 2_000  # the held-out batch every block is scored on (the first validation rows)
    timing_repeats: int = 3
    mlp_width: int = 64
    mlp_blocks: int = 8
    cnn_widths: tuple[int, ...] = (8, 16, 32)
    cnn_blocks: int = 4  # per stage, the downsampling block included
    epochs: int = 10  # every network's training (growth included)
    anneal_epochs: int = 2  # the last epochs at lr / 10
    lr: float = 1e-3
    batch_size: int = 64
    prune_measure: str = "auto"  # or a cheap measure; auto: the best Spearman on the CNN's validation rows
    prune_per: str = "block"  # efficiency = score per block, per parameter ("params": paper 004) or per FLOP
    prune_error_tolerance: float = 0.001  # 0.1 points of validation error
    prune_retrain_epochs: int = 1  # at lr / 10 after each removal
    grow_interval: float = 0.25  # epochs of training after each inserted block
    grow_threshold: float = 0.001  # convergent policy: least gain of the moving validation accuracy
    grow_window: int = 2

    def __post_init__(self) -> None:
        positive = {"val_size": self.val_size, "score_rows": self.score_rows, "timing_repeats": self.timing_repeats,
                    "mlp_width": self.mlp_width, "mlp_blocks": self.mlp_blocks, "epochs": self.epochs,
                    "batch_size": self.batch_size, "cnn_blocks": self.cnn_blocks, "grow_window": self.grow_window}
        for name, value in positive.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be an integer >= 1, got {value!r}")
        if self.cnn_blocks < 2:
            raise InputError(f"cnn_blocks must be >= 2 (a downsampling block and a removable one), got {self.cnn_blocks}")
        if not self.cnn_widths or any(not isinstance(w, int) or w < 1 for w in self.cnn_widths):
            raise InputError(f"cnn_widths must be positive integers, got {self.cnn_widths!r}")
        if not 0 <= self.anneal_epochs < self.epochs:
            raise InputError(f"anneal_epochs must be in [0, epochs), got {self.anneal_epochs}")
        if self.prune_measure != "auto" and self.prune_measure not in MEASURES:
            raise InputError(f"prune_measure must be auto or one of {', '.join(MEASURES)}, got {self.prune_measure!r}")
        if self.prune_per not in PER:
            raise InputError(f"prune_per must be one of {', '.join(PER)}, got {self.prune_per!r}")
        if not 0 <= self.prune_error_tolerance < 1 or self.prune_retrain_epochs < 0:
            raise InputError("prune_error_tolerance must be in [0, 1) and prune_retrain_epochs >= 0")
        if not 0 < self.grow_interval <= self.epochs - self.anneal_epochs:
            raise InputError(f"grow_interval must be in (0, epochs - anneal_epochs], got {self.grow_interval}")
        if not math.isfinite(self.grow_threshold) or not 0 < self.lr < math.inf:
            raise InputError("grow_threshold and lr must be finite (lr > 0)")

    def trainer(self, annealed: bool = False) -> TrainerConfig:
        return TrainerConfig(method="adam", loss="cross_entropy", lr=self.lr / 10 if annealed else self.lr,
                             batch_size=self.batch_size)


PRESETS: dict[str, ResidualMnistSettings] = {
    # about 10 minutes on 2 cores: 10,000 training images, 6 epochs, scores timed once
    "quick": ResidualMnistSettings(max_train=10_000, epochs=6, anneal_epochs=1, timing_repeats=1),
    # all 55,000 training images, 10 epochs (the last 2 annealed): about 1.5 hours on 2 cores
    "paper": ResidualMnistSettings(),
}


def residual_mnist_settings(preset: str) -> ResidualMnistSettings:
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[preset]


def _task(root: str, settings: ResidualMnistSettings, seed: int) -> Task:
    task = idx_task(root, val_size=settings.val_size, seed=seed, max_train=settings.max_train,
                    max_test=settings.max_test)
    if task.meta["preprocessing"]["image_shape"] is None:
        raise InputError(f"the images in {root} are not square; the residual CNN needs their shape")
    return task


def steps_per_epoch(task: Task, settings: ResidualMnistSettings) -> int:
    return math.ceil(len(task.train) / settings.batch_size)


def _train(model: nn.Module, task: Task, settings: ResidualMnistSettings, steps: int, seed: int) -> None:
    """``steps`` optimiser steps: all but the last ``anneal_epochs`` worth at the preset's
    learning rate, those at a tenth of it (a fresh Adam each phase)."""
    anneal = min(steps, settings.anneal_epochs * steps_per_epoch(task, settings))
    if steps - anneal > 0:
        fit(model, task.train, Budget(steps=steps - anneal), settings.trainer(), seed=seed)
    if anneal > 0:
        fit(model, task.train, Budget(steps=anneal), settings.trainer(annealed=True), seed=seed + 10_007)


def test_error(model: nn.Module, task: Task) -> float:
    """Error rate on the test images (eval mode, in slices of EVAL_ROWS; modes restored after)."""
    wrong = len(task.test) - correct_predictions(model, task.test.x, task.test.y, EVAL_ROWS)
    return wrong / len(task.test)


def _cnn(task: Task, settings: ResidualMnistSettings, blocks: int, seed: int) -> ResidualCNN:
    torch.manual_seed(seed)
    side = task.meta["preprocessing"]["image_shape"]
    return ResidualCNN(1, settings.cnn_widths, blocks, task.n_out, image_size=side)


def _figures(model: nn.Module, task: Task) -> dict[str, Any]:
    val_loss, val_error = validation(model, task)
    return {"blocks": len(find_blocks(model)), "blocks_per_stage": blocks_per_stage(model),
            "params": count_params(model), "val_error": val_error, "val_loss": val_loss,
            "test_error": test_error(model, task)}


def _median_seconds(work: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def metric_check(model: nn.Module, task: Task, settings: ResidualMnistSettings, timed: bool) -> dict[str, Any]:
    """Every block's lesion and cheap scores on the held-out batch, each cheap measure's Spearman
    with the lesion and (``timed``) the seconds of one forward pass, of each measure alone, of
    all cheap ones together and of the lesion."""
    x, y = task.x_val[:settings.score_rows], task.y_val[:settings.score_rows]
    loss = nn.functional.cross_entropy
    scores = block_scores(model, x, y, loss)
    found = {"spearman": {m: spearman(scores[m], scores["lesion"]) for m in CHEAP},
             "scores": {m: v.tolist() for m, v in scores.items()}, "rows": int(x.shape[0])}
    if timed:
        model.eval()
        repeats = settings.timing_repeats
        with torch.no_grad():
            forward = _median_seconds(lambda: model(x), repeats)
        seconds = {m: _median_seconds(lambda m=m: block_scores(model, x, y, loss, (m,)), repeats) for m in MEASURES}
        seconds["all_cheap"] = _median_seconds(lambda: block_scores(model, x, y, loss, CHEAP), repeats)
        found["seconds"] = {"forward": forward, **seconds}
        found["forward_passes"] = {k: v / forward for k, v in seconds.items()}
    return found


def best_measure(spearmans: dict[str, float]) -> str:
    """The cheap measure with the highest Spearman (NaN counts lowest; ties: the first of CHEAP)."""
    return max(CHEAP, key=lambda m: (-math.inf if math.isnan(spearmans[m]) else spearmans[m], -CHEAP.index(m)))


def cnn_job(root: str, settings: ResidualMnistSettings, seed: int, folder: str) -> dict[str, Any]:
    """The fixed 3 x 4 CNN: trained, scored (metric check), pruned; both networks saved in ``folder``."""
    started = time.perf_counter()
    task = _task(root, settings, seed)
    model = _cnn(task, settings, settings.cnn_blocks, seed)
    _train(model, task, settings, settings.epochs * steps_per_epoch(task, settings), seed)
    fixed = _figures(model, task)
    metrics = metric_check(model, task, settings, timed=True)
    measure = best_measure(metrics["spearman"]) if settings.prune_measure == "auto" else settings.prune_measure
    pruned = prune_blocks(model, task, settings.trainer(annealed=True), measure=measure, per=settings.prune_per,
                          error_tolerance=settings.prune_error_tolerance,
                          retrain_epochs=settings.prune_retrain_epochs, seed=seed)
    after = _figures(pruned.model, task)
    save_residual_cnn(model, Path(folder) / "fixed-3x4.pt", {"experiment": KIND, "network": "fixed"})
    save_residual_cnn(pruned.model, Path(folder) / "pruned.pt", {"experiment": KIND, "network": "pruned"})
    steps = [{k: v for k, v in s.items() if k != "model"} for s in pruned.steps]
    return {"fixed": fixed, "metrics": metrics, "seconds": time.perf_counter() - started,
            "pruning": {"measure": measure, "per": settings.prune_per, "blocks_before": fixed["blocks"], "blocks_after": after["blocks"],
                        "params_before": fixed["params"], "params_after": after["params"],
                        "test_error_before": fixed["test_error"], "test_error_after": after["test_error"],
                        "val_error_before": fixed["val_error"], "val_error_after": after["val_error"],
                        "blocks_per_stage_after": after["blocks_per_stage"], "stop_reason": pruned.stop_reason,
                        "steps": steps}}


def mlp_job(root: str, settings: ResidualMnistSettings, seed: int, folder: str) -> dict[str, Any]:
    """The residual MLP's metric check."""
    started = time.perf_counter()
    task = _task(root, settings, seed)
    torch.manual_seed(seed)
    model = ResidualMLP(task.n_in, settings.mlp_width, settings.mlp_blocks, task.n_out)
    _train(model, task, settings, settings.epochs * steps_per_epoch(task, settings), seed)
    return {"network": _figures(model, task), "metrics": metric_check(model, task, settings, timed=False),
            "seconds": time.perf_counter() - started}


def grow_job(root: str, settings: ResidualMnistSettings, seed: int, folder: str, init: str) -> dict[str, Any]:
    """Growth from one block per stage with ``init`` blocks, then training to the fixed network's
    optimiser steps; the grown network saved in ``folder``."""
    started = time.perf_counter()
    task = _task(root, settings, seed)
    per_epoch = steps_per_epoch(task, settings)
    total = settings.epochs * per_epoch
    interval = max(1, round(settings.grow_interval * per_epoch))
    model = _cnn(task, settings, 1, seed)
    fit(model, task.train, Budget(steps=interval), settings.trainer(), seed=seed)
    stages = len(settings.cnn_widths)
    room = (total - settings.anneal_epochs * per_epoch) // interval - 1  # growth ends before the annealing
    steps = max(0, min(stages * (settings.cnn_blocks - 1), room))
    policy = ConvergentPolicy(settings.grow_threshold, settings.grow_window)
    grown = grow_blocks(model, task, settings.trainer(), steps=steps, init=init, policy=policy, seed=seed,
                        budget_per_step=Budget(steps=interval))
    used = interval * (1 + len(grown.records))
    _train(grown.model, task, settings, total - used, seed + 1_000)
    save_residual_cnn(grown.model, Path(folder) / f"grown-{init}.pt", {"experiment": KIND, "network": f"grown-{init}"})
    return {**_figures(grown.model, task), "init": init, "growth_steps": len(grown.records),
            "stop_reason": grown.stop_reason, "records": grown.records, "optimizer_steps": total,
            "growth_optimizer_steps": used, "seconds": time.perf_counter() - started}


def run_job(name: str, root: str, settings: ResidualMnistSettings, seed: int, folder: str) -> dict[str, Any]:
    """One of :data:`JOBS` (an executor job: picklable arguments, loads the images itself)."""
    if name == "cnn":
        return cnn_job(root, settings, seed, folder)
    if name == "mlp":
        return mlp_job(root, settings, seed, folder)
    return grow_job(root, settings, seed, folder, init=name.removeprefix("grow-"))


def assemble(jobs: dict[str, Any], wall: float) -> dict[str, Any]:
    """result.json in the issue's schema (test errors as fractions), with the detail kept beside it."""
    cnn, mlp = jobs["cnn"], jobs["mlp"]
    growth = {"fixed_3x4": {k: cnn["fixed"][k] for k in ("blocks", "blocks_per_stage", "params", "test_error",
                                                          "val_error")}}
    for init in ("zero", "random"):
        grown = jobs[f"grow-{init}"]
        growth[init] = {k: grown[k] for k in ("blocks", "blocks_per_stage", "params", "test_error", "val_error",
                                              "growth_steps", "stop_reason", "records")}
    pruning = cnn["pruning"]
    return {"experiment": KIND,
            "metrics": {"mlp": mlp["metrics"]["spearman"], "cnn": cnn["metrics"]["spearman"]},
            "pruning": pruning, "growth": growth,
            "scoring": {"cnn_seconds": cnn["metrics"].get("seconds"),
                        "cnn_forward_passes": cnn["metrics"].get("forward_passes"),
                        "rows": cnn["metrics"]["rows"]},
            "scores": {"mlp": mlp["metrics"]["scores"], "cnn": cnn["metrics"]["scores"]},
            "mlp_network": mlp["network"],
            "headline": {
                "best_cheap_spearman": {net: max(v for v in jobs[net]["metrics"]["spearman"].values()
                                                  if not math.isnan(v)) for net in ("mlp", "cnn")},
                "blocks_removed_fraction": 1 - pruning["blocks_after"] / pruning["blocks_before"],
                "pruning_test_error_change": pruning["test_error_after"] - pruning["test_error_before"],
                "grown_zero_minus_fixed_test_error": growth["zero"]["test_error"] - growth["fixed_3x4"]["test_error"]},
            "job_seconds": {name: jobs[name]["seconds"] for name in JOBS},
            "wall_seconds": wall}


def reproduce_residual_mnist(out: str | Path, preset: str = "quick", data_root: str | None = None, seed: int = 0,
                             resume: bool = False, executor: str = "process", workers: int = 2,
                             on_progress: Callable[[str], None] | None = None,
                             settings: ResidualMnistSettings | None = None) -> dict[str, Any]:
    """Run the four jobs into ``out``; writes result.json, report.md, blocks.png and the networks."""
    settings = settings or residual_mnist_settings(preset)
    root = str(resolve_data_root(data_root).resolve())
    task = _task(root, settings, seed)  # validates the data before the run folder exists
    config = reproduce_config(KIND, preset, seed, root, {"n_train": len(task.train), "n_val": len(task.val),
                                                         "n_test": len(task.test)}, settings)
    del task
    say = on_progress or (lambda text: None)
    started = time.perf_counter()
    with RunContext(out, config, kind=KIND, resume=resume, executor=executor, workers=workers) as ctx:
        saved = ctx.restore() or {"jobs": {}, "seconds": 0.0}
        jobs: dict[str, Any] = saved["jobs"]
        earlier = float(saved["seconds"])
        pending = {name: ctx.executor.submit(run_job, name, root, settings, seed, str(ctx.path))
                   for name in JOBS if name not in jobs}
        for name, future in pending.items():
            jobs[name] = future.result()
            ctx.checkpoint({"jobs": jobs, "seconds": earlier + time.perf_counter() - started})
            ctx.emit("job", job=name, seconds=jobs[name]["seconds"])
            say(f"{name}: {summary(name, jobs[name])}")
        result = {"preset": preset, "seed": seed, **assemble(jobs, earlier + time.perf_counter() - started)}
        ctx.write_result(result)
        from ..analysis.residual_plots import plot_blocks_per_stage

        plot_blocks_per_stage(result, ctx.path / "blocks.png")
        ctx.write_report(report(result))
    return result


def summary(name: str, job: dict[str, Any]) -> str:
    """One progress line for a finished job."""
    if name == "cnn":
        p = job["pruning"]
        return (f"3x4 test error {p['test_error_before']:.2%}, best cheap measure {p['measure']}; pruned "
                f"{p['blocks_before']} -> {p['blocks_after']} blocks, test error {p['test_error_after']:.2%}")
    if name == "mlp":
        return "Spearman with the lesion " + ", ".join(f"{m} {v:+.2f}" for m, v in job["metrics"]["spearman"].items())
    return (f"grew to {job['blocks_per_stage']} blocks per stage ({job['stop_reason']}), "
            f"test error {job['test_error']:.2%}")


def tables(result: dict[str, Any]) -> str:
    """The metric check, pruning, growth and scoring-cost tables (for report.md and ``show``)."""
    from ..analysis.report import markdown_table

    metrics = markdown_table(["network", *CHEAP], [[net, *(f"{result['metrics'][net][m]:+.3f}" for m in CHEAP)]
                                                     for net in ("mlp", "cnn")])
    p = result["pruning"]
    pruning = markdown_table(["", "blocks", "params", "val error", "test error"], [
        ["before", p["blocks_before"], p["params_before"], f"{p['val_error_before']:.2%}", f"{p['test_error_before']:.2%}"],
        ["after", p["blocks_after"], p["params_after"], f"{p['val_error_after']:.2%}", f"{p['test_error_after']:.2%}"]])
    growth = markdown_table(["network", "blocks per stage", "params", "val error", "test error"], [
        [name, g["blocks_per_stage"], g["params"], f"{g['val_error']:.2%}", f"{g['test_error']:.2%}"]
        for name, g in result["growth"].items()])
    lines = ["Spearman of each cheap measure with the lesion:", "", metrics, "",
             f"Pruning by {p['measure']} per {p.get('per', 'params').removesuffix('s')} ({p['stop_reason']}):", "", pruning, "",
             "Growth at equal optimiser steps:", "", growth]
    passes = result["scoring"].get("cnn_forward_passes")
    if passes:
        lines += ["", "Scoring cost on the CNN, in forward passes over the held-out batch:", "",
                  markdown_table(list(passes), [[f"{v:.1f}" for v in passes.values()]])]
    return "\n".join(lines)


def report(result: dict[str, Any]) -> str:
    """report.md: the tables and the picture."""
    return "\n".join([f"# {KIND}: residual blocks (paper 004)", "", tables(result), "",
                      "![blocks per stage](blocks.png)", "", f"wall {result['wall_seconds']:.0f} s", ""])


__all__ = ["PRESETS", "ResidualMnistSettings", "load_residual_cnn", "reproduce_residual_mnist",
           "residual_mnist_settings", "run_job"]
