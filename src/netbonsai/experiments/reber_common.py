"""The pieces both Reber experiments share: the presets' training settings, the seeded data, training, and running jobs with a checkpoint after each."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from concurrent.futures import Executor
from typing import Any, Callable

import torch

from .. import __version__
from ..data.reber import ReberData, make_reber
from ..data.task import Split
from ..errors import InputError
from ..executor import InlineExecutor, make_executor
from ..nets.recurrent import CELLS, MaskedRecurrent
from ..runs import RunContext, RunDir
from ..train import Budget, TrainerConfig, fit
from ..train.sequences import evaluate_sequences

PARTS = ("i2h", "h2h", "both")
CELL_NAMES = tuple(CELLS)  # tanh, relu, lstm, gru
LEVELS = tuple(round(0.1 * i, 1) for i in range(1, 11))
PAPER_BASE = {"tanh": 0.937, "relu": 1.0, "lstm": 1.0, "gru": 1.0}  # paper 001, Fig. 5: base test accuracy
PAPER_R2 = {  # seeds README: (bayesian_ridge, random_forest, adaboost)
    "tanh": (0.48, 0.43, 0.36), "relu": (0.36, 0.62, 0.53), "lstm": (0.37, 0.58, 0.60), "gru": (0.67, 0.88, 0.78),
}
Progress = Callable[[str], None]


# ---------------------------------------------------------------------- shared pieces
@dataclass(frozen=True)
class ReberTraining:
    """The data and the optimiser of every Reber training (paper 001: Adam lr 1e-3, batch 32, clipping 5)."""

    n_strings: int = 25_000
    embedding_dim: int = 128
    lr: float = 1e-3
    batch_size: int = 32
    clip_norm: float = 5.0
    max_train: int | None = None  # subsample the training strings (smoke tests)
    max_test: int | None = None

    def validate(self) -> None:
        if self.embedding_dim < 1 or self.batch_size < 1 or not self.lr > 0 or not self.clip_norm > 0:
            raise InputError("embedding_dim and batch_size must be >= 1, lr and clip_norm > 0")
        for name in ("max_train", "max_test"):
            value = getattr(self, name)
            if value is not None and value < 2:
                raise InputError(f"{name} must be at least 2, got {value}")


_DATA_CACHE: dict[tuple, ReberData] = {}


def _reber(training: ReberTraining, seed: int) -> dict[str, torch.Tensor]:
    """The seeded Reber strings as tensors (cached per process: jobs in one worker share them)."""
    key = (training.n_strings, seed)
    if key not in _DATA_CACHE:
        _DATA_CACHE[key] = make_reber(training.n_strings, seed=seed)
    data = _DATA_CACHE[key]
    train, test = slice(training.max_train), slice(training.max_test)
    return {
        "train": (data.train_codes[train], data.train_lengths[train], data.train_labels[train]),
        "test": (data.test_codes[test], data.test_lengths[test], data.test_labels[test]),
    }


def _train(model: MaskedRecurrent, data: dict, epochs: int, training: ReberTraining, seed: int):
    codes, lengths, labels = data["train"]
    trainer = TrainerConfig(method="adam", loss="cross_entropy", lr=training.lr, batch_size=training.batch_size,
                            clip_norm=training.clip_norm)
    return fit(model, Split((codes, lengths), labels), Budget(epochs=epochs), trainer, seed=seed)


def _test_accuracy(model: MaskedRecurrent, data: dict) -> list[float]:
    return [float(a) for a in evaluate_sequences(model, *data["test"])[1]]


def _run_jobs(run: RunContext | RunDir, state: dict[str, Any], jobs: dict[str, tuple],
              executor: str | None = None, workers: int | None = None,
              on_done: Callable[[str, Any], None] = lambda key, value: None) -> None:
    """Submit the jobs not yet in ``state["done"]``; checkpoint after each one that finishes.

    ``run`` is the run's :class:`RunContext`: its executor runs the jobs (``executor`` and
    ``workers`` are not used). A bare :class:`RunDir` gets an executor of kind ``executor`` with
    ``workers`` workers for the call.
    """
    todo = {key: job for key, job in jobs.items() if key not in state["done"]}
    if not todo:
        return
    if isinstance(run, RunContext):
        _submit_jobs(run.executor, run.checkpoint, state, todo, on_done)
        return
    with make_executor(executor or "inline", workers=workers or 1) as pool:
        _submit_jobs(pool, run.save_checkpoint, state, todo, on_done)


def _submit_jobs(pool: Executor, checkpoint: Callable[[dict[str, Any]], None], state: dict[str, Any],
                 todo: dict[str, tuple], on_done: Callable[[str, Any], None]) -> None:
    futures = ((key, pool.submit(*job)) for key, job in todo.items())
    if not isinstance(pool, InlineExecutor):  # a pool gets every job at once; inline, submit() runs the job,
        futures = list(futures)  # so submit one at a time, each checkpointed before the next runs
    for key, future in futures:
        state["done"][key] = future.result()
        checkpoint(state)
        on_done(key, state["done"][key])


def run_experiment(out: str | Path, experiment: str, settings: Any, seed: int, resume: bool, executor: str,
                   workers: int, on_progress: Progress | None,
                   body: Callable[[RunContext, Any, int, Progress], dict[str, Any]]) -> dict[str, Any]:
    """Validate ``settings``, open the experiment's run (config.json: the command, the experiment,
    the seed and every setting) and run ``body(ctx, settings, seed, say)`` in it."""
    settings.validate()
    say = on_progress or (lambda text: None)
    config = {"command": "reproduce", "experiment": experiment, "netbonsai_version": __version__,
              "seed": seed, **asdict(settings)}
    with RunContext(out, config, kind=experiment, resume=resume, executor=executor, workers=workers) as ctx:
        return body(ctx, settings, seed, say)
