"""Population training of sequence classifiers: batching, joint == separate, clipping, masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from netbonsai.errors import InputError
from netbonsai.nets.recurrent import MaskedRecurrent
from netbonsai.nets.structure import LayeredStructure
from netbonsai.train.fit import Budget
from netbonsai.train.sequences import (
    clip_member_grads_,
    evaluate_sequences,
    fit_sequences,
    length_batches,
    member_losses,
)

VOCAB = 6


def structures() -> list[LayeredStructure]:
    rng = np.random.default_rng(0)
    out = []
    for widths in ([3, 4], [5], [2, 3, 2]):
        masks = []
        for layer, width in enumerate(widths):
            mask = rng.random((width, 4 + sum(widths[:layer]))) < 0.6
            mask[:, 0] = True
            masks.append(mask)
        read = np.zeros(sum(widths), dtype=bool)
        read[-widths[-1]:] = True
        read[0] = True
        out.append(LayeredStructure(4, tuple(widths), tuple(masks), read))
    return out


def dataset(n: int = 40, t: int = 7, seed: int = 0):
    """Codes in [0, VOCAB), lengths 2..t; label 1 when the first code is below VOCAB / 2."""
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, VOCAB, (n, t), generator=g)
    lengths = torch.randint(2, t + 1, (n,), generator=g)
    codes[torch.arange(t) >= lengths[:, None]] = 0  # padding
    labels = (codes[:, 0] < VOCAB // 2).long()
    return codes, lengths, labels


def population(cell: str = "gru", seed: int = 3) -> MaskedRecurrent:
    return MaskedRecurrent(structures(), cell, 2, vocab_size=VOCAB, seed=seed).double()


# ---------------------------------------------------------------------- batching
def test_length_batches_cover_every_sample_once_with_similar_lengths() -> None:
    lengths = torch.tensor([5, 1, 3, 3, 9, 2, 7, 3, 5, 8, 1])
    batches = length_batches(lengths, 3, seed=0)
    assert sorted(torch.cat(batches).tolist()) == list(range(11))
    assert [b.numel() for b in batches].count(3) == 3 and sum(b.numel() for b in batches) == 11
    # batches are consecutive runs of the sorted lengths
    ranges = sorted((int(lengths[b].min()), int(lengths[b].max())) for b in batches)
    assert all(hi <= lo_next for (_, hi), (lo_next, _) in zip(ranges, ranges[1:]))
    again = length_batches(lengths, 3, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(batches, again))
    orders = {tuple(torch.cat(length_batches(lengths, 3, seed=s)).tolist()) for s in range(6)}
    assert len(orders) > 1
    fixed = length_batches(lengths, 4, shuffle=False)
    assert torch.equal(torch.cat(fixed), torch.argsort(lengths, stable=True))


# ---------------------------------------------------------------------- joint == separate
@pytest.mark.parametrize("cell, clip", [("gru", 0.05), ("lstm", 0.05), ("tanh", None)])
def test_members_trained_together_equal_members_trained_alone(cell: str, clip: float | None) -> None:
    codes, lengths, labels = dataset()
    joint = population(cell)
    alone = [joint.select(k) for k in range(3)]
    result = fit_sequences(joint, codes, lengths, labels, Budget(epochs=2), lr=1e-2, batch_size=8, clip_norm=clip)
    assert result.epochs == 2 and result.loss.shape == (3,) and len(result.curve) == 2
    for k, member in enumerate(alone):
        single = fit_sequences(member, codes, lengths, labels, Budget(epochs=2), lr=1e-2, batch_size=8, clip_norm=clip)
        trained = joint.select(k)
        for name, value in member.state_dict().items():
            torch.testing.assert_close(trained.state_dict()[name], value, atol=1e-6, rtol=0, msg=name)
        torch.testing.assert_close(single.loss[0], result.loss[k], atol=1e-6, rtol=0)


def test_clipping_is_active_and_matches_torch_clip_grad_norm_for_one_member() -> None:
    codes, lengths, labels = dataset()
    start = population("gru").select(1)
    clipped, unclipped, manual = (start.select(0) for _ in range(3))
    fit_sequences(clipped, codes, lengths, labels, Budget(epochs=1), lr=1e-2, batch_size=8, clip_norm=0.05)
    fit_sequences(unclipped, codes, lengths, labels, Budget(epochs=1), lr=1e-2, batch_size=8, clip_norm=None)
    assert not torch.allclose(clipped.weight_out, unclipped.weight_out, atol=1e-4)
    # the same training written with torch's own clipping
    optimizer = torch.optim.Adam(manual.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    norms = []
    for index in length_batches(lengths, 8, generator):
        steps = int(lengths[index].max())
        loss = member_losses(manual(codes[index, :steps], lengths[index]), labels[index]).sum()
        optimizer.zero_grad()
        loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(manual.parameters(), 0.05)))
        optimizer.step()
        manual.apply_mask_()
    assert min(norms) > 0.05  # clipping really happened at every step
    for name, value in manual.state_dict().items():
        torch.testing.assert_close(clipped.state_dict()[name], value, atol=1e-9, rtol=0, msg=name)


def test_clip_member_grads_scales_each_member_alone() -> None:
    a = torch.zeros(2, 3, requires_grad=True)
    b = torch.zeros(2, 4, requires_grad=True)
    a.grad = torch.tensor([[3.0, 0, 0], [0.1, 0, 0]])
    b.grad = torch.tensor([[0, 4.0, 0, 0], [0, 0, 0, 0.1]])
    norms = clip_member_grads_([a, b], 1.0)
    torch.testing.assert_close(norms, torch.tensor([5.0, 0.1 * 2**0.5]))
    torch.testing.assert_close(a.grad[0, 0], torch.tensor(3.0 / (5.0 + 1e-6)))
    assert float(a.grad[1, 0]) == pytest.approx(0.1) and float(b.grad[1, 3]) == pytest.approx(0.1)


# ---------------------------------------------------------------------- masks, learning, evaluation
def test_removed_weights_stay_exactly_zero_through_training() -> None:
    codes, lengths, labels = dataset()
    model = population("lstm")
    with torch.no_grad():
        model.mask_hh_l0[:, ::2] = False
        model.mask_ih_l1[1] = False
        model.apply_mask_()
    masks = {name: mask.clone() for name, _, _, mask in model.masked_weights()}
    before = {name: weight.detach().clone() for name, _, weight, _ in model.masked_weights()}
    fit_sequences(model, codes, lengths, labels, Budget(epochs=2), lr=1e-2, batch_size=8)
    for name, _, weight, mask in model.masked_weights():
        assert torch.equal(mask, masks[name])
        assert float(weight.detach()[~mask].abs().sum()) == 0.0
        assert not torch.equal(weight.detach()[mask], before[name][mask])


def test_training_learns_and_evaluation_counts_correctly() -> None:
    codes, lengths, labels = dataset(n=160, seed=1)
    model = population("gru", seed=5)
    loss0, _ = evaluate_sequences(model, codes, lengths, labels)
    seen = []
    result = fit_sequences(
        model, codes, lengths, labels, Budget(epochs=15), lr=3e-2, batch_size=32,
        on_epoch=lambda epoch, losses: seen.append(epoch),
    )
    loss, accuracy = evaluate_sequences(model, codes, lengths, labels, batch_size=50)
    assert seen == list(range(1, 16))
    torch.testing.assert_close(result.loss, loss)
    assert bool((loss < loss0).all()) and float(accuracy.max()) >= 0.9
    with torch.no_grad():
        logits = model(codes, lengths)
    torch.testing.assert_close(accuracy, (logits.argmax(-1) == labels).double().mean(1))
    torch.testing.assert_close(loss, member_losses(logits, labels))


def test_a_seconds_budget_stops_after_an_epoch() -> None:
    codes, lengths, labels = dataset(n=16)
    result = fit_sequences(population(), codes, lengths, labels, Budget(seconds=1e-4), batch_size=8)
    assert result.epochs == 1


def test_float_feature_sequences_train() -> None:
    """(N, T, F) float features train: every member's loss falls, below what any predictor that
    ignored the features could reach (the entropy of the 7:5 labels), and the reported final loss
    is the trained model's loss."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(12, 5, 4, generator=g)
    lengths = torch.randint(1, 6, (12,), generator=g)
    labels = torch.randint(0, 2, (12,), generator=g)
    model = MaskedRecurrent(structures(), "relu", 2, seed=0)
    before, _ = evaluate_sequences(model, x, lengths, labels)
    result = fit_sequences(model, x, lengths, labels, Budget(epochs=10), lr=1e-2, batch_size=4)
    assert result.loss.shape == (3,) and result.epochs == 10 and len(result.curve) == 10
    after, _ = evaluate_sequences(model, x, lengths, labels)
    torch.testing.assert_close(result.loss, after)
    assert bool((after < 0.9 * before).all()), (before, after)
    p = float(labels.float().mean())
    constant_floor = -(p * np.log(p) + (1 - p) * np.log(1 - p))  # ~0.679: the best feature-blind loss
    assert bool((after < constant_floor - 0.05).all()), after


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c, n, y: (c, n, y[:-1]), "labels"),
        (lambda c, n, y: (c, n, y + 2), "class indices"),
        (lambda c, n, y: (c, n + 10, y), "length"),
        (lambda c, n, y: (c.float(), n, y), "integers"),
        (lambda c, n, y: (c + VOCAB, n, y), "vocab_size"),
        (lambda c, n, y: (c, n.float(), y), "integer tensors"),
    ],
)
def test_bad_sequence_data_raises_input_error(change, message: str) -> None:
    codes, lengths, labels = change(*dataset(n=8))
    with pytest.raises(InputError, match=message) as info:
        fit_sequences(population(), codes, lengths, labels, Budget(epochs=1))
    assert "\n" not in str(info.value)
    with pytest.raises(InputError):
        evaluate_sequences(population(), codes, lengths, labels)
