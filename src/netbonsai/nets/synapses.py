"""Paper 000's ranking of a DagNet's synapses for removal: normalised magnitudes.

Shared by the grow-and-prune search (``grow``) and loss-aware pruning (``prune``), so it lives
below both.
"""

from __future__ import annotations

import torch

from .dag import DagNet


def removal_scores(net: DagNet) -> torch.Tensor:
    """``(N, N)`` normalised magnitudes |w_ij| / max_k |w_kj| of variant 0; +inf where not live."""
    weight = (net.weight.detach()[0] * net.mask[0]).abs()
    column_max = weight.amax(dim=0, keepdim=True).clamp_min(torch.finfo(weight.dtype).tiny)
    scores = weight / column_max
    return torch.where(net.mask[0], scores, torch.full_like(scores, float("inf")))


def lowest_synapses(net: DagNet, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sources and targets of the ``count`` live synapses with the lowest removal score.

    Ties are broken by node order, so the choice is deterministic.
    """
    scores = removal_scores(net).flatten()
    n_live = int(net.mask[0].sum())
    count = min(count, n_live)
    order = torch.sort(scores, stable=True).indices[:count]
    n = net.n_nodes
    return order // n, order % n
