"""Smoke test of paper 000's MNIST experiment (784-7-7-10, loss-aware synapse removal)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from netbonsai import load
from netbonsai.errors import InputError
from netbonsai.experiments.mnist import mnist_settings, reproduce_mnist_7_7
from netbonsai.runs import read_history

MNIST = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mnist"

needs_mnist = pytest.mark.skipif(
    not (MNIST / "train-images-idx3-ubyte.gz").exists(),
    reason=f"MNIST IDX files not found in {MNIST} (../shared/data/mnist beside the checkout)",
)

RESULT_KEYS = {"dense_params", "dense_test_errors", "pruned_params", "pruned_test_errors", "removed_fraction",
               "wall_seconds"}


@needs_mnist
def test_smoke_run_writes_the_run_directory(tmp_path: Path) -> None:
    events: list[dict] = []
    out = tmp_path / "run"
    result = reproduce_mnist_7_7(out, preset="smoke", data_root=MNIST, seed=0, on_event=events.append)
    assert RESULT_KEYS <= set(result)
    assert result["dense_params"] == 5631
    assert 0 < result["removed_fraction"] < 1
    assert result["pruned_params"] < result["dense_params"]
    assert 0 <= result["pruned_test_errors"] <= result["n_test"]
    stored = json.loads((out / "result.json").read_text())
    assert RESULT_KEYS <= set(stored) and stored["pruned_params"] == result["pruned_params"]
    config = json.loads((out / "config.json").read_text())
    assert config["seed"] == 0 and config["preset"] == "smoke" and config["prune"]["seed"] == 0
    history = list(read_history(out / "history.jsonl"))
    assert history == json.loads(json.dumps(events))
    assert history[0]["event"] == "dense" and history[-1]["event"] == "final"
    removals = [e for e in history if e["event"] == "remove"]
    assert removals and all({"params", "removed", "train_loss", "seconds"} <= set(e) for e in removals)
    assert all("test_errors" in e for e in removals)  # smoke reports them every step
    assert [e["removed"] for e in removals] == sorted({e["removed"] for e in removals})
    model = load(out / "model")
    assert model.num_params() == result["pruned_params"]
    assert "| netbonsai (smoke)" in (out / "report.md").read_text()
    assert (out / "errors.png").read_bytes()[:4] == b"\x89PNG"
    # a finished run is not overwritten; resuming it finishes at once with the same numbers
    with pytest.raises(InputError):
        reproduce_mnist_7_7(out, preset="smoke", data_root=MNIST, seed=0)
    again = reproduce_mnist_7_7(out, preset="smoke", data_root=MNIST, seed=0, resume=True)
    assert again["pruned_params"] == result["pruned_params"]
    assert again["pruned_test_errors"] == result["pruned_test_errors"]


def test_settings_and_overrides() -> None:
    quick = mnist_settings("quick")
    assert quick.hidden == (7, 7) and quick.activations == ("relu", "tanh")
    assert quick.batch_size == 32 and quick.lr == 1e-3 and quick.threads is None
    assert quick.time_budget is not None and quick.time_budget <= 15 * 60
    paper = mnist_settings("paper")
    assert (paper.prune.chunk, paper.prune.n_candidates, paper.prune.n_trials, paper.prune.eps) == (1, 8, 3, 0.002)
    tuned = mnist_settings("smoke", {"max_train": 500, "prune": {"max_steps": 1}})
    assert tuned.max_train == 500 and tuned.prune.max_steps == 1 and tuned.prune.chunk == 256
    for bad in ({"nope": 1}, {"prune": {"chunk": 0}}, {"val_size": 0}):
        with pytest.raises(InputError):
            mnist_settings("smoke", bad)
    with pytest.raises(InputError):
        mnist_settings("huge")


@needs_mnist
def test_best_of_several_dense_seeds_is_chosen_on_held_out_loss(tmp_path: Path) -> None:
    result = reproduce_mnist_7_7(tmp_path / "run", preset="smoke", data_root=MNIST, seed=0,
                                 overrides={"dense_seeds": 2, "prune": {"max_steps": 1}})
    dense = next(read_history(tmp_path / "run" / "history.jsonl"))
    candidates = dense["dense_candidates"]
    assert [c["seed"] for c in candidates] == [0, 1]
    best = min(candidates, key=lambda c: c["val_loss"])
    assert dense["dense_seed"] == best["seed"] and result["dense_test_errors"] == best["test_errors"]
    with pytest.raises(InputError, match="dense_seeds"):
        mnist_settings("quick", {"dense_seeds": 0})


@needs_mnist
def test_polish_fine_tunes_the_pruned_and_the_dense_control(tmp_path: Path) -> None:
    result = reproduce_mnist_7_7(tmp_path / "run", preset="smoke", data_root=MNIST, seed=0,
                                 overrides={"polish_epochs": 1, "prune": {"max_steps": 1}})
    assert result["polish_epochs"] == 1
    assert {"unpolished_test_errors", "polished_dense_test_errors"} <= set(result)
    final = list(read_history(tmp_path / "run" / "history.jsonl"))[-1]
    assert final["event"] == "final" and final["test_errors"] == result["pruned_test_errors"]
    report = (tmp_path / "run" / "report.md").read_text()
    assert (f"{result['unpolished_test_errors']} -> {result['pruned_test_errors']} test errors" in report
            and f"makes {result['polished_dense_test_errors']}." in report)
    assert mnist_settings("quick").polish_epochs == 4 and mnist_settings("quick").dense_seeds == 4
    with pytest.raises(InputError, match="polish"):
        mnist_settings("quick", {"polish_epochs": -1})
