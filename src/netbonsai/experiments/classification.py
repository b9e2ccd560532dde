"""Classifier plumbing shared by the MNIST experiments: architectures, Adam training, test errors.

The experiments decide on held-out *training* data (the validation split made here) and only
report test figures, so no choice is tuned on the test set.
"""

from __future__ import annotations

import re
from typing import Sequence

import torch
from torch import nn

from ..data.checks import require_finite
from ..data.task import Split, Task
from ..errors import InputError
from ..train import Budget, TrainerConfig, fit
from ..train.losses import population_outputs

ACTIVATION_MODULES = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


def parse_arch(text: str | Sequence[int]) -> list[int]:
    """``"784-300-100-10"`` -> ``[784, 300, 100, 10]`` (at least an input and an output width)."""
    if not isinstance(text, str):
        widths = [int(w) for w in text]
    else:
        if not re.fullmatch(r"\s*\d+(\s*-\s*\d+)+\s*", text):
            raise InputError(f"--arch must look like 784-300-100-10 (widths joined by '-'), got {text!r}")
        widths = [int(w) for w in text.split("-")]
    if len(widths) < 2 or any(w < 1 for w in widths):
        raise InputError(f"an architecture needs at least two positive widths, got {widths}")
    return widths


def build_mlp(widths: Sequence[int], activations: str | Sequence[str] = "relu", seed: int = 0) -> nn.Sequential:
    """A dense MLP ``widths[0] -> ... -> widths[-1]`` with PyTorch's default init, seeded.

    ``activations`` is one name for every hidden layer or one name per hidden layer; the output
    layer is linear (the softmax lives in the cross-entropy loss).
    """
    hidden = len(widths) - 2
    names = [activations] * hidden if isinstance(activations, str) else list(activations)
    if len(names) != hidden:
        raise InputError(f"{hidden} hidden layers need {hidden} activations, got {len(names)}")
    for name in names:
        if name not in ACTIVATION_MODULES:
            raise InputError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATION_MODULES)}")
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(nn.Linear(a, b))
            if i < hidden:
                layers.append(ACTIVATION_MODULES[names[i]]())
        return nn.Sequential(*layers)
    finally:
        torch.random.set_rng_state(state)


def ClassificationData(  # noqa: N802 - the name older code and tests construct classification splits with
    x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor,
    x_test: torch.Tensor, y_test: torch.Tensor,
) -> Task:
    """A classification :class:`~netbonsai.data.task.Task` (train, validation, test) from tensors."""
    for side, x, y in (("train", x_train, y_train), ("val", x_val, y_val), ("test", x_test, y_test)):
        if x.shape[0] != y.shape[0]:
            raise InputError(f"{side} split: {x.shape[0]} images but {y.shape[0]} labels")
        require_finite(f"{side} images", x)
    return Task(name="classification", train=Split(x_train, y_train), val=Split(x_val, y_val),
                test=Split(x_test, y_test), loss="cross_entropy", metrics=("loss", "accuracy", "errors"))


def adam_trainer(lr: float = 1e-3, batch_size: int = 64, weight_decay: float = 0.0) -> TrainerConfig:
    """Minibatch Adam on softmax cross-entropy (the MNIST experiments' trainer), optional L2."""
    return TrainerConfig(method="adam", loss="cross_entropy", lr=lr, batch_size=batch_size, weight_decay=weight_decay)


def train_classifier(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, trainer: TrainerConfig, seed: int = 0,
    snapshot=None, resume_from: dict | None = None,
) -> float:
    """Train in place for ``epochs`` (masked weights stay zero); returns the final training loss.
    ``snapshot``/``resume_from``: as :func:`netbonsai.train.fit` (checkpoint a long training)."""
    if epochs <= 0:
        return float("nan")
    result = fit(model, Split(x, y), Budget(epochs=epochs), trainer, seed=seed, snapshot=snapshot,
                 resume_from=resume_from)
    return float(result.loss[0])


@torch.no_grad()
def classification_errors(model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int = 10000) -> tuple[int, float]:
    """Misclassified samples and mean cross-entropy of (variant 0 of) ``model`` on ``(x, y)``."""
    wrong, total = 0, 0.0
    for start in range(0, x.shape[0], chunk):
        logits = population_outputs(model, x[start : start + chunk])[0]
        target = y[start : start + chunk]
        wrong += int((logits.argmax(dim=1) != target).sum())
        total += float(nn.functional.cross_entropy(logits, target, reduction="sum"))
    return wrong, total / max(1, x.shape[0])
