"""Kill -9 and ``--resume``: a run SIGKILLed at random moments, then resumed, ends exactly as an
uninterrupted run with the same seed (``grow``, ``compare``, ``prune mnist``, and the resume path
of ``reproduce reber-rnn-pruning`` through the Python API with its smoke preset).

Each test runs the command once uninterrupted (the reference), then again in real child
processes that it kills with SIGKILL (no cleanup handler runs) and restarts with ``--resume``
until one exits 0. What the command line does after a kill:

* killed before it wrote config.json (here: at launch): the folder holds no run, ``--resume`` is
  refused with exit code 2 and a one-line error, and a fresh start (no ``--resume``) goes on;
* killed after config.json but before the first checkpoint: ``--resume`` starts over;
* killed later: ``--resume`` continues from the last checkpoint and rewrites history.jsonl from
  it (dropping an event written after the checkpoint, or a torn last line).

After every kill, history.jsonl and checkpoint.pt must hold a prefix of the reference's events
(only the last history line may be torn). At the end: exit code 0, the same events in the same
order (no duplicated or lost event; wall-clock fields aside), byte-identical model files, and no
temp file of an interrupted atomic write left anywhere in the run directory.

The kill moments are drawn with a seeded ``random.Random``: one as soon as history.jsonl holds
the k-th event (k random; it often lands between an event and its checkpoint), others at a
random delay (20% to 80% of the reference's wall time) once the child has made progress, or at a
random delay once a given file exists (compare: after its dense sweep; reproduce: after the first
cell's checkpoint).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest
import torch

import netbonsai
from experiments.synthetic_idx import write_synthetic_mnist  # tests/ is on sys.path
from netbonsai.cli import main
from netbonsai.experiments.reber import _cell_event, _run_jobs, pruning_settings
from netbonsai.runs import RunDir, read_history
from tiny_runs import SHRUNK, SMALL_DENSE_GRID, assert_same_run, crop_of_camera, without_clock

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kills child process groups (Linux)")

SEED = 511  # draws the kill moments
KILLING_SECONDS = 25.0  # no new kill is planned after this long; the final resume always runs
CHILD_TIMEOUT = 90.0  # a child that hangs fails the test instead of blocking it
POLL = 0.005

# What a child runs, before its arguments and ``--out DIR [--resume]``:
CLI = ["-m", "netbonsai.cli"]
# the command line with tiny_runs.shrunk_preset (a small dense grid) as the image presets;
SHRUNK_PRESET_CLI = ["-c", "import sys, tiny_runs; sys.exit(tiny_runs.main_with_shrunk_preset(sys.argv[1:]))"]
# reproduce reber-rnn-pruning with the smoke preset (which the command line does not offer), inline.
REBER_SMOKE = ["-c", """
import sys, torch
from netbonsai.experiments.reber import reproduce_reber_rnn_pruning
torch.set_num_threads(1)
reproduce_reber_rnn_pruning(sys.argv[sys.argv.index("--out") + 1], preset="smoke", executor="inline",
                            resume="--resume" in sys.argv)
"""]


def child_env() -> dict[str, str]:
    """The test's environment, with this checkout's package and tests/ (tiny_runs) first on the path."""
    env = dict(os.environ)
    src = str(Path(netbonsai.__file__).resolve().parents[1])
    tests = str(Path(__file__).resolve().parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, tests, env.get("PYTHONPATH")) if p)
    env["MPLBACKEND"] = "Agg"
    return env


def history_lines(path: Path) -> int:
    """Complete (newline-terminated) lines of a history.jsonl; 0 if there is none."""
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


class KilledRun:
    """One run directory driven through kills and resumes by child processes."""

    def __init__(self, args: list[str], root: Path, reference: Path, checkpointed: Callable[[dict], list[dict]],
                 program: list[str] = CLI) -> None:
        self.program = program  # what the child runs (CLI, SHRUNK_PRESET_CLI, REBER_SMOKE)
        self.args = args  # its arguments, without --out and --resume
        self.out = root / "killed"
        self.logs = root / "logs"
        self.logs.mkdir(parents=True)
        self.reference = [without_clock(e) for e in read_history(reference / "history.jsonl")]
        self.checkpointed = checkpointed  # the events stored in a checkpoint
        self.started = time.monotonic()
        self.outcomes: list[str] = []  # one line per launch (shown when an assertion fails)

    # ------------------------------------------------------------------ children
    def argv(self, resume: bool) -> list[str]:
        return [sys.executable, *self.program, *self.args, "--out", str(self.out), *(["--resume"] if resume else [])]

    def launch(self, resume: bool | None = None) -> subprocess.Popen:
        """Start the command; by default with --resume exactly when the folder holds a run."""
        if resume is None:
            resume = (self.out / "config.json").exists()
        log = self.logs / f"launch{len(self.outcomes) + 1}.log"
        with open(log, "wb") as handle:
            proc = subprocess.Popen(self.argv(resume), stdout=handle, stderr=subprocess.STDOUT, env=child_env(),
                                    start_new_session=True)
        proc.log, proc.resume, proc.launched = log, resume, time.monotonic()  # type: ignore[attr-defined]
        return proc

    def kill_when(self, proc: subprocess.Popen, ready: Callable[[], bool], what: str) -> bool:
        """SIGKILL ``proc`` (its whole process group) once ``ready()``; True if the kill landed,
        False if the child had finished (with exit code 0) first."""
        limit = proc.launched + CHILD_TIMEOUT  # type: ignore[attr-defined]
        while proc.poll() is None and not ready():
            assert time.monotonic() < limit, f"child still running after {CHILD_TIMEOUT} s ({what})"
            time.sleep(POLL)
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:  # it exited in between
                pass
        code = proc.wait(timeout=CHILD_TIMEOUT)
        at = time.monotonic() - proc.launched  # type: ignore[attr-defined]
        mode = "--resume" if proc.resume else "fresh"  # type: ignore[attr-defined]
        self.outcomes.append(f"{mode}: {what}: exit {code} at {at:.2f} s")
        assert code in (0, -signal.SIGKILL), self.failure(proc, f"the child failed (exit {code})")
        self.outcomes[-1] += self.check_consistent()
        return code == -signal.SIGKILL

    def finish(self) -> None:
        """Resume without killing; it must exit 0."""
        proc = self.launch()
        try:
            code = proc.wait(timeout=CHILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise AssertionError(self.failure(proc, f"the last resume ran over {CHILD_TIMEOUT} s")) from None
        self.outcomes.append(f"{'--resume' if proc.resume else 'fresh'}: not killed: exit {code}")  # type: ignore[attr-defined]
        assert code == 0, self.failure(proc, f"the last resume exited {code}")

    def failure(self, proc: subprocess.Popen, message: str) -> str:
        return f"{message}; launches: {self.outcomes}; output:\n{proc.log.read_text(errors='replace')[-3000:]}"  # type: ignore[attr-defined]

    def killing_time_left(self) -> bool:
        return time.monotonic() - self.started < KILLING_SECONDS

    # ------------------------------------------------------------------ kills
    def kill_at_launch(self, capsys: pytest.CaptureFixture) -> None:
        """Killed before it wrote anything: --resume is refused with a clear error, so start fresh."""
        assert not self.out.exists()
        proc = self.launch(resume=False)
        self.kill_when(proc, lambda: time.monotonic() - proc.launched > 0.05, "at launch")  # type: ignore[attr-defined]
        assert not (self.out / "config.json").exists()  # importing torch alone takes longer
        capsys.readouterr()
        assert main([*self.args, "--out", str(self.out), "--resume"]) == 2
        err = capsys.readouterr().err
        assert "cannot resume" in err and "holds no run" in err and len(err.strip().splitlines()) == 1, err

    def kill_before_checkpoint(self, tries: int = 3) -> None:
        """Killed once config.json exists, before the first checkpoint (the next launch resumes
        a run without a checkpoint: it must start over). Retried in a new folder in the rare case
        where the checkpoint beat the kill."""
        for _ in range(tries):
            proc = self.launch()
            assert not proc.resume  # type: ignore[attr-defined]
            self.kill_when(proc, lambda: (self.out / "config.json").exists(), "once config.json exists")
            if (self.out / "config.json").exists() and not (self.out / "checkpoint.pt").exists():
                return
            shutil.rmtree(self.out)
        raise AssertionError(f"no kill landed before the first checkpoint in {tries} tries: {self.outcomes}")

    def kill_after_event(self, rng: random.Random) -> None:
        """Killed as soon as history.jsonl holds the k-th event (k random, beyond what it holds now)."""
        history = self.out / "history.jsonl"
        have = history_lines(history)
        if have >= len(self.reference):
            return self.kill_after_delay(rng, 1.0)
        k = rng.randint(have + 1, len(self.reference))
        self.kill_when(self.launch(), lambda: history_lines(history) >= k, f"after event {k}")

    def kill_after_file(self, name: str, delay: float = 0.0) -> None:
        """Killed ``delay`` seconds after the file ``name`` exists in the run directory."""
        path, seen = self.out / name, []
        proc = self.launch()

        def ready() -> bool:
            if not seen and path.exists():
                seen.append(time.monotonic())
            return bool(seen) and time.monotonic() - seen[0] >= delay

        self.kill_when(proc, ready, f"{delay:.2f} s after {name} exists")

    def kill_after_delay(self, rng: random.Random, reference_seconds: float) -> None:
        """Killed after a random delay (20% to 80% of the reference's wall time), but not before
        the child made progress: a new checkpoint, or a finished search (all events in history)."""
        delay = rng.uniform(0.2, 0.8) * reference_seconds
        checkpoint, history = self.out / "checkpoint.pt", self.out / "history.jsonl"
        before = mtime(checkpoint)
        proc = self.launch()

        def ready() -> bool:
            if time.monotonic() - proc.launched < delay:  # type: ignore[attr-defined]
                return False
            return mtime(checkpoint) != before or history_lines(history) >= len(self.reference)

        self.kill_when(proc, ready, f"after {delay:.2f} s and progress")

    # ------------------------------------------------------------------ checks
    def check_consistent(self) -> str:
        """history.jsonl and checkpoint.pt hold prefixes of the reference's events; returns what
        the kill left (events in each, a torn line, temp files) for the launch log."""
        left = []
        path = self.out / "history.jsonl"
        if path.exists():
            *complete, torn = path.read_text(encoding="utf-8", errors="replace").split("\n")
            events = [without_clock(json.loads(line)) for line in complete]  # only the last line may be torn
            assert events == self.reference[: len(events)], f"history.jsonl diverged: {self.outcomes}"
            left.append(f"{len(events)} events" + (" + a torn line" if torn else ""))
        if (self.out / "checkpoint.pt").exists():
            saved = torch.load(self.out / "checkpoint.pt", weights_only=True)
            events = [without_clock(e) for e in self.checkpointed(saved)]
            assert events == self.reference[: len(events)], f"checkpoint diverged: {self.outcomes}"
            left.append(f"{len(events)} checkpointed")
        temps = sum(1 for p in self.out.rglob("*.tmp")) if self.out.exists() else 0
        if temps:
            left.append(f"{temps} temp files")
        return f" ({', '.join(left)})" if left else ""

    def assert_finished_like(self, reference: Path, result: str = "result.json",
                             same_bytes: tuple[str, ...] = ("config.json", "model")) -> None:
        """The same events, no temp file, ``result`` equal but for wall-clock fields, and the files
        (or every file of the folders) in ``same_bytes`` byte-identical."""
        events = list(read_history(self.out / "history.jsonl"))
        assert [without_clock(e) for e in events] == self.reference, self.outcomes
        leftovers = [str(p.relative_to(self.out)) for p in self.out.rglob("*") if p.name.endswith(".tmp")]
        assert not leftovers, f"temp files left behind: {leftovers}; {self.outcomes}"
        for name in same_bytes:
            files = [sorted(p.relative_to(run) for p in (run / name).rglob("*")) if (run / name).is_dir()
                     else [Path(name)] for run in (reference, self.out)]
            assert files[0] == files[1] and files[0], (name, files, self.outcomes)
            for file in files[0]:
                same = (self.out / file).read_bytes() == (reference / file).read_bytes()
                assert same, (file, self.outcomes)
        results = [json.loads((run / result).read_text()) for run in (reference, self.out)]
        assert without_clock(results[0]) == without_clock(results[1]), self.outcomes


def test_reopening_a_run_removes_the_temp_files_of_killed_writes(tmp_path: Path) -> None:
    """What a kill during an atomic write leaves (``.NAME.XXXXXXXX.tmp``) is deleted on --resume,
    in subfolders too; a fresh run only deletes config.json's. Other files are never touched."""
    run = RunDir(tmp_path / "run")
    run.write_config({"seed": 0})
    (run.path / "front").mkdir()
    stale = [".checkpoint.pt.k2j_9xq1.tmp", "front/.params_00042.a1b2c3d4.tmp"]
    kept = ["notes.tmp", ".hidden.tmp", "front/params_00042"]
    for name in stale + kept:
        (run.path / name).write_text("x")
    RunDir(run.path, resume=True)
    assert sorted(str(p.relative_to(run.path)) for p in run.path.rglob("*") if p.is_file()) == sorted(["config.json", *kept])

    fresh = tmp_path / "fresh"  # a folder where a run was killed before config.json existed
    fresh.mkdir()
    for name in (".config.json.zz_81x0a.tmp", ".history.jsonl.abcdefgh.tmp", "mine.txt"):
        (fresh / name).write_text("x")
    RunDir(fresh)
    assert sorted(p.name for p in fresh.iterdir()) == [".history.jsonl.abcdefgh.tmp", "mine.txt"]


def run_reference(args: list[str], out: Path, program: list[str] = CLI) -> float:
    """The uninterrupted run, as a child process like the killed ones; its wall time in seconds."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, *program, *args, "--out", str(out)], env=child_env(),
                          capture_output=True, text=True, timeout=CHILD_TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr
    return time.monotonic() - started


def test_grow_killed_at_random_moments_resumes_to_the_uninterrupted_result(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    image = crop_of_camera(tmp_path / "crop.png")
    args = ["grow", "brightness", "--quiet", "--threads", "1", "--image", str(image), "--seed", "3", *SHRUNK]
    reference = tmp_path / "reference"
    seconds = run_reference(args, reference)
    run = KilledRun(args, tmp_path, reference, checkpointed=lambda saved: saved["search"]["events"])
    assert {"start", "prune", "grow", "stop"} <= {e["event"] for e in run.reference}
    rng = random.Random(SEED)

    run.kill_at_launch(capsys)
    run.kill_before_checkpoint()
    run.kill_after_event(rng)
    for _ in range(2):
        if run.killing_time_left():
            run.kill_after_delay(rng, seconds)
    run.finish()

    run.assert_finished_like(reference)
    assert_same_run(reference, run.out)  # also result.json and every front/ file, byte for byte
    events = list(read_history(run.out / "history.jsonl"))
    assert [e["index"] for e in events] == list(range(len(events)))
    print(f"reference {seconds:.1f} s; launches: {run.outcomes}")


def test_prune_mnist_killed_at_random_moments_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    folder = write_synthetic_mnist(tmp_path / "idx")
    args = ["prune", "mnist", "--data", str(folder), "--arch", "784-16-10", "--schedule", "relative:0.3",
            "--target-sparsity", "0.9", "--dense-epochs", "2", "--retrain-epochs", "2", "--val-size", "200",
            "--threads", "1", "--quiet"]
    reference = tmp_path / "reference"
    seconds = run_reference(args, reference)
    run = KilledRun(args, tmp_path, reference, checkpointed=lambda saved: saved.get("records", []))
    assert len(run.reference) >= 5  # the dense network and several rounds
    rng = random.Random(SEED + 1)

    run.kill_before_checkpoint()  # during the dense training
    run.kill_after_event(rng)
    if run.killing_time_left():
        run.kill_after_delay(rng, seconds)
    run.finish()

    run.assert_finished_like(reference)
    assert [e["round"] for e in read_history(run.out / "history.jsonl")] == list(range(len(run.reference)))
    print(f"reference {seconds:.1f} s; launches: {run.outcomes}")


@pytest.mark.slow  # about 35 s on a loaded 2-core machine
def test_compare_killed_at_random_moments_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    """compare with the shrunken search and a two-network dense grid (its sweep runs in a process
    pool beside the search): killed before the first checkpoint, mid-search, and after the sweep
    (dense.json written; the resume reuses it), then resumed."""
    image = crop_of_camera(tmp_path / "crop.png")
    args = ["compare", "brightness", "--quiet", "--threads", "1", "--image", str(image), "--seed", "3", *SHRUNK]
    reference = tmp_path / "reference"
    seconds = run_reference(args, reference, SHRUNK_PRESET_CLI)
    dense = json.loads((reference / "dense.json").read_text())
    assert [d["hidden"] for d in dense] == [list(h) for h in SMALL_DENSE_GRID]
    run = KilledRun(args, tmp_path, reference, checkpointed=lambda saved: saved["search"]["events"],
                    program=SHRUNK_PRESET_CLI)
    rng = random.Random(SEED + 2)
    # after dense.json: polishing done, then front/, model, comparison.json, plots, report.md
    tail = (mtime(reference / "report.md") - mtime(reference / "dense.json")) / 1e9  # type: ignore[operator]

    run.kill_before_checkpoint()
    run.kill_after_event(rng)
    run.kill_after_file("dense.json", rng.uniform(0.0, 1.0) * tail)
    run.finish()

    run.assert_finished_like(reference, result="comparison.json",
                             same_bytes=("config.json", "model", "front", "dense"))
    events = list(read_history(run.out / "history.jsonl"))
    assert [e["index"] for e in events] == list(range(len(events)))
    print(f"reference {seconds:.1f} s; launches: {run.outcomes}")


def test_reproduce_reber_killed_at_random_moments_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    """reproduce_reber_rnn_pruning(preset="smoke", executor="inline") in a child process: killed
    once the first cell's checkpoint exists and at a random delay, then resumed."""
    reference = tmp_path / "reference"
    seconds = run_reference([], reference, REBER_SMOKE)
    run = KilledRun([], tmp_path, reference, program=REBER_SMOKE,
                    checkpointed=lambda saved: [_cell_event(v) for v in saved["done"].values()])
    cells = list(pruning_settings("smoke").cells)
    assert [e["cell"] for e in run.reference] == cells and len(cells) > 2
    rng = random.Random(SEED + 3)

    run.kill_after_file("checkpoint.pt")
    run.kill_after_delay(rng, seconds)
    run.finish()

    run.assert_finished_like(reference, result="result.json", same_bytes=("config.json",))
    print(f"reference {seconds:.1f} s; launches: {run.outcomes}")


def test_inline_jobs_of_reproduce_are_checkpointed_one_by_one(tmp_path: Path) -> None:
    """Inline, a job runs only once the one before it is checkpointed, so a kill loses at most the
    job that was running (it used to run every job before the first checkpoint)."""
    run = RunDir(tmp_path / "run")
    seen = []

    def job(key: str) -> str:
        seen.append(list((run.load_checkpoint() or {"done": {}})["done"]))
        return key.upper()

    state: dict = {"done": {}}
    _run_jobs(run, state, {key: (job, key) for key in "abc"}, "inline", 1, lambda key, value: None)
    assert seen == [[], ["a"], ["a", "b"]]
    assert state["done"] == run.load_checkpoint()["done"] == {"a": "A", "b": "B", "c": "C"}
