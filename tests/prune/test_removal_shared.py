"""Paper 000's removal step has one implementation (prune/removal.py): the grow-and-prune
search's step and loss-aware removal at chunk 1 are the same trial and pick the same synapse."""

from __future__ import annotations

import torch

from netbonsai.grow.steps import removal_step
from netbonsai.nets.synapses import lowest_synapses
from netbonsai.prune.loss_aware import LossAwareConfig, loss_aware_prune
from netbonsai.prune.removal import removal_trials, variant_windows

from .test_loss_aware import TRAINER, data, trained


def test_grow_step_and_loss_aware_chunk_one_remove_the_same_synapse() -> None:
    x, y = data()
    net = trained(seed=3)
    step = removal_step(net, x, y, n_candidates=8, n_trials=3, trial_epochs=5, trainer=TRAINER)
    config = LossAwareConfig(chunk=1, n_candidates=8, n_trials=3, trial_epochs=5, eps=10.0, max_steps=1, trainer=TRAINER)
    pruned = loss_aware_prune(net, x, y, config)
    gone = (net.mask[0] & ~pruned.net.mask[0]).nonzero().tolist()
    assert gone == [list(step.synapse)]
    assert abs(pruned.steps[0]["train_loss"] - step.train_loss) <= 1e-5 * step.train_loss  # kernels differ in rounding only


def test_the_two_kernels_compute_the_same_trial() -> None:
    x, y = data()
    net = trained(seed=1)
    sources, targets = lowest_synapses(net, 10)
    windows = variant_windows(4, 3, "sizes")
    plain = removal_trials(net, sources, targets, windows, x, y, TRAINER, 5, seed=0, fast=False)
    fast = removal_trials(net, sources, targets, windows, x, y, TRAINER, 5, seed=0, fast=True)
    assert plain.sizes == fast.sizes == [4, 2, 1]
    torch.testing.assert_close(plain.costs, fast.costs, rtol=1e-5, atol=1e-7)
    assert [c.tolist() for c in plain.chosen] == [c.tolist() for c in fast.chosen]
    torch.testing.assert_close(plain.losses, fast.losses, rtol=1e-4, atol=1e-6)
    removed = (~plain.trials.mask & net.mask).flatten(1).sum(1).tolist()
    assert removed == [4, 2, 1]  # each variant removes exactly its window
