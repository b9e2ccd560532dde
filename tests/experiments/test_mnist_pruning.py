"""``netbonsai prune mnist``: rounds, compaction, resume after a crash, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import netbonsai
from netbonsai.cli import main
from netbonsai.errors import InputError
from netbonsai.experiments.mnist_pruning import PruneOptions, run_prune_mnist
from netbonsai.runs import read_history

from .synthetic_idx import write_synthetic_mnist


@pytest.fixture(scope="module")
def idx_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_mnist(tmp_path_factory.mktemp("idx") / "mnist")


def options(folder: Path, **changes) -> PruneOptions:
    base = dict(data=str(folder), arch="784-16-10", schedule="relative:0.5", target_sparsity=0.9,
                dense_epochs=2, retrain_epochs=1, batch_size=64, val_size=200, obd_samples=256)
    return PruneOptions(**{**base, **changes})


def test_prune_reaches_target_and_saves_compacted_model(idx_folder: Path, tmp_path: Path) -> None:
    summary = run_prune_mnist(options(idx_folder), tmp_path / "run")
    events = list(read_history(tmp_path / "run" / "history.jsonl"))
    sparsities = [e["sparsity"] for e in events]
    assert sparsities == sorted(sparsities) and sparsities[0] == 0.0
    assert summary["sparsity"] == pytest.approx(0.9, abs=1e-3)
    assert summary["stopped"] == "target"
    for key in ("sparsity", "params", "test_accuracy", "test_errors", "train_loss"):
        assert key in events[-1]
    assert summary["test_accuracy"] > 0.9  # the task is easy: pruning to 90% must keep it
    model = netbonsai.load(tmp_path / "run" / "model")
    assert model.num_params() == summary["model_params"] <= summary["params"]
    # the model carries its input preprocessing, as image-task models do
    assert model.info["preprocessing"]["inputs"].startswith("pixels / 255")
    stored = json.loads((tmp_path / "run" / "result.json").read_text())
    assert stored["test_errors"] == summary["test_errors"]
    assert (tmp_path / "run" / "accuracy.png").read_bytes()[:4] == b"\x89PNG"


class Crash(Exception):
    pass


@pytest.mark.parametrize("crash_round", [1, 2])
def test_resume_after_a_crash_equals_an_uninterrupted_run(idx_folder: Path, tmp_path: Path, crash_round: int) -> None:
    whole = run_prune_mnist(options(idx_folder), tmp_path / "whole")

    def crash(record: dict) -> None:
        if record["round"] == crash_round:
            raise Crash()

    with pytest.raises(Crash):
        run_prune_mnist(options(idx_folder), tmp_path / "split", on_round=crash)
    resumed = run_prune_mnist(options(idx_folder), tmp_path / "split", resume=True)
    for key in ("sparsity", "params", "test_errors", "final_round"):
        assert resumed[key] == whole[key]
    a = [(e["round"], e["params"], e["test_errors"]) for e in read_history(tmp_path / "whole" / "history.jsonl")]
    b = [(e["round"], e["params"], e["test_errors"]) for e in read_history(tmp_path / "split" / "history.jsonl")]
    assert a == b  # no duplicated or lost rounds
    x = torch.rand(5, 784)
    assert torch.equal(netbonsai.load(tmp_path / "whole" / "model")(x), netbonsai.load(tmp_path / "split" / "model")(x))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--method", "nope"], "unknown pruning method"),
        (["--schedule", "sometimes:3"], "bad pruning schedule"),
        (["--arch", "784-x-10"], "--arch"),
        (["--arch", "100-10"], "pixels"),
        (["--target-sparsity", "1.5"], "--target-sparsity"),
        (["--val-size", "0"], "--val-size"),
        (["--seed", "-1"], "--seed"),
        (["--method", "loss-aware", "--max-accuracy-drop", "0.01"], "--max-accuracy-drop"),
    ],
)
def test_bad_input_exits_2_with_one_line(idx_folder: Path, tmp_path: Path, capsys, args, message) -> None:
    code = main(["prune", "mnist", "--data", str(idx_folder), "--val-size", "200", "--out", str(tmp_path / "run"), "--quiet", *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_missing_data_folder(tmp_path: Path, capsys) -> None:
    code = main(["prune", "mnist", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_cli_end_to_end(idx_folder: Path, tmp_path: Path, capsys) -> None:
    code = main(["prune", "mnist", "--data", str(idx_folder), "--arch", "784-16-10", "--method", "obd",
                 "--schedule", "fixed:4000", "--target-sparsity", "0.5", "--dense-epochs", "1",
                 "--retrain-epochs", "0", "--val-size", "200", "--threads", "1", "--out", str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert code == 0, out
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["method"] == "obd" and result["sparsity"] == pytest.approx(0.5, abs=1e-3)
    events = list(read_history(tmp_path / "run" / "history.jsonl"))
    assert [e["removed"] for e in events][1:] == [4000, 6352 - 4000]  # 50% of 784*16 + 16*10 weights
    assert main(["show", str(tmp_path / "run")]) == 0
    shown = capsys.readouterr().out
    assert "finished" in shown and "test_errors" in shown and "obd" in shown


def test_reproduce_lists_experiments(capsys) -> None:
    assert main(["reproduce"]) == 0
    out = capsys.readouterr().out
    assert "mnist-7-7" in out and "mnist-pruning-methods" in out
    assert main(["reproduce", "nope", "--out", "x"]) == 2


def test_options_validate() -> None:
    with pytest.raises(InputError, match="dense-epochs"):
        PruneOptions(dense_epochs=-1).validate()


def test_loss_aware_method_through_the_cli(idx_folder: Path, tmp_path: Path, capsys) -> None:
    code = main(["prune", "mnist", "--data", str(idx_folder), "--arch", "784-8-10", "--method", "loss-aware",
                 "--schedule", "fixed:2000", "--target-sparsity", "0.5", "--dense-epochs", "3", "--eps", "0.05",
                 "--retrain-epochs", "1", "--val-size", "200", "--threads", "1", "--quiet", "--out", str(tmp_path / "run")])
    assert code == 0, capsys.readouterr().err
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    events = list(read_history(tmp_path / "run" / "history.jsonl"))
    assert result["method"] == "loss-aware" and len(events) >= 2
    assert 0 < result["sparsity"] <= 0.5 + 1e-9
    assert [e["round"] for e in events] == list(range(len(events)))
    assert netbonsai.load(tmp_path / "run" / "model").num_params() == result["model_params"]
    code = main(["prune", "mnist", "--data", str(idx_folder), "--method", "loss-aware", "--schedule", "oneshot:0.5",
                 "--out", str(tmp_path / "bad")])
    assert code == 2 and not (tmp_path / "bad").exists()


def test_download_and_data_are_exclusive(idx_folder: Path, tmp_path: Path, capsys) -> None:
    code = main(["prune", "mnist", "--data", str(idx_folder), "--download", "--out", str(tmp_path / "run")])
    assert code == 2 and "not both" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
