"""Loss-aware chunked synapse removal (paper 000's removal, many synapses per step)."""

from __future__ import annotations

import pytest
import torch

from netbonsai.errors import InputError
from netbonsai.grow import removal_step
from netbonsai.grow import steps as grow_steps
from netbonsai.nets import DagNet
from netbonsai.nets.normalization import standardize_for
from netbonsai.prune import loss_aware
from netbonsai.prune.loss_aware import (
    LossAwareConfig,
    LossAwareState,
    loss_aware_prune,
    lowest_synapses,
    single_removal_losses,
    variant_windows,
)
from netbonsai.train import Budget, TrainerConfig, evaluate, fit

TRAINER = TrainerConfig(method="lbfgs")


def data(n: int = 500, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 4, generator=g) * 2 - 1
    y = torch.tanh(x[:, :1] - 0.5 * x[:, 1:2]) + 0.3 * x[:, 2:3] * x[:, 3:4]
    return x, y


def trained(seed: int = 0, hidden=(6, 5), epochs: int = 60) -> DagNet:
    x, y = data()
    net = DagNet.mlp([4, *hidden, 1], generator=torch.Generator().manual_seed(seed))
    standardize_for(net, x, y)
    fit(net, x, y, Budget(epochs=epochs), TRAINER)
    return net


def config(**overrides) -> LossAwareConfig:
    values = dict(chunk=8, n_trials=3, trial_epochs=4, eps=0.05, trainer=TRAINER, seed=3)
    values.update(overrides)
    return LossAwareConfig(**values)


# ---------------------------------------------------------------------- shared helpers
def test_grow_steps_reuse_the_same_scoring_functions() -> None:
    assert grow_steps.removal_scores is loss_aware.removal_scores
    assert grow_steps.lowest_synapses is loss_aware.lowest_synapses


def test_variant_windows() -> None:
    assert variant_windows(16, 3, "sizes") == [(0, 16), (0, 8), (0, 4)]
    assert variant_windows(2, 3, "sizes") == [(0, 2), (0, 1), (1, 2)]
    assert variant_windows(1, 3, "sizes") == [(0, 1), (1, 1), (2, 1)]
    assert variant_windows(5, 3, "shifts") == [(0, 5), (1, 5), (2, 5)]


@pytest.mark.parametrize("layered", [True, False])
def test_single_removal_losses_equal_a_population_pass(layered: bool) -> None:
    x, y = data(300, seed=1)
    g = torch.Generator().manual_seed(4)
    net = DagNet.mlp([4, 5, 3, 1], generator=g)
    standardize_for(net, x, y)
    if not layered:  # a neuron "at layer 1/2" feeding every later node, and a relu group
        net = net.insert_neuron(4, range(4), range(4, net.n_nodes), "relu")
        with torch.no_grad():
            net.weight.normal_(generator=g)
            net.apply_mask_()
    sources, targets = lowest_synapses(net, 1000)
    expected = evaluate(net.expand(sources.numel()).remove_synapses_(sources, targets), x, y)
    # a tiny memory bound forces both sample and candidate chunking
    got = single_removal_losses(net, sources, targets, x, y, max_elements=5000)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)
    labels = (y[:, 0] > 0).long()
    two_class = DagNet.mlp([4, 3, 2], generator=g)
    s2, t2 = lowest_synapses(two_class, 100)
    expected = evaluate(two_class.expand(s2.numel()).remove_synapses_(s2, t2), x, labels, "cross_entropy")
    got = single_removal_losses(two_class, s2, t2, x, labels, "cross_entropy")
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)
    with pytest.raises(InputError):
        single_removal_losses(net.expand(2), sources[:1], targets[:1], x, y)


# ---------------------------------------------------------------------- the removal loop
def test_removes_weights_and_never_revives_one() -> None:
    net = trained()
    x, y = data()
    start_mask = net.mask.clone()
    start_weight = net.weight.detach().clone()
    masks = [start_mask[0]]

    def on_step(record, accepted):
        masks.append(accepted.mask[0].clone())
        assert accepted.population_size == 1
        return {"live_check": int(accepted.mask.sum())}

    result = loss_aware_prune(net, x, y, config(), on_step=on_step)
    assert torch.equal(net.mask, start_mask) and torch.equal(net.weight.detach(), start_weight)
    assert result.removed > 0 and result.steps
    assert result.removed == int(start_mask.sum()) - int(result.net.mask.sum())
    for before, after in zip(masks, masks[1:]):
        assert not (after & ~before).any()  # nothing revived
        assert int(before.sum()) > int(after.sum())
    assert float(result.net.weight.detach()[~result.net.mask].abs().max()) == 0.0
    record = result.steps[-1]
    assert record["live_check"] == record["live"] == int(result.net.mask.sum())
    assert record["removed"] == result.removed
    assert record["params"] == result.net.num_params()
    assert record["train_loss"] == pytest.approx(float(evaluate(result.net, x, y)[0]), rel=1e-5)
    # removed synapses stay removed through further training
    fit(result.net, x, y, Budget(epochs=5), TRAINER)
    assert float(result.net.weight.detach()[~result.net.mask].abs().max()) == 0.0


@pytest.mark.parametrize("reference", ["phase", "previous"])
def test_every_accepted_step_respects_eps(reference: str) -> None:
    net = trained(seed=1)
    x, y = data()
    xv, yv = data(200, seed=9)
    eps = 0.02
    cfg = config(eps=eps, reference=reference)
    result = loss_aware_prune(net, x, y, cfg, val_data=(xv, yv))
    start = float(evaluate(net, xv, yv)[0])
    assert result.reference_loss == pytest.approx(start, rel=1e-6)
    assert result.steps
    previous = start
    for record in result.steps:
        expected_reference = start if reference == "phase" else previous
        assert record["reference"] == pytest.approx(expected_reference, rel=1e-6)
        assert record["decision_loss"] <= (1 + eps) * record["reference"] + 1e-12
        previous = record["decision_loss"]
    # the decision loss is the validation loss of the accepted network
    assert result.steps[-1]["decision_loss"] == pytest.approx(float(evaluate(result.net, xv, yv)[0]), rel=1e-5)
    assert result.stop_reason == "converged"
    # converged: even a chunk of one synapse failed, by more than eps
    last = result.last_tries[-1]
    assert last["sizes"] == [1] * len(last["sizes"])
    limit = (1 + eps) * (start if reference == "phase" else previous)
    assert min(last["losses"]) > limit


def test_chunk_halves_after_a_failed_step() -> None:
    net = trained(seed=2)
    x, y = data()
    # a large chunk with a tight eps: the first tries must fail and shrink the chunk
    result = loss_aware_prune(net, x, y, config(chunk=32, eps=0.01, n_trials=2, regrow=False))
    tries = [t for record in result.steps for t in record["tried"]] + result.last_tries
    assert tries[0]["chunk"] == 32 and tries[0]["sizes"] == [32, 16]
    for record in result.steps:
        for failed, retry in zip(record["tried"], record["tried"][1:]):
            assert retry["chunk"] == max(1, min(failed["sizes"]) // 2)
        # without regrow the next step starts at the accepted size
        assert record["chunk"] in record["tried"][-1]["sizes"]
    assert any(record["failed"] > 0 for record in result.steps) or result.last_tries
    chunks = [record["chunk"] for record in result.steps]
    assert chunks == sorted(chunks, reverse=True)
    assert result.stop_reason == "converged"


def test_targets_and_time_budget_stop_the_run() -> None:
    net = trained()
    x, y = data()
    start_live = int(net.mask.sum())
    exact = loss_aware_prune(net, x, y, config(eps=10.0, max_removed=13))
    assert exact.removed == 13 and exact.stop_reason == "target"
    share = loss_aware_prune(net, x, y, config(eps=10.0, max_fraction=0.5))
    assert share.removed == start_live // 2 and share.stop_reason == "target"
    assert share.removed_fraction == pytest.approx(share.removed / start_live)
    timed = loss_aware_prune(net, x, y, config(max_seconds=1e-9))
    assert timed.stop_reason == "max_seconds" and timed.removed == 0
    assert torch.equal(timed.net.mask, net.mask)
    steps = loss_aware_prune(net, x, y, config(eps=10.0, max_steps=2))
    assert len(steps.steps) == 2 and steps.stop_reason == "max_steps"


def test_deterministic_given_a_seed_with_adam_and_subsamples() -> None:
    net = trained()
    x, y = data()
    cfg = config(
        trainer=TrainerConfig(method="adam", lr=3e-3, batch_size=64), trial_epochs=2, trial_samples=200,
        score_samples=300, eps=10.0, max_steps=4,
    )
    a = loss_aware_prune(net, x, y, cfg)
    b = loss_aware_prune(net, x, y, cfg)
    assert a.removed == b.removed > 0
    assert torch.equal(a.net.mask, b.net.mask)
    assert torch.equal(a.net.weight.detach(), b.net.weight.detach())
    assert [r["train_loss"] for r in a.steps] == [r["train_loss"] for r in b.steps]


def test_chunk_of_one_is_paper_000s_removal_step() -> None:
    net = trained(seed=2)
    x, y = data()
    n1, n2, epochs = 6, 3, 5
    cfg = config(chunk=1, n_candidates=n1, n_trials=n2, trial_epochs=epochs, eps=1.0, max_steps=1, seed=0)
    result = loss_aware_prune(net, x, y, cfg)
    old = removal_step(net, x, y, n1, n2, epochs, TRAINER, seed=0)
    assert len(result.steps) == 1 and result.removed == 1
    removed = torch.nonzero(net.mask[0] & ~result.net.mask[0]).tolist()
    assert removed == [list(old.synapse)]
    assert result.steps[0]["train_loss"] == pytest.approx(old.train_loss, rel=1e-5)
    assert sorted(result.steps[0]["tried"][0]["losses"]) == pytest.approx(sorted(old.trial_losses), rel=1e-5)
    torch.testing.assert_close(result.net.weight.detach(), old.net.weight.detach(), atol=1e-5, rtol=0)


def test_resuming_from_a_checkpoint_gives_the_same_run() -> None:
    net = trained()
    x, y = data()
    cfg = config(eps=0.03)
    saved: list[dict] = []
    full = loss_aware_prune(net, x, y, cfg, checkpoint=lambda state: saved.append(state.to_dict()))
    assert len(saved) == len(full.steps) + 1 >= 3  # one per accepted step, and the finished state
    state = LossAwareState.from_dict(saved[0])  # as if killed after the first step
    resumed = loss_aware_prune(net, x, y, cfg, state=state)
    assert resumed.removed == full.removed
    assert torch.equal(resumed.net.mask, full.net.mask)
    torch.testing.assert_close(resumed.net.weight.detach(), full.net.weight.detach(), atol=1e-6, rtol=0)
    assert [r["removed"] for r in resumed.steps] == [r["removed"] for r in full.steps]
    assert torch.equal(resumed.start_net.weight, full.start_net.weight)
    finished = LossAwareState.from_dict(saved[-1])
    assert finished.stop_reason == full.stop_reason
    again = loss_aware_prune(net, x, y, cfg, state=finished)  # returns at once
    assert again.removed == full.removed and again.stop_reason == full.stop_reason
    assert torch.equal(again.net.mask, full.net.mask)


def test_config_validation_and_round_trip() -> None:
    cfg = config(max_fraction=0.6)
    assert LossAwareConfig.from_dict(cfg.to_dict()) == cfg
    for bad in (dict(chunk=0), dict(variants="mixed"), dict(reference="start"), dict(eps=-1.0),
                dict(max_fraction=1.5), dict(trial_epochs=-1), dict(candidate_factor=0.5)):
        with pytest.raises(InputError):
            config(**bad)
    with pytest.raises(InputError):
        LossAwareConfig.from_dict({"chunks": 3})
    with pytest.raises(InputError):
        loss_aware_prune(trained().expand(2), *data(), config())


def unusual_net() -> DagNet:
    """Outputs that are not one level (output 9 reads the inputs only) and a plan that permutes
    nodes (hidden node 8 sits on level 1 after the level-2 nodes)."""
    g = torch.Generator().manual_seed(7)
    n_in, n = 3, 11  # inputs 0-2, hidden 3-8, outputs 9-10
    mask = torch.zeros(1, n, n, dtype=torch.bool)
    mask[0, :3, 3:6] = True  # level 1: 3, 4, 5
    mask[0, 3:6, 6:8] = True  # level 2: 6, 7
    mask[0, :3, 8] = True  # level 1 again, after level-2 nodes in index order
    mask[0, [6, 7, 8], 10] = True  # output 10: level 3
    mask[0, :3, 9] = True  # output 9: level 1
    weight = torch.randn(1, n, n, generator=g) * mask
    bias = torch.randn(1, n, generator=g)
    acts = ["identity"] * 3 + ["tanh", "relu", "tanh", "tanh", "sigmoid", "relu", "identity", "identity"]
    net = DagNet(n_in, 2, weight, mask, bias, acts)
    net.set_normalization(torch.zeros(3), torch.ones(3), torch.tensor([0.5, -1.0]), torch.tensor([2.0, 0.5]))
    return net


def test_unusual_layouts_score_and_train_like_the_dag() -> None:
    net = unusual_net()
    assert not net.plan().identity
    x, y = data(200, seed=3)
    x, y = x[:, :3], torch.cat([y, -y], dim=1)
    sources, targets = lowest_synapses(net, 100)
    expected = evaluate(net.expand(sources.numel()).remove_synapses_(sources, targets), x, y)
    torch.testing.assert_close(single_removal_losses(net, sources, targets, x, y, max_elements=3000), expected,
                               rtol=1e-5, atol=1e-7)
    # the column view trains exactly like fit() on the DagNet population
    a = net.expand(2).remove_synapses_(sources[:2], targets[:2])
    b = a.clone()
    trainer = TrainerConfig(method="adam", lr=1e-2, batch_size=32)
    fa = fit(a, x, y, Budget(epochs=3), trainer, seed=5)
    fb = loss_aware.train_population(b, x, y, Budget(epochs=3), trainer, seed=5)
    torch.testing.assert_close(fb.loss, fa.loss, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(b.weight.detach(), a.weight.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(b.bias.detach(), a.bias.detach(), rtol=1e-5, atol=1e-6)
    assert torch.equal(b.mask, a.mask) and float(b.weight.detach()[~b.mask].abs().max()) == 0.0


def test_errors_decision_keeps_the_held_out_error_rate() -> None:
    """With decision="errors" every accepted step keeps the held-out misclassification rate within eps."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(600, 4, generator=g)
    labels = (x[:, 0] + 0.5 * x[:, 1] > 0).long() + (x[:, 2] > 0.8).long()
    trainer = TrainerConfig(method="adam", loss="cross_entropy", lr=0.02, batch_size=64)
    net = DagNet.mlp([4, 8, 3], generator=torch.Generator().manual_seed(0))
    fit(net, x[:400], labels[:400], Budget(epochs=30), trainer)
    val = (x[400:], labels[400:])

    def error_rate(model: DagNet) -> float:
        return float((model(val[0]).argmax(dim=1) != val[1]).float().mean())

    start = error_rate(net)
    result = loss_aware_prune(net, x[:400], labels[:400], LossAwareConfig(
        chunk=4, n_trials=2, trial_epochs=2, eps=0.0, decision="errors", trainer=trainer, seed=1), val_data=val)
    assert result.removed > 0
    assert error_rate(result.net) <= start + 1e-9
    with pytest.raises(InputError, match="decision"):
        LossAwareConfig(decision="accuracy")
