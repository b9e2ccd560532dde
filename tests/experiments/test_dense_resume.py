"""An interrupted dense sweep resumes with only the networks it had not finished; an interrupted
dense training (prune) resumes from its last epoch checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from netbonsai.cli import main
from netbonsai.experiments import image_baselines, run_options
from tiny_runs import crop_of_camera, shrunk_preset


def test_baseline_resume_trains_only_the_unfinished_dense_networks(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(run_options, "task_settings", shrunk_preset)  # a two-network grid, 100 epochs
    image = crop_of_camera(tmp_path / "crop.png")
    args = ["baseline", "approx", "--image", str(image), "--quiet", "--executor", "inline"]
    assert main([*args, "--out", str(tmp_path / "whole")]) == 0
    whole = json.loads((tmp_path / "whole" / "dense.json").read_text())
    assert not (tmp_path / "whole" / image_baselines.DENSE_PARTIAL).exists()
    # as if killed after the first network: its file and the partial list stay, the rest is gone
    run = tmp_path / "part"
    assert main([*args, "--out", str(run)]) == 0
    (run / "dense.json").unlink()
    (run / image_baselines.DENSE_PARTIAL).write_text(json.dumps(whole[:1]))
    (run / image_baselines.dense_file(whole[1]["hidden"])).unlink()
    trained: list = []
    real = image_baselines.submit_dense_jobs
    monkeypatch.setattr(image_baselines, "submit_dense_jobs",
                        lambda executor, data, settings, on_done=None: trained.extend(settings.dense_grid)
                        or real(executor, data, settings, on_done=on_done))
    assert main([*args, "--out", str(run), "--resume"]) == 0
    assert trained == [tuple(whole[1]["hidden"])]
    resumed = json.loads((run / "dense.json").read_text())
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(resumed) == strip(whole)
    assert not (run / image_baselines.DENSE_PARTIAL).exists()


@pytest.mark.parametrize("method", ["magnitude-blinded", "loss-aware"])
def test_prune_resumes_a_dense_training_killed_midway(tmp_path, monkeypatch, method) -> None:
    """prune checkpoints its dense training (here after every epoch); a run interrupted in its
    third epoch resumes from the second and ends exactly like one that ran through."""
    import json

    from netbonsai.cli import main
    from netbonsai.experiments import mnist_pruning

    from .synthetic_idx import write_synthetic_mnist

    folder = write_synthetic_mnist(tmp_path / "idx")
    args = ["prune", "mnist", "--data", str(folder), "--arch", "784-16-10", "--schedule", "relative:0.3",
            "--target-sparsity", "0.5", "--dense-epochs", "4", "--retrain-epochs", "1", "--val-size", "200", "--quiet", "--method", method]
    assert main([*args, "--out", str(tmp_path / "whole")]) == 0
    monkeypatch.setattr(mnist_pruning, "DENSE_SNAPSHOT_SECONDS", 0.0)
    real_checkpoint = mnist_pruning.RunContext.checkpoint
    saved_epochs: list[int] = []

    def checkpoint_then_die(self, state):
        real_checkpoint(self, state)
        if "dense_training" in state:
            saved_epochs.append(state["dense_training"]["epoch"])
            if state["dense_training"]["epoch"] == 2:
                raise KeyboardInterrupt  # killed right after the second epoch's checkpoint

    monkeypatch.setattr(mnist_pruning.RunContext, "checkpoint", checkpoint_then_die)
    assert main([*args, "--out", str(tmp_path / "killed")]) == 130
    assert saved_epochs == [1, 2]
    saved_epochs.clear()
    monkeypatch.setattr(mnist_pruning.RunContext, "checkpoint", real_checkpoint)
    assert main([*args, "--out", str(tmp_path / "killed"), "--resume"]) == 0
    whole, resumed = (json.loads((tmp_path / run / "result.json").read_text()) for run in ("whole", "killed"))
    for key in ("final", "dense"):
        if key in whole:
            assert {k: v for k, v in whole[key].items() if "seconds" not in k} == \
                {k: v for k, v in resumed[key].items() if "seconds" not in k}
    assert (tmp_path / "whole" / "model").read_bytes() == (tmp_path / "killed" / "model").read_bytes()
