"""Physical compaction of masked MLPs (dead and constant neurons) and the sparse CSR form."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from netbonsai.errors import InputError
from netbonsai.nets.compact import SparseMLP, compact_mlp, compacted_params, compacted_shape, to_sparse_mlp
from netbonsai.nets.masked import MaskedLinear, make_prunable

ATOL = 1e-6

# A 4-5-4-3 network with a hand-made mask. Hidden layer 1: h0..h4, hidden layer 2: g0..g3.
#   h0: normal (inputs 0, 1 -> g0)
#   h1: dead (live inputs, no live outgoing weight)
#   h2: constant (no live input) feeding g0, g1, g2: folds into their biases
#   h3: feeds only g3, which is dead (no outgoing): chain, h3 becomes dead once g3 is gone
#   h4: normal (inputs 0, 2 -> g1)
#   g2: its only input is h2: chain, g2 becomes constant once h2 is folded, then folds into the outputs
#   input 3 feeds nothing but stays (the input width is the contract)
MASK1 = [[1, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0], [0, 1, 1, 0], [1, 0, 1, 0]]
MASK2 = [[1, 0, 1, 0, 0], [0, 0, 1, 0, 1], [0, 0, 1, 0, 0], [0, 0, 0, 1, 0]]
MASK3 = [[1, 1, 1, 0]] * 3
# kept: h0, h4 and g0, g1 -> 4-2-2-3 with weights 2*4 + 2*2 + 3*2 and biases 2 + 2 + 3
EXPECTED_PARAMS = 8 + 2 + 4 + 2 + 6 + 3


def hand_net(seed: int = 0, stale: bool = True) -> nn.Sequential:
    torch.manual_seed(seed)
    net = make_prunable(nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 4), nn.Sigmoid(), nn.Linear(4, 3)))
    with torch.no_grad():
        for layer, mask in zip([net[0], net[2], net[4]], [MASK1, MASK2, MASK3]):
            layer.mask.copy_(torch.tensor(mask, dtype=torch.bool))
            layer.bias.uniform_(-1, 1)
            if not stale:
                layer.apply_mask_()
    return net.eval()  # with stale=True the removed weights keep non-zero values: weight * mask is what counts


def inputs(n: int = 64, width: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, width, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("stale", [True, False])
def test_hand_made_pattern(stale: bool) -> None:
    net = hand_net(stale=stale)
    before = copy.deepcopy(net.state_dict())
    small = compact_mlp(net)
    assert [type(m) for m in small] == [nn.Linear, nn.Tanh, nn.Linear, nn.Sigmoid, nn.Linear]
    assert [tuple(m.weight.shape) for m in small[::2]] == [(2, 4), (2, 2), (3, 2)]
    assert compacted_shape(net) == [4, 2, 2, 3]
    assert compacted_params(net) == EXPECTED_PARAMS == sum(p.numel() for p in small.parameters())
    x = inputs()
    torch.testing.assert_close(small(x), net(x), atol=ATOL, rtol=0)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # the input is untouched

    # the matrices by hand: kept rows/columns of weight * mask, biases with the constants folded in
    w1, w2, w3 = (layer.weight.detach() * layer.mask for layer in (net[0], net[2], net[4]))
    b1, b2, b3 = (layer.bias.detach() for layer in (net[0], net[2], net[4]))
    h2 = torch.tanh(b1[2])
    g2 = torch.sigmoid(b2[2] + w2[2, 2] * h2)
    torch.testing.assert_close(small[0].weight, w1[[0, 4]])
    assert small[0].weight[:, 3].eq(0).all() and small[0].weight[0, 2] == 0  # removed entries stay 0
    torch.testing.assert_close(small[0].bias, b1[[0, 4]])
    torch.testing.assert_close(small[2].weight, w2[[0, 1]][:, [0, 4]])
    torch.testing.assert_close(small[2].bias, b2[[0, 1]] + w2[[0, 1], 2] * h2)
    torch.testing.assert_close(small[4].weight, w3[:, [0, 1]])
    torch.testing.assert_close(small[4].bias, b3 + w3[:, 2] * g2)


def test_hand_made_pattern_as_sparse_csr() -> None:
    net = hand_net()
    sparse = to_sparse_mlp(net)
    assert isinstance(sparse, SparseMLP)
    assert all(layer.weight.layout == torch.sparse_csr for layer in sparse.layers)
    assert sparse.nnz == 4 + 2 + 6  # live weights of the compacted net: h0 2, h4 2; g0 1, g1 1; outputs 3 * 2
    x = inputs()
    torch.testing.assert_close(sparse(x), net(x), atol=ATOL, rtol=0)
    torch.testing.assert_close(sparse(x[:1]), net(x[:1]), atol=ATOL, rtol=0)
    batch = x.reshape(8, 8, 4)  # leading dimensions pass through
    torch.testing.assert_close(sparse(batch), net(batch), atol=ATOL, rtol=0)
    full = to_sparse_mlp(net, compact=False)  # same shapes, only live weights stored
    assert [(layer.out_features, layer.in_features) for layer in full.layers] == [(5, 4), (4, 5), (3, 4)]
    assert full.nnz == sum(int(torch.tensor(m).sum()) for m in (MASK1, MASK2, MASK3))
    torch.testing.assert_close(full(x), net(x), atol=ATOL, rtol=0)
    single = full.layers[0]
    torch.testing.assert_close(single(x), net[0](x), atol=ATOL, rtol=0)


def test_dense_network_is_unchanged() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 5), nn.Tanh(), nn.Linear(5, 1))
    small = compact_mlp(net)
    assert compacted_params(net) == 61  # the paper's 4-5-5-1 count
    for a, b in zip(net.parameters(), small.parameters()):
        assert torch.equal(a, b)
    sparse = to_sparse_mlp(net)
    torch.testing.assert_close(sparse(inputs()), net(inputs()), atol=ATOL, rtol=0)


def test_everything_collapses_to_the_output_bias() -> None:
    net = hand_net()
    with torch.no_grad():
        net[0].mask.zero_()  # no input reaches anything: every hidden neuron is constant
    small = compact_mlp(net)
    assert compacted_shape(net) == [4, 0, 0, 3]
    assert compacted_params(net) == 3
    x = inputs()
    torch.testing.assert_close(small(x), net(x), atol=ATOL, rtol=0)
    torch.testing.assert_close(to_sparse_mlp(net)(x), net(x), atol=ATOL, rtol=0)


def test_constant_neuron_without_bias_folds_a_new_bias() -> None:
    torch.manual_seed(0)
    net = make_prunable(nn.Sequential(nn.Linear(3, 4, bias=False), nn.Sigmoid(), nn.Linear(4, 2, bias=False)))
    with torch.no_grad():
        net[0].mask[1] = False  # neuron 1 outputs sigmoid(0) = 0.5 for every input
    small = compact_mlp(net)
    assert small[0].bias is None and small[2].bias is not None
    assert compacted_params(net) == 3 * 3 + 2 * 3 + 2
    torch.testing.assert_close(small[2].bias, 0.5 * net[2].weight.detach()[:, 1])
    x = inputs(width=3)
    torch.testing.assert_close(small(x), net(x), atol=ATOL, rtol=0)
    # ReLU(0) = 0: the neuron is removed and no bias appears
    net[1] = nn.ReLU()
    assert compact_mlp(net)[2].bias is None and compacted_params(net) == 3 * 3 + 2 * 3


@pytest.mark.parametrize("act", [nn.ReLU, nn.Tanh, nn.Sigmoid, nn.Identity, nn.ELU, nn.GELU, nn.Softplus])
def test_random_masks_keep_outputs_and_leave_no_removable_neuron(act: type[nn.Module]) -> None:
    generator = torch.Generator().manual_seed(7)
    for trial in range(6):
        sizes = [6, 9, 8, 7, 3]
        torch.manual_seed(trial)
        layers: list[nn.Module] = []
        for a, b in zip(sizes, sizes[1:]):
            layers += [nn.Linear(a, b), act()]
        net = make_prunable(nn.Sequential(*layers[:-1])).eval()
        density = 0.15 + 0.1 * trial
        with torch.no_grad():
            for layer in net[::2]:
                layer.mask.copy_(torch.rand(layer.mask.shape, generator=generator) < density)
                layer.apply_mask_()
        small = compact_mlp(net)
        x = torch.randn(32, 6, generator=generator)
        torch.testing.assert_close(small(x), net(x), atol=ATOL, rtol=0)
        torch.testing.assert_close(to_sparse_mlp(net)(x), net(x), atol=ATOL, rtol=0)
        linears = list(small[::2])
        assert linears[0].in_features == 6 and linears[-1].out_features == 3
        for k in range(len(linears) - 1):  # every kept hidden neuron has a live input and a live output
            assert (linears[k].weight != 0).any(dim=1).all()
            assert (linears[k + 1].weight != 0).any(dim=0).all()
        assert compacted_shape(small) == compacted_shape(net)  # idempotent
        assert compacted_params(small) == compacted_params(net)


def test_plain_and_torch_pruned_linear_layers() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 5), nn.ReLU(), nn.Dropout(0.5), nn.Linear(5, 2), nn.Softmax(dim=-1))
    prune.custom_from_mask(net[1], "weight", torch.tensor(MASK1, dtype=torch.bool))
    with torch.no_grad():
        net[4].weight[:, 0] = 0  # h0 is dead in a plain Linear: zero weights count as removed
    net.eval()
    small = compact_mlp(net)
    assert isinstance(small[0], nn.Flatten) and isinstance(small[-1], nn.Softmax)
    assert compacted_shape(net) == [4, 3, 2]  # h0 dead, h2 constant; h1, h3, h4 kept
    x = inputs().reshape(64, 2, 2)
    torch.testing.assert_close(small(x), net(x), atol=ATOL, rtol=0)
    torch.testing.assert_close(to_sparse_mlp(net)(x), net(x), atol=ATOL, rtol=0)
    assert not small.training


def test_dtype_is_kept() -> None:
    net = hand_net().double()
    small = compact_mlp(net)
    assert all(p.dtype == torch.float64 for p in small.parameters())
    x = inputs().double()
    torch.testing.assert_close(small(x), net(x), atol=1e-12, rtol=0)
    assert to_sparse_mlp(net)(x).dtype == torch.float64


def test_nested_sequentials_are_flattened() -> None:
    net = hand_net()
    nested = nn.Sequential(nn.Sequential(net[0], net[1]), net[2], nn.Sequential(net[3], net[4]))
    assert compacted_shape(nested) == [4, 2, 2, 3]
    torch.testing.assert_close(compact_mlp(nested)(inputs()), net(inputs()), atol=ATOL, rtol=0)


@pytest.mark.parametrize(
    "model, message",
    [
        (nn.Linear(3, 2), "needs an nn.Sequential"),
        (nn.Sequential(nn.ReLU(), nn.Flatten()), "at least one Linear layer"),
        (nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)), r"layer 1 \(BatchNorm1d.*elementwise"),
        (nn.Sequential(nn.Linear(3, 4), nn.Softmax(dim=-1), nn.Linear(4, 2)), r"layer 1 \(Softmax\)"),
        (nn.Sequential(nn.Linear(3, 4), nn.PReLU(4), nn.Linear(4, 2)), r"layer 1 \(PReLU"),
        (nn.Sequential(nn.Linear(3, 4), nn.Conv2d(1, 1, 3), nn.Linear(4, 2)), r"Conv2d \(weight of shape \(1, 1, 3, 3\)\)"),
        (nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(5, 2)), "do not chain: 4 outputs feed 5 inputs"),
    ],
)
def test_unsupported_models(model: nn.Module, message: str) -> None:
    with pytest.raises(InputError, match=message):
        compact_mlp(model)
    with pytest.raises(InputError, match=message):
        to_sparse_mlp(model)


def test_single_prelu_slope_is_supported() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(MaskedLinear(4, 5), nn.PReLU(), MaskedLinear(5, 2)).eval()
    with torch.no_grad():
        net[0].mask[2] = False
        net[0].bias[2] = -0.7  # constant neuron on the negative side of PReLU
    assert compacted_shape(net) == [4, 4, 2]
    torch.testing.assert_close(compact_mlp(net)(inputs()), net(inputs()), atol=ATOL, rtol=0)
