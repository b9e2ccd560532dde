"""compare TASK --methods: any registered methods, each with its own front, row and plot line.

The acceptance of the method platform: a new method is one file (random_prune_method.py) plus one
registry line, and runs through compare with no other change.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

import netbonsai
from netbonsai.cli import main
from netbonsai.experiments import presets
from netbonsai.methods import METHODS, get_method, method_names, register
from tiny_runs import crop_of_camera

MNIST = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mnist"

# a few seconds of work: a small grid, short budgets, one added neuron
TINY = ["--set", "start_epochs=60", "--set", "grow.trial_epochs=3", "--set", "grow.grow_epochs=10",
        "--set", "grow.n_attempts=10", "--set", "grow.attempt_samples=500", "--set", "grow.max_cycles=1",
        "--set", "dense.grid=[[4, 4], [6, 6], [8, 8]]", "--set", "polish.epochs=10", "--set", "magnitude.sparsity=0.5",
        "--max-params", "120", "--quiet", "--executor", "inline"]


@pytest.fixture
def random_removal():
    """The test method registered (one line), and unregistered afterwards."""
    from random_prune_method import RandomRemoval

    register(RandomRemoval)
    yield RandomRemoval
    METHODS.pop(RandomRemoval.name, None)


def _compare(tmp_path: Path, methods: str, *extra: str) -> dict:
    image = crop_of_camera(tmp_path / "crop.png")
    out = tmp_path / "run"
    code = main(["compare", f"approx:{image}", "--methods", methods, "--out", str(out), *TINY, *extra])
    assert code == 0
    return json.loads((out / "comparison.json").read_text())


def test_a_new_method_in_one_file_runs_through_compare(tmp_path: Path, random_removal, monkeypatch) -> None:
    plotted: dict = {}
    from netbonsai.analysis import plots

    real = plots.pareto_plot
    monkeypatch.setattr(plots, "pareto_plot", lambda series, path, **kw: plotted.update(series) or real(series, path, **kw))
    comparison = _compare(tmp_path, "random-removal,magnitude")
    figures = comparison["methods"]["random-removal"]
    assert figures["front"], "the new method's front is empty"
    params = [p["params"] for p in figures["front"]]
    assert params == sorted(params) and len(set(params)) == len(params)  # a Pareto front, ascending
    losses = [p["val_loss"] for p in figures["front"]]
    assert losses == sorted(losses, reverse=True)  # more parameters, lower loss along a front
    for key in ("ratios", "median_ratio", "min_ratio", "loss_gaps", "median_gap"):
        assert key in figures
    for ratio in figures["ratios"]:
        assert ratio["ratio"] == pytest.approx(ratio["dense_params"] / ratio["grown_params"], rel=1e-3)
    assert "random-removal" in plotted and "dense MLP" in plotted  # its own line on the Pareto plot
    report = (tmp_path / "run" / "report.md").read_text()
    assert "| random-removal |" in report  # its own table row
    history = (tmp_path / "run" / "methods" / "random-removal" / "history.jsonl").read_text().splitlines()
    assert len(history) == 4  # one event per round, through the run context
    model = netbonsai.load(tmp_path / "run" / "model")
    best = min((p for m in comparison["methods"].values() for p in m["front"]), key=lambda p: p["val_loss"])
    assert model.num_params() == best["params"]


def test_compare_grow_magnitude_loss_aware_writes_per_method_ratios(tmp_path: Path) -> None:
    comparison = _compare(tmp_path, "grow,magnitude,loss-aware", "--set", "loss-aware.max_fraction=0.3")
    assert list(comparison["methods"]) == ["grow", "magnitude", "loss-aware"]
    grow = comparison["methods"]["grow"]
    # the older top-level keys describe the grow method
    assert comparison["grown"] == grow["front"] and comparison["median_ratio"] == grow["median_ratio"]
    assert comparison["task_type"] == "regression" and comparison["dense"]
    for name, figures in comparison["methods"].items():
        assert figures["front"], name
        assert (tmp_path / "run" / "methods" / name / "method.json").exists()
        for point in figures["front"]:
            assert (tmp_path / "run" / point["file"]).exists()
    assert json.loads((tmp_path / "run" / "config.json").read_text())["kind"] == "compare"


def test_compare_resume_reads_finished_methods(tmp_path: Path) -> None:
    first = _compare(tmp_path, "magnitude")
    image = tmp_path / "crop.png"
    code = main(["compare", f"approx:{image}", "--methods", "magnitude", "--out", str(tmp_path / "run"), "--resume", *TINY])
    assert code == 0
    again = json.loads((tmp_path / "run" / "comparison.json").read_text())
    assert again["methods"]["magnitude"]["front"] == first["methods"]["magnitude"]["front"]


def test_compare_seeds_pools_each_method(tmp_path: Path) -> None:
    comparison = _compare(tmp_path, "magnitude", "--seeds", "3")
    assert comparison["seeds"] == [0, 1, 2]
    figures = comparison["methods"]["magnitude"]
    assert {p["seed"] for p in figures["front"]} <= {0, 1, 2}
    assert len(figures["per_seed"]) == 3 and "median_ratio_interval" in figures
    assert "dense_spread_over_seeds" in comparison


@pytest.mark.parametrize("argv, message", [
    (["--methods", "nonsense"], "unknown method 'nonsense'"),
    (["--methods", "magnitude,magnitude"], "named twice"),
    (["--methods", "magnitude", "--set", "loss-aware.eps=0.1"], "not in --methods"),
    (["--methods", "loss-aware", "--set", "loss-aware.bogus=1"], "unknown setting loss-aware.bogus"),
])
def test_bad_method_choices_exit_2_before_anything_is_written(tmp_path: Path, capsys, argv, message) -> None:
    out = tmp_path / "run"
    assert main(["compare", "approx", "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists()


def test_registry_names_and_objects() -> None:
    names = method_names()
    for name in ("grow", "dense", "magnitude", "random", "obd", "loss-aware"):
        assert name in names
    method = get_method("magnitude")
    assert get_method(method) is method  # a Method object passes through: strings stop at the CLI


@pytest.mark.skipif(not MNIST.is_dir(), reason=f"MNIST folder {MNIST} not present")
def test_compare_on_idx_task_runs_pruning_methods(tmp_path: Path, monkeypatch) -> None:
    real = presets.idx_settings

    def small(preset: str):
        settings = real(preset)
        return replace(settings, data=replace(settings.data, max_train=1500, max_val=500), dense_grid=((8,), (16,)),
                       dense_epochs=1, polish_epochs=0, magnitude=replace(settings.magnitude, sparsity=0.5))

    monkeypatch.setattr(presets, "idx_settings", small)
    out = tmp_path / "run"
    code = main(["compare", f"idx:{MNIST}", "--methods", "magnitude,loss-aware", "--out", str(out), "--quiet",
                 "--executor", "inline", "--set", "loss-aware.max_seconds=5"])
    assert code == 0
    comparison = json.loads((out / "comparison.json").read_text())
    assert comparison["task_type"] == "classification"
    for name in ("magnitude", "loss-aware"):
        front = comparison["methods"][name]["front"]
        assert front and all(0 <= p["val_accuracy"] <= 1 for p in front)
        assert all(p["val_errors"] == round((1 - p["val_accuracy"]) * 500) for p in front)
    dense = comparison["dense"]
    assert {tuple(d["hidden"]) for d in dense} == {(8,), (16,)}


def test_python_compare_matches_the_command(tmp_path: Path) -> None:
    image = crop_of_camera(tmp_path / "crop.png")
    settings = {}
    args = iter(TINY)
    for arg in args:
        if arg == "--set":
            key, _, value = next(args).partition("=")
            settings[key] = json.loads(value)
    summary = netbonsai.compare(f"approx:{image}", "magnitude", tmp_path / "py", settings=settings, executor="inline",
                                max_params=120)
    assert main(["compare", f"approx:{image}", "--methods", "magnitude", "--out", str(tmp_path / "cli"), *TINY]) == 0
    cli = json.loads((tmp_path / "cli" / "comparison.json").read_text())
    assert summary.figures["methods"]["magnitude"]["front"] == cli["methods"]["magnitude"]["front"]


def test_dense_sweep_resumes_with_only_the_unfinished_networks(tmp_path: Path, monkeypatch) -> None:
    """Every finished dense network is checkpointed: a resumed sweep trains only the others, and
    gives the same networks as one uninterrupted sweep."""
    from netbonsai.data import load_task
    from netbonsai.methods import dense
    from netbonsai.runs import RunContext

    image = crop_of_camera(tmp_path / "crop.png")
    task = load_task("approx", str(image), max_train=400, max_val=100)
    policy = replace(presets.task_settings("approx"), dense_grid=((3,), (4, 4), (5,)), dense_epochs=20, polish_epochs=0)
    sweep = dense.DenseSweep.for_policy(policy)
    with RunContext(tmp_path / "whole", {}, kind="method") as ctx:
        whole = sweep.run(task, ctx)
    trained: list = []
    real_job = dense.dense_job
    monkeypatch.setattr(dense, "dense_job", lambda t, hidden, p: trained.append(hidden) or real_job(t, hidden, p))
    with RunContext(tmp_path / "part", {}, kind="method") as ctx:
        sweep.run(task, ctx)
        state = ctx.restore() if ctx.resume else None
    assert state is None and len(trained) == 3
    import torch

    checkpoint = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=True)
    checkpoint["done"] = {k: v for k, v in checkpoint["done"].items() if k == "4x4"}  # as if killed after one
    torch.save(checkpoint, tmp_path / "part" / "checkpoint.pt")
    trained.clear()
    with RunContext(tmp_path / "part", {}, kind="method", resume=True) as ctx:
        resumed = sweep.run(task, ctx)
    assert sorted(trained) == [(3,), (5,)]
    assert [c.summary() for c in resumed.front] == [c.summary() for c in whole.front]


@pytest.mark.parametrize("argv, message", [
    (["prune", "idx"], "needs a folder"),
    (["prune", "approx"], "MNIST-style"),
    (["prune", "idx:/nowhere", "--data", "/elsewhere"], "give the data folder once"),
])
def test_prune_takes_the_task_names_too(tmp_path: Path, capsys, argv, message) -> None:
    assert main([*argv, "--out", str(tmp_path / "run")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(not MNIST.is_dir(), reason=f"MNIST folder {MNIST} not present")
def test_prune_idx_dir_equals_prune_mnist_data_dir(tmp_path: Path) -> None:
    common = ["--arch", "784-8-10", "--dense-epochs", "1", "--retrain-epochs", "0", "--schedule", "oneshot:0.5",
              "--val-size", "500", "--quiet"]
    assert main(["prune", f"idx:{MNIST}", "--out", str(tmp_path / "a"), *common]) == 0
    assert main(["prune", "mnist", "--data", str(MNIST), "--out", str(tmp_path / "b"), *common]) == 0
    a, b = (json.loads((tmp_path / d / "result.json").read_text()) for d in "ab")
    assert a["test_errors"] == b["test_errors"] and a["params"] == b["params"]


def test_the_classic_compare_also_writes_the_methods_section(tmp_path: Path) -> None:
    image = crop_of_camera(tmp_path / "crop.png")
    out = tmp_path / "run"
    assert main(["compare", "approx", "--image", str(image), "--out", str(out), *TINY]) == 0
    comparison = json.loads((out / "comparison.json").read_text())
    assert set(comparison["methods"]) == {"grow", "magnitude"}
    assert comparison["methods"]["grow"]["median_ratio"] == comparison["median_ratio"]
    grown = {(g["params"], g["val_loss"]) for g in comparison["grown"]}
    assert {(p["params"], p["val_loss"]) for p in comparison["methods"]["grow"]["front"]} <= grown
    assert json.loads((out / "config.json").read_text())["kind"] == "compare"


def _table(path: Path, rows: int = 200) -> Path:
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 2))
    colour = rng.choice(["red", "blue"], rows)
    y = x[:, 0] - 2 * x[:, 1] + (colour == "red") + rng.normal(scale=0.1, size=rows)
    lines = ["a,b,colour,y"] + [f"{x[i, 0]:.4f},{x[i, 1]:.4f},{colour[i]},{y[i]:.4f}" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


TABLE_TINY = ["--set", "start_epochs=40", "--set", "grow.trial_epochs=3", "--set", "grow.grow_epochs=10",
              "--set", "grow.n_attempts=10", "--set", "grow.max_cycles=1", "--set", "dense.grid=[[2], [4], [8]]",
              "--set", "polish.epochs=5", "--set", "magnitude.sparsity=0.5", "--quiet", "--executor", "inline"]


def test_compare_on_a_table_of_your_own_reports_test_figures(tmp_path: Path) -> None:
    table = _table(tmp_path / "t.csv")
    out = tmp_path / "run"
    assert main(["compare", "--data", str(table), "--target", "y", "--methods", "grow,magnitude", "--out", str(out),
                 *TABLE_TINY]) == 0
    comparison = json.loads((out / "comparison.json").read_text())
    assert comparison["task_type"] == "regression" and comparison["loss_units"] == "MSE in the target's units (squared)"
    for name in ("grow", "magnitude"):
        test = comparison["methods"][name]["test"]
        assert test["rmse"] == pytest.approx(test["loss"] ** 0.5) and test["params"] > 0
    assert comparison["dense_test"]["hidden"] in ([2], [4], [8])
    config = json.loads((out / "config.json").read_text())
    split = config["split"]
    assert split["n_train"] + split["n_val"] + split["n_test"] == 200
    assert comparison["target"] == "y"
    # the L2 guard: chosen on the validation split, the same value for every method's trainer
    choice = config["l2_choice"]
    assert choice["l2"] == config["grow"]["trainer"]["l2"]
    assert choice["val_loss"][repr(choice["l2"])] == min(choice["val_loss"].values())


def test_a_given_l2_is_not_chosen_again(tmp_path: Path) -> None:
    table = _table(tmp_path / "t.csv")
    out = tmp_path / "run"
    assert main(["compare", "--data", str(table), "--target", "y", "--methods", "magnitude", "--out", str(out),
                 "--set", "trainer.l2=0.003", *TABLE_TINY]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["grow"]["trainer"]["l2"] == 0.003 and "l2_choice" not in config


@pytest.mark.parametrize("argv, message", [
    (["--data", "{table}", "--target", "nope"], "has no column 'nope'"),
    (["approx", "--data", "{table}", "--target", "y"], "not both"),
    (["--target", "y"], "name a task"),
    (["approx", "--target", "y"], "apply to --data"),
    (["--data", "{table}", "--target", "y", "--val-fraction", "1.5"], "--val-fraction must be in (0, 1)"),
    (["--data", "{table}", "--target", "y", "--test-fraction", "-0.1"], "--test-fraction must be in [0, 1)"),
    (["--data", "{table}", "--target", "y", "--val-fraction", "0.6", "--test-fraction", "0.5"], "leave no training rows"),
    (["approx", "--test-fraction", "0.2"], "applies to tables"),
])
def test_bad_table_options_exit_2_with_nothing_written(tmp_path: Path, capsys, argv, message) -> None:
    table = _table(tmp_path / "t.csv", rows=40)
    out = tmp_path / "run"
    argv = [a.replace("{table}", str(table)) for a in argv]
    assert main(["compare", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists()


def test_predict_writes_one_row_per_input_row_for_a_table_model(tmp_path: Path, capsys) -> None:
    table = _table(tmp_path / "t.csv")
    out = tmp_path / "run"
    assert main(["compare", "--data", str(table), "--target", "y", "--methods", "magnitude", "--out", str(out),
                 *TABLE_TINY]) == 0
    new_rows = tmp_path / "new.csv"
    lines = table.read_text().splitlines()
    new_rows.write_text("\n".join([lines[0].replace(",y", "")] + [",".join(l.split(",")[:3]) for l in lines[1:6]]) + "\n")
    assert main(["predict", str(out / "model"), "--data", str(new_rows), "--out", str(tmp_path / "p.csv")]) == 0
    predicted = (tmp_path / "p.csv").read_text().splitlines()
    assert predicted[0] == "prediction" and len(predicted) == 6
    from netbonsai.data.tables import decode_outputs, prepare_rows

    net = netbonsai.load(out / "model")
    expected = decode_outputs(net.info["preprocessing"], net(prepare_rows(net.info["preprocessing"], new_rows)).detach())
    assert [float(v) for v in predicted[1:]] == pytest.approx(expected.tolist(), rel=1e-6)
    # the wrong columns: exit 2, nothing written
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    assert main(["predict", str(out / "model"), "--data", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "q.csv")]) == 2
    assert not (tmp_path / "q.csv").exists()
    assert "colour" in capsys.readouterr().err


def test_predict_gives_class_probabilities_for_a_table_classifier(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["compare", "sklearn:iris", "--methods", "magnitude", "--out", str(out), *TABLE_TINY]) == 0
    comparison = json.loads((out / "comparison.json").read_text())
    assert comparison["task_type"] == "classification"
    assert 0 <= comparison["methods"]["magnitude"]["test"]["accuracy"] <= 1
    import numpy as np
    from sklearn.datasets import load_iris

    iris = load_iris()
    np.savez(tmp_path / "new.npz", x=iris.data[:7], y=iris.target[:7])
    assert main(["predict", str(out / "model"), "--data", str(tmp_path / "new.npz"), "--out", str(tmp_path / "p.csv")]) == 0
    lines = (tmp_path / "p.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert header[0] == "prediction" and len(header) == 4 and all(h.startswith("proba_") for h in header[1:])
    for line in lines[1:]:
        cells = line.split(",")
        assert sum(float(c) for c in cells[1:]) == pytest.approx(1.0, abs=1e-6)
        assert cells[0] in {h[len("proba_"):] for h in header[1:]}


def test_grow_on_a_table_reports_the_test_split_and_predicts(tmp_path: Path) -> None:
    table = _table(tmp_path / "t.csv")
    out = tmp_path / "run"
    at = TABLE_TINY.index("magnitude.sparsity=0.5")
    tiny = TABLE_TINY[: at - 1] + TABLE_TINY[at + 1 :]  # grow runs no magnitude baseline
    assert main(["grow", "--data", str(table), "--target", "y", "--out", str(out), *tiny]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["test"]["params"] == result["model"]["params"]
    assert result["test"]["rmse"] == pytest.approx(result["test"]["loss"] ** 0.5)
    assert json.loads((out / "config.json").read_text())["kind"] == "grow"
    assert main(["predict", str(out / "model"), "--data", str(table), "--out", str(tmp_path / "p.csv")]) == 0
    assert len((tmp_path / "p.csv").read_text().splitlines()) == 201


def test_compare_on_a_table_with_seeds_reports_each_seeds_test_figures(tmp_path: Path) -> None:
    table = _table(tmp_path / "t.csv")
    out = tmp_path / "run"
    assert main(["compare", "--data", str(table), "--target", "y", "--methods", "magnitude", "--seeds", "2",
                 "--out", str(out), *TABLE_TINY]) == 0
    comparison = json.loads((out / "comparison.json").read_text())
    per_seed = comparison["methods"]["magnitude"]["test_per_seed"]
    assert [p["seed"] for p in per_seed] == [0, 1]
    assert [p["seed"] for p in comparison["dense_test_per_seed"]] == [0, 1]
    best = comparison["methods"]["magnitude"]["test"]
    assert best in [{k: v for k, v in p.items() if k != "seed"} for p in per_seed]
    for figures in (*per_seed, comparison["dense_test"]):
        assert figures["rmse"] == pytest.approx(figures["loss"] ** 0.5) and figures["r2"] > 0.8  # a linear table


def test_val_and_test_fractions_set_the_split_of_a_table(tmp_path: Path) -> None:
    table = _table(tmp_path / "t.csv")
    out = tmp_path / "run"
    assert main(["compare", "--data", str(table), "--target", "y", "--methods", "magnitude", "--out", str(out),
                 "--val-fraction", "0.3", "--test-fraction", "0.1", *TABLE_TINY]) == 0
    split = json.loads((out / "config.json").read_text())["split"]
    assert (split["n_train"], split["n_val"], split["n_test"]) == (120, 60, 20)
