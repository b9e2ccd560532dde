"""Prunable groups: the layers a pruning criterion ranks, for masked modules and for DagNet.

A *group* is one layer's weights: a weight parameter, its boolean keep-mask (same shape) and,
where the parameter holds several layers, a ``region`` saying which entries belong to the group.

- A model with masked layers (see :func:`netbonsai.nets.masked.make_prunable`): one group per
  masked layer, named after the module.
- A :class:`~netbonsai.nets.recurrent.MaskedRecurrent` (population size 1): one group per layer
  and kind, ``layer L i2h`` (input and skip connections into layer L) and ``layer L h2h`` (its
  recurrent weights), as paper 001 prunes them; ``parts`` picks ``i2h``, ``h2h``, ``both`` (the
  default) or ``all`` (also the ``output`` head). The embedding is never pruned.
- A :class:`~netbonsai.nets.dag.DagNet` (population size 1): it has no layers, so its synapses
  are grouped by the *level of their target node* (``net.levels()``: inputs are level 0, a node
  is one level above its deepest live source). For a layered MLP this is exactly one group per
  ``nn.Linear``; for a general DAG a skip connection belongs to the layer it feeds. Levels are
  recomputed from the live synapses on every call, so a node can change group as it is pruned.

Removing a weight sets its mask entry to False and its weight to 0; nothing here revives one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import InputError
from ..nets.dag import DagNet
from ..nets.masked import count_weights, mask_applier, masked_layers, num_live_params
from ..nets.recurrent import MaskedRecurrent

# What ``parts`` may name, and the MaskedRecurrent weight kinds each one selects (None = "both").
PARTS = {"both": ("i2h", "h2h"), "i2h": ("i2h",), "h2h": ("h2h",), "all": ("i2h", "h2h", "out")}


@dataclass(frozen=True)
class PrunableGroup:
    """One layer's weights as pruning sees them.

    ``weight`` and ``mask`` are the model's own tensors (pruning writes through them); ``param``
    is the weight's name in ``model.named_parameters()``; ``region`` (bool, same shape) selects
    the entries of a parameter shared by several groups, None meaning all of them.
    """

    name: str
    param: str
    weight: torch.Tensor
    mask: torch.Tensor
    region: torch.Tensor | None = None

    def live(self) -> torch.Tensor:
        """Bool tensor shaped like ``weight``: the group's live (prunable) entries."""
        return self.mask if self.region is None else self.mask & self.region

    def positions(self) -> torch.Tensor:
        """Flat indices (into ``weight.reshape(-1)``) of the group's live weights, ascending."""
        return torch.nonzero(self.live().reshape(-1)).squeeze(1)


def check_parts(model: nn.Module, parts: str | None) -> tuple[str, ...] | None:
    """The MaskedRecurrent weight kinds ``parts`` selects (None for another model, where only
    ``parts=None`` or ``"all"``, meaning every group, is accepted)."""
    if parts is not None and parts not in PARTS:
        raise InputError(f"unknown weight part {parts!r}; choose one of {', '.join(PARTS)}")
    if isinstance(model, MaskedRecurrent):
        return PARTS[parts or "both"]
    if parts not in (None, "all"):
        raise InputError(
            f"parts={parts!r} selects recurrent i2h/h2h weights, which {type(model).__name__} does not have "
            "(only a MaskedRecurrent does)"
        )
    return None


def prunable_groups(model: nn.Module, parts: str | None = None) -> list[PrunableGroup]:
    """The groups of ``model``: one per masked layer, one per target level of a DagNet, or one
    per layer and weight kind of a MaskedRecurrent (``parts``: see :data:`PARTS`)."""
    kinds = check_parts(model, parts)
    if isinstance(model, MaskedRecurrent):
        if model.population_size != 1:
            raise InputError(
                f"pruning needs a MaskedRecurrent with population size 1, got {model.population_size}; "
                "take one member with model.select(k)"
            )
        groups = []
        for name, kind, weight, mask in model.masked_weights():
            if kind in kinds:
                label = "output" if kind == "out" else f"layer {name.rsplit('_l', 1)[1]} {kind}"
                groups.append(PrunableGroup(label, name, weight, mask))
        return groups
    if isinstance(model, DagNet):
        if model.population_size != 1:
            raise InputError(
                f"pruning needs a DagNet with population size 1, got {model.population_size}; "
                "take one variant with net.select(k)"
            )
        levels = torch.as_tensor(model.levels(), device=model.mask.device)
        n = model.n_nodes
        upper = torch.ones(n, n, dtype=torch.bool, device=model.mask.device).triu(1)
        groups = []
        for level in torch.unique(levels[levels > 0]).tolist():
            region = (upper & (levels == level)[None, :]).unsqueeze(0)
            groups.append(PrunableGroup(f"level {level}", "weight", model.weight, model.mask, region))
        return groups
    layers = masked_layers(model)
    if not layers:
        raise InputError(
            f"{type(model).__name__} has no prunable layers: pass a DagNet or a model with masked "
            "layers (netbonsai.nets.masked.make_prunable(model))"
        )
    return [
        PrunableGroup(name or "(model)", f"{name}.weight" if name else "weight", layer.weight, layer.mask)
        for name, layer in layers
    ]


def live_weights(model: nn.Module, parts: str | None = None) -> int:
    """Number of live prunable weights (masked layers' weights, a DagNet's live synapses, or a
    MaskedRecurrent's weights of the kinds ``parts`` selects)."""
    kinds = check_parts(model, parts)
    if isinstance(model, MaskedRecurrent):
        return int(model.live_weights(kinds).sum())
    if isinstance(model, DagNet):
        return int(model.mask[0].sum()) if model.population_size == 1 else int(model.mask.sum())
    return count_weights(model)[0]


def total_weights(model: nn.Module, parts: str | None = None) -> int:
    """The dense size that sparsity is relative to: all weights of the masked layers, or the
    weights of the kinds ``parts`` selects that a MaskedRecurrent's structures have unpruned.
    A DagNet has no dense size: its live synapses now."""
    kinds = check_parts(model, parts)
    if isinstance(model, MaskedRecurrent):
        return int(model.dense_weights(kinds).sum())
    if isinstance(model, DagNet):
        return live_weights(model)
    return count_weights(model)[1]


def live_params(model: nn.Module) -> int:
    """The model's complexity: a DagNet's compacted parameter count (``num_params``), or live
    masked weights plus every other parameter of a module."""
    if isinstance(model, DagNet):
        return model.num_params()
    return num_live_params(model)


@torch.no_grad()
def remove_positions_(
    model: nn.Module, groups: list[PrunableGroup], group: torch.Tensor, position: torch.Tensor
) -> int:
    """Remove weight ``position[i]`` of group ``group[i]`` for every i (mask False, weight 0).

    Every entry must be live; returns how many were removed.
    """
    removed = 0
    for g in torch.unique(group).tolist():
        target = groups[g]
        index = torch.unravel_index(position[group == g], tuple(target.mask.shape))
        if not bool(target.live()[index].all()):
            raise InputError(f"cannot remove weights of {target.name} that are not live")
        target.mask[index] = False
        target.weight[index] = 0.0
        removed += index[0].numel()
    apply = mask_applier(model)
    if apply is not None:
        apply()
    return removed
