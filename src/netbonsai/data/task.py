"""One learning problem, whatever its source: :class:`Task` with named :class:`Split` s.

Every method, trainer and command takes a Task (or one of its splits). A Task carries the
samples (train, validation, optional test), the loss kind, the scale its losses are reported in
(255^2 for brightness prediction: MSE in 8-bit units), the metrics a report shows, and metadata
(preprocessing, provenance, the split seed) that saved models carry so a new input can be
prepared the same way. Builders: :func:`netbonsai.data.load_task` (the image tasks),
:func:`netbonsai.data.idx_task` (MNIST-style IDX folders), :func:`netbonsai.data.reber_task`;
:func:`netbonsai.data.task_from_spec` reads the task names every command accepts.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import torch

from ..errors import InputError
from .checks import require_finite

LOSSES = ("mse", "cross_entropy")


@dataclass(frozen=True, eq=False)
class Split:
    """One side of a task: inputs ``x`` (a tensor, or a tuple of tensors for sequences) and targets ``y``."""

    x: torch.Tensor | tuple[torch.Tensor, ...]
    y: torch.Tensor

    def __post_init__(self) -> None:
        first = self.x[0] if isinstance(self.x, tuple) else self.x
        if first.shape[0] != self.y.shape[0]:
            raise InputError(f"a split's inputs have {first.shape[0]} rows but its targets {self.y.shape[0]}")

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def to(self, device: str | torch.device, copy: bool = False) -> "Split":
        """The split with its tensors on ``device`` (copied when ``copy``)."""
        move = lambda t: t.to(device, copy=copy)  # noqa: E731
        x = tuple(move(t) for t in self.x) if isinstance(self.x, tuple) else move(self.x)
        return Split(x, move(self.y))


@dataclass(frozen=True, eq=False)
class Task:
    """A learning problem: named splits, its loss, the reporting scale, metrics and metadata.

    ``loss`` is a trainer loss name (``mse`` or ``cross_entropy``); a loss is *reported* as the
    trainer's mean loss times ``loss_scale``. ``metrics`` names what reports show besides the
    loss (``accuracy``, ``errors`` for classifiers). ``meta`` holds the preprocessing, the
    provenance (``source``: an image, a folder) and the ``split_seed``. The test split is never
    seen by a search or a selection; it is evaluated once, at the end.
    """

    name: str
    train: Split
    val: Split
    test: Split | None = None
    loss: str = "mse"
    loss_scale: float = 1.0
    metrics: tuple[str, ...] = ("loss",)
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise InputError(f"unknown task loss {self.loss!r}; choose one of {', '.join(LOSSES)}")
        if not self.loss_scale > 0:
            raise InputError(f"a task's loss_scale must be > 0, got {self.loss_scale}")
        for side in ("train", "val", "test"):
            split = getattr(self, side)
            if split is None:
                continue
            if len(split) == 0:
                raise InputError(f"the {side} split of task {self.name!r} is empty")
            if not isinstance(split.x, tuple):
                if split.x.dim() != 2 or (self.loss == "mse" and split.y.dim() != 2):
                    raise InputError(f"{side} data must be (samples, features) and (samples, outputs), got "
                                     f"{tuple(split.x.shape)} and {tuple(split.y.shape)}")
                require_finite(f"{side} inputs", split.x)
            require_finite(f"{side} targets", split.y)

    # -------------------------------------------------------------- shapes
    @property
    def kind(self) -> str:
        """``regression`` (mse) or ``classification`` (cross-entropy)."""
        return "classification" if self.loss == "cross_entropy" else "regression"

    @property
    def n_in(self) -> int:
        return int(self.train.x.shape[1]) if not isinstance(self.train.x, tuple) else int(self.train.x[0].shape[-1])

    @property
    def n_out(self) -> int:
        if self.kind == "classification":
            return int(self.meta.get("n_classes") or int(self.train.y.max()) + 1)
        return int(self.train.y.shape[1])

    # -------------------------------------------------------------- the split's tensors (the search's names)
    @property
    def x_train(self) -> torch.Tensor:
        return self.train.x

    @property
    def y_train(self) -> torch.Tensor:
        return self.train.y

    @property
    def x_val(self) -> torch.Tensor:
        return self.val.x

    @property
    def y_val(self) -> torch.Tensor:
        return self.val.y

    @property
    def x_test(self) -> torch.Tensor:
        return self._test().x

    @property
    def y_test(self) -> torch.Tensor:
        return self._test().y

    def _test(self) -> Split:
        if self.test is None:
            raise InputError(f"task {self.name!r} has no test split")
        return self.test

    # -------------------------------------------------------------- metadata
    @property
    def task(self) -> str:
        """The task's name (the image tasks' ``brightness`` / ``approx``)."""
        return self.name

    @property
    def source(self) -> str | None:
        """Where the samples came from (an image, a folder), if known."""
        return self.meta.get("source")

    image = source  # the image tasks' name for it

    @property
    def image_shape(self) -> tuple[int, int] | None:
        shape = self.meta.get("image_shape")
        return tuple(shape) if shape is not None else None

    @property
    def seed(self) -> int | None:
        """The seed of the train/validation split."""
        return self.meta.get("split_seed")

    @property
    def preprocessing(self) -> dict:
        return dict(self.meta.get("preprocessing", {}))

    # -------------------------------------------------------------- copies
    def to(self, device: str | torch.device, copy: bool = False) -> "Task":
        """The same task with its tensors on ``device`` (``self`` when they are there already and
        no copy is asked for)."""
        here = self.train.y.device
        if not copy and here == torch.empty(0, device=device).device:  # "cuda" is "cuda:0"
            return self
        return replace(self, train=self.train.to(device, copy), val=self.val.to(device, copy),
                       test=self.test.to(device, copy) if self.test is not None else None)

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary: name, sizes, split, loss and preprocessing."""
        info = {
            "task": self.name,
            "image": self.source,
            "image_shape": list(self.image_shape) if self.image_shape is not None else None,
            "n_train": len(self.train),
            "n_val": len(self.val),
            **({"n_test": len(self.test)} if self.test is not None else {}),
            "split_seed": self.seed,
            "loss_scale": self.loss_scale,
            "preprocessing": self.preprocessing,
        }
        if self.image_shape is None:
            info.pop("image_shape")
        return info


def TaskData(  # noqa: N802 - the name older code and tests construct image tasks with
    task: str, x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor,
    image: str | None = None, image_shape: tuple[int, int] | None = None, loss_scale: float = 1.0,
    seed: int = 0, preprocessing: dict | None = None,
) -> Task:
    """A regression :class:`Task` from the image tasks' older field names."""
    for side, x, y in (("train", x_train, y_train), ("val", x_val, y_val)):
        if x.dim() != 2 or y.dim() != 2 or x.shape[0] != y.shape[0]:
            raise InputError(f"{side} data must be (samples, features) and (samples, outputs) with equal "
                             f"sample counts, got {tuple(x.shape)} and {tuple(y.shape)}")
    meta: dict[str, Any] = {"source": image, "split_seed": seed, "preprocessing": dict(preprocessing or {})}
    if image_shape is not None:
        meta["image_shape"] = tuple(image_shape)
    return Task(name=task, train=Split(x_train, y_train), val=Split(x_val, y_val), loss="mse",
                loss_scale=loss_scale, metrics=("loss",), meta=meta)
