"""Settings of image grow/compare runs small enough for tests (about a second each), and the
shrunken ``netbonsai grow brightness`` command line the determinism and kill/resume tests share."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from PIL import Image

from netbonsai.experiments.presets import DataSettings, TaskSettings, task_settings
from netbonsai.grow import GrowConfig
from netbonsai.runs import read_history

# Fields that hold wall-clock figures: the only ones allowed to differ between two runs.
WALL_CLOCK = {"seconds", "wall_seconds", "search_seconds", "environment"}

# The quick preset with smaller epoch budgets and an early stop (a run of a few seconds).
SHRUNK = ["--set", "start_epochs=100", "--set", "grow.trial_epochs=5", "--set", "grow.grow_epochs=20", "--set", "grow.n_attempts=20",
          "--set", "grow.attempt_samples=1000", "--set", "grow.max_cycles=2", "--max-params", "150"]


def without_clock(record: Any) -> Any:
    """``record`` without its wall-clock fields, at any depth (e.g. the dense runs of comparison.json)."""
    if isinstance(record, dict):
        return {k: without_clock(v) for k, v in record.items() if k not in WALL_CLOCK}
    if isinstance(record, list):
        return [without_clock(v) for v in record]
    return record


# The dense baseline of a shrunken ``compare``: two networks, trained like the shrunken search's
# starting network, and a shorter final training (none of it is a command-line setting).
SMALL_DENSE_GRID = ((5, 5), (8, 7))


def shrunk_preset(task: str, preset: str = "quick") -> TaskSettings:
    """The preset with the small dense grid, 100 dense epochs and 50 polish epochs."""
    settings = task_settings(task, preset)
    return replace(settings, dense_grid=SMALL_DENSE_GRID, dense_epochs=100, polish_epochs=50)


def main_with_shrunk_preset(argv: list[str]) -> int:
    """``netbonsai ARGV`` with :func:`shrunk_preset` as the image presets (a child process's entry
    point, see test_kill_resume.SHRUNK_PRESET_CLI)."""
    from netbonsai.cli import main
    from netbonsai.experiments import run_options

    run_options.task_settings = shrunk_preset
    return main(argv)


def crop_of_camera(path: Path) -> Path:
    """A 64x48 crop of scikit-image's bundled camera image (about 2,300 training samples)."""
    import skimage.data

    Image.fromarray(skimage.data.camera()[200:248, 200:264]).save(path)
    return path


def assert_same_run(first: Path, second: Path) -> None:
    """Two grow runs agree on everything but wall-clock figures: history.jsonl event by event,
    config.json, result.json, and byte-identical model and front/ files."""
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


def tiny_settings(task: str, preset: str = "quick", max_train: int = 600, attempt_samples: int = 300,
                  dense_epochs: int = 5) -> TaskSettings:
    """Settings of a grow/compare run that takes about a second (a tiny network, a few hundred pixels)."""
    grow = GrowConfig(hidden=(3, 3), start_epochs=10, trial_epochs=2, grow_epochs=3, n_attempts=4,
                      attempt_samples=attempt_samples, max_params=40, max_cycles=1)
    return TaskSettings(task=task, preset=preset, data=DataSettings(max_train=max_train), grow=grow,
                        dense_grid=((2, 2),), dense_epochs=dense_epochs)


def pattern_task(folder: Path, size: int = 40, max_train: int = 1500, periods: tuple[float, float] = (5.0, 7.0),
                 noise: float = 8.0):
    """Brightness prediction on a ``size`` x ``size`` smooth sine pattern with seeded noise."""
    import numpy as np

    from netbonsai.data import load_task

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    image = 128 + 60 * np.sin(xx / periods[0]) * np.cos(yy / periods[1]) + rng.normal(0, noise, (size, size))
    path = Path(folder) / "pattern.png"
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(path)
    return load_task("brightness", path, max_train=max_train)
