"""Whole-block edits of residual networks (paper 004): pruning blocks and growing new ones.

Every edit returns a deep copy (the input model is never modified):

- :func:`remove_blocks`: physically delete residual blocks, so the copy's parameter count is
  what it stores (an ONNX export holds only the kept weights);
- :func:`new_block_like`: a fresh copy of a block whose last normalisation (or affine) layer is
  zero, so that ``x + F(x) = x``: AutoGrow's function-preserving new block;
- :func:`insert_block`: such a block inserted into one stage.

A *stage* is a container of blocks (see :func:`stage_containers`); a block's *position* counts
only the stage's removable blocks (:func:`~netbonsai.residual.blocks.find_blocks`), never a
downsampling block, which keeps its place at the head of the stage.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from numbers import Integral
from typing import Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from ..errors import InputError
from .blocks import BlockRef, ResidualBlock, ResidualCNN, ResidualMLP, conv_body, find_blocks, mlp_body

INITS = ("zero", "random")
_NORMS = (_BatchNorm, nn.GroupNorm, nn.LayerNorm)


def count_params(model: nn.Module) -> int:
    """Number of stored parameter values (a shared parameter counts once)."""
    return sum(p.numel() for p in model.parameters())


def stage_containers(model: nn.Module) -> list[nn.Module]:
    """The model's stages, in order: ``model.stages`` (our ResidualMLP and ResidualCNN), else
    ``model.layer1, layer2, ...`` (torchvision's ResNet), else the distinct parents of
    :func:`find_blocks` in order of first appearance. Only the first two can list a stage that
    has no removable block."""
    stages = getattr(model, "stages", None)
    if isinstance(stages, nn.ModuleList):
        return list(stages)
    layers = []
    while isinstance(getattr(model, f"layer{len(layers) + 1}", None), nn.Sequential):
        layers.append(getattr(model, f"layer{len(layers) + 1}"))
    if layers:
        return layers
    parents: list[nn.Module] = []
    for ref in find_blocks(model):
        if not any(ref.parent is p for p in parents):
            parents.append(ref.parent)
    return parents


def _paths(model: nn.Module) -> dict[int, str]:
    """Module path (as in ``named_modules``) of every submodule of ``model``, by object id."""
    return {id(m): name for name, m in model.named_modules()}


def _join(parent: str, name: str) -> str:
    return f"{parent}.{name}" if parent else name


def _ref_path(ref: BlockRef, paths: dict[int, str], blocks: dict[tuple[int, int], str]) -> str:
    """The module path of the block ``ref`` names: its parent's path (``paths``) + its name where
    the parent is part of the model, else the path of its (stage, index) in the model's
    ``find_blocks`` (``blocks``), for refs taken from an equal model such as a deep copy."""
    if not all(hasattr(ref, a) for a in ("stage", "index", "parent", "name")):
        raise InputError(f"remove_blocks: expected BlockRef from find_blocks, got {type(ref).__name__}")
    parent = paths.get(id(ref.parent))
    if parent is not None:
        return _join(parent, str(ref.name))
    key = (ref.stage, ref.index)
    if key not in blocks:
        raise InputError(f"remove_blocks: no block (stage {ref.stage}, index {ref.index}) in this model")
    return blocks[key]


def _split(path: str) -> tuple[str, str]:
    parent, _, name = path.rpartition(".")
    return parent, name


def _rebuild(seq: nn.Sequential, children: list[tuple[str | None, nn.Module]]) -> None:
    """Replace ``seq``'s children in place: renumbered 0..n-1 where every name was an index,
    else with their names kept (a new child, named None, gets a fresh ``grown_k`` name)."""
    if all(name is None or name.isdigit() for name, _ in children):
        seq._modules = OrderedDict((str(i), m) for i, (_, m) in enumerate(children))
        return
    taken = {name for name, _ in children if name is not None}
    named = []
    for name, m in children:
        k = 0
        while name is None:
            name = f"grown_{k}" if f"grown_{k}" not in taken else None
            k += 1
        taken.add(name)
        named.append((name, m))
    seq._modules = OrderedDict(named)


def remove_blocks(model: nn.Module, refs: BlockRef | Sequence[BlockRef]) -> nn.Module:
    """A deep copy of ``model`` without the blocks ``refs`` (from ``find_blocks(model)``).

    A block whose parent is an ``nn.Sequential`` is deleted from it (children renumbered if they
    were numbered); any other parent gets an ``nn.Identity()`` in the block's place. Either way
    the copy stores exactly the kept parameters: its :func:`count_params` is the input's minus
    the removed blocks' parameters (their gates included). Refs are matched to the copy by module
    path, or by (stage, index) for refs from an equal model, never by object identity."""
    refs = [refs] if isinstance(refs, BlockRef) else list(refs)
    paths = _paths(model)
    blocks = {(r.stage, r.index): _join(paths[id(r.parent)], str(r.name)) for r in find_blocks(model)}
    removable = set(blocks.values())
    targets = [_ref_path(ref, paths, blocks) for ref in refs]
    for path in targets:
        if path not in removable:
            raise InputError(f"remove_blocks: {path!r} is not a removable block of this model")
    if len(set(targets)) != len(targets):
        raise InputError("remove_blocks: the same block is listed twice")
    result = copy.deepcopy(model)
    by_parent: dict[str, set[str]] = {}
    for path in targets:
        parent, name = _split(path)
        by_parent.setdefault(parent, set()).add(name)
    for parent_path, names in by_parent.items():
        parent = result.get_submodule(parent_path)
        if isinstance(parent, nn.Sequential):
            _rebuild(parent, [(n, m) for n, m in parent.named_children() if n not in names])
        else:
            for name in names:
                setattr(parent, name, nn.Identity())
    return result


def _check_init(init: str, what: str) -> str:
    if init not in INITS:
        raise InputError(f"{what}: init must be one of {', '.join(INITS)}, got {init!r}")
    return init


def _reset(block: nn.Module) -> None:
    """Fresh weights: ``reset_parameters`` of every submodule (BatchNorm's also resets its
    running statistics) and, for a :class:`ResidualBlock`, gate 1."""
    for m in block.modules():
        if m is not block and callable(getattr(m, "reset_parameters", None)):
            m.reset_parameters()
    if isinstance(block, ResidualBlock):
        with torch.no_grad():
            block.gate.fill_(1.0)


def _last_layer(block: nn.Module) -> nn.Module:
    """The layer to zero: the last norm, Linear or Conv of the residual branch (our block's
    ``body``; a torchvision-style block's modules outside ``downsample``)."""
    if isinstance(block, ResidualBlock):
        branch = list(block.body.modules())
    else:
        if getattr(block, "downsample", None) is not None:
            raise InputError("new_block_like: init 'zero' needs an identity skip, not a downsample")
        branch = list(block.modules())
    layers = [m for m in branch if isinstance(m, (*_NORMS, nn.Linear, _ConvNd))
              and getattr(m, "weight", None) is not None]
    if not layers:
        raise InputError("new_block_like: the residual branch has no norm, Linear or Conv weight to zero")
    return layers[-1]


def new_block_like(block: nn.Module, init: str = "zero",
                   generator: torch.Generator | None = None) -> nn.Module:
    """A copy of the residual ``block`` (a :class:`ResidualBlock` or a torchvision-style block
    with ``downsample is None``) with fresh weights, drawn from ``generator`` when given.

    ``init="zero"`` then zeroes the weight and bias of the branch's last norm, Linear or Conv
    layer (BatchNorm ``bn2`` for a BasicBlock), so the branch outputs 0 and the block computes
    ``post(x)``: exactly the identity for ``post=Identity``, and on non-negative inputs for a ReLU
    after the sum (AutoGrow's zero-initialised block). This is exact where that layer ends the
    branch, as in :func:`mlp_body`, :func:`conv_body` and torchvision's blocks. ``init="random"``
    keeps the fresh weights (the comparison)."""
    _check_init(init, "new_block_like")
    if not isinstance(block, nn.Module):
        raise InputError(f"new_block_like: expected a residual block, got {type(block).__name__}")
    if not isinstance(block, ResidualBlock) and not hasattr(block, "downsample"):
        raise InputError(f"new_block_like: {type(block).__name__} is no ResidualBlock nor torchvision-style")
    new = copy.deepcopy(block)
    if generator is None:
        _reset(new)
    else:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        devices = sorted({p.device.index or 0 for p in new.parameters() if p.is_cuda})
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            _reset(new)
    if init == "zero":
        layer = _last_layer(new)
        with torch.no_grad():
            layer.weight.zero_()
            if getattr(layer, "bias", None) is not None:
                layer.bias.zero_()
    return new


def _default_template(model: nn.Module, stage: nn.Module, index: int) -> nn.Module:
    """A template for a stage of our models without removable blocks (see :func:`insert_block`),
    on the model's device and dtype."""
    ref = next(iter(model.parameters()), None)
    if isinstance(model, ResidualCNN):
        convs = [m for m in stage.modules() if isinstance(m, nn.Conv2d)]
        if not convs:
            raise InputError(f"insert_block: stage {index} has no Conv2d to read its width; pass template")
        block = ResidualBlock(conv_body(convs[-1].out_channels), post=nn.ReLU())
    elif isinstance(model, ResidualMLP):
        linears = [m for m in model.head.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise InputError("insert_block: the head has no Linear to read the width from; pass template")
        body = mlp_body(linears[0].in_features)
        acts = [i for i, m in enumerate(body) if not isinstance(m, nn.Linear)]
        stem_acts = [m for m in model.stem if not isinstance(m, (nn.Linear, nn.Flatten))]
        if len(acts) == 1 and stem_acts:
            body[acts[0]] = copy.deepcopy(stem_acts[-1])
        block = ResidualBlock(body)
    else:
        raise InputError(f"insert_block: stage {index} has no block to copy; pass template")
    return block if ref is None else block.to(device=ref.device, dtype=ref.dtype)


def _index(value: object, limit: int, what: str) -> int:
    if not isinstance(value, Integral) or isinstance(value, bool) or not 0 <= value <= limit:
        raise InputError(f"insert_block: {what} {value!r} out of range 0..{limit}")
    return int(value)


def insert_block(model: nn.Module, stage: int, position: int | None = None, init: str = "zero",
                 template: nn.Module | None = None, generator: torch.Generator | None = None) -> nn.Module:
    """A deep copy of ``model`` with a new block (:func:`new_block_like` of ``template``) in
    stage ``stage`` (:func:`stage_containers`), an ``nn.Sequential``.

    The new block becomes the stage's ``position``-th removable block (None: after the last;
    position 0 still follows a downsampling block). ``template`` (copied, never inserted
    itself) defaults to the stage's last removable block; a stage without one is inferred from
    its width for our models only: ResidualCNN: ``ResidualBlock(conv_body(c), post=ReLU())``,
    c = out channels of the stage's last Conv2d (its DownsampleBlock's); ResidualMLP:
    ``ResidualBlock(mlp_body(w))``, w = the head's in_features, with the stem's activation. With
    ``init="zero"`` the copy computes the same function as ``model`` (in eval mode)."""
    _check_init(init, "insert_block")
    stages = stage_containers(model)
    if not stages:
        raise InputError("insert_block: the model has no stages of residual blocks")
    stage = _index(stage, len(stages) - 1, "stage")
    if template is not None and not isinstance(template, nn.Module):
        raise InputError(f"insert_block: template must be an nn.Module, got {type(template).__name__}")
    result = copy.deepcopy(model)
    container = stage_containers(result)[stage]
    if not isinstance(container, nn.Sequential):
        raise InputError(f"insert_block: stage {stage} is a {type(container).__name__}, not an nn.Sequential")
    ids = {id(r.module) for r in find_blocks(result) if r.parent is container}
    children = list(container.named_children())
    removable = [i for i, (_, m) in enumerate(children) if id(m) in ids]
    position = len(removable) if position is None else _index(position, len(removable), "position")
    if template is None:
        template = children[removable[-1]][1] if removable else _default_template(result, container, stage)
    new = new_block_like(template, init, generator)
    at = removable[position] if position < len(removable) else len(children)
    _rebuild(container, children[:at] + [(None, new)] + children[at:])
    return result
