"""compact_cnn, cnn_counts, channel_prune, and masks surviving compact_mlp -> from_sequential."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from netbonsai.errors import InputError
from netbonsai.nets.compact import compact_mlp
from netbonsai.nets.compact_cnn import cnn_counts, compact_cnn
from netbonsai.nets.convert import from_sequential
from netbonsai.nets.masked import (MaskedConv2d, MaskedLinear, apply_masks_, count_weights, make_prunable,
                                   num_live_params)
from netbonsai.prune import channel_prune, prune_step

ATOL = 1e-5


def cnn(pad2: int = 0) -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=pad2), nn.ReLU(), nn.Flatten(), nn.Linear(8 * (2 + 2 * pad2) ** 2, 10), nn.ReLU(),
        nn.Linear(10, 3),
    )
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
        model[1].weight.uniform_(0.5, 1.5)
        model[1].bias.uniform_(-0.5, 0.5)
    return make_prunable(model).eval()


def inputs() -> torch.Tensor:
    return torch.randn(9, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def test_dead_and_constant_channels_are_removed_exactly() -> None:
    model = cnn()
    with torch.no_grad():
        model[0].mask[1] = False  # conv1 channel 1 reads nothing: constant, read by an unpadded conv: folded
        model[4].mask[:, 2] = False  # conv1 channel 2 is read by nothing: dead
        model[4].mask[5] = False  # conv2 channel 5 constant: folded into the Linear's bias
        model[7].mask[:, 4 * 6: 4 * 7] = False  # conv2 channel 6: its 4 columns after Flatten are unread: dead
        model[7].mask[3] = False  # hidden neuron 3 constant: folded
        model[0].mask[0, 0, 0] = False  # unstructured sparsity inside a kept channel
        model[4].mask[0, 0, 1, 1] = False
        model[4].bias[5] = 0.7  # a constant channel that is not zero after ReLU
    apply_masks_(model)
    small = compact_cnn(model)
    assert not any(isinstance(m, (MaskedLinear, MaskedConv2d)) for m in small.modules())
    assert [small[0].out_channels, small[1].num_features, small[4].in_channels] == [4, 4, 4]
    assert [small[4].out_channels, small[7].in_features, small[7].out_features, small[9].out_features] == \
        [6, 24, 9, 3]
    torch.testing.assert_close(small(inputs()), model(inputs()), atol=ATOL, rtol=0)
    assert small[9].in_features == 9

    # stored = the dense blocks of the kept channels; live = their live weights plus biases and BatchNorm
    k1, k2, k3 = [0, 3, 4, 5], [0, 1, 2, 3, 4, 7], [0, 1, 2, 4, 5, 6, 7, 8, 9]
    cols = [4 * c + j for c in k2 for j in range(4)]
    stored = (4 * 9 + 4) + 2 * 4 + (6 * 4 * 9 + 6) + (9 * 24 + 9) + (3 * 9 + 3)
    live = (int(model[0].mask[k1].sum()) + 4 + 2 * 4 + int(model[4].mask[k2][:, k1].sum()) + 6
            + int(model[7].mask[k3][:, cols].sum()) + 9 + int(model[9].mask[:, k3].sum()) + 3)
    counts = cnn_counts(model)
    assert sum(p.numel() for p in small.parameters()) == counts.stored == stored
    assert counts.live == live < stored  # zeros inside kept channels stay stored
    assert counts.shape == [1, 4, 6, 9, 3]
    assert counts.live < num_live_params(model)


def test_constant_channel_read_by_a_padded_conv_is_kept() -> None:
    model = cnn(pad2=1)
    with torch.no_grad():
        model[0].mask[1] = False  # BN makes its constant non-zero, and conv2 pads with zeros: not foldable
        model[0].mask[2] = False
        model[0].bias[2] = -100.0
        model[1].bias[2] = -5.0  # ... this one is 0 after the ReLU: removable
    apply_masks_(model)
    small = compact_cnn(model)
    assert small[0].out_channels == 5
    torch.testing.assert_close(small(inputs()), model(inputs()), atol=ATOL, rtol=0)


def test_pruned_cnn_compacts_with_equal_outputs() -> None:
    model = cnn()
    prune_step(model, "magnitude-blinded", 0.8)
    small = compact_cnn(model)
    torch.testing.assert_close(small(inputs()), model(inputs()), atol=ATOL, rtol=0)
    counts = cnn_counts(model)
    assert counts.live <= num_live_params(model) and counts.stored <= sum(p.numel() for p in model.parameters())


def test_compact_mlp_refuses_cnns_and_points_to_compact_cnn() -> None:
    with pytest.raises(InputError, match="compact_cnn"):
        compact_mlp(cnn())
    with pytest.raises(InputError, match="grouped"):
        compact_cnn(nn.Sequential(nn.Conv2d(2, 4, 3, groups=2), nn.Flatten(), nn.Linear(4, 1)))
    with pytest.raises(InputError, match="Flatten"):
        compact_cnn(nn.Sequential(nn.Conv2d(2, 4, 3), nn.Linear(4, 1)))


@pytest.mark.parametrize("importance", ["l1", "l2"])
def test_channel_prune_removes_whole_channels(importance: str) -> None:
    model = cnn()
    norms = model[0].weight.detach().abs().flatten(1).sum(1)
    masked = channel_prune(model, 0.5, importance=importance, compact=False)
    assert masked is model
    gone = ~model[0].mask.flatten(1).any(1)
    assert int(gone.sum()) == 3 and int((~model[4].mask.flatten(1).any(1)).sum()) == 4
    if importance == "l1":
        assert set(torch.nonzero(gone).flatten().tolist()) == set(torch.argsort(norms)[:3].tolist())
    small = compact_cnn(model)
    assert [small[0].out_channels, small[4].in_channels, small[4].out_channels, small[7].in_features] == [3, 3, 4, 16]
    assert small[9].out_features == 3
    torch.testing.assert_close(small(inputs()), model(inputs()), atol=ATOL, rtol=0)
    plain = channel_prune(cnn(), 0.5, importance=importance)  # plain layers in, compacted out
    assert plain[0].out_channels == 3 and not any(isinstance(m, MaskedConv2d) for m in plain.modules())
    assert sum(p.numel() for p in plain.parameters()) < sum(p.numel() for p in cnn().parameters())
    with pytest.raises(InputError):
        channel_prune(cnn(), 1.0)


def test_from_sequential_of_a_compacted_mlp_keeps_the_live_count() -> None:
    torch.manual_seed(0)
    model = make_prunable(nn.Sequential(nn.Linear(20, 30), nn.Tanh(), nn.Linear(30, 10), nn.ReLU(), nn.Linear(10, 3)))
    prune_step(model, "magnitude-blinded", 0.6)
    pruned = from_sequential(model).num_params()  # masked layers: masks read (DagNet counts the compacted net)
    compact = compact_mlp(model)
    kept_live = sum(int((m.weight != 0).sum()) + m.bias.numel() for m in compact if isinstance(m, nn.Linear))
    assert kept_live == pruned <= num_live_params(model)
    assert from_sequential(compact).num_params() > kept_live  # zeros counted as live without the option
    assert from_sequential(compact, zeros_are_pruned=True).num_params() == pruned
    masked = compact_mlp(model, masked=True)
    assert all(type(m) is MaskedLinear for m in masked if isinstance(m, nn.Linear))
    assert from_sequential(masked).num_params() == pruned
    x = torch.randn(5, 20)
    torch.testing.assert_close(from_sequential(masked)(x), model(x), atol=ATOL, rtol=0)
    assert count_weights(masked)[0] == kept_live - sum(m.bias.numel() for m in compact if isinstance(m, nn.Linear))
