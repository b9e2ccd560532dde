"""Task builders beyond the image tasks, and the one way every command names a task.

A task name is ``brightness[:IMAGE]``, ``approx[:IMAGE]`` (IMAGE: a file, or ``skimage:NAME``;
default scikit-image's camera), ``idx:DIR`` (a folder of MNIST-format IDX files, e.g.
``idx:../shared/data/mnist``) or ``sklearn:NAME`` (scikit-learn's bundled data sets, offline:
diabetes, digits, breast_cancer, wine, iris). :func:`parse_task_spec` splits a name;
:func:`task_from_spec` builds the :class:`~netbonsai.data.task.Task`. :func:`idx_task` and
:func:`reber_task` build the MNIST-style and Reber-grammar tasks; the user's own tables (CSV,
NPZ) are :func:`~netbonsai.data.tables.data_task` / :func:`~netbonsai.data.tables.table_task`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import InputError
from .idx import MnistData, load_mnist
from .tables import SKLEARN_DATASETS, sklearn_task
from .task import Split, Task
from .tasks import TASKS, load_task

if TYPE_CHECKING:
    from .reber import ReberData

SPEC_KINDS = (*TASKS, "idx", "sklearn")
SPEC_HELP = "brightness[:IMAGE], approx[:IMAGE], idx:DIR or sklearn:NAME"


@dataclass(frozen=True)
class TaskSpec:
    """A parsed task name: ``kind`` (brightness, approx, idx, sklearn) and its argument (image,
    folder or data set name)."""

    kind: str
    argument: str | None = None

    def __str__(self) -> str:
        return self.kind if self.argument is None else f"{self.kind}:{self.argument}"

    @property
    def is_image(self) -> bool:
        return self.kind in TASKS


def parse_task_spec(text: str, image: str | None = None) -> TaskSpec:
    """Read a task name. ``image`` (the older ``--image`` option) may give an image task's image,
    but not together with one in the name."""
    text = str(text).strip()
    kind, sep, argument = text.partition(":")
    kind = kind.strip().lower()
    if kind not in SPEC_KINDS:
        raise InputError(f"unknown task {text!r}; name it {SPEC_HELP}")
    argument = argument.strip() if sep else None
    if sep and not argument:
        what = {"idx": "folder", "sklearn": "data set"}.get(kind, "image")
        raise InputError(f"task {text!r} names no {what} after ':'")
    if kind == "sklearn":
        if argument is None:
            raise InputError(f"the sklearn task needs a data set: sklearn:NAME "
                             f"({', '.join(SKLEARN_DATASETS)})")
        if image is not None:
            raise InputError("--image applies to the image tasks (brightness, approx), not to sklearn:NAME")
        if argument.lower() not in SKLEARN_DATASETS:
            raise InputError(f"unknown scikit-learn data set {argument!r}; choose one of "
                             f"{', '.join(SKLEARN_DATASETS)}")
        return TaskSpec(kind, argument.lower())
    if kind == "idx":
        if argument is None:
            raise InputError("the idx task needs a folder: idx:DIR (a folder of MNIST-format IDX files)")
        if image is not None:
            raise InputError("--image applies to the image tasks (brightness, approx), not to idx:DIR")
        return TaskSpec(kind, argument)
    if image is not None and argument is not None:
        raise InputError(f"give the image once: either {kind}:{argument} or --image {image}")
    return TaskSpec(kind, argument if argument is not None else image)


def idx_task(
    root: str | Path | None, val_size: int = 5000, seed: int = 0, max_train: int | None = None,
    max_test: int | None = None, data: MnistData | None = None,
) -> Task:
    """An MNIST-style classification task: ``val_size`` training images held out (seeded) for
    decisions, the rest (or a seeded ``max_train`` of them) for training, the folder's test
    images (the first ``max_test``) as the test split. Images are float32 in [0, 1], flattened."""
    data = data if data is not None else load_mnist(root)
    n = data.x_train.shape[0]
    if not 0 <= val_size < n:
        raise InputError(f"validation size must be in [0, {n}), got {val_size}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val, train = order[:val_size].sort().values, order[val_size:]
    if max_train is not None:
        train = train[:max_train]
    train = train.sort().values
    test = Split(data.x_test[:max_test], data.y_test[:max_test])
    return Task(
        name="idx", train=Split(data.x_train[train], data.y_train[train]),
        val=Split(data.x_train[val], data.y_train[val]), test=test, loss="cross_entropy", loss_scale=1.0,
        metrics=("loss", "accuracy", "errors"),
        meta={"source": None if root is None else str(root), "split_seed": seed, "n_classes": data.n_classes,
              "preprocessing": {"inputs": "pixels / 255, flattened row by row", "image_shape": _image_shape(data)}},
    )


def _image_shape(data: MnistData) -> list[int] | None:
    side = int(round(data.n_features ** 0.5))
    return [side, side] if side * side == data.n_features else None


def task_from_spec(
    spec: str | TaskSpec, *, val_fraction: float = 0.2, seed: int = 0, max_train: int | None = None,
    max_val: int | None = None, val_size: int = 5000, test_fraction: float = 0.2,
) -> Task:
    """Build the task a name stands for (image tasks: ``val_fraction``, ``max_train``, ``max_val``;
    idx: ``val_size`` held-out training images, ``max_train``; sklearn: ``val_fraction`` and
    ``test_fraction`` of the rows held out, seeded)."""
    spec = parse_task_spec(spec) if isinstance(spec, str) else spec
    if spec.kind == "sklearn":
        return sklearn_task(spec.argument, val_fraction=val_fraction, test_fraction=test_fraction,
                            seed=seed)
    if spec.is_image:
        return load_task(spec.kind, spec.argument, val_fraction=val_fraction, seed=seed, max_train=max_train,
                         max_val=max_val)
    return idx_task(spec.argument, val_size=val_size, seed=seed, max_train=max_train)


def reber_task(val_fraction: float = 0.1, data: "ReberData | None" = None, **generation: Any) -> Task:
    """The Reber-grammar sequence classification task: splits of ``Split((codes, lengths), labels)``.

    ``generation`` goes to :func:`~netbonsai.data.reber.make_reber` (n_strings, seed, ...), or
    ``data`` is an already generated set. A seeded ``val_fraction`` of its training strings is
    held out for decisions; its test strings are the test split.
    """
    from .reber import make_reber

    data = data if data is not None else make_reber(**generation)
    if not 0 < val_fraction < 1:
        raise InputError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    n = data.n_train
    n_val = max(1, int(round(n * val_fraction)))
    if n_val >= n:
        raise InputError(f"{n} training strings are too few to hold out a validation split")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(data.seed + 7))
    val, train = order[:n_val].sort().values, order[n_val:].sort().values

    def split(codes: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor, rows: torch.Tensor | None = None) -> Split:
        if rows is None:
            return Split((codes, lengths), labels)
        return Split((codes[rows], lengths[rows]), labels[rows])

    source = (data.train_codes, data.train_lengths, data.train_labels)
    return Task(
        name="reber", train=split(*source, train), val=split(*source, val),
        test=split(data.test_codes, data.test_lengths, data.test_labels), loss="cross_entropy",
        metrics=("loss", "accuracy"),
        meta={"source": "Reber grammar (generated)", "split_seed": data.seed, "n_classes": 2,
              "preprocessing": {"inputs": "ASCII codes, 0-padded", "generation": data.describe()}},
    )
