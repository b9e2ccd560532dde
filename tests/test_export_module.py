"""export_module_onnx: compacted CNNs and MLPs through torch.onnx.export, checked in onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from netbonsai.nets.compact import compact_mlp  # noqa: E402
from netbonsai.nets.compact_cnn import compact_cnn  # noqa: E402
from netbonsai.nets.export_module import export_module_onnx  # noqa: E402
from netbonsai.nets.masked import make_prunable  # noqa: E402
from netbonsai.prune import channel_prune, prune_step  # noqa: E402


def run(path: Path, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def cnn() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(8, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 10))
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
    return make_prunable(model).eval()


def initializer_count(path: Path) -> int:
    return sum(int(np.prod(t.dims)) for t in onnx.load(str(path)).graph.initializer)


@pytest.mark.parametrize("structured", [False, True])
def test_compacted_cnn_matches_onnxruntime(tmp_path: Path, structured: bool) -> None:
    model = cnn()
    if structured:
        small = channel_prune(model, 0.5)
    else:
        prune_step(model, "magnitude-blinded", 0.7)
        with torch.no_grad():
            model[4].mask[:, 3] = False  # a dead channel, so something is removed
        small = compact_cnn(model)
    x = torch.randn(6, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    path = export_module_onnx(small, x[:2], tmp_path / "cnn.onnx")
    assert path.exists() and not [p for p in tmp_path.iterdir() if p != path]
    onnx.checker.check_model(onnx.load(str(path)))
    expected = small(x).detach().numpy()
    got = run(path, x.numpy())  # batch 6, traced on batch 2: the batch axis is dynamic
    assert np.abs(got - expected).max() < 1e-5
    assert initializer_count(path) <= sum(p.numel() for p in small.parameters())


def test_compacted_mlp_and_masked_model_export(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = make_prunable(nn.Sequential(nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 4))).eval()
    prune_step(model, "magnitude-blinded", 0.5)
    x = torch.randn(5, 12)
    for name, module in (("mlp", compact_mlp(model)), ("masked", model)):
        path = export_module_onnx(module, x, tmp_path / f"{name}.onnx")
        assert np.abs(run(path, x.numpy()) - model(x).detach().numpy()).max() < 1e-5
        names = [t.name for t in onnx.load(str(path)).graph.initializer]
        assert not any("mask" in n for n in names)  # masks made permanent, not exported
    assert isinstance(model[0], nn.Linear) and hasattr(model[0], "mask")  # the model itself is untouched
