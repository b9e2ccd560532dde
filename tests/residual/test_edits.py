"""Whole-block edits and AutoGrow growth (paper 004): removing blocks drops exactly their
parameters and equals skipping them; a zero-initialised new block keeps the outputs (atol 1e-6,
eval mode) of ResidualMLP, ResidualCNN and a hand-built torchvision-style ResNet, a random one
does not; pruned and grown CNNs export to ONNX; the convergent policy stops at the right step."""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
from torch import nn

from netbonsai.errors import InputError
from netbonsai.residual.blocks import (
    BlockRef, DownsampleBlock, ResidualBlock, ResidualCNN, ResidualMLP, block_params, find_blocks, mlp_body,
    skipped)
from netbonsai.residual.edits import (
    count_params, insert_block, new_block_like, remove_blocks, stage_containers)
from netbonsai.residual.growth import ConvergentPolicy, blocks_per_stage, grow_round_robin, round_robin


class BasicBlock(nn.Module):
    """torchvision's BasicBlock, rebuilt (torchvision is not installed)."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class TinyResNet(nn.Module):
    """torchvision-style ResNet: layer1 has two removable blocks, layer2 only a downsampling one."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.layer1 = nn.Sequential(BasicBlock(4, 4), BasicBlock(4, 4))
        self.layer2 = nn.Sequential(BasicBlock(4, 8, stride=2))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.layer1(self.relu(self.bn1(self.conv1(x)))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def randomised(model: nn.Module, seed: int = 0) -> nn.Module:
    """``model`` in eval mode with random BatchNorm statistics and affine parameters, so that a
    BatchNorm is no identity map and the checks are not trivially true."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.1)
    return model.eval()


def build(kind: str, blocks: int = 2) -> nn.Module:
    torch.manual_seed(0)
    if kind == "mlp":
        return ResidualMLP(6, 5, blocks, 3).eval()
    if kind == "cnn":
        return randomised(ResidualCNN(in_channels=1, widths=(4, 6), blocks=blocks, n_out=3))
    return randomised(TinyResNet())


def inputs(kind: str) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(5, 6, generator=gen) if kind == "mlp" else torch.randn(5, 1, 8, 8, generator=gen)


def out(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("kind", ["mlp", "cnn", "resnet"])
def test_remove_blocks_drops_exactly_their_parameters_and_keeps_the_input(kind: str) -> None:
    model, x = build(kind, blocks=3), inputs(kind)
    before, n = state(model), count_params(model)
    refs = find_blocks(model)
    gone = [refs[0], refs[-1]]
    pruned = remove_blocks(model, gone)
    gates = sum(isinstance(r.module, ResidualBlock) for r in gone)  # block_params leaves gates out
    assert count_params(pruned) == n - sum(block_params(r.module) for r in gone) - gates
    assert count_params(pruned) == n - sum(sum(p.numel() for p in r.module.parameters()) for r in gone)
    assert count_params(pruned) < n
    assert len(find_blocks(pruned)) == len(refs) - 2
    assert same_state(state(model), before) and count_params(model) == n
    assert out(pruned, x).shape == out(model, x).shape


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_removing_blocks_equals_skipping_them(kind: str) -> None:
    model, x = build(kind, blocks=3), inputs(kind)
    refs = find_blocks(model)[1::2]
    pruned = remove_blocks(model, refs)
    with skipped(model, refs):
        expected = out(model, x)
    torch.testing.assert_close(out(pruned, x), expected, atol=1e-6, rtol=0)
    assert not torch.allclose(out(pruned, x), out(model, x), atol=1e-4)


def test_remove_blocks_renumbers_the_stage_and_maps_refs_by_stage_and_index() -> None:
    model, x = build("mlp", blocks=3), inputs("mlp")
    twin = copy.deepcopy(model)
    ref = find_blocks(twin)[1]  # refs of an equal model: matched by (stage, index)
    pruned = remove_blocks(model, [ref])
    assert list(dict(pruned.stages[0].named_children())) == ["0", "1"]
    assert pruned.stages[0][1] is not model.stages[0][2]
    assert torch.equal(pruned.stages[0][1].body[0].weight, model.stages[0][2].body[0].weight)
    torch.testing.assert_close(out(pruned, x), out(remove_blocks(twin, [ref]), x), atol=0, rtol=0)


def test_a_block_outside_a_sequential_becomes_identity() -> None:
    class Pair(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = ResidualBlock(mlp_body(4)), ResidualBlock(mlp_body(4))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(self.a(x))

    torch.manual_seed(2)
    model = Pair()
    (ref,) = [r for r in find_blocks(model) if r.module is model.a]
    pruned = remove_blocks(model, [ref])
    assert isinstance(pruned.a, nn.Identity) and isinstance(model.a, ResidualBlock)
    assert count_params(pruned) == count_params(model) - block_params(model.a) - 1
    x = torch.randn(3, 4)
    torch.testing.assert_close(out(pruned, x), out(model.b, x), atol=0, rtol=0)


def test_zero_block_is_the_identity_and_random_block_is_not() -> None:
    block = build("mlp").stages[0][0]
    with torch.no_grad():
        block.gate.fill_(0.3)
    x = torch.randn(4, 5)
    zero = new_block_like(block, "zero", torch.Generator().manual_seed(0))
    assert float(zero.gate.detach()) == 1.0
    assert torch.equal(zero.body[-1].weight, torch.zeros(5, 5))
    assert not torch.equal(zero.body[0].weight, block.body[0].weight)  # fresh weights
    torch.testing.assert_close(out(zero, x), x, atol=0, rtol=0)
    random = new_block_like(block, "random", torch.Generator().manual_seed(0))
    assert (out(random, x) - x).abs().max() > 1e-2
    assert torch.equal(random.body[0].weight, zero.body[0].weight)  # same generator state, same draw
    again = new_block_like(block, "random", torch.Generator().manual_seed(0))
    assert same_state(state(again), state(random))
    other = new_block_like(block, "random", torch.Generator().manual_seed(1))
    assert not torch.equal(other.body[0].weight, random.body[0].weight)


def test_zero_basic_block_zeroes_bn2_and_passes_nonnegative_inputs() -> None:
    block = randomised(BasicBlock(4, 4))
    new = new_block_like(block, generator=torch.Generator().manual_seed(3)).eval()
    assert torch.equal(new.bn2.weight, torch.zeros(4)) and torch.equal(new.bn2.bias, torch.zeros(4))
    assert torch.equal(new.bn1.running_var, torch.ones(4))  # fresh statistics
    x = torch.rand(2, 4, 5, 5)
    torch.testing.assert_close(out(new, x), x, atol=0, rtol=0)
    with pytest.raises(InputError, match="downsample"):
        new_block_like(BasicBlock(4, 8, stride=2))


# (kind, stage, blocks): the cnn with blocks=1 has no removable block in stage 1
CASES = [("mlp", 0, 2), ("cnn", 0, 2), ("cnn", 1, 1), ("resnet", 0, 2)]


@pytest.mark.parametrize("kind,stage,blocks", CASES)
def test_zero_insertion_keeps_outputs_and_random_changes_them(kind: str, stage: int, blocks: int) -> None:
    model, x = build(kind, blocks), inputs(kind)
    before, expected = state(model), out(model, x)
    counts = blocks_per_stage(model)
    grown = insert_block(model, stage, generator=torch.Generator().manual_seed(4)).eval()
    counts[stage] += 1
    assert blocks_per_stage(grown) == counts
    assert count_params(grown) > count_params(model)
    torch.testing.assert_close(out(grown, x), expected, atol=1e-6, rtol=0)
    assert same_state(state(model), before)
    random = insert_block(model, stage, init="random", generator=torch.Generator().manual_seed(4)).eval()
    assert (out(random, x) - expected).abs().max() > 1e-4


def test_insert_into_a_stage_without_removable_blocks_builds_from_its_width() -> None:
    model = build("cnn", blocks=1)
    assert blocks_per_stage(model) == [0, 0]
    grown = insert_block(model, 1)
    new = grown.stages[1][1]
    assert isinstance(grown.stages[1][0], DownsampleBlock) and isinstance(new, ResidualBlock)
    assert new.body[0].in_channels == 6 and isinstance(new.post, nn.ReLU)
    mlp = insert_block(ResidualMLP(6, 5, 0, 3, activation="tanh"), 0)
    assert blocks_per_stage(mlp) == [1]
    assert mlp.stages[0][0].body[0].in_features == 5 and isinstance(mlp.stages[0][0].body[1], nn.Tanh)


def test_insert_position_counts_removable_blocks_only() -> None:
    model = build("cnn", blocks=3)
    first = insert_block(model, 0, position=0)
    assert isinstance(first.stages[0][0], DownsampleBlock)
    assert torch.equal(first.stages[0][1].body[-1].weight, torch.zeros(4))
    assert torch.equal(first.stages[0][2].body[0].weight, model.stages[0][1].body[0].weight)
    last = insert_block(model, 0)
    assert torch.equal(last.stages[0][3].body[-1].weight, torch.zeros(4))
    assert list(dict(last.stages[0].named_children())) == ["0", "1", "2", "3"]


def test_torchvision_stage_without_blocks_needs_a_template() -> None:
    model, x = build("resnet"), inputs("resnet")
    with pytest.raises(InputError, match="template"):
        insert_block(model, 1)
    grown = insert_block(model, 1, template=BasicBlock(8, 8)).eval()
    assert blocks_per_stage(grown) == [2, 1]
    torch.testing.assert_close(out(grown, x), out(model, x), atol=1e-6, rtol=0)


def test_bad_arguments_raise_input_error() -> None:
    model = build("cnn")
    ref = find_blocks(model)[0]
    assert isinstance(model.stages[0][0], DownsampleBlock)
    down = BlockRef(0, 0, model.stages[0], "0")  # the DownsampleBlock is not removable
    for call, match in [(lambda: remove_blocks(model, [ref, ref]), "twice"),
                        (lambda: remove_blocks(model, [down]), "not a removable block"),
                        (lambda: remove_blocks(model, ["stages.0.1"]), "BlockRef"),
                        (lambda: new_block_like(ref.module, "ones"), "init"),
                        (lambda: new_block_like(nn.Linear(3, 3)), "no ResidualBlock"),
                        (lambda: insert_block(model, 2), "stage 2 out of range"),
                        (lambda: insert_block(model, 0, position=2), "position 2 out of range"),
                        (lambda: insert_block(model, 0, init="he"), "init")]:
        with pytest.raises(InputError, match=match):
            call()


def test_pruned_and_grown_cnn_export_to_onnx(tmp_path) -> None:
    onnx = pytest.importorskip("onnx", reason="onnx is not installed (the dev extra)")
    model, x = build("cnn", blocks=3), inputs("cnn")
    pruned = remove_blocks(model, find_blocks(model)[:3])
    grown = insert_block(model, 1, generator=torch.Generator().manual_seed(5)).eval()
    sizes = {}
    for name, net in {"full": model, "pruned": pruned, "grown": grown}.items():
        path = tmp_path / f"{name}.onnx"
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the legacy (TorchScript) exporter's deprecation notice
            torch.onnx.export(net, (x,), str(path), dynamo=False, input_names=["input"],
                              output_names=["output"])
        graph = onnx.load(str(path))
        onnx.checker.check_model(graph)
        sizes[name] = sum(math.prod(t.dims) for t in graph.graph.initializer)
        try:
            import onnxruntime as ort
        except ImportError:
            continue
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = torch.from_numpy(session.run(["output"], {"input": x.numpy()})[0])
        torch.testing.assert_close(got, out(net, x), atol=1e-4, rtol=0)
    assert sizes["pruned"] < sizes["full"] < sizes["grown"]


def test_round_robin() -> None:
    assert [round_robin(3, s) for s in range(7)] == [0, 1, 2, 0, 1, 2, 0]
    with pytest.raises(InputError):
        round_robin(0, 1)
    with pytest.raises(InputError):
        round_robin(2, -1)


def test_convergent_policy_compares_moving_averages() -> None:
    policy = ConvergentPolicy(threshold=0.25, window=1)  # binary-exact values: m_n - m_{n-1} = a_n - a_{n-1}
    assert [policy.update(a) for a in (0.0, 0.25, 0.5)] == [True, True, True]  # equal to the threshold: go on
    assert not policy.stopped
    assert policy.update(0.625) is False and policy.stopped
    assert policy.update(1.0) is False  # stopped for good
    two = ConvergentPolicy(threshold=0.01, window=2)
    # averages: -, .55, .65, .725, .755, .7625 -> improvements .1, .075, .03, .0075 (< .01: stop)
    assert [two.update(a) for a in (0.5, 0.6, 0.7, 0.75, 0.76, 0.765)] == [True] * 5 + [False]
    torch.testing.assert_close(torch.tensor(two.averages()), torch.tensor([0.55, 0.65, 0.725, 0.755, 0.7625]))
    with pytest.raises(InputError):
        ConvergentPolicy(window=0)
    with pytest.raises(InputError):
        two.update(float("nan"))


def test_grow_round_robin_follows_the_stages_and_stops_with_the_policy() -> None:
    model = build("cnn", blocks=1)
    script = iter([0.5, 0.6, 0.7, 0.75, 0.76, 0.765, 0.9, 0.95])
    trained: list[list[int]] = []

    def train(net: nn.Module) -> float:
        trained.append(blocks_per_stage(net))
        return next(script)

    grown, records = grow_round_robin(model, 8, train, policy=ConvergentPolicy(0.01, 2),
                                      generator=torch.Generator().manual_seed(6))
    assert [r["step"] for r in records] == list(range(6))
    assert [r["stage"] for r in records] == [0, 1, 0, 1, 0, 1]
    assert [r["blocks_per_stage"] for r in records] == [[1, 0], [1, 1], [2, 1], [2, 2], [3, 2], [3, 3]]
    assert trained == [r["blocks_per_stage"] for r in records]
    assert [r["val"] for r in records] == [0.5, 0.6, 0.7, 0.75, 0.76, 0.765]
    params = [r["params"] for r in records]
    assert params == sorted(params) and len(set(params)) == 6 and params[-1] == count_params(grown)
    assert blocks_per_stage(grown) == [3, 3] and blocks_per_stage(model) == [0, 0]
    x = inputs("cnn")
    # the fake train() changed nothing, so the grown model keeps the function
    torch.testing.assert_close(out(grown.eval(), x), out(model, x), atol=1e-6, rtol=0)


def test_grow_round_robin_without_policy_runs_every_step_on_user_models() -> None:
    resnet = TinyResNet()
    resnet.layer2.append(BasicBlock(8, 8))
    resnet = randomised(resnet)
    assert stage_containers(resnet) == [resnet.layer1, resnet.layer2]
    grown, records = grow_round_robin(resnet, 3, lambda net: 0.5)
    assert [r["blocks_per_stage"] for r in records] == [[3, 1], [3, 2], [4, 2]]
    x = inputs("resnet")
    torch.testing.assert_close(out(grown.eval(), x), out(resnet, x), atol=1e-6, rtol=0)
    torch.manual_seed(7)  # no stages attribute, no layerN: the stages are the blocks' parents
    plain = nn.Sequential(nn.Linear(6, 5), nn.Sequential(ResidualBlock(mlp_body(5))),
                          nn.Sequential(ResidualBlock(mlp_body(5)), ResidualBlock(mlp_body(5))),
                          nn.Linear(5, 3))
    grown, records = grow_round_robin(plain, 2, lambda net: 0.5)
    assert [r["stage"] for r in records] == [0, 1] and blocks_per_stage(grown) == [2, 3]
    with pytest.raises(InputError, match="train's return value"):
        grow_round_robin(plain, 1, lambda net: None)
    same, none = grow_round_robin(plain, 0, lambda net: 0.5)
    assert none == [] and same is not plain and blocks_per_stage(same) == [1, 2]
