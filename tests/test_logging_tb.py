"""TensorBoard logging: event scalars, run-directory listeners, and ``--tensorboard`` on the commands.

Most tests use a fake writer (no tensorboard needed); the last one uses the real
``SummaryWriter`` (tensorboard is in the dev extra the tests are run with).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from netbonsai import logging_tb
from netbonsai.cli import main
from netbonsai.errors import InputError
from netbonsai.experiments import run_options
from netbonsai.experiments.presets import TaskSettings
from netbonsai.logging_tb import TensorBoardSink, event_scalars
from netbonsai.runs import RunDir, event_listeners, read_history

from experiments.synthetic_idx import write_synthetic_mnist  # tests/ is on sys.path (rootdir conftest)
from tiny_runs import tiny_settings


class FakeWriter:
    """Records what a SummaryWriter would have been asked to write."""

    instances: list["FakeWriter"] = []

    def __init__(self, log_dir: str) -> None:
        self.log_dir = log_dir
        self.scalars: list[tuple[str, float, int]] = []
        self.flushes = 0
        self.closed = False
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        FakeWriter.instances.append(self)

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self.scalars.append((tag, value, step))

    def flush(self) -> None:
        self.flushes += 1

    def close(self) -> None:
        self.closed = True

    def series(self, tag: str) -> list[tuple[int, float]]:
        return [(step, value) for t, value, step in self.scalars if t == tag]


@pytest.fixture
def fake_tensorboard(monkeypatch: pytest.MonkeyPatch) -> type[FakeWriter]:
    FakeWriter.instances = []
    monkeypatch.setattr(logging_tb, "summary_writer_class", lambda: FakeWriter)
    return FakeWriter


# ---------------------------------------------------------------------- scalars of an event
def test_event_scalars_map_known_fields_and_skip_the_rest() -> None:
    event = {"event": "prune", "index": 3, "params": 41, "train_loss": 12.5, "val_loss": 13.0, "n_hidden": 5,
             "seconds": 1.2, "cycle": 0}
    assert event_scalars(event) == {"params": 41.0, "loss/train": 12.5, "loss/val": 13.0, "neurons": 5.0}
    prune = {"round": 2, "sparsity": 0.36, "params": 100, "val_accuracy": 0.9, "test_accuracy": 0.88,
             "test_errors": 12, "train_loss": 0.3, "rolled_back": True}
    assert event_scalars(prune) == {"sparsity": 0.36, "params": 100.0, "accuracy/val": 0.9, "accuracy/test": 0.88,
                                    "errors/test": 12.0, "loss/train": 0.3}
    assert event_scalars({"key": "gru|h2h|0.5", "test_accuracy": 0.7}) == {"gru|h2h|0.5/accuracy/test": 0.7}
    assert event_scalars({"train_loss": None, "val_loss": float("nan"), "params": True}) == {}


# ---------------------------------------------------------------------- listeners of a run directory
def test_run_dir_sends_every_event_to_its_listeners_with_its_position(tmp_path: Path) -> None:
    seen: list[tuple[dict, int]] = []
    run = RunDir(tmp_path / "run", listeners=[lambda e, s: seen.append((e, s))])
    run.write_history([{"event": "start"}])
    run.append_event({"event": "a"})
    run.append_event({"event": "b"})
    assert [(e["event"], s) for e, s in seen] == [("start", 0), ("a", 1), ("b", 2)]

    # resuming: the events from before the interruption are not sent again; steps continue
    (tmp_path / "run" / "config.json").write_text("{}")
    seen.clear()
    resumed = RunDir(tmp_path / "run", resume=True, listeners=[lambda e, s: seen.append((e, s))])
    resumed.write_history([{"event": "start"}, {"event": "a"}])  # the checkpoint's events
    resumed.append_event({"event": "b again"})
    assert [(e["event"], s) for e, s in seen] == [("b again", 2)]


def test_appending_after_resume_without_rewrite_counts_the_existing_history(tmp_path: Path) -> None:
    RunDir(tmp_path / "run").write_history([{"event": "x"}] * 4)
    (tmp_path / "run" / "config.json").write_text("{}")
    steps: list[int] = []
    RunDir(tmp_path / "run", resume=True, listeners=[lambda e, s: steps.append(s)]).append_event({"event": "y"})
    assert steps == [4]


def test_event_listeners_context_reaches_every_run_dir_opened_inside(tmp_path: Path) -> None:
    seen: list[int] = []
    with event_listeners(lambda e, s: seen.append(s)):
        RunDir(tmp_path / "a").append_event({"event": "x"})
        RunDir(tmp_path / "b").append_event({"event": "y"})
    RunDir(tmp_path / "c").append_event({"event": "z"})  # outside: not sent
    assert seen == [0, 0]


def test_a_failing_listener_is_switched_off_and_the_run_goes_on(tmp_path: Path) -> None:
    calls: list[int] = []

    def broken(event: dict, step: int) -> None:
        calls.append(step)
        raise OSError("disk full")

    run = RunDir(tmp_path / "run", listeners=[broken])
    with pytest.warns(RuntimeWarning, match="disk full"):
        run.append_event({"event": "a"})
    run.append_event({"event": "b"})
    assert calls == [0]
    assert [e["event"] for e in read_history(tmp_path / "run" / "history.jsonl")] == ["a", "b"]


# ---------------------------------------------------------------------- the sink
def test_sink_creates_its_writer_at_the_first_event_and_flushes_each(tmp_path: Path) -> None:
    FakeWriter.instances = []
    with TensorBoardSink(tmp_path / "tb", writer_factory=FakeWriter) as sink:
        sink({"event": "start", "seconds": 0.1}, 0)  # nothing to log: no writer, no folder yet
        assert not FakeWriter.instances and not (tmp_path / "tb").exists()
        sink({"params": 45, "train_loss": 3.0}, 1)
        sink({"params": 44, "train_loss": 3.1}, 2)
    (writer,) = FakeWriter.instances
    assert writer.log_dir == str(tmp_path / "tb") and writer.closed and writer.flushes == 2
    assert writer.series("params") == [(1, 45.0), (2, 44.0)]


def test_sink_refuses_a_file_as_its_folder(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        TensorBoardSink(tmp_path / "file", writer_factory=FakeWriter)


def test_without_tensorboard_installed_the_command_fails_first(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    with pytest.raises(InputError, match="pip install tensorboard"):
        logging_tb.summary_writer_class()
    code = main(["grow", "brightness", "--image", str(_image(tmp_path)), "--out", str(tmp_path / "out"),
                 "--tensorboard", str(tmp_path / "tb"), "--quiet", "--executor", "inline"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and "pip install tensorboard" in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "tb").exists()


# ---------------------------------------------------------------------- --tensorboard on the commands
def _image(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:24, 0:24]
    pixels = 128 + 60 * np.sin(xx / 4.0) * np.cos(yy / 5.0) + rng.normal(0, 5, (24, 24))
    path = tmp_path / "img.png"
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)
    return path


def _tiny(task: str, preset: str = "quick") -> TaskSettings:
    return tiny_settings(task, preset, max_train=300, attempt_samples=200, dense_epochs=10)


@pytest.mark.parametrize("command", ["grow", "compare"])
def test_grow_and_compare_log_every_history_event(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch,
    fake_tensorboard: type[FakeWriter],
) -> None:
    monkeypatch.setattr(run_options, "task_settings", _tiny)
    out, tb = tmp_path / "run", tmp_path / "tb"
    code = main([command, "brightness", "--image", str(_image(tmp_path)), "--out", str(out), "--tensorboard", str(tb),
                 "--quiet", "--executor", "inline"])
    assert code == 0, capsys.readouterr().err
    events = list(read_history(out / "history.jsonl"))
    (writer,) = fake_tensorboard.instances
    assert writer.log_dir == str(tb) and writer.closed
    assert writer.series("loss/train") == [(i, pytest.approx(e["train_loss"])) for i, e in enumerate(events)]
    assert writer.series("loss/val") == [(i, pytest.approx(e["val_loss"])) for i, e in enumerate(events)]
    assert writer.series("params") == [(i, float(e["params"])) for i, e in enumerate(events)]


def test_prune_logs_sparsity_and_accuracy(
    tmp_path: Path, capsys: pytest.CaptureFixture, fake_tensorboard: type[FakeWriter]
) -> None:
    data = write_synthetic_mnist(tmp_path / "mnist", n_train=300, n_test=100)
    out = tmp_path / "run"
    code = main(["prune", "mnist", "--data", str(data), "--arch", "784-8-10", "--schedule", "relative:0.5",
                 "--target-sparsity", "0.7", "--dense-epochs", "1", "--retrain-epochs", "0", "--val-size", "50",
                 "--threads", "1", "--out", str(out), "--tensorboard", str(tmp_path / "tb"), "--quiet"])
    assert code == 0, capsys.readouterr().err
    events = list(read_history(out / "history.jsonl"))
    (writer,) = fake_tensorboard.instances
    assert writer.series("sparsity") == [(i, pytest.approx(e["sparsity"])) for i, e in enumerate(events)]
    assert len(writer.series("accuracy/test")) == len(events) >= 2


def test_a_failed_run_leaves_no_tensorboard_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture, fake_tensorboard: type[FakeWriter]
) -> None:
    code = main(["grow", "brightness", "--image", str(tmp_path / "absent.png"), "--out", str(tmp_path / "out"),
                 "--tensorboard", str(tmp_path / "tb"), "--quiet"])
    assert code == 2
    assert not (tmp_path / "tb").exists() and not fake_tensorboard.instances


# ---------------------------------------------------------------------- the real writer
def test_real_summary_writer_round_trip(tmp_path: Path) -> None:
    # tensorboard is a test dependency (the dev extra): not installed is an error here, not a skip
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with TensorBoardSink(tmp_path / "tb") as sink:
        run = RunDir(tmp_path / "run", listeners=[sink])
        run.write_history([{"event": "start", "params": 45, "train_loss": 9.0, "val_loss": 10.0}])
        run.append_event({"event": "prune", "params": 44, "train_loss": 9.1, "val_loss": 10.2})
    accumulator = EventAccumulator(str(tmp_path / "tb"))
    accumulator.Reload()
    assert {"loss/train", "loss/val", "params"} <= set(accumulator.Tags()["scalars"])
    assert [(s.step, s.value) for s in accumulator.Scalars("params")] == [(0, 45.0), (1, 44.0)]
    assert [s.value for s in accumulator.Scalars("loss/val")] == pytest.approx([10.0, 10.2])
