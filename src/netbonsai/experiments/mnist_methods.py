"""``netbonsai reproduce mnist-pruning-methods``: paper 001, Fig. 2a.

Two ReLU MLPs (784-100-10 and 784-300-100-10) are trained densely with Adam, then each of the
five pruning methods of paper 001 (random, magnitude class-blinded / class-uniform /
class-distributed, Optimal Brain Damage) removes weights up to compression levels from 0 to 99%:

- *no retraining*: the trained dense network pruned in one shot to each level;
- *retrained*: pruned iteratively from level to level, with a short Adam retraining after each.

Test accuracy is reported per level (the test set decides nothing). The (architecture, method)
curves are independent jobs on the executor (a local process pool by default), checkpointed as
each finishes, so ``--resume`` skips finished curves. The run directory is a
:class:`netbonsai.runs.RunContext` of kind ``mnist-pruning-methods``; result.json records the
``environment`` the figures were measured in.
"""

from __future__ import annotations

import functools
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from .. import __version__
from ..analysis.report import value_at
from ..data.idx import resolve_data_root
from ..nets.masked import make_prunable
from ..prune import METHODS, classification_evaluator, prune_step
from ..prune.groups import live_weights
from ..runs import RunContext
from ..data.specs import idx_task
from ..data.task import Task
from .presets import pick_preset
from .classification import adam_trainer, build_mlp, parse_arch, train_classifier

PAPER_METHODS = METHODS  # random, magnitude-blinded, magnitude-uniform, magnitude-distributed, obd
ARCHS = ("784-100-10", "784-300-100-10")
LEVELS = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)


@dataclass(frozen=True)
class MethodsSettings:
    """One preset of the experiment."""

    preset: str
    dense_epochs: int
    retrain_epochs: int
    lr: float = 1e-3
    batch_size: int = 64
    # L2 on dense training and retraining: magnitude pruning relies on it (Han et al. 2015); measured
    # on 784-300-100-10, blinded at 95%: 97.1% test accuracy without, 98.05% with 1e-4.
    weight_decay: float = 1e-4
    val_size: int = 5000
    obd_samples: int = 2048
    max_train: int | None = None
    archs: tuple[str, ...] = ARCHS
    methods: tuple[str, ...] = PAPER_METHODS
    levels: tuple[float, ...] = LEVELS
    seed: int = 0


def methods_settings(preset: str = "quick", seed: int = 0) -> MethodsSettings:
    """``quick`` (minutes on 2 cores) or ``paper`` (longer dense training and retraining)."""
    return pick_preset(preset, {
        "quick": lambda: MethodsSettings("quick", dense_epochs=10, retrain_epochs=1, seed=seed),
        "paper": lambda: MethodsSettings("paper", dense_epochs=40, retrain_epochs=4, seed=seed),
    })


@functools.lru_cache(maxsize=2)
def _split(root: str, settings: MethodsSettings) -> Task:
    """The experiment's data split, loaded once per process (jobs get the folder, not 200 MB of tensors)."""
    return idx_task(root, val_size=settings.val_size, seed=settings.seed,
                                         max_train=settings.max_train)


def _curve_job(arch: str, method: str, dense_state: dict[str, torch.Tensor], root: str, settings: MethodsSettings
               ) -> list[dict[str, Any]]:
    """One (architecture, method) curve: accuracy at every level, without and with retraining."""
    data = _split(root, settings)
    widths = parse_arch(arch)
    evaluate_test = classification_evaluator(data.x_test, data.y_test)
    evaluate_val = classification_evaluator(data.x_val, data.y_val)
    obd_data = (data.x_train[: settings.obd_samples], data.y_train[: settings.obd_samples])
    trainer = adam_trainer(settings.lr, settings.batch_size, settings.weight_decay)

    def fresh() -> torch.nn.Module:
        model = make_prunable(build_mlp(widths, "relu", seed=settings.seed))
        model.load_state_dict(dense_state)
        return model

    dense = fresh()
    total = live_weights(dense)
    iterative = fresh()
    points = []
    for i, level in enumerate(settings.levels):
        goal = int(round(level * total))
        oneshot = fresh()
        generator = torch.Generator().manual_seed(settings.seed + 1000 * i)
        if goal:
            prune_step(oneshot, method, goal, data=obd_data, generator=generator)
        removed_so_far = total - live_weights(iterative)
        if goal > removed_so_far:
            prune_step(iterative, method, goal - removed_so_far, data=obd_data, generator=generator)
            train_classifier(iterative, data.x_train, data.y_train, settings.retrain_epochs, trainer,
                             seed=settings.seed + 1 + i)
        points.append({
            "compression": level,
            "live_weights": live_weights(iterative),
            "accuracy_no_retrain": evaluate_test(oneshot)["accuracy"],
            "accuracy_retrained": evaluate_test(iterative)["accuracy"],
            "val_accuracy_no_retrain": evaluate_val(oneshot)["accuracy"],
            "val_accuracy_retrained": evaluate_val(iterative)["accuracy"],
        })
    return points


def _dense_job(arch: str, root: str, settings: MethodsSettings) -> dict[str, Any]:
    data = _split(root, settings)
    model = make_prunable(build_mlp(parse_arch(arch), "relu", seed=settings.seed))
    started = time.perf_counter()
    train_classifier(model, data.x_train, data.y_train, settings.dense_epochs,
                     adam_trainer(settings.lr, settings.batch_size, settings.weight_decay), seed=settings.seed)
    test = classification_evaluator(data.x_test, data.y_test)(model)
    return {"state": model.state_dict(), "accuracy": test["accuracy"], "seconds": time.perf_counter() - started}


def reproduce_mnist_pruning_methods(
    out: str | Path,
    preset: str = "quick",
    data_root: str | None = None,
    seed: int = 0,
    resume: bool = False,
    executor: str = "process",
    workers: int = 2,
    on_progress: Callable[[str], None] | None = None,
    settings: MethodsSettings | None = None,
) -> dict[str, Any]:
    """Run the experiment into ``out``; returns what result.json holds."""
    settings = settings or methods_settings(preset, seed)
    started = time.perf_counter()
    root = str(resolve_data_root(data_root).resolve())
    data = _split(root, settings)
    config = {"command": "reproduce", "experiment": "mnist-pruning-methods", "netbonsai_version": __version__,
              "seed": settings.seed, "data": root, "split": data.describe(),
              **{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(settings).items()}}
    with RunContext(out, config, kind="mnist-pruning-methods", resume=resume, executor=executor,
                    workers=workers) as ctx:
        return _run(ctx, settings, root, started, on_progress)


def _run(ctx: RunContext, settings: MethodsSettings, root: str, started: float,
         on_progress: Callable[[str], None] | None) -> dict[str, Any]:
    state = ctx.restore() or {"dense": {}, "curves": {}, "seconds": 0.0}
    # history.jsonl is rebuilt from the checkpoint: nothing after it survives, nothing is duplicated
    ctx.rewind_history(
        [_dense_event(arch, state["dense"][arch]) for arch in state["dense"]]
        + [_curve_event(key, points) for key, points in state["curves"].items()]
    )
    elapsed_before = float(state["seconds"])
    clock = time.perf_counter()
    say = on_progress or (lambda text: None)

    def checkpoint() -> None:
        state["seconds"] = elapsed_before + time.perf_counter() - clock
        ctx.checkpoint(state)

    pool = ctx.executor  # shut down when the context closes
    pending = {arch: pool.submit(_dense_job, arch, root, settings) for arch in settings.archs if arch not in state["dense"]}
    for arch, future in pending.items():
        state["dense"][arch] = future.result()
        say(f"dense {arch}: test accuracy {state['dense'][arch]['accuracy']:.4f}")
        checkpoint()
        ctx.emit_event(_dense_event(arch, state["dense"][arch]))
    jobs = {
        (arch, method): pool.submit(_curve_job, arch, method, state["dense"][arch]["state"], root, settings)
        for arch in settings.archs for method in settings.methods
        if f"{arch}|{method}" not in state["curves"]
    }
    for (arch, method), future in jobs.items():
        state["curves"][f"{arch}|{method}"] = future.result()
        say(f"{arch} {method}: done")
        checkpoint()
        ctx.emit_event(_curve_event(f"{arch}|{method}", state["curves"][f"{arch}|{method}"]))
    curves: dict[str, dict[str, list]] = {}
    for arch in settings.archs:
        curves[arch] = {method: state["curves"][f"{arch}|{method}"] for method in settings.methods}
    result = {
        "experiment": "mnist-pruning-methods",
        "preset": settings.preset,
        "seed": settings.seed,
        "dense_accuracy": {arch: state["dense"][arch]["accuracy"] for arch in settings.archs},
        "curves": curves,
        "headline": _headline(curves),
        "wall_seconds": elapsed_before + time.perf_counter() - clock,
        "session_seconds": time.perf_counter() - started,
    }
    ctx.write_result(result)
    _report(ctx, settings, result)
    return result


def _dense_event(arch: str, dense: dict[str, Any]) -> dict[str, Any]:
    return {"event": "dense", "arch": arch, "test_accuracy": dense["accuracy"], "seconds": dense["seconds"]}


def _curve_event(key: str, points: list[dict[str, Any]]) -> dict[str, Any]:
    arch, method = key.split("|")
    return {"event": "curve", "arch": arch, "method": method, "points": points}


def _accuracy_at(points: list[dict[str, Any]], level: float, key: str = "accuracy_retrained") -> float | None:
    return value_at(points, level, key, "compression")


def _headline(curves: dict[str, dict[str, list]]) -> dict[str, Any]:
    """The issue's targets: class-blinded on 784-300-100-10 at 80% and 95% compression."""
    blinded = curves.get("784-300-100-10", {}).get("magnitude-blinded", [])
    return {
        "blinded_300_100_at_0.8": _accuracy_at(blinded, 0.8),
        "blinded_300_100_at_0.95": _accuracy_at(blinded, 0.95),
    }


def _report(ctx: RunContext, settings: MethodsSettings, result: dict[str, Any]) -> None:
    from ..analysis.plots import curve_plot
    from ..analysis.report import markdown_table

    curve_plot(
        result["curves"], ctx.file("pruning_methods.png"), x="compression",
        ys={"accuracy_retrained": "retrained", "accuracy_no_retrain": "no retraining"},
        xlabel="compression (fraction of weights removed)", ylabel="test accuracy", ylim=(0.0, 1.0),
        title="MNIST: pruning methods (paper 001, Fig. 2a)",
    )
    curve_plot(
        result["curves"], ctx.file("pruning_methods_zoom.png"), x="compression",
        ys={"accuracy_retrained": "retrained", "accuracy_no_retrain": "no retraining"},
        xlabel="compression (fraction of weights removed)", ylabel="test accuracy", ylim=(0.9, 1.0),
        title="MNIST: pruning methods, accuracy above 90%",
    )
    sections = []
    for arch, methods in result["curves"].items():
        levels = [p["compression"] for p in next(iter(methods.values()))]
        header = ["method"] + [f"{level:g}" for level in levels]
        for key, label in (("accuracy_retrained", "retrained"), ("accuracy_no_retrain", "no retraining")):
            rows = [[m] + [f"{p[key]:.4f}" for p in pts] for m, pts in methods.items()]
            sections.append(f"### {arch}, {label} (test accuracy by compression)\n\n" + markdown_table(header, rows))
    head = result["headline"]
    ctx.write_report(
        f"# netbonsai reproduce mnist-pruning-methods (preset {settings.preset})\n\n"
        f"Dense test accuracy: " + ", ".join(f"{a} {v:.4f}" for a, v in result["dense_accuracy"].items())
        + f". Adam lr {settings.lr}, batch {settings.batch_size}, weight decay {settings.weight_decay:g}, "
        f"{settings.dense_epochs} dense epochs, "
        f"{settings.retrain_epochs} retraining epoch(s) per level. Wall time {result['wall_seconds']:.1f} s.\n\n"
        f"Class-blinded on 784-300-100-10, retrained: {head['blinded_300_100_at_0.8']} at 80%, "
        f"{head['blinded_300_100_at_0.95']} at 95% compression.\n\n"
        + "\n".join(sections)
        + "\n![methods](pruning_methods.png)\n![zoom](pruning_methods_zoom.png)\n",
    )
