"""reproduce genetic-nas (paper 001 section 4.4) shrunk to a few seconds on digits: the result file in
the issue's schema, equal compute, the meta-dataset, resume (finished, and cut back to after the
first search), the checks before anything is written, and show."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from netbonsai.cli import main
from netbonsai.errors import InputError
from netbonsai.experiments import genetic_nas
from netbonsai.experiments.genetic_nas import (
    DataSpec, Evaluator, GeneticNasSettings, ga_trained_counts, genetic_nas_settings, load_data,
)
from netbonsai.experiments.genetic_nas_report import SEARCHES, speedup
from netbonsai.search import Genotype

from .synthetic_idx import write_synthetic_mnist

# population 4, 2 children a generation (1 estimated once 4 records exist), 8 trainings a search:
# GA with prediction 5 generations, without 3, random search 2 batches of 4
TINY = GeneticNasSettings(n_trained=8, population=4, cull_fraction=0.5, min_depth=2, max_depth=4, channels=(4, 8),
                          epochs=1, lr=1e-2, predictor_min_records=4, estimation_mode="replace")
BEST_KEYS = {"with_prediction": "best", "without_prediction": "without_prediction_best",
             "random": "random_search_best"}


def reproduce(out: Path, *extra: str) -> int:
    return main(["reproduce", "genetic-nas", "--out", str(out), "--quiet", "--executor", "inline", *extra])


def figures(value: Any) -> Any:
    """``value`` without its wall-clock figures (training seconds and what is computed from them)."""
    if isinstance(value, dict):
        return {k: figures(v) for k, v in value.items()
                if "seconds" not in k and k not in ("speedup_from_prediction", "ratio_seconds", "environment")}
    if isinstance(value, list):
        return [figures(v) for v in value]
    return value


def meta_lines(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "meta_dataset.jsonl").read_text().splitlines()]


def test_reproduce_writes_the_schema_at_equal_compute_and_resumes(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(genetic_nas.PRESETS, "quick", TINY)
    out = tmp_path / "run"
    assert reproduce(out) == 0
    result = json.loads((out / "result.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert config["data"] == "sklearn:digits" and config["split"]["image_side"] == 8
    assert sum(config["split"][k] for k in ("n_train", "n_val", "n_test")) == 1797
    assert set(result) >= {"best", "random_search_best", "without_prediction_best", "predictor",
                           "speedup_from_prediction", "speedup_in_trainings", "genotypes_trained", "wall_seconds",
                           "histories"}
    assert set(result["predictor"]) >= {"r2", "spearman", "r2_params_only", "r2_depth_only", "r2_graph23", "n_train",
                                        "n_test"}
    assert set(result["histories"]) == set(SEARCHES)
    lines = meta_lines(out)
    assert len(lines) == result["genotypes_trained"] == 3 * TINY.n_trained
    assert result["distinct_genotypes"] == len({line["key"] for line in lines}) == result["trainings_run"]
    assert result["predictor"]["n_train"] + result["predictor"]["n_test"] == result["distinct_genotypes"]
    for name in SEARCHES:
        own = [line for line in lines if line["search"] == name]
        assert len(own) == TINY.n_trained == result["searches"][name]["trained"]  # equal compute
        assert all(0 <= line[k] <= 1 for line in own for k in ("accuracy", "test_accuracy"))
        best = result[BEST_KEYS[name]]
        assert set(best) >= {"test_accuracy", "val_accuracy", "params", "genotype"}
        assert best["val_accuracy"] == max(line["accuracy"] for line in own)
        match = next(line for line in own if line["key"] == best["key"])
        assert (match["test_accuracy"], match["params"]) == (best["test_accuracy"], best["params"])
        assert Genotype.from_dict(best["genotype"]).key() == best["key"]
        assert result["curves"][name]["best"][-1] == best["val_accuracy"]
    # all three start from the same population: the later searches reuse its trainings
    first = [line["key"] for line in lines if line["search"] == "with_prediction"][:TINY.population]
    for name in ("without_prediction", "random"):
        own = [line for line in lines if line["search"] == name][:TINY.population]
        assert [line["key"] for line in own] == first and all(line["reused"] for line in own)
    # one child of each generation after the first is estimated, never trained
    assert [h["estimated"] for h in result["histories"]["with_prediction"]] == [0, 1, 1, 1, 1]
    assert result["estimated_by_predictor"] == 4 and len(result["histories"]["without_prediction"]) == 3
    gain = result["speedup"]
    assert gain["target_val_accuracy"] == result["without_prediction_best"]["val_accuracy"]
    if result["speedup_in_trainings"] is None:
        assert result["best"]["val_accuracy"] < gain["target_val_accuracy"]
        assert result["speedup_from_prediction"] is None
    else:
        assert result["speedup_in_trainings"] == gain["without_needed_trainings"] / gain["with_needed_trainings"]
    assert (out / "curves.png").stat().st_size > 0 and (out / "best_genotype.png").stat().st_size > 0
    assert "Predictor on the" in (out / "report.md").read_text()

    # resuming the finished run: the same result
    assert reproduce(out, "--resume") == 0
    assert figures(json.loads((out / "result.json").read_text())) == figures(result)

    # killed after the first search: --resume runs the other two and gives the same result
    saved = torch.load(out / "checkpoint.pt", weights_only=True)
    torch.save({"searches": {"with_prediction": saved["searches"]["with_prediction"]}, "seconds": 1.0},
               out / "checkpoint.pt")
    assert reproduce(out, "--resume") == 0
    resumed = json.loads((out / "result.json").read_text())
    assert figures(resumed) == figures(result)
    assert figures(meta_lines(out)) == figures(lines)
    assert resumed["wall_seconds"] > 1.0
    events = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [(e["search"], e["generation"]) for e in events] == [
        (name, g) for name in SEARCHES for g in range(len(result["histories"][name]))]

    # show tabulates it
    capsys.readouterr()
    assert main(["show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "GA without prediction" in shown and "56 genotype features" in shown


def test_screening_trains_as_many_as_the_ga_without_prediction(tmp_path: Path, monkeypatch) -> None:
    screen = replace(TINY, estimation_mode="screen")
    assert screen.evolution(0.5).generations == screen.evolution(0.0).generations == 3
    monkeypatch.setitem(genetic_nas.PRESETS, "quick", TINY)  # replace mode: --set changes it
    out = tmp_path / "run"
    assert reproduce(out, "--set", "estimation_mode=screen") == 0
    assert json.loads((out / "config.json").read_text())["settings"]["estimation_mode"] == "screen"
    result = json.loads((out / "result.json").read_text())
    assert result["estimation_mode"] == "screen"
    rows = [(h["trained"], h["estimated"]) for h in result["histories"]["with_prediction"]]
    assert rows == [(4, 0), (2, 2), (2, 2)]  # ready from 4 records: 4 candidates bred, the 2 best predicted trained
    assert [(h["trained"], h["estimated"]) for h in result["histories"]["without_prediction"]] == [(4, 0), (2, 0), (2, 0)]
    assert "screen:" in (out / "report.md").read_text()


@pytest.mark.parametrize("extra, message", [
    (("--set", "bogus=1"), "unknown setting genetic-nas.bogus"),
    (("--set", "estimation_mode=guess"), "estimation_mode must be one of"),
    (("--set", "channels=[]"), "channels"),
    (("--set", "novalue"), "--set expects KEY=VALUE"),
])
def test_bad_set_values_exit_2_before_the_run_folder_exists(tmp_path: Path, capsys, extra, message) -> None:
    out = tmp_path / "run"
    assert reproduce(out, *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists()


def test_set_is_refused_by_experiments_without_settings(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["reproduce", "residual-mnist", "--out", str(out), "--quiet", "--set", "epochs=1"]) == 2
    assert "--set applies to genetic-nas only" in capsys.readouterr().err
    assert not out.exists()


def test_overrides_change_only_the_named_fields() -> None:
    quick = genetic_nas_settings("quick")
    changed = genetic_nas_settings("quick", {"crossover_prob": 0.5, "channels": [8, 16]})
    assert (changed.crossover_prob, changed.channels) == (0.5, (8, 16))
    assert replace(changed, crossover_prob=quick.crossover_prob, channels=quick.channels) == quick


def test_a_missing_data_folder_exits_2_before_the_run_folder_exists(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setitem(genetic_nas.PRESETS, "quick", TINY)
    out = tmp_path / "run"
    assert reproduce(out, "--data", str(tmp_path / "nowhere")) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not out.exists()


def test_idx_images_are_average_pooled_to_the_presets_side(tmp_path: Path) -> None:
    root = write_synthetic_mnist(tmp_path / "idx", n_train=300, n_test=50)
    spec = DataSpec("idx", str(root), 0, 14, val_size=100)
    data = load_data(spec)
    assert data.side == 14 and data.n_classes == 10
    assert (len(data.train), len(data.val), len(data.test)) == (200, 100, 50)
    assert data.train.x.shape == (200, 196) and 0 <= float(data.train.x.min()) <= float(data.train.x.max()) <= 1
    with pytest.raises(InputError, match="does not divide"):
        load_data(replace(spec, side=5))


def test_a_genotype_trained_before_is_reused() -> None:
    calls = []

    def submit(fn, *args):
        calls.append(args[0])
        from concurrent.futures import Future

        future: Future = Future()
        future.set_result({"fitness": 0.5, "params": 7, "seconds": 0.25, "test_accuracy": 0.4})
        return future

    import random

    kind = TINY.kind()
    a, b = kind.random(random.Random(0)), kind.random(random.Random(1))
    assert a.key() != b.key()
    memo = {b.key(): {"fitness": 0.9, "params": 3, "seconds": 2.0, "test_accuracy": 0.8}}
    got = Evaluator(submit, DataSpec("digits", None, 0, 8), TINY, 0, memo)([a, b, a])
    assert len(calls) == 1 and calls[0] == a.to_dict()
    assert [g["reused"] for g in got] == [False, True, True]
    assert got[1]["fitness"] == 0.9 and got[2]["fitness"] == got[0]["fitness"] == 0.5


def test_speedup_counts_seconds_and_trainings_until_the_target() -> None:
    without = [{"fitness": f, "seconds": 2.0} for f in (0.5, 0.8, 0.7, 0.6)]
    with_ = [{"fitness": f, "seconds": 1.0} for f in (0.5, 0.9, 0.1, 0.2)]
    gain = speedup(with_, without)
    assert gain["target_val_accuracy"] == 0.8
    assert (gain["with_needed_trainings"], gain["with_needed_seconds"]) == (2, 2.0)
    assert gain["ratio_seconds"] == 4.0 / 2.0 and gain["ratio_trainings"] == 2 / 2  # both first reach it at the 2nd
    assert (gain["without_needed_trainings"], gain["without_needed_seconds"]) == (2, 4.0)
    fast = speedup([{"fitness": 0.9, "seconds": 1.0}], without)  # there at its first training: 4 s against 1 s
    assert fast["ratio_seconds"] == 4.0 and fast["ratio_trainings"] == 2.0
    never = speedup([{"fitness": 0.1, "seconds": 1.0}], without)
    assert never["ratio_seconds"] is None and never["ratio_trainings"] is None


@pytest.mark.parametrize("changes, message", [
    ({"n_trained": 9}, "not reachable"),
    ({"estimation_fraction": 1.0}, "never trains"),
    ({"n_trained": 3}, "at least the population"),
    ({"channels": ()}, "channels"),
    ({"epochs": 0}, "epochs"),
    ({"min_depth": 5}, "depth limits"),
    ({"random_max_depth": 1}, "depth limits"),
    ({"lr": 0.0}, "lr"),
    ({"regressor": "svm"}, "regressor"),
    ({"cull_fraction": 0.0}, "cull_fraction"),
    ({"mutation_prob": 1.5}, "mutation_prob"),
    ({"val_fraction": 0.9}, "val_fraction"),
])
def test_bad_settings_are_refused(changes, message) -> None:
    with pytest.raises(InputError, match=message):
        replace(TINY, **changes)


def test_presets() -> None:
    quick, paper = genetic_nas_settings("quick"), genetic_nas_settings("paper")
    assert (paper.population, paper.mutation_prob, paper.crossover_prob, paper.cull_fraction,
            paper.estimation_fraction) == (30, 0.5, 0.0, 0.1, 0.5)
    assert quick.depths() == paper.depths() == (6, 12)
    assert quick.channels == (8, 16, 32) and paper.channels == (8, 16, 32, 64)
    assert quick.estimation_mode == paper.estimation_mode == "screen"
    assert quick.evolution(quick.estimation_fraction).generations == quick.evolution(0.0).generations == 31
    assert ga_trained_counts(paper.evolution(0.5), paper.predictor_min_records, 300)[:3] == [30, 33, 36]
    replacing = replace(quick, estimation_mode="replace")
    assert replacing.evolution(0.5).generations == 57  # 1 of 2 children trained once the predictor is ready
    assert ga_trained_counts(replace(paper, estimation_mode="replace").evolution(0.5), 20, 300)[:3] == [30, 31, 32]
    assert (quick.image_side, quick.idx_max_train, quick.idx_val_size) == (7, 2_000, 1_000)
    with pytest.raises(InputError, match="unknown preset"):
        genetic_nas_settings("huge")
