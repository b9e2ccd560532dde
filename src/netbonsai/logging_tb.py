"""Optional TensorBoard logging: scalars for every history event of a run.

A :class:`TensorBoardSink` is an event listener (see :func:`netbonsai.runs.event_listeners`):
every event a run appends to its ``history.jsonl`` is also written as TensorBoard scalars, at
step = the event's position in the history. Which fields become which tags:

=================  =================
event field        TensorBoard tag
=================  =================
``train_loss``     ``loss/train``
``val_loss``       ``loss/val``
``test_loss``      ``loss/test``
``params``         ``params``
``sparsity``       ``sparsity``
``live_weights``   ``live_weights``
``n_hidden``       ``neurons``
``*_accuracy``     ``accuracy/*``
``test_errors``    ``errors/test``
=================  =================

An event with a string ``key`` (one job of a reproduce experiment) gets its tags under
``KEY/``. Fields an event lacks are simply not logged; the JSONL history stays the complete
record. The ``tensorboard`` package is optional (``pip install tensorboard`` or
``netbonsai[tensorboard]``); without it, asking for a sink raises :class:`InputError` before any
work starts.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable, Protocol

from .errors import InputError

SCALARS: dict[str, str] = {
    "train_loss": "loss/train",
    "val_loss": "loss/val",
    "test_loss": "loss/test",
    "params": "params",
    "sparsity": "sparsity",
    "live_weights": "live_weights",
    "n_hidden": "neurons",
    "train_accuracy": "accuracy/train",
    "val_accuracy": "accuracy/val",
    "test_accuracy": "accuracy/test",
    "test_errors": "errors/test",
}


class ScalarWriter(Protocol):
    """What the sink needs of a writer: ``torch.utils.tensorboard.SummaryWriter`` has it."""

    def add_scalar(self, tag: str, scalar_value: float, global_step: int | None = None) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


def summary_writer_class() -> type:
    """``torch.utils.tensorboard.SummaryWriter``, or InputError when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise InputError("--tensorboard needs the tensorboard package: pip install tensorboard "
                         "(or pip install 'netbonsai[tensorboard]')") from None
    return SummaryWriter


def event_scalars(event: dict[str, Any]) -> dict[str, float]:
    """The TensorBoard tags and values of one history event (finite numbers only)."""
    prefix = f"{event['key']}/" if isinstance(event.get("key"), str) and event["key"] else ""
    scalars = {}
    for field, tag in SCALARS.items():
        value = event.get(field)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            continue
        scalars[prefix + tag] = float(value)
    return scalars


class TensorBoardSink:
    """Writes each history event's scalars to a TensorBoard log folder.

    ``log_dir`` is created on the first event (so a run that fails validation leaves nothing
    behind). ``writer_factory(log_dir)`` builds the writer; the default is tensorboard's
    ``SummaryWriter``, checked for at construction. Tests pass a fake factory.
    """

    def __init__(
        self, log_dir: str | os.PathLike, writer_factory: Callable[[str], ScalarWriter] | None = None
    ) -> None:
        self.log_dir = Path(log_dir)
        if self.log_dir.exists() and not self.log_dir.is_dir():
            raise InputError(f"--tensorboard {self.log_dir} exists and is not a folder")
        self.factory = writer_factory if writer_factory is not None else summary_writer_class()
        self.writer: ScalarWriter | None = None

    def __call__(self, event: dict[str, Any], step: int) -> None:
        scalars = event_scalars(event)
        if not scalars:
            return
        if self.writer is None:
            self.writer = self.factory(str(self.log_dir))
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()  # a run in progress is visible in TensorBoard as it goes

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def __enter__(self) -> "TensorBoardSink":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
