"""The report of a multi-method comparison (compare --methods): one table row per method, each front, one Pareto plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..data.task import Task
from .report import front_table, markdown_table

LOSS_UNITS = {"brightness": "MSE in 8-bit units (MSE * 255^2)", "approx": "MSE of brightness in [0, 1]",
              "idx": "mean cross-entropy (nats)"}


def loss_units(task: Task) -> str:
    """What a reported loss of ``task`` measures."""
    if task.name in LOSS_UNITS:
        return LOSS_UNITS[task.name]
    if task.kind == "classification":
        return "mean cross-entropy (nats)"
    if task.preprocessing.get("task") == "table" and len(task.preprocessing.get("targets", [0])) == 1:
        return "MSE in the target's units (squared)"
    return "MSE" if task.loss_scale == 1 else f"MSE x {task.loss_scale:g}"


def _fmt(value: Any, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def method_rows(figures: dict[str, Any]) -> list[list[Any]]:
    """One row per method: front size, ratio at equal loss, loss gap at equal size, interval."""
    rows = []
    for name, m in figures["methods"].items():
        interval = m.get("median_ratio_interval")
        rows.append([
            name, len(m["front"]), min((p["params"] for p in m["front"]), default="-"),
            _fmt(min((p["val_loss"] for p in m["front"]), default=None), ".4g"),
            _fmt(m["median_ratio"]), _fmt(m["min_ratio"]), m["n_ratios"],
            f"{interval['low']:.2f}-{interval['high']:.2f}" if interval else "-",
            _fmt(None if m.get("median_gap") is None else 100 * m["median_gap"], "+.1f") + ("%" if m.get("median_gap") is not None else ""),
            "yes" if m.get("flat_dense") else "",
        ])
    return rows


HEADERS = ["method", "front points", "fewest params", "best val loss", "median ratio", "min ratio", "points in range",
           "interval over seeds", "median loss gap", "flat dense range"]


def methods_report(figures: dict[str, Any], folder: Path) -> dict[str, str]:
    """``{"report": report.md text, "printed": what the command prints}``; draws pareto.png."""
    from .plots import pareto_plot

    units = figures["loss_units"]
    series: dict[str, Any] = {"dense MLP": figures["dense"]}
    series.update({name: m["front"] for name, m in figures["methods"].items()})
    seeds = figures.get("seeds")
    title = f"{figures['task_spec']}" + (f", {len(seeds)} seeds" if seeds else f", seed {figures['seed']}")
    pareto_plot(series, Path(folder) / "pareto.png", title=title, focus="dense MLP", loss_label=f"validation loss ({units})")
    table = markdown_table(HEADERS, method_rows(figures))
    flat = [name for name, m in figures["methods"].items() if m.get("flat_dense")]
    notes = [
        "Ratio: the dense front's parameters at the method's validation loss, divided by the method's (interpolated "
        "in log-parameters; above 1: the method is smaller). Loss gap: how much lower the method's validation loss "
        "is than the dense front's at the same parameter count (positive: better).",
    ]
    if flat:
        spread = figures.get("dense_spread_over_seeds")
        within = f"within the spread over seeds ({spread:.4g})" if spread is not None else "under 1% of the loss"
        notes.append(f"For {', '.join(flat)} the dense front's losses across the compared range differ by {within}: "
                     "the ratio is ill-conditioned there; read the loss gap instead.")
    if "model" in figures:
        m = figures["model"]
        notes.append(f"Model: the lowest validation loss on any method's front, {m['method']} with {m['params']} "
                     f"parameters (val loss {m['val_loss']:.5g}), saved as `model`.")
    fronts = "".join(f"## {name}\n\n{front_table(m['front'])}\n" for name, m in figures["methods"].items())
    test_note = ""
    header = (f"# netbonsai compare: {figures['task_spec']}\n\nPreset `{figures['preset']}`, "
              + (f"seeds {seeds}" if seeds else f"seed {figures['seed']}")
              + f"; every method and the dense sweep share the split, the trainer and the budget policy. "
              f"Losses: {units}, on the validation split. Wall time {figures['wall_seconds']:.1f} s.\n\n")
    report = (header + table + "\n" + "\n\n".join(notes) + test_note + "\n\n![front](pareto.png)\n\n"
              + f"## dense MLP\n\n{front_table(figures['dense'])}\n" + fronts)
    return {"report": report, "printed": table + "\n" + "\n".join(notes)}
