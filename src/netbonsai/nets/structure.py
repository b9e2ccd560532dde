"""The shape of a sparse layered network: which units exist and which forward connections are live.

A :class:`LayeredStructure` is what a random-graph prior (``netbonsai.priors``) produces and what
the masked recurrent networks (``netbonsai.nets.recurrent``) consume. Hidden units sit in layers
``0 .. L-1``; layer ``l`` may read the network input and any *earlier* layer (skip connections),
never itself or a later layer, so the forward connections form a DAG. Recurrent (hidden-to-hidden)
connections are not part of the structure: a recurrent network adds them within each layer.

Column order of ``in_masks[l]``: the ``input_size`` network inputs first, then the units of layer
0, layer 1, ..., layer ``l-1`` (each layer's units in order).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import InputError


@dataclass(frozen=True, eq=False)
class LayeredStructure:
    """Hidden layer widths, the live input connections of each layer, and the units read by the output.

    ``in_masks[l]``: bool array ``(widths[l], input_size + sum(widths[:l]))``;
    ``out_mask``: bool array ``(sum(widths),)``, the units (all layers, in order) the output head reads.
    """

    input_size: int
    widths: tuple[int, ...]
    in_masks: tuple[np.ndarray, ...]
    out_mask: np.ndarray

    def __post_init__(self) -> None:
        if self.input_size < 1:
            raise InputError(f"a structure needs at least one input, got input_size={self.input_size}")
        if not self.widths or min(self.widths) < 1:
            raise InputError(f"every hidden layer needs at least one unit, got widths {list(self.widths)}")
        if len(self.in_masks) != len(self.widths):
            raise InputError(f"{len(self.widths)} layers but {len(self.in_masks)} input masks")
        for layer, (width, mask) in enumerate(zip(self.widths, self.in_masks)):
            expected = (width, self.input_size + sum(self.widths[:layer]))
            if mask.dtype != np.bool_ or mask.shape != expected:
                raise InputError(f"layer {layer}'s input mask must be bool {expected}, got {mask.dtype} {mask.shape}")
        if self.out_mask.dtype != np.bool_ or self.out_mask.shape != (self.num_units,):
            raise InputError(f"out_mask must be bool ({self.num_units},), got {self.out_mask.dtype} {self.out_mask.shape}")
        if not self.out_mask.any():
            raise InputError("the output reads no unit: out_mask is all False")

    @property
    def num_layers(self) -> int:
        """Number of hidden layers."""
        return len(self.widths)

    @property
    def num_units(self) -> int:
        """Number of hidden units over all layers."""
        return int(sum(self.widths))

    @property
    def num_connections(self) -> int:
        """Live forward connections into hidden units (input and skip connections; no recurrent ones)."""
        return int(sum(int(mask.sum()) for mask in self.in_masks))

    @classmethod
    def stacked(cls, input_size: int, widths: Sequence[int]) -> "LayeredStructure":
        """A dense stack: layer ``l`` reads all of layer ``l-1`` (layer 0 the input); the output
        reads the last layer, like ``nn.RNN(num_layers=len(widths))``."""
        widths = tuple(int(w) for w in widths)
        masks = []
        for layer, width in enumerate(widths):
            mask = np.zeros((width, input_size + sum(widths[:layer])), dtype=bool)
            start = 0 if layer == 0 else input_size + sum(widths[: layer - 1])
            stop = input_size + sum(widths[:layer])
            mask[:, start:stop] = True
            masks.append(mask)
        out = np.zeros(sum(widths), dtype=bool)
        out[sum(widths[:-1]):] = True
        return cls(input_size, widths, tuple(masks), out)
