"""An interrupted dense sweep resumes with only the networks it had not finished."""

from __future__ import annotations

import json
from pathlib import Path

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
