"""fit() and evaluate(): population independence, masks, plain modules, budgets, input checks."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from netbonsai.errors import InputError
from netbonsai.nets import DagNet
from netbonsai.nets.normalization import standardize_for
from netbonsai.train import Budget, TrainerConfig, evaluate, fit

SIZES = [3, 5, 4, 1]


def regression(n: int = 2000, seed: int = 0, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """A smooth function of three inputs in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, 3, generator=g) * 2 - 1).to(dtype)
    y = torch.sin(2 * x[:, :1]) + x[:, 1:2] * x[:, 2:3]
    return x, y


def population(k: int = 3, seed: int = 1) -> DagNet:
    return DagNet.mlp(SIZES, population=k, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def float64():
    """Run a test with float64 as the default dtype (DagNet builds its parameters in it)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


# ---------------------------------------------------------------------- population independence
# Adam is checked in float32 (the default): every step is a short computation, the joint and
# separate runs differ only by float rounding of the batched matmuls (measured <= 1.2e-7), so
# 1e-5 is tight. L-BFGS and Levenberg-Marquardt are checked in float64: in float32 the same
# rounding differences are amplified by the curvature updates and the near-singular
# Gauss-Newton solves (L-BFGS: 6e-7 after 10 iterations but 6e-2 after 40; LM can even accept
# a different damping trial and land elsewhere), which says nothing about whether variants mix.
# In float64 the trajectories agree to ~1e-9 over many iterations, so 1e-7 catches any mixing.
JOINT_CASES = {
    # method: (epochs, weight atol, relative loss tolerance, float64)
    "adam": (3, 1e-5, 1e-5, False),
    "lbfgs": (30, 1e-7, 1e-9, True),
    "lm": (6, 1e-7, 1e-9, True),
}


@pytest.mark.parametrize("method", sorted(JOINT_CASES))
def test_joint_training_equals_separate_trainings(method: str, request: pytest.FixtureRequest) -> None:
    epochs, atol, rtol, wide = JOINT_CASES[method]
    if wide:
        request.getfixturevalue("float64")
    x, y = regression(dtype=torch.get_default_dtype())
    pop = population()
    singles = [pop.select(k) for k in range(3)]
    trainer = TrainerConfig(method=method, lr=0.01, batch_size=250)
    budget = Budget(epochs=epochs)
    joint = fit(pop, x, y, budget, trainer, seed=5)
    assert joint.loss.shape == (3,)
    assert joint.epochs == epochs
    for k, single in enumerate(singles):
        alone = fit(single, x, y, budget, trainer, seed=5)
        assert alone.epochs == epochs
        torch.testing.assert_close(pop.weight.detach()[k], single.weight.detach()[0], atol=atol, rtol=0)
        torch.testing.assert_close(pop.bias.detach()[k], single.bias.detach()[0], atol=atol, rtol=0)
        torch.testing.assert_close(joint.loss[k], alone.loss[0], atol=0, rtol=rtol)
    # the variants are genuinely different problems, so the comparison is not trivial
    assert float(joint.loss.max() - joint.loss.min()) > 1e-3
    # and training did something
    start = evaluate(population(), x, y)
    assert bool((joint.loss < start).all())


# ---------------------------------------------------------------------- masks
@pytest.mark.parametrize("method", ["adam", "lbfgs", "lm"])
def test_masked_weights_stay_exactly_zero(method: str) -> None:
    x, y = regression(n=500)
    net = population(k=2)
    before = net.weight.detach().clone()
    # nodes: inputs 0-2, layer 1 3-7, layer 2 8-11, output 12 (49 parameters)
    # variant 0 loses (0 -> 3) and (4 -> 9); variant 1 loses (3 -> 8)
    net.remove_synapses_(torch.tensor([0, 3]), torch.tensor([3, 8]))
    net.remove_synapses_(torch.tensor([4, 3]), torch.tensor([9, 8]))
    assert net.num_params_per_variant().tolist() == [47, 48]
    fit(net, x, y, Budget(epochs=4), TrainerConfig(method=method, lr=0.05, batch_size=100), seed=1)
    weight = net.weight.detach()
    assert float(weight[0, 0, 3]) == 0.0 and float(weight[0, 4, 9]) == 0.0
    assert float(weight[1, 3, 8]) == 0.0
    assert bool((weight[~net.mask] == 0).all())
    assert bool((net.bias.detach()[:, : net.n_in] == 0).all())
    # live weights did train
    live = net.mask
    assert float((weight[live] - before[live]).abs().max()) > 1e-4
    assert net.num_params_per_variant().tolist() == [47, 48]


# ---------------------------------------------------------------------- plain modules
@pytest.mark.parametrize("method,epochs", [("adam", 20), ("lbfgs", 30)])
def test_fit_trains_a_plain_sequential(method: str, epochs: int) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
    x, y = regression(n=1000)
    with torch.no_grad():
        start = float(nn.functional.mse_loss(model(x), y))
    result = fit(model, x, y, Budget(epochs=epochs), TrainerConfig(method=method, lr=0.02, batch_size=100))
    assert result.loss.shape == (1,)
    assert result.epochs == epochs
    assert len(result.curve) == epochs
    with torch.no_grad():
        end = float(nn.functional.mse_loss(model(x), y))
    assert end == pytest.approx(float(result.loss[0]), rel=1e-5)
    assert float(evaluate(model, x, y)[0]) == pytest.approx(end, rel=1e-5)
    assert end < 0.5 * start


def test_lm_needs_a_dagnet() -> None:
    x, y = regression(n=100)
    with pytest.raises(InputError, match="Levenberg"):
        fit(nn.Linear(3, 1), x, y, Budget(epochs=2), TrainerConfig(method="lm"))


# ---------------------------------------------------------------------- input checks
def test_bad_inputs_raise_input_error() -> None:
    x, y = regression(n=100)
    net = population(k=1)
    with pytest.raises(InputError, match="rows"):
        fit(net, x, y[:-1], Budget(epochs=1))
    with pytest.raises(InputError, match="empty"):
        fit(net, x[:0], y[:0], Budget(epochs=1))
    with pytest.raises(InputError, match="unknown training method"):
        TrainerConfig(method="rmsprop")
    with pytest.raises(InputError, match="epochs, steps or seconds"):
        Budget()
    with pytest.raises(InputError, match="epochs"):
        Budget(epochs=-1)
    with pytest.raises(InputError, match="seconds"):
        Budget(seconds=0)
    with pytest.raises(InputError, match="unknown loss"):
        TrainerConfig(loss="l7")
    with pytest.raises(InputError):
        TrainerConfig(lr=0)
    with pytest.raises(InputError, match="empty"):
        evaluate(net, x[:0], y[:0])
    # InputError is also a ValueError, so generic callers can catch it
    assert issubclass(InputError, ValueError)


def test_zero_epochs_leaves_the_network_unchanged() -> None:
    x, y = regression(n=200)
    for method in ("adam", "lbfgs", "lm"):
        net = population(k=2)
        before = net.weight.detach().clone()
        result = fit(net, x, y, Budget(epochs=0), TrainerConfig(method=method))
        assert result.epochs == 0
        assert torch.equal(net.weight.detach(), before)
        torch.testing.assert_close(result.loss, evaluate(net, x, y))


# ---------------------------------------------------------------------- budgets and progress
@pytest.mark.parametrize("method", ["adam", "lbfgs", "lm"])
def test_seconds_budget_stops(method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A seconds budget ends training at the first epoch boundary at or past it. No wall clock
    is measured (machines are noisy): the trainers read a fake clock that moves 0.1 s per epoch."""
    import importlib
    from types import SimpleNamespace

    now = [0.0]
    clock = SimpleNamespace(perf_counter=lambda: now[0])
    for module in ("netbonsai.train.fit", "netbonsai.train.lbfgs", "netbonsai.train.lm"):
        monkeypatch.setattr(importlib.import_module(module), "time", clock)

    def tick(epoch: int, losses: torch.Tensor) -> None:
        assert epoch <= 20, "the seconds budget was ignored"
        now[0] += 0.1

    x, y = regression(n=1000)
    net = population(k=2)
    result = fit(net, x, y, Budget(seconds=0.25), TrainerConfig(method=method, batch_size=100), on_epoch=tick)
    # after epochs 1, 2, 3 the clock reads 0.1, 0.2, 0.3: the third is the first at or past 0.25
    assert result.epochs == 3 and len(result.curve) == 3
    assert result.seconds == pytest.approx(0.3)
    # an epoch budget given as well stops first when it is smaller
    now[0] = 0.0
    both = fit(population(k=2), x, y, Budget(epochs=2, seconds=0.25), TrainerConfig(method=method, batch_size=100),
               on_epoch=tick)
    assert both.epochs == 2 and both.seconds == pytest.approx(0.2)


def test_on_epoch_reports_every_epoch() -> None:
    x, y = regression(n=300)
    seen: list[tuple[int, list[float]]] = []
    result = fit(
        population(k=2), x, y, Budget(epochs=4), TrainerConfig(method="lbfgs"),
        on_epoch=lambda epoch, losses: seen.append((epoch, losses.tolist())),
    )
    assert [epoch for epoch, _ in seen] == [1, 2, 3, 4]
    assert [losses for _, losses in seen] == result.curve
    assert result.curve[-1] == result.loss.tolist()
    # L-BFGS with Armijo backtracking never increases the loss
    for before, after in zip(result.curve, result.curve[1:]):
        assert all(b2 <= b1 for b1, b2 in zip(before, after))


@pytest.mark.parametrize("method,epochs", [("lbfgs", 60), ("lm", 15), ("adam", 30)])
def test_training_reduces_the_loss_substantially(method: str, epochs: int) -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.rand(1000, 3, generator=g) * 2 - 1
    y = 0.7 * x[:, :1] - 0.4 * x[:, 1:2] + 0.3 * torch.tanh(2 * x[:, 2:3]) + 0.5
    net = DagNet.mlp(SIZES, generator=torch.Generator().manual_seed(4))
    standardize_for(net, x, y)
    start = float(evaluate(net, x, y)[0])
    result = fit(net, x, y, Budget(epochs=epochs), TrainerConfig(method=method, lr=0.01, batch_size=50))
    end = float(evaluate(net, x, y)[0])
    assert end == pytest.approx(float(result.loss[0]), rel=1e-4)
    assert end < 0.02 * start


# ---------------------------------------------------------------------- evaluate
def test_chunked_evaluate_equals_unchunked() -> None:
    x, y = regression(n=301)
    net = population(k=3)
    full = evaluate(net, x, y)
    width = net.n_nodes * net.population_size
    for rows in (1, 7, 100):  # chunks of 1, 7 and 100 samples; 301 is not a multiple of 7 or 100
        chunked = evaluate(net, x, y, chunk_rows=rows * width)
        torch.testing.assert_close(chunked, full, rtol=1e-5, atol=0)
    torch.testing.assert_close(evaluate(net, x, y, chunk_rows=1), full, rtol=1e-5, atol=0)
    # and it is the mean of the per-variant squared errors
    expected = (net.population(x).detach() - y).pow(2).mean(dim=(1, 2))
    torch.testing.assert_close(full, expected, rtol=1e-6, atol=0)


def test_weight_decay_shrinks_weights_and_keeps_removed_ones_zero() -> None:
    with pytest.raises(InputError, match="weight_decay"):
        TrainerConfig(method="adam", weight_decay=-1.0)
    with pytest.raises(InputError, match="Adam/SGD setting"):
        TrainerConfig(method="lbfgs", weight_decay=1e-4)
    torch.manual_seed(0)
    x, y = torch.randn(256, 3), torch.randn(256, 1)
    norms = []
    for decay in (0.0, 0.5):
        net = DagNet.mlp([3, 8, 1], "tanh", generator=torch.Generator().manual_seed(1))
        net.remove_synapses_(torch.tensor([0]), torch.tensor([3]))
        fit(net, x, y, Budget(epochs=20), TrainerConfig(method="adam", lr=1e-2, weight_decay=decay))
        assert net.weight[0, 0, 3].item() == 0.0
        norms.append(float(net.weight.detach().norm()))
    assert norms[1] < 0.8 * norms[0]


def test_averaged_fit_ends_at_the_mean_of_the_epoch_snapshots_and_keeps_removed_weights_zero() -> None:
    from netbonsai.train import averaged_fit

    x, y = regression(600)
    trainer = TrainerConfig(method="adam", lr=1e-2, batch_size=64)
    net = population(k=1)
    net.mask[0, 0, 4] = False  # remove one live synapse (input 0 -> first hidden node)
    net.apply_mask_()
    manual = copy.deepcopy(net)
    snapshots = []
    for epoch in range(3):
        fit(manual, x, y, Budget(epochs=1), trainer, seed=10 + epoch)
        snapshots.append([p.detach().clone() for p in manual.parameters()])
    result = averaged_fit(net, x, y, 3, trainer, seed=10)
    for p, *snaps in zip(net.parameters(), *snapshots):
        torch.testing.assert_close(p.detach(), torch.stack(snaps).mean(0), rtol=1e-6, atol=1e-7)
    assert float(net.weight.detach()[0, 0, 4]) == 0.0 and not bool(net.mask[0, 0, 4])
    torch.testing.assert_close(result.loss, evaluate(net, x, y, "mse"), rtol=1e-5, atol=1e-7)
    with pytest.raises(InputError, match="at least one epoch"):
        averaged_fit(net, x, y, 0, trainer)
    with pytest.raises(InputError, match="adam"):
        averaged_fit(net, x, y, 1, TrainerConfig(method="lbfgs"))


def test_adam_snapshot_and_resume_equal_one_uninterrupted_training() -> None:
    """A training stopped after epoch 2 and resumed from its snapshot ends exactly where one
    that ran through ends (model, losses and curve)."""
    import copy

    from netbonsai.data.task import Split
    from netbonsai.train import Budget, TrainerConfig, fit

    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 4, generator=g)
    y = (x[:, :1] * x[:, 1:2]).tanh()
    trainer = TrainerConfig(method="adam", lr=0.01, batch_size=32)

    def model() -> torch.nn.Module:
        torch.manual_seed(1)
        return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))

    whole = model()
    full = fit(whole, Split(x, y), Budget(epochs=5), trainer, seed=3)
    snapshots = []
    first = model()
    fit(first, Split(x, y), Budget(epochs=2), trainer, seed=3, snapshot=lambda s: snapshots.append(copy.deepcopy(s)))
    assert [s["epoch"] for s in snapshots] == [1, 2]
    resumed = model()  # a fresh process: the snapshot carries everything
    rest = fit(resumed, Split(x, y), Budget(epochs=5), trainer, seed=3, resume_from=snapshots[-1])
    assert rest.epochs == 5 and rest.curve == full.curve
    for a, b in zip(whole.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
    assert torch.equal(rest.loss, full.loss)
