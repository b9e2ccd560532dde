"""DagNet: a neuron-level sparse feed-forward network on an arbitrary DAG, with a population dimension.

Nodes are kept in topological order: ``n_in`` inputs, then hidden neurons, then ``n_out`` outputs.
A synapse ``i -> j`` (always ``i < j``) is live where ``mask[k, i, j]`` is True; its weight is
``weight[k, i, j]``. Every non-input node has a bias and an activation.

The leading *population* dimension ``K`` holds independent variants of the same node set (for
example K candidate masks, or K random initialisations of a new neuron). Their parameters never
mix, so a loss summed over variants trains each as if it were alone.

The forward pass runs level by level (level = 1 + max level of a node's live sources; inputs are
level 0): one batched matmul per level over the concatenated activations of all earlier levels.

This module holds the class, its structure analysis, forward pass and normalization; the jobs
around it live beside it and are re-exported here: ``dag_plan`` (the evaluation plan and level
loop), ``dag_build`` (roles, structure checks, the MLP draw) and ``dag_edit`` (the mixin with
copies, population handling and structural edits).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from .dag_build import ROLES, _validate_structure, mlp_parameters
from .dag_edit import DagEdits
# DagNet.plan() looks _make_plan up here, so patching dag._make_plan (benchmarks/bench_forward.py) works
from .dag_plan import ForwardPlan, _levels, _make_plan, activate_level, run_levels

# the public names of this module and its helpers (ROLES, ForwardPlan, run_levels and
# activate_level are defined beside it and imported from here)
__all__ = ["ROLES", "DagNet", "ForwardPlan", "Liveness", "activate_level", "run_levels"]


@dataclass(frozen=True)
class Liveness:
    """Which nodes of each variant carry signal (``varies``) and which influence an output (``useful``)."""

    varies: torch.Tensor  # (K, N) bool: input, or fed by a live edge from a varying node
    useful: torch.Tensor  # (K, N) bool: output, or feeds a live edge into a useful node
    kept: torch.Tensor  # (K, N) bool: nodes a compacted network keeps


class DagNet(DagEdits, nn.Module):
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
        return cls(*mlp_parameters(sizes, activation, output_activation, population, generator, skip))

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
            # two index_selects: the same values and gradients as weight[:, perm[:, None], perm[None, :]],
            # with a backward 2.7x faster (K=30, 132 nodes: advanced indexing scatters element by element)
            weight = weight.index_select(1, plan.perm).index_select(2, plan.perm)
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

    # ------------------------------------------------------------------ rebuilding (for dag_edit)
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
