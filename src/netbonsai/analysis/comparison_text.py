"""The prose of the image runs' reports: report.md texts, headlines and the printed summaries of grow, baseline and compare."""

from __future__ import annotations

from typing import Any

from .report import budget_line, comparison_table, front_table, markdown_table


def fmt(value: Any, spec: str = ".2f") -> str:
    """``value`` formatted with ``spec``, or ``-`` for None."""
    return "-" if value is None else format(value, spec)


def ratio_line(summary: dict[str, Any]) -> str:
    """A ratio summary (``median_ratio``, ``min_ratio``, ``max_ratio``, ``n``) in words."""
    if not summary.get("n"):
        return "no ratio (no network inside the other front's loss range)"
    return (f"median ratio **{summary['median_ratio']:.2f}** (min {summary['min_ratio']:.2f}, "
            f"max {summary['max_ratio']:.2f}, {summary['n']} points)")


def train_loss_line(comparison: dict[str, Any]) -> str:
    """One sentence on the ratio at equal training loss (empty when there is none)."""
    train = comparison.get("at_train_loss") or {}
    if not train.get("n"):
        return ""
    return (f" At equal training loss (paper 000's measure): median {train['median_ratio']:.2f} "
            f"(min {train['min_ratio']:.2f}, max {train['max_ratio']:.2f}, {train['n']} points).")


def headline(comparison: dict[str, Any]) -> str:
    """The one-seed comparison's headline: the median parameter ratio at equal validation loss."""
    if not comparison["n_ratios"]:
        return ("No grown network falls inside the dense networks' validation-loss range: no ratio to report."
                + train_loss_line(comparison))
    return (
        f"Median parameter ratio (dense / netbonsai) at equal validation loss: "
        f"**{comparison['median_ratio']:.2f}** (min {comparison['min_ratio']:.2f}, max {comparison['max_ratio']:.2f}, "
        f"{comparison['n_ratios']} front points; {comparison['n_outside_dense_range']} outside the dense loss range)."
        + train_loss_line(comparison)
    )


def magnitude_section(pruned: dict[str, Any] | None) -> str:
    """The report's section on the magnitude-pruning baseline (empty when it was not run)."""
    if pruned is None:
        return ""
    source = "-".join(str(h) for h in pruned["from"])
    return (
        f"## Magnitude pruning of the dense {source} MLP ({pruned['method']}, {pruned['schedule']} up to "
        f"sparsity {pruned.get('sparsity')}, retrained after every round)\n\n{front_table(pruned['front'])}\n"
        f"Against the dense front: {ratio_line(pruned)}. netbonsai against magnitude pruning: "
        f"{ratio_line(pruned['netbonsai'])}.\n\n"
    )


def trained_note(events: list[dict[str, Any]], unit: str) -> str:
    """", trained N iterations in the search" for the final network (empty when not counted)."""
    epochs = events[-1].get("epochs") if events else None
    if epochs is None:
        return ""
    return f", trained {epochs} {unit} in the search"


def grow_report(
    result: dict[str, Any], *, seed: int, device: str, events: list[dict[str, Any]], search_seconds: float,
    final_hidden: int, unit: str, units: str,
) -> str:
    """report.md of ``netbonsai grow`` from its result.json contents (``front``, ``model``, ...)."""
    model = result["model"]
    return (
        f"# netbonsai grow: {result['task']} on {result['image']}\n\n"
        f"Preset `{result['preset']}`, seed {seed}, device {device}, stopped by `{result['stop_reason']}` after "
        f"{len(events)} events in {search_seconds:.1f} s (wall {result['wall_seconds']:.1f} s). Losses: {units}.\n\n"
        f"Final network: {result['final_params']} parameters, {final_hidden} hidden neurons"
        f"{trained_note(events, unit)}.\n\n"
        f"Model: the front network with the lowest validation loss, {model['params']} parameters (validation loss "
        f"{model['val_loss']:.5g}, training loss {model['train_loss']:.5g}), saved as `model`.\n\n"
        f"## Pareto front (validation loss vs parameters)\n\n{front_table(result['front'])}\n"
        f"![history](history.png) ![front](pareto.png) ![network](network.png)\n"
    )


def baseline_report(task: str, image: str | None, units: str, wall: float, dense: list[dict[str, Any]]) -> str:
    """report.md of ``netbonsai baseline``: the dense networks' table."""
    return (f"# netbonsai baseline: {task} on {image}\n\nLosses: {units}. "
            f"Wall time {wall:.1f} s.\n\n{front_table(dense)}\n![front](pareto.png)\n")


def compare_report(comparison: dict[str, Any], front: list[dict[str, Any]], *, device: str, n_train: int,
                   n_val: int) -> str:
    """report.md of a one-seed ``netbonsai compare`` from its comparison.json contents."""
    table = comparison_table(comparison["ratios"], loss_format="{:.6g}")
    return (
        f"# netbonsai compare: {comparison['task']} on {comparison['image']}\n\n"
        f"Preset `{comparison['preset']}`, seed {comparison['seed']}, device {device}; {n_train} training and "
        f"{n_val} validation samples (seeded split). Losses: {comparison['loss_units']}, "
        f"on the validation set. Wall time {comparison['wall_seconds']:.1f} s.\n\n{headline(comparison)}\n\n"
        f"{budget_line(comparison['budget'])}\n\n"
        f"## Parameter ratio at equal validation loss\n\n{table}\n"
        f"## Dense MLPs (same trainer; budgets in the Training line above)\n\n{front_table(comparison['dense'])}\n"
        f"{magnitude_section(comparison.get('magnitude'))}"
        f"## netbonsai Pareto front\n\n{front_table(front)}\n"
        "![front](pareto.png) ![history](history.png) ![network](network.png)\n"
    )


def compare_printed(comparison: dict[str, Any]) -> str:
    """What a one-seed ``netbonsai compare`` prints: the ratio table, the headline, the budgets."""
    printed = (comparison_table(comparison["ratios"], loss_format="{:.6g}") + "\n" + headline(comparison) + "\n"
               + budget_line(comparison["budget"]))
    pruned = comparison.get("magnitude")
    if pruned is not None:
        printed += f"\nMagnitude pruning of the dense {'-'.join(map(str, pruned['from']))} MLP: {ratio_line(pruned)} " \
                   f"against the dense front; netbonsai against it: {ratio_line(pruned['netbonsai'])}."
    return printed


def seeds_summary(comparison: dict[str, Any]) -> str:
    """The printed summary of a multi-seed comparison: per-seed table, pooled table, headline."""
    rows = [[r["seed"], fmt(r["median_ratio"]), fmt(r["min_ratio"]), fmt(r["max_ratio"]), r["n_ratios"],
             fmt(r["wall_seconds"], ".1f")] for r in comparison["per_seed"]]
    spread = comparison["per_seed_median"]
    pooled = (f"**{comparison['median_ratio']:.2f}** (min {comparison['min_ratio']:.2f}, max "
              f"{comparison['max_ratio']:.2f}, {comparison['n_ratios']} front points)"
              if comparison["n_ratios"] else "none (no pooled grown network inside the dense loss range)")
    interval = comparison.get("median_ratio_interval")
    if comparison["n_ratios"] and interval:
        pooled += (f"; {interval['confidence']:.0%} interval over seeds (bootstrap) "
                   f"{interval['low']:.2f}-{interval['high']:.2f}")
    per_seed = (f"{spread['mean']:.2f} +- {spread['std']:.2f} (mean +- sd over seeds)"
                if spread["std"] is not None else "-")
    return (
        "## Each seed\n\n"
        + markdown_table(["seed", "median ratio", "min", "max", "front points", "wall (s)"], rows)
        + "\n## All seeds pooled (Pareto front of every grown network against that of every dense one)\n\n"
        + comparison_table(comparison["ratios"], loss_format="{:.6g}")
        + f"\nPooled median parameter ratio at equal validation loss: {pooled}. Per-seed median ratio: {per_seed}."
        + train_loss_line(comparison)
        + (f"\n\n{budget_line(comparison['budget'])}" if "budget" in comparison else "")
        + (f"\n\n{magnitude_section(comparison['magnitude'])}".rstrip() if "magnitude" in comparison else "")
    )


def seeds_report(comparison: dict[str, Any]) -> str:
    """report.md of ``netbonsai compare --seeds N`` from its pooled comparison.json contents."""
    return (
        f"# netbonsai compare: {comparison['task']} on {comparison['image']}, seeds {comparison['seeds']}\n\n"
        f"Preset `{comparison['preset']}`; the same data split for every seed. Losses: {comparison['loss_units']}, on "
        f"the validation set. Wall time {comparison['wall_seconds']:.1f} s. Each seed's run: `seed-S/`.\n\n"
        f"{seeds_summary(comparison)}\n\n![front](pareto.png)\n"
    )
