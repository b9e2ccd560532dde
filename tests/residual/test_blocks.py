"""Residual blocks and networks: shapes and parameter counts follow the definitions, find_blocks
finds exactly the identity-skip blocks (ours and a hand-written torchvision-style ResNet),
skipped() is the lesion and restores the model exactly, FLOPs follow the formulas."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from netbonsai.errors import InputError
from netbonsai.residual import (
    BlockRef, DownsampleBlock, ResidualBlock, ResidualCNN, ResidualMLP, block_flops, block_params, conv_body,
    find_blocks, flops_per_block, mlp_body, skipped,
)


class BasicBlock(nn.Module):
    """torchvision's BasicBlock, written out (torchvision is not a dependency)."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        out += identity
        return self.relu(out)


class TinyResNet(nn.Module):
    """conv-bn-relu stem, layer1 (2 identity blocks), layer2 and layer3 (a downsampling block
    then an identity block), average pool, fc."""

    def __init__(self, width: int = 4, n_out: int = 5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(BasicBlock(width, width), BasicBlock(width, width))
        self.layer2 = nn.Sequential(BasicBlock(width, 2 * width, 2), BasicBlock(2 * width, 2 * width))
        self.layer3 = nn.Sequential(BasicBlock(2 * width, 4 * width, 2), BasicBlock(4 * width, 4 * width))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * width, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def test_residual_block_is_post_of_x_plus_gated_body():
    torch.manual_seed(0)
    body, post = mlp_body(5, "tanh"), nn.ReLU()
    block = ResidualBlock(body, post)
    x = torch.randn(7, 5)
    assert torch.allclose(block(x), torch.relu(x + body(x)))
    with torch.no_grad():
        block.gate.fill_(0.25)
    assert torch.allclose(block(x), torch.relu(x + 0.25 * body(x)))
    assert isinstance(ResidualBlock(body).post, nn.Identity)
    assert block.gate.shape == () and [type(m) for m in body] == [nn.Linear, nn.Tanh, nn.Linear]


def test_bodies_and_downsample_block_shapes():
    assert [type(m) for m in conv_body(3)] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Conv2d, nn.BatchNorm2d]
    assert all(m.bias is None for m in conv_body(3) if isinstance(m, nn.Conv2d))
    down = DownsampleBlock(3, 6).eval()
    x = torch.randn(2, 3, 8, 8)
    assert down(x).shape == (2, 6, 4, 4) and down(x).min() >= 0
    expected = torch.relu(down.body(x) + down.projection(x))
    assert torch.equal(down(x), expected)
    assert DownsampleBlock(3, 3, stride=1)(x).shape == x.shape


def test_residual_mlp_structure_and_forward():
    torch.manual_seed(1)
    net = ResidualMLP(6, 8, 3, 2)
    x = torch.randn(4, 2, 3)  # flattened to 6 features
    h = net.stem(x)
    for block in net.stages[0]:
        h = block(h)
    assert torch.equal(net(x), net.head(h)) and net(x).shape == (4, 2)
    empty = ResidualMLP(6, 8, 0, 2)
    assert len(empty.stages) == 1 and len(empty.stages[0]) == 0 and find_blocks(empty) == []
    assert torch.allclose(empty(x), empty.head(empty.stem(x)))


def test_residual_cnn_stages():
    net = ResidualCNN(in_channels=2, widths=(4, 8, 16), blocks=(1, 3, 2), n_out=7).eval()
    assert [len(s) for s in net.stages] == [1, 3, 2]
    assert all(isinstance(s[0], DownsampleBlock) for s in net.stages)
    removable = [b for s in net.stages for b in s[1:]]
    assert all(isinstance(b, ResidualBlock) and isinstance(b.post, nn.ReLU) for b in removable)
    assert net.stages[0][0].body[0].stride == (1, 1) and net.stages[2][0].body[0].stride == (2, 2)
    assert net.stages[1][0].body[0].in_channels == 4 and net.stages[2][0].body[0].in_channels == 8
    assert net(torch.randn(3, 2, 8, 8)).shape == (3, 7)
    assert [len(s) for s in ResidualCNN(widths=(4, 8), blocks=4).stages] == [4, 4]


@pytest.mark.parametrize("make", [
    lambda: ResidualMLP(4, 0, 1, 2), lambda: ResidualMLP(4, 3, -1, 2),
    lambda: ResidualMLP(4, 3, 1, 2, "swish"),
    lambda: ResidualCNN(widths=(4, 8), blocks=(2,)), lambda: ResidualCNN(widths=(4,), blocks=0),
    lambda: ResidualCNN(widths=()), lambda: ResidualCNN(widths=8), lambda: mlp_body(True),
    lambda: ResidualBlock("not a module"),
])
def test_bad_arguments_raise_input_error(make):
    with pytest.raises(InputError):
        make()


def test_find_blocks_on_mlp_and_cnn():
    mlp = ResidualMLP(4, 6, 8, 2)
    refs = find_blocks(mlp)
    assert len(refs) == 8 and {r.stage for r in refs} == {0}
    assert [r.index for r in refs] == list(range(8)) and [r.name for r in refs] == [str(i) for i in range(8)]
    assert all(r.parent is mlp.stages[0] and r.module is mlp.stages[0][r.index] for r in refs)
    cnn = ResidualCNN(widths=(4, 8), blocks=3)
    refs = find_blocks(cnn)
    assert [(r.stage, r.index) for r in refs] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    s0, s1 = cnn.stages
    assert [r.module for r in refs] == [s0[1], s0[2], s1[1], s1[2]]
    assert refs[0] == BlockRef(0, 0, cnn.stages[0], "1") and "parent" not in repr(refs[0])


def test_find_blocks_on_torchvision_style_net_skips_downsampling_blocks():
    net = TinyResNet()
    refs = find_blocks(net)
    assert [r.module for r in refs] == [net.layer1[0], net.layer1[1], net.layer2[1], net.layer3[1]]
    assert [(r.stage, r.index) for r in refs] == [(0, 0), (0, 1), (1, 0), (2, 0)]
    assert [r.parent for r in refs] == [net.layer1, net.layer1, net.layer2, net.layer3]


def test_block_params_excludes_the_gate():
    mlp = ResidualMLP(4, 6, 2, 2)
    assert [block_params(r) for r in find_blocks(mlp)] == [2 * (6 * 6 + 6)] * 2
    assert block_params(mlp.stages[0][0]) == 2 * (6 * 6 + 6)
    cnn = ResidualCNN(widths=(4, 8), blocks=2)
    assert [block_params(r) for r in find_blocks(cnn)] == [18 * 16 + 4 * 4, 18 * 64 + 4 * 8]
    tv = TinyResNet(width=4)
    expected = [18 * 16 + 16, 18 * 16 + 16, 18 * 64 + 32, 18 * 256 + 64]  # conv c->c twice, two BNs
    assert [block_params(r) for r in find_blocks(tv)] == expected


def test_block_flops_and_flops_per_block():
    mlp = ResidualMLP(4, 6, 2, 2)
    assert block_flops(mlp.stages[0][0], torch.randn(5, 6)) == 2 * 6 * 6
    cnn = ResidualCNN(widths=(4, 6), blocks=2).train()
    before = {k: v.clone() for k, v in cnn.state_dict().items()}
    example = torch.randn(3, 1, 8, 8)
    assert flops_per_block(cnn, example) == [18 * 16 * 64, 18 * 36 * 16]
    assert block_flops(cnn.stages[0][1], torch.randn(2, 4, 5, 5)) == 18 * 16 * 25
    assert cnn.training and all(torch.equal(before[k], v) for k, v in cnn.state_dict().items())
    with pytest.raises(InputError):
        block_flops(cnn.stages[0][1], torch.randn(4))


def test_skipped_is_the_lesion_and_restores_exactly():
    torch.manual_seed(2)
    net = ResidualMLP(4, 6, 3, 2)
    x = torch.randn(9, 4)
    full = net(x)
    refs = find_blocks(net)
    originals = [r.module for r in refs]
    with skipped(net, refs[1]) as same:
        assert same is net and isinstance(refs[1].module, nn.Identity)
        lesioned = net(x)
    assert not torch.allclose(lesioned, full)
    s = net.stages[0]
    assert torch.allclose(lesioned, net.head(s[2](s[0](net.stem(x)))))
    with skipped(net, refs):
        assert torch.allclose(net(x), net.head(net.stem(x)))
    assert [r.module for r in refs] == originals and torch.equal(net(x), full)
    with pytest.raises(RuntimeError, match="boom"):
        with skipped(net, refs[:2]):
            raise RuntimeError("boom")
    assert [r.module for r in refs] == originals and torch.equal(net(x), full)


def test_skipped_matches_a_zero_gate_and_rejects_bad_refs():
    torch.manual_seed(3)
    net = ResidualMLP(4, 6, 2, 2)
    x = torch.randn(5, 4)
    refs = find_blocks(net)
    with skipped(net, [refs[0]]):
        lesioned = net(x)
    with torch.no_grad():
        refs[0].module.gate.zero_()
    assert torch.equal(net(x), lesioned)
    other = ResidualMLP(4, 6, 2, 2)
    with pytest.raises(InputError):
        with skipped(other, refs[0]):
            pass
    with pytest.raises(InputError):
        with skipped(net, [refs[0], refs[0]]):
            pass
    assert [r.module for r in refs] == list(net.stages[0])
