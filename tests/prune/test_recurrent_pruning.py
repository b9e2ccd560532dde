"""Pruning a MaskedRecurrent's i2h and/or h2h weights (paper 001, section 4.2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from netbonsai.errors import InputError
from netbonsai.nets.masked import count_weights, make_prunable
from netbonsai.nets.recurrent import MaskedRecurrent
from netbonsai.nets.structure import LayeredStructure
from netbonsai.prune import live_weights, prunable_groups, prune_step, run_schedule, saliency
from netbonsai.prune.groups import total_weights


def stacked(cell: str = "tanh", seed: int = 0) -> MaskedRecurrent:
    """Embedding 6 -> layers of 5 and 4: i2h 5*6 + 4*5 = 50 per gate, h2h 25 + 16 = 41 per gate."""
    return MaskedRecurrent([LayeredStructure.stacked(6, [5, 4])], cell, 2, vocab_size=8, seed=seed)


def snapshot(model: MaskedRecurrent) -> dict[str, tuple[str, torch.Tensor, torch.Tensor]]:
    return {name: (kind, w.detach().clone(), m.clone()) for name, kind, w, m in model.masked_weights()}


def removed_by_kind(before, model: MaskedRecurrent) -> dict[str, int]:
    out = {"i2h": 0, "h2h": 0, "out": 0}
    for name, kind, _, mask in model.masked_weights():
        out[kind] += int(before[name][2].sum() - mask.sum())
    return out


def test_groups_per_layer_and_kind() -> None:
    model = stacked()
    assert [g.name for g in prunable_groups(model)] == ["layer 0 i2h", "layer 0 h2h", "layer 1 i2h", "layer 1 h2h"]
    assert [g.param for g in prunable_groups(model, "h2h")] == ["weight_hh_l0", "weight_hh_l1"]
    assert [g.name for g in prunable_groups(model, "i2h")] == ["layer 0 i2h", "layer 1 i2h"]
    assert [g.name for g in prunable_groups(model, "all")][-1] == "output"
    # skip columns that the stacked structure lacks are not prunable weights
    assert live_weights(model, "i2h") == 50 and live_weights(model, "h2h") == 41 and live_weights(model) == 91
    assert total_weights(model) == 91 and count_weights(model) == (91, 91)


@pytest.mark.parametrize("cell", ["tanh", "gru"])
@pytest.mark.parametrize("parts, kinds", [("h2h", {"h2h"}), ("i2h", {"i2h"}), ("both", {"i2h", "h2h"}), (None, {"i2h", "h2h"})])
def test_magnitude_blinded_prunes_exactly_half_of_the_chosen_part(cell: str, parts, kinds) -> None:
    model = stacked(cell)
    gates = model.gates
    live = {"i2h": 50 * gates, "h2h": 41 * gates}
    before = snapshot(model)
    chosen = [w[m] for _, (kind, w, m) in before.items() if kind in kinds]
    threshold = torch.cat(chosen).abs().sort().values[int(0.5 * sum(live[k] for k in kinds) + 0.5) - 1]
    removed = prune_step(model, "magnitude-blinded", 0.5, parts=parts)
    expected = int(0.5 * sum(live[k] for k in kinds) + 0.5)
    assert removed == expected
    counts = removed_by_kind(before, model)
    assert sum(counts.values()) == expected and all(counts[k] == 0 for k in counts if k not in kinds)
    for name, kind, weight, mask in model.masked_weights():
        gone = before[name][2] & ~mask
        assert float(weight.detach()[~mask].abs().sum()) == 0.0
        if kind in kinds:  # global ranking: exactly the smallest magnitudes went
            assert bool((before[name][1][gone].abs() <= threshold).all())
            assert bool((before[name][1][mask].abs() >= threshold).all())


def test_run_schedule_on_h2h_counts_sparsity_over_h2h_only() -> None:
    model = stacked("gru")
    before = snapshot(model)
    h2h = 41 * 3
    result = run_schedule(model, "magnitude-blinded", "relative:0.3", parts="h2h", target_sparsity=0.5,
                          evaluate=lambda m: {})
    assert result.stopped == "target"
    assert result.records[0]["live_weights"] == h2h and result.records[0]["sparsity"] == 0.0
    assert result.final["live_weights"] == h2h - int(0.5 * h2h + 0.5)
    assert result.final["sparsity"] == pytest.approx(int(0.5 * h2h + 0.5) / h2h)
    assert removed_by_kind(before, model) == {"i2h": 0, "h2h": int(0.5 * h2h + 0.5), "out": 0}
    assert result.final["params"] == model.num_params()


def test_oneshot_i2h_and_the_output_head_only_with_all() -> None:
    model = stacked()
    before = snapshot(model)
    run_schedule(model, "magnitude-uniform", "oneshot:0.4", parts="i2h", evaluate=lambda m: {})
    assert removed_by_kind(before, model) == {"i2h": 20, "h2h": 0, "out": 0}
    before = snapshot(model)
    prune_step(model, "random", 10, parts="all", generator=torch.Generator().manual_seed(0))
    assert sum(removed_by_kind(before, model).values()) == 10
    table = saliency(model, "magnitude-distributed", parts="h2h")
    assert len(table) == live_weights(model, "h2h") and {g.name for g in table.groups} == {"layer 0 h2h", "layer 1 h2h"}


def test_skip_connections_count_as_i2h() -> None:
    layer1 = np.array([[1, 0, 1, 1, 0], [0, 1, 0, 1, 1], [0, 0, 0, 0, 1]], dtype=bool)  # inputs are skips
    structure = LayeredStructure(3, (2, 3), (np.ones((2, 3), dtype=bool), layer1), np.ones(5, dtype=bool))
    model = MaskedRecurrent([structure], "relu", 2, seed=0)
    assert live_weights(model, "i2h") == 6 + 7 and live_weights(model, "h2h") == 4 + 9
    prune_step(model, "magnitude-blinded", 13, parts="i2h")
    assert live_weights(model, "i2h") == 0 and live_weights(model, "h2h") == 13


def test_bad_parts_raise_input_error() -> None:
    with pytest.raises(InputError, match="unknown weight part"):
        prune_step(stacked(), "magnitude-blinded", 0.5, parts="hidden")
    mlp = make_prunable(nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)))
    with pytest.raises(InputError, match="h2h"):
        prune_step(mlp, "magnitude-blinded", 0.5, parts="h2h")
    with pytest.raises(InputError, match="i2h"):
        run_schedule(mlp, "magnitude-blinded", "oneshot:0.5", parts="i2h", evaluate=lambda m: {})
    assert prune_step(mlp, "magnitude-blinded", 0.5, parts="all") == 10  # every group of a plain model
    population = MaskedRecurrent([LayeredStructure.stacked(6, [5]), LayeredStructure.stacked(6, [3])], "gru", 2)
    with pytest.raises(InputError, match="select"):
        prune_step(population, "magnitude-blinded", 0.5)
    codes, labels = torch.zeros(4, 3, dtype=torch.long), torch.zeros(4, dtype=torch.long)
    with pytest.raises(InputError, match="recurrent"):
        prune_step(stacked(), "obd", 0.5, data=(codes, labels))
