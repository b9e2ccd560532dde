"""Model files: exact save/load, run directories, validation of corrupt files, atomic writes."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import netbonsai
from netbonsai.errors import InputError, ModelFileError
from netbonsai.nets import DagNet, load, save

from .helpers import inputs, mlp, pruned


def _assert_same(a: DagNet, b: DagNet) -> None:
    assert torch.equal(a.weight, b.weight)
    assert torch.equal(a.mask, b.mask)
    assert torch.equal(a.bias, b.bias)
    for name in ("in_shift", "in_scale", "out_shift", "out_scale"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert (a.n_in, a.n_out, a.activations, a.roles) == (b.n_in, b.n_out, b.activations, b.roles)


def test_save_load_is_exact(tmp_path: Path) -> None:
    net = pruned().insert_neuron(9, sources=[5], targets=[14], activation="elu")
    with torch.no_grad():
        net.weight[0, 5, 9] = 1.25
        net.weight[0, 9, 15] = -0.5
    net.info = {"task": "demo", "config": {"lr": 0.01}}
    path = save(net, tmp_path / "model", info={"epochs": 3, "task": "override"})
    assert path == tmp_path / "model" and path.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no extension, no temp file
    assert net.info == {"task": "demo", "config": {"lr": 0.01}}  # the argument does not modify net
    back = load(path)
    _assert_same(back, net)
    assert back.info == {"task": "override", "config": {"lr": 0.01}, "epochs": 3}
    assert back.num_params_per_variant().tolist() == net.num_params_per_variant().tolist()
    x = inputs()
    assert torch.equal(back(x), net(x))
    # the file layout is the documented one
    with safe_open(path, framework="pt") as f:
        meta = json.loads(f.metadata()["netbonsai"])
        assert sorted(f.keys()) == sorted(
            ["sources", "targets", "weights", "biases", "in_shift", "in_scale", "out_shift", "out_scale"]
        )
        assert f.get_tensor("weights").numel() == int(net.mask.sum())
        assert f.get_tensor("biases").numel() == net.n_nodes - net.n_in
    assert meta["format"] == "netbonsai-dagnet" and meta["version"] == 1
    assert meta["params"] == net.num_params() and meta["n_nodes"] == 16
    assert meta["activations"][9] == "elu" and meta["roles"][9] == "added"


def test_top_level_exports(tmp_path: Path) -> None:
    net = mlp()
    netbonsai.save(net, tmp_path / "m")
    _assert_same(netbonsai.load(tmp_path / "m"), net)


def test_load_run_directory(tmp_path: Path) -> None:
    net = mlp(seed=7)
    save(net, tmp_path / "model")
    _assert_same(load(tmp_path), net)
    _assert_same(load(str(tmp_path)), net)


def test_overwrite_replaces_the_file(tmp_path: Path) -> None:
    save(mlp(seed=1), tmp_path / "model")
    save(mlp(seed=2), tmp_path / "model")
    _assert_same(load(tmp_path / "model"), mlp(seed=2))


def test_save_rejects_populations_and_non_json_info(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="population"):
        save(mlp(population=2), tmp_path / "model")
    with pytest.raises(InputError, match="JSON"):
        save(mlp(), tmp_path / "model", info={"x": object()})
    bad = mlp()
    with torch.no_grad():
        bad.mask[0, 0, 1] = True  # input -> input: ignored by forward, refused by the format
    with pytest.raises(InputError, match="input node"):
        save(bad, tmp_path / "model")
    assert list(tmp_path.iterdir()) == []


def test_failed_save_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ModelFileError, match="cannot write"):
        save(mlp(), tmp_path / "missing" / "model")
    assert list(tmp_path.iterdir()) == []
    target = tmp_path / "run"
    target.mkdir()
    with pytest.raises(ModelFileError, match="cannot write"):
        save(mlp(), target)  # a path that is a directory
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"] and list(target.iterdir()) == []

    # a failure in the middle of writing keeps the previous file intact and removes the temp file
    save(mlp(seed=1), tmp_path / "model")
    before = (tmp_path / "model").read_bytes()

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(ModelFileError, match="Input/output error"):
        save(mlp(seed=2), tmp_path / "model")
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "run"]
    assert (tmp_path / "model").read_bytes() == before


def test_missing_paths(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="does not exist"):
        load(tmp_path / "nope")
    with pytest.raises(ModelFileError, match="directory"):
        load(tmp_path)


# ---------------------------------------------------------------------- corrupt files
def _rewrite(
    path: Path,
    tensors: Callable[[dict[str, torch.Tensor]], None] | None = None,
    meta: Callable[[dict], None] | None = None,
) -> None:
    """Re-save a valid model file after editing its tensors and/or its netbonsai metadata."""
    with safe_open(path, framework="pt") as f:
        data = {k: f.get_tensor(k) for k in f.keys()}
        header = json.loads(f.metadata()["netbonsai"])
    if tensors is not None:
        tensors(data)
    if meta is not None:
        meta(header)
    save_file(data, path, metadata={"netbonsai": json.dumps(header)})


def _set(name: str, index: int, value: float | int) -> Callable[[dict[str, torch.Tensor]], None]:
    def edit(data: dict[str, torch.Tensor]) -> None:
        data[name] = data[name].clone()
        data[name][index] = value

    return edit


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _no_metadata(path: Path) -> None:
    with safe_open(path, framework="pt") as f:
        data = {k: f.get_tensor(k) for k in f.keys()}
    save_file(data, path)


def _first_edge_backwards(data: dict[str, torch.Tensor]) -> None:
    s, t = data["sources"].clone(), data["targets"].clone()
    s[0], t[0] = t[0], s[0]
    data["sources"], data["targets"] = s, t


def _duplicate_edge(data: dict[str, torch.Tensor]) -> None:
    for name in ("sources", "targets", "weights"):
        data[name] = torch.cat([data[name], data[name][:1]])


CORRUPTIONS: dict[str, tuple[Callable[[Path], None], str]] = {
    "random bytes": (lambda p: p.write_bytes(os.urandom(300)), "invalid model file"),
    "empty file": (lambda p: p.write_bytes(b""), "too short"),
    "truncated": (_truncate, "invalid model file"),
    "no metadata": (_no_metadata, "metadata"),
    "source >= target": (lambda p: _rewrite(p, _first_edge_backwards), "source >= target"),
    "self loop": (lambda p: _rewrite(p, _set("targets", 0, 0)), "source >= target"),
    "nan weight": (lambda p: _rewrite(p, _set("weights", 3, float("nan"))), "NaN"),
    "inf bias": (lambda p: _rewrite(p, _set("biases", 0, float("inf"))), "NaN or Inf"),
    "zero scale": (lambda p: _rewrite(p, _set("in_scale", 0, 0.0)), "zero scale"),
    "index out of range": (lambda p: _rewrite(p, _set("targets", 2, 99)), "outside"),
    "negative index": (lambda p: _rewrite(p, _set("sources", 2, -1)), "outside"),
    "duplicate edge": (lambda p: _rewrite(p, _duplicate_edge), "twice"),
    "missing tensor": (lambda p: _rewrite(p, lambda d: d.pop("biases")), "missing tensor 'biases'"),
    "short biases": (lambda p: _rewrite(p, lambda d: d.update(biases=d["biases"][:-1])), "biases"),
    "wrong dtype": (lambda p: _rewrite(p, lambda d: d.update(weights=d["weights"].double())), "weights"),
    "length mismatch": (lambda p: _rewrite(p, lambda d: d.update(weights=d["weights"][:-1])), "differ"),
    "unknown activation": (
        lambda p: _rewrite(p, meta=lambda m: m["activations"].__setitem__(5, "gelu")),
        "gelu",
    ),
    "unknown role": (lambda p: _rewrite(p, meta=lambda m: m["roles"].__setitem__(5, "boss")), "boss"),
    "misplaced role": (lambda p: _rewrite(p, meta=lambda m: m["roles"].__setitem__(5, "input")), "input"),
    "wrong format": (lambda p: _rewrite(p, meta=lambda m: m.update(format="other")), "format"),
    "wrong version": (lambda p: _rewrite(p, meta=lambda m: m.update(version=2)), "version"),
    "bad n_nodes": (lambda p: _rewrite(p, meta=lambda m: m.update(n_nodes=16)), "16"),
    "bad n_in": (lambda p: _rewrite(p, meta=lambda m: m.update(n_in="4")), "n_in"),
    "wrong params": (lambda p: _rewrite(p, meta=lambda m: m.update(params=7)), "params"),
    "info not a dict": (lambda p: _rewrite(p, meta=lambda m: m.update(info=[1])), "info"),
    "metadata not json": (
        lambda p: save_file({"a": torch.zeros(1)}, p, metadata={"netbonsai": "{not json"}),
        "JSON",
    ),
    "edge into input": (
        lambda p: _rewrite(p, lambda d: d.update(
            sources=torch.cat([d["sources"], torch.tensor([0])]),
            targets=torch.cat([d["targets"], torch.tensor([1])]),
            weights=torch.cat([d["weights"], torch.tensor([1.0])]),
        )),
        "input node",
    ),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_corrupt_files_raise_model_file_error(tmp_path: Path, case: str) -> None:
    path = save(mlp(), tmp_path / "model")
    load(path)  # valid before the corruption
    corrupt, match = CORRUPTIONS[case]
    corrupt(path)
    with pytest.raises(ModelFileError, match=match) as excinfo:
        load(path)
    message = str(excinfo.value)
    assert str(path) in message and "\n" not in message
    with pytest.raises(ModelFileError):
        load(tmp_path)  # the same through the run directory
