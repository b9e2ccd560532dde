"""Train networks of different structure as one population (one batched computation).

Networks with different node counts are padded with isolated hidden nodes to a common size, so
their weights, masks and biases stack into one DagNet population; K independent trainings then
run as one. Padding nodes have no synapses, so they never influence an output and every
variant trains exactly as it would alone.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..nets.dag import DagNet
from .fit import Budget, FitResult, TrainerConfig, fit
from ..data.task import Split


def _can_stack(nets: Sequence[DagNet]) -> bool:
    first = nets[0]
    hidden_acts = {a for net in nets for a in net.activations[net.n_in : net.n_nodes - net.n_out]}
    same_io = all(
        (n.n_in, n.n_out, n.activations[: n.n_in], n.activations[n.n_nodes - n.n_out :])
        == (first.n_in, first.n_out, first.activations[: first.n_in], first.activations[first.n_nodes - first.n_out :])
        for n in nets
    )
    same_norm = all(
        all(torch.equal(getattr(n, b), getattr(first, b)) for b in ("in_shift", "in_scale", "out_shift", "out_scale"))
        for n in nets
    )
    return same_io and same_norm and len(hidden_acts) <= 1 and all(n.population_size == 1 for n in nets)


def _node_map(net: DagNet, n_nodes: int) -> torch.Tensor:
    """Where each node of ``net`` sits in a padded network of ``n_nodes`` (padding before outputs)."""
    body = list(range(net.n_nodes - net.n_out))
    outputs = list(range(n_nodes - net.n_out, n_nodes))
    return torch.tensor(body + outputs, dtype=torch.long)


def stack_padded(nets: Sequence[DagNet]) -> DagNet:
    """One population holding every network, padded with isolated hidden nodes to a common size."""
    n_nodes = max(net.n_nodes for net in nets)
    first = nets[0]
    hidden_act = next(
        (a for net in nets for a in net.activations[net.n_in : net.n_nodes - net.n_out]), "identity"
    )
    device = first.weight.device
    weight = torch.zeros(len(nets), n_nodes, n_nodes, dtype=first.weight.dtype, device=device)
    mask = torch.zeros(len(nets), n_nodes, n_nodes, dtype=torch.bool, device=device)
    bias = torch.zeros(len(nets), n_nodes, dtype=first.weight.dtype, device=device)
    for k, net in enumerate(nets):
        index = _node_map(net, n_nodes).to(device)
        weight[k, index[:, None], index[None, :]] = net.weight.detach()[0]
        mask[k, index[:, None], index[None, :]] = net.mask[0]
        bias[k, index] = net.bias.detach()[0]
    activations = (
        list(first.activations[: first.n_in])
        + [hidden_act] * (n_nodes - first.n_in - first.n_out)
        + list(first.activations[first.n_nodes - first.n_out :])
    )
    stacked = DagNet(first.n_in, first.n_out, weight, mask, bias, activations).to(device)
    stacked.set_normalization(first.in_shift, first.in_scale, first.out_shift, first.out_scale)
    return stacked


def unstack_padded(stacked: DagNet, originals: Sequence[DagNet]) -> list[DagNet]:
    """The trained variants of :func:`stack_padded`, each back in its original node layout."""
    result = []
    for k, net in enumerate(originals):
        index = _node_map(net, stacked.n_nodes).to(stacked.weight.device)
        trained = net._rebuild(
            stacked.weight.detach()[k][index][:, index].unsqueeze(0),
            stacked.mask[k][index][:, index].unsqueeze(0),
            stacked.bias.detach()[k][index].unsqueeze(0),
        )
        trained.info = dict(net.info)
        result.append(trained)
    return result


def fit_together(
    nets: Sequence[DagNet],
    x: torch.Tensor,
    y: torch.Tensor,
    budget: Budget,
    trainer: TrainerConfig = TrainerConfig(),
    seed: int = 0,
) -> tuple[list[DagNet], FitResult]:
    """Train copies of ``nets`` (population 1 each) together; returns the trained copies.

    Falls back to one training per network when they cannot share a population (different
    hidden activations or normalization); the result is the same either way.
    """
    if _can_stack(nets):
        stacked = stack_padded(nets)
        result = fit(stacked, Split(x, y), budget, trainer, seed=seed)
        return unstack_padded(stacked, nets), result
    trained, losses, epochs, seconds = [], [], 0, 0.0
    for net in nets:
        copy = net.clone()
        res = fit(copy, Split(x, y), budget, trainer, seed=seed)
        trained.append(copy)
        losses.append(res.loss)
        epochs, seconds = max(epochs, res.epochs), seconds + res.seconds
    return trained, FitResult(torch.cat(losses), epochs, seconds)
