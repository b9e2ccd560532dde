"""The user's own tabular data as a :class:`~netbonsai.data.task.Task`.

:func:`table_task` reads a table (a CSV file, an NPZ file with arrays ``x`` and ``y``, a pandas
DataFrame, a mapping of column name to values, or an ``(X, y)`` pair of arrays), prepares it and
splits it; :func:`data_task` picks CSV or NPZ by a file's extension; :func:`sklearn_task` builds
the same kind of task from scikit-learn's bundled data sets (``sklearn:NAME``, offline).
:func:`prepare_rows` applies a task's stored preprocessing to new rows, :func:`decode_outputs`
and :func:`class_probabilities` turn a network's outputs back into labels or values.

Decisions (all recorded in ``task.meta["preprocessing"]``, JSON-ready):

* **Cells.** A cell that is empty or reads ``nan``, ``na``, ``n/a`` or ``null`` (any case) is
  missing. Missing cells are an error unless ``drop_missing=True`` (``--drop-missing``), which
  drops those rows and records how many in ``meta["dropped_rows"]``. Infinite values are an error.
* **Input columns.** A column of numbers is used as it is; a column of text is one-hot encoded
  over its categories (all of the table's values, sorted); ``prepare_rows`` refuses a category the
  model has not seen. A column that mixes numbers and text, or holds more distinct text values
  than half its rows (and more than 2) or more than :data:`MAX_CATEGORIES`, is refused. Numeric
  columns are standardized with the training split's mean and (population) standard deviation
  (a constant column gets scale 1); one-hot columns stay 0/1 (stored as mean 0, scale 1).
* **Task type.** Classification when the target is text or boolean, or holds only integer values
  with at most :data:`MAX_AUTO_CLASSES` (20) distinct values and at least 20 rows per distinct
  value on average (5% of the rows) or only 2 distinct values; otherwise regression.
  ``task_type`` overrides it. Several targets are always regression.
* **Targets.** Class labels map to 0..C-1 in sorted order (``classes`` holds the original
  labels); regression targets are standardized with the training split's mean and standard
  deviation. ``loss_scale`` is ``std**2`` for one regression target, so the reported loss is the
  MSE in the target's own units squared; with several targets it is 1 (the reported loss is the
  mean squared error of the standardized targets, a fraction of their variance). Classifiers: 1.
* **Split.** Seeded random train/validation/test rows (``val_fraction``, ``test_fraction``; no
  test split when it is 0), stratified by class for classifiers (each class gives each held-out
  split its share of rows, largest remainders first).
  Each split needs a row, a classifier's training split two classes.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import InputError
from .table_io import (MISSING_TEXT, _check_finite, _Column, _column_from_values, _columns_from_array,
                       _dataframe_columns, _is_dataframe, _is_series, _missing_report, _named_columns, _read_npz,
                       _refuse_mixed, _series_column)
from .table_rows import _encode, _encoded_names, class_probabilities, decode_outputs, prepare_rows  # noqa: F401
from .task import Split, Task

__all__ = [
    "MAX_AUTO_CLASSES", "MAX_CATEGORIES", "SKLEARN_DATASETS", "class_probabilities", "data_task",
    "decode_outputs", "prepare_rows", "sklearn_task", "table_task"]

MAX_AUTO_CLASSES = 20   # an integer target with more distinct values is regression (unless overridden)
MIN_ROWS_PER_CLASS = 20  # ... and with fewer rows per distinct value on average too
MAX_CATEGORIES = 256    # a text column with more categories is refused
TASK_TYPES = ("regression", "classification")
SKLEARN_DATASETS = {  # name -> (loader, task type)
    "diabetes": ("load_diabetes", "regression"),
    "digits": ("load_digits", "classification"),
    "breast_cancer": ("load_breast_cancer", "classification"),
    "wine": ("load_wine", "classification"),
    "iris": ("load_iris", "classification"),
}


# ---------------------------------------------------------------------- the task
def table_task(
    source: Any, target: str | Sequence[str] | None = None, *, task_type: str | None = None,
    val_fraction: float = 0.2, test_fraction: float = 0.2, seed: int = 0, drop_missing: bool = False,
    name: str | None = None,
) -> Task:
    """A :class:`Task` from a table (see the module docstring for every decision).

    ``source``: a CSV path (``.tsv``: tab-separated), an NPZ path (arrays ``x`` and ``y``;
    ``target`` is ignored), a pandas DataFrame, a mapping of column name to values, or an
    ``(X, y)`` pair of array-likes (columns ``x0``, ``x1``, ...; target ``y`` or ``y0``, ...;
    ``target`` is ignored) -- a DataFrame ``X`` keeps its column names, a Series ``y`` its name.
    pandas is optional (never imported): a DataFrame's text and ``category`` columns are one-hot
    encoded and its numbers standardized exactly as the same table read from a CSV file.
    ``target``: the target column's name, or a list of names (several regression targets).
    ``task_type``: ``"regression"`` or ``"classification"`` overrides the detected type.
    Bad input raises :class:`InputError` with one line.
    """
    inputs, targets, where = _load_source(source, target)
    return _task_from_columns(inputs, targets, task_type=task_type, val_fraction=val_fraction,
                              test_fraction=test_fraction, seed=seed, drop_missing=drop_missing,
                              name=name or _default_name(source, where), source=where)


def data_task(path: str | os.PathLike, target: str | Sequence[str] | None = None, **options: Any) -> Task:
    """:func:`table_task` for a file, picked by its extension: ``.csv`` / ``.tsv`` or ``.npz``."""
    path = Path(path)
    if path.suffix.lower() not in (".csv", ".tsv", ".tab", ".npz"):
        raise InputError(f"cannot tell the format of {path}: name a .csv, .tsv or .npz file")
    return table_task(path, target, **options)


def sklearn_task(name: str, **options: Any) -> Task:
    """A task from one of scikit-learn's bundled data sets (offline): ``diabetes`` (regression),
    ``digits``, ``breast_cancer``, ``wine``, ``iris`` (classification); ``sklearn:NAME`` works
    too. ``options`` go to :func:`table_task` (val_fraction, test_fraction, seed, task_type)."""
    key = str(name).strip()
    key = key.split(":", 1)[1].strip() if key.lower().startswith("sklearn:") else key
    key = key.lower().replace("-", "_")
    if key not in SKLEARN_DATASETS:
        raise InputError(f"unknown scikit-learn data set {name!r}; choose one of "
                         f"{', '.join(SKLEARN_DATASETS)}")
    loader_name, kind = SKLEARN_DATASETS[key]
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, loader_name)()
    x = np.asarray(bunch.data, dtype=np.float64)
    names = [str(n) for n in getattr(bunch, "feature_names", [])] or [f"x{j}" for j in range(x.shape[1])]
    none_missing = np.zeros(len(x), dtype=bool)
    inputs = [_Column(n, "numeric", x[:, j].copy(), None, none_missing) for j, n in enumerate(names)]
    targets = [_column_from_values("target", np.asarray(bunch.target))]
    options.setdefault("task_type", kind)
    options.setdefault("name", f"sklearn:{key}")
    task = _task_from_columns(inputs, targets, source=f"sklearn:{key}", **options)
    if kind == "classification" and getattr(bunch, "target_names", None) is not None:
        task.meta["class_names"] = [str(n) for n in bunch.target_names]
    return task


def _default_name(source: Any, where: str) -> str:
    return Path(source).name if isinstance(source, (str, os.PathLike)) else where


def _load_source(source: Any, target: str | Sequence[str] | None) -> tuple[list[_Column], list[_Column], str]:
    named = _named_columns(source)
    if named is not None:
        names, columns, where = named
        wanted = _target_names(target, names, where)
        by_name = dict(zip(names, columns))
        return [c for c in columns if c.name not in wanted], [by_name[t] for t in wanted], where
    if isinstance(source, (str, os.PathLike)):  # .npz
        x, y = _read_npz(Path(source))
        if y is None:
            raise InputError(f"{source} holds no array 'y' (the targets)")
        where, what = str(source), f"{source}'s"
    elif isinstance(source, tuple) and len(source) == 2 and (_is_dataframe(source[0]) or _is_series(source[1])
                                                             or _is_dataframe(source[1])):
        return _pandas_pair(*source)
    elif isinstance(source, tuple) and len(source) == 2:
        x, y = source
        where, what = "arrays", "the"
    else:
        raise InputError(f"cannot read a table from a {type(source).__name__}: give a CSV or NPZ path, a "
                         "DataFrame, a mapping of columns, or an (X, y) pair of arrays")
    inputs = _columns_from_array(x, "x", f"{what} x".strip())
    targets = _columns_from_array(y, "y", f"{what} y".strip())
    if len(inputs[0]) != len(targets[0]):
        raise InputError(f"{what} x has {len(inputs[0])} rows but y has {len(targets[0])}; they must match")
    return inputs, targets, where


def _pandas_pair(x: Any, y: Any) -> tuple[list[_Column], list[_Column], str]:
    """An ``(X, y)`` pair with pandas in it: a DataFrame's column names, a Series' name (``y``
    when it has none) or a DataFrame of targets. Rows pair up by position (as in scikit-learn),
    not by index label."""
    inputs = _dataframe_columns(x, "X")[1] if _is_dataframe(x) else _columns_from_array(x, "x", "the x")
    if _is_dataframe(y):
        targets = _dataframe_columns(y, "y")[1]
    elif _is_series(y):
        targets = [_series_column("y" if y.name is None else str(y.name), y)]
    else:
        targets = _columns_from_array(y, "y", "the y")
    if len(inputs[0]) != len(targets[0]):
        raise InputError(f"X has {len(inputs[0])} rows but y has {len(targets[0])}; they must match")
    clash = sorted({c.name for c in inputs} & {c.name for c in targets})
    if clash:
        raise InputError(f"the target {', '.join(map(repr, clash))} is also a column of X; rename one")
    return inputs, targets, "DataFrame"


def _target_names(target: str | Sequence[str] | None, names: list[str], where: str) -> list[str]:
    if target is None:
        raise InputError(f"name the target column of {where} (one of: {', '.join(names)})")
    wanted = [target] if isinstance(target, str) else [str(t) for t in target]
    wanted = [t.strip() for t in wanted]
    if not wanted:
        raise InputError("name at least one target column")
    if len(set(wanted)) != len(wanted):
        raise InputError(f"a target column is named twice: {', '.join(wanted)}")
    absent = [t for t in wanted if t not in names]
    if absent:
        raise InputError(f"{where} has no column {', '.join(map(repr, absent))}; its columns are: "
                         f"{', '.join(names)}")
    if len(wanted) == len(names):
        raise InputError(f"every column of {where} is a target; the inputs need at least one column")
    return wanted


def _input_spec(column: _Column, n_rows: int) -> dict[str, Any]:
    _refuse_mixed(column)
    _check_finite(column)
    if column.kind == "numeric":
        return {"name": column.name, "type": "numeric"}
    categories = sorted(set(column.text.tolist()))
    if len(categories) > MAX_CATEGORIES or (len(categories) > 2 and 2 * len(categories) > n_rows):
        raise InputError(f"column {column.name!r} holds {len(categories)} distinct text values in {n_rows} "
                         "rows: neither numbers nor a small set of categories (at most half the rows and at "
                         f"most {MAX_CATEGORIES}); drop the column or encode it as numbers")
    return {"name": column.name, "type": "categorical", "categories": categories}


def _detect_task_type(targets: list[_Column], n_rows: int) -> str:
    if len(targets) > 1:
        return "regression"
    column = targets[0]
    if column.kind == "text" or column.is_bool:
        return "classification"
    values = column.numbers
    if not np.all(values == np.round(values)):
        return "regression"
    distinct = len(np.unique(values))
    if distinct <= 2 or (distinct <= MAX_AUTO_CLASSES and n_rows >= MIN_ROWS_PER_CLASS * distinct):
        return "classification"
    return "regression"


def _labels(column: _Column) -> tuple[list[Any], np.ndarray]:
    """Sorted class labels (JSON-ready Python values) and each row's class index."""
    if column.kind == "text":
        classes = sorted(set(column.text.tolist()))
        index = {label: i for i, label in enumerate(classes)}
        return classes, np.fromiter((index[v] for v in column.text), dtype=np.int64, count=len(column))
    unique, codes = np.unique(column.numbers, return_inverse=True)
    if column.is_bool:
        classes = [bool(v) for v in unique]
    elif np.all(unique == np.round(unique)):
        classes = [int(v) for v in unique]
    else:
        classes = [float(v) for v in unique]
    return classes, codes.astype(np.int64).reshape(-1)


def _split_sizes(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    n_val = max(1, int(round(n * val_fraction)))
    n_test = max(1, int(round(n * test_fraction))) if test_fraction > 0 else 0
    return n_val, n_test


def _rows_needed(val_fraction: float, test_fraction: float, min_train: int) -> int:
    m = min_train + 1
    while True:
        n_val, n_test = _split_sizes(m, val_fraction, test_fraction)
        if m - n_val - n_test >= min_train:
            return m
        m += 1


def _split(n: int, labels: np.ndarray | None, val_fraction: float, test_fraction: float,
           seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, bool]:
    """Train, validation and test row indices (sorted) and whether the split is stratified.

    Plain NumPy (importing scikit-learn's model_selection costs seconds and ~75 MiB): the test rows
    are drawn first, then the validation rows from the rest; for classifiers each class gives each
    held-out split its share of the rows (largest remainders), drawn at random within the class."""
    n_val, n_test = _split_sizes(n, val_fraction, test_fraction)
    rng = np.random.default_rng(seed)

    def cut(pool: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
        if labels is None:
            held = rng.permutation(pool)[:size]
        else:
            classes, counts = np.unique(labels[pool], return_counts=True)
            share = size * counts / len(pool)
            quota = np.floor(share).astype(np.int64)
            order = np.argsort(-(share - quota), kind="stable")
            quota[order[:size - int(quota.sum())]] += 1
            held = np.concatenate([rng.permutation(pool[labels[pool] == c])[:q]
                                   for c, q in zip(classes, quota)])
        keep = np.ones(n, dtype=bool)
        keep[held] = False
        return pool[keep[pool]], np.sort(held)

    rows = np.arange(n)
    test = None
    if n_test:
        rows, test = cut(rows, n_test)
    train, val = cut(rows, n_val)
    return train, val, test, labels is not None


def _task_from_columns(
    inputs: list[_Column], targets: list[_Column], *, task_type: str | None = None, val_fraction: float = 0.2,
    test_fraction: float = 0.2, seed: int = 0, drop_missing: bool = False, name: str = "table",
    source: str = "table",
) -> Task:
    if task_type is not None and task_type not in TASK_TYPES:
        raise InputError(f"unknown task type {task_type!r}; choose regression or classification")
    if not 0 < val_fraction < 1:
        raise InputError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    if not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise InputError(f"test_fraction must be in [0, 1) and val_fraction + test_fraction below 1, got "
                         f"{val_fraction} + {test_fraction}")
    if not inputs:
        raise InputError("the table has no input columns")
    # missing cells: refuse, or drop those rows
    columns = [*inputs, *targets]
    n_total = len(columns[0])
    bad_rows, report = _missing_report(columns)
    dropped = int(bad_rows.sum())
    kept = np.arange(n_total)
    if dropped:
        if not drop_missing:
            raise InputError(f"the table has {report}; pass drop_missing=True (--drop-missing) to drop those "
                             "rows")
        kept = np.flatnonzero(~bad_rows)
        if not len(kept):
            raise InputError(f"every row of the table has an empty or NaN cell ({report}); nothing is left "
                             "to learn")
        inputs = [c.take(kept) for c in inputs]
        targets = [c.take(kept) for c in targets]
    n = len(kept)
    for column in targets:
        _refuse_mixed(column)
        _check_finite(column)
    specs = [_input_spec(column, n) for column in inputs]
    # task type and labels
    detected = _detect_task_type(targets, n)
    kind = task_type or detected
    labels = classes = None
    if kind == "classification":
        if len(targets) > 1:
            raise InputError(f"{len(targets)} target columns make a regression task; classification takes "
                             "one")
        classes, labels = _labels(targets[0])
        if len(classes) < 2:
            raise InputError(f"target {targets[0].name!r} has one class only ({classes[0]!r}); a classifier "
                             "needs at least 2")
    else:
        text = [t.name for t in targets if t.kind == "text"]
        if text:
            raise InputError(f"target {text[0]!r} holds text, which only a classification task can predict")
    # split
    min_train = 2 if kind == "classification" else 1
    needed = _rows_needed(val_fraction, test_fraction, min_train)
    if n < needed:
        after = f" (after dropping {dropped} with missing cells)" if dropped else ""
        raise InputError(f"the table has {n} row{'s' * (n != 1)}{after}; a {kind} task with val_fraction "
                         f"{val_fraction} and test_fraction {test_fraction} needs at least {needed}")
    train, val, test, stratified = _split(n, labels, val_fraction, test_fraction, seed)
    if labels is not None and len(np.unique(labels[train])) < 2:
        raise InputError(f"the training split of {n} rows holds one class only; the table needs more rows of "
                         "each class")
    # inputs: statistics of the training rows
    by_name = {column.name: column for column in inputs}
    means: list[float] = []
    scales: list[float] = []
    for spec in specs:
        if spec["type"] == "numeric":
            values = by_name[spec["name"]].numbers[train]
            mean, scale = float(values.mean()), float(values.std())
            means.append(mean)
            scales.append(scale if scale > 0 and math.isfinite(scale) else 1.0)
        else:
            means += [0.0] * len(spec["categories"])
            scales += [1.0] * len(spec["categories"])
    preprocessing: dict[str, Any] = {
        "task": "table", "task_type": kind, "detected_task_type": detected,
        "input_columns": [spec["name"] for spec in specs],
        "inputs": specs,
        "encoded_columns": _encoded_names(specs),
        "categories": {spec["name"]: spec["categories"] for spec in specs if spec["type"] == "categorical"},
        "means": means, "scales": scales,
        "targets": [t.name for t in targets],
        "missing_cells": sorted(MISSING_TEXT),
    }
    x = torch.from_numpy(_encode(by_name, preprocessing))
    # targets
    if kind == "classification":
        y = torch.from_numpy(labels)
        preprocessing["classes"] = classes
        loss, loss_scale, metrics = "cross_entropy", 1.0, ("loss", "accuracy", "errors")
    else:
        raw = np.stack([t.numbers for t in targets], axis=1)
        mean = raw[train].mean(axis=0)
        std = raw[train].std(axis=0)
        std = np.where((std > 0) & np.isfinite(std), std, 1.0)
        preprocessing["target_mean"] = [float(v) for v in mean]
        preprocessing["target_std"] = [float(v) for v in std]
        y = torch.from_numpy(((raw - mean) / std).astype(np.float32))
        loss, metrics = "mse", ("loss", "rmse", "r2")
        loss_scale = float(std[0] ** 2) if len(targets) == 1 else 1.0
    preprocessing["loss_scale"] = loss_scale

    def part(rows: np.ndarray) -> Split:
        index = torch.from_numpy(rows)
        return Split(x[index], y[index])

    meta: dict[str, Any] = {
        "source": source, "split_seed": seed, "preprocessing": preprocessing, "n_rows": n_total,
        "dropped_rows": dropped, "stratified": stratified,
        # the rows of each split, numbered as in the source (0 = its first data row)
        "split_rows": {side: kept[rows].tolist() for side, rows in
                       (("train", train), ("val", val), ("test", test)) if rows is not None},
    }
    if kind == "classification":
        meta["n_classes"] = len(classes)
    return Task(name=name, train=part(train), val=part(val), test=None if test is None else part(test),
                loss=loss, loss_scale=loss_scale, metrics=metrics, meta=meta)
