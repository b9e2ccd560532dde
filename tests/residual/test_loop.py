"""The block pruning and growth loops on tiny data: pruning stays within tolerance and keeps the
last network within it, parameter counts add up, growth is round robin and stops at the budget,
and a ResidualMLP converts to a DagNet computing the same function."""

from __future__ import annotations

import math

import pytest
import torch

from netbonsai.data.task import Split, Task
from netbonsai.errors import InputError
from netbonsai.nets.io import load, save
from netbonsai.residual import (
    ConvergentPolicy, ResidualMLP, count_params, find_blocks, grow_blocks, insert_block, prune_blocks,
    residual_mlp_to_dag, validation,
)
from netbonsai.train.fit import Budget, TrainerConfig, fit

datasets = pytest.importorskip("sklearn.datasets")

TRAINER = TrainerConfig(method="adam", loss="cross_entropy", lr=1e-2, batch_size=32)
WIDTH, BLOCKS = 16, 5
STEM_HEAD = 64 * WIDTH + WIDTH + WIDTH * 10 + 10  # a ResidualMLP(64, 16, 0, 10)
BLOCK = 2 * (WIDTH * WIDTH + WIDTH) + 1  # one block, its gate included


def digits_task() -> Task:
    """600 shuffled rows of sklearn's digits (pixels in [0, 1]): 400 train, 200 validation."""
    x, y = datasets.load_digits(return_X_y=True)
    rows = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))[:600]
    x, y = torch.tensor(x / 16.0, dtype=torch.float32)[rows], torch.tensor(y)[rows]
    return Task("digits", Split(x[:400], y[:400]), Split(x[400:], y[400:]), loss="cross_entropy",
                metrics=("loss", "accuracy"), meta={"n_classes": 10})


def table_task() -> Task:
    """A synthetic regression table: 3 inputs, y = sin(x0) + x1 * x2, 200 train, 100 validation."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(300, 3, generator=g)
    y = (torch.sin(x[:, 0]) + x[:, 1] * x[:, 2]).unsqueeze(1)
    return Task("table", Split(x[:200], y[:200]), Split(x[200:], y[200:]))


def model(n_in: int, blocks: int, n_out: int, seed: int = 0, activation: str = "relu") -> ResidualMLP:
    torch.manual_seed(seed)
    return ResidualMLP(n_in, WIDTH, blocks, n_out, activation)


@pytest.fixture(scope="module")
def task() -> Task:
    return digits_task()


@pytest.fixture(scope="module")
def start(task: Task) -> ResidualMLP:
    """A trained 5-block network (val loss 0.31)."""
    net = model(64, BLOCKS, 10)
    fit(net, task.train, Budget(epochs=12), TRAINER, seed=0)
    return net


def state(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in net.state_dict().items()}


def test_pruning_keeps_the_last_network_within_tolerance(task: Task, start: ResidualMLP) -> None:
    before = state(start)
    tolerance = 0.2  # measured: four removals within it (0.32-0.36 from 0.31), the fifth beyond (0.47)
    result = prune_blocks(start, task, TRAINER, tolerance=tolerance, retrain_epochs=2, seed=0)
    limit = result.start_val_loss * (1 + tolerance)
    assert result.start_val_loss == pytest.approx(validation(start, task)[0])
    steps = result.steps
    assert result.stop_reason == "tolerance" and len(steps) >= 2  # some removed, then one beyond it
    assert [s["accepted"] for s in steps] == [True] * (len(steps) - 1) + [False]
    assert all(s["val_loss"] <= limit for s in steps[:-1]) and steps[-1]["val_loss"] > limit
    kept_loss, kept_error = validation(result.model, task)
    assert kept_loss <= limit + 1e-9
    assert kept_loss == pytest.approx(steps[-2]["val_loss"]) and kept_error == pytest.approx(steps[-2]["val_error"])
    assert result.blocks_before == BLOCKS and result.blocks_after == BLOCKS - (len(steps) - 1)
    assert len(find_blocks(result.model)) == result.blocks_after
    assert result.params_after == count_params(result.model) == steps[-2]["params"]
    assert result.params_before - result.params_after == sum(s["removed_params"] for s in steps[:-1])
    # the input network is untouched
    assert len(find_blocks(start)) == BLOCKS
    assert all(torch.equal(v, before[k]) for k, v in start.state_dict().items())


def test_a_removal_beyond_tolerance_without_retraining_keeps_the_start(task: Task, start: ResidualMLP) -> None:
    result = prune_blocks(start, task, TRAINER, tolerance=0.01, retrain_epochs=0)
    assert [s["accepted"] for s in result.steps] == [False] and result.stop_reason == "tolerance"
    assert result.params_after == result.params_before == count_params(start) == STEM_HEAD + BLOCKS * BLOCK
    assert result.model is not start
    assert validation(result.model, task)[0] == pytest.approx(result.start_val_loss)


def test_a_large_tolerance_removes_every_block_and_the_counts_add_up(task: Task, start: ResidualMLP) -> None:
    seen: list[dict] = []
    result = prune_blocks(start, task, TRAINER, tolerance=1e6, retrain_epochs=1, seed=3, on_step=seen.append)
    assert result.stop_reason == "no blocks left" and result.blocks_after == 0
    assert len(result.steps) == BLOCKS and all(s["accepted"] for s in result.steps)
    assert result.params_before == STEM_HEAD + BLOCKS * BLOCK and result.params_after == STEM_HEAD
    assert result.params_after == count_params(result.model)
    assert [s["params"] for s in result.steps] == [STEM_HEAD + k * BLOCK for k in range(BLOCKS - 1, -1, -1)]
    assert all(s["removed_params"] == BLOCK for s in result.steps)
    # on_step: once per step, the record plus that step's network
    assert len(seen) == BLOCKS
    assert [{k: v for k, v in s.items() if k != "model"} for s in seen] == result.steps
    assert [count_params(s["model"]) for s in seen] == [s["params"] for s in result.steps]
    assert [len(s["scores"]) for s in result.steps] == list(range(BLOCKS, 0, -1))
    # the least efficient block goes (equal block sizes: the lowest score)
    for s in result.steps:
        assert s["block"] == [0, min(range(len(s["scores"])), key=s["scores"].__getitem__)]


def test_pruning_is_deterministic_for_a_seed(task: Task, start: ResidualMLP) -> None:
    runs = [prune_blocks(start, task, TRAINER, tolerance=1e6, max_removals=2, seed=seed) for seed in (5, 5, 6)]
    assert runs[0].stop_reason == "max removals" and len(runs[0].steps) == 2
    assert runs[0].steps == runs[1].steps
    assert all(torch.equal(v, runs[1].model.state_dict()[k]) for k, v in runs[0].model.state_dict().items())
    assert runs[0].steps[1]["val_loss"] != runs[2].steps[1]["val_loss"]  # the seed orders the retraining


def test_the_lesion_measure_and_bad_arguments(task: Task, start: ResidualMLP) -> None:
    result = prune_blocks(start, task, TRAINER, measure="lesion", tolerance=1e6, max_removals=1, retrain_epochs=0)
    (step,) = result.steps
    lesions = step["scores"]
    assert step["measure"] == "lesion" and step["block"] == [0, lesions.index(min(lesions))]
    # the lesion is the loss rise of skipping the block: the removed network's loss, without retraining
    assert step["val_loss"] - result.start_val_loss == pytest.approx(min(lesions), abs=1e-5)
    with pytest.raises(InputError, match="measure"):
        prune_blocks(start, task, TRAINER, measure="bogus")
    with pytest.raises(InputError, match="trainer's loss"):
        prune_blocks(start, task, TrainerConfig(method="adam", loss="mse"))
    with pytest.raises(InputError, match="tolerance"):
        prune_blocks(start, task, TRAINER, tolerance=-0.1)


def test_growth_is_round_robin_and_stops_at_max_params(task: Task) -> None:
    small = model(64, 1, 10)
    seen: list[dict] = []
    budget = STEM_HEAD + 3 * BLOCK + BLOCK // 2  # room for two more blocks, not three
    result = grow_blocks(small, task, TRAINER, steps=5, max_params=budget, on_step=seen.append)
    assert result.stop_reason == "max params"
    assert [r["blocks_per_stage"] for r in result.records] == [[2], [3]]
    assert [r["stage"] for r in result.records] == [0, 0]
    assert count_params(result.model) == STEM_HEAD + 3 * BLOCK <= budget
    assert len(seen) == 2 and [count_params(s["model"]) for s in seen] == [r["params"] for r in result.records]
    assert all(r["val"] == pytest.approx(1 - r["val_error"]) for r in result.records)  # accuracy
    assert len(find_blocks(small)) == 1  # the input is untouched
    again = grow_blocks(small, task, TRAINER, steps=5, max_params=budget)
    assert again.records == result.records


def test_growth_on_regression_reports_minus_the_loss_and_follows_the_policy() -> None:
    table = table_task()
    trainer = TrainerConfig(method="adam", loss="mse", lr=1e-2, batch_size=32)
    result = grow_blocks(model(3, 1, 1), table, trainer, steps=4, epochs_per_step=2,
                         policy=ConvergentPolicy(threshold=10.0, window=1))
    assert result.stop_reason == "policy" and len(result.records) == 2  # the second step cannot gain 10
    assert all(r["val"] == -r["val_loss"] and r["val_error"] is None for r in result.records)
    assert result.records[-1]["val_loss"] == pytest.approx(validation(result.model, table)[0])
    plain = grow_blocks(model(3, 1, 1), table, trainer, steps=2, epochs_per_step=1)
    assert plain.stop_reason == "steps done" and [r["blocks_per_stage"] for r in plain.records] == [[2], [3]]


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_a_residual_mlp_converts_to_a_dagnet_with_the_same_outputs(task: Task, start: ResidualMLP, tmp_path,
                                                                    activation: str) -> None:
    trained = model(64, 3, 10, seed=2, activation=activation)
    with torch.no_grad():
        trained.stages[0][1].gate.fill_(0.7)  # the gate is folded into the second layer
    grown = insert_block(trained, 0, position=1)  # a zero-initialised block: its weights are still synapses
    for net in (start, trained, grown, model(64, 0, 10)):
        dag = residual_mlp_to_dag(net)
        blocks = len(find_blocks(net))
        assert dag.num_params() == count_params(net) - blocks + blocks * WIDTH  # skips counted, gates folded
        with torch.no_grad():
            assert torch.allclose(dag(task.x_val), net(task.x_val), atol=1e-5)
        path = save(dag, tmp_path / f"net-{blocks}")
        again = load(path)
        assert again.num_params() == dag.num_params()
        with torch.no_grad():
            assert torch.allclose(again(task.x_val), net(task.x_val), atol=1e-5)
    with pytest.raises(InputError, match="ResidualMLP"):
        residual_mlp_to_dag(torch.nn.Linear(2, 2))
    assert not math.isnan(validation(residual_mlp_to_dag(start), task)[0])


def test_pruning_by_validation_error_accepts_within_the_error_limit(task: Task, start: ResidualMLP) -> None:
    """With error_tolerance the loss limit is unused: every accepted step's validation error is
    within the start's error plus the tolerance, and the first beyond it is undone."""
    start_error = validation(start, task)[1]
    tolerance = 0.02  # 4 of 200 validation digits
    result = prune_blocks(start, task, TRAINER, tolerance=0.0, error_tolerance=tolerance, retrain_epochs=1, seed=0)
    accepted = [s for s in result.steps if s["accepted"]]
    assert all(s["val_error"] <= start_error + tolerance + 1e-9 for s in accepted)
    assert all(not s["accepted"] for s in result.steps[len(accepted):])
    if result.stop_reason == "tolerance":
        assert result.steps[-1]["val_error"] > start_error + tolerance
    assert result.blocks_after == BLOCKS - len(accepted)
    # a loss tolerance of 0 alone would have refused a step whose loss rose
    assert any(s["val_loss"] > result.start_val_loss for s in accepted) or len(accepted) == 0
    everything = prune_blocks(start, task, TRAINER, error_tolerance=0.999, retrain_epochs=0)
    assert everything.blocks_after == 0 and everything.stop_reason == "no blocks left"


@pytest.mark.parametrize("bad", [-0.1, 1.0, True, "0.1"])
def test_a_bad_error_tolerance_is_refused(task: Task, start: ResidualMLP, bad) -> None:
    with pytest.raises(InputError, match="error_tolerance"):
        prune_blocks(start, task, TRAINER, error_tolerance=bad)


def test_error_tolerance_needs_a_classification_task() -> None:
    table = table_task()
    trainer = TrainerConfig(method="adam", loss="mse", lr=1e-2, batch_size=32)
    with pytest.raises(InputError, match="classification"):
        prune_blocks(model(3, 2, 1), table, trainer, error_tolerance=0.01)


def test_growth_trains_each_step_for_its_budget(task: Task) -> None:
    """Budget(steps=0) per step: a zero-initialised block leaves the function exactly as it was;
    one optimiser step per growth step changes it; a budget that is not a Budget is refused."""
    net = model(64, 1, 10, seed=4)
    untouched = grow_blocks(net, task, TRAINER, steps=2, budget_per_step=Budget(steps=0))
    assert len(find_blocks(untouched.model)) == 3
    assert torch.equal(untouched.model(task.x_val), net(task.x_val))
    trained = grow_blocks(net, task, TRAINER, steps=2, budget_per_step=Budget(steps=1))
    assert not torch.allclose(trained.model(task.x_val), net(task.x_val))
    with pytest.raises(InputError, match="budget_per_step"):
        grow_blocks(net, task, TRAINER, steps=1, budget_per_step=3)
