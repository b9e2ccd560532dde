"""The final polish of reported networks: grouping fixes the result, the executor only runs it."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from netbonsai.data.tasks import load_task
from netbonsai.executor import make_executor
from netbonsai.experiments.image_runs import polish
from netbonsai.grow.search import FrontPoint
from netbonsai.nets.dag import DagNet
from netbonsai.nets.normalization import standardize_for
from netbonsai.train import Budget, evaluate
from netbonsai.train.together import fit_together
from tests.tiny_runs import tiny_settings


@pytest.fixture(scope="module")
def data():
    return load_task("brightness", max_train=400, max_val=300)


def _points(data) -> list[FrontPoint]:
    points = []
    for event, hidden in enumerate([(2,), (3, 2), (4, 3)]):
        net = DagNet.mlp([data.n_in, *hidden, data.n_out], generator=torch.Generator().manual_seed(event))
        standardize_for(net, data.x_train, data.y_train)
        points.append(FrontPoint(net.num_params(), 0.0, 0.0, event, net))
    return points


@pytest.mark.fast
def test_polish_alone_equals_one_training_per_network_and_leaves_inputs_alone(data) -> None:
    settings = replace(tiny_settings("brightness"), polish_epochs=8, polish_group=1)
    points = _points(data)
    before = [p.net.weight.detach().clone() for p in points]
    polished = polish(points, data, settings)
    for point, result, weight in zip(points, polished, before):
        assert torch.equal(point.net.weight, weight)  # the search's networks are not trained in place
        (alone,), fitted = fit_together([point.net], data.x_train, data.y_train, Budget(epochs=8),
                                        settings.grow.trainer, seed=settings.grow.seed)
        assert torch.equal(result.net.weight, alone.weight)
        assert result.train_loss == pytest.approx(float(fitted.loss[0]) * data.loss_scale, rel=1e-5)
        assert result.event == point.event and result.params == point.params
        untrained = float(evaluate(point.net, data.x_train, data.y_train)[0]) * data.loss_scale
        assert result.train_loss < untrained and result.val_loss > 0


def test_polish_gives_the_same_networks_in_worker_processes(data) -> None:
    settings = replace(tiny_settings("brightness"), polish_epochs=8, polish_group=2)
    inline = polish(_points(data), data, settings)
    with make_executor("process", workers=2) as executor:
        pooled = polish(_points(data), data, settings, executor)
    assert [p.val_loss for p in inline] == [p.val_loss for p in pooled]
    for a, b in zip(inline, pooled):
        assert torch.equal(a.net.weight, b.net.weight) and torch.equal(a.net.mask, b.net.mask)
