"""The grow-and-prune search on a classification task (sklearn's digits, a tiny budget)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from netbonsai.data.task import Split, Task
from netbonsai.grow import GrowConfig, grow
from netbonsai.grow.config import for_task
from netbonsai.methods.grow import GrowMethod
from netbonsai.train import TrainerConfig

datasets = pytest.importorskip("sklearn.datasets")


def digits_task(n_train: int = 600, n_val: int = 300) -> Task:
    x, y = datasets.load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    train, val = order[:n_train], order[n_train:n_train + n_val]
    mean, std = x[train].mean(0), x[train].std(0)
    x = (x - mean) / np.where(std > 0, std, 1.0)
    tensor = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return Task("digits", Split(tensor(x[train]), torch.tensor(y[train])), Split(tensor(x[val]), torch.tensor(y[val])),
                loss="cross_entropy", metrics=("loss", "accuracy", "errors"), meta={"n_classes": 10})


TINY = GrowConfig(hidden=(6,), start_epochs=60, trial_epochs=3, grow_epochs=10, n_candidates=4, n_trials=2,
                  n_attempts=10, max_cycles=1, max_params=600, max_prune_steps=5)


def test_for_task_switches_a_classifier_to_cross_entropy():
    task = digits_task(50, 20)
    assert for_task(TINY, task).trainer.loss == "cross_entropy"
    assert TINY.trainer.loss == "mse"  # the given config is left alone
    explicit = GrowConfig(trainer=TrainerConfig(method="adam", loss="cross_entropy"))
    assert for_task(explicit, task) is explicit
    regression = Task("r", Split(torch.zeros(4, 2), torch.zeros(4, 1)), Split(torch.zeros(2, 2), torch.zeros(2, 1)))
    assert for_task(TINY, regression) is TINY


def test_grow_classifies_digits_and_records_accuracy():
    task = digits_task()
    result = grow(task, TINY)
    assert result.net.n_out == 10
    events = result.events
    assert {e["event"] for e in events} >= {"start", "prune", "grow", "stop"}
    for event in events:
        assert 0.0 <= event["val_accuracy"] <= 1.0
        assert event["val_errors"] == round((1 - event["val_accuracy"]) * len(task.val))
    with torch.no_grad():
        accuracy = float((result.best().net(task.x_val).argmax(1) == task.y_val).float().mean())
    assert accuracy > 0.6  # chance is 0.1
    assert max(e["val_accuracy"] for e in events) > 0.6
    # the losses are cross-entropies (mse on the labels would be far larger)
    assert events[0]["train_loss"] < 1.0


def test_classification_search_is_deterministic():
    task = digits_task(200, 100)
    config = GrowConfig(hidden=(4,), start_epochs=20, trial_epochs=2, grow_epochs=5, n_candidates=3, n_trials=1,
                        n_attempts=5, max_cycles=1, max_params=400, max_prune_steps=3)
    strip = lambda events: [{k: v for k, v in e.items() if k != "seconds"} for e in events]  # noqa: E731
    assert strip(grow(task, config).events) == strip(grow(task, config).events)


def test_regression_events_carry_no_accuracy():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 2, generator=g)
    y = x.sum(1, keepdim=True)
    task = Task("r", Split(x[:48], y[:48]), Split(x[48:], y[48:]))
    config = GrowConfig(hidden=(3,), start_epochs=10, trial_epochs=2, grow_epochs=2, n_attempts=4, max_cycles=1,
                        max_prune_steps=2)
    events = grow(task, config).events
    assert all("val_accuracy" not in e and "val_errors" not in e for e in events)


def test_grow_method_accepts_classification():
    assert "classification" in GrowMethod.tasks
    GrowMethod().check(digits_task(50, 20))  # no InputError
