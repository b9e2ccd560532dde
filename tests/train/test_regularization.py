"""The L2 guard against overfitting: the penalty every training gets, and its choice on validation."""

from __future__ import annotations

import pytest
import torch

from netbonsai.data.task import Split, Task
from netbonsai.errors import InputError
from netbonsai.nets.dag import DagNet
from netbonsai.train import Budget, TrainerConfig, fit
from netbonsai.train.regularization import choose_l2, reference_network, weight_l2


def noisy_task(n_train: int = 40, n_val: int = 200, seed: int = 0) -> Task:
    """Few noisy rows: an unregularised 32-unit network fits the noise."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n_train + n_val, 5, generator=g) * 2 - 1
    y = x[:, :1] + 0.5 * torch.randn(n_train + n_val, 1, generator=g)
    return Task(name="noisy", train=Split(x[:n_train], y[:n_train]), val=Split(x[n_train:], y[n_train:]))


def test_weight_l2_counts_weights_per_variant_and_skips_biases() -> None:
    net = DagNet.mlp([3, 4, 1], generator=torch.Generator().manual_seed(0)).expand(2)
    with torch.no_grad():
        net.weight[1] *= 2
    expected = (net.weight * net.mask).pow(2).flatten(1).sum(1)
    torch.testing.assert_close(weight_l2(net), expected)
    layer = torch.nn.Linear(3, 2)
    torch.testing.assert_close(weight_l2(layer), layer.weight.pow(2).sum())


def test_l2_shrinks_the_weights_and_keeps_the_reported_loss_the_data_loss() -> None:
    task = noisy_task()
    nets = []
    for l2 in (0.0, 0.1):
        net = DagNet.mlp([5, 16, 1], generator=torch.Generator().manual_seed(1))
        result = fit(net, task.train, Budget(epochs=200), TrainerConfig(l2=l2))
        nets.append((net, float(result.loss[0])))
    (plain, plain_loss), (shrunk, shrunk_loss) = nets
    assert float(weight_l2(shrunk)) < 0.5 * float(weight_l2(plain))
    assert shrunk_loss > plain_loss  # the data loss alone, which the penalty trades away
    mse = float(((shrunk(task.x_train) - task.y_train) ** 2).mean())
    assert shrunk_loss == pytest.approx(mse, rel=1e-4)


def test_choose_l2_picks_a_penalty_where_the_network_overfits() -> None:
    task = noisy_task()
    l2, losses = choose_l2(task, (32,), "tanh", 300, TrainerConfig(), seed=0, grid=(0.0, 0.01, 0.1))
    assert set(losses) == {"0.0", "0.01", "0.1"}
    assert l2 > 0
    assert losses[repr(l2)] == min(losses.values()) < losses["0.0"]


def test_reference_network_is_the_median_of_the_grid() -> None:
    grid = ((2,), (64,), (8,), (32, 32), (16,))
    assert reference_network(grid, 10, 1) == (16,)


@pytest.mark.parametrize("kwargs", [dict(l2=-1.0), dict(l2=float("nan")), dict(l2=0.1, method="lm")])
def test_bad_l2_values_are_refused(kwargs) -> None:
    with pytest.raises(InputError):
        TrainerConfig(**kwargs)
