"""Figure creation and atomic PNG writing, without pyplot's global state."""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..atomic import atomic_open


def new_figure(width: float, height: float) -> Figure:
    """A figure bound to the Agg canvas (never shown, safe in threads and headless runs)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Write ``fig`` as PNG to ``path`` atomically: a temp file in the same folder, then rename.

    The parent folder is created if needed. On any error the temp file is removed and an
    existing file at ``path`` is left untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(target) as handle:
        fig.savefig(handle, format="png", dpi=dpi)
    return target
