"""The options the run commands share (grow, compare, baseline; prune and reproduce reuse the help
texts), the TensorBoard sink they plug in, and ``--set KEY=VALUE`` parsing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from .errors import InputError


THREADS_HELP = ("Torch threads of this process (executor workers use 1 each). 1 is fastest for these small "
                "networks, above all on a busy machine; the count is recorded with the results, which it can change.")
TENSORBOARD_HELP = ("Also log every history event (losses, parameters, sparsity) as TensorBoard scalars "
                    "in this folder (needs the tensorboard package).")


def _event_logging(tensorboard: Path | None):
    """A context in which every run directory also logs to TensorBoard (with ``--tensorboard DIR``).

    The sink is checked at once (tensorboard installed, DIR not a file) but creates DIR only at
    the run's first event, so a run that fails validation leaves nothing behind.
    """
    from contextlib import ExitStack

    stack = ExitStack()
    if tensorboard is not None:
        from .logging_tb import TensorBoardSink
        from .runs import event_listeners

        sink = stack.enter_context(TensorBoardSink(tensorboard))
        stack.enter_context(event_listeners(sink))
    return stack


# ---------------------------------------------------------------------- shared options
def _search_limits(func):
    """The search's own limits: grow and compare (baseline runs no search)."""
    func = click.option("--max-seconds", type=float, default=None, help="Time budget of the search.")(func)
    return click.option(
        "--max-params", type=int, default=None, metavar="N",
        help="Stop once a prune phase ends at or above N parameters; the last addition can overshoot it by "
             "one neuron's synapses; use --set hard_max_params=true to never keep a network above N.")(func)


def _run_options(func):
    """The options grow, compare and baseline share."""
    options = [
        click.argument("task", type=str, metavar="TASK", required=False),
        click.option("--data", "data_file", type=str, default=None,
                     help="A table of your own instead of TASK: a CSV/TSV file with a header row, or an NPZ with "
                          "arrays x and y."),
        click.option("--target", multiple=True, help="The --data table's target column (repeat it for several "
                                                     "regression targets)."),
        click.option("--task-type", type=click.Choice(["regression", "classification"]), default=None,
                     help="Override the task type decided from the target (text or few integer values: classification)."),
        click.option("--drop-missing", is_flag=True,
                     help="Drop table rows with empty or NaN cells (and say how many) instead of refusing them."),
        click.option("--val-fraction", type=float, default=None,
                     help="Share of the rows held out (seeded) as the validation split (default: the preset's, 0.2)."),
        click.option("--test-fraction", type=float, default=None,
                     help="Share of a table's rows held back as the test split, reported only at the end "
                          "(--data FILE, sklearn:NAME; default 0.2)."),
        click.option("--image", type=str, default=None, help="Image file, or skimage:NAME (default skimage:camera)."),
        click.option("--preset", type=click.Choice(["quick", "paper"]), default="quick", show_default=True),
        click.option("--seed", type=int, default=None, help="Random seed (default 0)."),
        click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                     help="Override a setting (repeatable): grow.KEY sets the grow-and-prune search (a GrowConfig "
                          "field: --set grow.n_attempts=50 --set grow.feed_added=true; the flat n_attempts=50 still "
                          "works, with a deprecation notice), NAME.KEY a method of compare --methods (--set "
                          "loss-aware.eps=0.01), trainer.KEY the shared trainer (--set trainer.method=lm); --set 'dense.grid=[[10],[5,5]]' "
                          "replaces the dense baseline's hidden layers; dense.epochs (default: start_epochs; match: as long "
                          "as the search's networks) and polish.epochs set their budgets; magnitude.enabled, .method, .schedule "
                          "and .sparsity set the magnitude-pruning baseline of compare."),
        click.option("--executor", type=click.Choice(["process", "inline"]), default="process", show_default=True,
                     help="Where independent trainings run (a local process pool or this process)."),
        click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help=THREADS_HELP),
        click.option("--device", type=str, default="auto", show_default=True,
                     help="Torch device: auto (a CUDA GPU when present), cpu, cuda or cuda:N."),
        click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Run directory."),
        click.option("--resume", is_flag=True, help="Continue an interrupted run in --out from its last checkpoint."),
        click.option("--tensorboard", type=click.Path(file_okay=False, path_type=Path), default=None, help=TENSORBOARD_HELP),
        click.option("--quiet", is_flag=True, help="No progress display."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _parse_overrides(items: tuple[str, ...]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; values are read as JSON when they parse (numbers, true, lists), else text."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            overrides[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            overrides[key.strip()] = text
    return overrides
