"""Reading a table (CSV/TSV, NPZ, DataFrame, mapping or arrays) into typed columns: numbers, text, missing cells."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import InputError

MISSING_TEXT = frozenset({"", "nan", "na", "n/a", "null"})


# ---------------------------------------------------------------------- columns
@dataclass(frozen=True, eq=False)
class _Column:
    """One column: ``numeric`` (float64 ``numbers``, NaN = missing), ``text`` (object array of str,
    None = missing) or ``mixed`` (both, refused when used)."""

    name: str
    kind: str
    numbers: np.ndarray | None
    text: np.ndarray | None
    missing: np.ndarray
    is_bool: bool = False
    example: tuple[str, str] | None = None  # mixed: a number and a text value

    def __len__(self) -> int:
        return int(self.missing.shape[0])

    def take(self, rows: np.ndarray) -> "_Column":
        return replace(self, numbers=None if self.numbers is None else self.numbers[rows],
                       text=None if self.text is None else self.text[rows], missing=self.missing[rows])


def _is_missing_value(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, (float, np.floating)):
        return bool(np.isnan(value))
    return type(value).__name__ in ("NAType", "NaTType")


def _column_from_strings(name: str, cells: Sequence[str]) -> _Column:
    n = len(cells)
    try:  # fast path: a column of numbers with no missing cells
        numbers = np.asarray(cells, dtype=np.float64).reshape(n)
        if not np.isnan(numbers).any():
            return _Column(name, "numeric", numbers, None, np.zeros(n, dtype=bool))
    except (ValueError, TypeError):
        pass
    numbers = np.full(n, np.nan)
    text = np.empty(n, dtype=object)
    missing = np.zeros(n, dtype=bool)
    is_number = np.zeros(n, dtype=bool)
    for i, cell in enumerate(cells):
        cell = cell.strip()
        if cell.lower() in MISSING_TEXT:
            missing[i] = True
            continue
        text[i] = cell
        try:
            numbers[i] = float(cell)
            is_number[i] = True
        except ValueError:
            pass
    present = ~missing
    n_numbers, n_present = int(is_number.sum()), int(present.sum())
    if n_numbers == n_present:
        return _Column(name, "numeric", numbers, None, missing)
    if n_numbers == 0:
        return _Column(name, "text", None, text, missing)
    example = (str(text[np.argmax(is_number)]), str(text[np.argmax(present & ~is_number)]))
    return _Column(name, "mixed", numbers, text, missing, example=example)


def _column_from_values(name: str, values: Any) -> _Column:
    """A column from a 1-D array-like (numbers, booleans, strings or Python objects)."""
    array = np.asarray(values)
    if array.ndim != 1:
        array = array.reshape(-1) if array.size == len(array) else array
    if array.ndim != 1:
        raise InputError(f"column {name!r} must be one value per row, got shape {array.shape}")
    kind = array.dtype.kind
    if kind == "b":
        return _Column(name, "numeric", array.astype(np.float64), None, np.zeros(len(array), bool),
                       is_bool=True)
    if kind in "iuf":
        numbers = array.astype(np.float64)
        return _Column(name, "numeric", numbers, None, np.isnan(numbers))
    if kind in "US":
        return _column_from_strings(name, [str(v) for v in array])
    if kind == "O":
        present = [v for v in array if not _is_missing_value(v)]
        if present and all(isinstance(v, (bool, np.bool_)) for v in present):
            missing = np.array([_is_missing_value(v) for v in array], dtype=bool)
            numbers = np.array([np.nan if m else float(v) for v, m in zip(array, missing)])
            return _Column(name, "numeric", numbers, None, missing, is_bool=True)
        return _column_from_strings(name, ["" if _is_missing_value(v) else str(v) for v in array])
    raise InputError(f"column {name!r} has values of type {array.dtype}, neither numbers nor text")


def _columns_from_array(values: Any, prefix: str, what: str) -> list[_Column]:
    try:
        array = np.asarray(values)
    except Exception as error:  # ragged lists and the like
        raise InputError(f"{what} is not a table of values: {error}") from None
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    if array.ndim != 2:
        raise InputError(f"{what} must be (rows, columns), got shape {array.shape}")
    if array.shape[0] == 0:
        raise InputError(f"{what} has no rows")
    if prefix == "y" and array.shape[1] == 1:
        return [_column_from_values("y", array[:, 0])]
    return [_column_from_values(f"{prefix}{j}", array[:, j]) for j in range(array.shape[1])]


# ---------------------------------------------------------------------- reading sources
def _read_csv(path: Path) -> tuple[list[str], list[_Column]]:
    delimiter = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            reader = csv.reader(file, delimiter=delimiter)
            header = next(reader, None)
            while header is not None and not any(cell.strip() for cell in header):
                header = next(reader, None)
            if header is None:
                raise InputError(f"{path} is empty: a CSV file needs a header row and data rows")
            names = [cell.strip() for cell in header]
            rows = []
            for row in reader:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # blank line
                if len(row) != len(names):
                    raise InputError(f"{path}: line {reader.line_num} has {len(row)} fields but the header "
                                     f"has {len(names)}")
                rows.append(row)
    except FileNotFoundError:
        raise InputError(f"data file {path} does not exist") from None
    except IsADirectoryError:
        raise InputError(f"data file {path} is a folder, not a CSV file") from None
    except (UnicodeDecodeError, csv.Error, OSError) as error:
        raise InputError(f"cannot read {path} as a CSV file: {error}") from None
    _check_names(names, str(path))
    if not rows:
        raise InputError(f"{path} has a header but no data rows")
    cells = list(zip(*rows))
    del rows
    columns = []
    for j, name in enumerate(names):  # each column's strings freed once it is converted
        columns.append(_column_from_strings(name, cells[j]))
        cells[j] = ()
    return names, columns


def _check_names(names: list[str], where: str) -> None:
    if any(not name for name in names):
        raise InputError(f"{where}: column {names.index('') + 1} of the header has no name")
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InputError(f"{where}: the header names column {name!r} twice")
        seen.add(name)


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    if not path.exists():
        raise InputError(f"data file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except Exception as error:
        raise InputError(f"cannot read {path} as an NPZ file: {error}") from None
    if "x" not in arrays:
        raise InputError(f"{path} holds no array 'x' (it holds: {', '.join(sorted(arrays)) or 'nothing'})")
    return arrays["x"], arrays.get("y")


# pandas is optional: its objects are recognised by their type's module, never imported here
def _is_pandas(obj: Any) -> bool:
    return type(obj).__module__.split(".")[0] == "pandas"


def _is_dataframe(obj: Any) -> bool:
    return _is_pandas(obj) and hasattr(obj, "columns") and hasattr(obj, "to_numpy")


def _is_series(obj: Any) -> bool:
    return _is_pandas(obj) and getattr(obj, "ndim", None) == 1 and hasattr(obj, "to_numpy")


def _series_column(name: str, series: Any) -> _Column:
    """A pandas Series as a column. Its ``to_numpy()`` does the work (pandas 3 gives float64
    with NaN for nullable numbers, objects with NaN/``pd.NA`` for text and nullable booleans);
    a ``category`` column is text categories even when its categories are numbers (formatted as
    :func:`prepare_rows` formats a number met where the model expects a category)."""
    values = series.to_numpy()
    if getattr(getattr(series, "dtype", None), "name", None) != "category":
        return _column_from_values(name, values)
    cells = ["" if _is_missing_value(v) else
             _format_number(float(v)) if isinstance(v, (int, float, np.integer, np.floating))
             and not isinstance(v, (bool, np.bool_)) else str(v) for v in values]
    column = _column_from_strings(name, cells)
    if column.kind == "text":
        return column
    text = np.array([None if missing else cell.strip() for cell, missing in zip(cells, column.missing)],
                    dtype=object)
    return _Column(name, "text", None, text, column.missing)


def _dataframe_columns(frame: Any, what: str = "the DataFrame") -> tuple[list[str], list[_Column]]:
    names = [str(name) for name in frame.columns]
    _check_names(names, what)
    if len(frame) == 0:
        raise InputError(f"{what} has no rows")
    return names, [_series_column(name, frame[col]) for name, col in zip(names, frame.columns)]


def _named_columns(source: Any) -> tuple[list[str], list[_Column], str] | None:
    """The columns of a CSV path, DataFrame or mapping, with a source description; None for arrays."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.suffix.lower() == ".npz":
            return None
        names, columns = _read_csv(path)
        return names, columns, str(path)
    if _is_dataframe(source):
        names, columns = _dataframe_columns(source)
        return names, columns, "DataFrame"
    if isinstance(source, Mapping):
        names = [str(name) for name in source]
        _check_names(names, "the table")
        columns = [_column_from_values(name, values) for name, values in zip(names, source.values())]
        lengths = {len(column) for column in columns}
        if len(lengths) > 1:
            raise InputError(f"the table's columns have different lengths: {sorted(lengths)}")
        if not columns or not len(columns[0]):
            raise InputError("the table has no rows")
        return names, columns, "table"
    return None


# ---------------------------------------------------------------------- column checks
def _missing_report(columns: list[_Column]) -> tuple[np.ndarray, str]:
    rows = np.zeros(len(columns[0]), dtype=bool)
    parts = []
    total = 0
    for column in columns:
        count = int(column.missing.sum())
        if count:
            rows |= column.missing
            total += count
            parts.append(f"{column.name} ({count})")
    return rows, (f"{total} empty or NaN cell{'s' * (total != 1)} in {int(rows.sum())} "
                  f"row{'s' * (int(rows.sum()) != 1)}, in columns {', '.join(parts)}" if total else "")


def _check_finite(column: _Column) -> None:
    if column.kind == "numeric":
        bad = np.isinf(column.numbers)
        if bad.any():
            raise InputError(f"column {column.name!r} holds {int(bad.sum())} infinite value"
                             f"{'s' * (int(bad.sum()) != 1)} (first in data row {int(np.argmax(bad)) + 1}); "
                             "replace or remove them")


def _refuse_mixed(column: _Column) -> None:
    if column.kind == "mixed":
        number, text = column.example or ("?", "?")
        raise InputError(f"column {column.name!r} mixes numbers and text (e.g. {number!r} and {text!r}); "
                         "a column must hold only numbers or only text categories")


def _format_number(value: float) -> str:
    return str(int(value)) if value == round(value) and abs(value) < 2 ** 53 else repr(float(value))
