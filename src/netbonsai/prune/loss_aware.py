"""Loss-aware synapse removal (paper 000), generalised to remove a chunk of synapses per step.

Paper 000 removes one synapse at a time: score every live synapse i -> j by its normalised
magnitude |w_ij| / max_k |w_kj|, compute the loss without each of the N1 lowest, retrain the N2
cheapest briefly and keep the best, while the loss stays within (1 + eps) of a reference. That is
one retraining per synapse, far too slow to remove thousands of weights (MNIST 784-7-7-10 has
5,607). :func:`loss_aware_prune` keeps the paper's ingredients and removes ``chunk`` synapses per
step, shrinking the chunk when a step fails:

1. **Candidates.** The N1 live synapses with the lowest normalised magnitude, where
   ``N1 = max(n_candidates, ceil(candidate_factor * chunk) + n_trials - 1)``.
2. **Exact cost of each removal.** :func:`single_removal_losses` gives the training loss of the
   network without each candidate, all candidates in one batched population pass. Removing
   i -> j only shifts node j's pre-activation by ``-w_ij * a_i``, so the nodes below j's level are
   computed once and only the later levels are evaluated per candidate (for 784-7-7-10: 24 of 808
   nodes), which is what makes thousands of candidates affordable. Candidates are then ordered by
   this cost, cheapest first.
3. **Trial variants, retrained together.** ``n_trials`` variants, each removing a window of the
   cost-ordered candidates, are retrained as one population (one :func:`~netbonsai.train.fit`
   call; variants never mix). ``variants="sizes"`` (the default) tries nested chunks of
   decreasing size, the cheapest ``chunk``, ``chunk // 2``, ``chunk // 4``, ... candidates, so one
   training tests several halvings at once; ``variants="shifts"`` tries the same size with the
   window moved down the ranking (``[0, chunk)``, ``[1, chunk + 1)``, ...). When there are fewer
   distinct sizes than trials (``chunk`` = 1, 2, ...) the remaining variants are shifted windows of
   the full chunk; at ``chunk`` = 1 every variant removes one synapse, the v-th cheapest, which is
   exactly paper 000's step: both are :func:`netbonsai.prune.removal.removal_trials`, the one
   implementation the search's :func:`netbonsai.grow.steps.removal_step` runs too.
4. **Acceptance.** A variant passes when its *decision loss* is at most ``(1 + eps)`` times the
   reference. The decision loss is measured on ``val_data`` when given (a held-out part of the
   **training** set; never pass the test set) and on the full training data otherwise. Among the
   passing variants the one removing the most synapses wins, ties going to the lower loss (so at
   chunk 1 the lowest loss wins, as in the paper). The reference is the decision loss of the
   starting network (``reference="phase"``) or of the last accepted network (``"previous"``).
   With ``settle_epochs`` the starting network is first retrained with the trial trainer, so
   that the reference comes from a network trained like the variants it is compared with (a
   network trained with small noisy minibatches otherwise gives the first removals free slack:
   retraining alone lowers its loss).
5. **Halving.** When no variant passes, the chunk becomes half the smallest size just tried (at
   least 1) and the step is retried; when even a step at chunk 1 fails (``n_trials`` single
   removals, as in the paper) the removal has converged. After
   an accepted step the chunk grows back to ``min(chunk, 2 * accepted size)`` (``regrow=True``).
6. **Stopping.** Converged, a target number or fraction of removed synapses reached, a time
   budget spent (no try is started that would end past ``max_seconds`` if it took as long as
   the previous one), no synapse left, or ``max_steps`` accepted steps.

Every random choice (training minibatch order, subsamples) is seeded from ``config.seed`` and the
step number, so a run is deterministic given its seed. Removed synapses never come back: the
mask entry is cleared and training keeps masked weights at zero.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable

import torch

from ..errors import InputError
from ..nets.dag import DagNet
from ..nets.synapses import lowest_synapses, removal_scores  # noqa: F401 - the scoring grow's steps use too (one implementation)
from ..train import Budget, TrainerConfig, evaluate
# the removal trial itself is one implementation, shared with the grow-and-prune search's steps
from .removal import (  # noqa: F401 - re-exported: their home was this module
    _EVAL_ROWS, RemovalTrials, remove_windows, removal_trials, single_removal_losses, train_population,
    variant_windows,
)

VARIANTS = ("sizes", "shifts")
DECISIONS = ("loss", "errors")
REFERENCES = ("phase", "previous")

# ---------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class LossAwareConfig:
    """Settings of :func:`loss_aware_prune`. With ``chunk=1`` it is paper 000's removal phase.

    Budgets are in trainer epochs (L-BFGS: iterations). ``max_fraction`` is a share of the live
    synapses of the network the run started from.
    """

    chunk: int = 1  # synapses removed per step at the start (and the most ever tried)
    n_candidates: int = 8  # N1 at chunk 1: lowest-scored synapses whose removal loss is computed
    candidate_factor: float = 2.0  # N1 grows with the chunk: ceil(factor * chunk) + n_trials - 1
    n_trials: int = 3  # N2: variants retrained together in one population
    variants: str = "sizes"  # "sizes": chunk, chunk//2, ...; "shifts": the window moved down the ranking
    trial_epochs: int = 1  # retraining of every variant
    settle_epochs: int = 0  # retrain the starting network this long (trial trainer) before the reference is taken
    trial_samples: int | None = None  # training samples for the retraining (None: all; a fresh seeded draw per step)
    score_samples: int | None = None  # training samples for the candidates' exact losses (None: all)
    eps: float = 0.002  # a variant passes while decision loss <= (1 + eps) * reference
    decision: str = "loss"  # what the acceptance test compares: "loss" (the trainer's) or "errors" (misclassification rate)
    reference: str = "phase"  # "phase": the starting network's loss; "previous": the last accepted one
    regrow: bool = True  # after an accepted step the chunk grows back to min(chunk, 2 * accepted)
    max_removed: int | None = None  # stop after removing this many synapses
    max_fraction: float | None = None  # ... or this share of the starting live synapses
    max_seconds: float | None = None  # stop starting new steps after this long
    max_steps: int = 1_000_000  # safety bound on accepted steps
    seed: int = 0
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def __post_init__(self) -> None:
        for name in ("chunk", "n_candidates", "n_trials", "max_steps"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.candidate_factor < 1:
            raise InputError(f"candidate_factor must be >= 1, got {self.candidate_factor}")
        for name in ("trial_epochs", "settle_epochs"):
            if int(getattr(self, name)) < 0:
                raise InputError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("trial_samples", "score_samples", "max_removed"):
            value = getattr(self, name)
            if value is not None and int(value) < 1:
                raise InputError(f"{name} must be at least 1 (or None), got {value}")
        if not 0 <= self.eps < float("inf"):
            raise InputError(f"eps must be >= 0, got {self.eps}")
        if self.decision not in DECISIONS:
            raise InputError(f"unknown decision {self.decision!r}; choose one of {', '.join(DECISIONS)}")
        if self.variants not in VARIANTS:
            raise InputError(f"unknown variants {self.variants!r}; choose one of {', '.join(VARIANTS)}")
        if self.reference not in REFERENCES:
            raise InputError(f"unknown reference {self.reference!r}; choose one of {', '.join(REFERENCES)}")
        if self.max_fraction is not None and not 0 < self.max_fraction <= 1:
            raise InputError(f"max_fraction must be in (0, 1], got {self.max_fraction}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise InputError(f"max_seconds must be > 0, got {self.max_seconds}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["trainer"] = asdict(self.trainer)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LossAwareConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"unknown LossAwareConfig key {unknown[0]!r}")
        values = dict(data)
        if isinstance(values.get("trainer"), dict):
            values["trainer"] = TrainerConfig(**values["trainer"])
        return cls(**values)


# ---------------------------------------------------------------------- state and result
@dataclass
class LossAwareState:
    """Everything needed to continue a removal run (see ``checkpoint`` in :func:`loss_aware_prune`)."""

    net: DagNet
    chunk: int
    reference: float  # the current reference loss of the acceptance test
    start_live: int
    start_reference: float | None = None  # the starting network's decision loss (None: = reference)
    start_net: DagNet | None = None  # the starting network after settling (None: not kept)
    removed: int = 0
    step: int = 0  # accepted steps so far
    attempt: int = 0  # retrainings so far (accepted or not); seeds each one
    seconds: float = 0.0  # time spent in earlier sessions
    steps: list[dict[str, Any]] = field(default_factory=list)
    last_tries: list[dict[str, Any]] = field(default_factory=list)  # failed tries since the last accepted step
    stop_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain tensors and JSON-like values (``torch.save`` / ``weights_only`` loading)."""
        from ..nets.io import net_to_state

        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("net", "start_net")}
        data["net"] = net_to_state(self.net)
        data["start_net"] = None if self.start_net is None else net_to_state(self.start_net)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LossAwareState":
        from ..nets.io import net_from_state

        values = dict(data)
        values["net"] = net_from_state(values["net"])
        if values.get("start_net") is not None:
            values["start_net"] = net_from_state(values["start_net"])
        return cls(**values)


@dataclass
class LossAwareResult:
    """The pruned network (population 1, not compacted) and one record per accepted step."""

    net: DagNet
    steps: list[dict[str, Any]]
    stop_reason: str
    reference_loss: float
    start_live: int  # live synapses of the starting network
    removed: int  # synapses removed
    seconds: float
    last_tries: list[dict[str, Any]] = field(default_factory=list)  # failed tries after the last accepted step
    start_net: DagNet | None = None  # the starting network after settling (the reference's network)

    @property
    def removed_fraction(self) -> float:
        """Removed synapses over the starting network's live synapses."""
        return self.removed / max(1, self.start_live)


# ---------------------------------------------------------------------- the removal loop
def _subsample(x: torch.Tensor, y: torch.Tensor, count: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    if count is None or count >= x.shape[0]:
        return x, y
    index = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[:count]
    index = index.sort().values.to(x.device)
    return x[index], y[index]


def _live(net: DagNet) -> int:
    return int(net.mask[0].sum())


def _target_removed(config: LossAwareConfig, start_live: int) -> int:
    target = start_live
    if config.max_removed is not None:
        target = min(target, int(config.max_removed))
    if config.max_fraction is not None:
        target = min(target, int(math.floor(config.max_fraction * start_live + 1e-9)))
    return target


@torch.no_grad()
def _decision_values(net: DagNet, x: torch.Tensor, y: torch.Tensor, config: "LossAwareConfig") -> torch.Tensor:
    """Per-variant value the acceptance test compares: the trainer's loss, or the error rate."""
    if config.decision == "loss":
        return evaluate(net, x, y, config.trainer.loss, chunk_rows=_EVAL_ROWS)
    wrong = torch.zeros(net.population_size, device=x.device)
    step = max(1, _EVAL_ROWS // (net.population_size * max(1, net.n_nodes)))
    for start in range(0, x.shape[0], step):
        logits = net.population(x[start : start + step])
        wrong += (logits.argmax(dim=-1) != y[start : start + step]).sum(dim=1)
    return wrong / x.shape[0]


def loss_aware_prune(
    net: DagNet,
    x: torch.Tensor,
    y: torch.Tensor,
    config: LossAwareConfig = LossAwareConfig(),
    val_data: tuple[torch.Tensor, torch.Tensor] | None = None,
    on_step: Callable[[dict[str, Any], DagNet], dict[str, Any] | None] | None = None,
    checkpoint: Callable[[LossAwareState], None] | None = None,
    state: LossAwareState | None = None,
) -> LossAwareResult:
    """Remove synapses from a population-1 ``net`` while the loss stays within ``(1 + eps)``.

    ``(x, y)`` is the training data: it scores the candidates and retrains the variants.
    ``val_data`` (optional) is a held-out part of the *training* set on which the acceptance
    test is decided; without it the full training loss decides. The input network is not
    modified. ``on_step(record, net)`` is called after every accepted step with the step's
    record (``step``, ``removed``, ``params``, ``live``, ``train_loss``, ``decision_loss``,
    ``chunk``, ``tried``, ``failed``, ``seconds``) and the accepted network; a dict it returns is
    merged into the record. ``checkpoint(state)`` is called after every accepted step, and once
    more when the run stops, with the state to pass back as ``state`` to continue an
    interrupted run exactly (a finished state returns at once).
    """
    if net.population_size != 1:
        raise InputError("loss_aware_prune() needs a network with population size 1")
    trainer = config.trainer
    loss_name = trainer.loss
    decision_x, decision_y = val_data if val_data is not None else (x, y)
    started = time.perf_counter()
    if state is None:
        start = net.clone()
        if config.settle_epochs > 0:
            train_population(start, x, y, Budget(epochs=config.settle_epochs), trainer, seed=config.seed * 1_000_003 + 999_999)
        reference = float(_decision_values(start, decision_x, decision_y, config)[0])
        state = LossAwareState(
            net=start, chunk=config.chunk, reference=reference, start_live=_live(start), start_reference=reference,
            start_net=start,
        )
    if state.start_reference is None:
        state.start_reference = state.reference
    if state.stop_reason is not None:
        return _result(state, started)
    target = _target_removed(config, state.start_live)
    tried = state.last_tries
    last_try = 0.0  # duration of the latest try (scoring, retraining, decision)

    def elapsed() -> float:
        return state.seconds + time.perf_counter() - started

    while True:
        n_live = _live(state.net)
        if n_live == 0:
            state.stop_reason = "no_synapses"
        elif state.removed >= target:
            state.stop_reason = "target"
        elif config.max_seconds is not None and elapsed() + last_try >= config.max_seconds:
            state.stop_reason = "max_seconds"  # no try is started that would likely overrun the budget
        elif state.step >= config.max_steps:
            state.stop_reason = "max_steps"
        if state.stop_reason is not None:
            break
        try_started = time.perf_counter()
        chunk = max(1, min(state.chunk, target - state.removed, n_live))
        windows = variant_windows(chunk, config.n_trials, config.variants)
        need = max(o + s for o, s in windows)
        n1 = min(n_live, max(config.n_candidates, need, math.ceil(config.candidate_factor * chunk) + config.n_trials - 1))
        sources, targets = lowest_synapses(state.net, n1)
        seed = config.seed * 1_000_003 + state.attempt
        trial = removal_trials(
            state.net, sources, targets, windows, x, y, trainer, config.trial_epochs, seed,
            score_data=_subsample(x, y, config.score_samples, seed),
            trial_data=_subsample(x, y, config.trial_samples, seed + 1),
        )
        trials, chosen, sizes, train_losses = trial.trials, trial.chosen, trial.sizes, trial.losses
        if val_data is not None or config.decision == "errors":
            decision = _decision_values(trials, decision_x, decision_y, config)
        else:
            decision = train_losses if train_losses is not None else evaluate(trials, x, y, loss_name, chunk_rows=_EVAL_ROWS)
        state.attempt += 1
        last_try = time.perf_counter() - try_started
        limit = (1.0 + config.eps) * state.reference
        passing = [v for v in range(len(chosen)) if float(decision[v]) <= limit]
        tried.append({"chunk": chunk, "sizes": sizes, "losses": [float(v) for v in decision]})
        if not passing:
            if chunk == 1:  # a full chunk-1 step (n_trials single removals) failed
                state.stop_reason = "converged"
                break
            state.chunk = max(1, min(sizes) // 2)
            continue
        best = min(passing, key=lambda v: (-sizes[v], float(decision[v]), v))
        accepted = trials.select(best)
        if train_losses is not None and val_data is None:
            train_loss = float(decision[best])
        elif train_losses is not None:
            train_loss = float(train_losses[best])
        else:
            train_loss = float(evaluate(accepted, x, y, loss_name, chunk_rows=_EVAL_ROWS)[0])
        used_reference = state.reference
        state.net = accepted
        state.removed += sizes[best]
        state.step += 1
        if config.reference == "previous":
            state.reference = float(decision[best])
        state.chunk = min(config.chunk, 2 * sizes[best]) if config.regrow else sizes[best]
        record: dict[str, Any] = {
            "step": state.step,
            "removed": state.removed,
            "params": accepted.num_params(),
            "live": _live(accepted),
            "train_loss": train_loss,
            "decision_loss": float(decision[best]),
            "reference": used_reference,
            "chunk": sizes[best],
            "tried": tried,
            "failed": len(tried) - 1,
            "seconds": elapsed(),
        }
        if on_step is not None:
            extra = on_step(record, accepted)
            if extra:
                record.update(extra)
        state.steps.append(record)
        tried = state.last_tries = []
        state.seconds, started = elapsed(), time.perf_counter()
        if checkpoint is not None:
            checkpoint(state)
    if checkpoint is not None:  # the finished state: resuming it returns at once
        state.seconds, started = elapsed(), time.perf_counter()
        checkpoint(state)
    return _result(state, started)


def _result(state: LossAwareState, started: float) -> LossAwareResult:
    seconds = state.seconds + time.perf_counter() - started
    return LossAwareResult(
        net=state.net,
        steps=state.steps,
        stop_reason=state.stop_reason or "unknown",
        reference_loss=state.start_reference if state.start_reference is not None else state.reference,
        last_tries=state.last_tries,
        start_net=state.start_net,
        start_live=state.start_live,
        removed=state.removed,
        seconds=seconds,
    )
