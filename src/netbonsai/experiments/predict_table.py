"""``netbonsai predict MODEL --data new.csv --out predictions.csv``: a table model on new rows.

The model file carries its table's preprocessing (columns, categories, means and scales, classes
or target scaling); new rows are prepared exactly as the training rows were, and the outputs are
written back in the table's own terms: one row per input row, in order, with a ``prediction``
column (a class label or a value in the target's units; one ``prediction_<target>`` column per
target for several targets) and, for classifiers, one ``proba_<class>`` column per class.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..atomic import check_output_file, write_text
from ..data.tables import class_probabilities, decode_outputs, prepare_rows
from ..errors import InputError
from ..nets.io import load
from ..train.losses import population_outputs


@dataclass
class TablePrediction:
    """What predict wrote: the file, how many rows, and the model's task type and size."""

    path: Path
    rows: int
    task_type: str
    params: int


def table_preprocessing(net, where: str) -> dict:
    """The table preprocessing a model file stores, or :class:`InputError` when it has none."""
    preprocessing = net.info.get("preprocessing") if isinstance(net.info, dict) else None
    if not isinstance(preprocessing, dict) or preprocessing.get("task") != "table":
        raise InputError(f"{where} was not trained on a table (no table preprocessing stored); "
                         "predict --data needs a model from compare --data FILE or sklearn:NAME")
    return preprocessing


def predict_table(model: str | os.PathLike, data: str | os.PathLike, out: str | os.PathLike) -> TablePrediction:
    """Run a table model on the rows of ``data`` and write ``out`` (CSV); validated before writing."""
    out = check_output_file(Path(out), "--out")
    if out.suffix.lower() != ".csv":
        raise InputError(f"predictions are written as CSV; give a .csv --out path, got {out}")
    net = load(model)
    preprocessing = table_preprocessing(net, str(model))
    rows = prepare_rows(preprocessing, data)
    with torch.no_grad():
        outputs = population_outputs(net, rows)[0]
    values = decode_outputs(preprocessing, outputs)
    classifier = preprocessing["task_type"] == "classification"
    targets = list(preprocessing.get("targets", ["y"]))
    header = ["prediction"] if values.ndim == 1 else [f"prediction_{t}" for t in targets]
    columns = [values] if values.ndim == 1 else [values[:, i] for i in range(values.shape[1])]
    if classifier:
        probabilities = class_probabilities(preprocessing, outputs)
        header += [f"proba_{c}" for c in preprocessing["classes"]]
        columns += [probabilities[:, i] for i in range(probabilities.shape[1])]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    for i in range(len(rows)):
        writer.writerow([_cell(column[i]) for column in columns])
    write_text(out, text.getvalue())
    return TablePrediction(out, len(rows), preprocessing["task_type"], net.num_params())


def _cell(value) -> str:
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return str(value)
