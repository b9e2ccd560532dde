"""Analysis of results: Pareto fronts, parameter ratios against baselines, tables, plots, drawings.

The plotting functions (``pareto_plot``, ``history_plot``, ``draw_network``) import matplotlib on
first use, so importing this package stays cheap for code that only needs fronts and tables.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .compare import param_ratios, ratio_summary, seed_bootstrap
from .pareto import pareto_front
from .report import comparison_table, front_table, markdown_table

if TYPE_CHECKING:
    from .draw import draw_network
    from .plots import history_plot, pareto_plot

_LAZY = {"pareto_plot": "plots", "history_plot": "plots", "draw_network": "draw"}

__all__ = [
    "comparison_table",
    "draw_network",
    "front_table",
    "history_plot",
    "markdown_table",
    "param_ratios",
    "pareto_front",
    "pareto_plot",
    "ratio_summary",
    "seed_bootstrap",
]


def __getattr__(name: str) -> Any:
    """Import the matplotlib-based functions lazily."""
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
