"""Population L-BFGS: evaluating only the variants that need it changes the work, not the result."""

from __future__ import annotations

import pytest
import torch

from netbonsai.errors import InputError
from netbonsai.nets import DagNet
from netbonsai.train import lbfgs
from netbonsai.train.losses import mse_per_variant

from .test_fit import float64, population, regression  # noqa: F401 (float64 is a fixture)


def test_member_forward_equals_the_rows_of_the_full_forward() -> None:
    net = population(k=4)
    x, _ = regression(n=300)
    members = torch.tensor([3, 1])
    torch.testing.assert_close(net.population(x, members=members), net.population(x)[members], atol=1e-6, rtol=0)
    # one member, and inputs with their own population dimension
    per_variant = torch.stack([x + k for k in range(4)])
    one = torch.tensor([2])
    torch.testing.assert_close(net.population(per_variant, members=one), net.population(per_variant)[one], atol=1e-6, rtol=0)
    # gradients reach only the chosen variants' parameters
    net.population(x, members=members).sum().backward()
    assert bool((net.weight.grad[[0, 2]] == 0).all()) and bool(net.weight.grad[[1, 3]].abs().sum() > 0)


def test_members_must_be_indices() -> None:
    net = population(k=3)
    x, _ = regression(n=10)
    with pytest.raises(InputError, match="long tensor"):
        net.population(x, members=torch.tensor([True, False, True]))


def _train(
    net: DagNet, x: torch.Tensor, y: torch.Tensor, iterations: int, subsets: bool, log: list[int], max_backtracks: int = 25
):
    """Train ``net`` with L-BFGS, recording how many variants every closure call computed."""

    def full() -> torch.Tensor:
        log.append(net.population_size)
        return mse_per_variant(net.population(x), y)

    def some(members: torch.Tensor) -> torch.Tensor:
        log.append(int(members.numel()))
        return mse_per_variant(net.population(x, members=members), y)

    return lbfgs(
        [net.weight, net.bias], full, max_iter=iterations, population=net.population_size,
        member_losses=some if subsets else None, max_backtracks=max_backtracks,
    )


@pytest.mark.usefixtures("float64")
@pytest.mark.parametrize("max_backtracks", [25, 1])  # 1: some variants get stuck and stop
def test_member_evaluation_follows_the_same_trajectories_with_less_work(max_backtracks: int) -> None:
    x, y = regression(n=1500, dtype=torch.float64)
    with_subsets, without = population(k=4, seed=3), population(k=4, seed=3)
    with torch.no_grad():  # one variant with saturated neurons: a harder problem
        for net in (with_subsets, without):
            net.weight[3] *= 1e3
    calls_subsets: list[int] = []
    calls_full: list[int] = []
    a = _train(with_subsets, x, y, 60, True, calls_subsets, max_backtracks)
    b = _train(without, x, y, 60, False, calls_full, max_backtracks)
    torch.testing.assert_close(with_subsets.weight.detach(), without.weight.detach(), atol=1e-7, rtol=0)
    torch.testing.assert_close(a.loss, b.loss, atol=0, rtol=1e-7)  # float rounding of subset matmuls
    assert a.iterations == b.iterations
    # some iterations backtracked (otherwise this test would check nothing), and there the
    # subset version computed fewer variants
    assert len(calls_full) > a.iterations + 1
    assert min(calls_subsets) < 4
    assert sum(calls_subsets) < sum(calls_full)


@pytest.mark.usefixtures("float64")
def test_a_finished_variant_is_not_computed_again() -> None:
    x, y = regression(n=500, dtype=torch.float64)
    net = population(k=3, seed=4)
    with torch.no_grad():  # variant 1 predicts a constant that is already optimal: zero gradient
        net.weight[1] = 0.0
        net.bias[1] = 0.0
        net.bias[1, -1] = y.mean()
    log: list[int] = []
    result = _train(net, x, y, 20, True, log)
    assert log[0] == 3  # the first evaluation computes everyone
    assert max(log[1:]) == 2  # afterwards variant 1 (converged at the start) is skipped
    assert float(result.loss[1]) == pytest.approx(float(y.var(unbiased=False)), rel=1e-9)
