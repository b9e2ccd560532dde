"""A new method in one file, as docs/ARCHITECTURE.md shows: random synapse removal with retraining.

Used by tests/methods/test_new_method.py; registering it is one line (`register(RandomRemoval)`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from netbonsai.methods import Candidate, Method, MethodResult, candidate, finite_front
from netbonsai.methods.magnitude import pruned_architecture
from netbonsai.train import Budget, fit
from netbonsai.train.sweep import train_dense


@dataclass(frozen=True)
class RandomRemovalSettings:
    rounds: int = 4  # removal rounds
    fraction: float = 0.3  # share of the live synapses removed per round


class RandomRemoval(Method):
    """Remove a random share of the live synapses per round, retrain, keep every round's network."""

    name = "random-removal"
    summary = "random synapse removal with retraining (a test method)"
    Settings = RandomRemovalSettings

    def run(self, task, ctx) -> MethodResult:
        policy, grow = self.policy, self.policy.grow
        hidden = pruned_architecture(policy.dense_grid, task.n_in, task.n_out, grow.max_params)
        net = train_dense(task, hidden, grow.activation, policy.dense_epochs, grow.trainer, grow.seed).net
        generator = torch.Generator().manual_seed(grow.seed)
        found: list[Candidate] = []
        for round_ in range(1, self.settings.rounds + 1):
            live = torch.nonzero(net.mask[0])
            drop = live[torch.randperm(len(live), generator=generator)[: int(len(live) * self.settings.fraction)]]
            with torch.no_grad():
                net.mask[0, drop[:, 0], drop[:, 1]] = False
                net.weight[0, drop[:, 0], drop[:, 1]] = 0.0
            fit(net, task.train, Budget(epochs=grow.grow_epochs), grow.trainer, seed=grow.seed)
            found.append(candidate(net.clone(), task, training={"round": round_}))
            ctx.emit("round", **found[-1].summary())
        return MethodResult(finite_front(found), net, "rounds done", 0.0)
