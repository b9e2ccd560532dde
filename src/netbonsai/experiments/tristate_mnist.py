"""Paper 003 on MNIST: tri-state ReLU gates learn widths, depths and class-dependent sizes.

``netbonsai reproduce tristate-mnist`` runs four parts, each checkpointed when it ends:

- ``lenet300``: LeNet-300-100 (784-300-100-10, ReLU) with width gates;
- ``lenet5``: the Caffe LeNet-5 (conv 20 5x5, pool, conv 50 5x5, pool, fc 500, fc 10) with channel
  and neuron gates. The Caffe net has no nonlinearity after its convolutions; a gate needs one,
  so this LeNet-5 has a ReLU after each conv (as the L0-gate paper's LeNet-5 does);
- ``depth``: 784-(100 x L)-10 ReLU MLPs for each L of ``depths`` with width and depth gates: the
  learned depth (hidden layers that keep a nonlinearity after the collapse) of each;
- ``classes``: LeNet-300-100 with width gates on MNIST restricted to its first k classes for each
  k of ``classes``: the learned neuron count and the test error against k.

For LeNet-300-100 and LeNet-5 the learned network is compared, at its parameter count, with the
paper's baselines: the learned architecture trained from scratch (fresh weights, as many epochs
as the dense, gated and fine-tuning trainings together), SVD compression of the dense network's
hidden fully connected layers (one rank fraction for every layer, chosen by bisection to match
the parameter count; conv layers and the output layer kept), and netbonsai's magnitude neuron
pruning (each hidden layer keeps the units with the largest L1 norm of incoming weights, as
many as the learned network has). Both compressed baselines get the gated network's fine-tuning.

Where the paper is silent (and what ``netbonsai.methods.gates`` found): the gates start on the
trained dense network (w = 1, d = 0: the same function) and train ``gated_epochs`` with
minibatch Adam, the gates at ``gate_lr``. With the paper's rule (lambda_m x initial complexity =
initial loss, here the trained network's loss, where the gates start; the untrained network's
loss, about ln k for k classes, makes every penalty 15x stronger and collapsed LeNet-5 and the
deeper MLPs at every multiplier tried (docs/RESULTS.md); lambda_b a few times lambda_m) a gate that starts at 1 only dies where lambda_m
comes near lambda_b (the per-gate penalty peaks at 1/2 + lambda_m / (2 lambda_b)), so lambda_b
is ``ratio`` (4) times the rule's lambda_m and lambda_m is the rule's times a multiplier near 4:
each of ``scales`` is tried, and the one whose collapsed network is smallest within
``tolerance`` of the dense network's *validation* error is chosen, per part (LeNet-5, the most
expensive, uses LeNet-300-100's choice). A layer whose gates all die leaves a zero-width layer:
its network is counted but cannot be chosen unless nothing else is within the tolerance.
Complexity is ``params`` (the collapsed network's parameter count; the paper's neuron count
makes a linear layer free, and MNIST MLPs then collapse to one 784-10 layer). The network is
collapsed (gates binarised at 0.5, dead units removed, linear layers merged where that pays)
and fine-tuned ``finetune_epochs``; "scratch" trains the learned architecture from fresh weights
for as many epochs as the gated network had in all. Test errors are fractions of the test split,
which no training or choice sees; the validation split (held out of the training images) is
recorded next to them.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..data.specs import idx_task
from ..data.task import Split, Task
from ..errors import InputError
from ..gates import collapse, gate, gate_modules, gate_penalty, train_gated
from ..nets.compact_cnn import compact_cnn
from ..nets.masked import make_prunable
from ..prune.channels import channel_importance
from ..runs import RunContext
from ..train import Budget, fit
from .classification import adam_trainer, classification_errors

KIND = "tristate-mnist"


@dataclass(frozen=True)
class TristateSettings:
    """Budgets of one preset (epochs of minibatch Adam)."""

    max_train: int | None = 10_000  # training images (a seeded subsample; None: all but the validation ones)
    val_size: int = 2_000  # training images held out for validation
    max_test: int | None = None  # test images (None: all)
    dense_epochs: int = 4
    gated_epochs: int = 8
    finetune_epochs: int = 2
    lr: float = 1e-3
    gate_lr: float = 1e-2  # the gates move faster than the weights (w from 1 to 0 in ~100 steps)
    batch_size: int = 64
    # lambda_b = ratio x the paper's lambda_m; the multipliers of lambda_m tried on LeNet-300-100
    # (a gate dies only where lambda_m comes near lambda_b: see netbonsai.methods.gates), the one
    # chosen on the validation split then used by every other part
    ratio: float = 4.0
    scales: tuple[float, ...] = (4.0, 4.3, 4.6, 5.0)
    tolerance: float = 0.005  # validation error the chosen network may lose against the dense one
    complexity: str = "params"
    depths: tuple[int, ...] = (4, 6, 8)
    depth_width: int = 100
    classes: tuple[int, ...] = (2, 4, 6, 8, 10)

    def __post_init__(self) -> None:
        for name in ("dense_epochs", "gated_epochs", "finetune_epochs", "batch_size", "depth_width"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.scales or min(self.scales) <= 0 or not self.ratio > 0 or not self.tolerance >= 0:
            raise InputError("scales and ratio must be positive and tolerance >= 0")
        if self.complexity not in ("params", "neurons"):
            raise InputError(f"complexity must be params or neurons, got {self.complexity!r}")
        if not self.depths or min(self.depths) < 1 or not self.classes or not 2 <= min(self.classes) <= max(self.classes) <= 10:
            raise InputError("depths must be positive layer counts and classes class counts in 2..10")


PRESETS: dict[str, TristateSettings] = {
    "quick": TristateSettings(),
    "paper": TristateSettings(max_train=None, val_size=5_000, dense_epochs=20, gated_epochs=30, finetune_epochs=5),
}


def tristate_settings(preset: str) -> TristateSettings:
    """The settings of ``preset`` (quick: about 10 minutes on 2 cores; paper: about 2 hours)."""
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[preset]


# ---------------------------------------------------------------------- networks
def lenet300(n_classes: int = 10) -> nn.Sequential:
    return nn.Sequential(nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, n_classes))


def lenet5() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(1, 20, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(20, 50, 5), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(800, 500), nn.ReLU(), nn.Linear(500, 10))


def deep_mlp(layers: int, width: int = 100) -> nn.Sequential:
    modules: list[nn.Module] = []
    for i in range(layers):
        modules += [nn.Linear(784 if i == 0 else width, width), nn.ReLU()]
    return nn.Sequential(*modules, nn.Linear(width, 10))


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def seeded(factory: Callable[[], nn.Module], seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return factory()


# ---------------------------------------------------------------------- baselines
def svd_compress(model: nn.Sequential, target_params: int) -> nn.Sequential:
    """``model`` with every hidden Linear factored as two (rank ``r``, by truncated SVD), one rank
    fraction for all of them, the largest whose parameter count stays within ``target_params`` (at
    least rank 1). The output layer and the conv layers are kept: a shared fraction would leave
    a 10-class output layer rank 1 or 2 (which the first version did: 15% and 74% test error)."""
    linears = [i for i, m in enumerate(model) if isinstance(m, nn.Linear)][:-1]
    fixed = count_params(model) - sum(count_params(model[i]) for i in linears)

    def ranks(fraction: float) -> list[int]:
        return [max(1, int(fraction * min(model[i].in_features, model[i].out_features))) for i in linears]

    def size(rs: list[int]) -> int:
        return fixed + sum(r * (model[i].in_features + model[i].out_features) + model[i].out_features
                           for r, i in zip(rs, linears))

    low, high = 0.0, 1.0
    if size(ranks(1.0)) <= target_params:
        low = 1.0  # full rank fits
    for _ in range(40 if low < 1.0 else 0):
        mid = (low + high) / 2
        low, high = (mid, high) if size(ranks(mid)) <= target_params else (low, mid)
    chosen = ranks(low)
    out = copy.deepcopy(model)
    with torch.no_grad():
        for rank, i in zip(chosen, linears):
            layer = model[i]
            u, s, vh = torch.linalg.svd(layer.weight.detach(), full_matrices=False)
            first = nn.Linear(layer.in_features, rank, bias=False)
            second = nn.Linear(rank, layer.out_features)
            first.weight.copy_(s[:rank, None] * vh[:rank])
            second.weight.copy_(u[:, :rank])
            second.bias.copy_(layer.bias.detach())
            out[i] = nn.Sequential(first, second)
    return out


def neuron_prune(model: nn.Sequential, widths: list[int]) -> nn.Sequential:
    """Magnitude neuron pruning: each hidden Linear/Conv2d keeps its ``widths[k]`` units with the
    largest L1 norm of incoming weights (the rest are masked), then :func:`compact_cnn` removes
    them with their fan-out. ``model`` is not modified."""
    pruned = make_prunable(copy.deepcopy(model))
    layers = [m for m in pruned.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    if len(widths) != len(layers) - 1:
        raise InputError(f"neuron_prune needs one width per hidden layer ({len(layers) - 1}), got {len(widths)}")
    with torch.no_grad():
        for layer, keep in zip(layers[:-1], widths):
            scores = channel_importance(layer, "l1")
            drop = torch.argsort(scores, descending=True)[max(1, int(keep)):]
            layer.mask[drop] = False
            layer.weight[drop] = 0.0
    return compact_cnn(pruned)


# ---------------------------------------------------------------------- one learned architecture
def error_rate(model: nn.Module, split: Split) -> float:
    """Misclassified share of ``split`` (eval mode)."""
    model.eval()
    errors, _ = classification_errors(model, split.x, split.y)
    return errors / len(split)


def _train(model: nn.Module, split: Split, epochs: int, settings: TristateSettings, seed: int) -> None:
    model.train()
    fit(model, split, Budget(epochs=epochs), adam_trainer(settings.lr, settings.batch_size), seed=seed)


def gate_trace(model: nn.Module) -> dict[str, Any]:
    """Per gated layer: the share of gates near 0, near 1 and in between, and ``d``."""
    trace = []
    for g in gate_modules(model):
        w = g.w.detach()
        trace.append({"dead": float((w < 0.1).float().mean()), "alive": float((w > 0.9).float().mean()),
                      "between": float(((w >= 0.1) & (w <= 0.9)).float().mean()), "d": float(g.d.detach())})
    return {"layers": trace}


def train_dense(factory: Callable[[], nn.Module], task: Task | Splits, settings: TristateSettings,
                seed: int) -> tuple[nn.Module, dict[str, Any]]:
    """The dense network every part starts from, and its figures."""
    dense = seeded(factory, seed)
    _train(dense, task.train, settings.dense_epochs, settings, seed)
    return dense, {"params": count_params(dense), "test_error": error_rate(dense, task.test),
                   "val_error": error_rate(dense, task.val)}


def learn(factory: Callable[[], nn.Module], task: Task | Splits, settings: TristateSettings, seed: int, scale: float,
          *, depth: bool = False, baselines: bool = True, trace: bool = False,
          dense: tuple[nn.Module, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Gate the trained dense network of ``factory`` (trained here unless ``dense`` is given),
    train it with the penalty at lambda_m multiplier ``scale``, collapse and fine-tune it; with
    ``baselines`` also scratch, SVD and magnitude neuron pruning at its size."""
    dense_net, dense_figures = dense if dense is not None else train_dense(factory, task, settings, seed)
    record: dict[str, Any] = {"dense": dict(dense_figures)}
    gated = gate(copy.deepcopy(dense_net), width=True, depth=depth)
    rows = slice(0, min(len(task.train), 5000))
    with torch.no_grad():  # the trained network's loss (the untrained one's: see the module docstring)
        gated.eval()
        initial = float(nn.functional.cross_entropy(gated(task.train.x[rows]), task.train.y[rows]))
    penalty = gate_penalty(gated, initial, settings.complexity, m_scale=scale, ratio=settings.ratio)
    curve: list[dict[str, Any]] = []
    trainer = adam_trainer(settings.lr, settings.batch_size)
    gated.train()
    train_gated(gated, task.train, Budget(epochs=settings.gated_epochs), trainer, penalty, seed=seed,
                gate_lr=settings.gate_lr,
                on_epoch=(lambda epoch, losses: curve.append({"epoch": epoch, **gate_trace(gated)})) if trace else None)
    small = collapse(gated)
    learned = small.module
    _train(learned, task.train, settings.finetune_epochs, settings, seed + 1)
    record["gated"] = {"params": small.params, "test_error": error_rate(learned, task.test),
                       "val_error": error_rate(learned, task.val), "widths": small.widths, "merged": small.merged,
                       "scale": scale, "lambda_m": penalty.lambda_m, "lambda_b": penalty.lambda_b}
    if trace:
        record["gate_trace"] = curve
    if not baselines:
        return record
    scratch = seeded(lambda: _fresh_copy(learned), seed + 2)
    total = settings.dense_epochs + settings.gated_epochs + settings.finetune_epochs  # what the gated network had
    _train(scratch, task.train, total, settings, seed + 2)
    record["scratch"] = {"params": count_params(scratch), "test_error": error_rate(scratch, task.test),
                         "val_error": error_rate(scratch, task.val), "epochs": total}
    svd = svd_compress(dense_net, small.params)
    _train(svd, task.train, settings.finetune_epochs, settings, seed + 3)
    record["svd"] = {"params": count_params(svd), "test_error": error_rate(svd, task.test),
                     "val_error": error_rate(svd, task.val)}
    if small.merged == 0 and min(small.widths) > 0:
        pruned = neuron_prune(dense_net, small.widths[1:-1])
        _train(pruned, task.train, settings.finetune_epochs, settings, seed + 4)
        record["magnitude_neurons"] = {"params": count_params(pruned), "test_error": error_rate(pruned, task.test),
                                       "val_error": error_rate(pruned, task.val)}
    return record


def chosen_scale(candidates: list[dict[str, Any]], tolerance: float) -> dict[str, Any]:
    """The candidate with the fewest parameters whose validation error is within ``tolerance``
    of the dense network's (the most accurate one when none is)."""
    good = [c for c in candidates if c["gated"]["val_error"] <= c["dense"]["val_error"] + tolerance]
    if good:
        return min(good, key=lambda c: (c["gated"]["params"], c["gated"]["val_error"]))
    return min(candidates, key=lambda c: (c["gated"]["val_error"], c["gated"]["params"]))


def learn_choosing_scale(factory: Callable[[], nn.Module], task: Task | Splits, settings: TristateSettings,
                         seed: int, **options: Any) -> dict[str, Any]:
    """:func:`learn` at every multiplier of ``settings.scales`` from one dense network; the one
    :func:`chosen_scale` picks on the validation split, with every candidate's figures."""
    dense = train_dense(factory, task, settings, seed)
    candidates = [learn(factory, task, settings, seed, scale, dense=dense, **options) for scale in settings.scales]
    best = chosen_scale(candidates, settings.tolerance)
    best["candidates"] = [{"scale": c["gated"]["scale"], "params": c["gated"]["params"],
                           "val_error": c["gated"]["val_error"], "widths": c["gated"]["widths"]} for c in candidates]
    return best


def _fresh_copy(model: nn.Module) -> nn.Module:
    """``model``'s architecture with fresh default-initialised weights."""
    fresh = copy.deepcopy(model)
    for module in fresh.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return fresh


# ---------------------------------------------------------------------- data
@dataclass(frozen=True)
class Splits:
    """The three splits :func:`learn` trains and measures on (a Task's, or images shaped for a CNN)."""

    train: Split
    val: Split
    test: Split


def image_splits(task: Task) -> Splits:
    """The task's splits with images shaped ``(N, 1, 28, 28)`` for the CNN."""
    def shaped(split: Split) -> Split:
        return Split(split.x.reshape(-1, 1, 28, 28), split.y)

    return Splits(shaped(task.train), shaped(task.val), shaped(task.test))


def first_classes(task: Task, k: int) -> Task:
    """The task restricted to the images of classes 0..k-1."""
    def kept(split: Split) -> Split:
        rows = split.y < k
        return Split(split.x[rows], split.y[rows])

    return replace(task, train=kept(task.train), val=kept(task.val), test=kept(task.test))


# ---------------------------------------------------------------------- the experiment
def reproduce_tristate_mnist(out_dir: str | Path, preset: str = "quick", data_root: str | Path | None = None,
                             seed: int = 0, resume: bool = False, on_progress: Callable[[str], None] | None = None,
                             settings: TristateSettings | None = None) -> dict[str, Any]:
    """Run the four parts (see the module docstring); writes result.json, report.md and plots."""
    settings = settings or tristate_settings(preset)
    task = idx_task(data_root, val_size=settings.val_size, seed=seed, max_train=settings.max_train,
                    max_test=settings.max_test)
    config = {"experiment": KIND, "preset": preset, "seed": seed, "settings": asdict(settings),
              "split": {"n_train": len(task.train), "n_val": len(task.val), "n_test": len(task.test)}}
    progress = on_progress or (lambda text: None)
    started = time.perf_counter()
    with RunContext(out_dir, config, kind=KIND, resume=resume) as ctx:
        saved = ctx.restore() or {"parts": {}, "seconds": 0.0}
        parts: dict[str, Any] = saved["parts"]
        earlier = float(saved["seconds"])

        def done(name: str, value: Any) -> None:
            parts[name] = value
            ctx.emit_event({"event": "part", "part": name, "seconds": earlier + time.perf_counter() - started})
            ctx.checkpoint({"parts": parts, "seconds": earlier + time.perf_counter() - started})
            progress(f"{name} done")

        def scale() -> float:  # chosen on LeNet-300-100's validation split
            return parts["lenet300"]["gated"]["scale"]

        jobs: list[tuple[str, Callable[[], Any]]] = [
            ("lenet300", lambda: learn_choosing_scale(lenet300, task, settings, seed, trace=True)),
            ("lenet5", lambda: learn(lenet5, image_splits(task), settings, seed, scale())),
        ]
        for layers in settings.depths:
            jobs.append((f"depth-{layers}", lambda layers=layers: _depth(task, settings, seed, layers)))
        for k in settings.classes:
            jobs.append((f"classes-{k}", lambda k=k: _classes(task, settings, seed, k)))
        for name, job in jobs:
            if name not in parts:
                progress(f"{name} ...")
                done(name, job())
        result = _result(parts, settings, earlier + time.perf_counter() - started)
        ctx.write_result(result)
        from ..analysis.tristate_plots import plot_classes, plot_gate_trace

        plot_gate_trace(parts["lenet300"].get("gate_trace", []), ctx.path / "gates.png")
        plot_classes(result["classes"], ctx.path / "classes.png")
        ctx.write_report(_report(result))
    return result


def _depth(task: Task, settings: TristateSettings, seed: int, layers: int) -> dict[str, Any]:
    record = learn_choosing_scale(lambda: deep_mlp(layers, settings.depth_width), task, settings, seed, depth=True,
                                  baselines=False)
    return {"initial_layers": layers, "learned_layers": len(record["gated"]["widths"]) - 2,
            "scale": record["gated"]["scale"], "val_error": record["gated"]["val_error"],
            "test_error": record["gated"]["test_error"], "widths": record["gated"]["widths"],
            "params": record["gated"]["params"]}


def _classes(task: Task, settings: TristateSettings, seed: int, k: int) -> dict[str, Any]:
    record = learn_choosing_scale(lambda: lenet300(k), first_classes(task, k), settings, seed, baselines=False)
    widths = record["gated"]["widths"]
    return {"classes": k, "neurons": int(sum(widths[1:-1])), "test_error": record["gated"]["test_error"],
            "scale": record["gated"]["scale"], "val_error": record["gated"]["val_error"],
            "params": record["gated"]["params"], "dense_test_error": record["dense"]["test_error"]}


def _result(parts: dict[str, Any], settings: TristateSettings, seconds: float) -> dict[str, Any]:
    depth = [parts[f"depth-{layers}"] for layers in settings.depths]
    classes = [parts[f"classes-{k}"] for k in settings.classes]
    from scipy.stats import spearmanr

    rho = spearmanr([c["classes"] for c in classes], [c["neurons"] for c in classes]).statistic
    learned = [d["learned_layers"] for d in depth]
    lenet = {name: {k: v for k, v in parts[name].items() if k != "gate_trace"} for name in ("lenet300", "lenet5")}
    return {
        **lenet, "depth": depth, "classes": classes, "wall_seconds": seconds,
        "headline": {
            "lenet300_gated_test_error": lenet["lenet300"]["gated"]["test_error"],
            "lenet300_params_fraction": lenet["lenet300"]["gated"]["params"] / lenet["lenet300"]["dense"]["params"],
            "lenet5_gated_test_error": lenet["lenet5"]["gated"]["test_error"],
            "lenet5_params_fraction": lenet["lenet5"]["gated"]["params"] / lenet["lenet5"]["dense"]["params"],
            "learned_depth_spread": max(learned) - min(learned),
            "classes_spearman": None if math.isnan(rho) else float(rho),
        },
    }


def _report(result: dict[str, Any]) -> str:
    from ..analysis.report import markdown_table

    lines = ["# tristate-mnist: tri-state ReLU gates (paper 003)", ""]
    for name, title in (("lenet300", "LeNet-300-100 (width gates)"), ("lenet5", "LeNet-5 (channel and neuron gates)")):
        part = result[name]
        rows = [[method, part[method]["params"], f"{part[method]['params'] / part['dense']['params']:.1%}",
                 f"{part[method]['test_error']:.2%}", f"{part[method]['val_error']:.2%}"]
                for method in ("dense", "gated", "scratch", "svd", "magnitude_neurons") if method in part]
        tried = ", ".join(f"{c['scale']:g}: {c['params']} params, val {c['val_error']:.2%}" for c in part.get("candidates", []))
        lines += [f"## {title}", "", f"learned widths {part['gated']['widths']} (lambda_m multiplier "
                  f"{part['gated']['scale']:g}{'; tried ' + tried if tried else ''})", "",
                  markdown_table(["network", "params", "of dense", "test error", "val error"], rows), ""]
    lines += ["## Depth (784-(100 x L)-10, width and depth gates)", "",
              markdown_table(["initial layers", "learned layers", "widths", "lambda_m multiplier", "val error", "test error"],
                             [[d["initial_layers"], d["learned_layers"], d["widths"], d.get("scale", "-"),
                               f"{d.get('val_error', float('nan')):.2%}", f"{d['test_error']:.2%}"]
                              for d in result["depth"]]), "",
              "## Classes (LeNet-300-100 on the first k classes)", "",
              markdown_table(["classes", "learned neurons", "params", "lambda_m multiplier", "test error", "dense test error"],
                             [[c["classes"], c["neurons"], c["params"], c.get("scale", "-"), f"{c['test_error']:.2%}",
                               f"{c['dense_test_error']:.2%}"] for c in result["classes"]]),
              "", f"Spearman (classes, neurons): {result['headline']['classes_spearman']}; "
              f"wall {result['wall_seconds']:.0f} s", ""]
    return "\n".join(lines)
