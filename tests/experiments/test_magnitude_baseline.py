"""The magnitude-pruning baseline of the image comparisons: which network, which settings."""

from __future__ import annotations

import pytest

from netbonsai.errors import InputError
from netbonsai.experiments.magnitude_baseline import MagnitudeSettings, mlp_params, pruned_architecture
from netbonsai.experiments.presets import BRIGHTNESS_GRID, task_settings


def test_mlp_params_counts_weights_and_biases() -> None:
    assert mlp_params([4, 5, 5, 1]) == 61
    assert mlp_params([2, 40, 40, 1]) == 1801


def test_the_pruned_network_is_the_largest_grid_network_within_the_search_ceiling() -> None:
    assert pruned_architecture(BRIGHTNESS_GRID, 4, 1, 300) == (12, 14)  # 257 parameters
    assert pruned_architecture(BRIGHTNESS_GRID, 4, 1, 331) == (15, 15)  # the bound is inclusive
    assert pruned_architecture(BRIGHTNESS_GRID, 4, 1, 10) == (5, 5)  # none fits: the smallest
    for task, preset, expected in [("brightness", "paper", (15, 15)), ("approx", "quick", (12, 12)),
                                   ("approx", "paper", (16, 16))]:
        settings = task_settings(task, preset)
        n_in = 4 if task == "brightness" else 2
        assert pruned_architecture(settings.dense_grid, n_in, 1, settings.grow.max_params) == expected
    with pytest.raises(InputError, match="empty"):
        pruned_architecture((), 4, 1, 100)


@pytest.mark.parametrize("field,value,match", [
    ("sparsity", 0.0, "sparsity"), ("sparsity", 1.0, "sparsity"), ("sparsity", True, "sparsity"),
    ("method", "biggest", "pruning method"), ("schedule", "relative:2", "relative"), ("enabled", "yes", "enabled"),
])
def test_bad_magnitude_settings_are_refused(field: str, value: object, match: str) -> None:
    with pytest.raises(InputError, match=match):
        MagnitudeSettings(**{field: value})
