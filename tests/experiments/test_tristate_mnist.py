"""reproduce tristate-mnist (paper 003): the baselines' arithmetic, the result file, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from netbonsai.cli import main
from netbonsai.experiments import tristate_mnist
from netbonsai.experiments.tristate_mnist import TristateSettings, count_params, lenet300, lenet5, neuron_prune, svd_compress

from .synthetic_idx import write_synthetic_mnist

TINY = TristateSettings(max_train=300, val_size=100, max_test=100, dense_epochs=1, gated_epochs=1, finetune_epochs=1,
                        scales=(4.0, 4.3), depths=(2,), classes=(2, 3), depth_width=16)


def test_svd_compress_meets_the_parameter_budget_and_is_exact_at_full_rank() -> None:
    torch.manual_seed(0)
    model = lenet300()
    small = svd_compress(model, count_params(model) // 4)
    assert count_params(small) <= count_params(model) // 4
    assert count_params(small) > 0.9 * count_params(model) // 4  # the largest rank fraction that fits
    net = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3))
    full = svd_compress(net, 10**6)  # every rank full: the same function
    x = torch.randn(5, 6)
    torch.testing.assert_close(full(x), net(x), atol=1e-5, rtol=1e-5)


def test_neuron_prune_keeps_the_largest_units_of_each_layer() -> None:
    torch.manual_seed(0)
    model = lenet5()
    pruned = neuron_prune(model, [5, 10, 40])
    shapes = [m.weight.shape[0] for m in pruned.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    assert shapes == [5, 10, 40, 10]
    with pytest.raises(Exception, match="one width per hidden layer"):
        neuron_prune(model, [5])


def test_reproduce_writes_every_part_and_resumes_to_the_same_result(tmp_path: Path, monkeypatch) -> None:
    folder = write_synthetic_mnist(tmp_path / "idx", n_train=500, n_test=100)
    monkeypatch.setitem(tristate_mnist.PRESETS, "quick", TINY)
    out = tmp_path / "run"
    assert main(["reproduce", "tristate-mnist", "--data", str(folder), "--out", str(out), "--quiet"]) == 0
    result = json.loads((out / "result.json").read_text())
    for name in ("lenet300", "lenet5"):
        assert set(result[name]) >= {"dense", "gated", "scratch", "svd"}
        assert result[name]["gated"]["params"] <= result[name]["dense"]["params"]
        assert 0 <= result[name]["gated"]["test_error"] <= 1 and result[name]["gated"]["widths"][-1] == 10
        assert result[name]["svd"]["params"] <= result[name]["gated"]["params"]
    tried = result["lenet300"]["candidates"]
    assert [c["scale"] for c in tried] == [4.0, 4.3] and result["lenet300"]["gated"]["scale"] in (4.0, 4.3)
    assert result["lenet5"]["gated"]["scale"] == result["lenet300"]["gated"]["scale"]  # chosen once, on validation
    assert [d["initial_layers"] for d in result["depth"]] == [2]
    assert [c["classes"] for c in result["classes"]] == [2, 3]
    assert result["wall_seconds"] > 0 and (out / "gates.png").exists() and (out / "classes.png").exists()
    # killed after the first part: --resume runs only the rest and writes the same figures
    saved = torch.load(out / "checkpoint.pt", weights_only=True)
    first = {"lenet300": saved["parts"]["lenet300"]}
    torch.save({"parts": first, "seconds": 1.0}, out / "checkpoint.pt")
    assert main(["reproduce", "tristate-mnist", "--data", str(folder), "--out", str(out), "--resume", "--quiet"]) == 0
    again = json.loads((out / "result.json").read_text())
    assert {k: v for k, v in again.items() if k != "wall_seconds"} == {k: v for k, v in result.items() if k != "wall_seconds"}
