"""Decode a genotype (paper 001 section 4.4) into a trainable CNN, :class:`GenotypeNet`.

Rules:

- Vertices run in a fixed order, ``nx.lexicographical_topological_sort`` (ties broken by node id), so the
  same genotype always builds the same layers in the same order (same weights under the same seed).
- The input vertex's output is the image, ``in_channels`` channels.
- A vertex's input is the *merge* of its predecessors' outputs, taken in that fixed order: a ``concat``
  vertex concatenates them along the channel axis; every other vertex (``sum`` included) sums them,
  first zero-padding each to the largest channel count (no parameters).
- ``conv3`` / ``conv5`` / ``conv7``: ``Conv2d(k, padding=k // 2, bias=False)`` + ``BatchNorm2d`` + ``ReLU``
  to the vertex's ``channels``.
- ``maxpool`` / ``avgpool``: 3x3, stride 1, padding 1 (keep channels and size; the average counts only
  pixels inside the image, ``count_include_pad=False``, so a constant image stays constant).
- ``skip`` and ``sum`` are identities on the merged input (``concat`` too, after concatenating).
- The output vertex's merged input goes through global average pooling and a ``Linear`` head to
  ``n_classes`` logits.

Every layer has stride 1: the spatial size never changes. The module accepts ``(N, C, H, W)`` images and
flat ``(N, C * H * W)`` rows (reshaped with ``image_size``).
"""

from __future__ import annotations

import networkx as nx
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .genotype import CONVS, INPUT, OUTPUT, Genotype, validate

__all__ = ["GenotypeNet", "count_params", "decode"]


def _positive_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x > 0


def _sum_padded(xs: list[torch.Tensor]) -> torch.Tensor:
    """Sum feature maps of possibly different channel counts, zero-padding each to the largest."""
    if len(xs) == 1:
        return xs[0]
    width = max(x.shape[1] for x in xs)
    out = None
    for x in xs:
        if x.shape[1] < width:
            x = F.pad(x, (0, 0, 0, 0, 0, width - x.shape[1]))
        out = x if out is None else out + x
    return out  # type: ignore[return-value]


class GenotypeNet(nn.Module):
    """The CNN a genotype describes (rules in the module docstring).

    Attributes:
        genotype: the decoded genotype.
        order: vertex ids in execution order.
        out_channels: vertex id -> channels of its output (the output vertex: its merged input).
        layers: ``ModuleDict`` keyed by ``str(vertex id)`` for the conv and pool vertices.
        head: the ``Linear`` classifier after global average pooling.
    """

    def __init__(self, genotype: Genotype, in_channels: int, image_size: tuple[int, int], n_classes: int):
        super().__init__()
        validate(genotype, min_depth=0, max_depth=10**9)
        if not _positive_int(in_channels) or not _positive_int(n_classes):
            raise InputError(f"in_channels and n_classes must be positive ints: {in_channels}, {n_classes}")
        size = tuple(image_size) if isinstance(image_size, (tuple, list)) else ()
        if len(size) != 2 or not all(_positive_int(s) for s in size):
            raise InputError(f"image_size must be (height, width) of positive ints, got {image_size!r}")
        self.genotype = genotype
        self.in_channels, self.image_size, self.n_classes = in_channels, (size[0], size[1]), n_classes
        g = genotype.graph
        self.order: list[int] = list(nx.lexicographical_topological_sort(g))
        pos = {n: i for i, n in enumerate(self.order)}
        self._preds = {n: sorted(g.predecessors(n), key=pos.__getitem__) for n in self.order}
        # after running position i, drop the outputs no later vertex reads
        self._free: dict[int, list[int]] = {}
        for n in self.order:
            if g.out_degree(n):
                self._free.setdefault(max(pos[s] for s in g.successors(n)), []).append(n)
        self.out_channels: dict[int, int] = {}
        self.layers = nn.ModuleDict()
        for n in self.order:
            op, ch = g.nodes[n]["op"], g.nodes[n]["channels"]
            if op == INPUT:
                self.out_channels[n] = in_channels
                continue
            widths = [self.out_channels[p] for p in self._preds[n]]
            merged = sum(widths) if op == "concat" else max(widths)
            if op in CONVS:
                k = int(op[-1])
                self.layers[str(n)] = nn.Sequential(
                    nn.Conv2d(merged, ch, k, padding=k // 2, bias=False), nn.BatchNorm2d(ch), nn.ReLU()
                )
                self.out_channels[n] = ch
            else:
                if op == "maxpool":
                    self.layers[str(n)] = nn.MaxPool2d(3, stride=1, padding=1)
                elif op == "avgpool":
                    self.layers[str(n)] = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
                self.out_channels[n] = merged
        self._output = self.order[-1]
        assert g.nodes[self._output]["op"] == OUTPUT
        self.head = nn.Linear(self.out_channels[self._output], n_classes)

    def _as_image(self, x: torch.Tensor) -> torch.Tensor:
        c, (h, w) = self.in_channels, self.image_size
        if x.dim() == 2 and x.shape[1] == c * h * w:
            return x.reshape(x.shape[0], c, h, w)
        if x.dim() == 4 and x.shape[1] == c:
            return x
        raise InputError(f"expected input (N, {c}, H, W) or (N, {c * h * w}), got {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, n_classes)`` for images ``(N, C, H, W)`` or flat rows ``(N, C*H*W)``."""
        outs: dict[int, torch.Tensor] = {}
        g = self.genotype.graph
        for i, n in enumerate(self.order):
            if i == 0:
                outs[n] = self._as_image(x)
                continue
            xs = [outs[p] for p in self._preds[n]]
            h = torch.cat(xs, dim=1) if g.nodes[n]["op"] == "concat" else _sum_padded(xs)
            for done in self._free.get(i, ()):
                del outs[done]
            if n == self._output:
                return self.head(h.mean(dim=(2, 3)))
            key = str(n)
            outs[n] = self.layers[key](h) if key in self.layers else h
        raise AssertionError("the output vertex runs last")  # pragma: no cover


def decode(genotype: Genotype, in_channels: int, image_size: tuple[int, int], n_classes: int) -> GenotypeNet:
    """Build the CNN of ``genotype`` for ``in_channels`` x ``image_size`` images and ``n_classes`` classes.

    Only the structure is checked (any depth decodes); a broken genotype gives InputError.
    """
    return GenotypeNet(genotype, in_channels, image_size, n_classes)


def count_params(module: nn.Module) -> int:
    """Number of parameters of ``module`` (every ``nn.Parameter``, BatchNorm scales and shifts included)."""
    return sum(p.numel() for p in module.parameters())
