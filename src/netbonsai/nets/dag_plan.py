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


def _level_rows(plan: ForwardPlan, tensor: torch.Tensor, offset: int) -> list[torch.Tensor]:
    """``tensor`` cut along dim 1 into one block per level of ``plan`` (row ``q`` is plan position
    ``offset + q``), by one ``split``: its backward is a single concatenation, where a slice per
    level would each fill a zero gradient the size of the whole tensor and then sum them."""
    first, last = plan.levels[0][0], plan.levels[-1][1]  # the levels tile [first, last)
    sizes = [end - start for start, end, _ in plan.levels]
    sizes = [first - offset] + sizes + [tensor.shape[1] - (last - offset)]
    return list(tensor.split(sizes, dim=1)[1:-1])


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

    The weight blocks are cut out with ``split`` (rows per level, then each row block's columns
    per earlier level), never by slicing: the values are the same views, but the backward of a
    slice fills a zero gradient as large as all of ``weight_t`` per block and sums them (for a
    padded population of sparse networks, most of the training time), while a split's backward
    is one concatenation.
    """
    if not plan.levels:
        return
    k, batch = blocks[0].shape[0], blocks[0].shape[-1]
    n_cols = weight_t.shape[2]
    weight_rows = _level_rows(plan, weight_t, offset)
    bias_rows = _level_rows(plan, bias, offset)
    probe_rows = None if probe is None else _level_rows(plan, probe, 0)
    for level, ((start, end, groups), sources) in enumerate(zip(plan.levels, plan.sources)):
        pre = bias_rows[level][:, :, None]
        if not sources:  # nodes without live inputs: constant at their bias
            pre = pre.expand(k, end - start, batch).contiguous()
        else:
            # the bounds tile the columns from 0: split up to the last source level, then the rest
            last = sources[-1]
            sizes = [e - s for s, e in plan.bounds[: last + 1]] + [n_cols - plan.bounds[last][1]]
            pieces = weight_rows[level].split(sizes, dim=2)
            for index in sources:
                pre = torch.baddbmm(pre, pieces[index], blocks[index])
        if probe_rows is not None:
            pre = pre + probe_rows[level]
        blocks.append(activate_level(groups, pre, start))


def activate_level(groups: tuple[tuple[str, int, int], ...], pre: torch.Tensor, start: int) -> torch.Tensor:
    """Apply a level's activations to its pre-activations ``(K, n_level, B)``; ``groups`` are
    ``(activation, start, end)`` runs in plan positions, the level beginning at ``start`` (they
    tile the level, so ``pre`` is cut by one ``split``, whose backward is one concatenation)."""
    if len(groups) == 1:
        return apply_activation(groups[0][0], pre)
    parts = pre.split([e - s for _, s, e in groups], dim=1)
    return torch.cat([apply_activation(a, part) for (a, _, _), part in zip(groups, parts)], dim=1)


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
