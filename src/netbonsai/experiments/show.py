"""``netbonsai show DIR``: a readable summary of any run directory, finished or in progress."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..analysis.report import comparison_table, front_table, markdown_table
from ..errors import InputError
from ..runs import CONFIG, HISTORY, read_history


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None


def describe_run(run_dir: str | Path) -> str:
    """Markdown summary: the configuration, the latest events, and the results written so far."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"run directory {run_dir} does not exist")
    if not (run_dir / CONFIG).exists():
        raise InputError(f"{run_dir} is not a netbonsai run directory (no {CONFIG})")
    config = _read_json(run_dir / CONFIG)
    lines = [
        f"# {config.get('command', 'run')}: {config.get('task', '?')} on {config.get('image', '?')}",
        f"preset {config.get('preset', '?')}, seed {config.get('seed', '?')}; losses: {config.get('loss_units', '?')}",
        "",
    ]
    events = list(read_history(run_dir / HISTORY)) if (run_dir / HISTORY).exists() else []
    comparison = run_dir / "comparison.json"
    finished = comparison.exists() or (run_dir / "result.json").exists()
    if events:
        last = events[-1]
        state = "finished" if finished or last["event"] == "stop" else "in progress"
        counts = {kind: sum(e["event"] == kind for e in events) for kind in ("prune", "grow")}
        lines.append(
            f"search {state}: {len(events)} events ({counts['prune']} synapses removed, {counts['grow']} neurons added), "
            f"{last['seconds']:.1f} s; now {last['params']} parameters, train loss {last['train_loss']:.5g}, "
            f"validation loss {last['val_loss']:.5g}"
        )
        lines.append("")
        rows = [[e["index"], e["event"], e["params"], f"{e['train_loss']:.5g}", f"{e['val_loss']:.5g}", f"{e['seconds']:.1f}"]
                for e in events[-10:]]
        lines.append("Latest events:\n")
        lines.append(markdown_table(["#", "event", "params", "train loss", "val loss", "seconds"], rows))
    if (run_dir / "dense.json").exists():
        lines.append("Dense MLPs:\n")
        lines.append(front_table(_read_json(run_dir / "dense.json")))
    if comparison.exists():
        data = _read_json(comparison)
        lines.append("Parameter ratio at equal validation loss:\n")
        lines.append(comparison_table(data["ratios"]))
        if data.get("median_ratio") is not None:
            lines.append(f"median ratio {data['median_ratio']:.2f}, min {data['min_ratio']:.2f}; wall {data['wall_seconds']:.1f} s")
    elif not events and not (run_dir / "dense.json").exists():
        lines.append("no results yet")
    return "\n".join(lines).rstrip() + "\n"
