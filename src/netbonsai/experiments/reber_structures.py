"""``reproduce reber-structure-prediction`` (paper 001, section 4.3, Table 1): random graph priors as sparse RNNs, and how well graph features predict their accuracy."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import InputError
from ..nets.recurrent import CELLS, MaskedRecurrent
from ..nets.structure import LayeredStructure
from ..runs import RunContext
from .reber_common import (CELL_NAMES, PAPER_R2, Progress, ReberTraining, _reber, _run_jobs, _test_accuracy, _train,
                           run_experiment)
from .presets import pick_preset, with_settings


@dataclass(frozen=True)
class StructureSettings:
    """One preset of reber-structure-prediction (everything here goes into config.json)."""

    preset: str
    training: ReberTraining = ReberTraining()
    graphs_per_family: int = 100  # per cell: this many Watts-Strogatz and this many Barabasi-Albert graphs
    n_range: tuple[int, int] = (10, 50)
    units_per_vertex: int = 1
    cells: tuple[str, ...] = CELL_NAMES
    epochs: int = 1
    population: int = 25  # structures trained together in one job (padded to a common shape)
    repeats: int = 1  # train each structure this many times (initial weights differ); its accuracy is the mean
    n_splits: int = 20  # random 90/10 splits the R^2 is averaged over
    test_fraction: float = 0.1

    def validate(self) -> None:
        self.training.validate()
        if self.graphs_per_family < 2 or min(self.population, self.epochs, self.n_splits, self.repeats) < 1:
            raise InputError("graphs_per_family must be >= 2; population, epochs, n_splits and repeats >= 1")
        if self.units_per_vertex < 1 or not 10 <= self.n_range[0] <= self.n_range[1]:
            raise InputError(f"units_per_vertex must be >= 1 and n_range within [10, ...], got {list(self.n_range)}")
        unknown = [c for c in self.cells if c not in CELLS]
        if unknown:
            raise InputError(f"unknown cell {unknown[0]!r}; choose from {', '.join(CELLS)}")
        if not 0 < self.test_fraction < 1:
            raise InputError(f"test_fraction must be in (0, 1), got {self.test_fraction}")


def structure_settings(preset: str = "quick", **overrides: Any) -> StructureSettings:
    """``paper``: 100 graphs per family and cell (800 trainings of one epoch on all 18,750
    training strings); ``quick``: 50 per family (400 trainings of three epochs on 6,000 strings).
    Fewer than about 100 structures per cell leave too few test rows for a meaningful R^2 (a
    10% split of 30 rows is 3 rows), and one epoch on 6,000 strings leaves the accuracies too
    noisy to predict (GRU random-forest R^2 0.49 against 0.76 after three epochs)."""
    settings = pick_preset(preset, {
        "quick": lambda: StructureSettings(preset="quick", graphs_per_family=50, population=25, epochs=3,
                                           training=ReberTraining(max_train=6000)),
        "paper": lambda: StructureSettings(preset="paper", graphs_per_family=100, population=12),
        "smoke": lambda: StructureSettings(
            preset="smoke", training=ReberTraining(n_strings=600, embedding_dim=8, max_test=200),
            graphs_per_family=6, n_range=(10, 14), cells=("gru",), population=6, n_splits=3, test_fraction=0.2),
    })
    return with_settings(settings, overrides, "reber-structure-prediction", validate=lambda s: s.validate())


def structure_graphs(settings: StructureSettings, seed: int) -> list[tuple[str, Any]]:
    """``(family, graph)`` for every random structure, the same for every cell (seeded)."""
    from ..priors import FAMILIES, sample_graphs

    graphs = []
    for index, family in enumerate(FAMILIES):
        for graph in sample_graphs(family, settings.graphs_per_family, n_range=tuple(settings.n_range),
                                   seed=seed * 1000 + index):
            graphs.append((family, graph))
    return graphs


def structure_population(cell: str, structures: Sequence[LayeredStructure], graphs: Sequence[int],
                         embedding_dim: int, seed: int, repeats: int = 1) -> MaskedRecurrent:
    """The Reber classifiers of ``structures`` (graphs ``graphs``), ``repeats`` copies each, as one
    population; member ``i * repeats + r`` (a structure's copies side by side, so a population in
    depth order stays in depth order and skips its padded layers) is seeded by graph ``graphs[i]``
    and repeat ``r`` alone."""
    return MaskedRecurrent([s for s in structures for _ in range(repeats)], cell, 2, vocab_size=128,
                           embedding_dim=embedding_dim,
                           seed=[seed * 1_000_003 + graph + 7_919_000 * r for graph in graphs for r in range(repeats)])


def _structures_job(cell: str, structures: list[LayeredStructure], graphs: list[int], settings: StructureSettings,
                    seed: int) -> dict[str, Any]:
    """Train ``structures`` (of graphs ``graphs``), ``settings.repeats`` times each, as one population.

    A member is seeded by its graph index and repeat alone and every member sees the same batches,
    so a structure's result does not depend on which others share its population. Returned lists
    are structure-major: entry ``i * repeats + r`` is graph ``graphs[i]``, repeat ``r``.
    """
    started = time.perf_counter()
    training = settings.training
    data = _reber(training, seed)
    model = structure_population(cell, structures, graphs, training.embedding_dim, seed, settings.repeats)
    fit = _train(model, data, settings.epochs, training, seed)
    return {"graphs": list(graphs), "test_accuracy": _test_accuracy(model, data),
            "train_loss": [float(v) for v in fit.loss],
            "params": [int(v) for v in model.num_params_per_variant(embedding=False)],
            "seconds": time.perf_counter() - started}


def shape_groups(structures: Sequence[LayeredStructure], size: int) -> list[list[int]]:
    """Indices of ``structures`` in groups of at most ``size``, similar shapes together (sorted by
    depth, widest layer, units), so a population pads its members as little as possible. The
    groups are as equal in size as possible (50 in groups of at most 12: 10, 10, 10, 10, 10, not
    12, 12, 12, 12, 2), since a small last group costs nearly as much time as a full one."""
    order = sorted(range(len(structures)), key=lambda i: (structures[i].num_layers, max(structures[i].widths),
                                                          structures[i].num_units, i))
    count = -(-len(order) // size)
    return [[int(i) for i in chunk] for chunk in np.array_split(np.asarray(order, dtype=int), count)]


def reproduce_reber_structure_prediction(
    out: str | Path, preset: str = "quick", seed: int = 0, resume: bool = False, executor: str = "process",
    workers: int = 2, on_progress: Progress | None = None, settings: StructureSettings | None = None,
) -> dict[str, Any]:
    """Paper 001 section 4.3: random Watts-Strogatz / Barabasi-Albert graphs as sparse recurrent
    networks of four cell types, trained on the Reber grammar; Pearson correlations of the 23 graph
    features with test accuracy (Table 1) and the R^2 of three regressors predicting accuracy from
    the features alone (mean and spread over repeated 90/10 splits).

    Writes ``result.json`` ("r2", "correlations", "runs", "wall_seconds"; with ``repeats`` > 1 also
    "repeat_correlation" and "r2_by_repeats"), ``runs.csv`` (one row per
    trained structure: cell, family, features, accuracy), ``report.md``, ``accuracy.png``.
    """
    return run_experiment(out, "reber-structure-prediction", settings or structure_settings(preset), seed, resume,
                          executor, workers, on_progress, _structure_prediction)


def _structure_prediction(ctx: RunContext, settings: StructureSettings, seed: int,
                          say: Progress) -> dict[str, Any]:
    from ..analysis.graph_features import feature_table
    from ..analysis.structure_prediction import pearson_correlations, r2_by_repeats, repeat_correlation
    from ..priors import describe, orient, to_structure

    state = ctx.restore() or {"done": {}, "seconds": 0.0}
    clock = time.perf_counter()
    graphs = structure_graphs(settings, seed)
    dags = [orient(graph) for _, graph in graphs]
    structures = [to_structure(dag, settings.training.embedding_dim, settings.units_per_vertex) for dag in dags]
    features, names = feature_table(dags)
    ctx.rewind_history([{"event": "job", "key": key, **value} for key, value in state["done"].items()])

    def done(key: str, value: dict[str, Any]) -> None:
        ctx.emit_event({"event": "job", "key": key, **value})
        say(f"{key}: {len(value['test_accuracy'])} trainings, mean test accuracy "
            f"{float(np.mean(value['test_accuracy'])):.4f}, {value['seconds']:.0f} s")

    groups = shape_groups(structures, settings.population)
    jobs = {f"{cell}/{number}": (_structures_job, cell, [structures[i] for i in group], group, settings, seed)
            for cell in settings.cells for number, group in enumerate(groups)}
    _run_jobs(ctx, state, jobs, on_done=done)

    runs, correlations, r2, accuracy_by_cell = [], {}, {}, {}
    repeat_corr: dict[str, float] = {}  # with repeats > 1: how alike two trainings of a structure are
    by_repeats: dict[str, dict[str, Any]] = {}  # with repeats > 1: R^2 of the mean of the first r trainings
    for cell in settings.cells:
        per_graph: dict[int, dict[str, list]] = {}
        for number in range(len(groups)):
            value = state["done"][f"{cell}/{number}"]
            repeats = len(value["test_accuracy"]) // len(value["graphs"])
            for i, graph in enumerate(value["graphs"]):
                rows = range(i * repeats, (i + 1) * repeats)  # the graph's repeats
                per_graph[graph] = {key: [value[key][j] for j in rows] for key in ("test_accuracy", "train_loss")}
                per_graph[graph]["params"] = value["params"][i * repeats]
        accuracy = np.array([float(np.mean(per_graph[g]["test_accuracy"])) for g in range(len(structures))])
        for g, (family, _) in enumerate(graphs):
            runs.append({"cell": cell, "family": family, "graph": g, "test_accuracy": float(accuracy[g]),
                         "test_accuracy_repeats": per_graph[g]["test_accuracy"],
                         "train_loss": float(np.mean(per_graph[g]["train_loss"])), "params": per_graph[g]["params"],
                         **describe(dags[g]), "features": dict(zip(names, map(float, features[g])))})
        accuracy_by_cell[cell] = accuracy
        say(f"{cell}: correlations and R^2 of three regressors over {settings.n_splits} splits"
            + (f", for 1..{settings.repeats} trainings averaged" if settings.repeats > 1 else ""))
        # the R^2 of the mean of the first r trainings for every r (one r without repeats); the
        # table for all of them is the cell's R^2
        trainings = np.array([per_graph[g]["test_accuracy"] for g in range(len(structures))])
        tables = {str(r): {name: {"mean": v["mean"], "std": v["std"]} for name, v in table.items()}
                  for r, table in r2_by_repeats(features, trainings, n_splits=settings.n_splits,
                                                test_fraction=settings.test_fraction, seed=seed).items()}
        r2[cell] = tables[str(settings.repeats)]
        if settings.repeats > 1:
            repeat_corr[cell] = repeat_correlation(trainings)
            by_repeats[cell] = tables
        correlations[cell] = pearson_correlations(features, names, accuracy)
    result = {
        "experiment": "reber-structure-prediction",
        "preset": settings.preset,
        "seed": seed,
        "r2": r2,
        "correlations": correlations,
        "runs": runs,
        "mean_accuracy": {cell: {family: float(np.mean([r["test_accuracy"] for r in runs
                                                         if r["cell"] == cell and r["family"] == family]))
                                 for family in dict.fromkeys(f for f, _ in graphs)} for cell in settings.cells},
        "paper_r2": {cell: dict(zip(("bayesian_ridge", "random_forest", "adaboost"), v)) for cell, v in PAPER_R2.items()},
        **({"repeat_correlation": repeat_corr, "r2_by_repeats": by_repeats} if settings.repeats > 1 else {}),
        "wall_seconds": float(state["seconds"]) + time.perf_counter() - clock,
    }
    state["seconds"] = result["wall_seconds"]
    ctx.checkpoint(state)
    ctx.write_result(result)
    _structure_report(ctx, settings, result, names, features, accuracy_by_cell, [f for f, _ in graphs])
    return result


def _structure_report(ctx: RunContext, settings: StructureSettings, result: dict[str, Any], names: list[str],
                      features: np.ndarray, accuracy_by_cell: dict[str, np.ndarray], families: list[str]) -> None:
    from ..analysis.report import markdown_table
    from ..analysis.structure_prediction import correlation_table, r2_table
    from ..atomic import write_text

    lines = ["cell,family,graph," + ",".join(names) + ",test_accuracy"]
    for cell, accuracy in accuracy_by_cell.items():
        for i, acc in enumerate(accuracy):
            lines.append(f"{cell},{families[i]},{i}," + ",".join(f"{v:.6g}" for v in features[i]) + f",{acc:.6f}")
    write_text(ctx.file("runs.csv"), "\n".join(lines) + "\n")
    _accuracy_plot(ctx.file("accuracy.png"), accuracy_by_cell, families)
    means = markdown_table(["cell"] + list(next(iter(result["mean_accuracy"].values()))),
                           [[c] + [f"{v:.4f}" for v in fam.values()] for c, fam in result["mean_accuracy"].items()])
    paper = {c: {k: {"mean": v, "std": 0.0} for k, v in r.items()} for c, r in result["paper_r2"].items()
             if c in result["r2"]}
    text = (f"# reber-structure-prediction ({settings.preset} preset, seed {result['seed']})\n\n"
            f"{settings.graphs_per_family} Watts-Strogatz and {settings.graphs_per_family} Barabasi-Albert graphs "
            f"(n in {list(settings.n_range)}), each a sparse recurrent network ({settings.units_per_vertex} unit(s) "
            f"per vertex, embedding {settings.training.embedding_dim}), trained {settings.epochs} epoch(s) per cell "
            f"type{_repeats_note(settings.repeats)}. Wall time {result['wall_seconds']:.0f} s.\n\nMean test accuracy:\n\n{means}\n\n"
            f"## R^2 of predicting test accuracy from the 23 graph features\n\nMean ± std over {settings.n_splits} "
            f"random {round(100 * (1 - settings.test_fraction))}/{round(100 * settings.test_fraction)} splits:\n\n"
            f"{r2_table(result['r2'])}\n\nThe paper (one split):\n\n{r2_table(paper)}\n\n"
            f"{_repeats_section(result)}"
            f"## Pearson correlation of each feature with test accuracy (Table 1)\n\n"
            f"{correlation_table(result['correlations'])}\n\n![accuracy](accuracy.png)\n")
    ctx.write_report(text)


def _repeats_section(result: dict[str, Any]) -> str:
    """The report's table of R^2 against the number of trainings averaged (runs with repeats > 1)."""
    from ..analysis.report import markdown_table

    if "r2_by_repeats" not in result:
        return ""
    rows = []
    for cell, tables in result["r2_by_repeats"].items():
        for r, table in tables.items():
            rows.append([cell, r, f"{result['repeat_correlation'][cell]:.2f}" if r == "1" else ""]
                        + [f"{v['mean']:.2f} ± {v['std']:.2f}" for v in table.values()])
    names = list(next(iter(next(iter(result["r2_by_repeats"].values())).values())))
    return ("## R^2 against the number of trainings averaged\n\nThe same structures and splits; a structure's "
            "accuracy is the mean of its first r trainings. Repeat correlation: the mean Pearson correlation "
            "between two trainings of the same structures.\n\n"
            + markdown_table(["cell", "trainings", "repeat correlation"] + names, rows) + "\n\n")


def _repeats_note(repeats: int) -> str:
    return "" if repeats == 1 else f", {repeats} times each from different initial weights (accuracy: their mean)"


def _accuracy_plot(path: Path, accuracy_by_cell: dict[str, np.ndarray], families: list[str]) -> None:
    """Box plots of test accuracy per cell and graph family (like the paper's Fig. 7)."""
    from ..analysis._figures import new_figure, save_png

    kinds = list(dict.fromkeys(families))
    fig = new_figure(4.0 * len(accuracy_by_cell), 4.0)
    axes = fig.subplots(1, len(accuracy_by_cell), squeeze=False)[0]
    labels = np.asarray(families)
    for ax, (cell, accuracy) in zip(axes, accuracy_by_cell.items()):
        ax.boxplot([accuracy[labels == kind] for kind in kinds], tick_labels=[k.replace("-", "-\n") for k in kinds])
        ax.set_title(cell)
        ax.set_ylabel("test accuracy")
    save_png(fig, path)
