"""Determinism: the same seed and configuration give the same history and the same model files.

Only wall-clock fields may differ between two runs: ``seconds`` in history events, and
``wall_seconds`` / ``environment`` in result.json (checkpoint.pt, report.md and history.png carry
times too and are not compared). The quick preset's budgets are all in epochs (L-BFGS
iterations) and it has no time limit, so nothing it decides depends on the clock; a run given
``--max-seconds`` is not reproducible, by design.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from netbonsai.cli import main
from netbonsai.runs import read_history
from tiny_runs import SHRUNK, assert_same_run, crop_of_camera, without_clock  # tests/ is on sys.path


def grow(capsys: pytest.CaptureFixture, out: Path, *args: str) -> Path:
    code = main(["grow", "brightness", "--out", str(out), "--quiet", "--threads", "1", *args])
    err = capsys.readouterr().err
    assert code == 0, err
    return out


def test_same_seed_same_history_and_model(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    image = str(crop_of_camera(tmp_path / "crop.png"))
    first = grow(capsys, tmp_path / "a", "--image", image, "--seed", "3", *SHRUNK)
    second = grow(capsys, tmp_path / "b", "--image", image, "--seed", "3", *SHRUNK)
    assert_same_run(first, second)
    kinds = {e["event"] for e in read_history(first / "history.jsonl")}
    assert {"start", "prune", "grow", "stop"} <= kinds  # both phases of the search ran

    # the control: another seed gives another search
    other = grow(capsys, tmp_path / "c", "--image", image, "--seed", "4", *SHRUNK)
    histories = [[without_clock(e) for e in read_history(run / "history.jsonl")] for run in (first, other)]
    assert histories[0] != histories[1]


@pytest.mark.slow
def test_quick_preset_brightness_grow_is_deterministic(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The real ``netbonsai grow brightness --preset quick`` (default camera image), twice."""
    first = grow(capsys, tmp_path / "a", "--preset", "quick", "--seed", "0")
    second = grow(capsys, tmp_path / "b", "--preset", "quick", "--seed", "0")
    assert_same_run(first, second)
