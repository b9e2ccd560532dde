"""New rows of a table prepared as a model's training rows were (its stored preprocessing), and a
model's outputs back in the table's terms: labels, values in the target's units, probabilities."""

from __future__ import annotations

import os
from pathlib import Path
from dataclasses import replace
from typing import Any, Mapping

import numpy as np
import torch

from ..errors import InputError
from .table_io import (_check_finite, _Column, _columns_from_array, _format_number, _missing_report, _named_columns,
                       _read_npz, _refuse_mixed)


def _encoded_names(specs: list[dict[str, Any]]) -> list[str]:
    names: list[str] = []
    for spec in specs:
        if spec["type"] == "numeric":
            names.append(spec["name"])
        else:
            names += [f"{spec['name']}={category}" for category in spec["categories"]]
    return names


def _encode(columns: Mapping[str, _Column], preprocessing: Mapping[str, Any]) -> np.ndarray:
    """The (rows, encoded columns) float32 inputs: numeric columns standardized, text one-hot."""
    specs = preprocessing["inputs"]
    means, scales = preprocessing["means"], preprocessing["scales"]
    n = len(columns[specs[0]["name"]])
    out = np.zeros((n, len(means)), dtype=np.float32)
    offset = 0
    for spec in specs:
        column = columns[spec["name"]]
        if spec["type"] == "numeric":
            out[:, offset] = (column.numbers - means[offset]) / scales[offset]
            offset += 1
            continue
        categories = spec["categories"]
        index = {category: i for i, category in enumerate(categories)}
        values = column.text
        if values is None:  # a numeric column where the model expects categories: none will match
            values = np.array([_format_number(v) for v in column.numbers], dtype=object)
        codes = np.empty(n, dtype=np.int64)
        for row, value in enumerate(values):
            code = index.get(value)
            if code is None:
                shown = ", ".join(map(str, categories[:10])) + (", ..." if len(categories) > 10 else "")
                raise InputError(f"column {spec['name']!r} holds {value!r} (data row {row + 1}), a category "
                                 f"the model has not seen; it knows: {shown}")
            codes[row] = code
        out[np.arange(n), offset + codes] = 1.0  # one-hot columns: mean 0, scale 1
        offset += len(categories)
    return out


# ---------------------------------------------------------------------- prediction
def _check_preprocessing(preprocessing: Mapping[str, Any]) -> None:
    if not isinstance(preprocessing, Mapping) or preprocessing.get("task") != "table":
        raise InputError("the model carries no table preprocessing; it was not trained on a table")


def prepare_rows(preprocessing: Mapping[str, Any], source: Any) -> torch.Tensor:
    """New rows prepared as the model's training rows were: a float32 (rows, inputs) tensor.

    ``source``: a CSV path, an NPZ path (array ``x``), a DataFrame or mapping of columns (named
    columns: the model's input columns, target columns allowed and ignored), or a 2-D array whose
    columns are the model's input columns in order. Missing cells, unseen categories, text in a
    numeric column and columns that differ from the model's are :class:`InputError`.
    """
    _check_preprocessing(preprocessing)
    specs = preprocessing["inputs"]
    wanted = [spec["name"] for spec in specs]
    named = _named_columns(source)
    if named is not None:
        names, columns, where = named
        targets = set(preprocessing.get("targets", []))
        absent = [name for name in wanted if name not in names]
        extra = [name for name in names if name not in wanted and name not in targets]
        if absent or extra:
            parts = [f"missing {', '.join(absent)}"] if absent else []
            parts += [f"extra {', '.join(extra)}"] if extra else []
            raise InputError(f"the columns of {where} differ from the model's ({'; '.join(parts)}); the "
                             f"model takes: {', '.join(wanted)}")
        by_name = {column.name: column for column in columns if column.name in wanted}
    else:
        if isinstance(source, (str, os.PathLike)):
            x, _ = _read_npz(Path(source))
            where = str(source)
        else:
            x, where = source, "the rows"
        array_columns = _columns_from_array(x, "x", where)
        if len(array_columns) != len(wanted):
            raise InputError(f"{where} has {len(array_columns)} columns, but the model takes {len(wanted)}: "
                             f"{', '.join(wanted)}")
        by_name = {name: replace(column, name=name) for name, column in zip(wanted, array_columns)}
    used = [by_name[name] for name in wanted]
    bad_rows, report = _missing_report(used)
    if report:
        raise InputError(f"{where} has {report}; fill them in or remove those rows")
    for spec, column in zip(specs, used):
        _refuse_mixed(column)
        _check_finite(column)
        if spec["type"] == "numeric" and column.kind != "numeric":
            raise InputError(f"column {spec['name']!r} should hold numbers but holds text "
                             f"(e.g. {column.text[0]!r})")
    return torch.from_numpy(_encode(by_name, preprocessing))


def _outputs_array(preprocessing: Mapping[str, Any], outputs: Any) -> np.ndarray:
    _check_preprocessing(preprocessing)
    array = outputs.detach().cpu().double().numpy() if isinstance(outputs, torch.Tensor) else np.asarray(
        outputs, dtype=np.float64)
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    width = len(preprocessing["classes"]) if preprocessing["task_type"] == "classification" else len(
        preprocessing["targets"])
    if array.ndim != 2 or array.shape[1] != width:
        raise InputError(f"the outputs have shape {tuple(array.shape)}, but the model's table task has "
                         f"{width} output(s)")
    return array


def decode_outputs(preprocessing: Mapping[str, Any], outputs: Any) -> np.ndarray:
    """A network's outputs in the table's terms: each row's class label (classification), or the
    predicted values in the target's units (regression; shape (rows,) for one target, else
    (rows, targets))."""
    array = _outputs_array(preprocessing, outputs)
    if preprocessing["task_type"] == "classification":
        return np.asarray(preprocessing["classes"])[array.argmax(axis=1)]
    values = array * np.asarray(preprocessing["target_std"]) + np.asarray(preprocessing["target_mean"])
    return values[:, 0] if values.shape[1] == 1 else values


def class_probabilities(preprocessing: Mapping[str, Any], outputs: Any) -> np.ndarray:
    """A classifier's (rows, classes) probabilities (softmax of its outputs), columns in the order
    of ``preprocessing["classes"]``."""
    array = _outputs_array(preprocessing, outputs)
    if preprocessing["task_type"] != "classification":
        raise InputError("class probabilities need a classification task; this model predicts values")
    array = array - array.max(axis=1, keepdims=True)
    exp = np.exp(array)
    return exp / exp.sum(axis=1, keepdims=True)
