"""pareto_front: non-dominated points, order, ties and bad values."""

from __future__ import annotations

import math

import pytest

from netbonsai.analysis import pareto_front


def _pts(pairs):
    return [{"params": p, "val_loss": l} for p, l in pairs]


def test_front_keeps_only_non_dominated_points_in_params_order():
    points = _pts([(131, 90), (61, 100), (90, 97), (80, 95), (131, 89), (200, 89), (300, 80)])
    front = pareto_front(points)
    assert [(p["params"], p["val_loss"]) for p in front] == [(61, 100), (80, 95), (131, 89), (300, 80)]


def test_equal_params_keep_lowest_loss_and_exact_ties_keep_the_first():
    points = [
        {"params": 10, "val_loss": 2.0, "tag": "a"},
        {"params": 10, "val_loss": 1.0, "tag": "b"},
        {"params": 10, "val_loss": 1.0, "tag": "c"},
    ]
    assert [p["tag"] for p in pareto_front(points)] == ["b"]


def test_returns_copies_with_all_keys():
    points = [{"params": 5, "val_loss": 1.0, "hidden": [2, 2], "train_loss": 0.9}]
    front = pareto_front(points)
    assert front == points
    front[0]["params"] = 99
    assert points[0]["params"] == 5


def test_losses_strictly_decrease_along_the_front():
    points = _pts([(i, (i * 7919) % 13 + 100 / i) for i in range(1, 60)])
    front = pareto_front(points)
    losses = [p["val_loss"] for p in front]
    params = [p["params"] for p in front]
    assert params == sorted(params)
    assert all(a > b for a, b in zip(losses, losses[1:]))
    for p in points:  # every point is matched or beaten by a front point with no more params
        assert any(f["params"] <= p["params"] and f["val_loss"] <= p["val_loss"] for f in front)


def test_custom_keys_and_bad_values():
    points = [
        {"n": 1, "loss": math.nan},
        {"n": 2, "loss": None},
        {"n": 3, "loss": 5.0},
        {"n": math.inf, "loss": 1.0},
    ]
    assert pareto_front(points, x="n", y="loss") == [{"n": 3, "loss": 5.0}]
    assert pareto_front([]) == []
    with pytest.raises(KeyError):
        pareto_front([{"params": 1}])
