"""A population of K sparse layered recurrent classifiers, trained and evaluated as one computation.

Each member is a :class:`~netbonsai.nets.structure.LayeredStructure` turned into a recurrent
network as in paper 001 ("Sparse Recurrent Neural Networks"): hidden layer ``l`` at time ``t`` is

    h_t^l = cell( sum_{s < l} (W^{s->l} * M^{s->l}) h_t^s  +  (U^l * M_U^l) h_{t-1}^l  +  b^l )

where ``s`` runs over the network input and every earlier layer (skip connections), the
input-to-hidden ("i2h") masks ``M^{s->l}`` come from the structure and the hidden-to-hidden ("h2h")
connections are dense within a layer (recurrence never crosses layers). The classifier reads the
final state of the units in the structure's ``out_mask`` (each sample at its own last step).

``cell`` is ``tanh``, ``relu`` (Elman), ``lstm`` or ``gru``, with the gate order and equations of
``torch.nn.RNN`` / ``LSTM`` / ``GRU`` (both ``bias_ih`` and ``bias_hh``, as torch has them).

Parameter layout (leading population dimension K; ``G`` gates = 1, 1, 4, 3; ``W_l`` layer ``l``'s
width padded to the widest member; ``in_l = input_size + W_0 + ... + W_{l-1}``; ``U`` = sum of W_l):

==================  ====================  ===========================================
``embedding``       (K, vocab, E)         only with ``vocab_size`` (int code input)
``weight_ih_l{l}``  (K, G*W_l, in_l)      columns: [inputs, layer 0, ..., layer l-1]
``weight_hh_l{l}``  (K, G*W_l, W_l)
``bias_ih_l{l}``    (K, G*W_l)
``bias_hh_l{l}``    (K, G*W_l)
``weight_out``      (K, C, U)             columns: layer 0 units, layer 1 units, ...
``bias_out``        (K, C)
==================  ====================  ===========================================

Rows of a gated weight are gate-major like torch (gate ``g``, unit ``u`` at row ``g*W_l + u``).
Every weight has a bool mask buffer of its shape (``mask_ih_l{l}``, ``mask_hh_l{l}``,
``mask_out``); a member's padding units and layers have all-False masks and zero biases, so they
never influence anything and a member computes exactly what it computes alone.

This module holds the model (layout, initialisation, masks and counts, forward); the cells' loop
over time is in ``recurrent_cells`` and the assembly of populations from members (``select``,
``stack_members``) in ``recurrent_stack``; their public names are re-exported here.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import InputError
from .recurrent_cells import CELLS, recur
from .recurrent_stack import _assemble, stack_members
from .structure import LayeredStructure

__all__ = ["CELLS", "KINDS", "ONE_HOT_MAX_VOCAB", "MaskedRecurrent", "member_seed", "stack_members"]

KINDS = ("i2h", "h2h", "out")
# Up to this vocabulary size, codes reach the input projection through a one-hot matrix product;
# above it, through a gather (measured on one CPU core: the product is faster up to about 48).
ONE_HOT_MAX_VOCAB = 48


def member_seed(seed: int, index: int) -> int:
    """The generator seed of member ``index`` of a population built with ``seed`` (independent of K)."""
    state = np.random.SeedSequence(int(seed), spawn_key=(int(index),)).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1


class MaskedRecurrent(nn.Module):
    """K sparse layered recurrent classifiers (one per structure), padded and stacked.

    ``forward(x, lengths)`` takes ``(B, T)`` int codes (with ``vocab_size``) or ``(B, T, input_size)``
    float features, right-padded, with per-sample ``lengths`` (default: all ``T``), and returns
    logits ``(K, B, num_classes)``.

    ``seed``: an int (member ``k`` draws its initial weights from ``member_seed(seed, k)``, so a
    member does not depend on K or on the other members) or one seed per member.
    """

    def __init__(
        self,
        structures: Sequence[LayeredStructure],
        cell: str,
        num_classes: int,
        vocab_size: int | None = None,
        embedding_dim: int | None = None,
        seed: int | Sequence[int] = 0,
    ) -> None:
        super().__init__()
        structures = tuple(structures)
        if not structures or not all(isinstance(s, LayeredStructure) for s in structures):
            raise InputError("MaskedRecurrent needs a non-empty sequence of LayeredStructure")
        if cell not in CELLS:
            raise InputError(f"unknown recurrent cell {cell!r}; choose one of {', '.join(CELLS)}")
        sizes = sorted({s.input_size for s in structures})
        if len(sizes) != 1:
            raise InputError(f"all structures must have the same input_size, got {sizes}")
        if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 1:
            raise InputError(f"num_classes must be a positive integer, got {num_classes!r}")
        input_size = sizes[0]
        if vocab_size is None:
            if embedding_dim is not None:
                raise InputError("embedding_dim needs vocab_size (int code input)")
        else:
            if vocab_size < 1:
                raise InputError(f"vocab_size must be >= 1, got {vocab_size}")
            if embedding_dim is None:
                embedding_dim = input_size
            if embedding_dim != input_size:
                raise InputError(
                    f"embedding_dim ({embedding_dim}) must equal the structures' input_size ({input_size})"
                )
        k = len(structures)
        if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
            seeds = tuple(member_seed(int(seed), i) for i in range(k))
        else:
            seeds = tuple(int(s) for s in seed)
            if len(seeds) != k:
                raise InputError(f"{k} structures but {len(seeds)} member seeds")

        self.structures = structures
        self.cell = cell
        self.gates = CELLS[cell]
        self.num_classes = int(num_classes)
        self.vocab_size = None if vocab_size is None else int(vocab_size)
        self.embedding_dim = embedding_dim
        self.input_size = input_size
        self.member_seeds = seeds
        depth = max(s.num_layers for s in structures)
        self.widths = tuple(
            max(s.widths[l] for s in structures if s.num_layers > l) for l in range(depth)
        )
        self.num_layers = depth
        having = [[k for k, s in enumerate(structures) if s.num_layers > l] for l in range(depth)]
        self._spans = tuple((members[0], members[-1] + 1) for members in having)  # see _layer_members
        self._reads_key: tuple | None = None  # see _reads
        self._reads_cache: list = []
        self.num_units = sum(self.widths)
        g, c = self.gates, self.num_classes
        if self.vocab_size is not None:
            self.embedding = nn.Parameter(torch.zeros(k, self.vocab_size, input_size))
        for l, w in enumerate(self.widths):
            fan = self.layer_inputs(l)
            self.register_parameter(f"weight_ih_l{l}", nn.Parameter(torch.zeros(k, g * w, fan)))
            self.register_parameter(f"weight_hh_l{l}", nn.Parameter(torch.zeros(k, g * w, w)))
            self.register_parameter(f"bias_ih_l{l}", nn.Parameter(torch.zeros(k, g * w)))
            self.register_parameter(f"bias_hh_l{l}", nn.Parameter(torch.zeros(k, g * w)))
            self.register_buffer(f"mask_ih_l{l}", torch.zeros(k, g * w, fan, dtype=torch.bool))
            self.register_buffer(f"mask_hh_l{l}", torch.zeros(k, g * w, w, dtype=torch.bool))
        self.weight_out = nn.Parameter(torch.zeros(k, c, self.num_units))
        self.bias_out = nn.Parameter(torch.zeros(k, c))
        self.register_buffer("mask_out", torch.zeros(k, c, self.num_units, dtype=torch.bool))
        self._initialise()

    # ------------------------------------------------------------------ layout
    @property
    def population_size(self) -> int:
        """K, the number of members."""
        return len(self.structures)

    def layer_inputs(self, layer: int) -> int:
        """Columns of ``weight_ih_l{layer}``: the inputs and every earlier (padded) layer."""
        return self.input_size + sum(self.widths[:layer])

    def _member_layout(self, structure: LayeredStructure):
        """Where a member with ``structure`` sits in this model's padded tensors.

        Per layer: ``(rows, cols, units)`` (gate-major rows of its real units, its real i2h
        columns, its real unit positions within the layer); and its units' columns of ``weight_out``.
        """
        offsets = np.concatenate([[0], np.cumsum(self.widths)])
        layers = []
        for l, w in enumerate(structure.widths):
            units = np.arange(w)
            rows = np.concatenate([gate * self.widths[l] + units for gate in range(self.gates)])
            cols = np.concatenate(
                [np.arange(self.input_size)]
                + [self.input_size + offsets[s] + np.arange(structure.widths[s]) for s in range(l)]
            )
            layers.append((torch.as_tensor(rows), torch.as_tensor(cols), torch.as_tensor(units)))
        out_cols = np.concatenate([offsets[s] + np.arange(w) for s, w in enumerate(structure.widths)])
        return layers, torch.as_tensor(out_cols)

    def _p(self, kind: str, layer: int) -> torch.Tensor:
        return getattr(self, f"{kind}_l{layer}")

    @torch.no_grad()
    def _initialise(self) -> None:
        """torch's initialisation (uniform(-1/sqrt(W), 1/sqrt(W)); embedding N(0, 1); the head like
        nn.Linear over the units it reads), each member from its own generator at its own shapes."""
        g = self.gates
        for k, (structure, seed) in enumerate(zip(self.structures, self.member_seeds)):
            gen = torch.Generator().manual_seed(seed)

            def uniform(*shape: int, bound: float) -> torch.Tensor:
                return (torch.rand(*shape, generator=gen) * 2 - 1) * bound

            if self.vocab_size is not None:
                self.embedding[k] = torch.randn(self.vocab_size, self.input_size, generator=gen)
            layers, out_cols = self._member_layout(structure)
            for l, ((rows, cols, units), w) in enumerate(zip(layers, structure.widths)):
                bound = 1.0 / math.sqrt(w)
                ih = uniform(g * w, cols.numel(), bound=bound)
                self._p("weight_ih", l)[k, rows[:, None], cols[None, :]] = ih
                self._p("weight_hh", l)[k, rows[:, None], units[None, :]] = uniform(g * w, w, bound=bound)
                self._p("bias_ih", l)[k, rows] = uniform(g * w, bound=bound)
                self._p("bias_hh", l)[k, rows] = uniform(g * w, bound=bound)
                in_mask = torch.as_tensor(structure.in_masks[l]).repeat(g, 1)
                self._p("mask_ih", l)[k, rows[:, None], cols[None, :]] = in_mask
                self._p("mask_hh", l)[k, rows[:, None], units[None, :]] = True
            read = torch.as_tensor(structure.out_mask)
            bound = 1.0 / math.sqrt(int(read.sum()))
            self.weight_out[k, :, out_cols] = uniform(self.num_classes, out_cols.numel(), bound=bound)
            self.bias_out[k] = uniform(self.num_classes, bound=bound)
            self.mask_out[k, :, out_cols] = read.expand(self.num_classes, -1)
        self.apply_mask_()

    # ------------------------------------------------------------------ masks and counts
    def masked_weights(self) -> list[tuple[str, str, torch.Tensor, torch.Tensor]]:
        """``(name, kind, weight, mask)`` of every masked weight: per layer its ``i2h`` weight
        (inputs and skip connections) and ``h2h`` weight, then the ``out`` head."""
        items = []
        for l in range(self.num_layers):
            items.append((f"weight_ih_l{l}", "i2h", self._p("weight_ih", l), self._p("mask_ih", l)))
            items.append((f"weight_hh_l{l}", "h2h", self._p("weight_hh", l), self._p("mask_hh", l)))
        items.append(("weight_out", "out", self.weight_out, self.mask_out))
        return items

    @torch.no_grad()
    def apply_mask_(self) -> "MaskedRecurrent":
        """Set every removed weight (mask False) to exactly zero in place; returns self."""
        for _, _, weight, mask in self.masked_weights():
            weight.mul_(mask)
        return self

    def dense_weights(self, kinds: Sequence[str] = ("i2h", "h2h")) -> torch.Tensor:
        """``(K,)`` weights of the given kinds each member's structure has when nothing is pruned
        (its i2h connections, dense h2h within each layer, the head over its read units)."""
        totals = []
        for s in self.structures:
            n = 0
            if "i2h" in kinds:
                n += self.gates * s.num_connections
            if "h2h" in kinds:
                n += self.gates * sum(w * w for w in s.widths)
            if "out" in kinds:
                n += self.num_classes * int(s.out_mask.sum())
            totals.append(n)
        return torch.tensor(totals, dtype=torch.long)

    def live_weights(self, kinds: Sequence[str] = ("i2h", "h2h")) -> torch.Tensor:
        """``(K,)`` live (unmasked) weights of the given kinds per member."""
        for kind in kinds:
            if kind not in KINDS:
                raise InputError(f"unknown weight kind {kind!r}; choose from {', '.join(KINDS)}")
        live = torch.zeros(self.population_size, dtype=torch.long)
        for _, kind, _, mask in self.masked_weights():
            if kind in kinds:
                live += mask.flatten(1).sum(1).cpu()
        return live

    def param_counts(self) -> dict[str, torch.Tensor]:
        """``(K,)`` parameter counts per member: live ``i2h``, ``h2h`` and ``out`` weights,
        ``bias`` (both biases of every gate of every real unit, and the head's), ``embedding``,
        and ``total`` (all of them)."""
        counts = {kind: self.live_weights((kind,)) for kind in KINDS}
        counts["bias"] = torch.tensor(
            [2 * self.gates * s.num_units + self.num_classes for s in self.structures], dtype=torch.long
        )
        embedding = 0 if self.vocab_size is None else self.vocab_size * self.input_size
        counts["embedding"] = torch.full((self.population_size,), embedding, dtype=torch.long)
        counts["total"] = sum(counts[key] for key in ("i2h", "h2h", "out", "bias", "embedding"))
        return counts

    def num_params(self, embedding: bool = True) -> int:
        """Live parameters of a single model (population size 1): live masked weights + biases
        of real units (+ the embedding, unless ``embedding=False``). A population with more than
        one member raises ``ValueError``: use :meth:`num_params_per_variant`."""
        if self.population_size != 1:
            raise ValueError(
                f"num_params() counts a single model, but this population holds {self.population_size} "
                "members; use num_params_per_variant() for a (K,) tensor of counts"
            )
        return int(self.num_params_per_variant(embedding)[0])

    def num_params_per_variant(self, embedding: bool = True) -> torch.Tensor:
        """``(K,)`` live parameters per member: live masked weights + biases of real units
        (+ the embedding, unless ``embedding=False``)."""
        counts = self.param_counts()
        return counts["total"] if embedding else counts["total"] - counts["embedding"]

    # ------------------------------------------------------------------ members
    def select(self, index: int | Sequence[int]) -> "MaskedRecurrent":
        """A new model holding member ``index`` (K=1), or the listed members, without the padding
        the other members needed; weights, masks, dtype and device copied."""
        indices = [index] if isinstance(index, (int, np.integer)) else list(index)
        k = self.population_size
        if not indices or any(not -k <= int(i) < k for i in indices):
            raise InputError(f"member index {index} out of range for a population of {k}")
        return _assemble([(self, int(i) % k) for i in indices])

    def extra_repr(self) -> str:
        params = self.num_params_per_variant().tolist()
        shown = params if len(params) <= 8 else f"{params[:8]}..."
        return (
            f"cell={self.cell}, population={self.population_size}, input_size={self.input_size}, "
            f"vocab_size={self.vocab_size}, widths={list(self.widths)}, classes={self.num_classes}, "
            f"params={shown}"
        )

    # ------------------------------------------------------------------ forward
    def _check_inputs(
        self, x: torch.Tensor, lengths: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(x, torch.Tensor):
            raise InputError("recurrent input must be a tensor")
        if self.vocab_size is not None:
            if x.dim() != 2 or x.dtype.is_floating_point or x.dtype == torch.bool:
                raise InputError(
                    "this model embeds int codes: input must be (batch, time) integers, "
                    f"got {x.dtype} {tuple(x.shape)}"
                )
        elif x.dim() != 3 or x.shape[2] != self.input_size:
            raise InputError(
                f"input must be (batch, time, {self.input_size}) features, got {tuple(x.shape)}"
            )
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise InputError(f"input needs at least one sequence and one time step, got {tuple(x.shape)}")
        if lengths is None:
            lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.long, device=x.device)
        elif not isinstance(lengths, torch.Tensor) or lengths.shape != (x.shape[0],):
            raise InputError(f"lengths must be a ({x.shape[0]},) tensor, one per sequence")
        lengths = lengths.to(device=x.device, dtype=torch.long)
        if bool((lengths < 1).any()) or bool((lengths > x.shape[1]).any()):
            raise InputError(f"every length must be in [1, {x.shape[1]}] (the time steps given)")
        if self.vocab_size is not None and bool(((x < 0) | (x >= self.vocab_size)).any()):
            raise InputError(f"input codes must be in [0, {self.vocab_size})")
        return x, lengths

    def _reads(self) -> list[list[tuple[int, int, int]]]:
        """Per layer, the source blocks some member reads: ``(block, start, stop)`` with block 0
        the input and block ``s + 1`` layer ``s``, and its columns ``start:stop`` of ``weight_ih``.
        Cached until an i2h mask changes (pruning), like ``DagNet.plan``."""
        masks = [self._p("mask_ih", l) for l in range(self.num_layers)]
        key = tuple((m.data_ptr(), m._version) for m in masks)
        if self._reads_key != key:
            self._reads_cache, self._reads_key = self._compute_reads(masks), key
        return self._reads_cache

    def _compute_reads(self, masks: list[torch.Tensor]) -> list[list[tuple[int, int, int]]]:
        edges = np.cumsum([0, self.input_size, *self.widths]).tolist()
        reads = []
        for l in range(self.num_layers):
            used = masks[l].flatten(0, 1).any(0).tolist()
            blocks = [(s, edges[s], edges[s + 1]) for s in range(l + 1)]
            reads.append([block for block in blocks if any(used[block[1] : block[2]])])
        return reads

    def _layer_members(self) -> list[tuple[int, int]]:
        """Per layer, the members ``lo:hi`` it is computed for: the first to the last member that
        has the layer. Members shallower than a layer are only padding there (their state is
        exactly zero and nothing reads it), so a population ordered by depth (either way) runs
        each layer on the members that have it alone. A layer's span lies within every earlier
        layer's span (a member with layer ``l`` has every layer before it)."""
        return list(self._spans)

    def _input_lookup(self, x: torch.Tensor) -> torch.Tensor:
        """What :meth:`_input_projection` reads: the codes as a one-hot ``(vocab, T*B)`` matrix for a
        small vocabulary, the flat codes ``(T*B,)`` otherwise, or the shared features ``(I, T*B)``
        (columns time-major)."""
        if self.vocab_size is None:
            return x.to(self.weight_out.dtype).permute(2, 1, 0).reshape(self.input_size, -1)
        codes = x.t().reshape(-1)
        if self.vocab_size <= ONE_HOT_MAX_VOCAB:
            return F.one_hot(codes, self.vocab_size).t().to(self.weight_out.dtype)
        return codes

    def _input_projection(
        self, lookup: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, lo: int = 0, hi: int | None = None
    ) -> torch.Tensor:
        """``weight @ input + bias`` for every time step, ``(K, rows, T*B)``, for members ``lo:hi``
        (``weight`` and ``bias`` are theirs).

        Codes never materialise the embedded sequence: the embedding is folded into the weight
        first (a ``(K, rows, vocab)`` table), then the table is read by a one-hot product (small
        vocabularies) or a gather. Shared float features take one product for all members.
        """
        k, rows = weight.shape[:2]
        if self.vocab_size is None:
            out = torch.addmm(bias.reshape(-1, 1), weight.reshape(k * rows, -1), lookup)
            return out.view(k, rows, -1)
        table = torch.baddbmm(bias.unsqueeze(2), weight, self.embedding[lo:hi].transpose(1, 2))
        if lookup.dim() == 1:
            return table.index_select(2, lookup)
        return torch.mm(table.reshape(k * rows, -1), lookup).view(k, rows, -1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``(K, B, num_classes)`` from each sample's final state (at its own last step).

        Inside, activations are feature-major, ``(K, features, T, B)``: every matrix product then
        has the batch as its long side, which batched BLAS runs several times faster than the
        transposed layout for layers this narrow.
        """
        x, lengths = self._check_inputs(x, lengths)
        k_all, (b, t_max) = self.population_size, x.shape[:2]
        steps = torch.arange(t_max, device=x.device)
        valid = (lengths.unsqueeze(0) > steps.unsqueeze(1)).view(t_max, 1, 1, b)  # (T, 1, 1, B)
        full_until = int(lengths.min())  # steps before this one are real for every sample
        reads = self._reads()
        lookup = self._input_lookup(x)
        sources: list[tuple[int, torch.Tensor] | None] = [None]  # layer s's (lo, states over time) at s + 1
        finals = []
        for l, ((lo, hi), w) in enumerate(zip(self._layer_members(), self.widths)):
            k = hi - lo
            w_ih = self._p("weight_ih", l)[lo:hi] * self._p("mask_ih", l)[lo:hi]
            w_hh = self._p("weight_hh", l)[lo:hi] * self._p("mask_hh", l)[lo:hi]
            b_ih, b_hh = self._p("bias_ih", l)[lo:hi], self._p("bias_hh", l)[lo:hi]
            if self.cell == "lstm":  # torch's order i, f, g, o -> i, f, o, g: one sigmoid, one tanh
                order = torch.arange(4 * w, device=w_ih.device).view(4, w)[[0, 1, 3, 2]].reshape(-1)
                w_ih, w_hh, b_ih, b_hh = (p.index_select(1, order) for p in (w_ih, w_hh, b_ih, b_hh))
            bias = b_ih if self.cell == "gru" else b_ih + b_hh
            # the input projection of every time step at once: one product per source block read
            pre = bias.unsqueeze(2)
            for block, start, stop in reads[l]:
                if block == 0:
                    pre = self._input_projection(lookup, w_ih[:, :, start:stop], bias, lo, hi)
                else:
                    source_lo, states = sources[block]
                    states = states[lo - source_lo : hi - source_lo]  # a layer's members include every later one's
                    pre = torch.baddbmm(pre, w_ih[:, :, start:stop], states.view(k, stop - start, -1))
            if reads[l]:
                pre = pre.view(k, -1, t_max, b)
            else:  # no member reads anything: the bias alone
                pre = pre.unsqueeze(3).expand(k, -1, t_max, b)
            needed = any(block == l + 1 for later in reads[l + 1 :] for block, _, _ in later)
            outputs, final = recur(self.cell, pre, w_hh, b_hh, valid, full_until, needed)
            sources.append((lo, outputs))
            finals.append(final if k == k_all else F.pad(final, (0, 0, 0, 0, lo, k_all - hi)))
        state = torch.cat(finals, 1) if len(finals) > 1 else finals[0]  # (K, units, B)
        head = self.weight_out * self.mask_out
        return torch.baddbmm(self.bias_out.unsqueeze(2), head, state).transpose(1, 2)
