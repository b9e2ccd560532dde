"""Pearson correlations and cross-validated R^2 of structural performance predictors."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from sklearn.linear_model import BayesianRidge
from sklearn.metrics import r2_score
from sklearn.model_selection import ShuffleSplit
from sklearn.preprocessing import MinMaxScaler

from netbonsai.analysis.structure_prediction import (
    REGRESSORS,
    correlation_table,
    pearson_correlations,
    r2_by_repeats,
    r2_table,
    regression_r2,
    repeat_correlation,
)
from netbonsai.errors import InputError


def test_pearson_perfect_constant_and_ordinary_columns():
    rng = np.random.default_rng(0)
    y = rng.uniform(size=30)
    noise = rng.normal(size=30)
    x = np.stack([2 * y + 1, -3 * y, np.full(30, 0.1), noise], axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = pearson_correlations(x, ["up", "down", "flat", "noise"], y)
    assert list(r) == ["up", "down", "flat", "noise"]
    assert r["up"] == pytest.approx(1.0) and r["down"] == pytest.approx(-1.0)
    assert math.isnan(r["flat"])
    assert r["noise"] == pytest.approx(np.corrcoef(noise, y)[0, 1])
    constant_target = pearson_correlations(x, ["a", "b", "c", "d"], np.ones(30))
    assert all(math.isnan(v) for v in constant_target.values())


def test_pearson_rejects_bad_input():
    with pytest.raises(InputError):
        pearson_correlations(np.zeros((3, 2)), ["a"], np.zeros(3))
    with pytest.raises(InputError):
        pearson_correlations(np.zeros((3, 2)), ["a", "b"], np.zeros(4))
    with pytest.raises(InputError, match="NaN"):
        pearson_correlations(np.array([[1.0], [np.nan], [2.0]]), ["a"], np.arange(3.0))


def _smooth(n=200, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(n, 5)) * [1, 1, 10, 100, 0.01]
    y = np.sin(2 * x[:, 0]) + x[:, 1] ** 2
    return x, y


def test_r2_on_a_smooth_target_and_on_noise():
    x, y = _smooth()
    result = regression_r2(x, y, n_splits=5, seed=0)
    assert list(result) == list(REGRESSORS)
    for entry in result.values():
        assert len(entry["scores"]) == 5
        assert entry["mean"] == pytest.approx(np.mean(entry["scores"]))
        assert entry["std"] == pytest.approx(np.std(entry["scores"]))
    assert result["random_forest"]["mean"] > 0.8
    noise = regression_r2(x, np.random.default_rng(1).normal(size=len(y)), n_splits=5, seed=0)
    for name, entry in noise.items():
        assert entry["mean"] < 0.2, name


def test_r2_is_reproducible_and_seeded():
    x, y = _smooth(n=80)
    first = regression_r2(x, y, n_splits=2, seed=4, regressors=("random_forest", "adaboost"))
    again = regression_r2(x, y, n_splits=2, seed=4, regressors=("random_forest", "adaboost"))
    other = regression_r2(x, y, n_splits=2, seed=5, regressors=("random_forest", "adaboost"))
    assert first == again
    assert first["random_forest"]["scores"] != other["random_forest"]["scores"]


def test_r2_scales_on_the_training_rows_only():
    x, y = _smooth(n=60, seed=2)
    x[0] *= 1000  # an outlier that moves the scaler when it is in the fitted rows
    got = regression_r2(x, y, n_splits=4, seed=1, regressors=("bayesian_ridge",))["bayesian_ridge"]["scores"]
    expected = []
    for train, test in ShuffleSplit(n_splits=4, test_size=0.1, random_state=1).split(x):
        scaler = MinMaxScaler().fit(x[train])
        model = BayesianRidge().fit(scaler.transform(x[train]), y[train])
        expected.append(r2_score(y[test], model.predict(scaler.transform(x[test]))))
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_r2_rejects_bad_input():
    x, y = _smooth(n=40)
    with pytest.raises(InputError, match="too few"):
        regression_r2(x[:10], y[:10])  # one test row at 10%
    with pytest.raises(InputError):
        regression_r2(x, y[:-1])
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        regression_r2(bad, y)
    bad_y = y.copy()
    bad_y[0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        regression_r2(x, bad_y)
    with pytest.raises(InputError):
        regression_r2(x[:, 0], y)
    with pytest.raises(InputError, match="unknown regressor"):
        regression_r2(x, y, regressors=("svm",))
    with pytest.raises(InputError):
        regression_r2(x, y, test_fraction=1.0)
    with pytest.raises(InputError):
        regression_r2(x, y, n_splits=0)


def test_correlation_table_like_table_1():
    table = correlation_table(
        {
            "RNN_Tanh": {"nodes": 0.4, "layers": 0.25, "closeness_var": float("nan")},
            "GRU": {"nodes": 0.49, "layers": 0.343},
        }
    )
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()]
    assert cells[0] == ["property", "RNN_Tanh", "GRU"]
    assert cells[2:] == [["layers", "0.25", "0.34"], ["nodes", "0.40", "0.49"], ["closeness_var", "nan", ""]]


def test_r2_table_rows_are_cells():
    table = r2_table({
        "GRU": {
            "random_forest": {"mean": 0.876, "std": 0.05, "scores": []},
            "bayesian_ridge": {"mean": 0.67, "std": 0.1, "scores": []},
        },
        "LSTM": {"bayesian_ridge": {"mean": 0.37, "std": 0.2, "scores": []}},
    })
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()]
    assert cells[0] == ["cell", "bayesian_ridge", "random_forest"]
    assert cells[2] == ["GRU", "0.67 ± 0.10", "0.88 ± 0.05"]
    assert cells[3] == ["LSTM", "0.37 ± 0.20", ""]
    with pytest.raises(InputError):
        r2_table({})


def test_averaging_noisy_trainings_raises_r2_towards_the_noise_free_value():
    """Each structure's 'trainings' are its smooth accuracy plus independent noise: the trainings
    correlate as the noise allows, and the R^2 of their mean rises with the number averaged."""
    x, y = _smooth()
    rng = np.random.default_rng(3)
    trainings = y[:, None] + rng.normal(scale=0.7 * y.std(), size=(len(y), 4))
    corr = repeat_correlation(trainings)
    pairs = [np.corrcoef(trainings[:, i], trainings[:, j])[0, 1] for i in range(4) for j in range(i + 1, 4)]
    assert corr == pytest.approx(np.mean(pairs))
    assert 0.5 < corr < 0.8  # 1 / (1 + 0.7^2) = 0.67 expected
    by_r = r2_by_repeats(x, trainings, n_splits=5, seed=0, regressors=("bayesian_ridge",))
    assert list(by_r) == [1, 2, 3, 4]
    means = [by_r[r]["bayesian_ridge"]["mean"] for r in by_r]
    assert means == sorted(means) and means[3] > means[0] + 0.2
    # r = 1 is the first training alone, on the same splits as regression_r2
    alone = regression_r2(x, trainings[:, 0], n_splits=5, seed=0, regressors=("bayesian_ridge",))
    assert by_r[1]["bayesian_ridge"]["scores"] == alone["bayesian_ridge"]["scores"]
    assert math.isnan(repeat_correlation(trainings[:, :1]))
    with pytest.raises(InputError, match="2-d"):
        repeat_correlation(trainings[:, 0])
    with pytest.raises(InputError, match="NaN"):
        r2_by_repeats(x, np.full((len(y), 2), np.nan))
