"""Plain SGD and step budgets in ``fit``: the Surgeon retrains an edited network for 1 or 10
minibatches, and the authors trained with plain SGD (lr 0.005, batch 32)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from netbonsai.data.task import Split
from netbonsai.errors import InputError
from netbonsai.train import Budget, TrainerConfig, fit


def _net(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def _data():
    generator = torch.Generator().manual_seed(1)
    return Split(torch.randn(100, 4, generator=generator), torch.randint(0, 3, (100,), generator=generator))


def test_sgd_steps_equal_hand_written_sgd():
    split = _data()
    net, twin = _net(), _net()
    fit(net, split, Budget(steps=3), TrainerConfig(method="sgd", loss="cross_entropy", lr=0.1, batch_size=16), seed=5)
    order = torch.randperm(100, generator=torch.Generator().manual_seed(5))
    optimizer = torch.optim.SGD(twin.parameters(), lr=0.1)
    for step in range(3):
        index = order[step * 16:(step + 1) * 16]
        optimizer.zero_grad()
        nn.functional.cross_entropy(twin(split.x[index]), split.y[index]).backward()
        optimizer.step()
    for a, b in zip(net.parameters(), twin.parameters()):
        assert torch.allclose(a, b, atol=1e-7)


@pytest.mark.parametrize("budget, epochs, curve", [
    (Budget(steps=7), 1, 1),            # 100 rows / 16 = 7 batches: exactly one epoch
    (Budget(steps=10), 2, 2),           # a partial second epoch is recorded
    (Budget(epochs=2, steps=100), 2, 2),  # epochs come first
    (Budget(steps=0), 0, 0),
])
def test_step_budget_counts_minibatches(budget, epochs, curve):
    result = fit(_net(), _data(), budget, TrainerConfig(method="adam", loss="cross_entropy", batch_size=16))
    assert result.epochs == epochs and len(result.curve) == curve


def test_sgd_momentum_changes_training_and_is_validated():
    split = _data()
    plain, heavy = _net(), _net()
    fit(plain, split, Budget(epochs=2), TrainerConfig(method="sgd", loss="cross_entropy", lr=0.05, batch_size=16))
    fit(heavy, split, Budget(epochs=2), TrainerConfig(method="sgd", loss="cross_entropy", lr=0.05, batch_size=16,
                                                      momentum=0.9))
    assert not torch.allclose(plain[0].weight, heavy[0].weight)
    with pytest.raises(InputError, match="momentum"):
        TrainerConfig(method="adam", momentum=0.9)
    with pytest.raises(InputError, match="momentum"):
        TrainerConfig(method="sgd", momentum=1.0)
    with pytest.raises(InputError, match="steps"):
        Budget(steps=-1)


def test_lbfgs_counts_a_step_as_an_iteration():
    split = Split(torch.randn(50, 4), torch.randn(50, 3))
    result = fit(_net(), split, Budget(epochs=20, steps=3), TrainerConfig(method="lbfgs"))
    assert result.epochs <= 3
