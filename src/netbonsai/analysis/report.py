"""Markdown tables for run reports (report.md) and the paper-style comparison table."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence


def _cell(value: Any) -> str:
    """Text of one table cell: None is empty, floats get 6 significant digits, pipes are escaped."""
    if value is None:
        text = ""
    elif isinstance(value, float):
        text = "nan" if math.isnan(value) else f"{value:.6g}"
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A pipe table with padded, aligned columns; numeric columns are right-aligned.

    Cells are converted with ``str`` (floats with 6 significant digits, None as empty). The
    result ends with a newline.
    """
    head = [_cell(h) for h in headers]
    body = [[_cell(c) for c in row] for row in rows]
    for i, row in enumerate(body):
        if len(row) != len(head):
            raise ValueError(f"row {i} has {len(row)} cells, expected {len(head)}")
    widths = [max([3, len(h)] + [len(r[j]) for r in body]) for j, h in enumerate(head)]
    right = [
        any(r[j] for r in body) and all(_is_number(r[j]) for r in body if r[j])
        for j in range(len(head))
    ]

    def line(cells: Sequence[str]) -> str:
        padded = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)]
        return "| " + " | ".join(padded) + " |"

    rule = "| " + " | ".join("-" * (w - 1) + ":" if r else "-" * w for w, r in zip(widths, right)) + " |"
    return "\n".join([line(head), rule] + [line(r) for r in body]) + "\n"


def _scaled(value: Any, scale: float, fmt: str) -> str:
    if value is None:
        return ""
    return fmt.format(float(value) * scale)


def comparison_table(
    ratios: Sequence[Mapping],
    loss_scale: float = 1.0,
    loss_format: str = "{:.5g}",
    loss_key: str = "val_loss",
) -> str:
    """The paper's comparison table from :func:`~netbonsai.analysis.compare.param_ratios` output.

    Columns ``loss | netbonsai params | dense params | ratio``; losses are multiplied by
    ``loss_scale`` (65025 reports brightness MSE in 8-bit units) and formatted with
    ``loss_format``; dense params show one decimal, ratios two.
    """
    rows = [
        [
            _scaled(r[loss_key], loss_scale, loss_format),
            str(r["grown_params"]),
            f"{float(r['dense_params']):.1f}",
            f"{float(r['ratio']):.2f}",
        ]
        for r in ratios
    ]
    return markdown_table(["loss", "netbonsai params", "dense params", "ratio"], rows)


def _hidden(value: Any) -> str:
    """Layer sizes as ``6-6``; strings and other values as they are."""
    if isinstance(value, (list, tuple)):
        return "-".join(str(v) for v in value)
    return "" if value is None else str(value)


def front_table(
    points: Sequence[Mapping],
    loss_scale: float = 1.0,
    loss_format: str = "{:.5g}",
) -> str:
    """A table of (front) points: ``params | train loss | val loss``, in the order given.

    When any point has a ``hidden`` key (layer sizes such as ``[6, 6]``), a leading ``hidden``
    column shows them as ``6-6``. Missing losses are left empty.
    """
    with_hidden = any("hidden" in p for p in points)
    headers = (["hidden"] if with_hidden else []) + ["params", "train loss", "val loss"]
    rows = []
    for p in points:
        row = [_hidden(p.get("hidden"))] if with_hidden else []
        row += [
            str(p.get("params", "")),
            _scaled(p.get("train_loss"), loss_scale, loss_format),
            _scaled(p.get("val_loss"), loss_scale, loss_format),
        ]
        rows.append(row)
    return markdown_table(headers, rows)


def value_at(points: Sequence[Mapping[str, Any]], level: float, key: str, level_key: str) -> Any:
    """``key`` of the curve point whose ``level_key`` equals ``level`` (to 1e-9), or None
    (e.g. the retrained accuracy at 80% pruning of a pruning curve)."""
    return next((point[key] for point in points if abs(point[level_key] - level) < 1e-9), None)


def budget_line(budget: dict[str, Any]) -> str:
    """One sentence of the report: the training both sides had."""
    unit, method = budget["unit"], budget["method"]
    dense = budget["dense_epochs"]
    if budget.get("dense_epochs_min") is not None and budget["dense_epochs_min"] != dense:
        dense = f"{budget['dense_epochs_min']}-{dense}"  # pooled seeds with dense.epochs=match
    text = f"Training ({method}): every dense network {dense} {unit}"
    if budget.get("grown_epochs_min") is not None:
        low = budget["grown_epochs_min"]
        high = budget.get("grown_epochs_max", low)
        span = f"{low}" if low == high else f"{low}-{high}"
        text += f"; the grown front's networks {span} {unit} in the search (their whole history, start network included)"
    if budget["polish_epochs"]:
        text += f"; then every reported network the same {budget['polish_epochs']}-{unit[:-1]} polish"
    return text + "."
