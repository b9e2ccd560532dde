"""Populations of MaskedRecurrent assembled from members of other populations.

:func:`stack_members` puts every member of several models into one population (for example K=1
copies of a network pruned in different ways, so that they retrain together as one computation),
and ``MaskedRecurrent.select`` takes members out of one; both copy each member's real weights,
masks and biases with :func:`_assemble`, which pads only as much as the chosen members need.
The new model is a ``MaskedRecurrent``, whose module imports this one, so the class is imported
inside the functions (no import circle); ``netbonsai.nets.recurrent`` re-exports
``stack_members``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch

from ..errors import InputError

if TYPE_CHECKING:
    from .recurrent import MaskedRecurrent


def _assemble(members: Sequence[tuple[MaskedRecurrent, int]]) -> MaskedRecurrent:
    """A new population of the given ``(model, member index)`` pairs, in order, padded only as
    much as these members need; weights, masks, dtype and device copied."""
    from .recurrent import MaskedRecurrent

    first = members[0][0]
    for model, _ in members:
        if (model.cell, model.num_classes, model.vocab_size, model.embedding_dim) != (
            first.cell, first.num_classes, first.vocab_size, first.embedding_dim
        ):
            raise InputError("members to stack must share cell, classes, vocabulary and embedding size")
    ref = first.weight_out
    new = MaskedRecurrent(
        [model.structures[i] for model, i in members],
        first.cell,
        first.num_classes,
        first.vocab_size,
        first.embedding_dim,
        seed=[model.member_seeds[i] for model, i in members],
    ).to(device=ref.device, dtype=ref.dtype)
    with torch.no_grad():
        for j, (model, i) in enumerate(members):
            structure = model.structures[i]
            src_layers, src_out = model._member_layout(structure)
            dst_layers, dst_out = new._member_layout(structure)
            if model.vocab_size is not None:
                new.embedding[j] = model.embedding[i]
            for l, ((sr, sc, su), (dr, dc, du)) in enumerate(zip(src_layers, dst_layers)):
                for kind, cols_src, cols_dst in (("ih", sc, dc), ("hh", su, du)):
                    for prefix in ("weight", "mask"):
                        dst = new._p(f"{prefix}_{kind}", l)
                        dst[j, dr[:, None], cols_dst[None, :]] = model._p(f"{prefix}_{kind}", l)[
                            i, sr[:, None], cols_src[None, :]
                        ]
                    new._p(f"bias_{kind}", l)[j, dr] = model._p(f"bias_{kind}", l)[i, sr]
            new.weight_out[j, :, dst_out] = model.weight_out[i, :, src_out]
            new.mask_out[j, :, dst_out] = model.mask_out[i, :, src_out]
            new.bias_out[j] = model.bias_out[i]
    new.train(first.training)
    return new


def stack_members(models: Sequence[MaskedRecurrent]) -> MaskedRecurrent:
    """One population holding every member of ``models`` in order: e.g. K=1 copies of a network
    pruned in different ways, so that they retrain together as one computation."""
    from .recurrent import MaskedRecurrent

    if not models or not all(isinstance(m, MaskedRecurrent) for m in models):
        raise InputError("stack_members needs a non-empty sequence of MaskedRecurrent models")
    return _assemble([(model, i) for model in models for i in range(model.population_size)])
