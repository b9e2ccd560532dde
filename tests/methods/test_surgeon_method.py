"""The ``surgeon`` method through ``compare``: registered, validated before anything is written,
a front of the Surgeon's lineage with saved, loadable networks, and resumable."""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path

import pytest
import torch

import netbonsai
from netbonsai.cli import main
from netbonsai.errors import InputError
from netbonsai.methods import get_method, method_names
from tiny_runs import crop_of_camera

# the tiny image settings of tests/gates/test_gates_method.py, two cycles
TINY = ["--set", "start_epochs=60", "--set", "grow.grow_epochs=10", "--set", "dense.grid=[[4, 4], [6, 6], [8, 8]]",
        "--set", "polish.epochs=10", "--max-params", "120", "--quiet", "--executor", "inline",
        "--set", "surgeon.cycles=2"]


def weights(widths: list[int]) -> int:
    """Weights (no biases) of a 2-input, 1-output MLP with these hidden widths."""
    sizes = [2, *widths, 1]
    return sum(a * b for a, b in zip(sizes, sizes[1:]))


def params(widths: list[int]) -> int:
    sizes = [2, *widths, 1]
    return sum(a * b + b for a, b in zip(sizes, sizes[1:]))


def compare(image: Path, out: Path, *extra: str) -> int:
    return main(["compare", f"approx:{image}", "--methods", "surgeon", "--out", str(out), *TINY, *extra])


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished compare run with the surgeon method, and the checkpoints it wrote."""
    from netbonsai.methods import surgeon as module

    real = module.run_surgeon
    checkpoints: list[dict] = []

    def recording(*args, checkpoint=None, **kwargs):
        def both(state):
            checkpoints.append(copy.deepcopy(state))
            checkpoint(state)

        return real(*args, checkpoint=both, **kwargs)

    folder = tmp_path_factory.mktemp("surgeon-method")
    image = crop_of_camera(folder / "crop.png")
    out = folder / "run"
    module.run_surgeon = recording
    try:
        assert compare(image, out) == 0
    finally:
        module.run_surgeon = real
    return {"image": image, "out": out, "checkpoints": checkpoints,
            "comparison": json.loads((out / "comparison.json").read_text())}


def test_compare_with_the_surgeon_gives_a_front_of_its_lineage(finished) -> None:
    out, comparison = finished["out"], finished["comparison"]
    figures = comparison["methods"]["surgeon"]
    extra = figures["extra"]
    assert extra["cycles"] == 2 and extra["start"] == [6, 6]  # the grid's network of median size
    config = json.loads((out / "config.json").read_text())
    assert config["methods"]["surgeon"]["cycles"] == 2
    history = [json.loads(line) for line in (out / "methods" / "surgeon" / "history.jsonl").read_text().splitlines()]
    starts = [e for e in history if e["event"] == "surgeon-start"]
    cycles = [e for e in history if e["event"] == "surgeon-cycle"]
    assert len(starts) == 1 and len(cycles) == 2
    assert [c["cycle"] for c in cycles] == [1, 2]
    assert all("attempts" not in c and "net" not in c for c in cycles)
    # the schedule: the policy's dense epochs split into a first training and two equal cycles
    per = starts[0]["epoch"]
    assert per >= 1 and [c["epoch"] for c in cycles] == [2 * per, 3 * per] and extra["epochs"] == 3 * per
    assert starts[0]["widths"] == extra["start"] and starts[0]["params"] == params(extra["start"])
    assert cycles[0]["parent_val"] == starts[0]["val"] and cycles[1]["parent_val"] == cycles[0]["val"]
    assert all(e["val"] <= 0 for e in starts + cycles)  # regression: minus the validation loss
    # the kept network is the last cycle's
    assert extra["widths"] == cycles[-1]["widths"] and extra["params"] == cycles[-1]["params"]
    assert extra["params"] == params(extra["widths"])
    # the Surgeon's work: more than the main line's 6 x weights x rows, every epoch on every row
    n_train = config["split"]["n_train"]
    main_line = 6.0 * n_train * per * (weights(starts[0]["widths"]) + sum(weights(c["widths"]) for c in cycles))
    assert extra["train_flops"] > main_line > 0
    # the front: points of the lineage (start, then each cycle's network), params ascending
    front = figures["front"]
    assert front and len(front) <= 3
    sizes = [p["params"] for p in front]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
    assert [p["val_loss"] for p in front] == sorted((p["val_loss"] for p in front), reverse=True)
    lineage = {(per, "start", starts[0]["params"])} | {(c["epoch"], c["kept"], c["params"]) for c in cycles}
    for point in front:
        assert (point["epoch"], point["kept"], point["params"]) in lineage
        net = netbonsai.load(out / point["file"])
        assert net.num_params() == point["params"]
        assert point["val_loss"] > 0 and point["train_loss"] > 0
    assert figures["stop_reason"] == "cycles done"
    assert re.search(r"\| surgeon +\|", (out / "report.md").read_text())  # its own table row
    assert (out / "model").exists()


def test_resume_of_a_finished_run_gives_the_same_front(finished, capsys) -> None:
    out = finished["out"]
    capsys.readouterr()
    assert compare(finished["image"], out, "--resume") == 0
    again = json.loads((out / "comparison.json").read_text())
    before = finished["comparison"]["methods"]["surgeon"]
    assert again["methods"]["surgeon"]["front"] == before["front"]
    assert again["methods"]["surgeon"]["extra"] == before["extra"]


def test_resume_after_the_first_cycle_gives_the_same_front(finished, tmp_path: Path) -> None:
    """Killed after cycle 1: the method's checkpoint is cycle 1's and method.json is not written yet."""
    checkpoints = finished["checkpoints"]
    per = checkpoints[0]["lineage"][0]["epoch"]
    assert [c["epoch"] for c in checkpoints] == [per, 2 * per, 3 * per]  # the first training, then each cycle
    assert len(checkpoints[1]["cycles"]) == 1
    out = tmp_path / "run"
    shutil.copytree(finished["out"], out)
    folder = out / "methods" / "surgeon"
    (folder / "method.json").unlink()
    for file in (folder / "front").iterdir():
        file.unlink()
    torch.save(checkpoints[1], folder / "checkpoint.pt")
    assert compare(finished["image"], out, "--resume") == 0
    again = json.loads((out / "comparison.json").read_text())["methods"]["surgeon"]
    before = finished["comparison"]["methods"]["surgeon"]
    assert again["front"] == before["front"]
    assert {k: v for k, v in again["extra"].items() if k != "seconds"} == \
        {k: v for k, v in before["extra"].items() if k != "seconds"}
    for point in again["front"]:
        assert netbonsai.load(out / point["file"]).num_params() == point["params"]
    history = [json.loads(line) for line in (folder / "history.jsonl").read_text().splitlines()]
    # only the second cycle ran again (the history keeps the interrupted run's events)
    events = [e for e in history if e["event"].startswith("surgeon")]
    assert [(e["event"], e.get("cycle")) for e in events] == [
        ("surgeon-start", None), ("surgeon-cycle", 1), ("surgeon-cycle", 2), ("surgeon-cycle", 2)]
    assert events[-1] == events[-2]


@pytest.mark.parametrize("setting, message", [
    ("surgeon.cycles=0", "surgeon.cycles"),
    ("surgeon.cycles=1.5", "surgeon.cycles"),
    ("surgeon.start=[0]", "surgeon.start"),
    ("surgeon.start=[]", "surgeon.start"),
    ("surgeon.rule=\"x\"", "surgeon.rule"),
    ("surgeon.retries=-1", "surgeon.retries"),
    ("surgeon.noise=-1", "surgeon.noise"),
    ("surgeon.bogus=1", "unknown setting surgeon.bogus"),
])
def test_bad_surgeon_settings_exit_2_before_anything_is_written(tmp_path: Path, capsys, setting, message) -> None:
    out = tmp_path / "run"
    assert main(["compare", "approx", "--methods", "surgeon", "--out", str(out), "--set", setting]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists()


def test_registered_with_its_settings() -> None:
    assert "surgeon" in method_names()
    method = get_method("surgeon")
    assert method.name == "surgeon"
    settings = method.settings
    assert settings.cycles == 9 and settings.start is None and settings.rule == "threshold"
    changed = method.with_overrides({"cycles": 2, "start": [5, 3], "rule": "bic"}).settings
    assert changed.start == (5, 3) and changed.cycles == 2 and changed.rule == "bic"
    assert changed.to_dict()["start"] == [5, 3]
    rules = changed.rules(60)  # 60 epochs: a first training and two cycles of 20
    assert (rules.first_epochs, rules.cycle_epochs, rules.total_epochs) == (20, 20, 60)
    assert rules.rule == "bic" and rules.retries == 3
    short = changed.rules(2)  # at least an epoch each
    assert (short.first_epochs, short.cycle_epochs, short.total_epochs) == (1, 1, 3)
    with pytest.raises(InputError, match="surgeon.start"):
        method.with_overrides({"start": [2, 0]})
    with pytest.raises(InputError, match="surgeon.branches"):
        method.with_overrides({"branches": 0})
