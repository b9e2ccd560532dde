"""The DagNet methods that make a new network from an existing one, or edit its synapses in place.

:class:`DagEdits` is a mixin of :class:`~netbonsai.nets.dag.DagNet` holding two jobs apart from
the network's definition and forward pass: population handling (``clone``, ``expand``,
``select``, ``stack``: copies and re-groupings of variants) and structural edits
(``apply_mask_``, ``remove_synapses_``, ``insert_neuron``, ``compact``), which growing and
pruning call. Every new network is built through ``DagNet._rebuild``, so normalization and
``info`` carry over; the mixin needs ``DagNet`` only for annotations and so imports nothing
from ``dag.py`` at run time (no import circle).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch

from ..errors import InputError
from .activations import check_activation

if TYPE_CHECKING:
    from .dag import DagNet


class DagEdits:
    """Population handling and structural edits of a :class:`~netbonsai.nets.dag.DagNet`
    (a mixin: every method works on a ``DagNet``)."""

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
