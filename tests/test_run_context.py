"""One run lifecycle for every MNIST and Reber experiment (:class:`netbonsai.runs.RunContext`).

Each experiment, at the smallest settings its own tests use: config.json records the run's
``kind`` and the config ``schema``; result.json records the ``environment`` (CPU model, torch's
CPU capability, threads, versions); a ``--resume`` with a changed setting is refused and the
message names the setting's dotted key; ``show`` prints the kind; and a run directory written
before ``kind``/``schema`` existed still resumes.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import pytest

from experiments.synthetic_idx import write_synthetic_mnist  # tests/ is on sys.path
from netbonsai.errors import InputError
from netbonsai.experiments.mnist import reproduce_mnist_7_7
from netbonsai.experiments.mnist_methods import MethodsSettings, reproduce_mnist_pruning_methods
from netbonsai.experiments.mnist_pruning import PruneOptions, run_prune_mnist
from netbonsai.experiments.reber import (
    pruning_settings,
    reproduce_reber_rnn_pruning,
    reproduce_reber_structure_prediction,
    structure_settings,
)
from netbonsai.experiments.show import describe_run
from netbonsai.runs import SCHEMA_VERSION

# ---------------------------------------------------------------------- the experiments, tiny
# run(out, data folder, resume, changed): changed=True alters the setting named in CASES


def _prune_options(folder: Path, changed: bool, **extra: Any) -> PruneOptions:
    base = dict(data=str(folder), arch="784-16-10", schedule="relative:0.5", target_sparsity=0.9,
                dense_epochs=2, retrain_epochs=1, batch_size=64, val_size=200, obd_samples=256)
    return PruneOptions(**{**base, **extra, **({"lr": 2e-3} if changed else {})})


def _prune(out: Path, folder: Path, resume: bool, changed: bool) -> dict:
    return run_prune_mnist(_prune_options(folder, changed), out, resume=resume)


def _loss_aware(out: Path, folder: Path, resume: bool, changed: bool) -> dict:
    options = _prune_options(folder, False, arch="784-8-10", method="loss-aware", schedule="fixed:2000",
                             target_sparsity=0.5, eps=0.1 if changed else 0.05, max_rounds=2)
    return run_prune_mnist(options, out, resume=resume)


def _mnist_7_7(out: Path, folder: Path, resume: bool, changed: bool) -> dict:
    return reproduce_mnist_7_7(out, preset="smoke", data_root=folder, seed=0, resume=resume,
                               overrides={"prune": {"max_steps": 1, **({"eps": 0.1} if changed else {})}})


TINY_METHODS = MethodsSettings("quick", dense_epochs=1, retrain_epochs=1, batch_size=32, val_size=200,
                               obd_samples=128, archs=("784-12-10",), methods=("magnitude-blinded",),
                               levels=(0.0, 0.5))


def _methods(out: Path, folder: Path, resume: bool, changed: bool) -> dict:
    settings = replace(TINY_METHODS, retrain_epochs=2) if changed else TINY_METHODS
    return reproduce_mnist_pruning_methods(out, data_root=str(folder), executor="inline", resume=resume,
                                           settings=settings)


def _reber_pruning(out: Path, folder: Path, resume: bool, changed: bool) -> dict:
    settings = pruning_settings("smoke", cells=("gru",))
    if changed:
        settings = replace(settings, training=replace(settings.training, lr=2e-3))
    return reproduce_reber_rnn_pruning(out, executor="inline", resume=resume, settings=settings)


def _reber_structures(out: Path, folder: Path, resume: bool, changed: bool) -> dict:
    settings = structure_settings("smoke")
    if changed:
        settings = replace(settings, training=replace(settings.training, lr=2e-3))
    return reproduce_reber_structure_prediction(out, executor="inline", resume=resume, settings=settings)


# kind, runner, the dotted key that the changed run alters
CASES: dict[str, tuple[str, Callable[..., dict], str]] = {
    "prune": ("prune", _prune, "lr"),
    "prune-loss-aware": ("prune", _loss_aware, "eps"),
    "mnist-7-7": ("mnist-7-7", _mnist_7_7, "prune.eps"),
    "mnist-pruning-methods": ("mnist-pruning-methods", _methods, "retrain_epochs"),
    "reber-rnn-pruning": ("reber-rnn-pruning", _reber_pruning, "training.lr"),
    "reber-structure-prediction": ("reber-structure-prediction", _reber_structures, "training.lr"),
}


@pytest.fixture(scope="module")
def idx_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_mnist(tmp_path_factory.mktemp("idx") / "mnist", n_train=800, n_test=200)


@pytest.mark.parametrize("name", list(CASES))
def test_every_experiment_records_kind_schema_and_environment_and_refuses_a_changed_resume(
    name: str, idx_folder: Path, tmp_path: Path
) -> None:
    kind, run, changed_key = CASES[name]
    out = tmp_path / "run"
    run(out, idx_folder, False, False)

    config = json.loads((out / "config.json").read_text())
    assert config["kind"] == kind and config["schema"] == SCHEMA_VERSION
    result = json.loads((out / "result.json").read_text())
    environment = result["environment"]
    assert {"cpu", "torch_threads", "cpu_capability", "torch", "python"} <= set(environment)
    assert isinstance(environment["torch_threads"], int) and environment["torch_threads"] >= 1
    assert all((out / name).exists() for name in ("report.md", "history.jsonl", "checkpoint.pt"))
    assert f"kind: {kind}" in describe_run(out)

    # a changed setting: refused, the message names its dotted key (and not the recorded-only keys)
    files = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with pytest.raises(InputError, match="configuration differs") as refused:
        run(out, idx_folder, True, True)
    differing = str(refused.value).rsplit("(", 1)[1].rstrip(")").split(", ")
    assert differing == [changed_key], str(refused.value)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == files  # nothing touched


@pytest.mark.parametrize("name", ["prune", "reber-rnn-pruning"])
def test_a_run_written_before_kind_and_schema_existed_still_resumes(name: str, idx_folder: Path,
                                                                   tmp_path: Path) -> None:
    kind, run, _ = CASES[name]
    out = tmp_path / "run"
    first = run(out, idx_folder, False, False)
    config = json.loads((out / "config.json").read_text())
    old = {k: v for k, v in config.items() if k not in ("kind", "schema")}
    (out / "config.json").write_text(json.dumps(old, indent=2) + "\n")
    (out / "result.json").unlink()
    again = run(out, idx_folder, True, False)
    assert ({k: v for k, v in again.items() if "seconds" not in k}
            == {k: v for k, v in first.items() if "seconds" not in k})
    assert "environment" in json.loads((out / "result.json").read_text())
    assert json.loads((out / "config.json").read_text()) == old  # a resume never rewrites config.json
    assert "kind:" not in describe_run(out)
