"""``reproduce reber-rnn-pruning`` (paper 001, Fig. 2b / 5): prune recurrent networks on the Reber grammar, before and after retraining."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..analysis.report import value_at
from ..errors import InputError
from ..nets.recurrent import CELLS, MaskedRecurrent, stack_members
from ..nets.structure import LayeredStructure
from ..prune.criteria import prune_step
from ..runs import RunContext
from .reber_common import (CELL_NAMES, LEVELS, PAPER_BASE, PARTS, Progress, ReberTraining, _reber, _run_jobs,
                           _test_accuracy, _train, run_experiment)
from .presets import pick_preset, with_settings


@dataclass(frozen=True)
class PruningSettings:
    """One preset of reber-rnn-pruning (everything here goes into config.json)."""

    preset: str
    training: ReberTraining = ReberTraining()
    widths: tuple[int, ...] = (50, 50, 50)
    cells: tuple[str, ...] = CELL_NAMES
    base_epochs: int = 50
    retrain_epochs: int = 1
    levels: tuple[float, ...] = LEVELS
    parts: tuple[str, ...] = PARTS
    method: str = "magnitude-blinded"  # one global ranking of |w| over the pruned part, as the authors did

    def validate(self) -> None:
        self.training.validate()
        if not self.widths or min(self.widths) < 1:
            raise InputError(f"widths must be positive, got {list(self.widths)}")
        unknown = [c for c in self.cells if c not in CELLS] + [p for p in self.parts if p not in PARTS]
        if unknown:
            raise InputError(f"unknown cell or part {unknown[0]!r}; cells: {', '.join(CELLS)}; parts: {', '.join(PARTS)}")
        if not self.levels or not all(0 < level <= 1 for level in self.levels):
            raise InputError(f"pruning levels must be in (0, 1], got {list(self.levels)}")
        if self.base_epochs < 1 or self.retrain_epochs < 0:
            raise InputError("base_epochs must be >= 1 and retrain_epochs >= 0")


def pruning_settings(preset: str = "quick", **overrides: Any) -> PruningSettings:
    """``quick``: 3 base epochs; ``paper``: the authors' 50; ``smoke``: tiny, for tests."""
    settings = pick_preset(preset, {
        "quick": lambda: PruningSettings(preset="quick", base_epochs=3),
        "paper": lambda: PruningSettings(preset="paper", base_epochs=50),
        "smoke": lambda: PruningSettings(
            preset="smoke", training=ReberTraining(n_strings=600, embedding_dim=8, batch_size=32, max_test=200),
            widths=(6, 6), base_epochs=1, levels=(0.5, 1.0)),
    })
    return with_settings(settings, overrides, "reber-rnn-pruning", validate=lambda s: s.validate())


def prune_variants(base: MaskedRecurrent, parts: Sequence[str], levels: Sequence[float], method: str) -> MaskedRecurrent:
    """One pruned copy of the (K=1) ``base`` per (part, level), stacked into one population in that order."""
    variants = []
    for part in parts:
        for level in levels:
            variant = copy.deepcopy(base)
            prune_step(variant, method, float(level), parts=part)
            variants.append(variant)
    return stack_members(variants)


def _pruning_job(cell: str, settings: PruningSettings, seed: int) -> dict[str, Any]:
    """Train one cell's base network, prune it at every (part, level), retrain the variants together."""
    started = time.perf_counter()
    training = settings.training
    data = _reber(training, seed)
    structure = LayeredStructure.stacked(training.embedding_dim, settings.widths)
    base = MaskedRecurrent([structure], cell, 2, vocab_size=128, embedding_dim=training.embedding_dim, seed=seed)
    _train(base, data, settings.base_epochs, training, seed)
    base_accuracy = _test_accuracy(base, data)[0]
    population = prune_variants(base, settings.parts, settings.levels, settings.method)
    pruned = _test_accuracy(population, data)
    if settings.retrain_epochs:
        _train(population, data, settings.retrain_epochs, training, seed + 1)
        retrained = _test_accuracy(population, data)
    else:
        retrained = [None] * len(pruned)
    live = population.live_weights(("i2h", "h2h")).tolist()
    curves: dict[str, list[dict[str, Any]]] = {}
    for index, (part, level) in enumerate((p, lv) for p in settings.parts for lv in settings.levels):
        curves.setdefault(part, []).append({"pruned": float(level), "accuracy_pruned": pruned[index],
                                            "accuracy_retrained": retrained[index], "live_weights": int(live[index])})
    return {"cell": cell, "base_accuracy": base_accuracy, "curves": curves,
            "base_weights": int(base.live_weights(("i2h", "h2h"))[0]), "seconds": time.perf_counter() - started}


def reproduce_reber_rnn_pruning(
    out: str | Path, preset: str = "quick", seed: int = 0, resume: bool = False, executor: str = "process",
    workers: int = 2, on_progress: Progress | None = None, settings: PruningSettings | None = None,
) -> dict[str, Any]:
    """Paper 001 Fig. 2b / 5: prune i2h, h2h or both weights of 3x50 recurrent nets (four cells) on
    the Reber grammar at 10..100%, test accuracy right after pruning and after retraining.

    Writes ``result.json`` ("base_accuracy", "curves", "wall_seconds"), ``report.md``,
    ``pruning.png`` and ``history.jsonl`` (one event per cell); returns the result.
    """
    return run_experiment(out, "reber-rnn-pruning", settings or pruning_settings(preset), seed, resume, executor,
                          workers, on_progress, _rnn_pruning)


def _rnn_pruning(ctx: RunContext, settings: PruningSettings, seed: int, say: Progress) -> dict[str, Any]:
    state = ctx.restore() or {"done": {}, "seconds": 0.0}
    ctx.rewind_history([_cell_event(state["done"][c]) for c in settings.cells if c in state["done"]])
    clock = time.perf_counter()

    def done(cell: str, value: dict[str, Any]) -> None:
        ctx.emit_event(_cell_event(value))
        both = {p["pruned"]: p["accuracy_retrained"] for p in value["curves"].get("both", [])}
        say(f"{cell}: base accuracy {value['base_accuracy']:.4f}, both at 80% retrained {both.get(0.8)}, "
            f"{value['seconds']:.0f} s")

    jobs = {cell: (_pruning_job, cell, settings, seed) for cell in settings.cells}
    _run_jobs(ctx, state, jobs, on_done=done)
    cells = [state["done"][c] for c in settings.cells]
    result = {
        "experiment": "reber-rnn-pruning",
        "preset": settings.preset,
        "seed": seed,
        "base_accuracy": {c["cell"]: c["base_accuracy"] for c in cells},
        "curves": {c["cell"]: c["curves"] for c in cells},
        "headline": _pruning_headline(cells),
        "paper_base_accuracy": PAPER_BASE,
        "wall_seconds": float(state["seconds"]) + time.perf_counter() - clock,
    }
    state["seconds"] = result["wall_seconds"]
    ctx.checkpoint(state)
    ctx.write_result(result)
    _pruning_report(ctx, settings, result)
    return result


def _cell_event(value: dict[str, Any]) -> dict[str, Any]:
    return {"event": "cell", "cell": value["cell"], "base_accuracy": value["base_accuracy"], "curves": value["curves"],
            "seconds": value["seconds"]}


def _point(points: list[dict[str, Any]], level: float, key: str) -> float | None:
    return value_at(points, level, key, "pruned")


def _pruning_headline(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets: base accuracy and accuracy after retraining at 80% of both pruned."""
    return {
        "min_base_accuracy": min(c["base_accuracy"] for c in cells),
        "min_both_80_retrained": min((_point(c["curves"].get("both", []), 0.8, "accuracy_retrained") or 0.0)
                                     for c in cells),
    }


def _pruning_report(ctx: RunContext, settings: PruningSettings, result: dict[str, Any]) -> None:
    from ..analysis.plots import curve_plot
    from ..analysis.report import markdown_table

    curve_plot(result["curves"], ctx.file("pruning.png"), x="pruned",
               ys={"accuracy_retrained": f"after {settings.retrain_epochs} retraining epoch(s)",
                   "accuracy_pruned": "right after pruning"},
               xlabel="fraction of the part's weights pruned", ylabel="test accuracy", ylim=(0.4, 1.01))
    header = ["cell", "part"] + [f"{round(100 * level)}%" for level in settings.levels]
    rows = []
    for cell, parts in result["curves"].items():
        for part, points in parts.items():
            rows.append([cell, part] + [_pair(p) for p in points])
    base = markdown_table(["cell", "base test accuracy", "paper"],
                          [[c, f"{a:.4f}", f"{PAPER_BASE.get(c, float('nan')):.3f}"] for c, a in result["base_accuracy"].items()])
    text = (f"# reber-rnn-pruning ({settings.preset} preset, seed {result['seed']})\n\n"
            f"3 recurrent layers of {list(settings.widths)}, embedding {settings.training.embedding_dim}, "
            f"{settings.base_epochs} base epochs, {settings.method} pruning, then {settings.retrain_epochs} "
            f"retraining epoch(s). Wall time {result['wall_seconds']:.0f} s.\n\n{base}\n\n"
            "Test accuracy right after pruning / after retraining:\n\n"
            f"{markdown_table(header, rows)}\n\n![pruning](pruning.png)\n")
    ctx.write_report(text)


def _pair(point: dict[str, Any]) -> str:
    retrained = point["accuracy_retrained"]
    return f"{point['accuracy_pruned']:.3f} / " + ("-" if retrained is None else f"{retrained:.3f}")
