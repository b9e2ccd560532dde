"""``netbonsai predict``: a saved model carries its task preprocessing and runs on a new image."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import netbonsai
from netbonsai.cli import main
from netbonsai.data import brightness_samples, load_image, load_task
from netbonsai.data.tasks import NEIGHBOURHOOD, approx_samples
from netbonsai.experiments import image_runs, presets, run_options
from netbonsai.experiments.predict import predict_image
from netbonsai.nets import DagNet, save, standardize_for
from netbonsai.train import evaluate

from tiny_runs import tiny_settings  # tests/ is on sys.path (rootdir conftest)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write_image(path: Path, width: int = 40, height: int = 30, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    image = 128 + 60 * np.sin(xx / 4.0 + seed) * np.cos(yy / 6.0) + rng.normal(0, 6, (height, width))
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def grown(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run directory of a tiny ``netbonsai grow brightness`` run."""
    root = tmp_path_factory.mktemp("grown")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(presets, "task_settings", tiny_settings)
        patch.setattr(run_options, "task_settings", tiny_settings)
        image = write_image(root / "train.png", seed=1)
        code = main(["grow", "brightness", "--image", str(image), "--out", str(root / "run"),
                     "--executor", "inline", "--quiet"])
    assert code == 0
    return root / "run"


def reported_loss(out: str) -> float:
    match = re.search(r"loss ([0-9.eE+-]+) ", out)
    assert match, out
    return float(match.group(1))


def error_line(code: int, err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("netbonsai: error: ")
    return lines[0]


# ---------------------------------------------------------------------- what a run saves
def test_grown_model_loads_with_topology_config_and_preprocessing(grown: Path) -> None:
    net = netbonsai.load(grown)
    assert isinstance(net, torch.nn.Module) and net.population_size == 1
    info = net.info
    assert info["preprocessing"]["task"] == "brightness"
    assert [tuple(p) for p in info["preprocessing"]["neighbourhood"]] == list(NEIGHBOURHOOD)
    assert info["preprocessing"]["scale"] == 255.0 and info["loss_scale"] == 255.0**2
    assert info["config"]["grow"]["n_attempts"] == 4 and info["config"]["task"] == "brightness"
    for front in (grown / "front").iterdir():
        assert netbonsai.load(front).info["preprocessing"] == info["preprocessing"]


def test_dense_models_store_the_preprocessing_too(tmp_path: Path) -> None:
    data = load_task("brightness", write_image(tmp_path / "a.png"), max_train=200)
    info = image_runs._model_info(data, tiny_settings("brightness"), {"hidden": [2, 2]})
    assert info["preprocessing"] == data.preprocessing and info["loss_scale"] == 255.0**2
    assert info["config"]["dense"]["grid"] == [[2, 2]] and info["hidden"] == [2, 2]


# ---------------------------------------------------------------------- predict
def test_predict_reports_the_loss_of_the_model_on_the_new_image(
    grown: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    image = write_image(tmp_path / "new.png", width=37, height=21, seed=5)
    png = tmp_path / "pred.png"
    code = main(["predict", str(grown / "model"), "--image", str(image), "--out", str(png)])
    out = capsys.readouterr().out
    assert code == 0
    pixels, _ = load_image(image)
    x, y = (torch.from_numpy(a) for a in brightness_samples(pixels))
    net = netbonsai.load(grown / "model")
    expected = float(evaluate(net, x, y, "mse")[0]) * 255.0**2
    assert reported_loss(out) == pytest.approx(expected, rel=1e-5)
    assert f"{(21 - 1) * (37 - 3)} pixels predicted" in out
    assert "MSE in 8-bit units" in out

    written = np.asarray(Image.open(png)).astype(np.float64)
    assert png.read_bytes()[:8] == PNG_SIGNATURE and written.shape == (21, 37)
    assert np.array_equal(written[0], pixels[0]) and np.array_equal(written[:, :2], pixels[:, :2])
    with torch.no_grad():
        predicted = pixels[1:, 2:-1].reshape(-1) - (y[:, 0].double().numpy() - net(x)[:, 0].double().numpy()) * 255
    assert np.abs(written[1:, 2:-1].reshape(-1) - np.clip(np.rint(predicted), 0, 255)).max() <= 1


def test_predict_api_on_a_hand_built_approx_model(tmp_path: Path) -> None:
    data = load_task("approx", write_image(tmp_path / "a.png"), max_train=300)
    net = standardize_for(DagNet.mlp([2, 5, 1], generator=torch.Generator().manual_seed(0)), data.x_train, data.y_train)
    save(net, tmp_path / "approx.model", info={"preprocessing": data.preprocessing, "loss_scale": data.loss_scale})
    image = write_image(tmp_path / "b.png", width=12, height=9, seed=3)
    result = predict_image(tmp_path / "approx.model", image)
    x, y = (torch.from_numpy(a) for a in approx_samples(load_image(image)[0]))
    assert result.task == "approx" and result.n_pixels == 12 * 9 and result.predicted.shape == (9, 12)
    assert result.loss == pytest.approx(float(evaluate(net, x, y, "mse")[0]), rel=1e-6)


# ---------------------------------------------------------------------- bad input
@pytest.fixture
def files(tmp_path: Path, grown: Path) -> dict[str, Path]:
    net = netbonsai.load(grown)
    bare = tmp_path / "bare.model"
    save(DagNet.mlp([4, 3, 1]), bare)  # an old-style file: no preprocessing in its info
    wide = tmp_path / "wide.model"
    wide_net = DagNet.mlp([5, 3, 1])
    wide_net.info = dict(net.info)
    save(wide_net, wide)
    corrupt = tmp_path / "corrupt.model"
    corrupt.write_bytes((grown / "model").read_bytes()[:100])
    noise = tmp_path / "noise.png"
    noise.write_bytes(bytes(range(200)))
    tiny = tmp_path / "tiny.png"
    Image.fromarray(np.full((1, 3), 90, np.uint8)).save(tiny)
    return {"model": grown / "model", "bare": bare, "wide": wide, "corrupt": corrupt, "noise": noise, "tiny": tiny,
            "image": write_image(tmp_path / "ok.png"), "missing": tmp_path / "missing.model"}


@pytest.mark.parametrize("model,image,out,expect", [
    ("missing", "image", None, "does not exist"),
    ("corrupt", "image", None, "invalid model file"),
    ("bare", "image", None, "no image-task preprocessing stored"),
    ("wide", "image", None, "5 inputs"),
    ("model", "tiny", None, "needs at least 4x2"),
    ("model", "noise", None, "not a readable image"),
    ("model", "missing", None, "not found"),
    ("model", "image", "nofolder/p.png", "does not exist"),
    ("model", "image", "p.jpg", "PNG"),
])
def test_predict_bad_input(files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture,
                           model: str, image: str, out: str | None, expect: str) -> None:
    before = sorted(tmp_path.iterdir())
    args = ["predict", str(files[model]), "--image", str(files[image])]
    if out is not None:
        args += ["--out", str(tmp_path / out)]
    code = main(args)
    assert expect in error_line(code, capsys.readouterr().err)
    assert sorted(tmp_path.iterdir()) == before  # no output, partial or temporary
