"""The user's own tables as Tasks: reading, encoding, task types, splits, bad input, prediction."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from netbonsai.data import (
    class_probabilities, data_task, decode_outputs, parse_task_spec, prepare_rows, sklearn_task, table_task,
    task_from_spec)
from netbonsai.errors import InputError


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    lines = [",".join(header)] + [",".join("" if v is None else str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def mixed_table(tmp_path: Path, n: int = 60, seed: int = 0) -> tuple[Path, list[list[object]]]:
    """Numeric a, b; text colour (3 categories); a float target."""
    rng = np.random.default_rng(seed)
    colours = ["red", "green", "blue"]
    rows = []
    for i in range(n):
        a, b = round(float(rng.normal(5, 2)), 3), int(rng.integers(0, 10))
        colour = colours[i % 3]
        rows.append([a, b, colour, round(a * 2 + b + colours.index(colour) + 0.25, 4)])
    return write_csv(tmp_path / "table.csv", ["a", "b", "colour", "price"], rows), rows


def raises(match: str, call, *args, **kwargs) -> str:
    with pytest.raises(InputError, match=match) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and isinstance(info.value, ValueError)
    return message


# ---------------------------------------------------------------------- encoding and round trips
def test_csv_regression_task_encoding_and_metadata(tmp_path: Path) -> None:
    path, rows = mixed_table(tmp_path)
    task = table_task(path, "price", seed=3)
    pre = task.preprocessing
    assert task.kind == "regression" and task.loss == "mse" and task.metrics == ("loss", "rmse", "r2")
    assert task.n_in == 5 and task.n_out == 1
    assert pre["task"] == "table" and pre["task_type"] == "regression"
    assert pre["input_columns"] == ["a", "b", "colour"] and pre["targets"] == ["price"]
    assert pre["categories"] == {"colour": ["blue", "green", "red"]}
    assert pre["encoded_columns"] == ["a", "b", "colour=blue", "colour=green", "colour=red"]
    assert task.meta["source"] == str(path) and task.meta["split_seed"] == 3
    assert task.meta["dropped_rows"] == 0
    assert (len(task.train), len(task.val), len(task.test)) == (36, 12, 12)
    json.dumps(pre)  # saved models carry it as JSON
    # numeric inputs standardized with the training rows' statistics; one-hot columns 0/1
    train_rows = task.meta["split_rows"]["train"]
    a = np.array([rows[i][0] for i in train_rows])
    assert pre["means"][0] == pytest.approx(a.mean()) and pre["scales"][0] == pytest.approx(a.std())
    assert pre["means"][2:] == [0.0, 0.0, 0.0] and pre["scales"][2:] == [1.0, 1.0, 1.0]
    x = task.train.x
    assert float(x[:, 0].mean()) == pytest.approx(0.0, abs=1e-5) and float(x[:, 0].std(unbiased=False)) == \
        pytest.approx(1.0, abs=1e-5)
    onehot = x[:, 2:]
    assert torch.equal(onehot.sum(1), torch.ones(len(x)))
    colours = [rows[i][2] for i in train_rows]
    assert [pre["categories"]["colour"][int(j)] for j in onehot.argmax(1)] == colours
    # the target standardized; loss_scale = std^2 so the reported loss is the MSE in the target's units
    price = np.array([rows[i][3] for i in train_rows])
    assert pre["target_mean"][0] == pytest.approx(price.mean())
    assert pre["target_std"][0] == pytest.approx(price.std())
    assert task.loss_scale == pytest.approx(price.std() ** 2)
    np.testing.assert_allclose(decode_outputs(pre, task.train.y), price, rtol=1e-5)


def test_prepare_rows_reproduces_the_task_inputs_exactly(tmp_path: Path) -> None:
    path, _ = mixed_table(tmp_path)
    task = table_task(path, "price", seed=1)
    rows = prepare_rows(task.preprocessing, path)  # the target column present: ignored
    assert rows.dtype == torch.float32 and rows.shape == (60, 5)
    for side in ("train", "val", "test"):
        index = torch.tensor(task.meta["split_rows"][side])
        assert torch.equal(rows[index], getattr(task, side).x)
    # the same rows without the target column, and as a mapping of columns
    without = write_csv(tmp_path / "new.csv", ["colour", "a", "b"],
                        [[r[2], r[0], r[1]] for r in mixed_table(tmp_path)[1]])
    assert torch.equal(prepare_rows(task.preprocessing, without), rows)
    data = mixed_table(tmp_path)[1]
    mapping = {"a": [r[0] for r in data], "b": [r[1] for r in data], "colour": [r[2] for r in data]}
    assert torch.equal(prepare_rows(task.preprocessing, mapping), rows)


def test_prepare_rows_bad_input(tmp_path: Path) -> None:
    path, rows = mixed_table(tmp_path)
    pre = table_task(path, "price").preprocessing
    other = write_csv(tmp_path / "other.csv", ["a", "colour", "size"], [[1, "red", 3]])
    message = raises("differ from the model's", prepare_rows, pre, other)
    assert "missing b" in message and "extra size" in message
    unseen = write_csv(tmp_path / "unseen.csv", ["a", "b", "colour"], [[1, 2, "red"], [1, 2, "purple"]])
    message = raises("'colour' holds 'purple'", prepare_rows, pre, unseen)
    assert "data row 2" in message and "blue, green, red" in message
    text = write_csv(tmp_path / "text.csv", ["a", "b", "colour"], [[1, "many", "red"]])
    raises("'b' should hold numbers", prepare_rows, pre, text)
    empty = write_csv(tmp_path / "gap.csv", ["a", "b", "colour"], [[1, "", "red"], [2, 3, "blue"]])
    raises(r"1 empty or NaN cell in 1 row, in columns b \(1\)", prepare_rows, pre, empty)
    raises("has 2 columns, but the model takes 3", prepare_rows, pre, np.zeros((4, 2)))
    raises("was not trained on a table", prepare_rows, {"task": "brightness"}, other)


def test_arrays_npz_and_mapping_sources(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + 0.3
    task = table_task((x, y), None, seed=2)
    assert task.kind == "regression" and task.n_in == 3 and task.meta["source"] == "arrays"
    assert task.preprocessing["input_columns"] == ["x0", "x1", "x2"]
    assert task.preprocessing["targets"] == ["y"]
    assert torch.equal(prepare_rows(task.preprocessing, x)[task.meta["split_rows"]["train"]], task.train.x)
    np.savez(tmp_path / "data.npz", x=x, y=y)
    from_file = data_task(tmp_path / "data.npz", seed=2)
    assert torch.equal(from_file.train.x, task.train.x) and torch.equal(from_file.val.y, task.val.y)
    assert torch.equal(prepare_rows(from_file.preprocessing, tmp_path / "data.npz"),
                       prepare_rows(task.preprocessing, x))
    # a mapping of named columns (the DataFrame path's core)
    table = {"u": x[:, 0], "v": x[:, 1], "w": x[:, 2], "t": y}
    named = table_task(table, "t", seed=2)
    assert torch.equal(named.train.x, task.train.x)
    raises("x has 50 rows but y has 49", table_task, (x, y[:49]))
    np.savez(tmp_path / "noy.npz", x=x)
    raises("holds no array 'y'", table_task, tmp_path / "noy.npz")
    raises("cannot tell the format", data_task, tmp_path / "data.txt")


def test_dataframe_source(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    path, _ = mixed_table(tmp_path)
    frame = pd.read_csv(path)
    from_frame = table_task(frame, "price", seed=4)
    from_csv = table_task(path, "price", seed=4)
    assert torch.equal(from_frame.train.x, from_csv.train.x)
    assert torch.equal(prepare_rows(from_csv.preprocessing, frame),
                       prepare_rows(from_csv.preprocessing, path))


# ---------------------------------------------------------------------- task types
def test_text_target_is_classification_with_sorted_classes(tmp_path: Path) -> None:
    rows = [[i, (i * 7) % 5, "dog" if i % 2 else "cat"] for i in range(40)]
    task = table_task(write_csv(tmp_path / "pets.csv", ["a", "b", "kind"], rows), "kind")
    pre = task.preprocessing
    assert task.kind == "classification" and task.loss == "cross_entropy" and task.loss_scale == 1.0
    assert task.metrics == ("loss", "accuracy", "errors") and task.meta["n_classes"] == 2 and task.n_out == 2
    assert pre["classes"] == ["cat", "dog"] and task.train.y.dtype == torch.int64 and task.train.y.dim() == 1
    labels = [rows[i][2] for i in task.meta["split_rows"]["train"]]
    assert [pre["classes"][int(c)] for c in task.train.y] == labels
    logits = torch.nn.functional.one_hot(task.train.y, 2).float() * 3
    assert decode_outputs(pre, logits).tolist() == labels
    probabilities = class_probabilities(pre, logits)
    assert probabilities.shape == (len(labels), 2)
    np.testing.assert_allclose(probabilities.sum(1), 1.0)
    assert (probabilities.argmax(1) == task.train.y.numpy()).all()
    raises("class probabilities need a classification task", class_probabilities,
           table_task((np.arange(30.0), np.arange(30.0) * 0.5)).preprocessing, np.zeros((3, 1)))


@pytest.mark.parametrize(("y", "expected"), [
    (np.arange(100) % 3, "classification"),              # 3 integer values, 33 rows each
    (np.arange(100) % 2 + 5, "classification"),          # 2 values: always
    (np.arange(100) % 50, "regression"),                 # 50 distinct integers
    (np.arange(100) % 10, "regression"),                 # 10 values but only 10 rows each (< 20)
    (np.arange(300) % 10, "classification"),             # 10 values, 30 rows each
    (np.linspace(0, 1, 100), "regression"),              # non-integer values
    (np.arange(100) % 2 == 0, "classification"),         # booleans
])
def test_task_type_detection(y: np.ndarray, expected: str) -> None:
    x = np.arange(len(y), dtype=float).reshape(-1, 1)
    task = table_task((x, y))
    assert task.kind == expected and task.preprocessing["detected_task_type"] == expected
    if expected == "classification":
        assert task.preprocessing["classes"] == sorted(set(y.tolist()))


def test_task_type_override_and_several_targets(tmp_path: Path) -> None:
    x = np.arange(100, dtype=float).reshape(-1, 1)
    as_regression = table_task((x, np.arange(100) % 3), task_type="regression")
    assert as_regression.kind == "regression"
    assert as_regression.preprocessing["detected_task_type"] == "classification"
    as_classes = table_task((x, (np.arange(100) % 4) * 0.5), task_type="classification")
    assert as_classes.kind == "classification" and as_classes.preprocessing["classes"] == [0, 0.5, 1, 1.5]
    raises("unknown task type 'ordinal'", table_task, (x, np.arange(100) % 3), task_type="ordinal")
    rows = [[i, "yes" if i % 2 else "no", i * 2.5, i % 7] for i in range(40)]
    path = write_csv(tmp_path / "two.csv", ["a", "flag", "t1", "t2"], rows)
    raises("target 'flag' holds text, which only a classification", table_task, path, "flag",
           task_type="regression")
    several = table_task(path, ["t1", "t2"])
    assert several.kind == "regression" and several.n_out == 2 and several.n_in == 3
    assert several.loss_scale == 1.0
    np.testing.assert_allclose(decode_outputs(several.preprocessing, several.val.y),
                               [[rows[i][2], rows[i][3]] for i in several.meta["split_rows"]["val"]],
                               rtol=1e-5, atol=1e-5)
    raises("2 target columns make a regression task", table_task, path, ["t1", "t2"],
           task_type="classification")


# ---------------------------------------------------------------------- splits
def test_stratified_split_sizes() -> None:
    x = np.arange(100, dtype=float).reshape(-1, 1)
    y = np.repeat([0, 1], 50)
    task = table_task((x, y), seed=5)
    assert task.meta["stratified"] is True
    for side, size in (("train", 60), ("val", 20), ("test", 20)):
        counts = collections.Counter(getattr(task, side).y.tolist())
        assert counts == {0: size // 2, 1: size // 2}
    rows = sum((task.meta["split_rows"][s] for s in ("train", "val", "test")), [])
    assert sorted(rows) == list(range(100))
    no_test = table_task((x, y), test_fraction=0, val_fraction=0.25)
    assert no_test.test is None and (len(no_test.train), len(no_test.val)) == (75, 25)
    assert "test" not in no_test.meta["split_rows"]
    again = table_task((x, y), seed=5)
    assert torch.equal(again.train.x, task.train.x)
    other = table_task((x, y), seed=6)
    assert not torch.equal(other.train.x, task.train.x)


def test_too_few_rows() -> None:
    raises(r"the table has 2 rows; a regression task .* needs at least 3", table_task,
           (np.arange(2.0), np.arange(2.0) * 0.5))
    assert len(table_task((np.arange(3.0), np.arange(3.0) * 0.5)).train) == 1
    raises(r"the table has 3 rows; a classification task .* needs at least 4", table_task,
           (np.arange(3.0), np.array([0, 1, 0])), task_type="classification")
    raises("val_fraction must be between 0 and 1", table_task, (np.arange(9.0), np.arange(9.0)),
           val_fraction=0)
    raises("test_fraction must be in", table_task, (np.arange(9.0), np.arange(9.0)), val_fraction=0.5,
           test_fraction=0.5)


# ---------------------------------------------------------------------- bad input
def test_bad_files(tmp_path: Path) -> None:
    raises("does not exist", table_task, tmp_path / "nope.csv", "t")
    (tmp_path / "empty.csv").write_text("")
    raises("is empty", table_task, tmp_path / "empty.csv", "t")
    (tmp_path / "header.csv").write_text("a,b,t\n")
    raises("has a header but no data rows", table_task, tmp_path / "header.csv", "t")
    (tmp_path / "ragged.csv").write_text("a,b,t\n1,2,3\n4,5\n")
    raises("line 3 has 2 fields but the header has 3", table_task, tmp_path / "ragged.csv", "t")
    (tmp_path / "binary.csv").write_bytes(b"a,b\n\xff\xfe\x00,1\n")
    raises("cannot read", table_task, tmp_path / "binary.csv", "b")
    (tmp_path / "dup.csv").write_text("a,a,t\n1,2,3\n")
    raises("names column 'a' twice", table_task, tmp_path / "dup.csv", "t")
    (tmp_path / "bad.npz").write_text("not a zip")
    raises("cannot read .* as an NPZ file", table_task, tmp_path / "bad.npz")


def test_bad_target_column(tmp_path: Path) -> None:
    path, _ = mixed_table(tmp_path)
    raises("has no column 'cost'; its columns are: a, b, colour, price", table_task, path, "cost")
    raises(r"name the target column .* \(one of: a, b, colour, price\)", table_task, path)
    rows = [[i, "same"] for i in range(30)]
    one = write_csv(tmp_path / "one.csv", ["a", "k"], rows)
    raises("target 'k' has one class only", table_task, one, "k")
    raises("one class only", table_task, (np.arange(30.0), np.zeros(30)), task_type="classification")


def test_missing_cells_refused_or_dropped(tmp_path: Path) -> None:
    path, rows = mixed_table(tmp_path)
    rows[3][0] = None
    rows[7][2] = "NaN"
    rows[7][0] = ""
    rows[11][3] = "nan"
    gappy = write_csv(tmp_path / "gappy.csv", ["a", "b", "colour", "price"], rows)
    message = raises("4 empty or NaN cells in 3 rows", table_task, gappy, "price")
    assert "a (2), colour (1), price (1)" in message and "drop_missing=True (--drop-missing)" in message
    task = table_task(gappy, "price", drop_missing=True)
    assert task.meta["dropped_rows"] == 3 and task.meta["n_rows"] == 60
    assert len(task.train) + len(task.val) + len(task.test) == 57
    used = sorted(sum(task.meta["split_rows"].values(), []))
    assert used == [i for i in range(60) if i not in (3, 7, 11)]
    full = prepare_rows(task.preprocessing, path)
    assert torch.equal(full[task.meta["split_rows"]["val"]], task.val.x)
    x = np.ones((10, 2))
    x[2, 1] = np.nan
    raises(r"1 empty or NaN cell in 1 row, in columns x1 \(1\)", table_task, (x, np.arange(10.0)))
    assert table_task((x, np.arange(10.0) * 0.5), drop_missing=True).meta["dropped_rows"] == 1
    everything = np.full((5, 1), np.nan)
    raises("every row of the table has an empty or NaN cell", table_task, (everything, np.arange(5.0)),
           drop_missing=True)


def test_infinite_values_mixed_and_free_text_columns(tmp_path: Path) -> None:
    x = np.ones((10, 2))
    x[4, 0] = np.inf
    raises(r"column 'x0' holds 1 infinite value \(first in data row 5\)", table_task, (x, np.arange(10.0)))
    rows = [[i, "inf" if i == 2 else i * 0.5] for i in range(10)]
    infinite = write_csv(tmp_path / "inf.csv", ["a", "t"], rows)
    raises("column 't' holds 1 infinite value", table_task, infinite, "t")
    rows = [[i, "3" if i % 2 else "abc", i * 0.5] for i in range(20)]
    mixed = write_csv(tmp_path / "mixed.csv", ["a", "m", "t"], rows)
    raises("column 'm' mixes numbers and text", table_task, mixed, "t")
    rows = [[i, f"name{i}", i * 0.5] for i in range(20)]
    message = raises("column 'who' holds 20 distinct text values in 20 rows",
                     table_task, write_csv(tmp_path / "names.csv", ["a", "who", "t"], rows), "t")
    assert "drop the column" in message


# ---------------------------------------------------------------------- scikit-learn data sets
@pytest.mark.parametrize(("name", "n_in", "n_out", "kind"), [
    ("diabetes", 10, 1, "regression"), ("digits", 64, 10, "classification"),
    ("breast_cancer", 30, 2, "classification"), ("wine", 13, 3, "classification"),
    ("iris", 4, 3, "classification")])
def test_sklearn_tasks(name: str, n_in: int, n_out: int, kind: str) -> None:
    task = task_from_spec(f"sklearn:{name}")
    assert (task.name, task.n_in, task.n_out, task.kind) == (f"sklearn:{name}", n_in, n_out, kind)
    assert task.meta["source"] == f"sklearn:{name}" and task.test is not None
    json.dumps(task.preprocessing)
    if kind == "regression":
        assert task.loss_scale == pytest.approx(task.preprocessing["target_std"][0] ** 2)
    else:
        assert task.meta["n_classes"] == n_out and task.meta["stratified"]


def test_sklearn_specs_and_split_options() -> None:
    assert str(parse_task_spec("sklearn:Iris")) == "sklearn:iris"
    raises("unknown scikit-learn data set 'titanic'", parse_task_spec, "sklearn:titanic")
    raises("needs a data set", parse_task_spec, "sklearn")
    raises("unknown scikit-learn data set", sklearn_task, "boston")
    iris = sklearn_task("iris", test_fraction=0, val_fraction=0.2, seed=1)
    assert iris.test is None and (len(iris.train), len(iris.val)) == (120, 30)
    assert collections.Counter(iris.val.y.tolist()) == {0: 10, 1: 10, 2: 10}
    assert iris.meta["class_names"] == ["setosa", "versicolor", "virginica"]
