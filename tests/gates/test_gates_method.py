"""The ``gates`` method through ``compare``: registered, validated before anything is written, and
one front point per sweep multiplier beside the dense sweep, saved and loadable."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import netbonsai
from netbonsai.cli import main
from netbonsai.errors import InputError
from netbonsai.methods import get_method, method_names
from tiny_runs import crop_of_camera

# the tiny image settings of tests/methods/test_compare_methods.py
TINY = ["--set", "start_epochs=60", "--set", "grow.grow_epochs=10", "--set", "dense.grid=[[4, 4], [6, 6], [8, 8]]",
        "--set", "polish.epochs=10", "--max-params", "120", "--quiet", "--executor", "inline"]


def test_compare_with_the_gates_method_gives_a_front(tmp_path: Path) -> None:
    image = crop_of_camera(tmp_path / "crop.png")
    out = tmp_path / "run"
    assert main(["compare", f"approx:{image}", "--methods", "gates", "--out", str(out), *TINY,
                 "--set", "gates.scales=[3.95, 4.1, 4.6]"]) == 0
    comparison = json.loads((out / "comparison.json").read_text())
    figures = comparison["methods"]["gates"]
    front = figures["front"]
    assert front and len(front) <= 3
    params = [p["params"] for p in front]
    assert params == sorted(params) and len(set(params)) == len(params)
    assert [p["val_loss"] for p in front] == sorted((p["val_loss"] for p in front), reverse=True)
    assert max(params) <= 105  # the 2-8-8-1 grid network is where it starts
    for point in front:
        assert point["scale"] in (3.95, 4.1, 4.6) and point["widths"][0] == 2 and point["widths"][-1] == 1
        assert point["lambda_b"] == pytest.approx(4 * point["lambda_m"] / point["scale"])
        net = netbonsai.load(out / point["file"])
        assert net.num_params() == point["params"]
    for key in ("ratios", "median_ratio", "loss_gaps"):
        assert key in figures
    assert figures["extra"]["from"] == [8, 8]
    history = (out / "methods" / "gates" / "history.jsonl").read_text().splitlines()
    assert len([line for line in history if '"scale"' in line]) == 3
    assert re.search(r"\| gates +\|", (out / "report.md").read_text())  # its own table row


@pytest.mark.parametrize("setting, message", [
    ("gates.scales=[]", "gates.scales"),
    ("gates.scales=[1, -2]", "gates.scales"),
    ("gates.start=\"pretrained\"", "gates.start"),
    ("gates.complexity=\"flops\"", "unknown gate complexity"),
    ("gates.epochs=0", "gates.epochs"),
    ("gates.threshold=1.5", "gates.threshold"),
    ("gates.bogus=1", "unknown setting gates.bogus"),
])
def test_bad_gates_settings_exit_2_before_anything_is_written(tmp_path: Path, capsys, setting, message) -> None:
    out = tmp_path / "run"
    assert main(["compare", "approx", "--methods", "gates", "--out", str(out), "--set", setting]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists()


def test_registered_with_its_settings() -> None:
    assert "gates" in method_names()
    method = get_method("gates")
    assert method.settings.complexity == "params" and method.settings.start == "trained"
    assert method.with_overrides({"scales": [2, 3], "hidden": [5]}).settings.scales == (2.0, 3.0)
    with pytest.raises(InputError, match="both be false"):
        method.with_overrides({"width": False, "depth": False})


MNIST = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mnist"


@pytest.mark.skipif(not MNIST.is_dir(), reason=f"MNIST folder {MNIST} not present")
def test_gates_on_an_idx_task_trains_with_minibatch_adam(tmp_path: Path, monkeypatch) -> None:
    from dataclasses import replace

    from netbonsai.experiments import presets

    real = presets.idx_settings

    def small(preset: str):
        settings = real(preset)
        return replace(settings, data=replace(settings.data, max_train=1500, max_val=500), dense_grid=((16, 8),),
                       dense_epochs=2, polish_epochs=0)

    monkeypatch.setattr(presets, "idx_settings", small)
    out = tmp_path / "run"
    assert main(["compare", f"idx:{MNIST}", "--methods", "gates", "--out", str(out), "--quiet", "--executor", "inline",
                 "--set", "gates.scales=[3.9, 4.3]"]) == 0
    front = json.loads((out / "comparison.json").read_text())["methods"]["gates"]["front"]
    assert front and all(p["widths"][0] == 784 and p["widths"][-1] == 10 for p in front)
    assert all(0 <= p["val_accuracy"] <= 1 and p["params"] <= 784 * 16 + 16 + 16 * 8 + 8 + 8 * 10 + 10 for p in front)
