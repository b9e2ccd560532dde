"""The magnitude-pruning baseline of the image comparisons: which network, which settings."""

from __future__ import annotations

import pytest
import torch

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


@pytest.fixture(scope="module")
def small_task(tmp_path_factory: pytest.TempPathFactory):
    from netbonsai.data import load_task
    from tests.tiny_runs import crop_of_camera

    return load_task("brightness", crop_of_camera(tmp_path_factory.mktemp("img") / "crop.png"), max_train=600)


def small_settings(**magnitude: object):
    from dataclasses import replace

    from tests.tiny_runs import tiny_settings

    settings = tiny_settings("brightness", dense_epochs=20)
    return replace(settings, dense_grid=((3, 3),), polish_epochs=5,
                   magnitude=MagnitudeSettings(**magnitude))


def test_pruning_stops_before_a_round_that_cuts_every_input_output_path(
    small_task, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A schedule aiming at 99% sparsity ends at the first round that leaves the output constant;
    every reported network still depends on its input, and the counts fall round by round."""
    from netbonsai.methods import magnitude as magnitude_baseline
    from netbonsai.experiments.magnitude_baseline import inputs_reach_outputs, magnitude_job
    from netbonsai.nets.io import net_from_state

    checks: list[tuple[int, bool]] = []  # (live synapses, inputs reach outputs) after every round

    def recording(net) -> bool:
        reach = inputs_reach_outputs(net)
        checks.append((int(net.mask.sum()), reach))
        return reach

    monkeypatch.setattr(magnitude_baseline, "inputs_reach_outputs", recording)
    result = magnitude_job(small_task, small_settings(schedule="relative:0.5", sparsity=0.99))
    rounds = [p["round"] for p in result["points"]]
    assert rounds == list(range(1, len(rounds) + 1)) and rounds
    nets = [net_from_state(state) for state in result["nets"]]
    assert all(inputs_reach_outputs(net) for net in nets)
    # the 3-3 network has 24 synapses, halved each round (24 -> 12 -> 6 -> 3 -> 1 -> 0; 99% would
    # leave none): the schedule ran until the first round that cut every path and not one round
    # more, and reported exactly the rounds before it, with the synapses those rounds left
    assert [reach for _, reach in checks] == [True] * len(nets) + [False]
    assert [live for live, _ in checks] == [12, 6, 3, 1, 0][: len(checks)]
    assert [int(net.mask.sum()) for net in nets] == [live for live, _ in checks[:-1]]
    params = [p["params"] for p in result["points"]]
    assert params == sorted(params, reverse=True)


@pytest.mark.parametrize("method", ["random", "obd"])
def test_other_criteria_run_and_repeat_exactly(small_task, method: str) -> None:
    """obd gets the training data, random a seeded generator: both run, and twice gives the same."""
    from netbonsai.experiments.magnitude_baseline import magnitude_job
    from netbonsai.nets.io import net_from_state
    from netbonsai.prune import prune_step
    from netbonsai.train.sweep import train_dense

    settings = small_settings(method=method, sparsity=0.5)
    first, second = magnitude_job(small_task, settings), magnitude_job(small_task, settings)
    assert first["points"] and first["points"] == second["points"]
    # round 1 removed what this criterion picks on the dense 3-3 network (obd with the training
    # data and loss, random with a generator seeded by the search seed), not the |w| ranking
    grow = settings.grow
    dense = train_dense(small_task, (3, 3), grow.activation, settings.dense_epochs, grow.trainer, grow.seed).net
    by_method, by_magnitude = dense.clone(), dense.clone()
    data = (small_task.x_train, small_task.y_train)
    assert prune_step(by_method, method, 0.2, data=data, loss=grow.trainer.loss,
                      generator=torch.Generator().manual_seed(grow.seed)) == 5  # a fifth of 24 synapses
    prune_step(by_magnitude, "magnitude-blinded", 0.2)
    round_1 = net_from_state(first["nets"][0])
    assert first["points"][0]["round"] == 1
    assert torch.equal(round_1.mask, by_method.mask)
    assert not torch.equal(round_1.mask, by_magnitude.mask)
