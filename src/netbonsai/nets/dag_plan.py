"""The evaluation plan of a DagNet: node levels, their order, and the level-by-level forward loop.

A DagNet is evaluated level by level (a node's level is 1 + the highest level of its live sources;
inputs are level 0). This module computes the levels (:func:`_levels`), turns them into a
:class:`ForwardPlan` (nodes sorted by level and activation, the block bounds, and which earlier
levels feed each level) with :func:`_make_plan`, and runs a plan (:func:`run_levels`,
:func:`activate_level`). It holds only array code and knows nothing of ``DagNet`` itself, so
``DagNet``'s forward pass and the pruning code that runs parts of a plan itself share it;
``netbonsai.nets.dag`` re-exports every name, the import path callers use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .activations import apply_activation


@dataclass(frozen=True)
class ForwardPlan:
    """Precomputed order of evaluation for one mask pattern (the union over the population)."""

    perm: torch.Tensor  # node indices sorted by (level, activation, index)
    identity: bool  # perm is arange(N): no gather needed
    # per level >= 1: (start, end, ((activation, start, end), ...)) in permuted positions
    levels: tuple[tuple[int, int, tuple[tuple[str, int, int], ...]], ...]
    out_pos: torch.Tensor  # permuted positions of the output nodes, in output order
    out_slice: tuple[int, int] | None  # the same as a contiguous range, when it is one
    bounds: tuple[tuple[int, int], ...]  # (start, end) of level 0 (inputs) and of every later level
    # per level >= 1: indices into ``bounds`` of the earlier levels with a live synapse into it
    # (a dense layered MLP reads only the level just before; the other blocks are all zero)
    sources: tuple[tuple[int, ...], ...]


def _levels(union: np.ndarray, n_in: int) -> np.ndarray:
    """Level of every node for a boolean adjacency (row = source) in topological order."""
    n = union.shape[0]
    level = np.zeros(n, dtype=np.int64)
    level[n_in:] = 1
    has_input = union.any(axis=0)
    for _ in range(n):
        candidate = np.where(union, level[:, None] + 1, 0).max(axis=0)
        new = np.where(has_input, np.maximum(candidate, 1), level)
        new[:n_in] = 0
        if np.array_equal(new, level):
            break
        level = new
    return level


def run_levels(
    plan: ForwardPlan,
    weight_t: torch.Tensor,
    bias: torch.Tensor,
    blocks: list[torch.Tensor],
    probe: torch.Tensor | None = None,
    offset: int = 0,
) -> None:
    """Evaluate every level of ``plan`` after the input block ``blocks[0]``, appending one
    ``(K, n_level, B)`` block per level.

    ``weight_t[k, q, p]`` is the weight of the synapse from plan position ``p`` to position
    ``offset + q`` and ``bias[k, q]`` the bias at ``offset + q`` (``offset`` lets a caller hold
    only the non-input rows). Earlier levels with no live synapse into a level are skipped:
    their products are exactly zero, and in a layered MLP they are most of the matmuls.
    """
    k, batch = blocks[0].shape[0], blocks[0].shape[-1]
    for (start, end, groups), sources in zip(plan.levels, plan.sources):
        rows = slice(start - offset, end - offset)
        pre = bias[:, rows, None]
        if not sources:  # nodes without live inputs: constant at their bias
            pre = pre.expand(k, end - start, batch).contiguous()
        for index in sources:
            src_start, src_end = plan.bounds[index]
            pre = torch.baddbmm(pre, weight_t[:, rows, src_start:src_end], blocks[index])
        if probe is not None:
            pre = pre + probe[:, start:end]
        blocks.append(activate_level(groups, pre, start))


def activate_level(groups: tuple[tuple[str, int, int], ...], pre: torch.Tensor, start: int) -> torch.Tensor:
    """Apply a level's activations to its pre-activations ``(K, n_level, B)``; ``groups`` are
    ``(activation, start, end)`` runs in plan positions, the level beginning at ``start``."""
    if len(groups) == 1:
        return apply_activation(groups[0][0], pre)
    return torch.cat([apply_activation(a, pre[:, s - start : e - start]) for a, s, e in groups], dim=1)


def _make_plan(levels: np.ndarray, union: np.ndarray, activations: Sequence[str], n_out: int, device) -> ForwardPlan:
    n = len(levels)
    act_rank = {a: i for i, a in enumerate(sorted(set(activations)))}
    order = sorted(range(n), key=lambda i: (levels[i], act_rank[activations[i]], i))
    perm = np.asarray(order, dtype=np.int64)
    sorted_levels = levels[perm]
    blocks = []
    for lvl in range(1, int(sorted_levels.max(initial=0)) + 1):
        positions = np.nonzero(sorted_levels == lvl)[0]
        if len(positions) == 0:
            continue
        start, end = int(positions[0]), int(positions[-1]) + 1
        groups = []
        for pos in range(start, end):
            act = activations[perm[pos]]
            if groups and groups[-1][0] == act:
                groups[-1][2] = pos + 1
            else:
                groups.append([act, pos, pos + 1])
        blocks.append((start, end, tuple((a, s, e) for a, s, e in groups)))
    inverse = np.empty(n, dtype=np.int64)
    inverse[perm] = np.arange(n)
    out_pos = inverse[n - n_out :]
    bounds = ((0, int((levels == 0).sum())),) + tuple((s, e) for s, e, _ in blocks)
    live = union[perm][:, perm]  # live[p, q]: some variant has a synapse from position p to q
    sources = tuple(
        tuple(i for i, (src_start, src_end) in enumerate(bounds[: level + 1]) if live[src_start:src_end, start:end].any())
        for level, (start, end, _) in enumerate(blocks)
    )
    return ForwardPlan(
        perm=torch.as_tensor(perm, device=device),
        identity=bool(np.array_equal(perm, np.arange(n))),
        levels=tuple(blocks),
        out_pos=torch.as_tensor(out_pos, device=device),
        bounds=bounds,
        sources=sources,
        out_slice=(int(out_pos[0]), int(out_pos[-1]) + 1) if np.array_equal(out_pos, np.arange(out_pos[0], out_pos[0] + n_out)) else None,
    )
