"""Residual networks made of removable blocks, and finding, counting and skipping those blocks.

A removable block has an identity skip, ``out = post(x + F(x))``: replacing it by ``nn.Identity``
(the lesion of Veit et al. 2016) leaves a working network, and a block whose ``F`` is zero is an
exact identity (AutoGrow's zero-initialised new block, Wen et al. 2020).

- :class:`ResidualBlock`: ``post(x + gate * body(x))`` with a scalar ``gate`` (starts at 1);
- :class:`DownsampleBlock`: a strided block with a 1x1 projection skip (not removable);
- :class:`ResidualMLP` and :class:`ResidualCNN`: a stem, ``stages`` (an ``nn.ModuleList`` of
  ``nn.Sequential``) and a head;
- :func:`find_blocks` lists every removable block as a :class:`BlockRef` (ours, and
  torchvision-style ``BasicBlock`` / ``Bottleneck`` whose ``downsample`` is None);
- :func:`block_params`, :func:`block_flops`, :func:`flops_per_block`: the cost of a block;
- :func:`skipped`: temporarily replace blocks by ``nn.Identity`` (restored on exit).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from numbers import Integral
from typing import Any, Iterable, Iterator, Sequence

import torch
from torch import nn

from ..errors import InputError
from ..nets.activations import NAME_TO_MODULE, check_activation

_USER_BLOCK_PARTS = ("conv1", "bn1")  # a torchvision-style block has one of these child modules


def _positive(value: Any, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise InputError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _listed(values: Any, what: str) -> list:
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise InputError(f"ResidualCNN: {what} must be a sequence of integers, got {values!r}")
    return list(values)


class ResidualBlock(nn.Module):
    """``post(x + gate * body(x))``: a removable block with an identity skip.

    ``body`` must keep its input's shape. ``post`` (``nn.Identity`` when None) follows the sum,
    e.g. the ReLU of a CNN block. ``gate`` is a scalar parameter starting at 1: at 0 the block
    is ``post`` alone, the identity when ``post`` is.
    """

    def __init__(self, body: nn.Module, post: nn.Module | None = None) -> None:
        super().__init__()
        if not isinstance(body, nn.Module) or (post is not None and not isinstance(post, nn.Module)):
            raise InputError("ResidualBlock: body and post must be torch modules")
        self.body = body
        self.post = nn.Identity() if post is None else post
        self.gate = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post(x + self.gate * self.body(x))


def mlp_body(width: int, activation: str = "relu") -> nn.Sequential:
    """Linear(width, width), the named activation, Linear(width, width): an MLP block's ``F``."""
    width = _positive(width, "mlp_body: width")
    act = NAME_TO_MODULE[check_activation(activation)]()
    return nn.Sequential(nn.Linear(width, width), act, nn.Linear(width, width))


def conv_body(channels: int) -> nn.Sequential:
    """conv3x3-BN-ReLU-conv3x3-BN on ``channels`` channels (no conv bias: BN follows)."""
    c = _positive(channels, "conv_body: channels")
    return nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
                         nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))


class DownsampleBlock(nn.Module):
    """``relu(body(x) + projection(x))`` with a strided conv body and a 1x1 conv + BN projection.

    It changes the width or the resolution, so it has no identity skip and is not removable.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 2) -> None:
        super().__init__()
        cin = _positive(in_channels, "DownsampleBlock: in_channels")
        cout = _positive(out_channels, "DownsampleBlock: out_channels")
        stride = _positive(stride, "DownsampleBlock: stride")
        self.body = nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                                  nn.BatchNorm2d(cout), nn.ReLU(),
                                  nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout))
        self.projection = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                        nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.projection(x))


class ResidualMLP(nn.Module):
    """Flatten, Linear(n_in, width) and activation, ``blocks`` MLP :class:`ResidualBlock` s (one
    stage, ``stages[0]``; ``blocks`` may be 0), then Linear(width, n_out)."""

    def __init__(self, n_in: int, width: int, blocks: int, n_out: int, activation: str = "relu") -> None:
        super().__init__()
        n_in, n_out = _positive(n_in, "ResidualMLP: n_in"), _positive(n_out, "ResidualMLP: n_out")
        width = _positive(width, "ResidualMLP: width")
        blocks = _positive(blocks, "ResidualMLP: blocks", minimum=0)
        act = NAME_TO_MODULE[check_activation(activation)]()
        self.stem = nn.Sequential(nn.Flatten(), nn.Linear(n_in, width), act)
        self.stages = nn.ModuleList([nn.Sequential(*[ResidualBlock(mlp_body(width, activation))
                                                     for _ in range(blocks)])])
        self.head = nn.Linear(width, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for stage in self.stages:
            h = stage(h)
        return self.head(h)


class ResidualCNN(nn.Module):
    """A small ResNet: conv3x3-BN-ReLU stem, one stage per width, average pool and Linear head.

    Stage ``s`` is a :class:`DownsampleBlock` (stride 1 in stage 0, else 2; it maps
    ``widths[s-1]`` to ``widths[s]`` channels) followed by ``blocks[s] - 1`` removable
    ``ResidualBlock(conv_body(widths[s]), post=nn.ReLU())``: ``blocks`` counts the downsampling
    block, so "3 stages x 4 blocks" has 3 removable blocks per stage. An int ``blocks`` applies
    to every stage; each count must be >= 1.

    With ``image_size`` ``(height, width)`` the network also takes flat rows ``(N, C*H*W)`` (as
    a :class:`~netbonsai.data.task.Task` holds images) and reshapes them to ``(N, C, H, W)``.
    """

    def __init__(self, in_channels: int = 1, widths: Sequence[int] = (16, 32, 64),
                 blocks: Sequence[int] | int = 4, n_out: int = 10,
                 image_size: Sequence[int] | None = None) -> None:
        super().__init__()
        cin = _positive(in_channels, "ResidualCNN: in_channels")
        if image_size is not None:
            size = _listed(image_size, "image_size")
            if len(size) != 2:
                raise InputError(f"ResidualCNN: image_size must be (height, width), got {image_size!r}")
            image_size = tuple(_positive(v, "ResidualCNN: each image side") for v in size)
        self.image_shape = None if image_size is None else (cin, *image_size)
        n_out = _positive(n_out, "ResidualCNN: n_out")
        widths = [_positive(w, "ResidualCNN: each width") for w in _listed(widths, "widths")]
        if not widths:
            raise InputError("ResidualCNN: widths must name at least one stage")
        counts = [blocks] * len(widths) if isinstance(blocks, Integral) else _listed(blocks, "blocks")
        if len(counts) != len(widths):
            raise InputError(f"ResidualCNN: {len(counts)} block counts for {len(widths)} stages")
        counts = [_positive(b, "ResidualCNN: blocks per stage") for b in counts]
        self.stem = nn.Sequential(nn.Conv2d(cin, widths[0], 3, padding=1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU())
        self.stages = nn.ModuleList()
        for s, (width, count) in enumerate(zip(widths, counts)):
            first = DownsampleBlock(widths[s - 1] if s else widths[0], width, stride=1 if s == 0 else 2)
            rest = [ResidualBlock(conv_body(width), post=nn.ReLU()) for _ in range(count - 1)]
            self.stages.append(nn.Sequential(first, *rest))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[-1], n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2 and self.image_shape is not None:
            x = x.reshape(x.shape[0], *self.image_shape)
        h = self.stem(x)
        for stage in self.stages:
            h = stage(h)
        return self.head(h)


@dataclass(frozen=True)
class BlockRef:
    """A removable block: child ``name`` of ``parent``, the ``index``-th removable block of the
    ``stage``-th distinct parent container (both counted in module order, from 0)."""

    stage: int
    index: int
    parent: nn.Module = field(repr=False)
    name: str

    @property
    def module(self) -> nn.Module:
        """The block now held there."""
        return getattr(self.parent, self.name)


def is_removable(module: nn.Module) -> bool:
    """A :class:`ResidualBlock`, or a torchvision-style block (``conv1`` or ``bn1`` child module)
    whose ``downsample`` attribute is None, i.e. whose skip is the identity."""
    if isinstance(module, ResidualBlock):
        return True
    has_part = any(isinstance(getattr(module, part, None), nn.Module) for part in _USER_BLOCK_PARTS)
    return has_part and hasattr(module, "downsample") and module.downsample is None


def find_blocks(model: nn.Module) -> list[BlockRef]:
    """Every removable block of ``model`` (see :func:`is_removable`) in module order.

    The search does not look inside a block it found, nor count ``model`` itself. ``stage``
    numbers the distinct parent containers holding blocks, so a model stage without a
    removable block gets no number.
    """
    if not isinstance(model, nn.Module):
        raise InputError(f"find_blocks needs a torch module, got {type(model).__name__}")
    refs: list[BlockRef] = []
    stages: dict[int, int] = {}
    counts: list[int] = []
    seen: set[int] = set()

    def visit(parent: nn.Module) -> None:
        for name, child in parent.named_children():
            if id(child) in seen:
                continue
            seen.add(id(child))
            if is_removable(child):
                stage = stages.setdefault(id(parent), len(stages))
                if stage == len(counts):
                    counts.append(0)
                refs.append(BlockRef(stage, counts[stage], parent, name))
                counts[stage] += 1
            else:
                visit(child)

    visit(model)
    return refs


def block_params(block: BlockRef | nn.Module) -> int:
    """Parameters of a block (``post`` included), its :class:`ResidualBlock` gate excluded."""
    module = block.module if isinstance(block, BlockRef) else block
    if not isinstance(module, nn.Module):
        raise InputError(f"block_params needs a BlockRef or a torch module, got {type(block).__name__}")
    gate = module.gate if isinstance(module, ResidualBlock) else None
    return sum(p.numel() for p in module.parameters() if p is not gate)


def _macs(layer: nn.Module, output: torch.Tensor) -> int:
    """Multiply-adds of one call of a Linear or conv layer that produced ``output``."""
    if isinstance(layer, nn.Linear):
        return output.numel() * layer.in_features
    return output.numel() * (layer.in_channels // layer.groups) * math.prod(layer.kernel_size)


def _counted_forward(model: nn.Module, groups: list[nn.Module], example: torch.Tensor) -> list[int]:
    """Per-sample multiply-adds of the Linear / conv layers inside each module of ``groups``
    during one eval-mode, no-grad forward of ``model`` on ``example`` (modes restored)."""
    if not isinstance(example, torch.Tensor) or example.dim() < 2 or example.shape[0] < 1:
        raise InputError("FLOPs need an example batch: a tensor with a leading batch dimension")
    totals = [0] * len(groups)
    owner: dict[int, int] = {}
    for i, group in enumerate(groups):
        for layer in group.modules():
            if isinstance(layer, (nn.Linear, nn.modules.conv._ConvNd)):
                owner.setdefault(id(layer), i)

    def hook(layer: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        totals[owner[id(layer)]] += _macs(layer, output)

    layers = {id(m): m for g in groups for m in g.modules() if id(m) in owner}
    handles = [m.register_forward_hook(hook) for m in layers.values()]
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes.items():
            m.training = mode
    return [t // example.shape[0] for t in totals]


def block_flops(module: nn.Module, example_input: torch.Tensor) -> int:
    """Multiply-adds per sample of the Linear and conv layers in ``module`` on ``example_input``
    (its input, with a batch dimension), counted in one eval-mode forward."""
    if not isinstance(module, nn.Module):
        raise InputError(f"block_flops needs a torch module, got {type(module).__name__}")
    return _counted_forward(module, [module], example_input)[0]


def flops_per_block(model: nn.Module, example: torch.Tensor) -> list[int]:
    """Multiply-adds per sample of each block of :func:`find_blocks`, from one eval-mode forward
    of ``model`` on the model input ``example``."""
    return _counted_forward(model, [ref.module for ref in find_blocks(model)], example)


@contextmanager
def skipped(model: nn.Module, refs: BlockRef | Iterable[BlockRef]) -> Iterator[nn.Module]:
    """Replace the blocks ``refs`` of ``model`` by ``nn.Identity`` inside the ``with`` (the
    lesion); the same block objects are put back on exit, also on an exception."""
    refs = [refs] if isinstance(refs, BlockRef) else list(refs)
    owned = {id(m) for m in model.modules()}
    places = set()
    for ref in refs:
        if not isinstance(ref, BlockRef):
            raise InputError(f"skipped() takes BlockRefs from find_blocks, got {type(ref).__name__}")
        if id(ref.parent) not in owned or ref.parent._modules.get(ref.name) is None:
            raise InputError(f"block {ref.name!r} of stage {ref.stage} is not in this model")
        if (id(ref.parent), ref.name) in places:
            raise InputError(f"block {ref.name!r} of stage {ref.stage} is listed twice")
        places.add((id(ref.parent), ref.name))
    originals: list[tuple[BlockRef, nn.Module]] = []
    try:
        for ref in refs:
            originals.append((ref, ref.parent._modules[ref.name]))
            ref.parent._modules[ref.name] = nn.Identity()
        yield model
    finally:
        for ref, module in reversed(originals):
            ref.parent._modules[ref.name] = module
