"""Determinism: the same seed and configuration give the same history and the same model files.

Only wall-clock fields may differ between two runs: ``seconds`` in history events, and
``wall_seconds`` / ``environment`` in result.json (checkpoint.pt, report.md and history.png carry
times too and are not compared). The quick preset's budgets are all in epochs (L-BFGS
iterations) and it has no time limit, so nothing it decides depends on the clock; a run given
``--max-seconds`` is not reproducible, by design.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from netbonsai.cli import main
from netbonsai.runs import read_history

WALL_CLOCK = {"seconds", "wall_seconds", "search_seconds", "environment"}

# The quick preset with smaller epoch budgets and an early stop (a run of a few seconds).
SHRUNK = ["--set", "start_epochs=100", "--set", "trial_epochs=5", "--set", "grow_epochs=20", "--set", "n_attempts=20",
          "--set", "attempt_samples=1000", "--set", "max_cycles=2", "--max-params", "150"]


def without_clock(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in WALL_CLOCK}


def crop_of_camera(path: Path) -> Path:
    """A 64x48 crop of scikit-image's bundled camera image (about 2,300 training samples)."""
    import skimage.data

    Image.fromarray(skimage.data.camera()[200:248, 200:264]).save(path)
    return path


def grow(capsys: pytest.CaptureFixture, out: Path, *args: str) -> Path:
    code = main(["grow", "brightness", "--out", str(out), "--quiet", "--threads", "1", *args])
    err = capsys.readouterr().err
    assert code == 0, err
    return out


def assert_same_run(first: Path, second: Path) -> None:
    events = [list(read_history(run / "history.jsonl")) for run in (first, second)]
    assert len(events[0]) == len(events[1])
    for a, b in zip(*events):
        assert without_clock(a) == without_clock(b)
    assert (first / "config.json").read_bytes() == (second / "config.json").read_bytes()
    results = [json.loads((run / "result.json").read_text()) for run in (first, second)]
    assert without_clock(results[0]) == without_clock(results[1])
    assert (first / "model").read_bytes() == (second / "model").read_bytes()
    fronts = [sorted(p.name for p in (run / "front").iterdir()) for run in (first, second)]
    assert fronts[0] == fronts[1] and fronts[0]
    for name in fronts[0]:
        assert (first / "front" / name).read_bytes() == (second / "front" / name).read_bytes()


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
