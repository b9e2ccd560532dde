"""reproduce residual-mnist (paper 004) on a tiny synthetic IDX folder: the result file in the
issue's schema, its arithmetic, the saved networks, resume, and the checks before anything is
written."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from netbonsai.cli import main
from netbonsai.errors import InputError
from netbonsai.experiments import residual_mnist
from netbonsai.experiments.residual_mnist import CHEAP, ResidualMnistSettings, best_measure, residual_mnist_settings
from netbonsai.residual import count_params, find_blocks, load_residual_cnn
from tiny_runs import without_clock

from .synthetic_idx import write_synthetic_mnist

TINY = ResidualMnistSettings(max_train=300, val_size=100, max_test=100, score_rows=64, timing_repeats=1, mlp_width=8,
                             mlp_blocks=3, cnn_widths=(4, 8), cnn_blocks=3, epochs=2, anneal_epochs=1,
                             grow_interval=0.25, prune_error_tolerance=0.05)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_synthetic_mnist(tmp_path_factory.mktemp("residual-mnist") / "idx", n_train=500, n_test=100)


def reproduce(folder: Path, out: Path, *extra: str) -> int:
    return main(["reproduce", "residual-mnist", "--data", str(folder), "--out", str(out), "--quiet",
                 "--executor", "inline", *extra])


def test_reproduce_writes_the_schema_the_networks_and_resumes(folder: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(residual_mnist.PRESETS, "quick", TINY)
    out = tmp_path / "run"
    assert reproduce(folder, out) == 0
    result = json.loads((out / "result.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert config["split"] == {"n_train": 300, "n_val": 100, "n_test": 100}
    assert config["settings"]["cnn_widths"] == [4, 8]
    # (a) every cheap measure against the lesion, on both networks
    for net, blocks in (("mlp", 3), ("cnn", 4)):
        assert set(result["metrics"][net]) == set(CHEAP)
        assert all(-1 <= v <= 1 or math.isnan(v) for v in result["metrics"][net].values())
        assert all(len(v) == blocks for v in result["scores"][net].values())
    # (b) pruning: sizes and errors as fractions; the steps' blocks shrink one at a time
    p = result["pruning"]
    assert set(p) >= {"blocks_before", "blocks_after", "params_before", "params_after", "test_error_before",
                      "test_error_after"}
    assert p["blocks_before"] == 4 and 0 <= p["blocks_after"] <= 4
    assert all(0 <= p[k] <= 1 for k in ("test_error_before", "test_error_after", "val_error_before", "val_error_after"))
    accepted = [s for s in p["steps"] if s["accepted"]]
    assert p["blocks_after"] == 4 - len(accepted)
    assert all(s["val_error"] <= p["val_error_before"] + TINY.prune_error_tolerance + 1e-9 for s in accepted)
    assert p["measure"] == best_measure(result["metrics"]["cnn"])
    # (c) growth from one block per stage; the fixed network is the 2 x 3 one
    growth = result["growth"]
    assert set(growth) == {"zero", "random", "fixed_3x4"}
    assert growth["fixed_3x4"]["blocks_per_stage"] == [2, 2] and growth["fixed_3x4"]["blocks"] == 4
    for init in ("zero", "random"):
        grown = growth[init]
        assert 0 <= grown["test_error"] <= 1 and grown["blocks"] == sum(grown["blocks_per_stage"])
        assert grown["growth_steps"] == len(grown["records"]) and grown["blocks"] == grown["growth_steps"]
        assert [r["stage"] for r in grown["records"]] == [i % 2 for i in range(grown["growth_steps"])]
    # the saved networks load back: their sizes and test errors are the recorded ones
    for name, figures in (("pruned", {"params": p["params_after"], "test_error": p["test_error_after"]}),
                          ("fixed-3x4", growth["fixed_3x4"]), ("grown-zero", growth["zero"]),
                          ("grown-random", growth["random"])):
        model, info = load_residual_cnn(out / f"{name}.pt")
        assert info["network"] == name.replace("fixed-3x4", "fixed") and count_params(model) == figures["params"]
        assert residual_mnist.test_error(model, residual_mnist._task(str(folder), TINY, 0)) == figures["test_error"]
    assert p["params_after"] == count_params(load_residual_cnn(out / "pruned.pt")[0])
    assert len(find_blocks(load_residual_cnn(out / "pruned.pt")[0])) == p["blocks_after"]
    head = result["headline"]
    assert head["blocks_removed_fraction"] == pytest.approx(1 - p["blocks_after"] / 4)
    assert head["best_cheap_spearman"]["cnn"] == max(v for v in result["metrics"]["cnn"].values() if not math.isnan(v))
    seconds = result["scoring"]["cnn_seconds"]
    assert set(seconds) == {"forward", "lesion", *CHEAP, "all_cheap"} and all(v > 0 for v in seconds.values())
    assert (out / "blocks.png").stat().st_size > 0
    assert "Spearman" in (out / "report.md").read_text()

    # resuming the finished run: the same result
    assert reproduce(folder, out, "--resume") == 0
    again = json.loads((out / "result.json").read_text())
    assert without_clock(again["growth"]) == without_clock(growth) and again["pruning"] == p

    # killed after the cnn job: --resume runs the three others and gives the same result
    saved = torch.load(out / "checkpoint.pt", weights_only=True)
    torch.save({"jobs": {"cnn": saved["jobs"]["cnn"]}, "seconds": 1.0}, out / "checkpoint.pt")
    assert reproduce(folder, out, "--resume") == 0
    resumed = json.loads((out / "result.json").read_text())
    assert without_clock(resumed["growth"]) == without_clock(growth)
    assert without_clock(resumed["metrics"]) == without_clock(result["metrics"])
    assert resumed["wall_seconds"] > 1.0

    # show tabulates it
    assert main(["show", str(out)]) == 0


def test_every_grown_network_gets_the_fixed_networks_optimiser_steps(folder: Path, tmp_path: Path) -> None:
    task = residual_mnist._task(str(folder), TINY, 0)
    per_epoch = residual_mnist.steps_per_epoch(task, TINY)
    grown = residual_mnist.grow_job(str(folder), TINY, 0, str(tmp_path), "zero")
    assert grown["optimizer_steps"] == TINY.epochs * per_epoch == 10
    interval = round(TINY.grow_interval * per_epoch)
    assert grown["growth_optimizer_steps"] == interval * (1 + grown["growth_steps"])
    assert grown["growth_optimizer_steps"] <= (TINY.epochs - TINY.anneal_epochs) * per_epoch


def test_best_measure_skips_nan_and_breaks_ties_in_order() -> None:
    values = dict.fromkeys(CHEAP, 0.5)
    assert best_measure(values) == CHEAP[0]
    values[CHEAP[2]] = float("nan")
    values[CHEAP[3]] = 0.9
    assert best_measure(values) == CHEAP[3]


def test_a_missing_data_folder_exits_2_before_the_run_folder_exists(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setitem(residual_mnist.PRESETS, "quick", TINY)
    out = tmp_path / "run"
    assert reproduce(tmp_path / "nowhere", out) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize("changes, message", [
    ({"cnn_blocks": 1}, "cnn_blocks"),
    ({"cnn_widths": ()}, "cnn_widths"),
    ({"anneal_epochs": 2}, "anneal_epochs"),
    ({"prune_measure": "magic"}, "prune_measure"),
    ({"prune_per": "neuron"}, "prune_per"),
    ({"grow_interval": 0}, "grow_interval"),
    ({"epochs": 0}, "epochs"),
    ({"prune_error_tolerance": 1.5}, "prune_error_tolerance"),
])
def test_bad_settings_are_refused(changes, message) -> None:
    with pytest.raises(InputError, match=message):
        replace(TINY, **changes)


def test_presets() -> None:
    quick, paper = residual_mnist_settings("quick"), residual_mnist_settings("paper")
    assert quick.cnn_widths == paper.cnn_widths == (8, 16, 32) and quick.cnn_blocks == paper.cnn_blocks == 4
    assert paper.max_train is None and quick.max_train == 10_000
    assert paper.prune_error_tolerance == 0.001
    with pytest.raises(InputError, match="unknown preset"):
        residual_mnist_settings("huge")
