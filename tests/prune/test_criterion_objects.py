"""Criteria are objects with a small interface (as Torch-Pruning's importances); names stop at the CLI."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from netbonsai.errors import InputError
from netbonsai.nets.masked import make_prunable
from netbonsai.prune import Criterion, prune_step, run_schedule


class LargestFirst(Criterion):
    """Removes the largest weights first (a criterion no name spells)."""

    name = "largest-first"

    def scores(self, table, model, *, data=None, loss="cross_entropy", generator=None):
        return -table.weight.abs()


class PerLayerLargest(LargestFirst):
    name = "per-layer-largest"
    per_group = True


def _model() -> nn.Module:
    torch.manual_seed(0)
    return make_prunable(nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)))


def test_a_criterion_object_decides_what_prune_step_removes() -> None:
    model = _model()
    weights = torch.cat([m.weight.detach().reshape(-1).abs() for m in model if hasattr(m, "mask")])
    threshold = weights.sort(descending=True).values[9]
    removed = prune_step(model, LargestFirst(), 10)
    assert removed == 10
    kept = torch.cat([(m.weight.detach() * m.mask).reshape(-1).abs() for m in model if hasattr(m, "mask")])
    assert kept.max() <= threshold  # the ten largest are gone
    assert int(sum(int((~m.mask).sum()) for m in model if hasattr(m, "mask"))) == 10


def test_per_group_criterion_takes_the_same_share_of_every_layer() -> None:
    model = _model()
    prune_step(model, PerLayerLargest(), 0.5)
    masked = [m for m in model if hasattr(m, "mask")]
    assert [int((~m.mask).sum()) for m in masked] == [24, 12]  # half of 48 and of 24


def test_run_schedule_takes_a_criterion_object_and_bad_scores_are_refused() -> None:
    model = _model()
    result = run_schedule(model, LargestFirst(), "relative:0.5", evaluate=lambda m: {}, target_sparsity=0.75)
    assert result.records[-1]["sparsity"] == pytest.approx(0.75, abs=0.02)

    class Broken(Criterion):
        name = "broken"

        def scores(self, table, model, **kwargs):
            return torch.zeros(3)

    with pytest.raises(InputError, match="gave"):
        prune_step(_model(), Broken(), 5)
