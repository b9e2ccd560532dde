"""The experiments ``netbonsai reproduce`` knows: name -> what it reproduces and how to run it.

Every runner takes ``(out, preset, data_root, seed, resume, progress, **parallel)`` and returns
the dict it wrote to ``out/result.json``; ``parallel`` holds ``executor`` / ``workers`` when the
user chose them (runners without independent trainings ignore them). A runner also takes, as
keywords, the settings its ``options`` name when the user set them on the command line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import InputError

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Experiment:
    """One reproducible table or figure."""

    name: str
    paper: str
    summary: str
    runner: Callable[..., dict[str, Any]]
    options: tuple[str, ...] = ()  # settings the command line may override (e.g. "repeats")


def _mnist_7_7(out: Path, preset: str, data_root: str | None, seed: int, resume: bool, progress: Progress,
               **parallel: Any) -> dict:
    from .mnist import reproduce_mnist_7_7

    def on_event(event: dict[str, Any]) -> None:
        if event.get("event") != "start":
            progress(f"{event.get('event')}: {event.get('params')} params, removed {event.get('removed', 0)}")

    return reproduce_mnist_7_7(out, preset=preset, data_root=data_root, seed=seed, resume=resume, on_event=on_event)


def _mnist_methods(out: Path, preset: str, data_root: str | None, seed: int, resume: bool, progress: Progress,
                   **parallel: Any) -> dict:
    from .mnist_methods import reproduce_mnist_pruning_methods

    return reproduce_mnist_pruning_methods(out, preset=preset, data_root=data_root, seed=seed, resume=resume,
                                           on_progress=progress, **parallel)


def _reber_pruning(out: Path, preset: str, data_root: str | None, seed: int, resume: bool, progress: Progress,
                   **parallel: Any) -> dict:
    from .reber import reproduce_reber_rnn_pruning

    return reproduce_reber_rnn_pruning(out, preset=preset, seed=seed, resume=resume, on_progress=progress, **parallel)


def _reber_structures(out: Path, preset: str, data_root: str | None, seed: int, resume: bool, progress: Progress,
                      repeats: int | None = None, **parallel: Any) -> dict:
    from .reber import reproduce_reber_structure_prediction, structure_settings

    settings = structure_settings(preset, **({} if repeats is None else {"repeats": repeats}))
    return reproduce_reber_structure_prediction(out, preset=preset, seed=seed, resume=resume, on_progress=progress,
                                                settings=settings, **parallel)


def _tristate(out: Path, preset: str, data_root: str | None, seed: int, resume: bool, progress: Progress,
              **parallel: Any) -> dict:
    from .tristate_mnist import reproduce_tristate_mnist

    return reproduce_tristate_mnist(out, preset=preset, data_root=data_root, seed=seed, resume=resume,
                                    on_progress=progress)


def _surgeon(out: Path, preset: str, data_root: str | None, seed: int, resume: bool, progress: Progress,
             **parallel: Any) -> dict:
    from .surgeon_mnist import reproduce_surgeon_mnist

    return reproduce_surgeon_mnist(out, preset=preset, data_root=data_root, seed=seed, resume=resume,
                                   on_progress=progress, **parallel)


def _residual(out: Path, preset: str, data_root: str | None, seed: int, resume: bool, progress: Progress,
              **parallel: Any) -> dict:
    from .residual_mnist import reproduce_residual_mnist

    return reproduce_residual_mnist(out, preset=preset, data_root=data_root, seed=seed, resume=resume,
                                    on_progress=progress, **parallel)


def _genetic(out: Path, preset: str, data_root: str | None, seed: int, resume: bool, progress: Progress,
             overrides: dict[str, Any] | None = None, **parallel: Any) -> dict:
    from .genetic_nas import reproduce_genetic_nas

    return reproduce_genetic_nas(out, preset=preset, data_root=data_root, seed=seed, resume=resume,
                                 on_progress=progress, overrides=overrides, **parallel)


EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in (
        Experiment("mnist-7-7", "000 (Example 3)",
                   "784-7-7-10 on MNIST: loss-aware synapse removal keeps test errors while removing most weights",
                   _mnist_7_7),
        Experiment("mnist-pruning-methods", "001 (Fig. 2a)",
                   "five pruning methods on 784-100-10 and 784-300-100-10: test accuracy against compression",
                   _mnist_methods),
        Experiment("reber-rnn-pruning", "001 (Fig. 2b, 5)",
                   "3x50 tanh/ReLU RNN, LSTM, GRU on the Reber grammar: accuracy after pruning i2h, h2h or both",
                   _reber_pruning),
        Experiment("reber-structure-prediction", "001 (Table 1, R^2)",
                   "random-graph sparse RNNs on the Reber grammar: graph features predict test accuracy",
                   _reber_structures, options=("repeats",)),
        Experiment("tristate-mnist", "003",
                   "tri-state ReLU gates learn LeNet-300-100 and LeNet-5 widths, MLP depths, size against classes",
                   _tristate),
        Experiment("surgeon-mnist", "002",
                   "the Surgeon from insufficient, good and oversized MLPs (SGD and Adam) against the start "
                   "trained alone and the final shape from scratch", _surgeon),
        Experiment("residual-mnist", "004",
                   "per-block efficiency against the lesion, whole-block pruning, and zero-initialised growth of "
                   "a residual CNN against the fixed 3 x 4 network", _residual),
        Experiment("genetic-nas", "001 (section 4.4)",
                   "genetic search over CNN DAG genotypes with and without structural performance prediction "
                   "against random search at equal training compute (digits, or --data IDX); the predictor's R^2",
                   _genetic, options=("set",)),
    )
}


def get_experiment(name: str) -> Experiment:
    """The experiment called ``name`` (InputError listing the known ones otherwise)."""
    if name not in EXPERIMENTS:
        raise InputError(f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]
