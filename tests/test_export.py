"""ONNX and TorchScript export: same outputs as PyTorch, and only live weights in the ONNX graph.

What the parameter count covers: the ONNX graph's initializers are exactly the live synapse
weights and the biases of the compacted network (float32), so their element count equals
``num_params()``. Synapse indices and slice bounds are structure, stored as int64 ``Constant``
nodes, not as initializers; the input/output normalization is folded into the weights, so it
adds nothing (``num_params()`` does not count it either).
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import netbonsai
from netbonsai.cli import main
from netbonsai.data import load_task
from netbonsai.nets import DagNet, from_sequential, save, standardize_for
from netbonsai.nets.compact import compact_mlp
from netbonsai.nets.export import (
    METADATA_KEY, TORCHSCRIPT_EXTRA, as_dagnet, export_onnx, export_torchscript, initializer_count, to_onnx)
from netbonsai.nets.masked import MaskedLinear

# onnx and onnxruntime are test dependencies (the dev extra, which `make test` installs): a
# missing one is an error of the environment, not a reason to skip every export test silently.
import onnx
import onnxruntime as ort

ATOL = 1e-5


def run_onnx(model_or_path, x: np.ndarray) -> np.ndarray:
    source = model_or_path if isinstance(model_or_path, (str, Path)) else model_or_path.SerializeToString()
    session = ort.InferenceSession(str(source) if isinstance(source, Path) else source,
                                   providers=["CPUExecutionProvider"])
    return session.run(["output"], {"input": np.ascontiguousarray(x, dtype=np.float32)})[0]


def torch_out(net: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net(torch.from_numpy(np.asarray(x, dtype=np.float32))).numpy()


def skip_net(seed: int = 0) -> DagNet:
    """A DagNet with skip connections, removed synapses, mixed activations within a level, an
    output feeding another output, a dead neuron, a constant neuron, and normalization."""
    torch.manual_seed(seed)
    net = DagNet.mlp([4, 6, 6, 2], activation="tanh")
    w, m, b = net.weight.detach().clone(), net.mask.clone(), net.bias.detach().clone()
    n = net.n_nodes  # inputs 0-3, layer 1: 4-9, layer 2: 10-15, outputs 16, 17
    for i, j in [(0, 16), (2, 17), (5, 17), (3, 12), (16, 17), (4, 15)]:  # skips, output -> output
        m[0, i, j] = True
        w[0, i, j] = float(torch.empty(()).uniform_(-1, 1))
    for i, j in [(4, 10), (6, 11), (1, 4), (0, 7), (12, 16), (9, 13)]:  # removed synapses
        m[0, i, j] = False
    m[0, 8, :] = False  # neuron 8: dead (reaches no output)
    m[0, :, 14] = False  # neuron 14: constant (no input), folded into its consumers' biases
    activations = list(net.activations)
    activations[5] = activations[11] = "relu"
    activations[13] = "sigmoid"
    activations[9] = "identity"
    net = DagNet(4, 2, w * m, m, b, activations)
    net.set_normalization(torch.tensor([0.1, -0.2, 0.0, 0.3]), torch.tensor([0.06, 0.05, 0.2, 0.1]),
                          torch.tensor([0.01, -0.5]), torch.tensor([0.05, 2.0]))
    net.info = {"task": "test", "note": [1, 2]}
    return net


def float_constants(model) -> list[str]:
    """Names of Constant nodes holding anything but int64 (should be none)."""
    bad = []
    for node in model.graph.node:
        if node.op_type == "Constant":
            (attr,) = node.attribute
            if attr.t.data_type != onnx.TensorProto.INT64:
                bad.append(node.name)
    return bad


# ---------------------------------------------------------------------- DagNet -> ONNX
def test_onnx_matches_torch_and_holds_only_live_weights() -> None:
    net = skip_net()
    params = net.num_params()
    model = to_onnx(net)
    onnx.checker.check_model(model, full_check=True)
    assert initializer_count(model) == params
    assert all(t.data_type == onnx.TensorProto.FLOAT for t in model.graph.initializer)
    assert float_constants(model) == []
    ops = [node.op_type for node in model.graph.node]
    assert "ScatterND" not in ops and ops.count("Gather") >= 2  # sparse levels: gathers of live synapses
    x = np.random.default_rng(0).normal(0, 0.3, (257, 4)).astype(np.float32)
    np.testing.assert_allclose(run_onnx(model, x), torch_out(net, x), atol=ATOL, rtol=0)
    meta = json.loads({p.key: p.value for p in model.metadata_props}[METADATA_KEY])
    assert meta["params"] == params and meta["info"]["note"] == [1, 2]


def test_onnx_on_real_brightness_samples_of_camera(tmp_path: Path) -> None:
    data = load_task("brightness", None, max_train=3000, max_val=500)  # skimage:camera
    net = standardize_for(DagNet.mlp([4, 6, 6, 1], generator=torch.Generator().manual_seed(1)), data.x_train, data.y_train)
    with torch.no_grad():  # remove a few synapses and add skips, as a search would
        net.remove_synapses_(torch.tensor([0]), torch.tensor([5]))
        net.remove_synapses_(torch.tensor([11]), torch.tensor([16]))
        net.mask[0, 1, 16] = True
        net.weight[0, 1, 16] = 0.4
    path = export_onnx(net, tmp_path / "bright.onnx").path
    model = onnx.load(path)
    assert initializer_count(model) == net.num_params()
    for x in (data.x_val.numpy(), np.random.default_rng(2).normal(0, 0.1, (100, 4)).astype(np.float32)):
        np.testing.assert_allclose(run_onnx(path, x), torch_out(net, x), atol=ATOL, rtol=0)


def test_dense_mlp_is_plain_matmuls_with_exactly_its_parameters() -> None:
    net = DagNet.mlp([4, 5, 5, 1])
    model = to_onnx(net)
    assert initializer_count(model) == 61 == net.num_params()
    ops = {node.op_type for node in model.graph.node}
    assert "MatMul" in ops and not ops & {"ScatterND", "Gather", "Expand"}
    x = np.random.default_rng(3).normal(size=(33, 4)).astype(np.float32)
    np.testing.assert_allclose(run_onnx(model, x), torch_out(net, x), atol=ATOL, rtol=0)


def test_batch_dimension_is_dynamic_and_single_samples_work() -> None:
    net = skip_net(1)
    model = to_onnx(net)
    for batch in (1, 2, 1000):
        x = np.random.default_rng(batch).normal(size=(batch, 4)).astype(np.float32)
        np.testing.assert_allclose(run_onnx(model, x), torch_out(net, x), atol=ATOL, rtol=0)


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "softplus", "elu", "identity"])
def test_every_activation_exports(activation: str) -> None:
    net = DagNet.mlp([3, 4, 2], activation=activation, generator=torch.Generator().manual_seed(0))
    net.mask[0, 0, 3] = False
    net.apply_mask_()
    x = np.random.default_rng(0).normal(0, 2, (50, 3)).astype(np.float32)
    model = to_onnx(net)
    assert initializer_count(model) == net.num_params()
    np.testing.assert_allclose(run_onnx(model, x), torch_out(net, x), atol=ATOL, rtol=0)


def test_sparse_levels_are_deterministic_in_multithreaded_onnxruntime() -> None:
    """A segment sum by ScatterND(reduction="add") races in onnxruntime's threads; ours must not."""
    net = DagNet.mlp([60, 40, 20, 5], activation="relu", generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        net.mask &= torch.rand(net.mask.shape, generator=torch.Generator().manual_seed(1)) < 0.3
        net.apply_mask_()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(to_onnx(net).SerializeToString(), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((500, 60), dtype=np.float32)
    expected = torch_out(net, x)
    for _ in range(5):
        np.testing.assert_allclose(session.run(["output"], {"input": x})[0], expected, atol=ATOL, rtol=0)


def test_outputs_without_inputs_are_their_biases() -> None:
    net = DagNet.mlp([3, 4, 2], generator=torch.Generator().manual_seed(0))
    net.mask[0, :, 8] = False  # output 1 reads nothing: its bias alone
    net.apply_mask_()
    empty = DagNet(2, 1, torch.zeros(3, 3), torch.zeros(3, 3, dtype=torch.bool), torch.tensor([0.0, 0.0, 0.7]),
                   ["identity"] * 3)  # no synapse at all: a level without synapses
    x = np.random.default_rng(0).normal(size=(9, 3)).astype(np.float32)
    for model, inputs in ((net, x), (empty, x[:, :2])):
        onnx_model = to_onnx(model)
        assert initializer_count(onnx_model) == model.num_params()
        np.testing.assert_allclose(run_onnx(onnx_model, inputs), torch_out(model, inputs), atol=ATOL, rtol=0)


def test_population_must_be_one() -> None:
    with pytest.raises(netbonsai.InputError, match="population size 1"):
        to_onnx(DagNet.mlp([2, 3, 1], population=2))


# ---------------------------------------------------------------------- pruned MLPs
def pruned_mlp(seed: int = 0) -> nn.Sequential:
    """A masked 20-12-8-3 MLP at ~75% sparsity with a dead and a constant hidden neuron."""
    torch.manual_seed(seed)
    model = nn.Sequential(MaskedLinear(20, 12), nn.ReLU(), MaskedLinear(12, 8), nn.Tanh(), MaskedLinear(8, 3))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in model[::2]:
            layer.mask.copy_(torch.rand(layer.mask.shape, generator=generator) < 0.25)
        model[2].mask[:, 3] = False  # hidden neuron 3 of layer 1 feeds nothing: dead
        model[0].mask[5, :] = False  # hidden neuron 5 of layer 1 reads nothing: constant
    return model


def test_compacted_pruned_mlp_exports_with_only_live_weights() -> None:
    model = pruned_mlp()
    compact = compact_mlp(model)
    x = np.random.default_rng(0).normal(size=(64, 20)).astype(np.float32)
    expected = torch_out(model, x)
    for source in (compact, from_sequential(model).compact()):  # compact_mlp's result; what `prune` saves
        onnx_model = to_onnx(source)
        assert initializer_count(onnx_model) == as_dagnet(source).num_params()
        np.testing.assert_allclose(run_onnx(onnx_model, x), expected, atol=ATOL, rtol=0)
    live = sum(int((layer.weight != 0).sum()) for layer in compact if isinstance(layer, nn.Linear))
    biases = sum(layer.bias.numel() for layer in compact if isinstance(layer, nn.Linear))
    assert initializer_count(to_onnx(compact)) == live + biases
    assert live < sum(layer.weight.numel() for layer in compact if isinstance(layer, nn.Linear))


def test_prune_run_directory_exports_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    model = pruned_mlp(1)
    run = tmp_path / "run"
    run.mkdir()
    save(from_sequential(model).compact(), run / "model", info={"task": "mnist"})  # as `prune mnist` does
    code = main(["export", str(run), "--onnx", str(tmp_path / "m.onnx"), "--torchscript", str(tmp_path / "m.pt")])
    out = capsys.readouterr().out
    assert code == 0
    params = netbonsai.load(run).num_params()
    assert f"m.onnx (onnx, {params} parameters)" in out and "m.pt (torchscript" in out
    x = np.random.default_rng(1).normal(size=(10, 20)).astype(np.float32)
    np.testing.assert_allclose(run_onnx(tmp_path / "m.onnx", x), torch_out(model, x), atol=ATOL, rtol=0)
    assert initializer_count(onnx.load(tmp_path / "m.onnx")) == params


# ---------------------------------------------------------------------- TorchScript
def test_torchscript_round_trip(tmp_path: Path) -> None:
    net = skip_net(2)
    result = export_torchscript(net, tmp_path / "net.pt")
    assert result.params == net.num_params()
    extra = {TORCHSCRIPT_EXTRA: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        loaded = torch.jit.load(str(tmp_path / "net.pt"), _extra_files=extra)
    x = np.random.default_rng(4).normal(0, 0.3, (77, 4)).astype(np.float32)
    np.testing.assert_allclose(torch_out(loaded, x), torch_out(net, x), atol=ATOL, rtol=0)
    assert json.loads(extra[TORCHSCRIPT_EXTRA])["info"]["task"] == "test"


# ---------------------------------------------------------------------- CLI
def one_error_line(code: int, err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_cli_export_writes_both_files(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    net = skip_net()
    save(net, tmp_path / "net.model")
    args = ["export", str(tmp_path / "net.model"), "--onnx", str(tmp_path / "n.onnx"), "--torchscript", str(tmp_path / "n.pt")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"n.onnx (onnx, {net.num_params()} parameters)" in out
    assert f"n.pt (torchscript, {net.num_params()} parameters" in out
    x = np.random.default_rng(5).normal(0, 0.3, (20, 4)).astype(np.float32)
    np.testing.assert_allclose(run_onnx(tmp_path / "n.onnx", x), torch_out(net, x), atol=ATOL, rtol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        loaded = torch.jit.load(str(tmp_path / "n.pt"))
    np.testing.assert_allclose(torch_out(loaded, x), torch_out(net, x), atol=ATOL, rtol=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["n.onnx", "n.pt", "net.model"]


@pytest.mark.parametrize("case", ["no_target", "missing_model", "corrupt_model", "missing_folder", "dir_target",
                                  "no_onnx"])
def test_cli_export_bad_input(case: str, tmp_path: Path, capsys: pytest.CaptureFixture,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    model = tmp_path / "net.model"
    save(skip_net(), model)
    target = tmp_path / "out.onnx"
    args = ["export", str(model), "--onnx", str(target)]
    expect = {"no_target": "at least one", "missing_model": "does not exist", "corrupt_model": "invalid model file",
              "missing_folder": "does not exist", "dir_target": "directory", "no_onnx": "pip install"}[case]
    if case == "no_target":
        args = ["export", str(model)]
    elif case == "missing_model":
        args[1] = str(tmp_path / "nope.model")
    elif case == "corrupt_model":
        model.write_bytes(model.read_bytes()[:-40])
    elif case == "missing_folder":
        target = tmp_path / "no" / "out.onnx"
        args[3] = str(target)
    elif case == "dir_target":
        target = tmp_path
        args[3] = str(target)
    elif case == "no_onnx":
        monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx raises ImportError
    code = main(args)
    assert expect in one_error_line(code, capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.model"]  # nothing written, no temp files
