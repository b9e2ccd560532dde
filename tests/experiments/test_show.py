"""``netbonsai show DIR`` on every run type, finished and while the run is still being written.

"In progress" is looked at for real: from inside each run's own progress callback (right after an
event was appended to history.jsonl, with a checkpoint but no result yet), once as it is and once
with a torn last line (a writer killed mid-line).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from netbonsai.cli import main
from netbonsai.experiments import image_runs, run_options
from netbonsai.experiments.image_runs import Reporter, RunOptions
from netbonsai.experiments.mnist_pruning import PruneOptions, run_prune_mnist
from netbonsai.experiments.presets import DataSettings, TaskSettings
from netbonsai.experiments.reber import reproduce_reber_rnn_pruning
from netbonsai.experiments.show import describe_run
from netbonsai.grow import GrowConfig

from .synthetic_idx import write_synthetic_mnist


def show(capsys: pytest.CaptureFixture, run: Path) -> str:
    """``netbonsai show RUN`` through the command line: exit 0, a table on stdout, nothing on stderr."""
    code = main(["show", str(run)])
    captured = capsys.readouterr()
    assert code == 0 and not captured.err, captured.err
    assert "|" in captured.out  # a markdown table
    return captured.out


class Peek:
    """Looks at the run directory while the run writes it (from the run's own callback)."""

    def __init__(self, out: Path, expect: tuple[str, ...]) -> None:
        self.out, self.expect, self.seen = out, expect, []

    def __call__(self, *args) -> None:
        if len(self.seen) >= 2:
            return
        history = self.out / "history.jsonl"
        assert not (self.out / "result.json").exists() and not (self.out / "comparison.json").exists()
        self.seen.append(self.check(describe_run(self.out)))
        size = history.stat().st_size
        with open(history, "a") as handle:  # a writer killed mid-line
            handle.write('{"event": "prune", "params": 4')
        try:
            self.seen.append(self.check(describe_run(self.out)))
        finally:
            with open(history, "r+") as handle:
                handle.truncate(size)

    def check(self, text: str) -> str:
        assert "in progress" in text, text
        for word in self.expect:
            assert word in text, (word, text)
        return text


# ---------------------------------------------------------------------- image runs
def _tiny(task: str, preset: str = "quick") -> TaskSettings:
    grow = GrowConfig(hidden=(3, 3), start_epochs=10, trial_epochs=2, grow_epochs=3, n_attempts=4,
                      attempt_samples=200, max_params=40, max_cycles=1)
    return TaskSettings(task=task, preset=preset, data=DataSettings(max_train=300), grow=grow,
                        dense_grid=((2, 2), (3, 3)), dense_epochs=10)


@pytest.fixture
def image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(run_options, "task_settings", _tiny)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:24, 0:24]
    pixels = 128 + 60 * np.sin(xx / 4.0) * np.cos(yy / 5.0) + rng.normal(0, 5, (24, 24))
    path = tmp_path / "img.png"
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)
    return str(path)


class PeekingReporter(Reporter):
    def __init__(self, peek: Peek) -> None:
        self.peek = peek

    def event(self, event: dict) -> None:
        self.peek()


@pytest.mark.parametrize("kind", ["grow", "compare"])
def test_show_grow_and_compare_runs(kind: str, image: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    peek = Peek(out, (f"# {kind}: brightness", "Latest events", "start"))
    runner: Callable = {"grow": image_runs.run_grow, "compare": image_runs.run_compare}[kind]
    runner(RunOptions("brightness", image=image, executor="inline"), out, reporter=PeekingReporter(peek))
    assert len(peek.seen) == 2 and "search in progress" in peek.seen[1]
    shown = show(capsys, out)
    assert "search finished" in shown and "Latest events" in shown
    if kind == "compare":
        assert "Dense MLPs" in shown and "Parameter ratio" in shown
        # the ratio at equal training loss is shown when the comparison has one
        path = out / "comparison.json"
        comparison = json.loads(path.read_text())
        assert "at_train_loss" in comparison
        comparison["at_train_loss"] = {"ratios": [], "median_ratio": 1.234, "min_ratio": 1.0, "max_ratio": 1.5, "n": 3}
        path.write_text(json.dumps(comparison))
        assert "at equal training loss (paper 000's measure): median ratio 1.23 (3 points)" in show(capsys, out)
        # a multi-seed comparison's bootstrap interval over seeds
        comparison.update(seeds=[0, 1, 2], per_seed=[{"seed": s, "median_ratio": 1.0 + s} for s in range(3)],
                          median_ratio_interval={"low": 0.876, "high": 1.414, "confidence": 0.9, "resamples": 2000})
        path.write_text(json.dumps(comparison))
        shown = show(capsys, out)
        assert "each seed's median ratio: seed 0: 1.00, seed 1: 2.00, seed 2: 3.00" in shown
        assert "90% interval of the pooled median ratio over seeds (bootstrap): 0.88-1.41" in shown


def test_show_baseline_run(image: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    image_runs.run_baseline(RunOptions("brightness", image=image, executor="inline"), out)
    shown = show(capsys, out)
    assert shown.startswith("# baseline: brightness") and "Dense MLPs" in shown and "2-2" in shown


def test_show_a_run_that_has_only_its_config(image: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Killed before its first event (e.g. during the dense training): still a summary, exit 0."""
    out = tmp_path / "run"
    settings, data, run = image_runs.prepare(RunOptions("brightness", image=image, command="baseline"), out, False)
    code = main(["show", str(out)])
    text = capsys.readouterr().out
    assert code == 0 and "no results yet" in text and "# baseline: brightness" in text


# ---------------------------------------------------------------------- prune and reproduce runs
def test_show_prune_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = write_synthetic_mnist(tmp_path / "mnist", n_train=300, n_test=100)
    out = tmp_path / "run"
    peek = Peek(out, ("# prune:", "magnitude-blinded", "sparsity"))
    options = PruneOptions(data=str(data), arch="784-8-10", schedule="relative:0.5", target_sparsity=0.8,
                           dense_epochs=1, retrain_epochs=0, val_size=50)
    run_prune_mnist(options, out, on_round=peek)
    assert len(peek.seen) == 2
    shown = show(capsys, out)
    assert "finished" in shown and "Result:" in shown and "test_errors" in shown
    assert "seed 0\n" in shown and "preset" not in shown  # prune runs have no preset to show


def test_show_reproduce_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    peek = Peek(out, ("# reproduce: reber-rnn-pruning", "cell", "base_accuracy"))
    reproduce_reber_rnn_pruning(out, preset="smoke", executor="inline", on_progress=peek)
    assert len(peek.seen) == 2
    shown = show(capsys, out)
    assert "finished: 4 events" in shown and "Result:" in shown and "reber-rnn-pruning" in shown
    assert "seed 0, preset smoke" in shown


def test_show_counts_removed_neurons_apart_from_synapses(image: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A search with neuron_removal writes prune events that remove a whole neuron."""
    out = tmp_path / "run"
    _, _, run = image_runs.prepare(RunOptions("brightness", image=image, command="grow"), out, False)
    base = {"train_loss": 90.0, "val_loss": 91.0, "seconds": 1.0, "cycle": 0, "n_hidden": 8}
    run.rewind_history([
        {**base, "event": "start", "index": 0, "params": 79},
        {**base, "event": "prune", "index": 1, "params": 70, "neuron": ["hidden", 5], "trial_losses": [90.0]},
        {**base, "event": "prune", "index": 2, "params": 69, "synapse": ["input", 0, "hidden", 4], "trial_losses": [90.0]},
        {**base, "event": "prune", "index": 3, "params": 68, "synapse": ["input", 1, "hidden", 4], "trial_losses": [90.0]},
        {**base, "event": "grow", "index": 4, "params": 79},
    ])
    text = show(capsys, out)
    assert "(2 synapses removed, 1 neurons removed, 1 neurons added)" in text


def test_show_lists_every_method_of_a_table_compare_with_its_test_figure(tmp_path) -> None:
    import json

    from netbonsai.experiments.show import describe_run

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"command": "compare", "task_spec": "sklearn:wine", "preset": "quick"}))
    (run / "comparison.json").write_text(json.dumps({
        "ratios": [], "dense": [{"params": 50, "val_loss": 0.2}],
        "methods": {"grow": {"front": [{"params": 30, "val_loss": 0.1}], "median_ratio": 1.7, "median_gap": 0.25,
                             "test": {"params": 30, "loss": 0.12, "accuracy": 0.9722, "errors": 1}}},
        "dense_test": {"params": 50, "loss": 0.2, "accuracy": 0.9444, "errors": 2}}))
    text = describe_run(run)
    assert text.startswith("# compare: sklearn:wine")
    assert "| grow " in text and "accuracy 0.9722 (30 params)" in text and "+25.0%" in text
    assert "accuracy 0.9444 (50 params)" in text
