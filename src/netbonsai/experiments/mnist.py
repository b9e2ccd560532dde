"""Paper 000, Example 3: loss-aware synapse removal on MNIST with a 784-7(relu)-7(tanh)-10 network.

The paper trains the Keras network (5,631 parameters; Adam with Keras defaults, softmax
cross-entropy) to 711 test errors, then removes 2,749 synapses (49%) with its synapse-removal
algorithm, ending at 721 errors. :func:`reproduce_mnist_7_7` does the same with netbonsai:

1. a dense 784-7(relu)-7(tanh)-10 ``nn.Sequential`` with Keras' initialisation (Glorot-uniform
   weights, zero biases), trained with Adam (lr 1e-3, batch 32) on the training images minus a
   seeded held-out split, then converted exactly to a DagNet (:func:`from_sequential`);
2. :func:`netbonsai.prune.loss_aware.loss_aware_prune` on that DagNet: the paper's removal
   (normalised-magnitude candidates, exact loss of each removal, trial retraining, acceptance
   within ``(1 + eps)`` of the starting loss), removing a chunk of synapses per step;
3. the pruned network compacted and saved.

Every decision (acceptance of a removal step) is taken on the held-out part of the *training*
images (``val_size``); the test set is only evaluated for the report and history.

Run directory (a :class:`netbonsai.runs.RunContext` of kind ``mnist-7-7``): ``config.json``,
``history.jsonl`` (event ``dense``, one ``remove`` per accepted step with test errors every
``test_every`` steps, ``final``), ``checkpoint.pt`` (after the dense training and every accepted
step; ``resume=True`` continues), ``dense_model``, ``model`` (the compacted pruned network,
:func:`netbonsai.load`), ``report.md`` and ``result.json`` (with the ``environment`` it was
measured in).
"""

from __future__ import annotations

import copy

import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .. import __version__
from ..data.idx import resolve_data_root
from ..errors import InputError
from ..nets.convert import from_sequential
from ..nets.dag import DagNet
from ..nets.io import net_from_state, net_to_state, save
from ..prune.loss_aware import LossAwareConfig, LossAwareState, loss_aware_prune
from ..runs import MODEL, RunContext
from ..train import Budget, averaged_fit, fit
from ..data.specs import idx_task
from ..data.task import Task
from .presets import pick_preset, with_settings
from .classification import ACTIVATION_MODULES, adam_trainer, classification_errors

PRESETS = ("quick", "paper", "smoke")
PAPER = {"dense_params": 5631, "dense_test_errors": 711, "removed_synapses": 2749, "pruned_test_errors": 721}


@dataclass(frozen=True)
class MnistSettings:
    """One preset of the experiment (everything here goes into config.json)."""

    preset: str
    hidden: tuple[int, ...] = (7, 7)
    activations: tuple[str, ...] = ("relu", "tanh")
    dense_epochs: int = 20
    dense_seeds: int = 1  # train this many dense networks (seeds seed, seed+1, ...); prune the best on held-out loss
    lr: float = 1e-3  # Keras Adam default
    batch_size: int = 32  # Keras fit default
    val_size: int = 5000  # training images held out for the removal's decisions
    max_train: int | None = None  # subsample the remaining training images (smoke tests)
    max_test: int | None = None  # subsample the test images (smoke tests; the report says so)
    time_budget: float | None = None  # seconds for the whole call; the removal gets what is left
    reserve_seconds: float = 20.0  # kept back from the removal for the final evaluation and files
    test_every: int = 5  # test errors in history.jsonl every this many accepted steps (report only)
    threads: int | None = None  # torch intra-op threads during the call (None: leave as set, e.g. by --threads)
    polish_epochs: int = 0  # after the removal: fine-tune this many epochs, ending at the epochs' weight average
    polish_lr: float = 3e-4
    polish_batch_size: int = 32
    prune: LossAwareConfig = field(default_factory=LossAwareConfig)

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "prune"}
        data["hidden"], data["activations"] = list(self.hidden), list(self.activations)
        data["prune"] = self.prune.to_dict()
        return data


def mnist_settings(preset: str = "quick", overrides: dict[str, Any] | None = None) -> MnistSettings:
    """The settings of ``preset`` with ``overrides`` applied (keys of :class:`MnistSettings`;
    ``"prune"`` may be a dict of :class:`LossAwareConfig` fields, merged over the preset's).

    * ``quick``: four dense networks (seeds seed..seed+3) of 20 epochs each (Keras defaults, no
      L2), the one with the lowest held-out loss pruned by chunked removal: chunk 512
      halving down to 1, 3 trial variants of sizes chunk, chunk/2, chunk/4 retrained together
      for 2 epochs (Adam lr 1e-3, batch 128, L2 weight decay 1e-4), the starting network
      settled by the same 2 epochs first, candidates scored on 10,000 training images, eps
      0.015 on the held-out cross-entropy, stopping at 62% of the synapses removed (the issue's
      operating point: 60% removed at the dense network's error count); then a 4-epoch
      fine-tune (lr 3e-4, batch 32) ending at the average of its end-of-epoch weights (the
      dense network gets the same fine-tune as a control). The whole call is bounded to 14
      minutes. (Without
      the weight decay the removal converges at about 62% instead of 85% with a higher
      held-out loss; pass ``{"prune": {"trainer": {..., "weight_decay": 0.0}}}`` to compare.)
    * ``paper``: the paper's removal settings (one synapse per step, N1 = 8, N2 = 3,
      eps = 0.002), 60 dense epochs, no time bound (hours on 2 cores).
    * ``smoke``: a few seconds on 2,000 training images, for tests.
    """
    trainer = adam_trainer(1e-3, 32)
    settings = pick_preset(preset, {
        "quick": lambda: MnistSettings(
            preset="quick", dense_epochs=20, dense_seeds=4, polish_epochs=4, time_budget=840.0,
            prune=LossAwareConfig(
                chunk=512, n_candidates=8, candidate_factor=2.0, n_trials=3, variants="sizes", trial_epochs=2,
                settle_epochs=2, score_samples=10000, eps=0.015, reference="phase", regrow=True, max_fraction=0.62,
                trainer=adam_trainer(1e-3, 128, weight_decay=1e-4),
            ),
        ),
        "paper": lambda: MnistSettings(
            preset="paper", dense_epochs=60, test_every=50,
            prune=LossAwareConfig(
                chunk=1, n_candidates=8, n_trials=3, trial_epochs=1, eps=0.002, reference="phase", trainer=trainer,
            ),
        ),
        "smoke": lambda: MnistSettings(
            preset="smoke", dense_epochs=1, val_size=500, max_train=2000, max_test=2000, test_every=1,
            time_budget=120.0, reserve_seconds=5.0, threads=None,
            prune=LossAwareConfig(
                chunk=256, n_trials=2, trial_epochs=1, score_samples=1000, eps=0.05, max_steps=3,
                trainer=adam_trainer(1e-3, 64),
            ),
        ),
    })
    values = dict(overrides or {})
    if isinstance(values.get("prune"), dict):
        values["prune"] = LossAwareConfig.from_dict({**settings.prune.to_dict(), **values["prune"]})
    for name in ("hidden", "activations"):
        if name in values:
            values[name] = tuple(values[name])
    settings = with_settings(settings, values, "MNIST")
    _validate(settings)
    return settings


def _validate(settings: MnistSettings) -> None:
    if len(settings.hidden) != len(settings.activations) or not settings.hidden:
        raise InputError("need one activation per hidden layer")
    if settings.dense_seeds < 1:
        raise InputError(f"dense_seeds must be at least 1, got {settings.dense_seeds}")
    if settings.dense_epochs < 0 or settings.val_size < 1 or settings.test_every < 1:
        raise InputError("dense_epochs must be >= 0, val_size and test_every >= 1")
    if settings.polish_epochs < 0 or not settings.polish_lr > 0 or settings.polish_batch_size < 1:
        raise InputError("polish_epochs must be >= 0, polish_lr > 0 and polish_batch_size >= 1")
    if settings.time_budget is not None and not settings.time_budget > 0:
        raise InputError(f"time_budget must be > 0, got {settings.time_budget}")


# ---------------------------------------------------------------------- pieces
def keras_mlp(sizes: list[int], activations: tuple[str, ...], seed: int) -> nn.Sequential:
    """A dense MLP initialised like Keras ``Dense`` (Glorot-uniform weights, zero biases), seeded."""
    generator = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        linear = nn.Linear(a, b)
        with torch.no_grad():
            bound = (6.0 / (a + b)) ** 0.5
            linear.weight.copy_((torch.rand(b, a, generator=generator) * 2 - 1) * bound)
            linear.bias.zero_()
        layers.append(linear)
        if i < len(activations):
            if activations[i] not in ACTIVATION_MODULES:
                raise InputError(f"unknown activation {activations[i]!r}")
            layers.append(ACTIVATION_MODULES[activations[i]]())
    return nn.Sequential(*layers)


def _load(settings: MnistSettings, data_root: str | Path | None, seed: int) -> Task:
    """The images with a seeded held-out split of the training set (for decisions)."""
    if settings.val_size < 1:
        raise InputError(f"val_size must be at least 1, got {settings.val_size}")
    return idx_task(data_root, val_size=settings.val_size, seed=seed,
                                         max_train=settings.max_train, max_test=settings.max_test)


# ---------------------------------------------------------------------- the experiment
def reproduce_mnist_7_7(
    out_dir: str | Path,
    preset: str = "quick",
    data_root: str | Path | None = None,
    seed: int = 0,
    resume: bool = False,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train the dense 784-7-7-10 network, remove synapses loss-aware, write the run directory.

    Returns the summary also written to ``result.json``: ``dense_params``, ``dense_test_errors``,
    ``pruned_params``, ``pruned_test_errors``, ``removed_fraction`` (1 - pruned / dense
    parameters, the paper's measure: 2,749 of 5,631 is its 49%), ``wall_seconds`` and more.
    ``on_event`` receives every history event as it is written. ``overrides`` changes preset
    settings (see :func:`mnist_settings`).
    """
    started = time.perf_counter()
    settings = mnist_settings(preset, overrides)
    threads = torch.get_num_threads()
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    try:
        return _run(out_dir, settings, data_root, seed, resume, on_event, started)
    finally:
        torch.set_num_threads(threads)


def _run(out_dir, settings: MnistSettings, data_root, seed: int, resume: bool, on_event, started: float) -> dict[str, Any]:
    data = _load(settings, data_root, seed)
    sizes = [int(data.x_train.shape[1]), *settings.hidden, int(data.y_train.max()) + 1]
    prune_config = replace(settings.prune, seed=seed)
    config = {
        "experiment": "mnist-7-7",
        "netbonsai_version": __version__,
        "seed": seed,
        "data": str(resolve_data_root(data_root)),
        "split": data.describe(),
        "arch": "-".join(map(str, sizes)),
        **settings.to_dict(),
        "prune": prune_config.to_dict(),
        "decisions": "held-out training images (val); the test set is only reported",
        "paper": PAPER,
    }
    with RunContext(out_dir, config, kind="mnist-7-7", resume=resume) as ctx:
        return _prune(ctx, settings, data, sizes, prune_config, seed, on_event, started)


def _prune(ctx: RunContext, settings: MnistSettings, data: Task, sizes: list[int],
           prune_config: LossAwareConfig, seed: int, on_event, started: float) -> dict[str, Any]:
    saved = ctx.restore()
    previous_seconds = float(saved["seconds"]) if saved else 0.0
    clock = time.perf_counter()
    load_seconds = clock - started

    def elapsed() -> float:
        return previous_seconds + load_seconds + time.perf_counter() - clock

    def emit(event: dict[str, Any]) -> None:
        ctx.emit_event(event)
        if on_event is not None:
            on_event(event)

    # ---- dense network
    if saved is None:
        ctx.rewind_history([])
        candidates = []  # dense_seeds trainings; the lowest held-out loss is pruned (the test set only reports)
        for dense_seed in range(seed, seed + settings.dense_seeds):
            model = keras_mlp(sizes, settings.activations, dense_seed)
            dense_fit = fit(model, data.train, Budget(epochs=settings.dense_epochs),
                            adam_trainer(settings.lr, settings.batch_size), seed=dense_seed) if settings.dense_epochs else None
            held_out_errors, held_out_loss = classification_errors(model, data.x_val, data.y_val)
            candidates.append({"seed": dense_seed, "val_loss": held_out_loss, "val_errors": held_out_errors,
                               "test_errors": classification_errors(model, data.x_test, data.y_test)[0],
                               "model": model, "fit": dense_fit})
        chosen = min(candidates, key=lambda c: c["val_loss"])
        dense_fit = chosen["fit"]
        dense = from_sequential(chosen["model"])
        dense.info = {"task": "mnist", "arch": ctx.config["arch"], "activations": list(settings.activations)}
        errors, test_loss = classification_errors(dense, data.x_test, data.y_test)
        _, val_loss = classification_errors(dense, data.x_val, data.y_val)
        _, train_loss = classification_errors(dense, data.x_train, data.y_train)
        dense_event = {
            "event": "dense", "params": dense.num_params(), "removed": 0, "train_loss": train_loss,
            "val_loss": val_loss, "test_errors": errors, "test_loss": test_loss, "epochs": settings.dense_epochs,
            "seconds": elapsed(), "dense_seed": chosen["seed"],
        }
        if len(candidates) > 1:
            dense_event["dense_candidates"] = [{k: c[k] for k in ("seed", "val_loss", "val_errors", "test_errors")}
                                               for c in candidates]
        if dense_fit is not None:
            dense_event["fit_seconds"] = dense_fit.seconds
        emit(dense_event)
        state: LossAwareState | None = None
        ctx.checkpoint({"dense": net_to_state(dense), "dense_event": dense_event, "prune": None,
                        "seconds": elapsed()})
    else:
        dense = net_from_state(saved["dense"])
        dense_event = dict(saved["dense_event"])
        state = LossAwareState.from_dict(saved["prune"]) if saved["prune"] is not None else None
        events = [dense_event] + ([_remove_event(r) for r in state.steps] if state is not None else [])
        ctx.rewind_history(events)  # drop anything written after the checkpoint
    save(dense, ctx.file("dense_model"), info={"params": dense_event["params"], "test_errors": dense_event["test_errors"],
                                               "preprocessing": data.preprocessing})

    # ---- loss-aware removal (decisions on the held-out training images)
    if settings.time_budget is not None:
        left = settings.time_budget - settings.reserve_seconds - elapsed()
        # the removal's clock includes its earlier sessions; the whole call's clock does too
        limit = max(1e-3, left) + (state.seconds if state is not None else 0.0)
        if prune_config.max_seconds is not None:
            limit = min(prune_config.max_seconds, limit)
        prune_config = replace(prune_config, max_seconds=limit)

    def on_step(record: dict[str, Any], net: DagNet) -> dict[str, Any]:
        measure = "val_loss" if prune_config.decision == "loss" else "val_error_rate"
        extra: dict[str, Any] = {"event": "remove", measure: record["decision_loss"]}
        if record["step"] % settings.test_every == 0:
            extra["test_errors"], extra["test_loss"] = classification_errors(net, data.x_test, data.y_test)
        emit(_remove_event({**record, **extra, "seconds": elapsed()}))
        return extra

    def checkpoint(current: LossAwareState) -> None:
        ctx.checkpoint({"dense": net_to_state(dense), "dense_event": dense_event,
                        "prune": current.to_dict(), "seconds": elapsed()})

    result = loss_aware_prune(
        dense, data.x_train, data.y_train, prune_config, val_data=(data.x_val, data.y_val),
        on_step=on_step, checkpoint=checkpoint, state=state,
    )

    # ---- the final network, and the controls: the starting network after the same settling / polish
    settled = result.start_net if result.start_net is not None else dense
    settled_errors, _ = classification_errors(settled, data.x_test, data.y_test)
    final_net, polish = result.net, {}
    if settings.polish_epochs:
        polish_trainer = adam_trainer(settings.polish_lr, settings.polish_batch_size)
        polish_seed = seed * 1_000_003 + 424_242
        final_net = copy.deepcopy(result.net)
        averaged_fit(final_net, data.x_train, data.y_train, settings.polish_epochs, polish_trainer, seed=polish_seed)
        polished_dense = copy.deepcopy(settled)
        averaged_fit(polished_dense, data.x_train, data.y_train, settings.polish_epochs, polish_trainer, seed=polish_seed)
        polish = {"polish_epochs": settings.polish_epochs,
                  "unpolished_test_errors": classification_errors(result.net, data.x_test, data.y_test)[0],
                  "polished_dense_test_errors": classification_errors(polished_dense, data.x_test, data.y_test)[0]}
    pruned = final_net.compact()
    pruned_params = pruned.num_params()
    errors, test_loss = classification_errors(pruned, data.x_test, data.y_test)
    _, val_loss = classification_errors(pruned, data.x_val, data.y_val)
    _, train_loss = classification_errors(pruned, data.x_train, data.y_train)
    dense_params = int(dense_event["params"])
    live = int(result.net.mask[0].sum())
    summary = {
        "experiment": "mnist-7-7",
        "preset": settings.preset,
        "seed": seed,
        "dense_params": dense_params,
        "dense_test_errors": int(dense_event["test_errors"]),
        "dense_val_loss": dense_event["val_loss"],
        "settled_dense_test_errors": settled_errors,
        "settle_epochs": prune_config.settle_epochs,
        **polish,
        "pruned_params": pruned_params,
        "pruned_test_errors": errors,
        "pruned_val_loss": val_loss,
        "pruned_train_loss": train_loss,
        "removed_fraction": 1.0 - pruned_params / dense_params,
        "removed_synapses": result.removed,
        "removed_synapse_fraction": result.removed / max(1, result.start_live),
        "live_synapses": live,
        "hidden_neurons": pruned.n_hidden,
        "steps": len(result.steps),
        "retrainings": int(sum(len(r["tried"]) for r in result.steps) + len(result.last_tries)),
        "stop_reason": result.stop_reason,
        "prune_seconds": result.seconds,
        "n_test": int(data.x_test.shape[0]),
        "paper": PAPER,
        "wall_seconds": elapsed(),
    }
    final_event = {"event": "final", "params": pruned_params, "removed": result.removed, "train_loss": train_loss,
                   "val_loss": val_loss, "test_errors": errors, "test_loss": test_loss,
                   "stop_reason": result.stop_reason, "seconds": summary["wall_seconds"]}
    emit(final_event)
    save(pruned, ctx.file(MODEL), info={**dense.info, "preprocessing": data.preprocessing, "params": pruned_params,
                                        "test_errors": errors,
                                        "removed_synapses": result.removed, "preset": settings.preset, "seed": seed})
    summary["wall_seconds"] = elapsed()
    ctx.write_result(summary)
    _report(ctx, settings, summary, dense_event, run_events(result.steps))
    return summary


def _remove_event(record: dict[str, Any]) -> dict[str, Any]:
    """A history line for one accepted removal step (the per-try details stay in the checkpoint)."""
    keep = ("event", "step", "removed", "params", "live", "train_loss", "val_loss", "val_error_rate", "test_errors",
            "test_loss", "chunk", "failed", "seconds")
    event = {k: record[k] for k in keep if k in record}
    event.setdefault("event", "remove")
    return event


def run_events(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [_remove_event(r) for r in steps]


def _report(ctx: RunContext, settings: MnistSettings, summary: dict[str, Any], dense_event: dict[str, Any],
            events: list[dict[str, Any]]) -> None:
    from ..analysis.report import markdown_table

    n_test = summary["n_test"]
    headline = [
        ["paper 000 (Keras)", PAPER["dense_params"], PAPER["dense_test_errors"],
         PAPER["dense_params"] - PAPER["removed_synapses"], PAPER["pruned_test_errors"],
         f"{PAPER['removed_synapses'] / PAPER['dense_params']:.1%}", ""],
        [f"netbonsai ({settings.preset})", summary["dense_params"], summary["dense_test_errors"],
         summary["pruned_params"], summary["pruned_test_errors"], f"{summary['removed_fraction']:.1%}",
         f"{summary['wall_seconds']:.0f}"],
    ]
    held_out = "val_loss" if settings.prune.decision == "loss" else "val_error_rate"
    progress = [[e["step"], e["removed"], e["params"], f"{e['train_loss']:.4f}", f"{e.get(held_out, float('nan')):.4f}",
                 e.get("test_errors", ""), e["chunk"], e["failed"], f"{e['seconds']:.0f}"] for e in events]
    text = (
        f"# MNIST 784-7(relu)-7(tanh)-10: loss-aware synapse removal (paper 000, Example 3)\n\n"
        f"Preset `{settings.preset}`, seed {summary['seed']}. Dense network: Keras initialisation, Adam "
        f"(lr {settings.lr}, batch {settings.batch_size}), {settings.dense_epochs} epochs on "
        f"{ctx.config['split']['n_train']} training images; {settings.val_size} training images held out "
        f"for the removal's acceptance test. Test errors are out of {n_test} test images and were never used "
        f"for a decision. Removed fraction = 1 - pruned / dense parameters (the paper's 49% is "
        f"2,749 of 5,631).\n\n"
        + markdown_table(["", "dense params", "dense test errors", "pruned params", "pruned test errors",
                          "removed", "wall s"], headline)
        + f"\n\nControl: the dense network after the removal's settling retraining ({summary['settle_epochs']} "
          f"epochs with the trial trainer, no synapse removed) makes {summary['settled_dense_test_errors']} test "
          f"errors; the removal's reference loss is taken on it.\n"
        + (f"\nPolish: after the removal, {summary['polish_epochs']} epochs (Adam lr {settings.polish_lr}, batch "
           f"{settings.polish_batch_size}) ending at the average of the end-of-epoch weights: "
           f"{summary['unpolished_test_errors']} -> {summary['pruned_test_errors']} test errors. The dense network "
           f"with the same polish (a control) makes {summary['polished_dense_test_errors']}.\n"
           if summary.get("polish_epochs") else "")
        + f"\nStopped by `{summary['stop_reason']}` after {summary['steps']} accepted steps "
          f"({summary['retrainings']} trial retrainings); {summary['removed_synapses']} synapses removed, "
          f"{summary['hidden_neurons']} hidden neurons left.\n\n## Accepted steps\n\n"
        + markdown_table(["step", "removed", "params", "train loss", held_out.replace("_", " "), "test errors",
                          "chunk", "failed tries", "seconds"], progress)
        + "\n![test errors against parameters](errors.png)\n"
    )
    from ..analysis.plots import curve_plot

    measured = [dense_event] + [e for e in events if "test_errors" in e]
    measured.append({"params": summary["pruned_params"], "test_errors": summary["pruned_test_errors"]})
    curve_plot({"MNIST 784-7-7-10: loss-aware removal": {"netbonsai": measured}}, ctx.file("errors.png"),
               x="params", ys={"test_errors": "test errors"}, xlabel="parameters", ylabel="test errors (of 10,000)")
    ctx.write_report(text)
