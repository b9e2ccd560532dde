"""The Surgeon's recommendations: removable directions, probabilities, BIC rank, candidate plans."""

import pytest
import torch
from torch import nn

from netbonsai.errors import InputError
from netbonsai.surgery.recommend import (
    LayerAdvice,
    Modification,
    bic_rank,
    modifications,
    plan_children,
    recommend,
    removable_count,
    singular_values,
)


def kernel(s: list[float], rows: int, cols: int, seed: int = 0) -> torch.Tensor:
    """A ``rows x cols`` matrix with singular values ``s`` (``min(rows, cols)`` of them)."""
    g = torch.Generator().manual_seed(seed)
    u = torch.linalg.qr(torch.randn(rows, rows, generator=g, dtype=torch.float64))[0]
    v = torch.linalg.qr(torch.randn(cols, cols, generator=g, dtype=torch.float64))[0]
    r = len(s)
    return u[:, :r] @ torch.diag(torch.tensor(s, dtype=torch.float64)) @ v[:, :r].T


def net_with(kernels: list[torch.Tensor], n_in: int = 3) -> nn.Sequential:
    """A ReLU MLP whose Linear layers after the first have the given weights."""
    sizes = [n_in, kernels[0].shape[1], *(k.shape[0] for k in kernels)]
    modules: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        modules.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            modules.append(nn.ReLU())
    net = nn.Sequential(*modules)
    linears = [m for m in net if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for linear, k in zip(linears[1:], kernels):
            linear.weight.copy_(k)
    return net


S = [10.0, 2.0, 0.5, 0.2, 0.04]


def test_singular_values_and_removable_count_for_both_thresholds():
    net = net_with([kernel(S, 5, 5)])
    s = singular_values(net, 0)
    assert s.dtype == torch.float64
    assert torch.allclose(s, torch.tensor(S, dtype=torch.float64), atol=1e-5)
    assert removable_count(s, 5) == 2  # 0.2 and 0.04 below 0.3
    assert removable_count(s, 5, absolute=0.0) == 1  # 0.04 < 5e-3 * 10
    assert removable_count(s, 5, absolute=0.0, relative=0.03) == 2  # 0.2 and 0.04 < 0.3
    assert removable_count(s, 5, absolute=0.0, relative=0.0) == 0
    assert [a.removable for a in recommend(net, absolute=0.0)] == [1]


def test_null_space_directions_count_only_when_asked():
    net = net_with([kernel([3.0, 2.0, 1.0], 3, 7)])  # 7 units read by a 3-unit layer
    assert singular_values(net, 0).numel() == 3
    assert recommend(net)[0].removable == 0  # the authors' count: the kernel's own singular values
    assert recommend(net, null_space=True)[0].removable == 4


def test_probabilities_of_a_three_hidden_layer_net_follow_the_formulas():
    kernels = [kernel([5.0, 1.0, 0.1, 0.01], 4, 4, seed=1),  # hidden 0: 4 units, 2 removable
               kernel([4.0, 3.0, 2.0, 1.0], 6, 4, seed=2),   # hidden 1: 4 units, 0 removable
               kernel([1.0, 0.2], 2, 6, seed=3)]             # hidden 2: 6 units, 1 small (+ 4 null, not counted)
    advice = recommend(net_with(kernels))
    assert [a.layer for a in advice] == [0, 1, 2]
    assert [a.units for a in advice] == [4, 4, 6]
    assert [a.removable for a in advice] == [2, 0, 1]
    n_weight_layers = 4
    for a in advice:
        share, place = a.removable / a.units, (a.layer + 1) / (n_weight_layers - 1)
        assert a.p_add_neurons == 1 - share
        assert a.p_add_layer == (1 - share) * place
        assert a.p_svd == a.p_truncate == share
        assert a.p_remove_layer == share * place
    assert advice[2].to_dict()["singular_values"] == list(advice[2].singular_values)
    assert len(advice[2].singular_values) == 2


def test_recommend_edge_cases():
    assert recommend(nn.Sequential(nn.Flatten(), nn.Linear(4, 2))) == []
    with pytest.raises(InputError, match="threshold, bic"):
        recommend(net_with([kernel(S, 5, 5)]), rule="nope")
    with pytest.raises(InputError):
        singular_values(net_with([kernel(S, 5, 5)]), 1)


def low_rank(rows: int, cols: int, rank: int, noise: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(rows, rank, generator=g), torch.randn(rank, cols, generator=g)
    return a @ b + noise * torch.randn(rows, cols, generator=g)


def test_bic_rank_finds_the_rank_of_a_noisy_low_rank_matrix():
    assert bic_rank(low_rank(60, 40, 5, 0.01)) == 5
    assert bic_rank(low_rank(60, 40, 12, 0.01, seed=1)) == 12
    assert bic_rank(low_rank(40, 60, 5, 0.01, seed=2).double()) == 5
    assert bic_rank(low_rank(60, 40, 30, 0.01, seed=3)) == 30
    noise = torch.randn(50, 50, generator=torch.Generator().manual_seed(4))
    assert bic_rank(noise) == 1  # no structure
    exact = low_rank(20, 10, 3, 0.0, seed=5)  # float32 rounding error only: below the floor
    assert bic_rank(exact) == bic_rank(exact.half()) == 3
    g = torch.Generator().manual_seed(5)
    exact64 = torch.randn(20, 3, generator=g, dtype=torch.float64) @ torch.randn(3, 10, generator=g).double()
    assert bic_rank(exact64) == 3
    assert bic_rank(low_rank(50, 50, 20, 0.01, seed=6)) == 20
    assert bic_rank(low_rank(60, 40, 30, 0.3, seed=7)) in (30, 31)  # 30 for most seeds, 31 for some
    assert bic_rank(torch.zeros(4, 6)) == 1 and bic_rank(torch.ones(1, 5)) == 1
    with pytest.raises(InputError):
        bic_rank(torch.zeros(3))


def test_bic_rule_keeps_the_rank_of_the_outgoing_kernel():
    w = low_rank(30, 20, 4, 0.01, seed=6)
    net = net_with([w])
    advice = recommend(net, rule="bic")
    assert [a.removable for a in advice] == [16]
    assert advice[0].p_svd == 16 / 20


def advice_for(layer: int, units: int, removable: int, n_hidden: int = 2) -> LayerAdvice:
    share, place = removable / units, (layer + 1) / n_hidden
    return LayerAdvice(layer, units, (), removable, 1 - share, (1 - share) * place,
                       share, share, share * place)


def test_modifications_are_every_candidate_most_probable_first():
    advice = [advice_for(0, 20, 5), advice_for(1, 40, 0)]
    mods = modifications(advice)
    assert [m.label for m in mods] == [
        "add-neurons@1+4", "add-neurons@1+40", "add-layer@1",  # p 1, 1, 1
        "add-neurons@0+2", "add-neurons@0+20",  # p 0.75
        "add-layer@0",  # 0.375
        "svd-narrow@0:15", "svd-split@0:15",  # 0.25
        "remove-layer@0",  # 0.125
        "remove-layer@1",  # 0
    ]
    assert mods[0] == Modification("add-neurons", 1, 4, 1.0)
    assert mods[6].to_dict() == {"kind": "svd-narrow", "layer": 0, "amount": 15, "p": 0.25,
                                 "label": "svd-narrow@0:15"}
    only = modifications([advice_for(0, 6, 6, n_hidden=1)])  # nothing would be kept: no svd
    assert [m.kind for m in only] == ["add-neurons", "add-neurons", "add-layer"]  # the only hidden layer stays


def test_plan_children_picks_one_per_kind_the_parent_and_one_random():
    mods = modifications([advice_for(0, 20, 5), advice_for(1, 40, 0)])
    children = plan_children(mods, set(), torch.Generator().manual_seed(0))
    labels = [c.label for c in children]
    assert labels[:6] == ["add-neurons@1+4", "add-layer@1", "svd-narrow@0:15", "svd-split@0:15",
                          "remove-layer@0", "identity"]
    assert children[5] == Modification("identity", -1, 0, 1.0)
    assert len(children) == 7 and labels[6] not in labels[:6]
    tried = {"add-neurons@1+4", "add-layer@1", "svd-narrow@0:15"}
    again = [c.label for c in plan_children(mods, tried, torch.Generator().manual_seed(0))]
    assert again[:4] == ["add-neurons@1+40", "add-layer@0", "svd-split@0:15", "remove-layer@0"]
    assert not tried & set(again)
    assert tried == {"add-neurons@1+4", "add-layer@1", "svd-narrow@0:15"}  # the caller updates it


def test_plan_children_skips_kinds_of_probability_zero_and_is_reproducible():
    mods = modifications([advice_for(0, 20, 0, n_hidden=1)])  # remove-layer has p 0
    draws = [plan_children(mods, set(), torch.Generator().manual_seed(seed)) for seed in range(20)]
    assert all(d[:3] == draws[0][:3] for d in draws)
    assert [c.kind for c in draws[0][:3]] == ["add-neurons", "add-layer", "identity"]
    assert draws[0] == plan_children(mods, set(), torch.Generator().manual_seed(0))
    assert {d[3].label for d in draws} == {"add-neurons@0+20"}  # the one leftover
    deeper = modifications([advice_for(0, 20, 0), advice_for(1, 20, 0)])  # remove-layer offered, p 0
    randoms = {plan_children(deeper, set(), torch.Generator().manual_seed(seed))[-1].kind for seed in range(40)}
    assert "remove-layer" in randoms  # leftovers of p 0 can be drawn
    everything = {m.label for m in mods}
    assert [c.label for c in plan_children(mods, everything, torch.Generator())] == ["identity"]
