"""reproduce surgeon-mnist (paper 002) on a tiny synthetic IDX folder: the result file, its
arithmetic, resume, and the checks before anything is written."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from netbonsai.cli import main
from netbonsai.errors import InputError
from netbonsai.experiments import surgeon_mnist
from netbonsai.experiments.surgeon_mnist import SurgeonMnistSettings, run_job, surgeon_mnist_settings
from netbonsai.surgery.mlp import count_params, make_mlp
from netbonsai.surgery.surgeon import run_surgeon
from tiny_runs import without_clock

from .synthetic_idx import write_synthetic_mnist

TINY = SurgeonMnistSettings(max_train=300, val_size=100, max_test=100, starts=((4,), (8, 8)),
                            optimizers=("sgd", "adam"), first_epochs=1, cycle_epochs=1, total_epochs=3, retries=0)
# one start, one optimiser, the authors' rules: about a second
ONE = replace(TINY, starts=((4,),), optimizers=("adam",), rules=("authors",))
NETWORKS = ("surgeon", "same_start", "final_shape_scratch")


def sizes(widths: list[int]) -> list[int]:
    return [784, *widths, 10]


def params(widths: list[int]) -> int:
    s = sizes(widths)
    return sum(a * b + b for a, b in zip(s, s[1:]))


def weights(widths: list[int]) -> int:
    s = sizes(widths)
    return sum(a * b for a, b in zip(s, s[1:]))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_synthetic_mnist(tmp_path_factory.mktemp("surgeon-mnist") / "idx", n_train=500, n_test=100)


def reproduce(folder: Path, out: Path, *extra: str) -> int:
    return main(["reproduce", "surgeon-mnist", "--data", str(folder), "--out", str(out), "--quiet",
                 "--executor", "inline", *extra])


def test_reproduce_writes_every_part_and_resumes_to_the_same_runs(folder: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(surgeon_mnist.PRESETS, "quick", TINY)
    out = tmp_path / "run"
    assert reproduce(folder, out) == 0
    result = json.loads((out / "result.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert config["split"] == {"n_train": 300, "n_val": 100, "n_test": 100}
    n_train = config["split"]["n_train"]
    runs = result["runs"]
    rules = TINY.rules
    assert len(runs) == 2 * 2 * len(rules)  # starts x optimisers x rule sets
    assert [(r["start"], r["optimizer"], r["rules"]) for r in runs] == [
        (s, o, k) for s in ("784-4-10", "784-8-8-10") for o in ("sgd", "adam") for k in rules]
    for run in runs:
        start = [4] if run["start"] == "784-4-10" else [8, 8]
        for name in NETWORKS:
            item = run[name]
            assert 0 <= item["test_accuracy"] <= 1 and 0 <= item["val_accuracy"] <= 1
            assert item["epochs"] == 3 and item["train_flops"] > 0
            assert item["params"] == params(item["widths"])
        surgeon, alone, scratch = run["surgeon"], run["same_start"], run["final_shape_scratch"]
        assert surgeon["epochs"] == alone["epochs"] == scratch["epochs"]
        assert scratch["widths"] == surgeon["widths"] and scratch["params"] == surgeon["params"]
        assert alone["widths"] == start
        # trained alone: 6 x weights x rows, every row of every epoch
        assert alone["train_flops"] == 6.0 * weights(start) * n_train * 3
        assert scratch["train_flops"] == 6.0 * weights(scratch["widths"]) * n_train * 3
        # the Surgeon: at least its main line (the start's first epoch, then each cycle's network)
        cycles = surgeon["cycles"]
        assert [c["cycle"] for c in cycles] == [1, 2] and [c["epoch"] for c in cycles] == [2, 3]
        assert cycles[-1]["widths"] == surgeon["widths"] and cycles[-1]["params"] == surgeon["params"]
        assert all(c["retries"] == 0 and len(c["attempts"]) == 1 and len(c["attempts"][0]["children"]) >= 2 for c in cycles)
        main_line = 6.0 * n_train * (weights(start) + sum(weights(c["widths"]) for c in cycles))
        assert surgeon["train_flops"] > main_line
        assert [p["epoch"] for p in surgeon["curve"]] == [1, 2, 3]
        assert [p["epoch"] for p in alone["curve"]] == [1, 2, 3]
        assert surgeon["curve"][-1]["val"] == cycles[-1]["val"]
        assert surgeon["curve"][-1]["val"] == pytest.approx(surgeon["val_accuracy"], abs=1e-9)
        head = result["headline"][f"{run['start']}|{run['optimizer']}|{run['rules']}"]
        assert head["params_ratio"] == pytest.approx(surgeon["params"] / alone["params"])
        assert head["accuracy_gain"] == pytest.approx(surgeon["test_accuracy"] - alone["test_accuracy"])
    # the start trained alone is shared by the rule sets of a (start, optimiser) pair
    for a, b in zip(runs[::len(rules)], runs[1::len(rules)]):
        assert a["same_start"] == b["same_start"]
    assert result["wall_seconds"] > 0
    assert (out / "curves.png").stat().st_size > 0
    report = (out / "report.md").read_text()
    per_start = 2 * len(rules) * 3 + 2 * len(rules)  # every network, and one summary row per run
    assert report.count("| 784-4-10 ") == per_start and report.count("| 784-8-8-10 ") == per_start
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    events = [e for e in history if e["event"] == "run"]
    assert len(events) == len(runs)
    for event in events:  # flat fields, so that `netbonsai show` tabulates them
        run = next(r for r in runs if (r["start"], r["optimizer"], r["rules"]) ==
                   (event["start"], event["optimizer"], event["rules"]))
        assert event["params"] == run["surgeon"]["params"] and event["test_accuracy"] == run["surgeon"]["test_accuracy"]
        assert event["alone_test_accuracy"] == run["same_start"]["test_accuracy"]
        assert event["kept"] == [c["kept"] for c in run["surgeon"]["cycles"]]

    # resuming the finished run: the same runs
    assert reproduce(folder, out, "--resume") == 0
    again = json.loads((out / "result.json").read_text())
    assert without_clock(again["runs"]) == without_clock(runs)
    assert again["headline"] == result["headline"]

    # killed after one job: --resume runs only the others and gives the same runs
    saved = torch.load(out / "checkpoint.pt", weights_only=True)
    assert set(saved["runs"]) == {f"{s}|{o}" for s in ("784-4-10", "784-8-8-10") for o in ("sgd", "adam")}
    first = {"784-8-8-10|sgd": [{**item, "restored": True} for item in saved["runs"]["784-8-8-10|sgd"]]}
    torch.save({"runs": first, "seconds": 1.0}, out / "checkpoint.pt")
    assert reproduce(folder, out, "--resume") == 0
    resumed = json.loads((out / "result.json").read_text())
    # the saved job is read back, not run again; the others give the same records
    assert [r.pop("restored", False) for r in resumed["runs"]] == [
        (r["start"], r["optimizer"]) == ("784-8-8-10", "sgd") for r in runs]
    assert without_clock(resumed["runs"]) == without_clock(runs)
    assert resumed["wall_seconds"] > 1.0


def test_a_missing_data_folder_exits_2_before_the_run_folder_exists(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setitem(surgeon_mnist.PRESETS, "quick", TINY)
    out = tmp_path / "run"
    assert reproduce(tmp_path / "nowhere", out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert not out.exists()


@pytest.mark.parametrize("changes, message", [
    ({"optimizers": ("rmsprop",)}, "rmsprop"),
    ({"starts": ((0,),)}, "positive hidden width"),
    ({"starts": ()}, "positive hidden width"),
    ({"rules": ("mine",)}, "rules"),
    ({"first_epochs": 5, "total_epochs": 3}, "first_epochs"),
    ({"retries": -1}, "retries"),
])
def test_bad_settings_are_refused(changes, message) -> None:
    with pytest.raises(InputError, match=message):
        replace(TINY, **changes)


def test_presets() -> None:
    assert surgeon_mnist_settings("paper").total_epochs == 100
    assert surgeon_mnist_settings("paper").surgeon().cycle_epochs == 10
    with pytest.raises(InputError, match="unknown preset"):
        surgeon_mnist_settings("huge")
    # netbonsai's rules: the recommended branch, the smallest survivor, no child above the budget or the start
    netbonsai = TINY.surgeon("netbonsai", 3190)
    assert netbonsai.branch == "recommended" and netbonsai.keep == "smallest" and netbonsai.max_params == TINY.budget
    assert TINY.surgeon("netbonsai", 10 * TINY.budget).max_params == 10 * TINY.budget
    assert TINY.surgeon("authors", 3190).max_params is None and TINY.surgeon("authors").branch == "score"


def test_the_surgeon_of_a_job_starts_from_the_fresh_start(folder: Path) -> None:
    record = run_job(str(folder), ONE, (4,), "adam", 0)[0]
    task = surgeon_mnist._task(str(folder), ONE, 0)
    start = make_mlp([784, 4, 10], "relu", seed=0)
    fresh = run_surgeon(start, task, ONE.trainer("adam"), ONE.surgeon("authors", count_params(start)), seed=0)
    assert record["surgeon"]["curve"] == fresh.curve
    assert [(c["kept"], c["val"]) for c in record["surgeon"]["cycles"]] == [(c["kept"], c["val"]) for c in fresh.cycles]


def test_every_training_of_a_job_gets_the_surgeons_epochs(folder: Path) -> None:
    try:
        settings = replace(ONE, first_epochs=1, cycle_epochs=2, total_epochs=4)
    except InputError:  # refusing a schedule the cycles cannot fill is fine too
        return
    record = run_job(str(folder), settings, (4,), "adam", 0)[0]
    assert record["surgeon"]["epochs"] == record["same_start"]["epochs"] == record["final_shape_scratch"]["epochs"]
