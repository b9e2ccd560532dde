"""Named activation functions used by DagNet nodes (names are what model files store)."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..errors import InputError

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "identity": lambda t: t,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "softplus": nn.functional.softplus,
    "elu": nn.functional.elu,
}

# torch.nn module classes that map onto the names above (for Sequential conversion).
MODULE_TO_NAME: dict[type, str] = {
    nn.Identity: "identity",
    nn.Tanh: "tanh",
    nn.ReLU: "relu",
    nn.Sigmoid: "sigmoid",
    nn.Softplus: "softplus",
    nn.ELU: "elu",
}

NAME_TO_MODULE: dict[str, Callable[[], nn.Module]] = {name: cls for cls, name in MODULE_TO_NAME.items()}


def check_activation(name: str) -> str:
    """Return ``name`` if it is a known activation, else raise :class:`InputError`."""
    if name not in ACTIVATIONS:
        raise InputError(f"unknown activation {name!r}; choose one of {', '.join(sorted(ACTIVATIONS))}")
    return name


def apply_activation(name: str, tensor: torch.Tensor) -> torch.Tensor:
    """Apply the activation called ``name`` to ``tensor``."""
    return ACTIVATIONS[name](tensor)
