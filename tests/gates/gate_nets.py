"""Small networks the gate tests share: an MLP, a CNN with BatchNorm and pooling (nested
Sequentials), and gated copies with chosen gate values."""

from __future__ import annotations

import torch
from torch import nn

from netbonsai.gates import gate, gate_modules


def mlp(widths=(12, 16, 8, 6, 3), seed: int = 0) -> nn.Sequential:
    """Linear + ReLU layers, a linear output."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def cnn(seed: int = 0) -> nn.Sequential:
    """Conv-BN-ReLU-pool, conv-ReLU, Flatten, Linear-BN-ReLU, Linear, in nested Sequentials."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2)),
        nn.Sequential(nn.Conv2d(6, 5, 3), nn.ReLU(), nn.Flatten()),
        nn.Linear(5 * 2 * 2, 7), nn.BatchNorm1d(7), nn.ReLU(), nn.Dropout(0.1), nn.Linear(7, 3),
    )
    with torch.no_grad():
        for bn in (model[0][1], model[3]):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.3, 0.3)
    return model.eval()


def set_gates(model: nn.Module, values: list[tuple[list[float] | None, float | None]]) -> nn.Module:
    """Set each gate's ``w`` (a list, or None to keep) and ``d`` (or None) in order."""
    with torch.no_grad():
        for g, (w, d) in zip(gate_modules(model), values):
            if w is not None:
                g.w.copy_(torch.tensor(w, dtype=g.w.dtype))
            if d is not None:
                g.d.fill_(d)
    return model


def gated_mlp(widths=(12, 16, 8, 6, 3), seed: int = 0) -> nn.Sequential:
    return gate(mlp(widths, seed))
