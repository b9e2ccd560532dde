"""collapse(): the plain network computes what the binarised gated one does (atol 1e-5), stores
exactly the parameters it reports, merges linear layers only where that pays and never across
pooling, converts MLPs to DagNets, and exports to ONNX."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from gate_nets import cnn, gated_mlp, set_gates
from netbonsai.gates import GatePenalty, binarized, collapse, gate, gate_modules


def _same(gated: nn.Module, collapsed: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        expected = binarized(gated)(x)
        got = collapsed(x)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-5), float((got - expected).abs().max())


def test_dead_neurons_go_and_near_binary_gates_binarise() -> None:
    model = set_gates(gated_mlp(), [([1, 0, 0.9, 0.2] * 4, 0.1), ([0.6] * 4 + [0.4] * 4, None), (None, 0.3)])
    small = collapse(model)
    assert small.widths == [12, 8, 4, 6, 3] and small.merged == 0
    assert small.params == sum(p.numel() for p in small.module.parameters()) == 12 * 8 + 8 + 8 * 4 + 4 + 4 * 6 + 6 + 6 * 3 + 3
    x = torch.randn(20, 12)
    _same(model, small.module, x)
    assert small.dag is not None and small.dag.num_params() == small.params
    assert torch.allclose(small.dag(x), small.module(x), atol=1e-5)


def test_a_linear_bottleneck_merges_and_a_wide_linear_layer_does_not() -> None:
    # 12-16-8-6-3 with the 8-wide layer linear: 16*8 + 8*6 = 176 > 16*6 = 96, so it merges
    model = set_gates(gated_mlp(), [(None, 0.0), (None, 1.0), (None, 0.0)])
    small = collapse(model)
    assert small.merged == 1 and small.widths == [12, 16, 6, 3]
    _same(model, small.module, torch.randn(9, 12))
    # with 7 of 8 neurons dead the linear layer is a 1-wide bottleneck: 16 + 6 < 16*6, kept
    model = set_gates(gated_mlp(), [(None, 0.0), ([1] + [0] * 7, 1.0), (None, 0.0)])
    small = collapse(model)
    assert small.merged == 0 and small.widths == [12, 16, 1, 6, 3]
    assert not any(isinstance(m, nn.ReLU) for m in small.module[2:4])  # the linear layer has no ReLU
    _same(model, small.module, torch.randn(9, 12))
    assert collapse(set_gates(gated_mlp(), [(None, 0.0), (None, 1.0), (None, 0.0)]), merge=False).merged == 0


def test_a_chain_of_linear_layers_merges_where_the_dynamic_program_says() -> None:
    model = set_gates(gated_mlp((10, 4, 30, 30, 2)), [(None, 1.0), (None, 1.0), (None, 1.0)])
    small = collapse(model)  # all linear: 10 -> 2 directly is cheapest
    assert small.widths == [10, 2] and small.merged == 3
    _same(model, small.module, torch.randn(6, 10))


def test_a_cnn_collapses_with_batchnorm_and_pooling() -> None:
    model = gate(cnn())
    set_gates(model, [([1, 0, 1, 0.2, 1, 1], None), ([0, 1, 1, 0, 1], None), ([1, 1, 0, 1, 1, 0, 1], 1.0)])
    small = collapse(model)
    assert small.widths == [1, 4, 3, 3]
    assert small.merged == 1  # the Linear-BN-gate(d=1)-Linear tail: 12*5 + 5 + 10 + 5*3 + 3 > 12*3 + 3
    assert not any(isinstance(m, nn.BatchNorm1d) for m in small.module)  # folded into the merge
    assert sum(isinstance(m, nn.BatchNorm2d) for m in small.module) == 1
    assert small.dag is None and small.params == sum(p.numel() for p in small.module.parameters())
    _same(model, small.module, torch.randn(5, 1, 8, 8))


def test_the_params_complexity_equals_the_collapsed_count_at_binary_gates() -> None:
    cases = [
        (gated_mlp(), [([1, 0] * 8, 0.0), ([1, 1, 0, 1, 1, 0, 1, 1], 0.0), ([1, 0, 1, 1, 0, 1], 0.0)]),
        (gated_mlp(), [(None, 0.0), (None, 1.0), (None, 0.0)]),  # a merge that pays
        (gate(cnn()), [([1, 0, 1, 1, 1, 1], None), ([0, 1, 1, 0, 1], None), ([1, 1, 0, 1, 1, 0, 1], 0.0)]),
    ]
    for model, values in cases:
        set_gates(model, values)
        penalty = GatePenalty(model, 0.0, 0.0, "params")
        assert float(penalty.complexity()) == pytest.approx(collapse(model).params)


def test_onnx_export_of_collapsed_networks(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    from netbonsai.nets.export_module import export_module_onnx

    for model, x in ((set_gates(gated_mlp(), [([1, 0] * 8, 0.0), (None, 1.0), (None, 0.0)]), torch.randn(4, 12)),
                     (set_gates(gate(cnn()), [([1, 0, 1, 1, 1, 1], None)]), torch.randn(4, 1, 8, 8))):
        small = collapse(model).module
        path = export_module_onnx(small, x[:2], tmp_path / "gated.onnx")
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = session.run(None, {"input": x.numpy()})[0]
        assert np.abs(got - small(x).detach().numpy()).max() < 1e-5


def test_collapse_leaves_the_model_alone_and_a_dead_layer_gives_no_dagnet() -> None:
    model = set_gates(gated_mlp(), [([0] * 16, None)])
    before = [g.w.clone() for g in gate_modules(model)]
    small = collapse(model)
    assert all(torch.equal(a, g.w) for a, g in zip(before, gate_modules(model)))
    assert small.widths[1] == 0 and small.dag is None
    _same(model, small.module, torch.randn(3, 12))  # a constant network
