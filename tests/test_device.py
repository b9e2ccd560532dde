"""``--device``: resolution and errors everywhere; on a machine with a CUDA GPU, the search,
the dense sweep and the polish run there and give what the CPU gives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import netbonsai
from netbonsai.data import load_task
from netbonsai.errors import InputError
from netbonsai.grow import GrowConfig, grow
from netbonsai.nets import DagNet
from netbonsai.runtime import resolve_device
from netbonsai.train import Budget, TrainerConfig, evaluate, fit

from test_cli import assert_usage_error, run_cli, tiny, write_image  # noqa: F401 (fixture)

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="no CUDA GPU on this machine (the GPU path is checked where one is)")


def test_resolve_device() -> None:
    assert resolve_device("cpu") == "cpu"
    assert resolve_device(" CPU ") == "cpu"
    assert resolve_device("auto") == ("cuda" if CUDA else "cpu")
    for bad in ("tpu", "cuda:x", "gpu", ""):
        with pytest.raises(InputError, match="unknown device"):
            resolve_device(bad)
    with pytest.raises(InputError, match="GPU"):
        resolve_device("cuda:99")
    if not CUDA:
        with pytest.raises(InputError, match="no CUDA GPU"):
            resolve_device("cuda")


@pytest.mark.parametrize("device,expect", [("tpu", "unknown device"), ("cuda:99", "GPU")])
def test_bad_device_is_a_usage_error_and_writes_nothing(
    capsys: pytest.CaptureFixture, tmp_path: Path, device: str, expect: str
) -> None:
    image = write_image(tmp_path / "img.png")
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "grow", "brightness", "--image", image, "--device", device, "--out", out, "--quiet")
    assert expect in assert_usage_error(code, err)
    assert not out.exists()


def test_device_is_recorded_and_not_compared_on_resume(capsys: pytest.CaptureFixture, tmp_path: Path, tiny: None) -> None:
    image = write_image(tmp_path / "img.png")
    out = tmp_path / "run"
    base = ["grow", "brightness", "--image", image, "--out", out, "--executor", "inline", "--quiet"]
    code, _, err = run_cli(capsys, *base, "--device", "cpu")
    assert code == 0, err
    config_file = out / "config.json"
    assert json.loads(config_file.read_text())["device"] == "cpu"
    assert "device cpu" in (out / "report.md").read_text()
    # a run started on a GPU may resume on the CPU: only the settings that change results count
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**config, "device": "cuda"}))
    code, _, err = run_cli(capsys, *base, "--device", "cpu", "--resume")
    assert code == 0, err
    # but a setting that does change results is still compared
    code, _, err = run_cli(capsys, *base, "--device", "cpu", "--resume", "--seed", "5")
    assert "seed" in assert_usage_error(code, err)


@needs_cuda
def test_population_forward_and_training_on_the_gpu_match_the_cpu() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2000, 4, generator=g) * 2 - 1
    y = torch.sin(3 * x[:, :1]) * x[:, 1:2] + 0.2 * x[:, 2:3]
    cpu = DagNet.mlp([4, 6, 6, 1], generator=torch.Generator().manual_seed(1)).expand(5)
    gpu = cpu.clone().to("cuda")
    torch.testing.assert_close(gpu.population(x.cuda()).cpu(), cpu.population(x), rtol=1e-5, atol=1e-5)
    trainer = TrainerConfig(method="lbfgs")
    fit(cpu, x, y, Budget(epochs=20), trainer)
    fit(gpu, x.cuda(), y.cuda(), Budget(epochs=20), trainer)
    # the same optimisation on both devices (rounding differs, so not to the last digit)
    torch.testing.assert_close(evaluate(gpu, x.cuda(), y.cuda()).cpu(), evaluate(cpu, x, y), rtol=2e-2, atol=1e-6)
    assert torch.equal(gpu.mask.cpu(), cpu.mask)


@needs_cuda
def test_search_runs_on_the_gpu(tmp_path: Path) -> None:
    image = write_image(tmp_path / "img.png", size=40)
    config = GrowConfig(hidden=(4, 4), start_epochs=30, trial_epochs=5, grow_epochs=10, n_attempts=10,
                        attempt_samples=500, eps=0.01, max_params=60, max_cycles=2, seed=3,
                        neuron_init="gradient", neuron_removal=True)
    data = load_task("brightness", image, max_train=1500)
    on_gpu = grow(data.to("cuda"), config)
    on_cpu = grow(data, config)
    assert on_gpu.net.weight.device.type == "cuda"
    assert on_gpu.events[0]["params"] == on_cpu.events[0]["params"] == 45
    assert on_gpu.events[0]["train_loss"] == pytest.approx(on_cpu.events[0]["train_loss"], rel=1e-2)
    assert sum(e["event"] == "grow" for e in on_gpu.events) == 2
    final = on_gpu.net.to("cpu")  # every event's figures describe its network
    val = float(evaluate(final, data.x_val, data.y_val)[0]) * data.loss_scale
    assert on_gpu.events[-1]["val_loss"] == pytest.approx(val, rel=1e-4)


@needs_cuda
@pytest.mark.parametrize("executor", ["inline", "process"])
def test_compare_on_the_gpu_writes_files_that_load_on_the_cpu(
    capsys: pytest.CaptureFixture, tmp_path: Path, tiny: None, executor: str
) -> None:
    image = write_image(tmp_path / "img.png")
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, "compare", "brightness", "--image", image, "--out", out,
                                "--executor", executor, "--device", "cuda", "--quiet")
    assert code == 0, err
    assert json.loads((out / "config.json").read_text())["device"] == "cuda"
    comparison = json.loads((out / "comparison.json").read_text())
    assert comparison["grown"] and len(comparison["dense"]) == 2
    model = netbonsai.load(out / "model")
    assert model.weight.device.type == "cpu"
    best = min(comparison["grown"], key=lambda g: g["val_loss"])
    assert model.num_params() == best["params"]


@needs_cuda
def test_networks_of_different_sizes_train_together_on_the_gpu() -> None:
    from netbonsai.train.together import fit_together

    g = torch.Generator().manual_seed(0)
    x = torch.rand(1000, 3, generator=g) * 2 - 1
    y = torch.tanh(2 * x[:, :1] - x[:, 1:2])
    nets = [DagNet.mlp([3, *hidden, 1], generator=torch.Generator().manual_seed(i)) for i, hidden in enumerate([(2,), (4, 3)])]
    trained_cpu, result_cpu = fit_together(nets, x, y, Budget(epochs=10))
    trained_gpu, result_gpu = fit_together([n.clone().to("cuda") for n in nets], x.cuda(), y.cuda(), Budget(epochs=10))
    assert all(n.weight.device.type == "cuda" for n in trained_gpu)
    assert [n.n_nodes for n in trained_gpu] == [n.n_nodes for n in nets]
    torch.testing.assert_close(result_gpu.loss.cpu(), result_cpu.loss, rtol=2e-2, atol=1e-6)


def test_python_dash_m_runs_the_command_line() -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "netbonsai", "grow", "brightness", "--device", "tpu", "--out", "x"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("netbonsai: error: unknown device 'tpu'")
    assert "Traceback" not in done.stderr
