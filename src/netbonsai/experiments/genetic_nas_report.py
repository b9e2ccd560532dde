"""genetic-nas's figures, files and tables: result.json in the issue's schema, the meta-dataset,
the predictor's held-out quality, the speed-up from prediction, report.md and the pictures.

Speed-up from prediction: the GA without prediction's best validation accuracy over all its N
trainings is the target; ``speedup_from_prediction`` is the training seconds that GA had spent when
it first trained a genotype that accurate, divided by the training seconds the GA with prediction
had spent when it first trained a genotype at least that accurate (records' seconds summed in
training order), and ``speedup_in_trainings`` the same ratio in trained genotypes: the time each
needed to reach the same accuracy. Both are None (null) when the GA with prediction never reached
the target. Above 1: prediction reached the other GA's best with less training.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..analysis.report import markdown_table
from ..atomic import write_text
from ..errors import InputError
from ..runs import dumps
from ..search import Genotype, evaluate_predictor, make_record

if TYPE_CHECKING:
    from ..runs import RunContext
    from ..search import EvolutionResult
    from .genetic_nas import GeneticNasSettings

KIND = "genetic-nas"
SEARCHES = ("with_prediction", "without_prediction", "random")
LABELS = {"with_prediction": "GA with prediction", "without_prediction": "GA without prediction",
          "random": "random search"}
BEST_KEYS = {"with_prediction": "best", "without_prediction": "without_prediction_best",
             "random": "random_search_best"}
PREDICTOR_KEYS = ("r2", "spearman", "r2_params_only", "r2_depth_only", "r2_graph23", "spearman_params_only",
                  "spearman_depth_only")
MODES = {"replace": "replace: an estimated child joins the population with its predicted accuracy",
         "screen": "screen: children / (1 - fraction) candidates bred, the best predicted trained, the rest dropped"}
MIN_PREDICTOR_RECORDS = 10  # evaluate_predictor's least


def best_entry(record: Mapping[str, Any]) -> dict[str, Any]:
    """A search's best genotype (by validation accuracy, then fewer params): its figures and itself."""
    return {"val_accuracy": record["fitness"], "test_accuracy": record["test_accuracy"], "params": record["params"],
            "depth": Genotype.from_dict(record["genotype"]).depth, "generation": record["generation"],
            "key": record["key"], "genotype": record["genotype"]}


def curve(records: Sequence[Mapping[str, Any]]) -> dict[str, list]:
    """Best validation accuracy so far after each trained genotype, against cumulative seconds and count."""
    seconds, best, total, top = [], [], 0.0, -math.inf
    for r in records:
        total += r["seconds"]
        top = max(top, r["fitness"])
        seconds.append(total)
        best.append(top)
    return {"seconds": seconds, "trained": list(range(1, len(records) + 1)), "best": best}


def first_reaching(records: Sequence[Mapping[str, Any]], target: float) -> int | None:
    """Index of the first record whose fitness is at least ``target`` (None if none is)."""
    return next((i for i, r in enumerate(records) if r["fitness"] >= target), None)


def speedup(with_records: Sequence[Mapping[str, Any]], without_records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The module docstring's speed-up, in seconds and in trainings, with the figures it comes from."""
    target = max(r["fitness"] for r in without_records)
    without_seconds = sum(r["seconds"] for r in without_records)
    own = first_reaching(without_records, target)
    at = first_reaching(with_records, target)
    needed = None if at is None else sum(r["seconds"] for r in with_records[:at + 1])
    without_needed = sum(r["seconds"] for r in without_records[:own + 1])  # type: ignore[operator]
    return {"target_val_accuracy": target,
            "without_total_seconds": without_seconds, "without_total_trainings": len(without_records),
            "without_needed_seconds": without_needed,
            "without_needed_trainings": own + 1,  # type: ignore[operator]
            "with_needed_seconds": needed, "with_needed_trainings": None if at is None else at + 1,
            "ratio_seconds": None if needed is None else (without_needed / needed if needed > 0 else math.inf),
            "ratio_trainings": None if at is None else (own + 1) / (at + 1)}


def made_records(results: Mapping[str, "EvolutionResult"]) -> dict[str, dict[str, Any]]:
    """One predictor record (features computed once) per distinct genotype key, in search order."""
    made: dict[str, dict[str, Any]] = {}
    for name in SEARCHES:
        for r in results[name].records:
            if r["key"] not in made:
                made[r["key"]] = make_record(Genotype.from_dict(r["genotype"]), r["fitness"], r["params"],
                                             r["seconds"], in_channels=1)
    return made


def predictor_quality(records: list[dict[str, Any]], regressor: str, seed: int) -> dict[str, Any]:
    """evaluate_predictor on every distinct trained genotype (seeded 70/30 split), or Nones when
    there are fewer than it needs."""
    if len(records) < MIN_PREDICTOR_RECORDS:
        return {**dict.fromkeys(PREDICTOR_KEYS), "n_train": 0, "n_test": 0, "importances": [],
                "note": f"{len(records)} distinct genotypes; the evaluation needs {MIN_PREDICTOR_RECORDS}"}
    return evaluate_predictor(records, regressor=regressor, test_fraction=0.3, seed=seed)


def assemble(results: Mapping[str, "EvolutionResult"], made: Mapping[str, dict[str, Any]],
             settings: "GeneticNasSettings", seed: int, wall: float) -> dict[str, Any]:
    """result.json (accuracies as fractions; seconds are training seconds summed over records)."""
    records = {name: results[name].records for name in SEARCHES}
    if any(len(r) != settings.n_trained for r in records.values()):
        counts = {name: len(r) for name, r in records.items()}
        raise InputError(f"the searches trained {counts}, not {settings.n_trained} each")
    gain = speedup(records["with_prediction"], records["without_prediction"])
    searches = {}
    for name in SEARCHES:
        best = results[name].best_record
        searches[name] = {"trained": len(records[name]),
                          "estimated": sum(h["estimated"] for h in results[name].history),
                          "reused": sum(bool(r.get("reused")) for r in records[name]),
                          "training_seconds": sum(r["seconds"] for r in records[name]),
                          "best_val_accuracy": best["fitness"],
                          "best_first_reached_after": first_reaching(records[name], best["fitness"]) + 1}
    return {"experiment": KIND, "n_trained": settings.n_trained,
            **{BEST_KEYS[name]: best_entry(results[name].best_record) for name in SEARCHES},
            "predictor": predictor_quality(list(made.values()), settings.regressor, seed),
            "speedup_from_prediction": gain["ratio_seconds"], "speedup_in_trainings": gain["ratio_trainings"],
            "speedup": gain,
            "genotypes_trained": sum(len(r) for r in records.values()),
            "trainings_run": sum(not r.get("reused") for rs in records.values() for r in rs),
            "distinct_genotypes": len(made),
            "estimated_by_predictor": searches["with_prediction"]["estimated"],
            "estimation_mode": settings.estimation_mode,
            "searches": searches,
            "histories": {name: results[name].history for name in SEARCHES},
            "curves": {name: curve(records[name]) for name in SEARCHES},
            "wall_seconds": wall}


def meta_dataset(results: Mapping[str, "EvolutionResult"], made: Mapping[str, dict[str, Any]]) -> str:
    """meta_dataset.jsonl: one line per record of every search (a genotype two searches share: two lines)."""
    lines = []
    for name in SEARCHES:
        for r in results[name].records:
            lines.append(dumps({"search": name, "generation": r["generation"], "key": r["key"],
                                "genotype": r["genotype"], "features": made[r["key"]]["features"],
                                "depth": made[r["key"]]["depth"], "accuracy": r["fitness"],
                                "test_accuracy": r["test_accuracy"], "params": r["params"],
                                "seconds": r["seconds"], "reused": bool(r.get("reused"))}))
    return "\n".join(lines) + "\n"


def write_outputs(ctx: "RunContext", results: Mapping[str, "EvolutionResult"], settings: "GeneticNasSettings",
                  seed: int, wall: float, head: Mapping[str, Any]) -> dict[str, Any]:
    """Assemble and write result.json, meta_dataset.jsonl, curves.png, best_genotype.png and report.md."""
    from ..analysis.genetic_plots import draw_genotype, plot_search_curves

    made = made_records(results)
    result = {**head, **assemble(results, made, settings, seed, wall)}
    ctx.write_result(result)
    write_text(ctx.file("meta_dataset.jsonl"), meta_dataset(results, made))
    plot_search_curves(result["curves"], LABELS, ctx.file("curves.png"))
    best = result["best"]
    draw_genotype(best["genotype"], ctx.file("best_genotype.png"),
                  title=f"GA with prediction's best: validation accuracy {best['val_accuracy']:.2%}, "
                        f"test {best['test_accuracy']:.2%}, {best['params']} params")
    ctx.write_report(report(result))
    return result


def _pct(value: Any) -> str:
    return "-" if value is None else f"{value:.2%}"


def _num(value: Any, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def tables(result: Mapping[str, Any]) -> str:
    """The searches, the predictor and the speed-up (for report.md and ``show``)."""
    rows = []
    for name in SEARCHES:
        s, best = result["searches"][name], result[BEST_KEYS[name]]
        rows.append([LABELS[name], s["trained"], s["estimated"], _pct(best["val_accuracy"]),
                     _pct(best["test_accuracy"]), best["params"], best["depth"], s["best_first_reached_after"],
                     f"{s['training_seconds']:.0f}"])
    searches = markdown_table(["search", "trained", "estimated", "best val accuracy", "its test accuracy", "params",
                               "depth", "best after (trainings)", "training seconds"], rows)
    p = result["predictor"]
    predictor = markdown_table(["predictor features", "R^2", "Spearman"], [
        ["56 genotype features", _num(p.get("r2")), _num(p.get("spearman"))],
        ["parameter count only", _num(p.get("r2_params_only")), _num(p.get("spearman_params_only"))],
        ["depth only", _num(p.get("r2_depth_only")), _num(p.get("spearman_depth_only"))],
        ["23 graph features (section 4.3)", _num(p.get("r2_graph23")), "-"]])
    gain = result["speedup"]
    if result["speedup_in_trainings"] is None:
        speed = (f"The GA with prediction never reached the GA without prediction's best validation accuracy "
                 f"({_pct(gain['target_val_accuracy'])}) within {result['n_trained']} trainings.")
    else:
        speed = (f"The GA with prediction first reached the GA without prediction's best validation accuracy "
                 f"({_pct(gain['target_val_accuracy'])}) after {gain['with_needed_trainings']} trainings "
                 f"({gain['with_needed_seconds']:.0f} s of training); the GA without prediction first got there "
                 f"after {gain['without_needed_trainings']} ({gain['without_needed_seconds']:.0f} s) of its "
                 f"{gain['without_total_trainings']} trainings. Speed-up from prediction: "
                 f"{_num(result['speedup_from_prediction'], '.2f')}x in training seconds, "
                 f"{_num(result['speedup_in_trainings'], '.2f')}x in trainings.")
    split = f"{p['n_train']} / {p['n_test']}" if p.get("n_test") else "-"
    return "\n".join([
        f"Searches at equal compute ({result['n_trained']} trained genotypes each; the best by validation "
        "accuracy, its test accuracy measured once):", "", searches.rstrip(), "",
        f"Predictor on the {result['distinct_genotypes']} distinct trained genotypes (train / test {split}, "
        "held-out R^2 and Spearman of validation accuracy):", "", predictor.rstrip(), "",
        *([f"({p['note']})", ""] if p.get("note") else []), speed])


def report(result: Mapping[str, Any]) -> str:
    """report.md: the tables and the pictures."""
    return "\n".join([
        f"# {KIND}: genetic architecture search with performance prediction (paper 001 section 4.4)", "",
        f"{result['genotypes_trained']} records ({result['trainings_run']} trainings run, the rest reused: the "
        f"searches share their first population); {result['estimated_by_predictor']} candidates estimated by the "
        f"predictor instead of trained ({MODES[result.get('estimation_mode', 'replace')]}).", "",
        tables(result), "", "![best validation accuracy against training compute](curves.png)", "",
        "![the GA with prediction's best genotype](best_genotype.png)", "",
        f"wall {result['wall_seconds']:.0f} s", ""])


__all__ = ["assemble", "best_entry", "curve", "made_records", "meta_dataset", "predictor_quality", "report",
           "speedup", "tables", "write_outputs"]
