"""The platform's pieces: Task and task names, the one fit (penalty, lists, legacy form), loss gaps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from netbonsai.analysis.compare import gap_summary, loss_gaps
from netbonsai.data import Split, Task, parse_task_spec
from netbonsai.errors import InputError
from netbonsai.nets.dag import DagNet
from netbonsai.train import Budget, TrainerConfig, fit


def _task(n: int = 64) -> Task:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=g)
    y = x[:, :1] * 2 - x[:, 1:2]
    return Task("toy", Split(x[: n // 2], y[: n // 2]), Split(x[n // 2 :], y[n // 2 :]), loss_scale=2.0)


def test_task_names_parse_one_way() -> None:
    assert parse_task_spec("brightness").kind == "brightness" and parse_task_spec("brightness").argument is None
    assert parse_task_spec("approx:skimage:coffee").argument == "skimage:coffee"
    assert parse_task_spec("approx", image="x.png").argument == "x.png"  # the older --image
    assert str(parse_task_spec("idx:/data/mnist")) == "idx:/data/mnist"
    for bad, message in (("mnist", "unknown task"), ("idx", "needs a folder"), ("approx:", "names no image")):
        with pytest.raises(InputError, match=message):
            parse_task_spec(bad)
    with pytest.raises(InputError, match="give the image once"):
        parse_task_spec("approx:a.png", image="b.png")


def test_task_checks_its_splits() -> None:
    task = _task()
    assert task.n_in == 3 and task.n_out == 1 and task.kind == "regression"
    assert task.x_train is task.train.x and len(task.val) == 32
    with pytest.raises(InputError, match="empty"):
        Task("t", Split(torch.zeros(0, 2), torch.zeros(0, 1)), task.val)
    with pytest.raises(InputError, match="unknown task loss"):
        Task("t", task.train, task.val, loss="hinge")
    with pytest.raises(InputError):
        Task("t", Split(torch.full((4, 3), math.nan), torch.zeros(4, 1)), task.val)
    with pytest.raises(InputError, match="no test split"):
        _ = task.x_test


def test_fit_takes_a_split_and_the_older_form_alike() -> None:
    task = _task()
    nets = [DagNet.mlp([3, 4, 1], "tanh", generator=torch.Generator().manual_seed(1)) for _ in range(2)]
    new = fit(nets[0], task.train, Budget(epochs=20), TrainerConfig(), seed=0)
    old = fit(nets[1], task.x_train, task.y_train, Budget(epochs=20), TrainerConfig(), seed=0)
    assert torch.equal(new.loss, old.loss)
    assert torch.equal(nets[0].weight, nets[1].weight)


@pytest.mark.parametrize("method", ["lbfgs", "adam"])
def test_a_penalty_shrinks_the_weights_and_is_not_in_the_reported_loss(method: str) -> None:
    task = _task()
    trainer = TrainerConfig(method=method, lr=0.01, batch_size=16)
    plain, penalised = (DagNet.mlp([3, 4, 1], "tanh", generator=torch.Generator().manual_seed(1)) for _ in range(2))
    fit(plain, task.train, Budget(epochs=30), trainer, seed=0)
    result = fit(penalised, task.train, Budget(epochs=30), trainer, seed=0,
                 penalty=lambda m: 0.5 * (m.weight ** 2).sum(dim=(1, 2)))
    assert penalised.weight.abs().sum() < plain.weight.abs().sum()
    from netbonsai.train import evaluate

    assert result.loss[0] == pytest.approx(float(evaluate(penalised, task.x_train, task.y_train, "mse")[0]), rel=1e-5)


def test_lm_refuses_a_penalty_and_lists_take_none() -> None:
    task = _task()
    net = DagNet.mlp([3, 2, 1], "tanh", generator=torch.Generator().manual_seed(1))
    with pytest.raises(InputError, match="takes no penalty"):
        fit(net, task.train, Budget(epochs=2), TrainerConfig(method="lm"), penalty=lambda m: m.weight.sum())
    with pytest.raises(InputError, match="list of networks"):
        fit([net], task.train, Budget(epochs=2), TrainerConfig(), penalty=lambda m: m.weight.sum())


def test_fit_of_a_list_trains_copies_together() -> None:
    task = _task()
    nets = [DagNet.mlp([3, h, 1], "tanh", generator=torch.Generator().manual_seed(h)) for h in (2, 3)]
    result = fit(nets, task.train, Budget(epochs=10), TrainerConfig(), seed=0)
    assert len(result.models) == 2 and result.loss.shape == (2,)
    alone = fit(nets[1].clone(), task.train, Budget(epochs=10), TrainerConfig(), seed=0)
    assert float(result.loss[1]) == pytest.approx(float(alone.loss[0]), rel=1e-4)


def test_loss_gaps_interpolate_the_dense_front_in_log_params() -> None:
    dense = [{"params": 10, "val_loss": 4.0}, {"params": 1000, "val_loss": 2.0}]
    front = [{"params": 100, "val_loss": 2.5}, {"params": 5, "val_loss": 1.0}, {"params": 2000, "val_loss": 0.5}]
    gaps = loss_gaps(front, dense)
    # (5, 1.0) dominates the others; only it is on the method's front, and it lies left of the dense range
    assert gaps == []
    gaps = loss_gaps([{"params": 100, "val_loss": 2.5}], dense)
    assert gaps[0]["dense_loss"] == pytest.approx(3.0)  # halfway in log-params between 10 and 1000
    assert gaps[0]["gap"] == pytest.approx((3.0 - 2.5) / 3.0)
    assert gap_summary(gaps)["median_gap"] == pytest.approx(1 / 6)
    assert gap_summary([])["n"] == 0


def test_reber_task_holds_sequences_and_trains_through_fit() -> None:
    from netbonsai.data import reber_task
    from netbonsai.nets.recurrent import MaskedRecurrent

    task = reber_task(n_strings=200, seed=3)
    codes, lengths = task.train.x
    assert task.kind == "classification" and task.n_out == 2
    assert len(task.train) + len(task.val) == 150 and len(task.test) == 50
    assert codes.shape[0] == lengths.shape[0] == len(task.train)
    assert set(task.y_train.tolist()) <= {0, 1}
    from netbonsai.nets.structure import LayeredStructure

    full = LayeredStructure(4, (5,), (np.ones((5, 4), dtype=bool),), np.ones(5, dtype=bool))
    model = MaskedRecurrent([full, full], "relu", 2, vocab_size=128, seed=0)
    result = fit(model, task.train, Budget(epochs=2), TrainerConfig(method="adam", loss="cross_entropy", lr=0.01,
                                                                   batch_size=16, clip_norm=5.0), seed=0)
    assert result.loss.shape == (2,) and torch.isfinite(result.loss).all()
    with pytest.raises(InputError, match="minibatch Adam"):
        fit(model, task.train, Budget(epochs=1), TrainerConfig(method="lbfgs"))
