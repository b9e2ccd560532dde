"""The ``residual`` method through ``compare``: registered, validated before anything is written,
a front of the pruning (or growth) path with saved, loadable DagNets, and resumable."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

import netbonsai
from netbonsai.cli import main
from netbonsai.data.task import Split, Task
from netbonsai.errors import InputError
from netbonsai.methods import get_method, method_names
from netbonsai.methods.residual import default_width
from netbonsai.residual import ResidualMLP, count_params
from tiny_runs import crop_of_camera

# the tiny image settings of tests/gates/test_gates_method.py: a 2-input, 1-output regression
TINY = ["--set", "start_epochs=60", "--set", "grow.grow_epochs=10", "--set", "dense.grid=[[4, 4], [6, 6], [8, 8]]",
        "--set", "polish.epochs=10", "--max-params", "120", "--quiet", "--executor", "inline"]
WIDTH = 4  # no 6-block network fits 120 parameters: the smallest width


def compare(image: Path, out: Path, *extra: str) -> int:
    return main(["compare", f"approx:{image}", "--methods", "residual", "--out", str(out), *TINY, *extra])


def history(out: Path) -> list[dict]:
    lines = (out / "methods" / "residual" / "history.jsonl").read_text().splitlines()
    return [event for event in map(json.loads, lines) if event["event"] == "block"]


def dag_params(blocks: int) -> int:
    """The DagNet count of a 2-4-...-1 residual MLP: the module's, less the gates, plus the skips."""
    return count_params(ResidualMLP(2, WIDTH, blocks, 1)) - blocks + blocks * WIDTH


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished pruning run that removes every block (a tolerance no removal leaves)."""
    folder = tmp_path_factory.mktemp("residual-method")
    image = crop_of_camera(folder / "crop.png")
    out = folder / "run"
    assert compare(image, out, "--set", "residual.tolerance=5") == 0
    return {"image": image, "out": out, "comparison": json.loads((out / "comparison.json").read_text())}


def test_compare_with_residual_pruning_gives_a_front_of_its_path(finished) -> None:
    out, figures = finished["out"], finished["comparison"]["methods"]["residual"]
    extra = figures["extra"]
    assert extra["mode"] == "prune" and extra["width"] == WIDTH and extra["start_blocks"] == 6
    assert figures["stop_reason"] == "no blocks left" and extra["blocks"] == 0 and extra["steps"] == 6
    assert extra["params"] == dag_params(0) and extra["module_params"] == count_params(ResidualMLP(2, WIDTH, 0, 1))
    events = history(out)
    assert [e["step"] for e in events] == [1, 2, 3, 4, 5, 6] and [e["blocks"] for e in events] == [5, 4, 3, 2, 1, 0]
    assert all(e["action"] == "remove" and e["accepted"] and e["method"] == "residual" for e in events)
    assert [e["params"] for e in events] == [dag_params(b) for b in range(5, -1, -1)]
    assert [e["module_params"] for e in events] == [count_params(ResidualMLP(2, WIDTH, b, 1)) for b in range(5, -1, -1)]
    assert [len(e["efficiency"]) for e in events] == [6, 5, 4, 3, 2, 1]
    front = figures["front"]
    assert 1 <= len(front) <= 7
    sizes = [p["params"] for p in front]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
    assert [p["val_loss"] for p in front] == sorted((p["val_loss"] for p in front), reverse=True)
    for point in front:
        assert point["params"] == dag_params(point["blocks"]) and point["step"] == 6 - point["blocks"]
        net = netbonsai.load(out / point["file"])
        assert net.num_params() == point["params"]
        assert point["val_loss"] > 0 and point["train_loss"] > 0
    assert re.search(r"\| residual +\|", (out / "report.md").read_text())  # its own table row
    assert (out / "model").exists()


def test_resume_of_a_finished_run_gives_the_same_front(finished) -> None:
    out = finished["out"]
    assert compare(finished["image"], out, "--set", "residual.tolerance=5", "--resume") == 0
    again = json.loads((out / "comparison.json").read_text())["methods"]["residual"]
    before = finished["comparison"]["methods"]["residual"]
    assert again["front"] == before["front"] and again["extra"] == before["extra"]


def test_resume_after_the_second_removal_gives_the_same_front(finished, tmp_path: Path) -> None:
    """Killed after step 2: the checkpoint holds the start and two steps; method.json is not written."""
    out = tmp_path / "run"
    shutil.copytree(finished["out"], out)
    folder = out / "methods" / "residual"
    state = torch.load(folder / "checkpoint.pt", weights_only=True)
    assert state["stop"] == "no blocks left" and len(state["path"]) == 6
    state["path"], state["stop"] = state["path"][:2], None
    torch.save(state, folder / "checkpoint.pt")
    (folder / "method.json").unlink()
    for file in (folder / "front").iterdir():
        file.unlink()
    assert compare(finished["image"], out, "--set", "residual.tolerance=5", "--resume") == 0
    again = json.loads((out / "comparison.json").read_text())["methods"]["residual"]
    before = finished["comparison"]["methods"]["residual"]
    assert again["front"] == before["front"] and again["extra"] == before["extra"]
    events = history(out)  # the interrupted run's six events, then steps 3 to 6 again, the same
    assert [e["step"] for e in events] == [1, 2, 3, 4, 5, 6, 3, 4, 5, 6]
    assert events[6:] == events[2:6]


def test_a_tight_tolerance_keeps_the_last_network_within_it(tmp_path: Path) -> None:
    image = crop_of_camera(tmp_path / "crop.png")
    out = tmp_path / "run"
    assert compare(image, out, "--set", "residual.tolerance=0") == 0
    figures = json.loads((out / "comparison.json").read_text())["methods"]["residual"]
    events = history(out)
    assert figures["stop_reason"] == "tolerance" and events[-1]["accepted"] is False
    assert all(e["accepted"] for e in events[:-1])
    assert figures["extra"]["blocks"] == 6 - (len(events) - 1)  # the network kept is the last accepted


def test_compare_with_residual_growth(tmp_path: Path) -> None:
    image = crop_of_camera(tmp_path / "crop.png")
    out = tmp_path / "run"
    assert compare(image, out, "--set", "residual.mode=\"grow\"", "--set", "residual.blocks=3") == 0
    figures = json.loads((out / "comparison.json").read_text())["methods"]["residual"]
    assert figures["stop_reason"] == "grew to 3 blocks"
    assert figures["extra"]["start_blocks"] == 1 and figures["extra"]["blocks"] == 3
    events = history(out)
    assert [(e["action"], e["step"], e["blocks"]) for e in events] == [("add", 1, 2), ("add", 2, 3)]
    assert [e["params"] for e in events] == [dag_params(2), dag_params(3)]
    for point in figures["front"]:
        assert point["params"] == dag_params(point["blocks"])
        assert netbonsai.load(out / point["file"]).num_params() == point["params"]


CYCLE = ["--set", "residual.mode=\"cycle\"", "--set", "residual.blocks=3", "--set", "residual.cycles=2",
         "--set", "residual.grow_threshold=-1", "--set", "residual.tolerance=5", "--max-params", "200"]


def test_grow_prune_cycles_and_their_resume(tmp_path: Path) -> None:
    """A threshold no growth misses (-1) grows to ``blocks`` (3: 140 parameters, within 200) each cycle; a tolerance no removal
    leaves (5) prunes back to one block: add, add, remove, remove, twice. Killed in the second
    cycle's growth, the run resumes to the same front; blocks.png is drawn."""
    image = crop_of_camera(tmp_path / "crop.png")
    out = tmp_path / "run"
    assert compare(image, out, *CYCLE) == 0
    figures = json.loads((out / "comparison.json").read_text())["methods"]["residual"]
    events = history(out)
    assert all(("val" in e) == (e["action"] == "add") for e in events)
    assert [(e["action"], e["blocks"], e["cycle"]) for e in events] == [
        ("add", 2, 0), ("add", 3, 0), ("remove", 2, 0), ("remove", 1, 0),
        ("add", 2, 1), ("add", 3, 1), ("remove", 2, 1), ("remove", 1, 1)]
    assert figures["stop_reason"] == "2 cycles: 1 blocks" and figures["extra"]["blocks"] == 1
    folder = out / "methods" / "residual"
    assert (folder / "blocks.png").stat().st_size > 0
    state = torch.load(folder / "checkpoint.pt", weights_only=True)
    state["path"], state["stop"] = state["path"][:5], None
    state.update(cycle=1, phase="grow")  # killed after the first growth step of cycle 2
    torch.save(state, folder / "checkpoint.pt")
    (folder / "method.json").unlink()
    for file in (folder / "front").iterdir():
        file.unlink()
    assert compare(image, out, *CYCLE, "--resume") == 0
    again = json.loads((out / "comparison.json").read_text())["methods"]["residual"]
    assert again["front"] == figures["front"] and again["extra"] == figures["extra"]
    assert history(out)[8:] == events[5:]


def test_cycles_stop_growing_when_the_policy_says_so(tmp_path: Path) -> None:
    """A threshold no growth reaches (1.0: a whole unit of validation figure per step) stops
    each growth after the policy's window of 2 steps plus the one that fails."""
    image = crop_of_camera(tmp_path / "crop.png")
    out = tmp_path / "run"
    settings = [*CYCLE, "--set", "residual.grow_threshold=1.0", "--set", "residual.blocks=6", "--set",
                "residual.cycles=1", "--max-params", "300"]  # 6 blocks fit: the policy stops the growth
    assert compare(image, out, *settings) == 0
    adds = [e for e in history(out) if e["action"] == "add"]
    assert [e["blocks"] for e in adds] == [2, 3, 4]


def test_cycles_stop_growing_at_the_validation_target(tmp_path: Path) -> None:
    """A target every network meets (a validation loss of 1e9) stops growth before the first
    block: the cycle only prunes (nothing to remove from one block), so no block event at all."""
    image = crop_of_camera(tmp_path / "crop.png")
    out = tmp_path / "run"
    assert compare(image, out, *CYCLE, "--set", "residual.target_val_loss=1e9") == 0
    events = out / "methods" / "residual" / "history.jsonl"
    assert not events.exists() or history(out) == []
    figures = json.loads((out / "comparison.json").read_text())["methods"]["residual"]
    assert figures["extra"]["blocks"] == 1 and figures["stop_reason"] == "2 cycles: 1 blocks"


@pytest.mark.parametrize("setting, message", [
    ("residual.width=0", "residual.width"),
    ("residual.blocks=0", "residual.blocks"),
    ("residual.blocks=2.5", "residual.blocks"),
    ("residual.measure=\"flops\"", "residual.measure"),
    ("residual.tolerance=-0.1", "residual.tolerance"),
    ("residual.retrain_epochs=-1", "residual.retrain_epochs"),
    ("residual.mode=\"shrink\"", "residual.mode"),
    ("residual.cycles=0", "residual.cycles"),
    ("residual.target_val_loss=-1", "residual.target_val_loss"),
    ("residual.grow_threshold=\"high\"", "residual.grow_threshold"),
    ("residual.bogus=1", "unknown setting residual.bogus"),
])
def test_bad_residual_settings_exit_2_before_anything_is_written(tmp_path: Path, capsys, setting, message) -> None:
    out = tmp_path / "run"
    assert main(["compare", "approx", "--methods", "residual", "--out", str(out), "--set", setting]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists()


def test_registered_with_its_settings_and_refuses_sequences() -> None:
    assert "residual" in method_names()
    method = get_method("residual")
    assert method.name == "residual" and "paper 004" in method.summary
    settings = method.settings
    assert (settings.width, settings.blocks, settings.measure, settings.tolerance, settings.retrain_epochs,
            settings.mode) == (None, 6, "norm_ratio", 0.01, None, "prune")
    assert method.with_overrides({"measure": "lesion", "mode": "grow"}).settings.to_dict()["measure"] == "lesion"
    with pytest.raises(InputError, match="residual.tolerance"):
        method.with_overrides({"tolerance": float("nan")})
    codes = torch.zeros(4, 3, dtype=torch.long)
    sequences = Task("seq", Split((codes, torch.full((4,), 3)), torch.zeros(4, dtype=torch.long)),
                     Split((codes, torch.full((4,), 3)), torch.zeros(4, dtype=torch.long)), loss="cross_entropy")
    with pytest.raises(InputError, match="sequence task"):
        method.check(sequences)


@pytest.mark.parametrize("n_in, n_out, blocks, budget", [(2, 1, 6, 120), (64, 10, 6, 30_000), (784, 10, 3, 300_000)])
def test_the_default_width_is_the_largest_within_max_params(n_in, n_out, blocks, budget) -> None:
    width = default_width(n_in, n_out, blocks, budget)
    params = [count_params(ResidualMLP(n_in, w, blocks, n_out)) for w in (width, width + 1)]
    assert params[1] > budget
    assert params[0] <= budget or width == 4
