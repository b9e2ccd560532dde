"""pandas DataFrames and Series as tables (pandas is optional: a test dependency, not a dependency).

A DataFrame with text and ``category`` columns gives the same Task -- the same inputs and targets
in every split, the same stored preprocessing -- as the same table written to a CSV file and read
from it; an ``(X, y)`` pair of a DataFrame and a Series keeps the columns' and the target's names.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from netbonsai.data import prepare_rows, table_task
from netbonsai.data.task import Task
from netbonsai.errors import InputError

pd = pytest.importorskip("pandas")

COLOURS = ["red", "green", "blue"]


def frame(n: int = 60, seed: int = 0) -> "pd.DataFrame":
    """Numeric a (floats), b (integers), text colour; a float target price and a text label."""
    rng = np.random.default_rng(seed)
    a = rng.normal(5, 2, n)  # full float64 precision: the CSV must carry it exactly
    b = rng.integers(0, 10, n)
    colour = [COLOURS[i % 3] for i in range(n)]
    price = a * 2 + b + np.array([COLOURS.index(c) for c in colour]) + 0.25
    label = np.where(a + rng.normal(0, 1, n) > 5, "high", "low")
    return pd.DataFrame({"a": a, "b": b, "colour": colour, "price": price, "label": label})


def same_task(left: Task, right: Task) -> None:
    for side in ("train", "val", "test"):
        one, other = getattr(left, side), getattr(right, side)
        assert torch.equal(one.x, other.x), side
        assert torch.equal(one.y, other.y) and one.y.dtype == other.y.dtype, side
    assert left.meta["preprocessing"] == right.meta["preprocessing"]
    assert left.meta["split_rows"] == right.meta["split_rows"]
    assert (left.loss, left.loss_scale, left.metrics) == (right.loss, right.loss_scale, right.metrics)


def test_dataframe_with_text_column_is_the_csv_task(tmp_path: Path) -> None:
    data = frame().drop(columns="label")
    assert str(data["colour"].dtype) in ("str", "string", "object")
    data.to_csv(tmp_path / "t.csv", index=False)
    from_frame = table_task(data, "price", seed=2)
    from_csv = table_task(tmp_path / "t.csv", "price", seed=2)
    same_task(from_frame, from_csv)
    pre = from_frame.meta["preprocessing"]
    assert pre["task_type"] == "regression"
    assert pre["encoded_columns"] == ["a", "b", "colour=blue", "colour=green", "colour=red"]
    assert from_frame.meta["source"] == "DataFrame"
    # new rows as a DataFrame are prepared as the same rows read from the CSV file
    assert torch.equal(prepare_rows(pre, data.drop(columns="price")), prepare_rows(pre, tmp_path / "t.csv"))


def test_dataframe_and_series_pair_keeps_names(tmp_path: Path) -> None:
    data = frame()
    data.drop(columns="price").to_csv(tmp_path / "t.csv", index=False)
    X, y = data.drop(columns=["price", "label"]), data["label"]
    pair = table_task((X, y), seed=1)
    same_task(pair, table_task(tmp_path / "t.csv", "label", seed=1))
    pre = pair.meta["preprocessing"]
    assert pre["task_type"] == "classification" and pre["classes"] == ["high", "low"]
    assert pre["targets"] == ["label"] and pre["input_columns"] == ["a", "b", "colour"]
    # rows pair up by position, as in scikit-learn, whatever the index
    shuffled = table_task((X.set_axis(range(100, 160)), y.reset_index(drop=True)), seed=1)
    same_task(shuffled, pair)
    # a regression Series; a nameless Series is the target "y"
    regression = table_task((X, data["price"]), seed=1)
    assert regression.meta["preprocessing"]["targets"] == ["price"]
    assert table_task((X, pd.Series(data["price"].to_numpy())), seed=1).meta["preprocessing"]["targets"] == ["y"]
    with pytest.raises(InputError, match="also a column of X"):
        table_task((data.drop(columns="label"), data["price"]))
    with pytest.raises(InputError, match="X has 60 rows but y has 59"):
        table_task((X, y.iloc[:59]))


def test_category_columns_are_one_hot(tmp_path: Path) -> None:
    data = frame().drop(columns="label")
    data.to_csv(tmp_path / "t.csv", index=False)
    categorical = data.assign(colour=data["colour"].astype("category"))
    same_task(table_task(categorical, "price", seed=3), table_task(tmp_path / "t.csv", "price", seed=3))
    # a category column of numbers is categories too (a CSV column of numbers would be numeric)
    coded = data.assign(b=data["b"].astype("category"))
    task = table_task(coded, "price", seed=3)
    pre = task.meta["preprocessing"]
    categories = sorted({str(v) for v in data["b"]})
    assert pre["categories"]["b"] == categories
    assert pre["encoded_columns"][1:1 + len(categories)] == [f"b={c}" for c in categories]
    # new rows from a CSV (numbers in b) meet the same categories
    assert torch.equal(prepare_rows(pre, tmp_path / "t.csv"), prepare_rows(pre, coded))


def test_nullable_columns_and_missing_cells(tmp_path: Path) -> None:
    data = frame().drop(columns="label")
    data["b"] = data["b"].astype("Int64")
    data.loc[[3, 7], "b"] = pd.NA
    data.loc[5, "colour"] = None
    data.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(InputError, match=r"3 empty or NaN cells in 3 rows, in columns b \(2\), colour \(1\)"):
        table_task(data, "price")
    dropped = table_task(data, "price", drop_missing=True, seed=4)
    assert dropped.meta["dropped_rows"] == 3
    same_task(dropped, table_task(tmp_path / "t.csv", "price", drop_missing=True, seed=4))


def test_estimators_take_a_dataframe_and_series() -> None:
    from netbonsai import GrowRegressor

    data = frame(40)
    X, y = data[["a", "b"]], data["price"]
    settings = dict(start_epochs=20, trial_epochs=2, grow_epochs=5, max_cycles=0, n_attempts=2, hidden=(3,))
    model = GrowRegressor(**settings).fit(X, y)
    assert list(model.feature_names_in_) == ["a", "b"]
    arrays = GrowRegressor(**settings).fit(X.to_numpy(), y.to_numpy())
    np.testing.assert_array_equal(model.predict(X), arrays.predict(X.to_numpy()))


def test_pandas_is_not_imported_by_the_table_modules() -> None:
    code = ("import sys, netbonsai, netbonsai.data, netbonsai.data.tables, netbonsai.nets.export; "
            "print('pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
