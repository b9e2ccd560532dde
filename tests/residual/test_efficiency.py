"""Per-block scores: an identity block scores 0, a scaled-up block scores higher, the cheap measures
match direct float64 computations from one forward pass, taylor matches a finite difference of
the loss in the block gate, the lesion takes one extra forward per block, scoring leaves the model
as it was (modes, BatchNorm statistics, hooks, gradients); efficiency divides by the right costs."""

from __future__ import annotations

import copy

import pytest
import torch
from scipy.stats import spearmanr
from torch import nn
from torch.nn import functional as F

from netbonsai.errors import InputError
from netbonsai.residual import (
    MEASURES, ResidualBlock, ResidualCNN, ResidualMLP, block_params, block_scores, efficiency, find_blocks,
    skipped, spearman,
)

from .test_blocks import TinyResNet

CE = F.cross_entropy


def mlp(seed: int = 0, blocks: int = 4, activation: str = "tanh") -> ResidualMLP:
    torch.manual_seed(seed)
    return ResidualMLP(6, 8, blocks, 3, activation).double()


def batch(shape: tuple[int, ...], classes: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    return x, torch.randint(0, classes, (shape[0],), generator=g)


def with_bn_statistics(net: nn.Module, shape: tuple[int, ...]) -> nn.Module:
    """``net`` in float64 with BatchNorm running statistics away from their (0, 1) start."""
    net = net.double().train()
    with torch.no_grad():
        for seed in range(3):
            net(batch(shape, 2, seed)[0] * 2 + 0.5)
    return net


def cnn() -> ResidualCNN:
    torch.manual_seed(4)
    return with_bn_statistics(ResidualCNN(1, (4, 6), 3, 5), (16, 1, 8, 8))


def resnet() -> TinyResNet:
    torch.manual_seed(5)
    return with_bn_statistics(TinyResNet(width=4, n_out=5), (16, 1, 8, 8))


NETS = {"mlp": (mlp, (32, 6), 3), "cnn": (cnn, (16, 1, 8, 8), 5), "resnet": (resnet, (16, 1, 8, 8), 5)}


def identity_block(net: nn.Module, k: int) -> None:
    """Zero block ``k``'s last layer (weight and bias): its residual branch is then exactly 0."""
    block = find_blocks(net)[k].module
    last = block.bn2 if hasattr(block, "bn2") else block.body[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()


@pytest.mark.parametrize("kind", NETS)
def test_an_identity_block_scores_zero(kind):
    make, shape, classes = NETS[kind]
    net = make()
    identity_block(net, 1)
    x, y = batch(shape, classes)
    scores = block_scores(net, x, y, CE)
    n = len(find_blocks(net))
    assert list(scores) == list(MEASURES) and all(s.shape == (n,) for s in scores.values())
    assert all(s.dtype == torch.float64 and torch.isfinite(s).all() for s in scores.values())
    assert scores["norm_ratio"][1] == 0 and scores["cosine"][1] == 0
    assert abs(scores["cka"][1]) < 1e-6 and abs(scores["lesion"][1]) < 1e-6
    others = [i for i in range(len(find_blocks(net))) if i != 1]
    assert (scores["norm_ratio"][others] > 1e-3).all() and (scores["cosine"][others] > 0).all()
    assert (scores["lesion"][others] != 0).all()


@pytest.mark.parametrize("kind", NETS)
def test_cheap_measures_take_one_forward_and_the_lesion_one_per_block(kind):
    make, shape, classes = NETS[kind]
    net = make()
    x, y = batch(shape, classes)
    calls = []
    net.register_forward_hook(lambda *_: calls.append(1))
    n = len(find_blocks(net))
    block_scores(net, x, y, CE, measures=("norm_ratio", "cosine", "taylor", "cka"))
    assert len(calls) == 1
    calls.clear()
    block_scores(net, x, y, CE, measures="lesion")
    assert len(calls) == 1 + n
    calls.clear()
    block_scores(net, x, y, CE)
    assert len(calls) == 1 + n


@pytest.mark.parametrize("kind", NETS)
def test_scoring_leaves_the_model_as_it_was(kind):
    make, shape, classes = NETS[kind]
    net = make().train()
    first = find_blocks(net)[0].module
    first.eval()  # a module in its own mode keeps it
    x, y = batch(shape, classes)
    state = copy.deepcopy(net.state_dict())
    modes = [m.training for m in net.modules()]
    out = net.eval()(x)
    net.train()
    first.eval()
    block_scores(net, x, y, CE)
    assert [m.training for m in net.modules()] == modes
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())  # BatchNorm stats included
    assert all(p.grad is None for p in net.parameters())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())
    assert torch.equal(net.eval()(x), out)


def test_cheap_measures_match_direct_computation_mlp():
    net = mlp(blocks=3).eval()
    x, y = batch((32, 6), 3)
    scores = block_scores(net, x, y, CE)
    h = net.stem(x)
    for k, block in enumerate(net.stages[0]):
        out = block(h)
        ratio = ((out - h).norm(dim=1) / h.norm(dim=1)).mean()
        cos = (1 - F.cosine_similarity(h, out, dim=1)).mean()
        xc, yc = h - h.mean(0), out - out.mean(0)
        cka = (yc.T @ xc).square().sum() / ((xc.T @ xc).norm() * (yc.T @ yc).norm())
        with torch.no_grad():
            full = CE(net(x), y)
            with skipped(net, find_blocks(net)[k]):
                lesion = CE(net(x), y) - full
        torch.testing.assert_close(scores["norm_ratio"][k], ratio.detach(), rtol=1e-10, atol=0)
        torch.testing.assert_close(scores["cosine"][k], cos.detach(), rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(scores["cka"][k], 1 - cka.detach(), rtol=1e-4, atol=1e-6)  # float32 (efficiency.CKA_ROWS)
        torch.testing.assert_close(scores["lesion"][k], lesion, rtol=1e-10, atol=1e-14)
        h = out


def test_cheap_measures_match_direct_computation_cnn():
    net = cnn().eval()
    x, y = batch((16, 1, 8, 8), 5)
    scores = block_scores(net, x, y, CE, measures=("cka", "norm_ratio"))
    assert list(scores) == ["cka", "norm_ratio"]
    h, k = net.stem(x), 0
    for stage in net.stages:
        h = stage[0](h)
        for block in stage[1:]:
            out = block(h)
            a, b = h.flatten(1), out.flatten(1)  # 16 samples x 256 or 96 features: the Gram path
            xc, yc = a - a.mean(0), b - b.mean(0)
            cka = (yc.T @ xc).square().sum() / ((xc.T @ xc).norm() * (yc.T @ yc).norm())
            torch.testing.assert_close(scores["cka"][k], 1 - cka.detach(), rtol=1e-4, atol=1e-6)  # float32
            ratio = ((b - a).norm(dim=1) / a.norm(dim=1)).mean()
            torch.testing.assert_close(scores["norm_ratio"][k], ratio.detach(), rtol=1e-10, atol=0)
            h, k = out, k + 1
    assert k == len(scores["cka"]) == 4


def test_cka_ignores_rotation_and_scale_that_the_other_measures_see():
    torch.manual_seed(6)
    q, _ = torch.linalg.qr(torch.randn(8, 8, dtype=torch.float64))
    body = nn.Linear(8, 8).double()
    with torch.no_grad():
        body.weight.copy_(2.5 * q - torch.eye(8, dtype=torch.float64))  # x + body(x) = 2.5 q x
        body.bias.zero_()
    net = nn.Sequential(nn.Linear(6, 8), nn.Sequential(ResidualBlock(body)), nn.Linear(8, 3)).double()
    x, y = batch((32, 6), 3)
    scores = block_scores(net, x, y, CE)
    assert abs(scores["cka"][0]) < 1e-6  # float32
    assert scores["norm_ratio"][0] > 0.5 and scores["cosine"][0] > 0.1


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_taylor_is_the_gate_derivative_of_the_loss(activation):
    net = mlp(seed=7, blocks=4, activation=activation)
    x, y = batch((32, 6), 3)
    taylor = block_scores(net, x, y, CE, measures="taylor")["taylor"]
    eps = 1e-6
    for k, ref in enumerate(find_blocks(net)):
        gate = ref.module.gate
        with torch.no_grad():
            gate.fill_(1 + eps)
            up = CE(net(x), y)
            gate.fill_(1 - eps)
            down = CE(net(x), y)
            gate.fill_(1)
        derivative = float((up - down) / (2 * eps))
        assert abs(derivative) > 1e-5
        assert float(taylor[k]) == pytest.approx(abs(derivative), rel=1e-3)


def test_a_scaled_up_block_scores_higher():
    """Block 2 with its last Linear x 3 (its residual branch x 3) against the same block
    unscaled, on targets made by the scaled network (mean squared error)."""
    plain = mlp(seed=8, blocks=4)
    scaled = copy.deepcopy(plain)
    with torch.no_grad():
        scaled.stages[0][2].body[-1].weight.mul_(3)
        scaled.stages[0][2].body[-1].bias.mul_(3)
    x, _ = batch((32, 6), 3)
    with torch.no_grad():
        target = scaled(x)
    mse = F.mse_loss
    a, b = block_scores(plain, x, target, mse), block_scores(scaled, x, target, mse)
    torch.testing.assert_close(b["norm_ratio"][2], 3 * a["norm_ratio"][2], rtol=1e-10, atol=0)
    assert b["norm_ratio"][2] > a["norm_ratio"][2]
    assert b["lesion"][2] > a["lesion"][2] and b["lesion"][2] > 0
    torch.testing.assert_close(b["norm_ratio"][:2], a["norm_ratio"][:2])  # blocks before it: same inputs


def test_efficiency_divides_by_parameters_or_flops():
    net = cnn()
    x, y = batch((16, 1, 8, 8), 5)
    scores = block_scores(net, x, y, CE, measures=("lesion", "norm_ratio"))
    params = torch.tensor([18 * 16 + 16, 18 * 16 + 16, 18 * 36 + 24, 18 * 36 + 24], dtype=torch.float64)
    assert [block_params(r) for r in find_blocks(net)] == params.tolist()
    per_param = efficiency(scores, net)
    for m in scores:
        torch.testing.assert_close(per_param[m], scores[m] / params, rtol=1e-12, atol=0)
    flops = torch.tensor([18 * 16 * 64] * 2 + [18 * 36 * 16] * 2, dtype=torch.float64)
    per_flop = efficiency(scores, net, per="flops", example=x[:2])
    torch.testing.assert_close(per_flop["lesion"], scores["lesion"] / flops, rtol=1e-12, atol=0)


def test_efficiency_and_scores_reject_bad_input():
    net = mlp(blocks=2)
    x, y = batch((8, 6), 3)
    scores = block_scores(net, x, y, CE, measures=["cosine"])
    with pytest.raises(InputError):
        efficiency(scores, net, per="time")
    with pytest.raises(InputError):
        efficiency(scores, net, per="flops")
    with pytest.raises(InputError):
        efficiency({"cosine": torch.ones(3)}, net)
    for measures in (["lesion", "lesion"], ["speed"], []):
        with pytest.raises(InputError):
            block_scores(net, x, y, CE, measures=measures)
    with pytest.raises(InputError):
        block_scores(net, x, y, lambda out, target: F.cross_entropy(out, target, reduction="none"))
    inplace = nn.Sequential(nn.Linear(6, 8), nn.Sequential(ResidualBlock(nn.ReLU(inplace=True))),
                            nn.Linear(8, 3))
    with pytest.raises(InputError, match="in place"):
        block_scores(inplace.double(), x, y, CE)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in inplace.modules())


def test_a_model_without_blocks_gets_empty_scores():
    scores = block_scores(mlp(blocks=0), *batch((8, 6), 3), CE)
    assert list(scores) == list(MEASURES) and all(s.shape == (0,) for s in scores.values())


def test_spearman_matches_scipy_with_ties():
    g = torch.Generator().manual_seed(9)
    a = torch.randint(0, 5, (30,), generator=g).double()
    b = a + torch.randn(30, generator=g, dtype=torch.float64) * 2
    assert spearman(a, b) == pytest.approx(spearmanr(a.numpy(), b.numpy())[0], abs=1e-12)
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0, abs=1e-12)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0, abs=1e-12)
    assert spearman([1.0, 2.0, 2.0, 5.0], [0.0, 1.0, 1.0, 3.0]) == pytest.approx(1.0)
    assert spearman([1, 1, 1], [1, 2, 3]) != spearman([1, 1, 1], [1, 2, 3])  # NaN: a constant vector
    with pytest.raises(InputError):
        spearman([1, 2, 3], [1, 2])


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_taylor2_is_the_second_order_lesion_estimate_with_fisher_curvature(activation):
    """Per sample l_n'(g) by central differences of the block gate (float64), then
    mean(-l_n' + l_n'^2 / 2): the measure's definition, computed the slow way."""
    net = mlp(seed=11, blocks=3, activation=activation).double()
    x, y = batch((24, 6), 3)
    x = x.double()
    found = block_scores(net, x, y, CE, measures=("taylor", "taylor2"))
    eps = 1e-6
    for k, ref in enumerate(find_blocks(net)):
        gate = ref.module.gate
        with torch.no_grad():
            gate.fill_(1 + eps)
            up = F.cross_entropy(net(x), y, reduction="none")
            gate.fill_(1 - eps)
            down = F.cross_entropy(net(x), y, reduction="none")
            gate.fill_(1)
        per_sample = (up - down) / (2 * eps)
        assert float(found["taylor2"][k]) == pytest.approx(float((-per_sample + per_sample.square() / 2).mean()),
                                                           rel=1e-5, abs=1e-9)
        assert float(found["taylor"][k]) == pytest.approx(abs(float(per_sample.mean())), rel=1e-5, abs=1e-9)


def test_taylor2_is_the_lesion_where_the_expansion_holds():
    """Labels drawn from the network's own predictions (the Fisher then equals the expected
    curvature and the first-order term averages out) and small residual branches (the lesion a
    small step): taylor2 is the lesion to a few percent. Far from this regime (a network fitted
    to near-zero loss, where skipping a block costs many nats) a local expansion says little."""
    net = mlp(seed=12, blocks=3)
    for ref in find_blocks(net):
        with torch.no_grad():
            ref.module.gate.fill_(0.2)
    x = torch.randn(40_000, 6, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    with torch.no_grad():
        y = torch.multinomial(F.softmax(net(x), dim=1), 1, generator=torch.Generator().manual_seed(6)).squeeze(1)
    found = block_scores(net, x, y, CE, measures=("lesion", "taylor2"))
    assert (found["lesion"] > 0).all()
    assert found["taylor2"] == pytest.approx(found["lesion"], rel=0.03)
