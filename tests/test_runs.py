"""Run directories: fresh vs resume, config checks, history lines, checkpoints, atomic writes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from netbonsai.atomic import atomic_open, write_text
from netbonsai.errors import InputError
from netbonsai.runs import CHECKPOINT, CONFIG, HISTORY, RunDir, dumps, read_history
from tiny_runs import crop_of_camera, tiny_settings  # tests/ is on sys.path (rootdir conftest)

CONFIG_DATA = {"task": "brightness", "seed": 3, "grow": {"hidden": [6, 6], "eps": 0.002}}


def temp_files(path: Path) -> list[str]:
    return [p.name for p in path.iterdir() if p.name.endswith(".tmp") or p.name.startswith(".")]


def test_fresh_run_creates_the_directory(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b"
    run = RunDir(out)
    assert out.is_dir()
    run.write_config(CONFIG_DATA)
    assert json.loads((out / CONFIG).read_text()) == CONFIG_DATA
    assert run.read_config() == CONFIG_DATA


def test_existing_run_needs_resume(tmp_path: Path) -> None:
    RunDir(tmp_path).write_config(CONFIG_DATA)
    with pytest.raises(InputError, match="--resume"):
        RunDir(tmp_path)
    # an empty or unrelated folder is fine for a fresh run
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    RunDir(tmp_path / "other")


def test_resume_needs_a_run(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot resume"):
        RunDir(tmp_path / "missing", resume=True)
    assert not (tmp_path / "missing").exists()
    with pytest.raises(InputError, match="cannot resume"):
        RunDir(tmp_path, resume=True)


def test_output_path_that_is_a_file(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(InputError, match="not a directory"):
        RunDir(path)


def test_resume_checks_the_config(tmp_path: Path) -> None:
    RunDir(tmp_path).write_config(CONFIG_DATA)
    resumed = RunDir(tmp_path, resume=True)
    resumed.write_config(CONFIG_DATA)  # identical: accepted, file unchanged
    assert json.loads((tmp_path / CONFIG).read_text()) == CONFIG_DATA
    changed = {**CONFIG_DATA, "seed": 4}
    with pytest.raises(InputError, match="seed"):
        RunDir(tmp_path, resume=True).write_config(changed)
    assert json.loads((tmp_path / CONFIG).read_text()) == CONFIG_DATA
    # tuples and lists are the same JSON
    RunDir(tmp_path, resume=True).write_config({**CONFIG_DATA, "grow": {"hidden": (6, 6), "eps": 0.002}})


def test_settings_a_command_does_not_read_are_not_compared_on_resume(tmp_path: Path) -> None:
    """``unused`` paths may differ (a baseline run recorded an ignored --max-params); the rest may not."""
    stored = {**CONFIG_DATA, "grow": {"hidden": [6, 6], "eps": 0.002, "max_params": 200}}
    RunDir(tmp_path).write_config(stored)
    now = {**CONFIG_DATA, "grow": {"hidden": [6, 6], "eps": 0.002, "max_params": 300}}
    with pytest.raises(InputError, match=r"\(grow\.max_params\)"):
        RunDir(tmp_path, resume=True).write_config(now)
    RunDir(tmp_path, resume=True).write_config(now, unused={"grow.max_params"})
    with pytest.raises(InputError, match=r"\(grow\.eps\)"):
        RunDir(tmp_path, resume=True).write_config({**now, "grow": {**now["grow"], "eps": 0.01}}, unused={"grow.max_params"})
    assert json.loads((tmp_path / CONFIG).read_text()) == stored  # a resume never rewrites config.json


def test_a_baseline_run_resumes_whatever_search_settings_it_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """baseline reads no search setting: an old run that recorded one (before --max-params and search
    --set keys were refused) resumes; a setting it does read (activation) still must match."""
    from netbonsai.experiments import image_runs, run_options

    monkeypatch.setattr(run_options, "task_settings", tiny_settings)
    image = crop_of_camera(tmp_path / "img.png")
    out = tmp_path / "run"
    options = image_runs.RunOptions("brightness", image=str(image), executor="inline", command="baseline")
    image_runs.run_baseline(options, out)
    config = json.loads((out / CONFIG).read_text())
    config["grow"].update(max_params=200, n_attempts=5)  # what an older baseline run recorded
    (out / CONFIG).write_text(json.dumps(config))
    (out / "model").unlink()  # killed before the model was written
    image_runs.run_baseline(options, out, resume=True)
    assert (out / "model").is_file()
    config["grow"]["activation"] = "relu"
    (out / CONFIG).write_text(json.dumps(config))
    with pytest.raises(InputError, match=r"grow\.activation"):
        image_runs.run_baseline(options, out, resume=True)


def test_a_run_written_before_a_setting_existed_resumes_with_its_old_value(tmp_path: Path) -> None:
    """config.json of an older netbonsai lacks grow.placement (added later): resuming with the value
    every older run used is accepted, asking for another one is refused and names the setting."""
    RunDir(tmp_path).write_config(CONFIG_DATA)
    now = {**CONFIG_DATA, "grow": {**CONFIG_DATA["grow"], "placement": "half-layer", "neuron_init": "random",
                                   "neuron_removal": False, "skip": False}}
    RunDir(tmp_path, resume=True).write_config(now)  # every setting added since: filled in
    for key, value in (("neuron_init", "gradient"), ("neuron_removal", True), ("skip", True)):
        with pytest.raises(InputError, match=rf"\(grow\.{key}\)"):
            RunDir(tmp_path, resume=True).write_config({**now, "grow": {**now["grow"], key: value}})
    # the device a run used is recorded, not compared: a run may resume on another one
    RunDir(tmp_path, resume=True).write_config({**now, "device": "cuda"})
    assert json.loads((tmp_path / CONFIG).read_text()) == CONFIG_DATA  # the stored file is not rewritten
    other = {**CONFIG_DATA, "grow": {**CONFIG_DATA["grow"], "placement": "cascade"}}
    with pytest.raises(InputError, match=r"differs from the stored run \(grow\.placement\)"):
        RunDir(tmp_path, resume=True).write_config(other)
    with pytest.raises(InputError, match=r"\(grow\.eps, seed\)"):
        RunDir(tmp_path, resume=True).write_config({**now, "seed": 9, "grow": {**now["grow"], "eps": 0.01}})
    # a setting on one side only is named, even when its value is null
    with pytest.raises(InputError, match=r"\(limit\)"):
        RunDir(tmp_path, resume=True).write_config({**now, "limit": None})
    # the version that wrote the run is recorded, not compared: a newer netbonsai may resume it
    RunDir(tmp_path / "versioned").write_config({**CONFIG_DATA, "netbonsai_version": "0.0.9"})
    RunDir(tmp_path / "versioned", resume=True).write_config({**now, "netbonsai_version": "0.1.0"})


def test_history_append_rewrite_and_torn_line(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    events = [{"event": "start", "index": 0, "val_loss": 1.5}, {"event": "prune", "index": 1, "val_loss": 1.25}]
    run.write_history([])
    assert (tmp_path / HISTORY).read_text() == ""
    for event in events:
        run.append_event(event)
    assert list(read_history(tmp_path / HISTORY)) == events
    # a kill in the middle of a line leaves a torn last line: it is skipped
    with open(tmp_path / HISTORY, "a") as handle:
        handle.write('{"event": "prune", "ind')
    assert list(read_history(tmp_path / HISTORY)) == events
    # blank lines are ignored too
    with open(tmp_path / HISTORY, "a") as handle:
        handle.write("\n\n")
    assert list(read_history(tmp_path / HISTORY)) == events
    # rewriting from a checkpoint replaces everything
    run.write_history(events[:1])
    assert list(read_history(tmp_path / HISTORY)) == events[:1]
    assert (tmp_path / HISTORY).read_text().count("\n") == 1


def test_history_is_strict_json(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    run.append_event({"event": "start", "val_loss": math.inf, "items": [math.nan, 1.0]})
    line = (tmp_path / HISTORY).read_text().strip()
    assert "Infinity" not in line and "NaN" not in line
    assert json.loads(line) == {"event": "start", "val_loss": None, "items": [None, 1.0]}
    assert json.loads(dumps({"a": (1, 2)})) == {"a": [1, 2]}


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    assert run.load_checkpoint() is None
    state = {
        "search": {
            "weight": torch.randn(1, 5, 5),
            "mask": torch.rand(1, 5, 5) > 0.5,
            "phase": "prune",
            "events": [{"event": "start", "params": 61}],
            "generator_state": torch.Generator().manual_seed(3).get_state(),
            "stop_reason": None,
        }
    }
    run.save_checkpoint(state)
    loaded = run.load_checkpoint()
    assert torch.equal(loaded["search"]["weight"], state["search"]["weight"])
    assert torch.equal(loaded["search"]["mask"], state["search"]["mask"])
    assert torch.equal(loaded["search"]["generator_state"], state["search"]["generator_state"])
    assert loaded["search"]["events"] == state["search"]["events"]
    assert loaded["search"]["stop_reason"] is None
    # overwriting keeps only the newest
    run.save_checkpoint({"search": {"phase": "done"}})
    assert run.load_checkpoint() == {"search": {"phase": "done"}}


def test_corrupt_checkpoint_is_an_input_error(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    (tmp_path / CHECKPOINT).write_bytes(b"\x00garbage" * 10)
    with pytest.raises(InputError, match="checkpoint"):
        run.load_checkpoint()


def test_atomic_writes_leave_no_temp_files(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    run.write_config(CONFIG_DATA)
    run.write_history([{"event": "start"}])
    run.save_checkpoint({"x": torch.ones(3)})
    run.write_json("result.json", {"ok": True})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([CONFIG, HISTORY, CHECKPOINT, "result.json"])
    assert temp_files(tmp_path) == []
    assert json.loads((tmp_path / "result.json").read_text()) == {"ok": True}
    # a write that fails half-way keeps the old file and removes its temp file
    target = tmp_path / "result.json"
    with pytest.raises(RuntimeError):
        with atomic_open(target) as handle:
            handle.write(b"{half")
            raise RuntimeError("killed")
    assert json.loads(target.read_text()) == {"ok": True}
    assert temp_files(tmp_path) == []
    # written files are ordinary readable files
    assert (target.stat().st_mode & 0o777) == 0o644
    write_text(target, "new")
    assert target.read_text() == "new"


def test_atomic_write_into_missing_folder_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot write"):
        write_text(tmp_path / "missing" / "x.json", "{}")


def test_a_compare_run_from_before_the_magnitude_baseline_resumes_only_without_it(tmp_path: Path) -> None:
    """Compare runs written before the magnitude-pruning baseline existed never ran it: resuming one
    with the baseline on is refused (naming the setting), with it off accepted. grow and baseline
    runs do not record the setting, so theirs resume as before."""
    old = {**CONFIG_DATA, "dense": {"grid": [[5, 5]], "epochs": 10}}
    RunDir(tmp_path).write_config(old)
    magnitude = {"enabled": True, "method": "magnitude-blinded", "schedule": "relative:0.2", "sparsity": 0.9}
    now = {**old, "dense": {**old["dense"], "magnitude": magnitude}}
    with pytest.raises(InputError, match=r"\(dense\.magnitude\.enabled\)"):
        RunDir(tmp_path, resume=True).write_config(now)
    RunDir(tmp_path, resume=True).write_config({**now, "dense": {**old["dense"], "magnitude": {**magnitude, "enabled": False}}})
    RunDir(tmp_path, resume=True).write_config(old)  # a grow or baseline config of today
