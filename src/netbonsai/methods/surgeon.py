"""Paper 002 as a method: the Surgeon evolves a dense MLP during its training.

The start is a dense MLP of the policy's activation (``start`` widths, or by default the grid
network of median parameter count, the one the L2 guard is chosen on), built and standardised
as the dense sweep builds its networks. The main line trains for the policy's dense budget
(``dense_epochs``: the epochs every dense network gets), split into a first training and
``cycles`` equal cycles; the Surgeon's extra work (children, the second branch, retries) is
reported as ``train_flops``. The front: the start after its first training and the network
kept by every cycle, each polished like every reported network, reduced to its Pareto front.
With the policy's full-batch trainer (L-BFGS), a "minibatch" of retraining is one iteration.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from ..data.task import Task
from ..errors import InputError
from ..grow.search import FrontPoint
from ..surgery.mlp import dag_from_mlp, mlp_from_dag
from ..surgery.state import mlp_from_state
from ..surgery.surgeon import SurgeonSettings, run_surgeon
from ..train.regularization import reference_network
from .base import Method, MethodResult, candidate, finite_front, layer_widths
from .front import polish
from .gates import start_network
from .registry import register

if TYPE_CHECKING:
    from ..runs import RunContext

# the algorithm's settings a compare run may set (the schedule comes from the policy's budget)
RULE_KEYS = ("branches", "retries", "exact_steps", "approximate_steps", "random_child", "rule", "noise")


@dataclass(frozen=True)
class SurgeonMethodSettings:
    """The Surgeon's rules plus the start and the number of cycles in the policy's budget."""

    cycles: int = 9  # cycles after the first training (the authors: 10 epochs, then 9 cycles of 10)
    start: tuple[int, ...] | None = None  # hidden widths; None: the grid network of median size
    branches: int = 2
    retries: int = 3
    exact_steps: int = 1
    approximate_steps: int = 10
    random_child: bool = True
    rule: str = "threshold"
    noise: float = 0.01

    def __post_init__(self) -> None:
        if isinstance(self.cycles, bool) or not isinstance(self.cycles, int) or self.cycles < 1:
            raise InputError(f"surgeon.cycles must be an integer >= 1, got {self.cycles!r}")
        if self.start is not None:
            object.__setattr__(self, "start", layer_widths(self.start, "surgeon.start"))
        self.rules(self.cycles + 1)  # the rules' own checks

    def rules(self, epochs: int) -> SurgeonSettings:
        """The algorithm's settings for a main line of about ``epochs`` epochs (at least one per
        cycle and one first epoch)."""
        per = max(1, epochs // (self.cycles + 1))
        return SurgeonSettings(**{key: getattr(self, key) for key in RULE_KEYS}, first_epochs=per, cycle_epochs=per,
                               total_epochs=per * (self.cycles + 1))

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}


@register
class Surgeon(Method):
    """Function-preserving surgeries chosen by SVD recommendations, branched and kept during
    training (paper 002)."""

    name = "surgeon"
    summary = "the Surgeon: SVD-guided function-preserving edits, branched during training (paper 002)"
    sequences = False
    Settings = SurgeonMethodSettings

    def run(self, task: Task, ctx: "RunContext") -> MethodResult:
        """The Surgeon on the policy's trainer; checkpointed after every cycle."""
        policy, settings = self.policy, self.settings
        grow = policy.grow
        hidden = settings.start or reference_network(policy.dense_grid, task.n_in, task.n_out)
        start = mlp_from_dag(start_network(task, tuple(hidden), grow.seed, grow.activation))

        def on_event(kind: str, **fields: Any) -> None:
            ctx.emit(kind, method=self.name, **{k: v for k, v in fields.items() if k not in ("attempts", "net")})
            if kind == "surgeon-cycle":
                ctx.reporter.stage_advanced("surgeon cycles", 1, f"cycle {fields['cycle']}: kept {fields['kept']}, "
                                            f"widths {fields['widths']}")

        ctx.reporter.stage_started("surgeon cycles", settings.cycles)
        result = run_surgeon(start, task, grow.trainer, settings.rules(policy.dense_epochs), seed=grow.seed,
                             executor=ctx.executor, device=policy.device, on_event=on_event, resume=ctx.restore(),
                             checkpoint=ctx.checkpoint)
        points = []
        for index, entry in enumerate(result.lineage):
            net = dag_from_mlp(mlp_from_state(entry["net"]))
            points.append(FrontPoint(net.num_params(), float("nan"), float("nan"), index, net))
        points = polish(points, task, policy, ctx.executor)
        found = []
        for point in points:
            entry = result.lineage[point.event]
            found.append(candidate(point.net.to(task.x_train.device), task,
                                   training={"epoch": entry["epoch"], "kept": entry["kept"]}))
        front = finite_front(found) or found
        return MethodResult(front, front[-1].net, "cycles done", result.seconds,
                            extra={"start": list(hidden), **result.summary()})
