"""Settings of image grow/compare runs small enough for tests (about a second each)."""

from __future__ import annotations

from netbonsai.experiments.presets import DataSettings, TaskSettings
from netbonsai.grow import GrowConfig


def tiny_settings(task: str, preset: str = "quick", max_train: int = 600, attempt_samples: int = 300,
                  dense_epochs: int = 5) -> TaskSettings:
    """Settings of a grow/compare run that takes about a second (a tiny network, a few hundred pixels)."""
    grow = GrowConfig(hidden=(3, 3), start_epochs=10, trial_epochs=2, grow_epochs=3, n_attempts=4,
                      attempt_samples=attempt_samples, max_params=40, max_cycles=1)
    return TaskSettings(task=task, preset=preset, data=DataSettings(max_train=max_train), grow=grow,
                        dense_grid=((2, 2),), dense_epochs=dense_epochs)
