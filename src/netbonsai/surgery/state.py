"""A layered MLP as plain data (tensors, names, numbers) and back: for checkpoints read with
``torch.load(weights_only=True)`` and for results shipped between processes."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import InputError
from ..gates.convert import Affine
from ..nets.activations import MODULE_TO_NAME, NAME_TO_MODULE
from .mlp import MlpParts, build_mlp, parse_mlp


def _fixed_map(module: nn.Module) -> dict[str, Any]:
    if isinstance(module, nn.Flatten):
        return {"type": "flatten", "start_dim": module.start_dim, "end_dim": module.end_dim}
    if isinstance(module, Affine):
        return {"type": "affine", "scale": module.scale.detach().cpu().clone(), "shift": module.shift.detach().cpu().clone()}
    raise InputError(f"cannot store the fixed map {type(module).__name__}")


def _module_from(item: dict[str, Any]) -> nn.Module:
    if item["type"] == "flatten":
        return nn.Flatten(int(item["start_dim"]), int(item["end_dim"]))
    if item["type"] == "affine":
        return Affine(item["scale"], item["shift"])
    raise InputError(f"unknown fixed map {item['type']!r} in a stored network")


def mlp_to_state(net: nn.Module) -> dict[str, Any]:
    """``net`` (a layered MLP) as tensors and plain values: CPU copies, nothing shared."""
    parts = parse_mlp(net)
    return {
        "prefix": [_fixed_map(m) for m in parts.prefix],
        "suffix": [_fixed_map(m) for m in parts.suffix],
        "activations": [MODULE_TO_NAME[type(a)] for a in parts.activations],
        "weights": [layer.weight.detach().cpu().clone() for layer in parts.linears],
        "biases": [None if layer.bias is None else layer.bias.detach().cpu().clone() for layer in parts.linears],
    }


def mlp_from_state(state: dict[str, Any]) -> nn.Sequential:
    """The network :func:`mlp_to_state` stored (on the CPU, in the stored dtype)."""
    linears = []
    for weight, bias in zip(state["weights"], state["biases"]):
        layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, dtype=weight.dtype)
        with torch.no_grad():
            layer.weight.copy_(weight)
            if bias is not None:
                layer.bias.copy_(bias)
        linears.append(layer)
    activations = [NAME_TO_MODULE[name]() for name in state["activations"]]
    return build_mlp(MlpParts([_module_from(m) for m in state["prefix"]], linears, activations,
                              [_module_from(m) for m in state["suffix"]]))
