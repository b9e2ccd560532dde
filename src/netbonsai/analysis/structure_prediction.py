"""Structural performance prediction (paper 001, section 4.3): how well do graph features of a
random structural prior explain the accuracy of the network built from it?

* :func:`pearson_correlations`: Pearson's r of every feature with the accuracy (Table 1).
* :func:`regression_r2`: R^2 of Bayesian Ridge, Random Forest and AdaBoost regressors predicting
  the accuracy from the MinMax-scaled features, over repeated seeded random 90/10 splits.
* :func:`correlation_table` / :func:`r2_table`: markdown tables of the two, one column or row per
  cell (a network type such as ``RNN_Tanh``, ``GRU``).
* :func:`repeat_correlation` / :func:`r2_by_repeats`: when every structure was trained several
  times, how much of one training's accuracy is the structure's at all (the trainings' mutual
  correlation), and the R^2 when a structure's accuracy is the mean of its first 1, 2, ... trainings.

Undefined correlations (a constant feature or a constant accuracy) are ``float('nan')``,
never ``None``, and the tables print them as ``nan``.
"""

from __future__ import annotations

import math
from typing import Any, Hashable, Mapping, Sequence

import numpy as np

from ..errors import InputError
from .report import markdown_table

REGRESSORS = ("bayesian_ridge", "random_forest", "adaboost")


def _as_matrix(features: Any, targets: Any) -> tuple[np.ndarray, np.ndarray]:
    try:
        x = np.asarray(features, dtype=float)
        y = np.asarray(targets, dtype=float)
    except (TypeError, ValueError):
        raise InputError("features and targets must be numeric arrays") from None
    if x.ndim != 2:
        raise InputError(f"features must be a 2-d array (rows, features), got shape {x.shape}")
    if y.ndim != 1:
        raise InputError(f"accuracy must be a 1-d array, got shape {y.shape}")
    if x.shape[0] != y.shape[0]:
        raise InputError(f"{x.shape[0]} feature rows but {y.shape[0]} accuracy values")
    if not np.isfinite(x).all():
        raise InputError("features contain NaN or infinite values")
    if not np.isfinite(y).all():
        raise InputError("accuracy contains NaN or infinite values")
    return x, y


def pearson_correlations(
    features: np.ndarray, names: Sequence[str], accuracy: np.ndarray
) -> dict[str, float]:
    """Pearson's r between each feature column and ``accuracy``, keyed by ``names``.

    A constant column (or a constant accuracy) has no correlation: its entry is
    ``float('nan')``, without a numpy warning. Needs at least two rows; NaN or infinite inputs
    raise :class:`InputError`. Values are clipped to ``[-1, 1]`` against rounding.
    """
    x, y = _as_matrix(features, accuracy)
    names = list(names)
    if len(names) != x.shape[1]:
        raise InputError(f"{len(names)} names for {x.shape[1]} feature columns")
    if x.shape[0] < 2:
        raise InputError(f"a correlation needs at least two rows, got {x.shape[0]}")
    xc = x - x.mean(axis=0)
    yc = y - y.mean()
    x_norm = np.sqrt((xc**2).sum(axis=0))
    y_norm = math.sqrt(float((yc**2).sum()))
    # Spread below rounding noise counts as constant (a column of equal floats can have a tiny
    # nonzero norm after subtracting its mean).
    x_const = x_norm <= 1e-12 * np.maximum(np.abs(x).max(axis=0), 1e-300) * math.sqrt(x.shape[0])
    y_const = y_norm <= 1e-12 * max(float(np.abs(y).max()), 1e-300) * math.sqrt(y.shape[0])
    result: dict[str, float] = {}
    for j, name in enumerate(names):
        if y_const or x_const[j]:
            result[name] = float("nan")
        else:
            r = float(xc[:, j] @ yc) / (float(x_norm[j]) * y_norm)
            result[name] = min(1.0, max(-1.0, r))
    return result


def _make_regressor(name: str, seed: int):
    from sklearn.ensemble import AdaBoostRegressor, RandomForestRegressor
    from sklearn.linear_model import BayesianRidge

    if name == "bayesian_ridge":
        return BayesianRidge()
    if name == "random_forest":
        return RandomForestRegressor(random_state=seed, n_jobs=1)
    if name == "adaboost":
        return AdaBoostRegressor(random_state=seed)
    raise InputError(f"unknown regressor {name!r}; choose from {', '.join(REGRESSORS)}")


def regression_r2(
    features: np.ndarray,
    accuracy: np.ndarray,
    n_splits: int = 20,
    test_fraction: float = 0.1,
    seed: int = 0,
    regressors: Sequence[str] = REGRESSORS,
) -> dict[str, dict[str, Any]]:
    """R^2 of each regressor predicting ``accuracy`` from ``features`` on held-out rows.

    ``n_splits`` random train/test splits (``sklearn.model_selection.ShuffleSplit`` with
    ``test_size=test_fraction``, ``random_state=seed``; the same splits for every regressor). Each
    regressor is a ``Pipeline(MinMaxScaler, regressor)`` fitted on the training rows only, so the
    scaler never sees the test rows; Random Forest and AdaBoost get ``random_state=seed``
    (scikit-learn defaults otherwise, ``n_jobs=1``). Returns ``{name: {"mean", "std",
    "scores"}}``: the test R^2 of every split and their mean and population standard deviation.

    Raises :class:`InputError` for mismatched lengths, NaN or infinite values, a bad
    ``test_fraction`` or ``n_splits``, an unknown regressor, or too few rows (each split needs
    at least two test rows, for R^2 to be defined, and two training rows).
    """
    from sklearn.metrics import r2_score
    from sklearn.model_selection import ShuffleSplit
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler

    x, y = _as_matrix(features, accuracy)
    if isinstance(n_splits, bool) or not isinstance(n_splits, (int, np.integer)) or n_splits < 1:
        raise InputError(f"n_splits must be a positive integer, got {n_splits!r}")
    if not isinstance(test_fraction, (int, float)) or not 0.0 < float(test_fraction) < 1.0:
        raise InputError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    regressors = list(regressors)
    if not regressors:
        raise InputError("no regressors given")
    for name in regressors:
        if name not in REGRESSORS:
            raise InputError(f"unknown regressor {name!r}; choose from {', '.join(REGRESSORS)}")
    n_rows = x.shape[0]
    n_test = math.ceil(float(test_fraction) * n_rows)
    if n_test < 2 or n_rows - n_test < 2:
        raise InputError(
            f"{n_rows} rows are too few for a {test_fraction:g} test split: "
            f"need at least 2 test and 2 training rows, got {n_test} and {n_rows - n_test}"
        )
    splits = list(ShuffleSplit(n_splits=n_splits, test_size=float(test_fraction), random_state=seed).split(x))
    results: dict[str, dict[str, Any]] = {}
    for name in regressors:
        scores = []
        for train, test in splits:
            model = make_pipeline(MinMaxScaler(), _make_regressor(name, seed))
            model.fit(x[train], y[train])
            scores.append(float(r2_score(y[test], model.predict(x[test]))))
        array = np.asarray(scores)
        results[name] = {"mean": float(array.mean()), "std": float(array.std()), "scores": scores}
    return results


def _as_repeats(accuracy_repeats: Any) -> np.ndarray:
    y = np.asarray(accuracy_repeats, dtype=float)
    if y.ndim != 2 or y.shape[1] < 1:
        raise InputError(f"accuracy repeats must be a 2-d array (structures, trainings), got shape {y.shape}")
    if not np.isfinite(y).all():
        raise InputError("accuracy repeats contain NaN or infinite values")
    return y


def repeat_correlation(accuracy_repeats: Any) -> float:
    """Mean Pearson correlation between the accuracies of two trainings of the same structures,
    over every pair of the ``(structures, trainings)`` columns. It bounds what a structural
    predictor can explain of one training (R^2 at most about this value). Pairs with a constant
    column have no correlation and are left out; NaN when no pair is left (e.g. one training)."""
    y = _as_repeats(accuracy_repeats)
    pairs = [(i, j) for i in range(y.shape[1]) for j in range(i + 1, y.shape[1])]
    values = [pearson_correlations(y[:, [i]], ["a"], y[:, j])["a"] for i, j in pairs]
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


def r2_by_repeats(features: np.ndarray, accuracy_repeats: Any, n_splits: int = 20, test_fraction: float = 0.1,
                  seed: int = 0, regressors: Sequence[str] = REGRESSORS) -> dict[int, dict[str, dict[str, Any]]]:
    """:func:`regression_r2` of the mean accuracy of each structure's first ``r`` trainings, for
    ``r`` = 1 .. the trainings given (``accuracy_repeats``: ``(structures, trainings)``), on the
    same splits: how the prediction improves as training noise is averaged out."""
    y = _as_repeats(accuracy_repeats)
    return {r: regression_r2(features, y[:, :r].mean(1), n_splits=n_splits, test_fraction=test_fraction, seed=seed,
                             regressors=regressors) for r in range(1, y.shape[1] + 1)}


def _fmt(value: Any, digits: int) -> str:
    if value is None:
        return ""
    value = float(value)
    return "nan" if math.isnan(value) else f"{value:.{digits}f}"


def correlation_table(
    correlations_by_cell: Mapping[Hashable, Mapping[str, float]], digits: int = 2
) -> str:
    """A markdown table like the paper's Table 1: one row per feature, one column per cell.

    Features keep the order of :data:`~netbonsai.analysis.graph_features.FEATURES` (others
    follow in first-seen order); a feature missing from a cell leaves its entry empty; NaN
    prints as ``nan``.
    """
    from .graph_features import FEATURES

    cells = list(correlations_by_cell)
    if not cells:
        raise InputError("no cells to tabulate")
    seen = [f for cell in cells for f in correlations_by_cell[cell]]
    features = [f for f in FEATURES if f in seen] + list(dict.fromkeys(f for f in seen if f not in FEATURES))
    rows = [
        [feature] + [_fmt(correlations_by_cell[cell].get(feature), digits) for cell in cells]
        for feature in features
    ]
    return markdown_table(["property"] + [str(c) for c in cells], rows)


def r2_table(r2_by_cell: Mapping[Hashable, Mapping[str, Mapping[str, Any]]], digits: int = 2) -> str:
    """A markdown table of :func:`regression_r2` results: one row per cell, one column per
    regressor (those of :data:`REGRESSORS` first), entries ``"mean ± std"``."""
    cells = list(r2_by_cell)
    if not cells:
        raise InputError("no cells to tabulate")
    seen = [name for cell in cells for name in r2_by_cell[cell]]
    names = [n for n in REGRESSORS if n in seen] + list(dict.fromkeys(n for n in seen if n not in REGRESSORS))
    rows = []
    for cell in cells:
        row = [str(cell)]
        for name in names:
            entry = r2_by_cell[cell].get(name)
            if entry is None:
                row.append("")
            else:
                row.append(f"{_fmt(entry['mean'], digits)} ± {_fmt(entry['std'], digits)}")
        rows.append(row)
    return markdown_table(["cell"] + names, rows)
