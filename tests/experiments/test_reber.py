"""The Reber experiments of paper 001: smoke runs write complete run directories and resume exactly."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from netbonsai.errors import InputError
from netbonsai.experiments.reber import (
    prune_variants,
    pruning_settings,
    reproduce_reber_rnn_pruning,
    reproduce_reber_structure_prediction,
    structure_graphs,
    structure_settings,
)
from netbonsai.nets.recurrent import MaskedRecurrent
from netbonsai.nets.structure import LayeredStructure
from netbonsai.prune.criteria import resolve_amount
from netbonsai.runs import read_history


def test_prune_variants_stacks_one_member_per_part_and_level() -> None:
    base = MaskedRecurrent([LayeredStructure.stacked(4, [5, 5])], "gru", 2, seed=0)
    i2h, h2h = (int(base.live_weights((kind,))[0]) for kind in ("i2h", "h2h"))
    population = prune_variants(base, ("i2h", "h2h", "both"), (0.5, 1.0), "magnitude-blinded")
    assert population.population_size == 6
    live_i2h = population.live_weights(("i2h",)).tolist()
    live_h2h = population.live_weights(("h2h",)).tolist()
    assert live_i2h == [i2h - resolve_amount(0.5, i2h), 0, i2h, i2h, live_i2h[4], 0]
    assert live_h2h == [h2h, h2h, h2h - resolve_amount(0.5, h2h), 0, live_h2h[4], 0]
    assert live_i2h[4] + live_h2h[4] == i2h + h2h - resolve_amount(0.5, i2h + h2h)  # one global ranking over both
    # the base network is untouched, and member 2 computes what the base pruned alone computes
    assert int(base.live_weights(("h2h",))[0]) == h2h


def test_smoke_pruning_run_writes_result_and_resumes_to_the_same_numbers(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = reproduce_reber_rnn_pruning(out, preset="smoke", executor="inline")
    assert set(result["base_accuracy"]) == {"tanh", "relu", "lstm", "gru"}
    for cell, parts in result["curves"].items():
        assert set(parts) == {"i2h", "h2h", "both"}
        for points in parts.values():
            assert [p["pruned"] for p in points] == [0.5, 1.0]
            assert all(0.0 <= p["accuracy_pruned"] <= 1.0 and 0.0 <= p["accuracy_retrained"] <= 1.0 for p in points)
            assert points[1]["live_weights"] < points[0]["live_weights"]
    assert result["wall_seconds"] > 0
    stored = json.loads((out / "result.json").read_text())
    assert stored["curves"] == result["curves"]
    assert [e["cell"] for e in read_history(out / "history.jsonl")] == ["tanh", "relu", "lstm", "gru"]
    assert (out / "pruning.png").stat().st_size > 0 and "reber-rnn-pruning" in (out / "report.md").read_text()
    # a run killed after two cells: resume redoes only the missing ones and gets the same numbers
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=False)
    for cell in ("lstm", "gru"):
        del checkpoint["done"][cell]
    torch.save(checkpoint, out / "checkpoint.pt")
    again = reproduce_reber_rnn_pruning(out, preset="smoke", executor="inline", resume=True)
    assert again["curves"] == result["curves"] and again["base_accuracy"] == result["base_accuracy"]
    assert [e["cell"] for e in read_history(out / "history.jsonl")] == ["tanh", "relu", "lstm", "gru"]


def test_smoke_structure_prediction_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    settings = structure_settings("smoke")
    result = reproduce_reber_structure_prediction(out, preset="smoke", executor="inline")
    assert len(result["runs"]) == 2 * settings.graphs_per_family * len(settings.cells)
    assert {r["family"] for r in result["runs"]} == {"watts-strogatz", "barabasi-albert"}
    assert set(result["r2"]["gru"]) == {"bayesian_ridge", "random_forest", "adaboost"}
    assert all({"mean", "std"} <= set(v) for v in result["r2"]["gru"].values())
    assert len(result["correlations"]["gru"]) == 23
    rows = list(csv.DictReader((out / "runs.csv").open()))
    assert len(rows) == len(result["runs"]) and "closeness_var" in rows[0]
    # the graphs are the same for every cell and every call with the seed
    families = [f for f, _ in structure_graphs(settings, 0)]
    assert families == [r["family"] for r in result["runs"]]
    assert (out / "accuracy.png").stat().st_size > 0 and "Table 1" in (out / "report.md").read_text()


def test_settings_validation() -> None:
    assert pruning_settings("paper").base_epochs == 50 and structure_settings("paper").graphs_per_family == 100
    with pytest.raises(InputError, match="unknown preset"):
        pruning_settings("huge")
    with pytest.raises(InputError, match="unknown reber-rnn-pruning setting"):
        pruning_settings("quick", depth=3)
    with pytest.raises(InputError, match="unknown cell or part"):
        pruning_settings("quick", parts=("h2h", "o2o"))
    with pytest.raises(InputError, match="levels"):
        pruning_settings("quick", levels=(0.0,))
    with pytest.raises(InputError, match="graphs_per_family"):
        structure_settings("quick", graphs_per_family=1)
    with pytest.raises(InputError, match="n_range"):
        structure_settings("quick", n_range=(5, 20))


def test_shape_groups_cover_every_structure_once_with_similar_shapes_together() -> None:
    from netbonsai.experiments.reber import shape_groups

    structures = [LayeredStructure.stacked(3, widths) for widths in ([4, 4, 4], [2], [3, 3], [2, 5], [1])]
    groups = shape_groups(structures, 2)
    assert sorted(i for group in groups for i in group) == list(range(5))
    assert groups == [[4, 1], [2, 3], [0]]  # depth 1 (widths 1, 2), depth 2 (widest 3, then 5), depth 3


def test_repeats_average_several_trainings_of_each_structure(tmp_path: Path) -> None:
    once = reproduce_reber_structure_prediction(tmp_path / "once", preset="smoke", executor="inline")
    settings = structure_settings("smoke", repeats=2)
    twice = reproduce_reber_structure_prediction(tmp_path / "twice", settings=settings, executor="inline")
    for first, second in zip(once["runs"], twice["runs"]):
        assert len(second["test_accuracy_repeats"]) == 2
        # repeat 0 is the single run's training; the reported accuracy is the mean of the repeats
        assert second["test_accuracy_repeats"][0] == pytest.approx(first["test_accuracy"], abs=1e-6)
        assert second["test_accuracy"] == pytest.approx(sum(second["test_accuracy_repeats"]) / 2)
    # with repeats, the result says how alike the trainings are and the R^2 of 1 and 2 averaged
    assert set(twice["repeat_correlation"]) == set(twice["r2"]) and "repeat_correlation" not in once
    assert twice["r2_by_repeats"]["gru"]["2"] == twice["r2"]["gru"]
    single = [r["test_accuracy_repeats"][0] for r in twice["runs"]]
    assert single == pytest.approx([r["test_accuracy"] for r in once["runs"]], abs=1e-6)
    assert twice["r2_by_repeats"]["gru"]["1"]["bayesian_ridge"]["mean"] == pytest.approx(
        once["r2"]["gru"]["bayesian_ridge"]["mean"], abs=1e-6)
    assert "against the number of trainings" in (tmp_path / "twice" / "report.md").read_text()
    with pytest.raises(InputError, match="repeats"):
        structure_settings("quick", repeats=0)


def test_shape_groups_are_balanced() -> None:
    from netbonsai.experiments.reber import shape_groups

    structures = [LayeredStructure.stacked(3, [w]) for w in range(1, 51)]
    assert [len(g) for g in shape_groups(structures, 12)] == [10, 10, 10, 10, 10]
    assert [len(g) for g in shape_groups(structures, 50)] == [50]


def test_command_line_repeats_reach_the_settings(tmp_path: Path) -> None:
    """``reproduce reber-structure-prediction --repeats 2`` trains every structure twice (the
    registry's runner builds the preset's settings with the override; config.json records it)."""
    from netbonsai.experiments.registry import get_experiment

    runner = get_experiment("reber-structure-prediction").runner
    result = runner(tmp_path / "run", "smoke", None, 0, False, lambda text: None, repeats=2, executor="inline")
    assert all(len(r["test_accuracy_repeats"]) == 2 for r in result["runs"])
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["repeats"] == 2 and config["preset"] == "smoke"
    assert "2 times each" in (tmp_path / "run" / "report.md").read_text()
    # show prints the R^2 table, one row per cell, with the run's own numbers
    from netbonsai.experiments.show import describe_run

    summary = describe_run(tmp_path / "run")
    gru_r2 = result["r2"]["gru"]["random_forest"]
    assert "R^2 of predicting test accuracy" in summary
    assert f"{gru_r2['mean']:.2f} ± {gru_r2['std']:.2f}" in summary.split("\n| gru ")[1].splitlines()[0]


def test_the_repeats_option_of_the_command_line_reaches_the_runner(monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """``netbonsai reproduce reber-structure-prediction --repeats 3`` hands repeats=3 to the runner
    (recorded by a stand-in runner), and prints the R^2 table of what it returns."""
    from dataclasses import replace

    from netbonsai.cli import main
    from netbonsai.experiments import registry

    seen: dict = {}

    def runner(out, preset, data_root, seed, resume, progress, **options):
        seen.update(options, preset=preset)
        return {"experiment": "reber-structure-prediction", "wall_seconds": 1.0,
                "r2": {"gru": {"random_forest": {"mean": 0.5, "std": 0.1}}}}

    name = "reber-structure-prediction"
    monkeypatch.setitem(registry.EXPERIMENTS, name, replace(registry.EXPERIMENTS[name], runner=runner))
    code = main(["reproduce", name, "--repeats", "3", "--preset", "paper", "--out", str(tmp_path / "run"), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0 and seen == {"repeats": 3, "preset": "paper"}
    assert "| gru  | 0.50 ± 0.10" in out
    seen.clear()
    assert main(["reproduce", name, "--out", str(tmp_path / "run2"), "--quiet"]) == 0
    assert "repeats" not in seen  # not given: the preset's own value
