"""Paper 002 on MNIST: the Surgeon from insufficient, good and oversized starting MLPs.

``netbonsai reproduce surgeon-mnist`` runs, for every start (784-10-10-10-10-10 and 784-4-10:
insufficient; 784-128-64-10: good; 784-512-512-512-10: oversized) and every optimiser (plain
SGD at lr 0.005, batch 32, as the authors ran it; Adam), three trainings of the same main-line
epochs:

- ``surgeon``: the Surgeon (:mod:`netbonsai.surgery.surgeon`) from the start;
- ``same_start``: the start trained alone for all the epochs;
- ``final_shape_scratch``: a fresh MLP of the Surgeon's final shape trained for all the epochs.

The Surgeon runs under each of ``rules``: ``authors`` (the authors' code: the two best-scoring
children train on, the best-scoring survivor is kept) and ``netbonsai`` (the best-scoring child
and the most recommended edit train on, the smallest survivor within 0.2 points of the most
accurate is kept, added neurons get noise of their weights' scale, and no child is larger than
``budget`` parameters or the start, whichever is larger): the authors' score never lets an exact growth
edit train on, so their rules cannot widen an insufficient start (docs/RESULTS.md).

Each (start, optimiser) pair is one executor job (a local process pool by default; each worker
loads the images itself), checkpointed when it ends, so ``--resume`` runs only the others.
Validation images (held out of the training images, seeded) drive every decision of the
Surgeon; test accuracy is measured once, at the end. ReLU networks on pixels in [0, 1].
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..data.idx import resolve_data_root
from ..data.specs import idx_task
from ..data.task import Task
from ..errors import InputError
from ..runs import RunContext
from ..nets.dag_build import mlp_params
from ..nets.io import save
from ..surgery.mlp import count_params, dag_from_mlp, hidden_widths, layer_sizes, make_mlp
from ..surgery.state import mlp_from_state, mlp_to_state
from ..surgery.surgeon import SurgeonSettings, run_surgeon, train_job
from ..train import Budget, TrainerConfig
from .presets import reproduce_config

KIND = "surgeon-mnist"
STARTS = ((10, 10, 10, 10), (4,), (128, 64), (512, 512, 512))  # 784-10-10-10-10-10, 784-4-10, ...
OPTIMIZERS = ("sgd", "adam")
# the Surgeon's rule sets: the authors' code, and netbonsai's (see the module docstring)
RULES: dict[str, dict[str, Any]] = {
    "authors": {},
    "netbonsai": {"branch": "recommended", "keep": "smallest", "tolerance": 0.002, "noise": 1.0},
}


@dataclass(frozen=True)
class SurgeonMnistSettings:
    """One preset: the data, the optimisers and the Surgeon's schedule."""

    max_train: int | None = None  # training images (None: all but the validation ones)
    val_size: int = 10_000
    max_test: int | None = None
    starts: tuple[tuple[int, ...], ...] = STARTS
    optimizers: tuple[str, ...] = OPTIMIZERS
    sgd_lr: float = 0.005  # the authors' plain SGD
    adam_lr: float = 1e-3
    batch_size: int = 32
    first_epochs: int = 10
    cycle_epochs: int = 10
    total_epochs: int = 100
    retries: int = 3
    branches: int = 2
    rule: str = "threshold"
    rules: tuple[str, ...] = ("authors", "netbonsai")
    budget: int | None = 30_000  # netbonsai rules: no child above this or the start's size, whichever is larger

    def __post_init__(self) -> None:
        if (self.total_epochs - self.first_epochs) % self.cycle_epochs:
            raise InputError(f"total_epochs - first_epochs ({self.total_epochs - self.first_epochs}) must be a whole "
                             f"number of cycles of {self.cycle_epochs} epochs: every training gets the same epochs")
        if not self.rules or any(r not in RULES for r in self.rules):
            raise InputError(f"rules must name some of {', '.join(RULES)}, got {self.rules!r}")
        if not self.starts or any(not s or min(s) < 1 for s in self.starts):
            raise InputError("every start needs at least one positive hidden width")
        for name in self.optimizers:
            if name not in OPTIMIZERS:
                raise InputError(f"unknown optimiser {name!r}; choose from {', '.join(OPTIMIZERS)}")
        self.surgeon()  # the Surgeon's own checks

    def surgeon(self, rules: str = "authors", start_params: int | None = None) -> SurgeonSettings:
        """The Surgeon's settings under ``rules`` for a start of ``start_params`` parameters."""
        extra = dict(RULES[rules])
        if rules != "authors" and self.budget is not None:
            extra["max_params"] = max(self.budget, start_params or 0)
        return SurgeonSettings(first_epochs=self.first_epochs, cycle_epochs=self.cycle_epochs,
                               total_epochs=self.total_epochs, retries=self.retries, branches=self.branches,
                               rule=self.rule, **extra)

    def trainer(self, optimizer: str) -> TrainerConfig:
        lr = self.sgd_lr if optimizer == "sgd" else self.adam_lr
        return TrainerConfig(method=optimizer, loss="cross_entropy", lr=lr, batch_size=self.batch_size)


PRESETS: dict[str, SurgeonMnistSettings] = {
    # about 20 minutes on 2 cores: 20,000 training images, 20 epochs (4 first, 4 cycles of 4),
    # one retry per cycle
    "quick": SurgeonMnistSettings(max_train=20_000, first_epochs=4, cycle_epochs=4, total_epochs=20, retries=1),
    # the authors' schedule: 10 epochs, then a cycle every 10 up to 100, 3 retries
    "paper": SurgeonMnistSettings(),
}


def surgeon_mnist_settings(preset: str) -> SurgeonMnistSettings:
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[preset]


def start_name(hidden: tuple[int, ...]) -> str:
    return "-".join(str(n) for n in (784, *hidden, 10))


def _task(root: str, settings: SurgeonMnistSettings, seed: int) -> Task:
    return idx_task(root, val_size=settings.val_size, seed=seed, max_train=settings.max_train,
                    max_test=settings.max_test)


def _figures(net, task: Task, epochs: int, flops: float) -> dict[str, Any]:
    from ..methods.base import measure_on

    test, val = measure_on(net, task, task.test), measure_on(net, task, task.val)
    return {"params": count_params(net), "test_accuracy": test["accuracy"], "val_accuracy": val["accuracy"],
            "widths": hidden_widths(net), "epochs": epochs, "train_flops": flops}


def run_job(root: str, settings: SurgeonMnistSettings, hidden: tuple[int, ...], optimizer: str, seed: int
            ) -> list[dict[str, Any]]:
    """One start with one optimiser: the start alone, and per rule set the Surgeon and its final
    shape from scratch (one record per rule set)."""
    started = time.perf_counter()
    task = _task(root, settings, seed)
    trainer = settings.trainer(optimizer)
    start = make_mlp([task.n_in, *hidden, task.n_out], "relu", seed=seed)
    epochs = settings.total_epochs
    alone = _trained(start, task, epochs, trainer, seed)
    records = []
    for rules in settings.rules:
        surgeon = run_surgeon(start, task, trainer, settings.surgeon(rules, count_params(start)), seed=seed)
        scratch = _trained(make_mlp(layer_sizes(surgeon.net), "relu", seed=seed + 1), task, epochs, trainer, seed)
        records.append({"start": start_name(hidden), "optimizer": optimizer, "rules": rules,
                        "surgeon": {**_figures(surgeon.net, task, surgeon.epochs, surgeon.train_flops),
                                    "curve": surgeon.curve, "cycles": _cycles(surgeon.cycles),
                                    "net": mlp_to_state(surgeon.net)},
                        "same_start": alone, "final_shape_scratch": scratch})
    for record in records:
        record["seconds"] = time.perf_counter() - started
    return records


def _trained(net, task: Task, epochs: int, trainer: TrainerConfig, seed: int) -> dict[str, Any]:
    """A copy of ``net`` trained alone for ``epochs``: its figures and validation curve."""
    done = train_job([net], task, Budget(epochs=epochs), trainer, seed, track=True)
    return {**_figures(done["nets"][0], task, epochs, done["flops"]),
            "curve": [{"epoch": i + 1, "val": v} for i, v in enumerate(done["curves"][0])]}


def _cycles(cycles: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The cycle records with each attempt's children (label, validation figure, score,
    params) and branches, and the retry count."""
    return [{**c, "retries": len(c["attempts"]) - 1,
             "attempts": [{"children": [{k: child[k] for k in ("label", "val", "score", "params")}
                                        for child in a["children"]], "branches": a["branches"]}
                          for a in c["attempts"]]} for c in cycles]


def reproduce_surgeon_mnist(out: str | Path, preset: str = "quick", data_root: str | None = None, seed: int = 0,
                            resume: bool = False, executor: str = "process", workers: int = 2,
                            on_progress: Callable[[str], None] | None = None,
                            settings: SurgeonMnistSettings | None = None) -> dict[str, Any]:
    """Run every (start, optimiser) job into ``out``; writes result.json, report.md and curves.png."""
    settings = settings or surgeon_mnist_settings(preset)
    root = str(resolve_data_root(data_root).resolve())
    task = _task(root, settings, seed)  # validates the data before the run folder exists
    config = reproduce_config(KIND, preset, seed, root, {"n_train": len(task.train), "n_val": len(task.val),
                                                         "n_test": len(task.test)}, settings)
    del task
    say = on_progress or (lambda text: None)
    started = time.perf_counter()
    with RunContext(out, config, kind=KIND, resume=resume, executor=executor, workers=workers) as ctx:
        saved = ctx.restore() or {"runs": {}, "seconds": 0.0}
        runs: dict[str, Any] = saved["runs"]
        earlier = float(saved["seconds"])
        largest_first = sorted(settings.starts, key=lambda h: -mlp_params([784, *h, 10]))
        pending = {f"{start_name(h)}|{o}": ctx.executor.submit(run_job, root, settings, h, o, seed)
                   for h in largest_first for o in settings.optimizers if f"{start_name(h)}|{o}" not in runs}
        for key, future in pending.items():
            runs[key] = future.result()
            ctx.checkpoint({"runs": runs, "seconds": earlier + time.perf_counter() - started})
            for item in runs[key]:
                _save_network(ctx, item)
                ctx.emit("run", start=item["start"], optimizer=item["optimizer"], rules=item["rules"],
                         params=item["surgeon"]["params"], widths=item["surgeon"]["widths"],
                         test_accuracy=item["surgeon"]["test_accuracy"],
                         alone_test_accuracy=item["same_start"]["test_accuracy"],
                         scratch_test_accuracy=item["final_shape_scratch"]["test_accuracy"],
                         kept=[c["kept"] for c in item["surgeon"]["cycles"]])
                say(f"{key} ({item['rules']} rules): surgeon {item['surgeon']['test_accuracy']:.2%} at "
                    f"{item['surgeon']['params']} params (widths {item['surgeon']['widths']}), "
                    f"alone {item['same_start']['test_accuracy']:.2%}")
        ordered = [_without_net(item) for h in settings.starts for o in settings.optimizers
                   for item in runs[f"{start_name(h)}|{o}"]]
        result = {"experiment": KIND, "preset": preset, "seed": seed, "runs": ordered,
                  "headline": headline(ordered), "wall_seconds": earlier + time.perf_counter() - started}
        ctx.write_result(result)
        from ..analysis.surgeon_plots import plot_surgeon_curves

        plot_surgeon_curves(ordered, ctx.path / "curves.png")
        ctx.write_report(report(result))
    return result


def network_file(item: dict[str, Any]) -> str:
    """The file the Surgeon's final network of one run is saved to (loads with netbonsai.load)."""
    return f"surgeon-{item['start']}-{item['optimizer']}-{item['rules']}"


def _save_network(ctx: RunContext, item: dict[str, Any]) -> None:
    net = dag_from_mlp(mlp_from_state(item["surgeon"]["net"]))
    save(net, ctx.file(network_file(item)), info={"experiment": KIND, "start": item["start"],
                                                   "optimizer": item["optimizer"], "rules": item["rules"]})


def _without_net(item: dict[str, Any]) -> dict[str, Any]:
    surgeon = {k: v for k, v in item["surgeon"].items() if k != "net"}
    return {**item, "surgeon": {**surgeon, "file": network_file(item)}}


def headline(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per run: the Surgeon's gain over the start alone, and its size against the start's."""
    return {f"{r['start']}|{r['optimizer']}|{r['rules']}": {
        "accuracy_gain": r["surgeon"]["test_accuracy"] - r["same_start"]["test_accuracy"],
        "params_ratio": r["surgeon"]["params"] / r["same_start"]["params"],
        "flops_ratio": r["surgeon"]["train_flops"] / r["same_start"]["train_flops"]} for r in runs}


def runs_table(runs: list[dict[str, Any]]) -> str:
    """One row per run: the Surgeon's network and test accuracy beside the start alone and the
    final shape from scratch (test accuracies), and the Surgeon's training cost against the start's."""
    from ..analysis.report import markdown_table

    rows = [[r["start"], r["optimizer"], r["rules"], r["surgeon"]["params"], r["surgeon"]["widths"],
             f"{r['surgeon']['test_accuracy']:.2%}", f"{r['same_start']['test_accuracy']:.2%}",
             f"{r['final_shape_scratch']['test_accuracy']:.2%}",
             f"{r['surgeon']['train_flops'] / r['same_start']['train_flops']:.1f}"] for r in runs]
    return markdown_table(["start", "optimiser", "rules", "Surgeon params", "widths", "Surgeon test acc.",
                           "alone", "final shape from scratch", "FLOPs / alone"], rows)


def report(result: dict[str, Any]) -> str:
    from ..analysis.report import markdown_table

    rows = []
    for r in result["runs"]:
        for name in ("surgeon", "same_start", "final_shape_scratch"):
            item = r[name]
            rows.append([r["start"], r["optimizer"], r["rules"] if name != "same_start" else "-", name,
                         item["params"], item["widths"],
                         f"{item['test_accuracy']:.2%}", f"{item['val_accuracy']:.2%}", item["epochs"],
                         f"{item['train_flops']:.3g}"])
    return "\n".join([f"# {KIND}: the Surgeon (paper 002)", "", runs_table(result["runs"]), "",
                      "Every network (validation accuracy drives the Surgeon; test accuracy is measured once):", "",
                      markdown_table(["start", "optimiser", "rules", "network", "params", "widths", "test accuracy",
                                      "val accuracy", "epochs", "train FLOPs"], rows), "",
                      "![curves](curves.png)", "", f"wall {result['wall_seconds']:.0f} s", ""])


__all__ = ["PRESETS", "SurgeonMnistSettings", "reproduce_surgeon_mnist", "run_job", "surgeon_mnist_settings"]
