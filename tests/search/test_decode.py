"""decode: shapes, merge rules (zero-padded sums, concat), pools, parameter counts, determinism, training."""

from __future__ import annotations

import random

import networkx as nx
import pytest
import torch
import torch.nn.functional as F

from netbonsai.errors import InputError
from netbonsai.search import Genotype, GenotypeNet, count_params, decode, random_genotype


def build(nodes: dict[int, tuple[str, int | None]], edges: list[tuple[int, int]]) -> Genotype:
    g = nx.DiGraph()
    for n, (op, ch) in nodes.items():
        g.add_node(n, op=op, channels=ch)
    g.add_edges_from(edges)
    return Genotype(g)


# input -> conv3(8) and conv5(16) -> sum -> output
SUM = build(
    {0: ("input", None), 1: ("conv3", 8), 2: ("conv5", 16), 3: ("sum", None), 4: ("output", None)},
    [(0, 1), (0, 2), (1, 3), (2, 3), (3, 4)],
)
# input -> conv3(8) and conv3(16) -> concat -> conv3(4) -> output
CONCAT = build(
    {0: ("input", None), 1: ("conv3", 8), 2: ("conv3", 16), 3: ("concat", None), 4: ("conv3", 4)}
    | {5: ("output", None)},
    [(0, 1), (0, 2), (1, 3), (2, 3), (3, 4), (4, 5)],
)


def head_input(net: GenotypeNet, x: torch.Tensor) -> torch.Tensor:
    seen = []
    handle = net.head.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    net(x)
    handle.remove()
    return seen[0]


def test_sum_of_an_8_and_a_16_channel_conv_has_the_hand_counted_parameters() -> None:
    net = decode(SUM, in_channels=3, image_size=(8, 8), n_classes=10)
    conv3 = 3 * 8 * 3 * 3 + 2 * 8  # weights + BatchNorm scale and shift, no bias
    conv5 = 3 * 16 * 5 * 5 + 2 * 16
    head = 16 * 10 + 10  # the sum is zero-padded to 16 channels
    assert count_params(net) == conv3 + conv5 + head == 1634
    assert net.out_channels == {0: 3, 1: 8, 2: 16, 3: 16, 4: 16}
    assert isinstance(count_params(net), int)


def test_sum_zero_pads_the_narrower_input() -> None:
    torch.manual_seed(0)
    net = decode(SUM, 3, (6, 6), 5).eval()
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        a, b = net.layers["1"](x), net.layers["2"](x)
        expected = (F.pad(a, (0, 0, 0, 0, 0, 8)) + b).mean(dim=(2, 3))
        got = head_input(net, x)
    assert torch.allclose(got, expected, atol=1e-6)
    assert torch.allclose(got[:, 8:], b[:, 8:].mean(dim=(2, 3)), atol=1e-6)


def test_concat_gives_the_summed_channel_count_to_the_next_conv_in_order() -> None:
    net = decode(CONCAT, 3, (6, 6), 2).eval()
    conv = net.layers["4"][0]
    assert conv.in_channels == 24 and conv.out_channels == 4 and net.out_channels[3] == 24
    x = torch.randn(2, 3, 6, 6)
    seen = []
    handle = net.layers["4"].register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    with torch.no_grad():
        net(x)
        assert torch.equal(seen[0], torch.cat([net.layers["1"](x), net.layers["2"](x)], dim=1))
    handle.remove()
    assert count_params(net) == (3 * 8 * 9 + 16) + (3 * 16 * 9 + 32) + (24 * 4 * 9 + 8) + (4 * 2 + 2)


def test_pools_keep_channels_and_size_and_avgpool_keeps_a_constant_image_constant() -> None:
    ops = ["input", "avgpool", "maxpool", "skip", "output"]
    chain = build({i: (op, None) for i, op in enumerate(ops)}, [(0, 1), (1, 2), (2, 3), (3, 4)])
    net = decode(chain, 2, (5, 7), 3)
    assert count_params(net) == 2 * 3 + 3 and net.out_channels[4] == 2
    x = torch.full((1, 2, 5, 7), 2.5)
    assert torch.allclose(head_input(net, x), torch.full((1, 2), 2.5))
    x = torch.zeros(1, 2, 5, 7)
    x[0, 0, 0, 0] = 9.0  # a corner pixel
    # avgpool over in-image pixels only: 9/4 at (0,0), 9/6 at (0,1) and (1,0), 9/9 at (1,1); the max pool
    # spreads each over its 3x3 window: 4 pixels get 9/4, 4 more get 9/6, one more gets 1 -> 16 in total
    assert torch.allclose(head_input(net, x)[0], torch.tensor([16 / 35, 0.0]))


@pytest.mark.parametrize("seed", range(6))
def test_output_shape_for_image_and_flat_input(seed: int) -> None:
    g = random_genotype(random.Random(seed), channels=(4, 8))
    net = decode(g, 3, (5, 4), 7).eval()
    x = torch.randn(2, 3, 5, 4)
    with torch.no_grad():
        out, flat = net(x), net(x.reshape(2, -1))
    assert out.shape == (2, 7) and torch.equal(out, flat)
    assert net.genotype is g and net.order[0] == g.input and net.order[-1] == g.output
    with pytest.raises(InputError, match=r"expected input \(N, 3, H, W\) or \(N, 60\)"):
        net(torch.randn(2, 59))
    with pytest.raises(InputError, match="expected input"):
        net(torch.randn(2, 1, 5, 4))


def test_same_seed_same_weights() -> None:
    g = random_genotype(random.Random(4), channels=(4, 8))
    weights = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        weights.append(decode(g, 3, (8, 8), 10).state_dict())
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not torch.equal(weights[0]["head.weight"], weights[2]["head.weight"])


def test_one_adam_step_on_random_data_is_finite_and_moves_the_weights() -> None:
    torch.manual_seed(0)
    g = random_genotype(random.Random(11), channels=(4, 8))
    assert any(op.startswith("conv") for op in g.operations().values())
    net = decode(g, 3, (8, 8), 10)
    before = [p.detach().clone() for p in net.parameters()]
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    loss = F.cross_entropy(net(torch.randn(4, 3 * 8 * 8)), torch.randint(0, 10, (4,)))
    loss.backward()
    opt.step()
    assert torch.isfinite(loss) and loss.item() > 0
    assert all(not torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_decode_checks_structure_only_and_its_arguments() -> None:
    deep = build({0: ("input", None), **{i: ("skip", None) for i in range(1, 21)}, 21: ("output", None)},
                 [(i, i + 1) for i in range(21)])
    assert decode(deep, 1, (2, 2), 2)(torch.randn(1, 4)).shape == (1, 2)  # depth 20 > 12 still decodes
    cyclic = nx.DiGraph(SUM.graph)
    cyclic.add_edge(3, 1)
    with pytest.raises(InputError, match="cycle"):
        decode(Genotype(cyclic), 3, (8, 8), 10)
    with pytest.raises(InputError, match="image_size"):
        decode(SUM, 3, (8,), 10)
    with pytest.raises(InputError, match="in_channels and n_classes"):
        decode(SUM, 0, (8, 8), 10)
