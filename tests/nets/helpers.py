"""Small networks shared by the nets tests."""

from __future__ import annotations

import torch

from netbonsai.nets import DagNet

# Node indices of DagNet.mlp([4, 5, 5, 1]): inputs 0-3, layer 1 4-8, layer 2 9-13, output 14.
SIZES = [4, 5, 5, 1]


def mlp(population: int = 1, seed: int = 0, activation: str = "tanh") -> DagNet:
    """A dense 4-5-5-1 MLP with a fixed seed."""
    return DagNet.mlp(SIZES, activation, population=population, generator=torch.Generator().manual_seed(seed))


def remove(net: DagNet, pairs: list[tuple[int, int]], variant: int | None = None) -> DagNet:
    """Remove synapses ``(source, target)`` from every variant (or just ``variant``), in place."""
    for source, target in pairs:
        if variant is None:
            k = net.population_size
            net.remove_synapses_(torch.full((k,), source), torch.full((k,), target))
        else:
            with torch.no_grad():
                net.mask[variant, source, target] = False
                net.weight[variant, source, target] = 0.0
    return net


def normalize(net: DagNet, seed: int = 1) -> DagNet:
    """Set non-trivial input/output normalization (in place)."""
    g = torch.Generator().manual_seed(seed)
    net.set_normalization(
        torch.randn(net.n_in, generator=g),
        torch.rand(net.n_in, generator=g) * 2 + 0.3,
        torch.randn(net.n_out, generator=g),
        torch.rand(net.n_out, generator=g) * 3 + 0.2,
    )
    return net


def pruned(seed: int = 0) -> DagNet:
    """A 4-5-5-1 MLP with normalization, an input-less neuron (4), a neuron with no outputs (9),
    a few removed synapses and a mix of activations."""
    net = mlp(seed=seed)
    remove(net, [(i, 4) for i in range(4)] + [(9, 14)] + [(1, 6), (7, 12), (5, 10)])
    with torch.no_grad():
        net.bias[0, 4] = 0.7  # a constant neuron that still feeds layer 2
    activations = list(net.activations)
    activations[5] = "relu"
    activations[11] = "sigmoid"
    activations[12] = "softplus"
    activations[13] = "elu"
    net = DagNet(net.n_in, net.n_out, net.weight.detach(), net.mask, net.bias.detach(), activations)
    return normalize(net)


def inputs(n: int = 32, n_in: int = 4, seed: int = 2) -> torch.Tensor:
    return torch.randn(n, n_in, generator=torch.Generator().manual_seed(seed))
