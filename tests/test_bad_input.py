"""Bad input, tried systematically: every case runs the real command in-process and must exit 2
with exactly one clear line on stderr, no traceback, and no output left behind.

Each case is a function ``(tmp_path) -> argv`` that writes whatever broken input it needs; the
test snapshots ``tmp_path`` after the inputs exist and checks that the failed command created,
changed or half-wrote nothing there (no run directory, no temp files). A case that reached
training before failing would be a bug: all validation runs before any work starts.
"""

from __future__ import annotations

import errno
import gzip
import os
import stat
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image

import netbonsai
from netbonsai.cli import main
from netbonsai.data.idx import write_idx
from netbonsai.errors import InputError
from netbonsai.train import Budget, fit

from experiments.synthetic_idx import write_synthetic_mnist  # tests/ is on sys.path (rootdir conftest)

Case = Callable[[Path], list]


# ---------------------------------------------------------------------- inputs
def good_image(tmp: Path) -> Path:
    path = tmp / "good.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (16, 16)).astype(np.uint8)).save(path)
    return path


def mnist_dir(tmp: Path) -> Path:
    """A small valid MNIST-format folder (raw IDX, so cases can damage single files)."""
    return write_synthetic_mnist(tmp / "mnist", n_train=60, n_test=20, gz=False)


def grow_args(tmp: Path, *extra, image: Path | str | None = None, command: str = "grow", task: str = "brightness",
              out: Path | None = None) -> list:
    image = good_image(tmp) if image is None else image
    out = tmp / "out" if out is None else out
    return [command, task, "--image", image, "--out", out, "--executor", "inline", "--quiet", *extra]


def prune_args(tmp: Path, data: Path | str, *extra, out: Path | None = None) -> list:
    out = tmp / "out" if out is None else out
    return ["prune", "mnist", "--data", data, "--arch", "784-8-10", "--val-size", "10", "--dense-epochs", "1",
            "--out", out, "--quiet", *extra]


def without(tmp: Path, name: str) -> Path:
    folder = mnist_dir(tmp)
    (folder / name).unlink()
    return folder


def damaged_mnist(tmp: Path, name: str, damage: Callable[[bytes], bytes]) -> Path:
    folder = mnist_dir(tmp)
    path = folder / name
    path.write_bytes(damage(path.read_bytes()))
    return folder


def replaced_mnist(tmp: Path, name: str, array: np.ndarray) -> Path:
    folder = mnist_dir(tmp)
    write_idx(folder / name, array)
    return folder


def image_file(tmp: Path, name: str, write: Callable[[Path], None]) -> Path:
    path = tmp / name
    write(path)
    return path


def float_tiff(value: float) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        pixels = np.full((16, 16), 0.5, np.float32)
        pixels[3, 4] = value
        Image.fromarray(pixels, mode="F").save(path)

    return write


def corrupt_model(tmp: Path) -> Path:
    path = tmp / "model"
    path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{not json" + bytes(range(200)))
    return path


def run_dir_with(tmp: Path, files: dict[str, str]) -> Path:
    folder = tmp / "run"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def unwritable(tmp: Path) -> Path:
    """A read-only folder (mode 0500). Root ignores the mode bits, so there the test emulates the
    kernel's refusal instead (see :func:`refuse_writes_under`) rather than skipping the case."""
    locked = tmp / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    return locked


def refuse_writes_under(locked: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make creating anything below ``locked`` fail with EACCES, as it does for a non-root user."""
    mkdir, open_ = Path.mkdir, os.open

    def inside(path) -> bool:
        return locked in Path(os.path.abspath(path)).parents

    def refusing_mkdir(self: Path, *args, **kwargs) -> None:
        if inside(self):
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return mkdir(self, *args, **kwargs)

    def refusing_open(path, flags, *args, **kwargs):
        if flags & os.O_CREAT and inside(path):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return open_(path, flags, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", refusing_mkdir)
    monkeypatch.setattr(os, "open", refusing_open)


def empty_folder(tmp: Path) -> Path:
    (tmp / "out").mkdir()
    return tmp / "out"


# ---------------------------------------------------------------------- the table
CASES: dict[str, tuple[Case, str]] = {
    # IDX files (prune mnist)
    "idx-truncated": (lambda t: prune_args(t, damaged_mnist(t, "train-images-idx3-ubyte", lambda b: b[:-100])),
                      "truncated"),
    "idx-header-only": (lambda t: prune_args(t, damaged_mnist(t, "train-images-idx3-ubyte", lambda b: b[:10])),
                        "truncated header"),
    "idx-bad-magic": (lambda t: prune_args(t, damaged_mnist(t, "train-labels-idx1-ubyte", lambda b: b"\x12\x34" + b[2:])),
                      "bad magic"),
    "idx-unknown-type": (lambda t: prune_args(t, damaged_mnist(t, "t10k-images-idx3-ubyte", lambda b: b[:2] + b"\x42" + b[3:])),
                         "unknown data type"),
    "idx-trailing-bytes": (lambda t: prune_args(t, damaged_mnist(t, "t10k-labels-idx1-ubyte", lambda b: b + b"xx")),
                           "trailing bytes"),
    "idx-empty-file": (lambda t: prune_args(t, damaged_mnist(t, "train-labels-idx1-ubyte", lambda b: b"")),
                       "not an IDX file"),
    "idx-corrupt-gzip": (lambda t: prune_args(t, damaged_mnist(t, "train-images-idx3-ubyte",
                                                               lambda b: gzip.compress(b)[:200])), "gzip"),
    "idx-wrong-dims": (lambda t: prune_args(t, replaced_mnist(t, "train-images-idx3-ubyte",
                                                              np.zeros((60, 784), np.uint8))), "3-D"),
    "idx-label-count": (lambda t: prune_args(t, replaced_mnist(t, "train-labels-idx1-ubyte",
                                                               np.zeros(59, np.uint8))), "59 labels"),
    "idx-labels-out-of-range": (lambda t: prune_args(t, replaced_mnist(t, "train-labels-idx1-ubyte",
                                                                       np.arange(60, dtype=np.uint8) % 12)), "classes"),
    "idx-test-label-unseen": (lambda t: prune_args(t, replaced_mnist(t, "t10k-labels-idx1-ubyte",
                                                                     np.full(20, 11, np.uint8))), "does not occur"),
    "idx-negative-label": (lambda t: prune_args(t, replaced_mnist(t, "train-labels-idx1-ubyte",
                                                                  np.full(60, -1, np.int8))), "negative label"),
    "idx-float-nan-pixels": (lambda t: prune_args(t, replaced_mnist(t, "train-images-idx3-ubyte",
                                                                    np.full((60, 28, 28), np.nan, np.float32))), "[0, 1]"),
    "idx-missing-file": (lambda t: prune_args(t, without(t, "t10k-labels-idx1-ubyte")), "missing"),
    "data-folder-missing": (lambda t: prune_args(t, t / "nowhere"), "does not exist"),
    "data-is-a-file": (lambda t: prune_args(t, good_image(t)), "not a folder"),
    "arch-wrong-inputs": (lambda t: prune_args(t, mnist_dir(t), "--arch", "100-8-10"), "784 pixels"),
    "arch-too-few-outputs": (lambda t: prune_args(t, mnist_dir(t), "--arch", "784-8-5"), "classes"),
    "arch-garbage": (lambda t: prune_args(t, mnist_dir(t), "--arch", "784-x-10"), "--arch"),
    "val-size-too-large": (lambda t: prune_args(t, mnist_dir(t), "--val-size", "60"), "validation size"),
    # pruning options
    "prune-unknown-method": (lambda t: prune_args(t, mnist_dir(t), "--method", "bogus"), "bogus"),
    "schedule-oneshot-2": (lambda t: prune_args(t, mnist_dir(t), "--schedule", "oneshot:2"), "oneshot:2"),
    "schedule-fixed-neg": (lambda t: prune_args(t, mnist_dir(t), "--schedule", "fixed:-5"), "fixed:-5"),
    "schedule-relative-abc": (lambda t: prune_args(t, mnist_dir(t), "--schedule", "relative:abc"), "relative:abc"),
    "schedule-unknown-kind": (lambda t: prune_args(t, mnist_dir(t), "--schedule", "weekly:1"), "weekly:1"),
    "schedule-nan": (lambda t: prune_args(t, mnist_dir(t), "--schedule", "relative:nan"), "finite"),
    "target-sparsity-1.5": (lambda t: prune_args(t, mnist_dir(t), "--target-sparsity", "1.5"), "--target-sparsity"),
    "target-sparsity-nan": (lambda t: prune_args(t, mnist_dir(t), "--target-sparsity", "nan"), "--target-sparsity"),
    "accuracy-drop-2": (lambda t: prune_args(t, mnist_dir(t), "--max-accuracy-drop", "2"), "--max-accuracy-drop"),
    "prune-lr-zero": (lambda t: prune_args(t, mnist_dir(t), "--lr", "0"), "lr"),
    "prune-lr-nan": (lambda t: prune_args(t, mnist_dir(t), "--lr", "nan"), "lr"),
    "prune-eps-inf": (lambda t: prune_args(t, mnist_dir(t), "--method", "loss-aware", "--schedule", "fixed:10",
                                           "--eps", "inf"), "--eps"),
    "prune-max-seconds-nan": (lambda t: prune_args(t, mnist_dir(t), "--method", "loss-aware", "--schedule", "fixed:10",
                                                   "--max-seconds", "nan"), "--max-seconds"),
    "prune-negative-epochs": (lambda t: prune_args(t, mnist_dir(t), "--dense-epochs", "-1"), "--dense-epochs"),
    "prune-data-and-download": (lambda t: prune_args(t, mnist_dir(t), "--download"), "--download"),
    "prune-unknown-dataset": (lambda t: ["prune", "cifar", "--out", t / "out"], "cifar"),
    # images (grow / compare)
    "image-zero-bytes": (lambda t: grow_args(t, image=image_file(t, "empty.png", lambda p: p.write_bytes(b""))),
                         "empty.png"),
    "image-one-pixel": (lambda t: grow_args(t, image=image_file(t, "one.png", lambda p: Image.new("L", (1, 1)).save(p))),
                        "1x1"),
    "image-text-as-png": (lambda t: grow_args(t, image=image_file(t, "text.png", lambda p: p.write_text("hello\n"))),
                          "text.png"),
    "image-truncated-png": (lambda t: grow_args(t, image=image_file(t, "cut.png", lambda p: p.write_bytes(
        good_image(t).read_bytes()[:60]))), "cut.png"),
    "image-nan": (lambda t: grow_args(t, image=image_file(t, "nan.tiff", float_tiff(float("nan")))), "NaN"),
    "image-inf": (lambda t: grow_args(t, image=image_file(t, "inf.tiff", float_tiff(float("inf")))), "Inf"),
    "image-missing": (lambda t: grow_args(t, image=t / "absent.png"), "absent.png"),
    "image-is-a-folder": (lambda t: grow_args(t, image=t), "directory"),
    "image-unknown-bundled": (lambda t: grow_args(t, image="skimage:nope"), "nope"),
    "approx-one-row": (lambda t: grow_args(t, task="approx", image=image_file(
        t, "row.png", lambda p: Image.new("L", (40, 1)).save(p))), "40x1"),
    # search options
    "max-params-negative": (lambda t: grow_args(t, "--max-params", "-5"), "--max-params"),
    "max-seconds-zero": (lambda t: grow_args(t, "--max-seconds", "0"), "--max-seconds"),
    "max-seconds-nan": (lambda t: grow_args(t, "--max-seconds", "nan"), "--max-seconds"),
    "seed-negative": (lambda t: grow_args(t, "--seed", "-1"), "--seed"),
    "preset-bogus": (lambda t: grow_args(t, "--preset", "bogus"), "bogus"),
    "task-bogus": (lambda t: ["grow", "segmentation", "--out", t / "out"], "segmentation"),
    "threads-zero": (lambda t: grow_args(t, "--threads", "0"), "--threads"),
    "set-not-key-value": (lambda t: grow_args(t, "--set", "n_attempts"), "KEY=VALUE"),
    "set-unknown-key": (lambda t: grow_args(t, "--set", "bogus=1"), "bogus"),
    "set-wrong-type": (lambda t: grow_args(t, "--set", "n_attempts=abc"), "n_attempts"),
    "set-out-of-range": (lambda t: grow_args(t, "--set", "eps=2"), "eps"),
    "set-negative-epochs": (lambda t: grow_args(t, "--set", "grow_epochs=-3"), "grow_epochs"),
    "set-unknown-trainer": (lambda t: grow_args(t, "--set", "trainer.method=rmsprop"), "rmsprop"),
    "set-nan-eps": (lambda t: grow_args(t, "--set", "eps=NaN"), "eps"),
    "set-nan-lr": (lambda t: grow_args(t, "--set", "trainer.lr=NaN"), "lr"),
    "set-nan-max-seconds": (lambda t: grow_args(t, "--set", "max_seconds=NaN"), "max_seconds"),
    "set-inf-target-loss": (lambda t: grow_args(t, "--set", "target_loss=-Infinity"), "target_loss"),
    "set-hidden-garbage": (lambda t: grow_args(t, "--set", "hidden=[0]"), "hidden"),
    "compare-bad-image": (lambda t: grow_args(t, command="compare", image=t / "absent.png"), "absent.png"),
    "baseline-bad-preset": (lambda t: grow_args(t, "--preset", "huge", command="baseline"), "huge"),
    "baseline-max-params": (lambda t: grow_args(t, "--max-params", "100", command="baseline"), "--max-params"),
    "baseline-max-seconds": (lambda t: grow_args(t, "--max-seconds", "5", command="baseline"), "--max-seconds"),
    "baseline-search-setting": (lambda t: grow_args(t, "--set", "n_attempts=5", command="baseline"), "does not run"),
    "baseline-typo-setting": (lambda t: grow_args(t, "--set", "activaton=relu", command="baseline"), "unknown grow config"),
    "baseline-two-budgets": (lambda t: grow_args(t, "--set", "start_epochs=5", "--set", "dense.epochs=7",
                                                 command="baseline"), "give one of them"),
    # output folders and resuming
    "out-unwritable": (lambda t: grow_args(t, out=unwritable(t) / "run"), "locked"),
    "out-under-a-file": (lambda t: grow_args(t, out=good_image(t) / "run"), "good.png"),
    "out-is-a-file": (lambda t: grow_args(t, out=good_image(t)), "good.png"),
    "resume-empty-folder": (lambda t: grow_args(t, "--resume", out=empty_folder(t)), "cannot resume"),
    "resume-missing-folder": (lambda t: grow_args(t, "--resume"), "cannot resume"),
    "compare-out-unwritable": (lambda t: grow_args(t, command="compare", out=unwritable(t) / "a" / "b"), "locked"),
    "prune-resume-empty": (lambda t: prune_args(t, mnist_dir(t), "--resume", out=empty_folder(t)), "cannot resume"),
    "prune-out-unwritable": (lambda t: prune_args(t, mnist_dir(t), out=unwritable(t) / "run"), "locked"),
    # reproduce
    "reproduce-unknown": (lambda t: ["reproduce", "bogus-experiment", "--out", t / "out"], "bogus-experiment"),
    "reproduce-no-out": (lambda t: ["reproduce", "mnist-7-7", "--data", mnist_dir(t)], "--out"),
    "reproduce-missing-data": (lambda t: ["reproduce", "mnist-7-7", "--data", t / "nowhere", "--out", t / "out"],
                               "does not exist"),
    "reproduce-bad-idx": (lambda t: ["reproduce", "mnist-pruning-methods", "--out", t / "out", "--data",
                                     damaged_mnist(t, "train-images-idx3-ubyte", lambda b: b[:-1])], "truncated"),
    "reproduce-resume-empty": (lambda t: ["reproduce", "reber-rnn-pruning", "--out", empty_folder(t), "--resume"],
                               "cannot resume"),
    "reproduce-bad-preset": (lambda t: ["reproduce", "reber-rnn-pruning", "--preset", "huge", "--out", t / "out"],
                             "huge"),
    "reproduce-repeats-elsewhere": (lambda t: ["reproduce", "reber-rnn-pruning", "--repeats", "2", "--out", t / "out"],
                                    "reber-structure-prediction only"),
    "reproduce-repeats-zero": (lambda t: ["reproduce", "reber-structure-prediction", "--repeats", "0", "--out",
                                          t / "out"], "--repeats"),
    # model files and run directories
    "draw-corrupt-model": (lambda t: ["draw", corrupt_model(t), "-o", t / "net.png"], "model"),
    "draw-missing-model": (lambda t: ["draw", t / "absent", "-o", t / "net.png"], "does not exist"),
    "draw-folder-without-model": (lambda t: ["draw", empty_folder(t), "-o", t / "net.png"], "model"),
    "draw-not-png": (lambda t: ["draw", corrupt_model(t), "-o", t / "net.jpg"], ".png"),
    "show-missing-dir": (lambda t: ["show", t / "absent"], "does not exist"),
    "show-a-file": (lambda t: ["show", good_image(t)], "is a file"),
    "show-not-a-run": (lambda t: ["show", empty_folder(t)], "not a netbonsai run"),
    "show-corrupt-config": (lambda t: ["show", run_dir_with(t, {"config.json": "{\"command\": \"grow\", "})],
                            "config.json"),
    "show-config-not-object": (lambda t: ["show", run_dir_with(t, {"config.json": "[1, 2]"})], "config.json"),
    "show-corrupt-result": (lambda t: ["show", run_dir_with(t, {"config.json": '{"command": "prune"}',
                                                                "result.json": "\x00\x01garbage"})], "result.json"),
    "show-corrupt-comparison": (lambda t: ["show", run_dir_with(t, {"config.json": '{"command": "compare"}',
                                                                    "comparison.json": "{}"})], "comparison.json"),
    "unknown-command": (lambda t: ["frobnicate"], "frobnicate"),
    "unknown-option": (lambda t: ["grow", "brightness", "--out", t / "out", "--bogus-option"], "--bogus-option"),
}


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``root`` with its size and modification time."""
    found = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        found[str(path.relative_to(root))] = (info.st_size if path.is_file() else -1, info.st_mtime_ns)
    return found


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_exits_2_with_one_line_and_no_output(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    build, expect = CASES[case]
    work = tmp_path / "work"
    work.mkdir()
    try:
        argv = [str(a) for a in build(work)]
        before = snapshot(work)
        for locked in work.rglob("locked"):
            if os.access(locked, os.W_OK):  # running as root: mode 0500 does not stop root
                refuse_writes_under(locked, monkeypatch)
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2, f"exit {code}: {err}"
        assert "Traceback" not in err
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].strip(), f"want one line, got {err!r}"
        assert lines[0].startswith("netbonsai: error: ")
        assert expect.lower() in lines[0].lower(), lines[0]
        assert snapshot(work) == before, "the failed command left files behind"
    finally:
        for folder in work.rglob("locked"):
            folder.chmod(0o700)


# ---------------------------------------------------------------------- a model file the commands accept
def test_a_good_model_draws(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The control for the model cases: the same command with a valid file succeeds."""
    netbonsai.save(netbonsai.DagNet.mlp([4, 3, 1]), tmp_path / "model")
    assert main(["draw", str(tmp_path / "model"), "-o", str(tmp_path / "net.png")]) == 0
    assert (tmp_path / "net.png").exists()


# ---------------------------------------------------------------------- NaN and Inf through the Python API
# Image files and IDX pixels are checked when read (the image-nan/inf and idx-float-nan cases
# above); float tensors handed straight to the trainers and task builders are checked there.
def _sequence_model():
    from netbonsai.nets.recurrent import MaskedRecurrent
    from netbonsai.nets.structure import LayeredStructure

    structure = LayeredStructure(3, (4,), (np.ones((4, 3), bool),), np.ones(4, bool))
    return MaskedRecurrent([structure], "gru", 2, seed=0)


def _poisoned(value: float, shape: tuple[int, ...] = (20, 4), row: int = 7) -> torch.Tensor:
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    x[(row,) + (0,) * (len(shape) - 1)] = value  # one bad number among many good ones
    return x


def _fit(value: float, where: str):
    x, y = torch.randn(20, 4), torch.randn(20, 1)
    if where == "x":
        x = _poisoned(value)
    else:
        y = _poisoned(value, (20, 1))
    return fit(netbonsai.DagNet.mlp([4, 3, 1]), x, y, Budget(epochs=2))


def _fit_sequences(value: float):
    from netbonsai.train.sequences import fit_sequences

    x = _poisoned(value, (6, 5, 3), row=2)
    return fit_sequences(_sequence_model(), x, torch.full((6,), 5), torch.zeros(6, dtype=torch.long),
                         Budget(epochs=1))


def _evaluate_sequences(value: float) -> None:
    from netbonsai.train.sequences import evaluate_sequences

    evaluate_sequences(_sequence_model(), _poisoned(value, (6, 5, 3), row=4), torch.full((6,), 5),
                       torch.zeros(6, dtype=torch.long))


def _image_task(builder: str, value: float):
    from netbonsai.data import tasks

    image = np.full((8, 8), 100.0)
    image[3, 3] = value
    return getattr(tasks, builder)(image)


def _task_data(value: float, field: str):
    from netbonsai.data.tasks import TaskData

    tensors = {"x_train": torch.zeros(10, 4), "y_train": torch.zeros(10, 1), "x_val": torch.zeros(5, 4),
               "y_val": torch.zeros(5, 1)}
    tensors[field] = _poisoned(value, tuple(tensors[field].shape), row=1)
    return TaskData("brightness", **tensors, image="x", image_shape=(4, 4), loss_scale=1.0, seed=0)


def _classification(value: float):
    from netbonsai.experiments.classification import ClassificationData

    labels = torch.zeros(10, dtype=torch.long)
    return ClassificationData(_poisoned(value, (10, 16), row=3), labels, torch.zeros(10, 16), labels,
                              torch.zeros(10, 16), labels)


def _grow(value: float) -> None:
    from netbonsai.data.tasks import TaskData
    from netbonsai.grow import GrowConfig
    from netbonsai.grow.search import grow

    data = TaskData("brightness", torch.zeros(30, 4), torch.zeros(30, 1), torch.zeros(5, 4), torch.zeros(5, 1),
                    "x", (8, 8), 1.0, 0)
    data.x_train[4, 2] = value  # poisoned after construction: the trainer still refuses it
    grow(data, GrowConfig(hidden=(2,), start_epochs=1, max_cycles=0))


API_CASES: dict[str, Callable[[float], None]] = {
    "fit-x": lambda v: _fit(v, "x"),
    "fit-y": lambda v: _fit(v, "y"),
    "fit-sequences": _fit_sequences,
    "evaluate-sequences": _evaluate_sequences,
    "brightness-samples": lambda v: _image_task("brightness_samples", v),
    "approx-samples": lambda v: _image_task("approx_samples", v),
    "task-data-x-train": lambda v: _task_data(v, "x_train"),
    "task-data-y-val": lambda v: _task_data(v, "y_val"),
    "classification-data": _classification,
    "grow": _grow,
}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("case", list(API_CASES))
def test_nan_and_inf_in_training_data_raise_input_error(case: str, value: float) -> None:
    with pytest.raises(InputError, match=r"NaN and \d+ Inf") as caught:
        API_CASES[case](value)
    message = str(caught.value)
    assert "\n" not in message
    kind = "1 NaN" if value != value else "0 NaN"
    assert kind in message, message


def test_finite_data_still_trains() -> None:
    """The control: the same calls with clean data go through, and use the number that replaced
    the NaN/Inf."""
    result = _fit(0.5, "x")
    assert result.epochs == 2 and len(result.curve) == 2 and bool(torch.isfinite(result.loss).all())
    sequences = _fit_sequences(0.5)
    assert sequences.epochs == 1 and bool(torch.isfinite(sequences.loss).all())
    inputs, targets = _image_task("brightness_samples", 0.5)
    assert inputs.shape == (7 * 5, 4) and np.isfinite(inputs).all()
    # pixel (row 3, column 3) is sample (3 - 1) * 5 + (3 - 2); its target is the step from its left neighbour
    assert targets[11, 0] == pytest.approx((0.5 - 100.0) / 255.0, rel=1e-6)
    assert float(_task_data(0.5, "x_train").x_train[1, 0]) == 0.5
    assert float(_classification(0.5).x_train[3, 0]) == 0.5
