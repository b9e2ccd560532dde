"""ONNX export of table models: the graph takes the table's encoded columns in their own units.

A model grown on a table keeps the table's preprocessing (input standardization, one-hot
categories, target standardization) outside the network; ``netbonsai export --onnx`` folds it
into the exported weights, so the ONNX graph's outputs on raw rows (numbers in their units, one
0/1 column per category) equal what ``netbonsai predict`` writes for the same rows: values in the
target's units for regression, logits and softmax probabilities for classification.
"""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from netbonsai.cli import main
from netbonsai.data.tables import prepare_rows
from netbonsai.experiments.predict_table import predict_table
from netbonsai.nets import load
from netbonsai.nets.export import PROBABILITIES_NAME, export_onnx, export_torchscript, initializer_count
from netbonsai.train.losses import population_outputs

# onnx and onnxruntime are test dependencies (the dev extra, which `make test` installs), as in
# tests/test_export.py: a missing one is an error of the environment, not a reason to skip.
import onnx
import onnxruntime as ort

RTOL = 1e-5
COLOURS = ["red", "green", "blue"]
SPECIES = ["oak", "pine", "yew"]
TINY = ["--executor", "inline", "--quiet", "--set", "start_epochs=60", "--set", "grow.max_cycles=0",
        "--set", "polish.epochs=10"]


def write_rows(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def regression_csv(path: Path, n: int = 60) -> Path:
    """Numeric size (mean 50), weight (mean 1000, std 5: a large shift), text colour; price."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        size, weight, colour = round(float(rng.normal(50, 20)), 3), round(float(rng.normal(1000, 5)), 2), COLOURS[i % 3]
        price = 3 * size + 0.5 * (weight - 1000) + 40 * COLOURS.index(colour) + 200 + rng.normal(0, 5)
        rows.append([size, weight, colour, round(price, 3)])
    return write_rows(path, ["size", "weight", "colour", "price"], rows)


def classification_csv(path: Path, n: int = 90) -> Path:
    """Numeric height, text soil, numeric age; a text class (species)."""
    rng = np.random.default_rng(1)
    rows = []
    for i in range(n):
        species = i % 3
        soil = ["clay", "sand"][int(rng.integers(0, 2))]
        rows.append([round(float(rng.normal(10 + 5 * species, 2)), 2), soil,
                     int(rng.integers(1, 200)), SPECIES[species]])
    return write_rows(path, ["height", "soil", "age", "species"], rows)


def grow(tmp: Path, csv_path: Path, target: str) -> Path:
    out = tmp / f"run-{target}"
    assert main(["grow", "--data", str(csv_path), "--target", target, "--out", str(out), *TINY]) == 0
    return out


def encoded_rows(csv_path: Path, preprocessing: dict) -> np.ndarray:
    """The CSV's rows as the ONNX graph takes them, built here by hand (not with netbonsai):
    numeric columns as they are, one 0/1 column per category, in ``encoded_columns`` order."""
    with open(csv_path, newline="") as file:
        records = list(csv.DictReader(file))
    columns = []
    for spec in preprocessing["inputs"]:
        if spec["type"] == "numeric":
            columns.append([float(r[spec["name"]]) for r in records])
        else:
            columns += [[float(r[spec["name"]] == c) for r in records] for c in spec["categories"]]
    return np.array(columns, dtype=np.float32).T


def read_predictions(path: Path) -> dict[str, list[str]]:
    with open(path, newline="") as file:
        records = list(csv.DictReader(file))
    return {key: [r[key] for r in records] for key in records[0]}


def run(path: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {"input": x})))


def close(actual: np.ndarray, expected: np.ndarray) -> None:
    """Equal to RTOL relative to each value, or to the outputs' scale where a value is near 0."""
    expected = np.asarray(expected, dtype=np.float64)
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=RTOL * float(np.abs(expected).max()))


@pytest.fixture(scope="module")
def regression(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("table-regression")
    data = regression_csv(tmp / "prices.csv")
    return grow(tmp, data, "price"), data


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("table-classifier")
    data = classification_csv(tmp / "trees.csv")
    return grow(tmp, data, "species"), data


def test_regression_onnx_takes_raw_columns_and_returns_target_units(
        regression: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir, data = regression
    net = load(run_dir)
    pre = net.info["preprocessing"]
    assert pre["encoded_columns"] == ["size", "weight", "colour=blue", "colour=green", "colour=red"]
    capsys.readouterr()
    assert main(["export", str(run_dir), "--onnx", str(tmp_path / "m.onnx")]) == 0
    out = capsys.readouterr().out
    assert "colour=blue" in out and "target's units (price)" in out
    x = encoded_rows(data, pre)
    onnx_out = run(tmp_path / "m.onnx", x)
    assert list(onnx_out) == ["output"] and onnx_out["output"].shape == (len(x), 1)
    # what `netbonsai predict` writes for the same rows (values in the target's units)
    assert main(["predict", str(run_dir), "--data", str(data), "--out", str(tmp_path / "p.csv")]) == 0
    predicted = np.array(read_predictions(tmp_path / "p.csv")["prediction"], dtype=np.float64)
    close(onnx_out["output"][:, 0], predicted)
    assert np.abs(predicted).min() > 100  # target units: the standardized outputs would be near 0
    # the graph stores the parameters and nothing else; the names are in the metadata
    proto = onnx.load(str(tmp_path / "m.onnx"))
    assert initializer_count(proto) == net.num_params()
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["input_names"]) == pre["encoded_columns"]
    assert json.loads(meta["output_names"]) == ["price"]
    assert "targets' own units" in meta["outputs"]


def test_regression_table_units_off_and_torchscript(regression: tuple[Path, Path], tmp_path: Path) -> None:
    run_dir, data = regression
    net = load(run_dir)
    pre = net.info["preprocessing"]
    rows = prepare_rows(pre, data)  # standardized, as the network was trained
    with torch.no_grad():
        standard = population_outputs(net, rows)[0].numpy()
    export_onnx(net, tmp_path / "plain.onnx", table_units=False)
    close(run(tmp_path / "plain.onnx", rows.numpy())["output"], standard)
    # TorchScript takes and returns the same units as the ONNX file
    export_onnx(net, tmp_path / "raw.onnx")
    export_torchscript(net, tmp_path / "raw.pt")
    x = encoded_rows(data, pre)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated, still supported
        scripted = torch.jit.load(str(tmp_path / "raw.pt"))(torch.from_numpy(x)).numpy()
    close(scripted, run(tmp_path / "raw.onnx", x)["output"])
    assert net.info["preprocessing"] == pre  # the model itself is left as it was


def test_classifier_onnx_gives_logits_and_probabilities(
        classifier: tuple[Path, Path], tmp_path: Path) -> None:
    run_dir, data = classifier
    net = load(run_dir)
    pre = net.info["preprocessing"]
    assert pre["task_type"] == "classification" and pre["classes"] == SPECIES
    assert pre["encoded_columns"] == ["height", "soil=clay", "soil=sand", "age"]
    result = export_onnx(net, tmp_path / "c.onnx")  # the Python entry point
    assert result.params == net.num_params()
    x = encoded_rows(data, pre)
    onnx_out = run(tmp_path / "c.onnx", x)
    assert list(onnx_out) == ["output", PROBABILITIES_NAME]
    with torch.no_grad():  # the logits predict computes (prepare_rows, then the network)
        logits = population_outputs(net, prepare_rows(pre, data))[0].numpy()
    close(onnx_out["output"], logits)
    predict_table(run_dir, data, tmp_path / "p.csv")
    written = read_predictions(tmp_path / "p.csv")
    probabilities = np.array([written[f"proba_{c}"] for c in SPECIES], dtype=np.float64).T
    close(onnx_out[PROBABILITIES_NAME], probabilities)
    labels = np.array(SPECIES)[onnx_out["output"].argmax(axis=1)]
    assert labels.tolist() == written["prediction"]
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "c.onnx")).metadata_props}
    assert json.loads(meta["input_names"]) == pre["encoded_columns"]
    assert json.loads(meta["output_names"]) == SPECIES and "logit" in meta["outputs"]
