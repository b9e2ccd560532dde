"""``netbonsai prune mnist``: train a dense MLP on an MNIST-style folder, prune it on a schedule.

The run directory (a :class:`netbonsai.runs.RunContext` of kind ``prune``) holds config.json,
history.jsonl (one object per round: sparsity, params, validation and test accuracy, test
errors, training loss), checkpoint.pt (after the dense training and after every round, so
``--resume`` continues a killed run), the compacted final model (``model``, loadable with
``netbonsai.load``), result.json (with the ``environment`` it was measured in), report.md and
accuracy.png.

Decisions (the accuracy-drop tolerance) use a validation split held out from the training
images; the test set is only reported.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .. import __version__
from ..data.idx import load_mnist, resolve_data_root
from ..errors import InputError
from ..nets.compact import compact_mlp, compacted_params
from ..nets.convert import from_sequential
from ..nets.io import net_from_state, net_to_state, save
from ..nets.masked import make_prunable
from ..prune import METHODS, classification_evaluator, parse_schedule, retrainer, run_schedule
from ..prune.schedules import ScheduleResult
from ..runs import MODEL, RunContext
from ..data.specs import idx_task
from ..data.task import Task
from .classification import adam_trainer, build_mlp, parse_arch, train_classifier

PRUNE_METHODS = tuple(m for m in METHODS) + ("loss-aware",)


@dataclass
class PruneOptions:
    """Everything ``netbonsai prune mnist`` needs (plain values: written to config.json)."""

    data: str | None = None
    arch: str = "784-300-100-10"
    activation: str = "relu"
    method: str = "magnitude-blinded"
    schedule: str = "relative:0.2"
    target_sparsity: float | None = 0.9
    max_accuracy_drop: float | None = None  # on the validation split, absolute (0.01 = one point)
    dense_epochs: int = 10
    retrain_epochs: int = 1
    lr: float = 1e-3
    batch_size: int = 64
    weight_decay: float = 0.0  # Adam's L2 penalty, dense training and retraining
    val_size: int = 5000
    max_train: int | None = None
    obd_samples: int = 2048  # training samples the OBD curvature estimate uses
    max_rounds: int = 200
    max_seconds: float | None = None  # loss-aware: stop starting removal steps after this long
    score_samples: int = 10000  # loss-aware: training images on which each candidate removal is scored
    eps: float = 0.015  # loss-aware: accept a step while held-out loss <= (1 + eps) * the starting loss
    seed: int = 0
    extras: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Raise InputError on any out-of-range value (before anything is written)."""
        if self.method not in PRUNE_METHODS:
            raise InputError(f"unknown pruning method {self.method!r}; choose one of {', '.join(PRUNE_METHODS)}")
        parse_schedule(self.schedule)
        parse_arch(self.arch)
        if self.target_sparsity is not None and not 0.0 < self.target_sparsity <= 1.0:
            raise InputError(f"--target-sparsity must be in (0, 1], got {self.target_sparsity}")
        if self.max_accuracy_drop is not None and not 0.0 <= self.max_accuracy_drop <= 1.0:
            raise InputError(f"--max-accuracy-drop must be in [0, 1], got {self.max_accuracy_drop}")
        for name in ("dense_epochs", "retrain_epochs"):
            if getattr(self, name) < 0:
                raise InputError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if not self.weight_decay >= 0:
            raise InputError(f"--weight-decay must be >= 0, got {self.weight_decay}")
        if not 0 < self.lr < float("inf") or self.batch_size < 1 or self.obd_samples < 1 or self.max_rounds < 1:
            raise InputError("lr, batch size, obd samples and max rounds must be positive")
        if not 0.0 <= self.eps < 1.0:
            raise InputError(f"--eps must be in [0, 1), got {self.eps}")
        if self.method == "loss-aware" and parse_schedule(self.schedule).kind not in ("fixed", "relative"):
            raise InputError("--method loss-aware takes a fixed:COUNT or relative:FRACTION schedule (the chunk size)")
        if self.seed < 0:
            raise InputError(f"--seed must be >= 0, got {self.seed}")
        if self.val_size < 1:
            raise InputError(f"--val-size must be at least 1 (decisions need held-out images), got {self.val_size}")
        if self.seed > 2**32 - 1:
            raise InputError(f"--seed must be below 2**32, got {self.seed}")
        if self.method == "loss-aware" and self.max_accuracy_drop is not None:
            raise InputError("--max-accuracy-drop applies to the schedule methods; loss-aware stops by --eps")
        if self.method == "loss-aware" and self.retrain_epochs < 1:
            raise InputError("--method loss-aware retrains every trial: --retrain-epochs must be at least 1")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise InputError(f"--max-seconds must be positive, got {self.max_seconds}")
        if self.max_train is not None and self.max_train < 1:
            raise InputError(f"max_train must be at least 1, got {self.max_train}")


KIND = "prune"  # the run kind in config.json


def _config(options: PruneOptions, data: Task) -> dict[str, Any]:
    return {"command": "prune", "task": "mnist", "netbonsai_version": __version__, **asdict(options),
            "data": str(resolve_data_root(options.data)), "split": data.describe()}


def load_classification(options: PruneOptions) -> Task:
    """The data folder's images with a seeded validation split, checked against the architecture."""
    mnist = load_mnist(options.data)
    data = idx_task(options.data, data=mnist, val_size=options.val_size, seed=options.seed, max_train=options.max_train)
    widths = parse_arch(options.arch)
    n_in, n_classes = data.x_train.shape[1], int(mnist.y_train.max()) + 1
    if widths[0] != n_in:
        raise InputError(f"--arch starts with {widths[0]} inputs but the images have {n_in} pixels")
    if widths[-1] < n_classes:
        raise InputError(f"--arch ends with {widths[-1]} outputs but the labels have {n_classes} classes")
    return data


def _evaluator(data: Task) -> Callable[[nn.Module], dict]:
    """Validation accuracy (decisions), test accuracy and errors (report), training loss."""
    on_val = classification_evaluator(data.x_val, data.y_val)
    on_test = classification_evaluator(data.x_test, data.y_test)
    on_train = classification_evaluator(data.x_train, data.y_train)

    def evaluate(model: nn.Module) -> dict:
        val, test, train = on_val(model), on_test(model), on_train(model)
        n_test = data.x_test.shape[0]
        return {
            "val_accuracy": val["accuracy"],
            "test_accuracy": test["accuracy"],
            "test_errors": int(round((1.0 - test["accuracy"]) * n_test)),
            "train_loss": train["loss"],
            "train_accuracy": train["accuracy"],
        }

    return evaluate


def run_prune_mnist(
    options: PruneOptions, out: str | Path, resume: bool = False, on_round: Callable[[dict], None] | None = None
) -> dict[str, Any]:
    """Train, prune and compact; returns the summary written to result.json."""
    options.validate()
    if options.method == "loss-aware":
        return run_loss_aware_mnist(options, out, resume=resume, on_round=on_round)
    started = time.perf_counter()
    data = load_classification(options)
    with RunContext(out, _config(options, data), kind=KIND, resume=resume) as ctx:
        return _run_schedule(ctx, options, data, started, on_round)


# a dense training longer than this is checkpointed (at most this often) so that --resume continues it
DENSE_SNAPSHOT_SECONDS = 20.0


def train_dense(ctx: RunContext, checkpoint: dict | None, model: nn.Module, data: Task, options: PruneOptions,
                trainer) -> float:
    """Train the dense network in place, continuing a partial training the checkpoint holds, and
    checkpoint it every :data:`DENSE_SNAPSHOT_SECONDS` (so a killed run loses at most that much
    and resumes to the same network); returns its training seconds over all sessions."""
    partial = checkpoint.get("dense_training") if checkpoint else None
    last = [time.perf_counter()]
    started = time.perf_counter() - (float(partial["seconds"]) if partial else 0.0)

    def snapshot(state: dict) -> None:
        if time.perf_counter() - last[0] >= DENSE_SNAPSHOT_SECONDS:
            ctx.checkpoint({"dense_training": state})
            last[0] = time.perf_counter()

    train_classifier(model, data.x_train, data.y_train, options.dense_epochs, trainer, seed=options.seed,
                     snapshot=snapshot, resume_from=partial)
    return time.perf_counter() - started


def _run_schedule(ctx: RunContext, options: PruneOptions, data: Task, started: float,
                  on_round: Callable[[dict], None] | None) -> dict[str, Any]:
    torch.manual_seed(options.seed)
    model = make_prunable(build_mlp(parse_arch(options.arch), options.activation, seed=options.seed))
    trainer = adam_trainer(options.lr, options.batch_size, options.weight_decay)
    checkpoint = ctx.restore()
    previous = None
    generator = torch.Generator().manual_seed(options.seed)
    if checkpoint is not None and "dense_training" not in checkpoint:  # the dense network is trained
        model.load_state_dict(checkpoint["model"])
        generator.set_state(checkpoint["generator"])
        if checkpoint["records"]:
            previous = ScheduleResult(records=list(checkpoint["records"]), final_round=checkpoint["final_round"])
        ctx.rewind_history(previous.records if previous is not None else [])  # drop lines after the checkpoint
        elapsed = float(checkpoint["seconds"])
    else:
        ctx.rewind_history([])
        elapsed = train_dense(ctx, checkpoint, model, data, options, trainer)
        ctx.checkpoint({"model": model.state_dict(), "records": [], "final_round": 0,
                        "generator": generator.get_state(), "seconds": elapsed})
    clock = time.perf_counter()

    def round_done(record: dict) -> None:
        record["seconds"] = round(elapsed + time.perf_counter() - clock, 3)
        record["event"] = "round"
        ctx.emit_event(record)
        if on_round is not None:
            on_round(record)

    def checkpoint_round(result: ScheduleResult) -> None:
        ctx.checkpoint({"model": model.state_dict(), "records": result.records, "final_round": result.final_round,
                        "generator": generator.get_state(), "seconds": elapsed + time.perf_counter() - clock})

    obd_data = (data.x_train[: options.obd_samples], data.y_train[: options.obd_samples])
    done_rounds = 0 if previous is None else previous.final_round
    # round r retrains with seed + r, so a resumed run sees the minibatch orders of an uninterrupted one
    retrain = retrainer(data.x_train, data.y_train, epochs=options.retrain_epochs, lr=options.lr,
                        batch_size=options.batch_size, weight_decay=options.weight_decay,
                        seed=options.seed + 1 + done_rounds)
    result = run_schedule(
        model, options.method, options.schedule,
        evaluate=_evaluator(data), retrain=retrain if options.retrain_epochs else None,
        data=obd_data, target_sparsity=options.target_sparsity, max_accuracy_drop=options.max_accuracy_drop,
        metric="val_accuracy", on_round=round_done, max_rounds=options.max_rounds,
        generator=generator, resume_from=previous, on_checkpoint=checkpoint_round,
    )
    compact = compact_mlp(model)
    net = from_sequential(model).compact()  # the masks come along: the file stores live synapses only
    final = result.final
    summary = {
        "method": options.method,
        "schedule": options.schedule,
        "arch": options.arch,
        "stopped": result.stopped,
        "dense_params": result.records[0]["params"],
        "dense_test_errors": result.records[0]["test_errors"],
        "dense_test_accuracy": result.records[0]["test_accuracy"],
        "final_round": result.final_round,
        "sparsity": final["sparsity"],
        "params": final["params"],
        "compacted_params": compacted_params(compact),
        "model_params": net.num_params(),
        "compacted_shape": [compact[0].in_features] + [m.out_features for m in compact if isinstance(m, nn.Linear)],
        "test_accuracy": final["test_accuracy"],
        "test_errors": final["test_errors"],
        "wall_seconds": time.perf_counter() - started,
    }
    save(net, ctx.file(MODEL), info={"task": "mnist", "arch": options.arch, "method": options.method,
                                     "test_accuracy": final["test_accuracy"], "preprocessing": data.preprocessing})
    ctx.write_result(summary)
    _report(ctx, options, result, summary)
    return summary


def _report(ctx: RunContext, options: PruneOptions, result: ScheduleResult, summary: dict[str, Any]) -> None:
    from ..analysis.plots import curve_plot
    from ..analysis.report import markdown_table

    rows = [[r["round"], f"{r['sparsity']:.4f}", r["params"], f"{r['val_accuracy']:.4f}", f"{r['test_accuracy']:.4f}",
             r["test_errors"], f"{r['train_loss']:.4f}", "rolled back" if r.get("rolled_back") else ""]
            for r in result.records]
    kept = [r for r in result.records if not r.get("rolled_back")]
    curve_plot({f"{options.arch}: {options.method}, {options.schedule}": {options.method: kept}}, ctx.file("accuracy.png"),
               x="sparsity", ys={"test_accuracy": "test", "val_accuracy": "validation"}, ylabel="accuracy")
    ctx.write_report(
        f"# netbonsai prune mnist: {options.arch}, {options.method}, {options.schedule}\n\n"
        f"Dense: {summary['dense_params']} parameters, {summary['dense_test_errors']} test errors. "
        f"Final (round {summary['final_round']}, stopped: {summary['stopped']}): sparsity {summary['sparsity']:.4f}, "
        f"{summary['params']} live parameters; the saved DagNet holds {summary['model_params']}"
        + (f"; as dense layers the compacted shape {'-'.join(map(str, summary['compacted_shape']))} stores "
           f"{summary['compacted_params']}" if "compacted_shape" in summary else "")
        + f"; {summary['test_errors']} test errors. "
        f"Wall time {summary['wall_seconds']:.1f} s.\n\n"
        + markdown_table(["round", "sparsity", "params", "val acc", "test acc", "test errors", "train loss", ""], rows)
        + "\n![accuracy](accuracy.png)\n",
    )


def run_loss_aware_mnist(
    options: PruneOptions, out: str | Path, resume: bool = False, on_round: Callable[[dict], None] | None = None
) -> dict[str, Any]:
    """``--method loss-aware``: paper 000's synapse removal on the trained MLP (as a DagNet).

    The schedule sets the chunk (``fixed:512`` removes up to 512 synapses a step, halving when a
    step fails; ``relative:0.1`` starts at 10% of the live synapses); ``--retrain-epochs`` is
    each trial retraining; ``--target-sparsity`` bounds the removal; ``--eps`` is the tolerance
    on the held-out loss. Every accepted step is one history round.
    """
    started = time.perf_counter()
    data = load_classification(options)
    with RunContext(out, _config(options, data), kind=KIND, resume=resume) as ctx:
        return _run_loss_aware(ctx, options, data, started, on_round)


def _run_loss_aware(ctx: RunContext, options: PruneOptions, data: Task, started: float,
                    on_round: Callable[[dict], None] | None) -> dict[str, Any]:
    from ..prune.loss_aware import LossAwareConfig, LossAwareState, loss_aware_prune

    evaluate = _evaluator(data)
    checkpoint = ctx.restore()
    if checkpoint is None or "dense_training" in checkpoint:
        model = make_prunable(build_mlp(parse_arch(options.arch), options.activation, seed=options.seed))
        train_dense(ctx, checkpoint, model, data, options, adam_trainer(options.lr, options.batch_size, options.weight_decay))
        dense = from_sequential(model)
        checkpoint, state = None, None
    else:
        dense = net_from_state(checkpoint["dense"])
        state = LossAwareState.from_dict(checkpoint["prune"]) if checkpoint["prune"] is not None else None
    total = int(dense.mask[0].sum())
    plan = parse_schedule(options.schedule)
    chunk = int(plan.value) if plan.kind == "fixed" else max(1, int(plan.value * total))
    config = LossAwareConfig(
        chunk=chunk, trial_epochs=options.retrain_epochs, eps=options.eps, seed=options.seed,
        max_fraction=options.target_sparsity, max_steps=options.max_rounds, max_seconds=options.max_seconds,
        score_samples=min(options.score_samples, int(data.x_train.shape[0])),
        trainer=adam_trainer(options.lr, options.batch_size, options.weight_decay),
    )

    def record(net, round_: int, removed: int, extra: dict | None = None) -> dict:
        live = int(net.mask[0].sum())
        entry = {"round": round_, "sparsity": 1.0 - live / total, "params": net.num_params(),
                 "live_weights": live, "removed": removed, **evaluate(net), **(extra or {}),
                 "seconds": round(time.perf_counter() - started, 3), "event": "round"}
        if on_round is not None:
            on_round(entry)
        return entry

    if checkpoint is None:
        ctx.rewind_history([])
        records = [ctx.emit_event(record(dense, 0, 0))]
    else:
        records = list(checkpoint["records"])
        ctx.rewind_history(records)  # drop lines after the checkpoint

    def on_step(step: dict, net) -> None:
        previous = records[-1]["live_weights"]
        entry = record(net, len(records), previous - int(net.mask[0].sum()), {"chunk": step["chunk"]})
        records.append(entry)
        ctx.emit_event(entry)

    def save_state(current: LossAwareState) -> None:
        ctx.checkpoint({"dense": net_to_state(dense), "prune": current.to_dict(), "records": records})

    if checkpoint is None:
        ctx.checkpoint({"dense": net_to_state(dense), "prune": None, "records": records})
    result = loss_aware_prune(dense, data.x_train, data.y_train, config, val_data=(data.x_val, data.y_val),
                              on_step=on_step, checkpoint=save_state, state=state)
    net = result.net.compact()
    final = records[-1]
    summary = {
        "method": options.method, "schedule": options.schedule, "arch": options.arch, "stopped": result.stop_reason,
        "dense_params": records[0]["params"], "dense_test_errors": records[0]["test_errors"],
        "dense_test_accuracy": records[0]["test_accuracy"], "final_round": final["round"],
        "sparsity": final["sparsity"], "params": final["params"],
        "model_params": net.num_params(), "hidden_neurons": net.n_hidden,
        "test_accuracy": final["test_accuracy"], "test_errors": final["test_errors"],
        "wall_seconds": time.perf_counter() - started,
    }
    save(net, ctx.file(MODEL), info={"task": "mnist", "arch": options.arch, "method": options.method,
                                     "test_accuracy": final["test_accuracy"], "preprocessing": data.preprocessing})
    ctx.write_result(summary)
    _report(ctx, options, ScheduleResult(records=records, stopped=result.stop_reason, final_round=final["round"]), summary)
    return summary
