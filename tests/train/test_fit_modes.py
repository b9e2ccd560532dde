"""fit trains modules in train mode (batch norm updates its statistics, dropout drops) whatever
mode they arrive in, and hands each module back in the mode it came in."""

from __future__ import annotations

import torch
from torch import nn

from netbonsai.data.task import Split
from netbonsai.train import Budget, TrainerConfig, fit


def net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3))


def data() -> Split:
    g = torch.Generator().manual_seed(1)
    return Split(torch.randn(64, 4, generator=g) * 3 + 5, torch.randint(0, 3, (64,), generator=g))


def test_an_eval_mode_model_trains_in_train_mode_and_comes_back_in_eval_mode() -> None:
    model = net().eval()
    before = model[1].running_mean.clone()
    fit(model, data(), Budget(steps=3), TrainerConfig(method="adam", loss="cross_entropy", batch_size=16), seed=0)
    assert not any(m.training for m in model.modules())
    assert not torch.equal(model[1].running_mean, before)  # batch norm saw the batches
    assert int(model[1].num_batches_tracked) == 3


def test_mixed_modes_are_restored_module_by_module() -> None:
    model = net().train()
    model[3].eval()
    fit(model, data(), Budget(epochs=1), TrainerConfig(method="adam", loss="cross_entropy", batch_size=16), seed=0)
    assert [m.training for m in model] == [True, True, True, False, True] and model.training


def test_the_reported_loss_is_the_eval_mode_loss() -> None:
    model = net()
    trainer = TrainerConfig(method="adam", loss="cross_entropy", batch_size=16)
    result = fit(model, data(), Budget(epochs=2), trainer, seed=0)
    model.eval()
    with torch.no_grad():
        expected = nn.functional.cross_entropy(model(data().x), data().y)
    assert abs(float(result.loss[0]) - float(expected)) < 1e-5
