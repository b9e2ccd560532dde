"""``netbonsai show DIR``: a readable summary of any run directory, finished or in progress."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..analysis.report import budget_line, comparison_table, front_table, markdown_table
from ..errors import InputError
from ..runs import CONFIG, HISTORY, KIND_KEY, read_history, read_json


def _require(path: Path, value: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    missing = [k for k in keys if k not in value]
    if missing:
        raise InputError(f"cannot read {path}: not a netbonsai result (missing {', '.join(missing)})")
    return value


def _number(value: Any, spec: str) -> str:
    return format(value, spec) if isinstance(value, (int, float)) and not isinstance(value, bool) else "?"


def describe_run(run_dir: str | Path) -> str:
    """Markdown summary: the configuration, the latest events, and the results written so far.

    Works on any run directory (grow, compare, baseline, prune, reproduce), finished or still
    being written (a torn last history line is skipped). A damaged or foreign result file raises
    :class:`InputError` naming the folder.
    """
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise InputError(f"run directory {run_dir} does not exist")
    if not run_dir.is_dir():
        raise InputError(f"{run_dir} is a file, not a run directory")
    if not (run_dir / CONFIG).exists():
        raise InputError(f"{run_dir} is not a netbonsai run directory (no {CONFIG})")
    config = read_json(run_dir / CONFIG)
    try:
        if config.get("command") == "prune" or "experiment" in config:
            return _describe_generic(run_dir, config)
        return _describe_image_run(run_dir, config)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # InputError is a ValueError: keep its text
        if isinstance(exc, InputError):
            raise
        raise InputError(f"cannot summarise {run_dir}: a result file has an unexpected shape "
                         f"({type(exc).__name__}: {exc})") from None


def _kind(config: dict[str, Any]) -> list[str]:
    """The line naming the run's kind (config.json of runs written since it was recorded), else none."""
    kind = config.get(KIND_KEY)
    return [f"kind: {kind}"] if isinstance(kind, str) and kind else []


def _describe_image_run(run_dir: Path, config: dict[str, Any]) -> str:
    """Summary of a grow, baseline or compare run."""
    lines = [
        f"# {config.get('command', 'run')}: " + (str(config["task_spec"]) if config.get("task_spec") else
                                                  f"{config.get('task', '?')} on {config.get('image', '?')}"),
        *_kind(config),
        f"preset {config.get('preset', '?')}, seed {config.get('seed', '?')}; losses: {config.get('loss_units', '?')}",
        "",
    ]
    events = list(read_history(run_dir / HISTORY)) if (run_dir / HISTORY).exists() else []
    comparison = run_dir / "comparison.json"
    finished = comparison.exists() or (run_dir / "result.json").exists()
    if events:
        last = events[-1]
        state = "finished" if finished or last.get("event") == "stop" else "in progress"
        counts = {kind: sum(e.get("event") == kind for e in events) for kind in ("prune", "grow")}
        pruned_neurons = sum(e.get("event") == "prune" and "neuron" in e for e in events)
        removed = f"{counts['prune'] - pruned_neurons} synapses removed"
        if pruned_neurons:  # the search's neuron_removal option
            removed += f", {pruned_neurons} neurons removed"
        lines.append(
            f"search {state}: {len(events)} events ({removed}, {counts['grow']} neurons added), "
            f"{_number(last.get('seconds'), '.1f')} s; now {last.get('params', '?')} parameters, "
            f"train loss {_number(last.get('train_loss'), '.5g')}, validation loss {_number(last.get('val_loss'), '.5g')}"
        )
        lines.append("")
        rows = [[e.get("index", ""), e.get("event", ""), e.get("params", ""), _number(e.get("train_loss"), ".5g"),
                 _number(e.get("val_loss"), ".5g"), _number(e.get("seconds"), ".1f")] for e in events[-10:]]
        lines.append("Latest events:\n")
        lines.append(markdown_table(["#", "event", "params", "train loss", "val loss", "seconds"], rows))
    if (run_dir / "dense.json").exists():
        lines.append("Dense MLPs:\n")
        lines.append(front_table(read_json(run_dir / "dense.json", list)))
    if comparison.exists():
        data = _require(comparison, read_json(comparison), ("ratios",))
        lines.append("Parameter ratio at equal validation loss:\n")
        lines.append(comparison_table(data["ratios"]))
        if data.get("median_ratio") is not None:
            lines.append(f"median ratio {_number(data['median_ratio'], '.2f')}, min {_number(data.get('min_ratio'), '.2f')}; "
                         f"wall {_number(data.get('wall_seconds'), '.1f')} s")
        if data.get("per_seed"):
            medians = ", ".join(f"seed {r.get('seed')}: {_number(r.get('median_ratio'), '.2f')}" for r in data["per_seed"])
            lines.append(f"pooled over seeds {data.get('seeds')}; each seed's median ratio: {medians}")
            interval = data.get("median_ratio_interval")
            if isinstance(interval, dict) and {"low", "high", "confidence"} <= set(interval):
                lines.append(f"{_number(interval['confidence'], '.0%')} interval of the pooled median ratio over "
                             f"seeds (bootstrap): {_number(interval['low'], '.2f')}-{_number(interval['high'], '.2f')}")
        train = data.get("at_train_loss")
        if isinstance(train, dict) and train.get("n"):
            lines.append(f"at equal training loss (paper 000's measure): median ratio "
                         f"{_number(train.get('median_ratio'), '.2f')} ({train['n']} points)")
        budget = data.get("budget")
        if isinstance(budget, dict) and {"unit", "method", "dense_epochs", "polish_epochs"} <= set(budget):
            lines.append(budget_line(budget))
        if isinstance(data.get("methods"), dict) and data["methods"]:
            lines.append("\nEvery method against the dense sweep (test: the best-validation network on the held-back split):\n")
            lines.append(_methods_table(data))
        pruned = data.get("magnitude")
        if isinstance(pruned, dict):
            source = "-".join(str(h) for h in pruned.get("from", []))
            ours = pruned.get("netbonsai") or {}
            lines.append(f"magnitude pruning of dense {source}: median ratio {_number(pruned.get('median_ratio'), '.2f')} "
                         f"against the dense MLPs; netbonsai against it: {_number(ours.get('median_ratio'), '.2f')}")
    elif not events and not (run_dir / "dense.json").exists():
        lines.append("no results yet")
    return "\n".join(lines).rstrip() + "\n"


def _test_text(test: Any) -> str:
    """A test-split figure: accuracy for classifiers, RMSE for regression, else the loss."""
    if not isinstance(test, dict):
        return "-"
    if "accuracy" in test:
        return f"accuracy {_number(test['accuracy'], '.4f')} ({test.get('params', '?')} params)"
    if "rmse" in test:
        return f"RMSE {_number(test['rmse'], '.5g')} ({test.get('params', '?')} params)"
    return f"loss {_number(test.get('loss'), '.5g')}"


def _methods_table(data: dict[str, Any]) -> str:
    """One row per method of a compare run (and the dense sweep's best network on the test split)."""
    rows = []
    for name, m in data["methods"].items():
        front = [p for p in m.get("front", []) if isinstance(p, dict)]
        losses = [p["val_loss"] for p in front if p.get("val_loss") is not None]
        rows.append([name, len(front), min((p.get("params", 0) for p in front), default="-"),
                     _number(min(losses) if losses else None, ".5g"), _number(m.get("median_ratio"), ".2f"),
                     _number(m.get("median_gap"), "+.1%"), _test_text(m.get("test"))])
    if data.get("dense_test"):
        rows.append(["dense", len(data.get("dense", [])), "-", "-", "-", "-", _test_text(data["dense_test"])])
    return markdown_table(["method", "front points", "fewest params", "best val loss", "median ratio",
                           "median loss gap", "test"], rows)


def _scalar(value: Any) -> bool:
    return isinstance(value, (int, float, str, bool)) or value is None


def _events_table(events: list[dict[str, Any]], limit: int = 12, max_columns: int = 10) -> str:
    """The latest events as a table of their scalar fields (columns in order of first appearance)."""
    shown = events[-limit:]
    columns: list[str] = []
    for event in shown:
        for key, value in event.items():
            if key not in columns and _scalar(value) and len(columns) < max_columns:
                columns.append(key)
    rows = [[e.get(c) if _scalar(e.get(c)) else "" for c in columns] for e in shown]
    return markdown_table(columns, rows)


def _describe_generic(run_dir: Path, config: dict[str, Any]) -> str:
    """Summary of a pruning or reproduce run: what it is, its latest events, its result if finished."""
    what = config.get("experiment") or (
        f"{config.get('task', '?')}, {config.get('arch', '?')}, {config.get('method', '?')}, {config.get('schedule', '?')}"
    )
    preset = f", preset {config['preset']}" if "preset" in config else ""  # prune runs have none
    lines = [f"# {config.get('command', 'reproduce')}: {what}", *_kind(config),
             f"seed {config.get('seed', '?')}{preset}", ""]
    events = list(read_history(run_dir / HISTORY)) if (run_dir / HISTORY).exists() else []
    result_path = run_dir / "result.json"
    lines.append(f"{'finished' if result_path.exists() else 'in progress'}: {len(events)} events in history.jsonl\n")
    if events:
        lines.append("Latest events:\n")
        lines.append(_events_table(events))
    if result_path.exists():
        result = read_json(result_path)
        headline = {k: v for k, v in result.items() if _scalar(v)}
        headline.update({k: v for k, v in result.get("headline", {}).items() if _scalar(v)})
        lines.append("Result:\n")
        lines.append(markdown_table(["key", "value"], [[k, v] for k, v in headline.items()]))
        lines.append(result_tables(result))
        if (run_dir / "report.md").exists():
            lines.append(f"Full report: {run_dir / 'report.md'}")
    return "\n".join(lines).rstrip() + "\n"


def result_tables(result: dict[str, Any]) -> str:
    """The tables a reproduce result is read for (empty when it has none): the R^2 per cell and
    regressor (reber-structure-prediction), the base accuracy per cell (reber-rnn-pruning), the
    Surgeon against its baselines per run (surgeon-mnist), the metric check, pruning and growth
    (residual-mnist), the searches, predictor and speed-up (genetic-nas)."""
    from ..analysis.structure_prediction import r2_table

    parts = []
    if isinstance(result.get("r2"), dict) and result["r2"]:
        parts.append("R^2 of predicting test accuracy from graph features (mean ± std over splits):\n")
        parts.append(r2_table(result["r2"]))
        if isinstance(result.get("repeat_correlation"), dict) and result["repeat_correlation"]:
            alike = ", ".join(f"{c} {_number(v, '.2f')}" for c, v in result["repeat_correlation"].items())
            parts.append(f"\nTwo trainings of the same structure correlate: {alike} (report.md: R^2 for 1..N trainings)")
    if result.get("experiment") == "surgeon-mnist" and isinstance(result.get("runs"), list):
        from .surgeon_mnist import runs_table

        parts.append(runs_table(result["runs"]))
    if result.get("experiment") == "residual-mnist" and isinstance(result.get("pruning"), dict):
        from .residual_mnist import tables

        parts.append(tables(result))
    if result.get("experiment") == "genetic-nas" and isinstance(result.get("searches"), dict):
        from .genetic_nas_report import tables as genetic_tables

        parts.append(genetic_tables(result))
    if isinstance(result.get("base_accuracy"), dict) and result["base_accuracy"]:
        parts.append("Base test accuracy:\n")
        parts.append(markdown_table(["cell", "accuracy"], [[c, _number(v, ".4f")] for c, v in result["base_accuracy"].items()]))
    return "\n".join(parts)
