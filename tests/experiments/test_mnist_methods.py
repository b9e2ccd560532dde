"""``reproduce mnist-pruning-methods``: curves for every method, monotone compression, resume skips done work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from netbonsai.experiments.mnist_methods import MethodsSettings, reproduce_mnist_pruning_methods
from netbonsai.runs import read_history

from .synthetic_idx import write_synthetic_mnist

TINY = MethodsSettings("quick", dense_epochs=6, retrain_epochs=1, batch_size=32, val_size=200, obd_samples=128,
                       archs=("784-12-10",), levels=(0.0, 0.5, 0.9, 0.99))


@pytest.fixture(scope="module")
def idx_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_mnist(tmp_path_factory.mktemp("idx") / "mnist", n_train=800, n_test=200)


def test_curves_for_every_method(idx_folder: Path, tmp_path: Path) -> None:
    result = reproduce_mnist_pruning_methods(tmp_path / "run", data_root=str(idx_folder), executor="inline", settings=TINY)
    stored = json.loads((tmp_path / "run" / "result.json").read_text())
    assert set(stored["curves"]["784-12-10"]) == set(TINY.methods)
    for method, points in stored["curves"]["784-12-10"].items():
        assert [p["compression"] for p in points] == list(TINY.levels)
        live = [p["live_weights"] for p in points]
        assert live == sorted(live, reverse=True) and live[-1] == round(0.01 * 784 * 12 + 0.01 * 120)
        assert points[0]["accuracy_no_retrain"] == points[0]["accuracy_retrained"] == stored["dense_accuracy"]["784-12-10"]
        for p in points:
            assert 0.0 <= p["accuracy_no_retrain"] <= 1.0 and 0.0 <= p["accuracy_retrained"] <= 1.0
    curves, dense = stored["curves"]["784-12-10"], stored["dense_accuracy"]["784-12-10"]
    assert dense > 0.7
    assert curves["magnitude-blinded"][1]["accuracy_retrained"] >= dense - 0.02  # 50% by magnitude is harmless
    assert curves["magnitude-blinded"][1]["accuracy_no_retrain"] > curves["random"][1]["accuracy_no_retrain"] + 0.2
    assert result["wall_seconds"] > 0
    assert (tmp_path / "run" / "pruning_methods.png").exists()
    from netbonsai.experiments.show import describe_run

    shown = describe_run(tmp_path / "run")
    assert "mnist-pruning-methods" in shown and "finished" in shown and "magnitude-blinded" in shown
    assert len(list(read_history(tmp_path / "run" / "history.jsonl"))) == len(TINY.methods) + len(TINY.archs)


def test_resume_skips_finished_curves(idx_folder: Path, tmp_path: Path) -> None:
    first = reproduce_mnist_pruning_methods(tmp_path / "run", data_root=str(idx_folder), executor="inline", settings=TINY)
    again = reproduce_mnist_pruning_methods(tmp_path / "run", data_root=str(idx_folder), executor="inline",
                                            settings=TINY, resume=True)
    assert again["curves"] == first["curves"]
    events = list(read_history(tmp_path / "run" / "history.jsonl"))
    assert len(events) == len(TINY.methods) + len(TINY.archs)  # nothing redone, nothing duplicated
