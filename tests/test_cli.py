"""The ``netbonsai`` command, in-process: exit codes, one-line errors, and a tiny end-to-end run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import netbonsai
from netbonsai.analysis.compare import param_ratios
from netbonsai.cli import main
from netbonsai.data.tasks import load_task
from netbonsai.errors import InputError
from netbonsai.experiments import image_runs, presets, run_options
from netbonsai.experiments.presets import DataSettings, TaskSettings
from netbonsai.grow import GrowConfig
from netbonsai.runs import read_history
from netbonsai.train import evaluate

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write_image(path: Path, size: int = 32, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    image = 128 + 60 * np.sin(xx / 4.0) * np.cos(yy / 6.0) + rng.normal(0, 6, (size, size))
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(path)
    return path


def run_cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_usage_error(code: int, err: str) -> str:
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("netbonsai: error: ")
    return lines[0]


# ---------------------------------------------------------------------- bad input: exit 2
@pytest.fixture
def bad_inputs(tmp_path: Path) -> dict[str, Path]:
    noise = tmp_path / "noise.png"
    noise.write_bytes(np.random.default_rng(1).integers(0, 256, 400).astype(np.uint8).tobytes())
    tiny = tmp_path / "tiny.png"
    Image.fromarray(np.full((3, 3), 90, np.uint8)).save(tiny)
    return {"missing": tmp_path / "missing.png", "noise": noise, "tiny": tiny, "good": write_image(tmp_path / "good.png")}


@pytest.mark.parametrize(
    "case,expect",
    [
        ("missing", "missing.png"),
        ("noise", "noise.png"),
        ("tiny", "3x3"),
        ("max_params", "--max-params"),
        ("max_seconds", "--max-seconds"),
        ("task", "segmentation"),
        ("preset", "huge"),
        ("seed", "--seed"),
    ],
)
@pytest.mark.parametrize("command", ["grow", "compare"])
def test_bad_input_exits_2_with_one_line(
    capsys: pytest.CaptureFixture, tmp_path: Path, bad_inputs: dict[str, Path], command: str, case: str, expect: str
) -> None:
    out = tmp_path / "run"
    image = bad_inputs.get(case, bad_inputs["good"])
    args = [command, "brightness", "--image", image, "--out", out, "--executor", "inline", "--quiet"]
    extra = {
        "max_params": ["--max-params", "-5"],
        "max_seconds": ["--max-seconds", "0"],
        "preset": ["--preset", "huge"],
        "seed": ["--seed", "-1"],
    }
    args += extra.get(case, [])
    if case == "task":
        args[1] = "segmentation"
    code, _, err = run_cli(capsys, *args)
    line = assert_usage_error(code, err)
    assert expect in line
    assert not out.exists()


def test_draw_of_a_corrupt_model(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.write_bytes(np.random.default_rng(2).integers(0, 256, 300).astype(np.uint8).tobytes())
    code, _, err = run_cli(capsys, "draw", model, "-o", tmp_path / "x.png")
    assert_usage_error(code, err)
    assert not (tmp_path / "x.png").exists()
    code, _, err = run_cli(capsys, "draw", tmp_path / "absent", "-o", tmp_path / "x.png")
    assert_usage_error(code, err)


def test_draw_needs_a_png_output(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    model = tmp_path / "model"
    netbonsai.save(netbonsai.DagNet.mlp([4, 3, 1]), model)
    code, _, err = run_cli(capsys, "draw", model, "-o", tmp_path / "x.jpg")
    assert ".png" in assert_usage_error(code, err)
    code, _, err = run_cli(capsys, "draw", model, "-o", tmp_path / "nowhere" / "x.png")
    assert_usage_error(code, err)
    code, out, err = run_cli(capsys, "draw", model, "-o", tmp_path / "x.png")
    assert code == 0, err
    assert (tmp_path / "x.png").read_bytes()[:8] == PNG_SIGNATURE
    assert "19 parameters" in out


def test_show_of_a_missing_dir(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, "show", tmp_path / "nothing")
    assert_usage_error(code, err)
    code, _, err = run_cli(capsys, "show", tmp_path)  # exists, but holds no run
    assert_usage_error(code, err)


def test_unknown_command_and_help(capsys: pytest.CaptureFixture) -> None:
    code, _, err = run_cli(capsys, "frobnicate")
    assert_usage_error(code, err)
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0 and "compare" in out


# ---------------------------------------------------------------------- end to end
def tiny_settings(task: str, preset: str = "quick") -> TaskSettings:
    presets_ok = presets.PRESETS
    assert preset in presets_ok
    grow = GrowConfig(
        hidden=(4, 4), start_epochs=20, trial_epochs=3, grow_epochs=5, n_attempts=8, attempt_samples=500,
        max_params=60, max_cycles=1,
    )
    return TaskSettings(
        task=task, preset=preset, data=DataSettings(max_train=1000), grow=grow,
        dense_grid=((2, 2), (3, 3)), dense_epochs=20,
    )


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(presets, "task_settings", tiny_settings)
    monkeypatch.setattr(run_options, "task_settings", tiny_settings)


@pytest.mark.fast
def test_compare_end_to_end(capsys: pytest.CaptureFixture, tmp_path: Path, tiny: None) -> None:
    image = write_image(tmp_path / "img.png")
    out = tmp_path / "run"
    args = ["compare", "brightness", "--image", image, "--out", out, "--executor", "inline", "--quiet"]
    code, stdout, err = run_cli(capsys, *args)
    assert code == 0, err
    assert "Run directory" in stdout
    assert "Training (lbfgs): every dense network 20 iterations" in stdout

    config = json.loads((out / "config.json").read_text())
    assert config["command"] == "compare" and config["image"] == str(image)
    assert config["grow"]["n_attempts"] == 8 and config["dense"]["grid"] == [[2, 2], [3, 3]]

    events = list(read_history(out / "history.jsonl"))
    assert events[0]["event"] == "start" and events[-1]["event"] == "stop"
    assert [e["index"] for e in events] == list(range(len(events)))
    assert events[0]["params"] == 45

    comparison = json.loads((out / "comparison.json").read_text())
    for key in ("task", "image", "preset", "dense", "grown", "ratios", "median_ratio", "min_ratio", "wall_seconds"):
        assert key in comparison
    assert comparison["task"] == "brightness" and comparison["image"] == str(image)
    assert comparison["preset"] == "quick"
    assert [d["hidden"] for d in comparison["dense"]] == [[2, 2], [3, 3]]
    for item in comparison["dense"]:
        assert set(item) >= {"hidden", "params", "train_loss", "val_loss"}
    assert [d["params"] for d in comparison["dense"]] == [4 * 2 + 2 + 2 * 2 + 2 + 2 + 1, 4 * 3 + 3 + 9 + 3 + 3 + 1]
    assert comparison["grown"] and all(set(g) == {"params", "train_loss", "val_loss", "epochs"} for g in comparison["grown"])
    assert comparison["wall_seconds"] > 0
    train = comparison["at_train_loss"]  # the paper's own measure, next to the held-out one
    assert train["ratios"] == param_ratios(comparison["grown"], comparison["dense"], loss_key="train_loss")
    if train["n"]:
        assert f"At equal training loss (paper 000's measure): median {train['median_ratio']:.2f}" in stdout

    # the training each network had: start 20, + 3 per accepted removal, + 5 per added neuron
    for position, event in enumerate(events):
        before = events[: position + 1]
        expected = 20 + 3 * sum(e["event"] == "prune" for e in before) + 5 * sum(e["event"] == "grow" for e in before)
        assert event["epochs"] == expected, event
    assert {g["epochs"] for g in comparison["grown"]} <= {e["epochs"] for e in events}
    budget = comparison["budget"]
    assert (budget["method"], budget["dense_epochs"], budget["polish_epochs"]) == ("lbfgs", 20, 0)
    assert budget["grown_epochs_min"] == min(g["epochs"] for g in comparison["grown"])
    assert "Training (lbfgs): every dense network 20 iterations; the grown front's networks" in (out / "report.md").read_text()

    # the magnitude-pruning baseline: the largest grid network within max_params (60), pruned in rounds
    magnitude = comparison["magnitude"]
    assert magnitude["from"] == [3, 3] and magnitude["method"] == "magnitude-blinded"
    stored = json.loads((out / "magnitude.json").read_text())
    params = [p["params"] for p in stored["points"]]
    assert params == sorted(params, reverse=True) and params[0] < 31 and len(params) >= 3
    assert [p["round"] for p in stored["points"]] == list(range(1, len(params) + 1))
    for point in stored["points"]:
        pruned = netbonsai.load(out / point["file"])
        assert pruned.num_params() == point["params"] and pruned.info["round"] == point["round"]
    assert {(p["params"], p["val_loss"]) for p in magnitude["front"]} <= {(p["params"], p["val_loss"]) for p in stored["points"]}
    assert "Magnitude pruning of the dense 3-3 MLP" in (out / "report.md").read_text()
    assert "Magnitude pruning of the dense 3-3 MLP: " in stdout

    model = netbonsai.load(out / "model")
    best = min(comparison["grown"], key=lambda g: g["val_loss"])
    assert model.num_params() == best["params"]
    assert (out / "report.md").read_text().startswith("# netbonsai compare")
    for name in ("pareto.png", "network.png", "history.png"):
        assert (out / name).read_bytes()[:8] == PNG_SIGNATURE
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]

    code, stdout, err = run_cli(capsys, "show", out)
    assert code == 0, err
    assert f"now {events[-1]['params']} parameters" in stdout
    assert "Dense MLPs" in stdout
    assert "magnitude pruning of dense 3-3: median ratio" in stdout
    assert "Training (lbfgs): every dense network 20 iterations" in stdout

    drawing = tmp_path / "x.png"
    code, stdout, err = run_cli(capsys, "draw", out / "model", "-o", drawing)
    assert code == 0, err
    assert drawing.read_bytes()[:8] == PNG_SIGNATURE
    assert f"{best['params']} parameters" in stdout

    # the same folder again: refused without --resume, finished from the checkpoint with it
    code, _, err = run_cli(capsys, *args)
    assert "--resume" in assert_usage_error(code, err)
    code, _, err = run_cli(capsys, *args, "--resume")
    assert code == 0, err
    again = json.loads((out / "comparison.json").read_text())
    assert again["grown"] == comparison["grown"] and again["dense"] == comparison["dense"]
    assert again["magnitude"] == comparison["magnitude"]
    assert list(read_history(out / "history.jsonl")) == events
    # a different configuration cannot resume this run
    code, _, err = run_cli(capsys, *args, "--resume", "--seed", "5")
    assert "differs" in assert_usage_error(code, err)


@pytest.mark.fast
def test_grow_end_to_end(capsys: pytest.CaptureFixture, tmp_path: Path, tiny: None) -> None:
    image = write_image(tmp_path / "img.png", seed=1)
    out = tmp_path / "grown"
    code, stdout, err = run_cli(
        capsys, "grow", "brightness", "--image", image, "--out", out, "--executor", "inline", "--quiet",
        "--seed", "2", "--max-params", "50",
    )
    assert code == 0, err
    config = json.loads((out / "config.json").read_text())
    assert config["command"] == "grow" and config["seed"] == 2 and config["grow"]["max_params"] == 50
    result = json.loads((out / "result.json").read_text())
    events = list(read_history(out / "history.jsonl"))
    assert events[-1]["event"] == "stop" and result["stop_reason"] == events[-1]["reason"]
    # the CPU's instruction set sets the float rounding, and with it the search path: it is recorded
    assert result["environment"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert "cpu" in result["environment"]
    assert result["final_params"] == events[-1]["params"]  # the search's last network
    for point in result["front"]:
        assert netbonsai.load(out / point["file"]).num_params() == point["params"]
    # the run's model: the (polished) front network with the lowest validation loss, not the last one
    best = min(result["front"], key=lambda p: p["val_loss"])
    model = netbonsai.load(out / "model")
    assert model.num_params() == best["params"] == result["model"]["params"]
    assert model.info["val_loss"] == best["val_loss"] == result["model"]["val_loss"]
    assert model.info["train_loss"] == best["train_loss"] == result["model"]["train_loss"]
    assert (out / "model").read_bytes() == (out / best["file"]).read_bytes()
    data = load_task("brightness", str(image), max_train=1000)  # the split of tiny_settings
    losses = [float(evaluate(netbonsai.load(out / p["file"]), data.x_val, data.y_val)[0]) for p in result["front"]]
    assert float(evaluate(model, data.x_val, data.y_val)[0]) == pytest.approx(min(losses))
    assert min(losses) * data.loss_scale == pytest.approx(best["val_loss"])
    assert "Model: the front network with the lowest validation loss" in (out / "report.md").read_text()
    assert not (out / "comparison.json").exists() and not (out / "dense.json").exists()
    assert f"hidden neurons, trained {events[-1]['epochs']} iterations in the search." in (out / "report.md").read_text()
    code, stdout, err = run_cli(capsys, "show", out)
    assert code == 0, err
    assert "search finished" in stdout


@pytest.mark.fast
def test_compare_polishes_every_reported_network(
    capsys: pytest.CaptureFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def polished_settings(task: str, preset: str = "quick") -> TaskSettings:
        settings = tiny_settings(task, preset)
        return TaskSettings(**{**settings.__dict__, "polish_epochs": 10, "polish_points": 3})

    monkeypatch.setattr(run_options, "task_settings", polished_settings)
    image = write_image(tmp_path / "img.png", seed=2)
    out = tmp_path / "run"
    code, _, err = run_cli(
        capsys, "compare", "brightness", "--image", image, "--out", out, "--executor", "inline", "--quiet",
        "--set", "n_attempts=4", "--set", "trainer.history_size=5",
    )
    assert code == 0, err
    config = json.loads((out / "config.json").read_text())
    assert config["polish"] == {"epochs": 10, "points": 3, "group": 1}
    assert config["grow"]["n_attempts"] == 4 and config["grow"]["trainer"]["history_size"] == 5
    comparison = json.loads((out / "comparison.json").read_text())
    assert 1 <= len(comparison["grown"]) <= 3
    losses = [g["val_loss"] for g in comparison["grown"]]
    assert losses == sorted(losses, reverse=True)  # a Pareto front: more parameters, lower loss
    for point in comparison["grown"]:  # the reported losses are those of the saved (polished) networks
        match = [f for f in (out / "front").iterdir() if f.name == f"params_{point['params']:05d}"]
        assert len(match) == 1
        net = netbonsai.load(match[0])
        assert net.info["val_loss"] == pytest.approx(point["val_loss"])


@pytest.mark.fast
def test_compare_over_several_seeds_pools_them(capsys: pytest.CaptureFixture, tmp_path: Path, tiny: None) -> None:
    image = write_image(tmp_path / "img.png")
    out = tmp_path / "run"
    args = ["compare", "brightness", "--image", image, "--out", out, "--executor", "inline", "--quiet",
            "--seed", "3", "--seeds", "2"]
    code, stdout, err = run_cli(capsys, *args)
    assert code == 0, err
    assert "Per-seed median ratio" in stdout
    assert json.loads((out / "config.json").read_text())["seeds"] == [3, 4]
    singles = [json.loads((out / f"seed-{s}" / "comparison.json").read_text()) for s in (3, 4)]
    assert [c["seed"] for c in singles] == [3, 4]
    assert singles[0]["dense"] != singles[1]["dense"]  # the dense networks' initial weights follow the seed
    pooled = json.loads((out / "comparison.json").read_text())
    assert pooled["seeds"] == [3, 4] and [r["seed"] for r in pooled["per_seed"]] == [3, 4]
    assert [r["median_ratio"] for r in pooled["per_seed"]] == [c["median_ratio"] for c in singles]
    assert len(pooled["dense"]) == sum(len(c["dense"]) for c in singles)
    # the pooled grown front: no pooled network is beaten by a grown network of any seed
    every = [g for c in singles for g in c["grown"]]
    for g in pooled["grown"]:
        assert not any(o["params"] <= g["params"] and o["val_loss"] < g["val_loss"] for o in every)
    best = min(pooled["grown"], key=lambda g: g["val_loss"])
    assert netbonsai.load(out / "model").num_params() == best["params"]
    # the magnitude baseline pooled the same way: the Pareto front of both seeds' pruned networks
    pruned = [(p["params"], p["val_loss"]) for c in singles for p in c["magnitude"]["front"]]
    front = [(p["params"], p["val_loss"]) for p in pooled["magnitude"]["front"]]
    assert set(front) <= set(pruned) and {p["seed"] for p in pooled["magnitude"]["front"]} <= {3, 4}
    assert all(not any(o[0] <= f[0] and o[1] < f[1] for o in pruned) for f in front)
    assert "Magnitude pruning of the dense" in stdout
    # the training budget: the grown range is that of the pooled front's networks (as compared)
    budget = pooled["budget"]
    compared = [g["epochs"] for g in pooled["grown"]]
    assert len(compared) == len(pooled["grown"]) and set(compared) <= {g["epochs"] for g in every}
    assert budget["dense_epochs"] == 20 and (budget["grown_epochs_min"], budget["grown_epochs_max"]) == (min(compared), max(compared))
    assert "Training (lbfgs): every dense network 20 iterations" in stdout
    assert (out / "pareto.png").read_bytes()[:8] == PNG_SIGNATURE
    code, stdout, err = run_cli(capsys, "show", out)
    assert code == 0, err
    assert "pooled over seeds [3, 4]" in stdout
    # finished seeds are not run again on --resume; the pooled figures are the same
    (out / "seed-4" / "history.jsonl").unlink()
    code, _, err = run_cli(capsys, *args, "--resume")
    assert code == 0, err
    assert not (out / "seed-4" / "history.jsonl").exists()
    assert json.loads((out / "comparison.json").read_text())["ratios"] == pooled["ratios"]


def test_pool_comparisons_uses_both_pooled_fronts() -> None:
    runs = [
        {"seed": 0, "median_ratio": 1.0, "dense": [{"params": 10, "val_loss": 5.0, "train_loss": 4.0},
                                                   {"params": 100, "val_loss": 1.0, "train_loss": 0.5}],
         "grown": [{"params": 10, "val_loss": 3.0, "train_loss": 2.5}]},
        {"seed": 1, "median_ratio": 2.0, "dense": [{"params": 20, "val_loss": 4.0, "train_loss": 3.0}],
         "grown": [{"params": 12, "val_loss": 2.0, "train_loss": 1.0}, {"params": 15, "val_loss": 2.5, "train_loss": 2.0}]},
    ]
    pooled = image_runs.pool_comparisons(runs)
    assert [(g["seed"], g["params"]) for g in pooled["grown"]] == [(0, 10), (1, 12)]
    assert len(pooled["dense"]) == 3 and {d["seed"] for d in pooled["dense"]} == {0, 1}
    # loss 2.0 on the dense front 20 (4.0) .. 100 (1.0): log-interpolated at 2/3 of the way
    assert [r["grown_params"] for r in pooled["ratios"]] == [10, 12]
    assert pooled["ratios"][1]["ratio"] == pytest.approx(20 * (100 / 20) ** (2 / 3) / 12)
    assert pooled["per_seed_median"]["mean"] == 1.5 and pooled["per_seed_median"]["std"] == pytest.approx(0.7071, abs=1e-4)
    # the same pooled networks at equal training loss (paper 000's measure): dense front 10 (4.0),
    # 20 (3.0), 100 (0.5); grown 10 at 2.5 and 12 at 1.0 lie 1/5 and 4/5 of the way from 20 to 100
    train = pooled["at_train_loss"]
    assert [r["grown_params"] for r in train["ratios"]] == [10, 12] and train["n"] == 2
    assert [r["ratio"] for r in train["ratios"]] == pytest.approx([20 * 5 ** 0.2 / 10, 20 * 5 ** 0.8 / 12])
    assert train["median_ratio"] == pytest.approx((20 * 5 ** 0.2 / 10 + 20 * 5 ** 0.8 / 12) / 2)
    assert "At equal training loss (paper 000's measure): median 4.40" in image_runs.seeds_summary(
        {**pooled, "per_seed": [{**r, "wall_seconds": 1.0} for r in pooled["per_seed"]]})
    assert pooled["median_ratio_interval"] is None  # two seeds: too few to resample


def test_pool_comparisons_gives_a_seed_bootstrap_interval_from_three_seeds() -> None:
    # one dense front (10 params at 5.0, 1000 at 1.0) in every seed; seed s has one grown
    # network at loss 3.0 (100 dense parameters) with 10, 20 or 50 parameters
    dense = [{"params": 10, "val_loss": 5.0, "train_loss": 5.0}, {"params": 1000, "val_loss": 1.0, "train_loss": 1.0}]
    runs = [{"seed": s, "median_ratio": 100 / p, "dense": dense, "grown": [{"params": p, "val_loss": 3.0, "train_loss": 3.0}]}
            for s, p in enumerate((10, 20, 50))]
    pooled = image_runs.pool_comparisons(runs)
    interval = pooled["median_ratio_interval"]
    assert pooled["median_ratio"] == pytest.approx(10.0)
    assert (interval["low"], interval["high"]) == pytest.approx((5.0, 10.0)) and interval["confidence"] == 0.9
    text = image_runs.seeds_summary({**pooled, "per_seed": [{**r, "wall_seconds": 1.0} for r in pooled["per_seed"]]})
    assert "90% interval over seeds (bootstrap) 5.00-10.00" in text


@pytest.mark.parametrize("command,setting,expect", [
    ("grow", "n_attempts=abc", "must be int"), ("grow", "bogus=1", "unknown"), ("grow", "x", "KEY=VALUE"),
    ("grow", "dense.grid=[]", "dense.grid"), ("grow", "dense.grid=[[0]]", "dense.grid"),
    ("grow", "dense.grid=[5,5]", "dense.grid"), ("grow", "dense.grid=[[true]]", "dense.grid"),
    ("grow", "dense.width=5", "unknown baseline setting"), ("grow", "magnitude.sparsity=0.5", "only compare runs"),
    ("compare", "magnitude.sparsity=1.5", "magnitude.sparsity"), ("compare", "magnitude.method=bogus", "pruning method"),
    ("compare", "magnitude.enabled=maybe", "magnitude.enabled"), ("compare", "magnitude.schedule=often", "schedule"),
    ("compare", "magnitude.rounds=3", "unknown baseline setting"),
    ("compare", "dense.epochs=-1", "dense.epochs"), ("compare", "dense.epochs=true", "dense.epochs"),
    ("compare", "polish.epochs=-1", "polish.epochs"), ("baseline", "dense.epochs=match", "only compare"),
    ("grow", "dense.epochs=match", "only compare"), ("compare", "dense.epochs=often", "or match"),
    ("compare", "polish.epochs=1.5", "polish.epochs"), ("compare", "polish.points=3", "unknown baseline setting"),
])
def test_bad_set_values_exit_2(capsys: pytest.CaptureFixture, tmp_path: Path, command: str, setting: str, expect: str) -> None:
    code, _, err = run_cli(capsys, command, "brightness", "--out", tmp_path / "o", "--set", setting, "--quiet")
    assert expect in assert_usage_error(code, err)
    assert not (tmp_path / "o").exists()


def test_dense_jobs_never_move_the_search_data_into_shared_memory(tmp_path: Path) -> None:
    """A process pool pickles in a feeder thread; the search's own tensors must not be touched."""
    from netbonsai.data.tasks import load_task
    from netbonsai.executor import make_executor

    data = load_task("brightness", str(write_image(tmp_path / "img.png")), max_train=500)
    settings = tiny_settings("brightness")
    with make_executor("process", workers=1) as pool:
        futures = image_runs.submit_dense(pool, data, settings, image_runs.Reporter())
        results = [f.result() for f in futures]
    assert len(results) == 2
    for name in ("x_train", "y_train", "x_val", "y_val"):
        assert not getattr(data, name).is_shared(), name


@pytest.mark.fast
def test_dense_epochs_match_trains_the_baselines_as_long_as_the_search(
    capsys: pytest.CaptureFixture, tmp_path: Path, tiny: None
) -> None:
    """dense.epochs=match: the dense networks start after the search, with its front's most training."""
    image = write_image(tmp_path / "img.png")
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, "compare", "brightness", "--image", image, "--out", out, "--executor", "inline",
                                "--quiet", "--set", "dense.epochs=match", "--set", "magnitude.enabled=false")
    assert code == 0, err
    assert json.loads((out / "config.json").read_text())["dense"]["epochs"] == "match"
    events = list(read_history(out / "history.jsonl"))
    front_epochs = max(e["epochs"] for e in events if e["event"] != "stop")
    budget = json.loads((out / "comparison.json").read_text())["budget"]
    assert budget["dense_epochs"] >= budget["grown_epochs_max"] > 20  # more than the start network's 20
    assert budget["dense_epochs"] <= front_epochs
    assert [d["hidden"] for d in json.loads((out / "dense.json").read_text())] == [[2, 2], [3, 3]]
    assert f"every dense network {budget['dense_epochs']} iterations" in stdout


@pytest.mark.fast
def test_budget_line_reads_partial_budgets() -> None:
    """show reads comparison.json files written by other tools: a missing maximum is not a crash."""
    from netbonsai.analysis.report import budget_line

    line = budget_line({"unit": "epochs", "method": "adam", "dense_epochs": 40, "polish_epochs": 0, "grown_epochs_min": 50})
    assert line == "Training (adam): every dense network 40 epochs; the grown front's networks 50 epochs in the search " \
                   "(their whole history, start network included)."
    pooled = image_runs._pooled_budget(
        [{"budget": {"unit": "iterations", "method": "lbfgs", "dense_epochs": d, "polish_epochs": 5}} for d in (90, 70)],
        [{"params": 3, "epochs": 60}, {"params": 5, "epochs": 90}],
    )["budget"]
    assert (pooled["dense_epochs_min"], pooled["dense_epochs"], pooled["grown_epochs_min"], pooled["grown_epochs_max"]) == (70, 90, 60, 90)
    assert budget_line(pooled).startswith("Training (lbfgs): every dense network 70-90 iterations; the grown front's networks 60-90")


@pytest.mark.fast
def test_dense_budget_follows_the_start_budget_unless_set() -> None:
    """The same budget policy: dense networks get start_epochs, also when --set changes it."""
    preset = image_runs.RunOptions("brightness").settings()
    assert preset.dense_epochs == preset.grow.start_epochs
    moved = image_runs.RunOptions("brightness", overrides={"start_epochs": 40, "polish.epochs": 7}).settings()
    assert (moved.grow.start_epochs, moved.dense_epochs, moved.polish_epochs) == (40, 40, 7)
    both = image_runs.RunOptions("brightness", overrides={"start_epochs": 40, "dense.epochs": 90}).settings()
    assert (both.grow.start_epochs, both.dense_epochs) == (40, 90)
    assert both.to_dict()["dense"]["epochs"] == 90


def test_baseline_refuses_the_search_limits_in_the_api_too() -> None:
    """The CLI's baseline has no --max-params/--max-seconds; RunOptions refuses them for baseline."""
    for limits in ({"max_params": 100}, {"max_seconds": 5.0}):
        with pytest.raises(InputError, match="does not run"):
            image_runs.RunOptions("brightness", command="baseline", **limits).settings()
    assert image_runs.RunOptions("brightness", command="compare", max_params=100).settings().grow.max_params == 100


@pytest.mark.fast
def test_dense_grid_setting_replaces_the_baseline(capsys: pytest.CaptureFixture, tmp_path: Path, tiny: None) -> None:
    """--set dense.grid: other dense networks (here a one-hidden-layer one), recorded in config.json."""
    image = write_image(tmp_path / "img.png")
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, "baseline", "brightness", "--image", image, "--out", out, "--executor", "inline",
                                "--quiet", "--set", "dense.grid=[[3], [2, 2]]", "--set", "seed=4", "--set", "trainer.lr=0.5")
    assert code == 0, err
    config = json.loads((out / "config.json").read_text())
    assert (config["dense"]["grid"], config["seed"]) == ([[3], [2, 2]], 4)
    dense = json.loads((out / "dense.json").read_text())
    assert [(d["hidden"], d["params"]) for d in dense] == [([3], 4 * 3 + 3 + 3 + 1), ([2, 2], 8 + 2 + 4 + 2 + 2 + 1)]
    # the run's model is its best dense network, and the last line lists what the folder holds
    best = min(dense, key=lambda d: d["val_loss"])
    model = netbonsai.load(out)
    assert model.num_params() == best["params"]
    assert model.info["hidden"] == best["hidden"]
    assert stdout.strip().splitlines()[-1] == f"Run directory: {out} (config.json, dense.json, dense/, model, pareto.png, report.md)"
