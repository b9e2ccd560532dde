"""The penalty and the training loop: values and gradients of both complexity modes, the paper's
default lambdas, the projection after every step, and the lambda_b / lambda_m rule on a real
task (scikit-learn's digits): lambda_b below lambda_m kills every gate, the defaults kill none."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gate_nets import gated_mlp, mlp, set_gates
from netbonsai.data.tables import sklearn_task
from netbonsai.errors import InputError
from netbonsai.gates import GatePenalty, default_lambdas, gate, gate_modules, gate_penalty, train_gated
from netbonsai.train import Budget, TrainerConfig, evaluate


def test_neurons_complexity_counts_nonlinear_live_neurons_with_the_papers_gradients() -> None:
    model = set_gates(gated_mlp(), [([0.5] * 16, 0.0), (None, 0.7), (None, 0.2)])
    penalty = GatePenalty(model, lambda_m=1.0, lambda_b=0.0)
    value = penalty.complexity()
    assert float(value) == pytest.approx(8 + 0 + 6)  # the linear middle layer (d >= 1/2) counts nothing
    value.backward()
    first, middle, last = gate_modules(model)
    assert torch.equal(first.w.grad, torch.ones(16)) and torch.equal(middle.w.grad, torch.zeros(8))
    assert float(first.d.grad) == pytest.approx(-8.0) and float(middle.d.grad) == pytest.approx(-8.0)


def test_binarizing_is_zero_at_binary_gates_and_weighted_by_unit_cost() -> None:
    model = gated_mlp()
    for mode in ("neurons", "params"):
        assert float(GatePenalty(model, 1.0, 1.0, mode).binarizing()) == 0.0
    set_gates(model, [([0.5] * 16, 0.5), (None, None), (None, None)])
    neurons = GatePenalty(model, 0.0, 1.0, "neurons")
    assert float(neurons.binarizing()) == pytest.approx(16 * 0.25 + 8 * 0.25)  # w terms, then d weighted by sum w
    params = GatePenalty(gated_mlp(), 0.0, 1.0, "params")
    assert params.unit_costs()[0] == pytest.approx(12 + 8 + 1)  # fan-in, fan-out and bias of a first-layer neuron


def test_params_complexity_gradient_prefers_the_state_with_fewer_parameters() -> None:
    model = set_gates(gated_mlp((10, 4, 30, 30, 2)), [(None, 0.5), (None, 0.5), (None, 0.5)])
    penalty = GatePenalty(model, 1.0, 0.0, "params")
    penalty.complexity().backward()
    d = [float(g.d.grad) for g in gate_modules(model)]
    assert d[1] < 0 and d[2] < 0  # merging the 30-wide layers saves parameters: pushed towards linear


def test_default_lambdas_follow_the_papers_rule() -> None:
    model = gated_mlp()
    m, b = default_lambdas(model, 2.0)
    assert m * (16 + 8 + 6) == pytest.approx(2.0) and b == pytest.approx(4 * m)
    m, b = default_lambdas(model, 2.0, "params")
    assert m * (12 * 16 + 16 + 16 * 8 + 8 + 8 * 6 + 6 + 6 * 3 + 3) == pytest.approx(2.0)
    penalty = gate_penalty(model, 2.0, m_scale=3.0, lambda_b=0.5)
    assert penalty.lambda_m == pytest.approx(3 * 2.0 / 30) and penalty.lambda_b == 0.5
    with pytest.raises(InputError, match="gated model"):
        GatePenalty(mlp(), 1.0, 1.0)
    with pytest.raises(InputError, match="complexity"):
        GatePenalty(model, 1.0, 1.0, "flops")
    with pytest.raises(InputError, match="lambda_m"):
        GatePenalty(model, -1.0, 1.0)


def test_train_gated_keeps_gates_in_range_and_reports_the_data_loss() -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 12)
    y = x[:, :3] * 2
    model = gated_mlp()
    seen = []
    push = lambda m: 50.0 * sum(-(g.w.sum()) + g.d for g in gate_modules(m))  # pushes w up and d down  # noqa: E731
    result = train_gated(model, _split(x, y), Budget(epochs=3), TrainerConfig(method="adam", batch_size=16), push,
                         gate_lr=0.5, on_epoch=lambda e, loss: seen.append(e))
    assert seen == [1, 2, 3] and result.epochs == 3
    for g in gate_modules(model):
        assert float(g.w.max()) <= 1.0 and float(g.d.min()) >= 0.0
    assert float(result.loss[0]) == pytest.approx(float(evaluate(model, x, y, "mse")[0]))
    # full-batch trainers become one full-batch Adam step per epoch
    result = train_gated(gated_mlp(), _split(x, y), Budget(epochs=2), TrainerConfig(method="lbfgs"))
    assert result.epochs == 2
    with pytest.raises(InputError, match="gate_lr"):
        train_gated(model, _split(x, y), Budget(epochs=1), TrainerConfig(), gate_lr=0.0)


def _split(x, y):
    from netbonsai.data.task import Split

    return Split(x, y)


@pytest.fixture(scope="module")
def digits():
    return sklearn_task("digits")


def _digits_run(task, m_scale: float, lambda_b_scale: float | None = None) -> list[int]:
    torch.manual_seed(0)
    model = gate(nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 10)),
                 depth=False)
    trainer = TrainerConfig(method="adam", loss="cross_entropy", lr=3e-3, batch_size=64)
    initial = float(evaluate(model, task.x_train, task.y_train, trainer.loss)[0])
    m, _ = default_lambdas(model, initial)
    penalty = gate_penalty(model, initial, m_scale=m_scale,
                           lambda_b=None if lambda_b_scale is None else lambda_b_scale * m * m_scale)
    train_gated(model, task.train, Budget(epochs=15), trainer, penalty, gate_lr=0.03)
    return [g.alive() for g in gate_modules(model)]


def test_lambda_b_below_lambda_m_kills_every_gate_and_the_defaults_kill_none(digits) -> None:
    assert _digits_run(digits, 1.0) == [32, 16]  # the paper's defaults: lambda_b = 4 lambda_m
    assert _digits_run(digits, 1.0, lambda_b_scale=0.5) == [0, 0]  # lambda_b = lambda_m / 2
    assert _digits_run(digits, 4.0, lambda_b_scale=0.9) == [0, 0]  # lambda_b just below lambda_m


@pytest.mark.parametrize("mode", ["neurons", "params"])
def test_the_closed_form_penalty_equals_its_autograd_definition(mode: str) -> None:
    from gate_nets import cnn

    for model in (gated_mlp((10, 4, 30, 30, 2)), gate(cnn())):
        torch.manual_seed(1)
        with torch.no_grad():
            for g in gate_modules(model):
                g.w.uniform_(0, 1)
                g.d.uniform_(0, 1) if g.learn_depth else None
        penalty = GatePenalty(model, lambda_m=0.3, lambda_b=0.7, complexity=mode)
        learnt = [p for g in gate_modules(model) for p in (g.w, g.d) if p.requires_grad]
        reference = penalty.lambda_b * penalty.binarizing() + penalty.lambda_m * penalty.complexity()
        expected = torch.autograd.grad(reference, learnt)
        value = penalty(model)
        got = torch.autograd.grad(value, learnt)
        assert float(value) == pytest.approx(float(reference), rel=1e-5)
        for a, b in zip(got, expected):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)
