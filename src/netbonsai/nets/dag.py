"""DagNet: a neuron-level sparse feed-forward network on an arbitrary DAG, with a population dimension.

Nodes are kept in topological order: ``n_in`` inputs, then hidden neurons, then ``n_out`` outputs.
A synapse ``i -> j`` (always ``i < j``) is live where ``mask[k, i, j]`` is True; its weight is
``weight[k, i, j]``. Every non-input node has a bias and an activation.

The leading *population* dimension ``K`` holds independent variants of the same node set (for
example K candidate masks, or K random initialisations of a new neuron). Their parameters never
mix, so a loss summed over variants trains each as if it were alone.

The forward pass runs level by level (level = 1 + max level of a node's live sources; inputs are
level 0): one batched matmul per level over the concatenated activations of all earlier levels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from .activations import apply_activation, check_activation

ROLES = ("input", "hidden", "added", "output")


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


@dataclass(frozen=True)
class Liveness:
    """Which nodes of each variant carry signal (``varies``) and which influence an output (``useful``)."""

    varies: torch.Tensor  # (K, N) bool: input, or fed by a live edge from a varying node
    useful: torch.Tensor  # (K, N) bool: output, or feeds a live edge into a useful node
    kept: torch.Tensor  # (K, N) bool: nodes a compacted network keeps


class DagNet(nn.Module):
    """Sparse DAG network with per-node activations and a population dimension.

    Args:
        n_in: number of input nodes (the first ``n_in`` nodes).
        n_out: number of output nodes (the last ``n_out`` nodes).
        weight: ``(K, N, N)`` float weights, ``weight[k, i, j]`` for synapse ``i -> j``.
        mask: ``(K, N, N)`` bool, True where a synapse is live; must be strictly upper triangular.
        bias: ``(K, N)`` float biases (entries of input nodes are ignored and kept at zero).
        activations: one activation name per node (inputs must be ``"identity"``).
        roles: one of ``input|hidden|added|output`` per node; defaults from the position.
    """

    def __init__(
        self,
        n_in: int,
        n_out: int,
        weight: torch.Tensor,
        mask: torch.Tensor,
        bias: torch.Tensor,
        activations: Sequence[str],
        roles: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        if weight.dim() == 2:
            weight, mask, bias = weight.unsqueeze(0), mask.unsqueeze(0), bias.unsqueeze(0)
        n_nodes = weight.shape[-1]
        if roles is None:
            roles = ["input"] * n_in + ["hidden"] * (n_nodes - n_in - n_out) + ["output"] * n_out
        _validate_structure(n_in, n_out, weight, mask, bias, activations, roles)
        self.n_in = int(n_in)
        self.n_out = int(n_out)
        self.activations: tuple[str, ...] = tuple(activations)
        self.roles: tuple[str, ...] = tuple(roles)
        mask = mask.to(torch.bool).clone()
        self.weight = nn.Parameter((weight * mask).to(torch.get_default_dtype()).contiguous())
        bias = bias.to(torch.get_default_dtype()).clone()
        bias[:, : self.n_in] = 0.0
        self.bias = nn.Parameter(bias.contiguous())
        self.register_buffer("mask", mask)
        # Fixed affine maps around the network (not parameters): x' = (x - in_shift) / in_scale,
        # y = y' * out_scale + out_shift. They precondition training; fold_normalization()
        # absorbs them into the weights without changing the parameter count.
        self.register_buffer("in_shift", torch.zeros(self.n_in))
        self.register_buffer("in_scale", torch.ones(self.n_in))
        self.register_buffer("out_shift", torch.zeros(self.n_out))
        self.register_buffer("out_scale", torch.ones(self.n_out))
        self._plan_key: tuple | None = None
        self._plan: ForwardPlan | None = None
        # Free-form JSON-serialisable metadata (task, preprocessing, training config); saved
        # with the model file and carried over by every method that builds a new network.
        self.info: dict = {}

    # ------------------------------------------------------------------ construction
    @classmethod
    def mlp(
        cls,
        sizes: Sequence[int],
        activation: str = "tanh",
        output_activation: str = "identity",
        population: int = 1,
        generator: torch.Generator | None = None,
        skip: bool = False,
    ) -> "DagNet":
        """A dense layered MLP ``sizes = [n_in, h1, ..., n_out]`` initialised like ``nn.Linear``.

        Each layer's weights and biases are drawn from U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
        independently for each of the ``population`` variants. ``skip`` adds a synapse from
        every input to every output (a linear part beside the hidden layers), drawn after the
        layers from the same bound as the first layer, so the layers' draws do not change.
        """
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or any(s < 1 for s in sizes):
            raise InputError(f"MLP sizes must be at least two positive integers, got {sizes}")
        check_activation(activation)
        check_activation(output_activation)
        n_nodes = sum(sizes)
        weight = torch.zeros(population, n_nodes, n_nodes)
        mask = torch.zeros(population, n_nodes, n_nodes, dtype=torch.bool)
        bias = torch.zeros(population, n_nodes)
        offsets = np.cumsum([0] + sizes)
        for layer in range(1, len(sizes)):
            src = slice(offsets[layer - 1], offsets[layer])
            dst = slice(offsets[layer], offsets[layer + 1])
            bound = 1.0 / float(np.sqrt(sizes[layer - 1]))
            w = torch.rand(population, sizes[layer - 1], sizes[layer], generator=generator) * 2 - 1
            b = torch.rand(population, sizes[layer], generator=generator) * 2 - 1
            weight[:, src, dst] = w * bound
            bias[:, dst] = b * bound
            mask[:, src, dst] = True
        if skip and len(sizes) > 2:
            bound = 1.0 / float(np.sqrt(sizes[0]))
            w = torch.rand(population, sizes[0], sizes[-1], generator=generator) * 2 - 1
            weight[:, : sizes[0], n_nodes - sizes[-1] :] = w * bound
            mask[:, : sizes[0], n_nodes - sizes[-1] :] = True
        activations = (
            ["identity"] * sizes[0]
            + [activation] * (n_nodes - sizes[0] - sizes[-1])
            + [output_activation] * sizes[-1]
        )
        return cls(sizes[0], sizes[-1], weight, mask, bias, activations)

    # ------------------------------------------------------------------ basic properties
    @property
    def n_nodes(self) -> int:
        """Number of nodes, inputs and outputs included."""
        return self.weight.shape[-1]

    @property
    def population_size(self) -> int:
        """Number of independent variants K."""
        return self.weight.shape[0]

    @property
    def n_hidden(self) -> int:
        """Number of hidden nodes (``hidden`` and ``added`` roles)."""
        return self.n_nodes - self.n_in - self.n_out

    @property
    def output_nodes(self) -> range:
        """Indices of the output nodes."""
        return range(self.n_nodes - self.n_out, self.n_nodes)

    def extra_repr(self) -> str:
        params = self.num_params_per_variant().tolist()
        shown = params if len(params) <= 4 else params[:4] + ["..."]
        return (
            f"n_in={self.n_in}, n_hidden={self.n_hidden}, n_out={self.n_out}, "
            f"population={self.population_size}, params={shown}"
        )

    # ------------------------------------------------------------------ structure analysis
    def levels(self) -> np.ndarray:
        """Level of every node over the union of the population's masks (inputs are level 0)."""
        union = self.mask.any(dim=0).cpu().numpy()
        return _levels(union, self.n_in)

    def liveness(self) -> Liveness:
        """Per-variant analysis of which nodes vary with the input and which reach an output."""
        mask = self.mask.to(torch.float32)
        n = self.n_nodes
        is_input = torch.zeros(n, dtype=torch.bool, device=mask.device)
        is_input[: self.n_in] = True
        is_output = torch.zeros(n, dtype=torch.bool, device=mask.device)
        is_output[n - self.n_out :] = True
        varies = is_input.expand(self.population_size, n).clone()
        while True:  # at most depth iterations
            fed = torch.bmm(varies.to(mask.dtype).unsqueeze(1), mask).squeeze(1) > 0
            new = varies | fed
            if torch.equal(new, varies):
                break
            varies = new
        useful = is_output.expand(self.population_size, n).clone()
        while True:
            feeds = torch.bmm(mask, useful.to(mask.dtype).unsqueeze(2)).squeeze(2) > 0
            new = useful | feeds
            if torch.equal(new, useful):
                break
            useful = new
        kept = (varies & useful) | is_input | is_output
        return Liveness(varies=varies, useful=useful, kept=kept)

    def num_params(self) -> int:
        """The parameter count of the compacted network (population size 1).

        Counts live synapses between kept nodes plus the biases of kept non-input nodes, so a
        dense 4-5-5-1 MLP counts 61. Synapses from constant neurons (folded into biases by
        compaction) and synapses that cannot reach an output are not counted. A population
        with more than one variant raises ``ValueError``: use :meth:`num_params_per_variant`.
        """
        if self.population_size != 1:
            raise ValueError(
                f"num_params() counts a single network, but this population holds {self.population_size} "
                "variants; use num_params_per_variant() for a (K,) tensor of counts"
            )
        return int(self.num_params_per_variant()[0])

    def num_params_per_variant(self) -> torch.Tensor:
        """Complexity per variant, ``(K,)`` long: the parameter count of each compacted network
        (see :meth:`num_params`)."""
        live = self.liveness()
        sources = live.kept & live.varies
        n_edges = (self.mask & sources.unsqueeze(2) & live.kept.unsqueeze(1)).sum(dim=(1, 2))
        return n_edges + live.kept[:, self.n_in :].sum(dim=1)

    def edges(self, variant: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Live synapses of one variant as ``(sources, targets, weights)`` numpy arrays."""
        src, dst = torch.nonzero(self.mask[variant], as_tuple=True)
        w = self.weight.detach()[variant, src, dst]
        return src.cpu().numpy(), dst.cpu().numpy(), w.cpu().numpy()

    # ------------------------------------------------------------------ forward
    def plan(self) -> ForwardPlan:
        """The cached evaluation order, recomputed whenever the mask changes."""
        key = (self.mask.data_ptr(), self.mask._version, tuple(self.mask.shape))
        if self._plan is None or self._plan_key != key:
            union = self.mask.any(dim=0).cpu().numpy()
            self._plan = _make_plan(_levels(union, self.n_in), union, self.activations, self.n_out, self.mask.device)
            self._plan_key = key
        return self._plan

    def population(self, x: torch.Tensor, members: torch.Tensor | None = None) -> torch.Tensor:
        """Outputs of every variant: ``x`` of shape ``(B, n_in)`` or ``(K, B, n_in)`` -> ``(K, B, n_out)``.

        ``members`` (variant indices, a long tensor ``(M,)``) computes only those variants,
        ``(M, B, n_out)``, at the cost of M; gradients still reach the full ``(K, ...)`` parameters (zero elsewhere).
        """
        blocks, plan = self._run(x, members=members)
        if plan.out_slice is not None and plan.out_slice == plan.bounds[-1]:
            out = blocks[-1]  # the common case: the outputs are exactly the last level
        else:
            out = torch.cat(blocks, dim=1)[:, plan.out_pos]
        return out.transpose(1, 2) * self.out_scale + self.out_shift

    def node_values(self, x: torch.Tensor) -> torch.Tensor:
        """Activations of all nodes in node order, ``(B, n_in)`` -> ``(K, B, N)``: inputs after
        standardisation, outputs before de-standardisation (the values the weights act on)."""
        blocks, plan = self._run(x)
        rows = torch.cat(blocks, dim=1)
        values = torch.empty_like(rows)
        values[:, plan.perm] = rows
        return values.transpose(1, 2)

    def sensitivities(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-sample quantities for Gauss-Newton training, all in node order.

        Returns node activations ``(K, N, B)`` (inputs standardised), the sensitivities
        ``d output_o / d pre-activation_j`` ``(K, n_out, N, B)`` (outputs de-standardised),
        and the outputs ``(K, B, n_out)``. The Jacobian of output o with respect to the weight
        of synapse i -> j is ``activations[:, i] * sensitivities[:, o, j]``.
        """
        k, n = self.population_size, self.n_nodes
        batch = x.shape[-2]
        probe = torch.zeros(k, n, batch, dtype=self.weight.dtype, device=self.weight.device, requires_grad=True)
        with torch.enable_grad():
            blocks, plan = self._run(x.detach(), probe)
            rows = torch.cat(blocks, dim=1)
            out = rows[:, plan.out_pos] * self.out_scale[None, :, None] + self.out_shift[None, :, None]
            deltas = [
                torch.autograd.grad(out[:, o].sum(), probe, retain_graph=o + 1 < self.n_out)[0]
                for o in range(self.n_out)
            ]
        activations = torch.empty_like(rows)
        activations[:, plan.perm] = rows.detach()
        sens = torch.empty(k, self.n_out, n, batch, dtype=rows.dtype, device=rows.device)
        sens[:, :, plan.perm] = torch.stack(deltas, dim=1)
        return activations, sens, out.detach().transpose(1, 2)

    def _run(
        self, x: torch.Tensor, probe: torch.Tensor | None = None, members: torch.Tensor | None = None
    ) -> tuple[list[torch.Tensor], ForwardPlan]:
        """Level-by-level evaluation, feature-major: one ``(K, n_level, B)`` block per level.

        Activations are rows per node (contiguous over samples). A level's pre-activation is
        its bias plus one batched matmul per earlier level that feeds it (:func:`run_levels`),
        so no level is ever copied into a concatenated buffer, and each elementwise op runs on
        contiguous memory.
        ``probe`` (``(K, N, B)`` zeros in plan order) is added to the pre-activations so that
        its gradient is the per-sample sensitivity of a scalar to every node's pre-activation.
        ``members`` restricts the evaluation to those variants (the plan stays the population's).
        """
        k = self.population_size
        if x.dim() == 2:
            x = x.unsqueeze(0)
        if x.dim() != 3 or x.shape[0] not in (1, k) or x.shape[-1] != self.n_in:
            raise InputError(
                f"expected input of shape (B, {self.n_in}) or ({k}, B, {self.n_in}), got {tuple(x.shape)}"
            )
        plan = self.plan()
        if members is not None and (probe is not None or members.dtype != torch.long):
            raise InputError("members must be a long tensor of variant indices, without a probe")
        if members is None:
            weight = self.weight * self.mask
            bias = self.bias
        else:
            weight = self.weight[members] * self.mask[members]
            bias = self.bias[members]
            k = int(members.numel())
            if x.shape[0] > 1:
                x = x[members]
        if not plan.identity:
            weight = weight[:, plan.perm[:, None], plan.perm[None, :]]
            bias = bias[:, plan.perm]
        weight_t = weight.transpose(1, 2)  # weight_t[k, j, i]: synapse i -> j
        x = (x.to(weight.dtype) - self.in_shift) / self.in_scale
        blocks = [x.transpose(1, 2).contiguous().expand(k, -1, -1)]
        run_levels(plan, weight_t, bias, blocks, probe)
        return blocks, plan

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, n_in) -> (B, n_out)`` for a single network; ``(K, B, n_out)`` when K > 1."""
        out = self.population(x)
        return out[0] if self.population_size == 1 and x.dim() == 2 else out

    # ------------------------------------------------------------------ population handling
    def _rebuild(self, weight, mask, bias, activations=None, roles=None) -> "DagNet":
        net = DagNet(
            self.n_in,
            self.n_out,
            weight,
            mask,
            bias,
            self.activations if activations is None else activations,
            self.roles if roles is None else roles,
        )
        net.set_normalization(self.in_shift, self.in_scale, self.out_shift, self.out_scale)
        net.info = dict(self.info)
        return net.to(self.weight.device)

    # ------------------------------------------------------------------ normalization
    @property
    def has_normalization(self) -> bool:
        """Whether the input/output affine maps differ from the identity."""
        return not (
            bool((self.in_shift == 0).all()) and bool((self.in_scale == 1).all())
            and bool((self.out_shift == 0).all()) and bool((self.out_scale == 1).all())
        )

    @torch.no_grad()
    def set_normalization(
        self,
        in_shift: torch.Tensor,
        in_scale: torch.Tensor,
        out_shift: torch.Tensor,
        out_scale: torch.Tensor,
    ) -> "DagNet":
        """Set the fixed input standardisation and output de-standardisation (in place).

        Changing them changes the function the weights compute; use
        :func:`netbonsai.nets.normalization.standardize_for` to set them on a fresh network.
        """
        for name, value, size in (
            ("in_shift", in_shift, self.n_in),
            ("in_scale", in_scale, self.n_in),
            ("out_shift", out_shift, self.n_out),
            ("out_scale", out_scale, self.n_out),
        ):
            value = torch.as_tensor(value, dtype=self.weight.dtype).reshape(-1)
            if value.numel() != size or not torch.isfinite(value).all():
                raise InputError(f"{name} must hold {size} finite values")
            if name.endswith("scale") and bool((value == 0).any()):
                raise InputError(f"{name} must be non-zero")
            getattr(self, name).copy_(value)
        output_affine = not (bool((self.out_shift == 0).all()) and bool((self.out_scale == 1).all()))
        if output_affine and any(self.activations[o] != "identity" for o in self.output_nodes):
            raise InputError("output de-standardisation needs identity output activations")
        return self

    @torch.no_grad()
    def fold_normalization(self) -> "DagNet":
        """An equivalent network with identity normalization: the affine maps move into the
        weights of input synapses, output synapses and the affected biases (same parameter count)."""
        weight = self.weight.detach() * self.mask
        bias = self.bias.detach().clone()
        scale = self.in_scale.to(weight.dtype)
        shift = self.in_shift.to(weight.dtype)
        inputs = slice(0, self.n_in)
        bias = bias - torch.einsum("kij,i->kj", weight[:, inputs], shift / scale)
        weight = weight.clone()
        weight[:, inputs] = weight[:, inputs] / scale[None, :, None]
        outputs = slice(self.n_nodes - self.n_out, self.n_nodes)
        out_scale = self.out_scale.to(weight.dtype)
        out_shift = self.out_shift.to(weight.dtype)
        # A synapse leaving an output node used its standardised value y' = (y - shift) / scale.
        bias = bias - torch.einsum("kij,i->kj", weight[:, outputs], out_shift / out_scale)
        weight[:, outputs] = weight[:, outputs] / out_scale[None, :, None]
        weight[:, :, outputs] = weight[:, :, outputs] * out_scale[None, None, :]
        bias[:, outputs] = bias[:, outputs] * out_scale + out_shift
        bias[:, : self.n_in] = 0.0
        net = DagNet(self.n_in, self.n_out, weight, self.mask, bias, self.activations, self.roles)
        net.info = dict(self.info)
        return net.to(self.weight.device)

    def clone(self) -> "DagNet":
        """An independent copy (parameters detached from any graph)."""
        return self._rebuild(self.weight.detach(), self.mask, self.bias.detach())

    def expand(self, population: int) -> "DagNet":
        """``population`` independent copies of a single-variant network."""
        if self.population_size != 1:
            raise InputError("expand() needs a network with population size 1")
        w = self.weight.detach().expand(population, -1, -1).clone()
        m = self.mask.expand(population, -1, -1).clone()
        b = self.bias.detach().expand(population, -1).clone()
        return self._rebuild(w, m, b)

    def select(self, index: int | Sequence[int] | torch.Tensor) -> "DagNet":
        """The variant(s) at ``index`` as a new network (an int gives population size 1)."""
        if isinstance(index, int):
            index = [index]
        idx = torch.as_tensor(index, dtype=torch.long, device=self.weight.device)
        return self._rebuild(self.weight.detach()[idx], self.mask[idx], self.bias.detach()[idx])

    @staticmethod
    def stack(nets: Sequence["DagNet"]) -> "DagNet":
        """Concatenate the populations of networks that share nodes, activations and roles."""
        first = nets[0]
        for net in nets[1:]:
            if (net.n_in, net.n_out, net.activations, net.roles) != (
                first.n_in,
                first.n_out,
                first.activations,
                first.roles,
            ):
                raise InputError("stack() needs networks with the same nodes, activations and roles")
        return first._rebuild(
            torch.cat([n.weight.detach() for n in nets]),
            torch.cat([n.mask for n in nets]),
            torch.cat([n.bias.detach() for n in nets]),
        )

    # ------------------------------------------------------------------ structural edits
    @torch.no_grad()
    def apply_mask_(self) -> "DagNet":
        """Force masked weights and input biases to exactly zero (after an optimiser step)."""
        self.weight.mul_(self.mask)
        self.bias[:, : self.n_in] = 0.0
        return self

    @torch.no_grad()
    def remove_synapses_(self, sources: torch.Tensor, targets: torch.Tensor) -> "DagNet":
        """Remove synapse ``sources[k] -> targets[k]`` from variant ``k`` (in place)."""
        rows = torch.arange(self.population_size, device=self.mask.device)
        self.mask[rows, sources, targets] = False
        self.weight[rows, sources, targets] = 0.0
        return self

    def insert_neuron(
        self,
        position: int,
        sources: Sequence[int],
        targets: Sequence[int],
        activation: str,
        role: str = "added",
    ) -> "DagNet":
        """A new network with one more neuron at ``position`` and live (zero-weight) synapses.

        ``sources`` and ``targets`` are node indices of *this* network; every source must come
        before ``position`` and every target at or after it, so topological order is kept.
        """
        check_activation(activation)
        n = self.n_nodes
        if not self.n_in <= position <= n - self.n_out:
            raise InputError(f"a neuron must be inserted between inputs and outputs, got {position}")
        sources = [int(s) for s in sources]
        targets = [int(t) for t in targets]
        if any(not 0 <= s < position for s in sources) or any(not position <= t < n for t in targets):
            raise InputError("inserted neuron would break topological order")
        old = torch.tensor([i if i < position else i + 1 for i in range(n)], device=self.mask.device)
        k = self.population_size
        weight = self.weight.new_zeros(k, n + 1, n + 1)
        mask = self.mask.new_zeros(k, n + 1, n + 1)
        bias = self.bias.new_zeros(k, n + 1)
        weight[:, old[:, None], old[None, :]] = self.weight.detach()
        mask[:, old[:, None], old[None, :]] = self.mask
        bias[:, old] = self.bias.detach()
        mask[:, sources, position] = True
        mask[:, position, old[targets]] = True
        activations = list(self.activations)
        activations.insert(position, activation)
        roles = list(self.roles)
        roles.insert(position, role)
        return self._rebuild(weight, mask, bias, activations, roles)

    @torch.no_grad()
    def compact(self) -> "DagNet":
        """Physically remove dead neurons; outputs are unchanged up to float rounding.

        Neurons that do not reach an output are dropped; neurons whose value does not depend on
        the input (no live input from a varying node) are folded into their consumers' biases.
        Needs a population of size 1.
        """
        if self.population_size != 1:
            raise InputError("compact() needs a network with population size 1")
        live = self.liveness()
        constant = ~live.varies[0]
        weight = self.weight.detach()[0] * self.mask[0]
        mask = self.mask[0].clone()
        bias = self.bias.detach()[0].clone()
        if constant.any():
            zeros = torch.zeros(1, self.n_in, dtype=weight.dtype, device=weight.device)
            values = self.node_values(zeros)[0, 0]
            bias = bias + values[constant] @ weight[constant]
            weight[constant] = 0.0
            mask[constant] = False
        keep = torch.nonzero(live.kept[0]).squeeze(1)
        keep_idx = keep.tolist()
        return self._rebuild(
            weight[keep][:, keep].unsqueeze(0),
            mask[keep][:, keep].unsqueeze(0),
            bias[keep].unsqueeze(0),
            [self.activations[i] for i in keep_idx],
            [self.roles[i] for i in keep_idx],
        )


# ---------------------------------------------------------------------- helpers
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


def _validate_structure(n_in, n_out, weight, mask, bias, activations, roles) -> None:
    if weight.dim() != 3 or weight.shape[1] != weight.shape[2]:
        raise InputError(f"weight must have shape (K, N, N), got {tuple(weight.shape)}")
    k, n, _ = weight.shape
    if tuple(mask.shape) != (k, n, n):
        raise InputError(f"mask shape {tuple(mask.shape)} does not match weight shape {(k, n, n)}")
    if tuple(bias.shape) != (k, n):
        raise InputError(f"bias shape {tuple(bias.shape)} does not match {(k, n)}")
    if n_in < 1 or n_out < 1 or n_in + n_out > n:
        raise InputError(f"invalid node counts: n_in={n_in}, n_out={n_out}, nodes={n}")
    if len(activations) != n or len(roles) != n:
        raise InputError(f"need one activation and one role per node ({n})")
    for name in activations:
        check_activation(name)
    if any(a != "identity" for a in activations[:n_in]):
        raise InputError("input nodes must use the identity activation")
    bad = [r for r in roles if r not in ROLES]
    if bad:
        raise InputError(f"unknown node role {bad[0]!r}; roles are {', '.join(ROLES)}")
    if any(r != "input" for r in roles[:n_in]) or any(r == "input" for r in roles[n_in:]):
        raise InputError("the first n_in nodes, and only they, must have role 'input'")
    if any(r != "output" for r in roles[n - n_out :]) or any(r == "output" for r in roles[: n - n_out]):
        raise InputError("the last n_out nodes, and only they, must have role 'output'")
    lower = torch.tril(torch.ones(n, n, dtype=torch.bool, device=mask.device))
    if (mask.to(torch.bool) & lower).any():
        raise InputError("mask has a synapse i -> j with j <= i: nodes are not in topological order")
    if mask[:, :, :n_in].to(torch.bool).any():
        raise InputError("mask has a synapse into an input node")
    if not torch.isfinite(weight).all() or not torch.isfinite(bias).all():
        raise InputError("weights or biases contain NaN or Inf")
