"""Pruning criteria: which weights each method removes, on masked modules and on DagNet."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call

from netbonsai.errors import InputError
from netbonsai.nets import DagNet
from netbonsai.nets.masked import count_weights, make_prunable, masked_layers
from netbonsai.prune import (
    METHODS,
    live_table,
    live_weights,
    prunable_groups,
    prune_step,
    saliency,
    select_bucket,
)
from netbonsai.prune import criteria
from netbonsai.prune.curvature import exact_diagonal, fisher_diagonal



def dag_mlp(population: int = 1, seed: int = 0) -> DagNet:
    """A dense 4-5-5-1 DagNet (nodes: inputs 0-3, layer 1 4-8, layer 2 9-13, output 14)."""
    return DagNet.mlp([4, 5, 5, 1], population=population, generator=torch.Generator().manual_seed(seed))


def model(seed: int = 0, sizes=(6, 10, 8, 3), dtype=torch.float32) -> nn.Sequential:
    """A masked MLP; layer weight counts for the default sizes: 60, 80, 24."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b, dtype=dtype), nn.Tanh()]
    return make_prunable(nn.Sequential(*layers[:-1]))


def weights(m: nn.Module) -> list[torch.Tensor]:
    return [layer.weight.detach().clone() for _, layer in masked_layers(m)]


def masks(m: nn.Module) -> list[torch.Tensor]:
    return [layer.mask.clone() for _, layer in masked_layers(m)]


def classification(n: int = 40, n_in: int = 6, classes: int = 3, seed: int = 1, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, n_in, generator=g, dtype=dtype)
    return x, torch.randint(0, classes, (n,), generator=g)


def assert_removed_zero(m: nn.Module) -> None:
    for _, layer in masked_layers(m):
        assert bool((layer.weight[~layer.mask] == 0).all())


# ---------------------------------------------------------------------- magnitude criteria
def test_blinded_removes_exactly_the_globally_smallest_magnitudes() -> None:
    m = model()
    before = torch.cat([w.reshape(-1) for w in weights(m)])
    biases = [layer.bias.detach().clone() for _, layer in masked_layers(m)]
    assert prune_step(m, "magnitude-blinded", 50) == 50
    removed = ~torch.cat([mk.reshape(-1) for mk in masks(m)])
    expected = torch.zeros_like(removed)
    expected[torch.argsort(before.abs())[:50]] = True
    assert torch.equal(removed, expected)
    assert before.abs()[removed].max() < before.abs()[~removed].min()
    assert_removed_zero(m)
    assert all(torch.equal(b, layer.bias) for b, (_, layer) in zip(biases, masked_layers(m)))  # not pruned


def test_fraction_counts_live_weights_and_removed_weights_never_come_back() -> None:
    m = model()
    assert prune_step(m, "magnitude-blinded", 0.5) == 82  # half of 164
    first = masks(m)
    with torch.no_grad():  # make removed weights look important: they must still not revive
        for _, layer in masked_layers(m):
            layer.weight[~layer.mask] = 100.0
    assert prune_step(m, "magnitude-blinded", 0.25) == 21  # round(0.25 * 82 = 20.5) half up
    for old, new in zip(first, masks(m)):
        assert not bool((new & ~old).any())
    assert count_weights(m) == (61, 164)
    assert prune_step(m, "magnitude-blinded", 1000) == 61  # an int beyond what is live is capped
    assert prune_step(m, "magnitude-blinded", 5) == 0
    assert_removed_zero(m)


def test_uniform_removes_the_same_fraction_of_every_layer() -> None:
    m = model()
    before = weights(m)
    assert prune_step(m, "magnitude-uniform", 0.25) == 41  # 15 + 20 + 6 of 60, 80, 24
    assert [int((~mk).sum()) for mk in masks(m)] == [15, 20, 6]
    for w, mk in zip(before, masks(m)):  # within a layer, the smallest go
        assert w.abs()[~mk].max() < w.abs()[mk].min()
    # 30 of 123 live (45, 60, 18): quotas 10.98, 14.63, 4.39 -> largest remainder 11, 15, 4
    assert prune_step(m, "magnitude-uniform", 30) == 30
    assert [int((~mk).sum()) for mk in masks(m)] == [26, 35, 10]


def test_distributed_removes_by_magnitude_relative_to_the_layer_spread() -> None:
    torch.manual_seed(0)
    m = make_prunable(nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 8)))
    with torch.no_grad():
        m[2].weight.copy_(m[0].weight * 0.01)  # the same pattern, 100x smaller spread
    before = weights(m)
    prune_step(m, "magnitude-distributed", 32)
    removed = [int((~mk).sum()) for mk in masks(m)]
    assert removed == [16, 16]  # blinded would take all 32 from the second layer
    # one lambda for both layers: every removed |w| / std is below every kept one
    ratios = [w.abs() / w.abs().std(correction=0) for w in before]
    removed_max = max(float(r[~mk].max()) for r, mk in zip(ratios, masks(m)))
    kept_min = min(float(r[mk].min()) for r, mk in zip(ratios, masks(m)))
    assert removed_max <= kept_min

    blinded = make_prunable(nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 8)))
    with torch.no_grad():
        blinded[0].weight.copy_(before[0])
        blinded[2].weight.copy_(before[1])
    prune_step(blinded, "magnitude-blinded", 32)
    assert [int((~mk).sum()) for mk in masks(blinded)] == [0, 32]


def test_distributed_scores_are_magnitude_over_live_spread() -> None:
    m = model()
    prune_step(m, "magnitude-blinded", 40)
    table = saliency(m, "magnitude-distributed")
    for g, (_, layer) in enumerate(masked_layers(m)):
        live = layer.weight.detach()[layer.mask].abs()
        torch.testing.assert_close(table.scores[table.group == g], live / live.std(correction=0))


def test_random_is_seeded_and_removes_the_requested_count() -> None:
    def run(seed: int) -> list[torch.Tensor]:
        m = model()
        assert prune_step(m, "random", 70, generator=torch.Generator().manual_seed(seed)) == 70
        return masks(m)

    same = [torch.equal(a, b) for a, b in zip(run(5), run(5))]
    different = [torch.equal(a, b) for a, b in zip(run(5), run(6))]
    assert all(same) and not all(different)


def test_bucket_selection_sums_scores_up_to_the_budget() -> None:
    m = make_prunable(nn.Sequential(nn.Linear(4, 5)))
    with torch.no_grad():
        m[0].weight.copy_(torch.arange(1.0, 21.0).reshape(5, 4) * torch.tensor([1.0, -1.0, 1.0, -1.0]))
    table = saliency(m, "magnitude-blinded")
    assert sorted(table.scores[select_bucket(table, 10.0)].tolist()) == [1, 2, 3, 4]
    assert table.scores[select_bucket(table, 0.5)].tolist() == [1]  # at least one
    assert len(select_bucket(table, 1e9)) == 20


# ---------------------------------------------------------------------- Optimal Brain Damage
def brute_force_hessian_diagonal(m: nn.Module, x, y) -> torch.Tensor:
    """Diagonal of the full Hessian of the mean cross entropy w.r.t. all masked weights, at live entries."""
    names = [f"{name}.weight" for name, _ in masked_layers(m)]
    base = [layer.weight.detach() for _, layer in masked_layers(m)]

    def loss(*ws):
        out = functional_call(m, dict(zip(names, ws)), (x,))
        return nn.functional.cross_entropy(out, y)

    hessian = torch.autograd.functional.hessian(loss, tuple(base))
    diags = [hessian[i][i].reshape(w.numel(), w.numel()).diagonal() for i, w in enumerate(base)]
    return torch.cat([d[layer.mask.reshape(-1)] for d, (_, layer) in zip(diags, masked_layers(m))])


def test_obd_exact_diagonal_equals_the_brute_force_hessian() -> None:
    m = model(sizes=(4, 5, 3), dtype=torch.float64)
    x, y = classification(n_in=4, dtype=torch.float64)
    prune_step(m, "magnitude-blinded", 7)
    table = live_table(m)
    h = exact_diagonal(m, list(table.groups), table.group, table.position, x, y, "cross_entropy")
    expected = brute_force_hessian_diagonal(m, x, y)
    torch.testing.assert_close(h, expected, atol=1e-12, rtol=1e-9)
    scores = saliency(m, "obd", data=(x, y)).scores  # 28 live weights: "auto" is exact
    torch.testing.assert_close(scores, expected * table.weight**2 / 2, atol=1e-12, rtol=1e-9)
    # a chunk of one unit vector at a time gives the same diagonal
    groups = list(table.groups)
    small = exact_diagonal(m, groups, table.group, table.position, x, y, "cross_entropy", max_elements=1)
    torch.testing.assert_close(small, h, atol=1e-12, rtol=1e-9)


def test_obd_uses_the_fisher_estimate_above_the_exact_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    m = model(sizes=(4, 5, 3), dtype=torch.float64)
    x, y = classification(n=12, n_in=4, dtype=torch.float64)
    table = live_table(m)
    # brute force: mean over samples of squared per-sample gradients
    per_sample = []
    for i in range(x.shape[0]):
        m.zero_grad()
        nn.functional.cross_entropy(m(x[i : i + 1]), y[i : i + 1]).backward()
        per_sample.append(torch.cat([layer.weight.grad.reshape(-1) for _, layer in masked_layers(m)]))
    fisher = torch.stack(per_sample).pow(2).mean(dim=0)
    torch.testing.assert_close(
        fisher_diagonal(
            m, list(table.groups), table.group, table.position, x, y, "cross_entropy", max_elements=40
        ),
        fisher, atol=1e-12, rtol=1e-9,
    )
    monkeypatch.setattr(criteria, "EXACT_HESSIAN_MAX", len(table) - 1)  # this net now counts as big
    scores = saliency(m, "obd", data=(x, y)).scores
    torch.testing.assert_close(scores, fisher * table.weight**2 / 2, atol=1e-12, rtol=1e-9)
    exact = saliency(m, "obd", data=(x, y), curvature="exact").scores
    assert not torch.allclose(exact, scores)
    assert prune_step(m, "obd", 10, data=(x, y)) == 10
    order = torch.argsort(scores, stable=True)[:10]
    removed = ~torch.cat([mk.reshape(-1) for mk in masks(m)])
    flat = table.position[order] + table.group[order] * 20  # index over both layers (20 + 15 weights)
    assert torch.equal(torch.nonzero(removed).squeeze(1), torch.sort(flat)[0])


def test_obd_needs_data_and_checks_its_options() -> None:
    m = model()
    with pytest.raises(InputError, match="data"):
        prune_step(m, "obd", 3)
    with pytest.raises(InputError, match="rows"):
        saliency(m, "obd", data=(torch.zeros(3, 6), torch.zeros(2, dtype=torch.long)))
    with pytest.raises(InputError, match="curvature"):
        saliency(m, "obd", data=classification(), curvature="newton")


# ---------------------------------------------------------------------- input checks
def test_unknown_method_lists_the_methods() -> None:
    with pytest.raises(InputError) as info:
        prune_step(model(), "magnitude", 3)
    assert all(method in str(info.value) for method in METHODS)


@pytest.mark.parametrize("amount", [-1, 1.5, -0.1, True, "3", None])
def test_bad_amounts_are_rejected(amount) -> None:
    with pytest.raises(InputError, match="amount"):
        prune_step(model(), "magnitude-blinded", amount)


def test_a_model_without_prunable_layers_is_rejected_with_a_hint() -> None:
    with pytest.raises(InputError, match="make_prunable"):
        prune_step(nn.Sequential(nn.Linear(2, 2)), "magnitude-blinded", 1)


# ---------------------------------------------------------------------- DagNet
def test_dagnet_groups_are_the_levels_of_the_target_nodes() -> None:
    net = dag_mlp()  # 4-5-5-1: 20, 25 and 5 synapses
    groups = prunable_groups(net)
    assert [g.name for g in groups] == ["level 1", "level 2", "level 3"]
    assert [g.positions().numel() for g in groups] == [20, 25, 5]
    # a skip synapse input 0 -> output 14 belongs to the output's level
    mask = net.mask.clone()
    mask[0, 0, 14] = True
    weight = net.weight.detach().clone()
    weight[0, 0, 14] = 0.5
    skip = DagNet(net.n_in, net.n_out, weight, mask, net.bias.detach(), net.activations)
    assert [g.positions().numel() for g in prunable_groups(skip)] == [20, 25, 6]
    with pytest.raises(InputError, match="population size 1"):
        prunable_groups(dag_mlp(population=2))


@pytest.mark.parametrize("method", METHODS)
def test_every_criterion_prunes_a_dagnet(method: str) -> None:
    net = dag_mlp()
    with torch.no_grad():  # level 1 at a tenth of the others' scale: |w| and |w| / spread rank apart
        net.weight[0, :4, 4:9] *= 0.1
    start = net.clone()
    x = torch.randn(30, 4, generator=torch.Generator().manual_seed(0))
    y = torch.tanh(x[:, :1] - x[:, 1:2])
    before = net.weight.detach().clone()
    removed = prune_step(net, method, 12, data=(x, y), loss="mse", generator=torch.Generator().manual_seed(0))
    assert removed == 12 and live_weights(net) == 38
    gone = dag_mlp().mask & ~net.mask
    assert int(gone.sum()) == 12
    assert bool((net.weight[~net.mask] == 0).all())
    assert torch.equal(net.weight[net.mask], before[net.mask])
    net(x)  # the forward plan follows the new mask
    # the 12 removed synapses are the 12 lowest scores of this criterion, computed here from the
    # weights before pruning; rows are in group (target level) order, as the criteria rank them
    levels = dag_mlp().levels().tolist()
    pairs = sorted(map(tuple, torch.nonzero(dag_mlp().mask[0]).tolist()), key=lambda p: (levels[p[1]], p))
    removed_pairs = {tuple(p) for p in torch.nonzero(gone[0]).tolist()}
    magnitude = torch.stack([before[0, s, t].abs() for s, t in pairs])
    level_of = torch.tensor([levels[t] for _, t in pairs])
    if method in ("random", "magnitude-distributed", "obd"):
        if method == "random":  # one uniform draw from the given generator per live synapse
            scores = torch.rand(len(pairs), generator=torch.Generator().manual_seed(0))
        elif method == "magnitude-distributed":  # |w| over the spread (population std) of |w| in its level
            spread = {level: magnitude[level_of == level].std(correction=0) for level in (1, 2, 3)}
            scores = magnitude / torch.stack([spread[int(level)] for level in level_of])
        else:  # OBD on the given data and loss (its Hessian diagonal is checked against brute force below)
            scores = saliency(start, "obd", data=(x, y), loss="mse").scores
        assert removed_pairs == {pairs[i] for i in torch.argsort(scores, stable=True)[:12].tolist()}
        blinded = {pairs[i] for i in torch.argsort(magnitude, stable=True)[:12].tolist()}
        assert removed_pairs != blinded  # the criterion made its own choice
    if method == "magnitude-blinded":
        live = before[dag_mlp().mask].abs()
        assert torch.equal(torch.sort(before[gone].abs())[0], torch.sort(live)[0][:12])
    if method == "magnitude-uniform":
        def live_per_level() -> list[int]:
            levels = torch.as_tensor(net.levels())
            return [int(net.mask[0][:, levels == level].sum()) for level in (1, 2, 3)]

        # 12 of (20, 25, 5): quotas 4.8, 6, 1.2 -> 5, 6, 1 by largest remainder
        assert live_per_level() == [15, 19, 4]
        # 19 of (15, 19, 4): quotas 7.5, 9.5, 2 -> 8, 9, 2 (the tied remainder goes to the first)
        assert prune_step(net, method, 0.5) == 19
        assert live_per_level() == [7, 10, 2]


def test_dagnet_obd_exact_diagonal_equals_the_brute_force_hessian() -> None:
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        net = DagNet.mlp([3, 4, 2], generator=torch.Generator().manual_seed(0))
        x = torch.randn(25, 3, generator=torch.Generator().manual_seed(1))
        y = torch.randn(25, 2, generator=torch.Generator().manual_seed(2))
        prune_step(net, "magnitude-blinded", 3)
        table = live_table(net)

        def loss(w):
            return (functional_call(net, {"weight": w}, (x,)) - y).pow(2).mean()

        full = torch.autograd.functional.hessian(loss, net.weight.detach())
        n = net.weight.numel()
        expected = full.reshape(n, n).diagonal()[table.position]
        h = exact_diagonal(net, list(table.groups), table.group, table.position, x, y, "mse")
        torch.testing.assert_close(h, expected, atol=1e-12, rtol=1e-9)
        torch.testing.assert_close(
            saliency(net, "obd", data=(x, y), loss="mse").scores,
            expected * table.weight**2 / 2,
            atol=1e-12,
            rtol=1e-9,
        )
    finally:
        torch.set_default_dtype(old)
