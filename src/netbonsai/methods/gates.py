"""Paper 003 as a method: tri-state ReLU gates learn a dense MLP's width and depth in one run.

For each multiplier of the default ``lambda_m`` (a sweep, one front point each): the policy's
dense ReLU MLP (the largest grid network within ``max_params``, as the pruning methods pick it,
built, standardised and trained as the dense sweep trains its networks, same seed) is gated,
trained with the penalty for the dense budget (its lambdas come from the loss it starts with),
collapsed, converted to a DagNet, fine-tuned with the policy's trainer for the retraining budget
(what magnitude pruning gives each round), and polished like every reported network. One
executor job per multiplier.

Choices where the paper is silent (see :mod:`netbonsai.gates` for the gates' own):

- the start: the trained dense network (``start=trained``, the paper's AlexNet protocol, and the
  network the pruning methods start from) by default; ``start=scratch`` gates the untrained
  network (the paper's MNIST protocol). Measured on the tiny approx task of the tests (a
  full-batch trainer, so gated training is full-batch Adam; dense networks of 37-105
  parameters at validation loss 0.0091-0.0045): the trained start gave 44-95 parameters at
  0.0091-0.0078, the scratch start 5-65 parameters at 0.019-0.017;
- complexity ``params`` by default: the front's axis is the parameter count, and under the
  paper's ``neurons`` count a linear layer is free, so MNIST and digits collapsed to a single
  linear layer (measured); ``--set gates.complexity=neurons`` gives the paper's count;
- the MLP uses ReLU whatever the policy's activation (the gate is a ReLU);
- the multipliers straddle ``ratio`` (``lambda_b = ratio * lambda_m``): starting from ``w = 1``,
  gates die only where ``lambda_m`` comes near ``lambda_b``, so the paper's ``lambda_m * size =
  loss`` alone prunes nothing. Measured on MNIST (784-100-50-10, 10,000 images, trained 3
  epochs, then 3 gated): multiplier 3.9 kept 127 of 150 neurons (65,601 parameters), 4.0 kept
  103 (48,645), 4.1 kept 93 (40,345), 4.3 kept 35 and merged the second layer (27,835), all at
  6.0-6.6% validation error;
- gates learn at ``gate_lr`` (default 10 times the trainer's rate) so that short budgets binarise.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch

from ..data.task import Task
from ..errors import InputError
from ..gates import collapse, gate, gate_penalty, sequential_from_dag, train_gated
from ..gates.objective import check_complexity
from ..grow.search import FrontPoint
from ..nets.dag import DagNet
from ..nets.io import net_from_state, net_to_state
from ..nets.normalization import standardize_for
from ..train import Budget, evaluate, fit
from ..train.polish import shipped_task
from .base import Method, MethodResult, candidate, finite_front, layer_widths
from .front import polish
from .magnitude import pruned_architecture
from .registry import register

if TYPE_CHECKING:
    from ..experiments.presets import TaskSettings
    from ..runs import RunContext


STARTS = ("trained", "scratch")


def _number(name: str, value: Any, low: float, inclusive: bool = False) -> None:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if not ok or (value < low if inclusive else value <= low):
        raise InputError(f"gates.{name} must be a finite number {'>=' if inclusive else '>'} {low:g}, got {value!r}")


@dataclass(frozen=True)
class GatesSettings:
    """The sweep and the gates' training (None: taken from the comparison's policy)."""

    scales: tuple[float, ...] = (3.95, 4.0, 4.1, 4.3, 4.6)  # multipliers of the default lambda_m
    ratio: float = 4.0  # lambda_b = ratio * default lambda_m (the paper: "a few times")
    complexity: str = "params"  # or "neurons" (the paper's count)
    start: str = "trained"  # gate the trained dense network, or "scratch": its initialisation
    width: bool = True  # learn each neuron's w
    depth: bool = True  # learn each layer's d (merge linear layers)
    epochs: int | None = None  # gated training; None: the policy's dense budget
    finetune_epochs: int | None = None  # after the collapse; None: the policy's retraining budget
    gate_lr: float | None = None  # None: 10 x the trainer's lr
    threshold: float = 0.5  # binarising threshold
    hidden: tuple[int, ...] | None = None  # None: the grid network the pruning methods start from

    def __post_init__(self) -> None:
        if isinstance(self.scales, (int, float)):
            object.__setattr__(self, "scales", (self.scales,))
        if not isinstance(self.scales, (list, tuple)) or not self.scales:
            raise InputError(f"gates.scales must be a non-empty list of multipliers, got {self.scales!r}")
        for value in self.scales:
            _number("scales", value, 0.0)
        object.__setattr__(self, "scales", tuple(float(v) for v in self.scales))
        _number("ratio", self.ratio, 0.0)
        check_complexity(self.complexity)
        if self.start not in STARTS:
            raise InputError(f"gates.start must be one of {', '.join(STARTS)}, got {self.start!r}")
        for name in ("width", "depth"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"gates.{name} must be true or false, got {getattr(self, name)!r}")
        if not self.width and not self.depth:
            raise InputError("gates.width and gates.depth cannot both be false: nothing would be learnt")
        for name, low in (("epochs", 1), ("finetune_epochs", 0)):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
                raise InputError(f"gates.{name} must be an integer >= {low} (or null), got {value!r}")
        if self.gate_lr is not None:
            _number("gate_lr", self.gate_lr, 0.0)
        _number("threshold", self.threshold, 0.0)
        if self.threshold >= 1:
            raise InputError(f"gates.threshold must be in (0, 1), got {self.threshold!r}")
        if self.hidden is not None:
            object.__setattr__(self, "hidden", layer_widths(self.hidden, "gates.hidden"))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "scales": list(self.scales), "hidden": None if self.hidden is None else list(self.hidden)}


def start_network(task: Task, hidden: tuple[int, ...], seed: int, activation: str = "relu") -> DagNet:
    """The dense MLP a method starts from (the gates' sweep: ReLU), built and standardised as
    the dense sweep builds its networks (same seed, same initialisation)."""
    generator = torch.Generator().manual_seed(seed)
    net = DagNet.mlp([task.n_in, *hidden, task.n_out], activation, generator=generator).to(task.x_train.device)
    return standardize_for(net, task.x_train, task.y_train)


def gates_job(task: Task, start: dict[str, Any], scale: float, settings: GatesSettings,
              policy: "TaskSettings") -> dict[str, Any]:
    """One sweep point (in whatever process the executor picks; plain data back): gate, train
    with the penalty, collapse, fine-tune. ``net`` is None when the collapse left no network."""
    task = task.to(policy.device)
    grow = policy.grow
    trainer = grow.trainer
    net = net_from_state(start).to(policy.device)
    if settings.start == "trained":  # the dense network exactly as the dense sweep trains it
        fit(net, task.train, Budget(epochs=policy.dense_epochs), trainer, seed=grow.seed)
    initial = float(evaluate(net, task.x_train, task.y_train, trainer.loss)[0])
    model = gate(sequential_from_dag(net), width=settings.width, depth=settings.depth)
    penalty = gate_penalty(model, initial, settings.complexity, m_scale=scale, ratio=settings.ratio)
    epochs = settings.epochs or policy.dense_epochs
    trained = train_gated(model, task.train, Budget(epochs=epochs), trainer, penalty, seed=grow.seed,
                          gate_lr=settings.gate_lr or 10 * trainer.lr)
    collapsed = collapse(model, settings.threshold)
    record = {"scale": scale, "lambda_m": penalty.lambda_m, "lambda_b": penalty.lambda_b, "gated_epochs": epochs,
              "gated_loss": float(trained.loss[0]) * task.loss_scale, "widths": collapsed.widths,
              "merged": collapsed.merged}
    if collapsed.dag is None:
        return {**record, "net": None}
    small = collapsed.dag.to(policy.device)
    finetune = grow.grow_epochs if settings.finetune_epochs is None else settings.finetune_epochs
    if finetune > 0:
        fit(small, task.train, Budget(epochs=finetune), trainer, seed=grow.seed)
    return {**record, "finetune_epochs": finetune, "net": net_to_state(small.cpu())}


@register
class GatedArchitecture(Method):
    """Tri-state ReLU gates with the binarising and complexity regularisers (paper 003)."""

    name = "gates"
    summary = "tri-state ReLU gates learn width and depth in one run, then collapse (paper 003)"
    sequences = False
    Settings = GatesSettings

    def run(self, task: Task, ctx: "RunContext") -> MethodResult:
        """One executor job per multiplier; each finished one is checkpointed, so a resumed run
        trains only the others."""
        policy, settings = self.policy, self.settings
        grow = policy.grow
        hidden = settings.hidden or pruned_architecture(policy.dense_grid, task.n_in, task.n_out, grow.max_params)
        start = net_to_state(start_network(task, hidden, grow.seed).cpu())
        done: dict[str, dict[str, Any]] = dict((ctx.restore() or {}).get("done", {}))
        ctx.reporter.stage_started("gated training", len(settings.scales))
        shipped = shipped_task(task)
        futures = {repr(s): ctx.executor.submit(gates_job, shipped, start, s, settings, policy)
                   for s in settings.scales if repr(s) not in done}
        for key, future in futures.items():
            done[key] = future.result()
            ctx.checkpoint({"done": done})
            item = {k: v for k, v in done[key].items() if k != "net"}
            ctx.emit("scale", method=self.name, **item)
            ctx.reporter.stage_advanced("gated training", 1, f"scale {key}: widths {item['widths']}")
        points = []
        for index, scale in enumerate(settings.scales):
            item = done[repr(scale)]
            if item["net"] is not None:
                net = net_from_state(item["net"])
                points.append(FrontPoint(net.num_params(), math.nan, math.nan, index, net))
        points = polish(points, task, policy, ctx.executor)
        found = []
        for point in points:
            item = {k: v for k, v in done[repr(settings.scales[point.event])].items() if k != "net"}
            found.append(candidate(point.net.to(task.x_train.device), task, training=item))
        if not found:
            raise InputError("method 'gates' collapsed every sweep point to a constant network; lower gates.scales")
        front = finite_front(found) or found
        return MethodResult(front, front[-1].net, "sweep done", 0.0,
                            extra={"from": list(hidden), "scales": list(settings.scales)})
