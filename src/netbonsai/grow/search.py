"""The grow-and-prune loop of paper 000, as a resumable state machine.

start: a dense MLP trained with the run's trainer. Then repeat: a prune phase (remove one synapse
at a time while the retrained loss stays within (1 + eps) of the reference), stop if the
complexity reached the limit (or the time budget, a loss target, a cycle limit), otherwise add a
neuron and train. Every accepted change is an event; every event's network is a candidate for
the Pareto front of validation loss against parameters.

:func:`grow` performs one unit of work per loop iteration and hands the whole state to a
``checkpoint`` callback after each event, so a run killed at any moment resumes from its last
event and continues exactly as the uninterrupted run would (the random generator, the phase and
its reference loss are part of the state).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..analysis.pareto import pareto_front
from ..data.checks import require_finite
from ..data.tasks import TaskData
from ..errors import InputError
from ..nets.dag import DagNet
from ..nets.io import net_from_state, net_to_state
from ..nets.normalization import standardize_for
from ..runtime import thread_policy, threads
from ..train import Budget, evaluate, fit
from ..train.losses import population_outputs, sample_chunks
from .config import GrowConfig, for_task
from .steps import addition_step, neuron_removal_step, removal_step
from ..data.task import Split

EventListener = Callable[[dict[str, Any]], None]


@dataclass
class FrontPoint:
    """A network on (or once on) the Pareto front, with its losses in reported units."""

    params: int
    train_loss: float
    val_loss: float
    event: int
    net: DagNet

    def summary(self) -> dict[str, Any]:
        return {"params": self.params, "train_loss": self.train_loss, "val_loss": self.val_loss, "event": self.event}


@dataclass
class SearchState:
    """Everything needed to continue a search: saved in checkpoints."""

    net: DagNet
    phase: str  # "prune", "grow" or "done"
    reference: float  # prune-phase reference training loss (raw MSE)
    train_loss: float  # raw MSE of ``net`` on the training set
    cycles: int = 0  # neurons added so far
    phase_steps: int = 0  # removals accepted in the current prune phase
    neurons_done: bool = False  # this prune phase has stopped removing whole neurons
    seconds: float = 0.0  # search time so far, across resumes
    # training epochs (L-BFGS iterations) in the current network's history: the start network's
    # training, the trial retraining of every accepted removal and the training after every
    # addition (None: resumed from a checkpoint that did not count them)
    epochs: int | None = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    front: list[FrontPoint] = field(default_factory=list)
    generator_state: torch.Tensor | None = None
    stop_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``torch.save`` (loadable with ``weights_only=True``)."""
        return {
            "net": net_to_state(self.net),
            "phase": self.phase,
            "reference": self.reference,
            "train_loss": self.train_loss,
            "cycles": self.cycles,
            "phase_steps": self.phase_steps,
            "neurons_done": self.neurons_done,
            "seconds": self.seconds,
            "epochs": self.epochs,
            "events": [dict(e) for e in self.events],
            "front": [{**p.summary(), "net": net_to_state(p.net)} for p in self.front],
            "generator_state": self.generator_state,
            "stop_reason": self.stop_reason,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SearchState":
        front = [
            FrontPoint(p["params"], p["train_loss"], p["val_loss"], p["event"], net_from_state(p["net"]))
            for p in data["front"]
        ]
        return cls(
            net=net_from_state(data["net"]),
            phase=data["phase"],
            reference=data["reference"],
            train_loss=data["train_loss"],
            cycles=data["cycles"],
            phase_steps=data["phase_steps"],
            neurons_done=data.get("neurons_done", False),  # absent in checkpoints before neuron removal
            seconds=data["seconds"],
            epochs=data.get("epochs"),  # absent in checkpoints before the count
            events=list(data["events"]),
            front=front,
            generator_state=data["generator_state"],
            stop_reason=data["stop_reason"],
        )


@dataclass
class GrowResult:
    """Outcome of a search: the final network, the Pareto front and the event history."""

    net: DagNet
    front: list[FrontPoint]
    events: list[dict[str, Any]]
    seconds: float
    stop_reason: str

    def best(self) -> FrontPoint:
        """The front network with the lowest validation loss."""
        return min(self.front, key=lambda p: p.val_loss)


def start_network(data: TaskData, config: GrowConfig) -> DagNet:
    """The untrained starting MLP, standardised on the training data, seeded by ``config.seed``."""
    generator = torch.Generator().manual_seed(config.seed)
    net = DagNet.mlp([data.n_in, *config.hidden, data.n_out], config.activation, generator=generator, skip=config.skip)
    return standardize_for(net.to(data.x_train.device), data.x_train, data.y_train)


def grow(
    data: TaskData,
    config: GrowConfig,
    initial: DagNet | None = None,
    state: SearchState | None = None,
    on_event: EventListener | None = None,
    checkpoint: Callable[[SearchState], None] | None = None,
) -> GrowResult:
    """Run (or, given ``state``, continue) the grow-and-prune search on ``data``.

    Args:
        data: the task's train/validation split; the search trains on ``x_train`` only.
        config: search settings (``GrowConfig``).
        initial: an already trained population-1 starting network; by default the config's
            dense MLP is built and trained for ``start_epochs``.
        state: a state from a checkpoint to continue from (``initial`` is then ignored).
        on_event: called with each new event dict (also recorded in ``state.events``).
        checkpoint: called with the state after every event.

    Runs with :func:`netbonsai.runtime.thread_policy` torch threads (1 unless the program chose
    otherwise with ``netbonsai.runtime.set_threads``) and restores the caller's count afterwards.
    ``config.max_params`` below the start network's parameter count is warned about (a
    ``UserWarning``): the search then stops after the first prune phase.

    A classification task (``data.loss == "cross_entropy"``: integer labels, logit outputs, one
    per class) decides its loss: a trainer left at ``mse`` is switched to ``cross_entropy``
    (:func:`~netbonsai.grow.config.for_task`), so training, removal candidates, trial retraining,
    the N3 attempts and the eps acceptance all use cross-entropy; its events also carry
    ``val_accuracy`` and ``val_errors``.
    """
    config = for_task(config, data)
    for name in ("x_train", "y_train", "x_val", "y_val"):
        require_finite(f"{name} of the task data", getattr(data, name))
    with threads(thread_policy()):
        search = _Search(data, config, on_event, checkpoint)
        state = search.begin(initial) if state is None else search.resume(state)
        while state.phase != "done":
            search.advance(state)
    return GrowResult(
        net=_final_network(state, config),
        front=sorted(state.front, key=lambda p: p.params),
        events=state.events,
        seconds=state.seconds,
        stop_reason=state.stop_reason or "done",
    )


def _final_network(state: SearchState, config: GrowConfig) -> DagNet:
    """The search's last network; with ``hard_max_params`` one within ``max_params`` (the front
    network with the lowest validation loss when the last one is above it: a start network above
    the limit that pruning could not bring down to it)."""
    if not config.hard_max_params or state.net.num_params() <= config.max_params:
        return state.net
    if not state.front:
        raise InputError(
            f"hard_max_params: no network of the search has at most max_params={config.max_params} parameters "
            f"(the last has {state.net.num_params()}); raise max_params or start smaller (hidden)"
        )
    return min(state.front, key=lambda p: p.val_loss).net


def _warn_below_start(params: int, config: GrowConfig) -> None:
    """Warn (once per call site, Python's default filter) that the limit is below the start network."""
    if config.max_params < params:
        warnings.warn(
            f"max_params={config.max_params} is below the start network's {params} parameters: the search stops "
            "when its first prune phase ends, above the limit unless pruning gets below it"
            + ("; hard_max_params keeps only networks within it" if config.hard_max_params else ""),
            UserWarning, stacklevel=4,
        )


def _added(epochs: int | None, more: int) -> int | None:
    return None if epochs is None else epochs + more


def _removed_synapse(result: Any, roles: tuple[str, ...]) -> dict[str, Any]:
    """A synapse-removal event's detail: [source role, source, target role, target]."""
    source, target = result.synapse
    return {"synapse": [roles[source], source, roles[target], target]}


def _removed_neuron(result: Any, roles: tuple[str, ...]) -> dict[str, Any]:
    """A neuron-removal event's detail: [role, node index]."""
    return {"neuron": [roles[result.neuron], result.neuron]}


class _Search:
    """One search's fixed context: data, config, the attempt sample and the callbacks."""

    def __init__(self, data, config: GrowConfig, on_event, checkpoint) -> None:
        self.data = data
        self.config = config
        self.on_event = on_event
        self.checkpoint = checkpoint
        self.scale = data.loss_scale
        self.classification = getattr(data, "kind", "regression") == "classification"
        # Gradient training uses the "fit" data; decisions (which removal, which attempt, whether
        # a removal stays within eps) use the "selection" data. By default both are the whole
        # training split, as in the paper; selection_fraction holds part of it out for decisions.
        n = data.x_train.shape[0]
        order = torch.randperm(n, generator=torch.Generator().manual_seed(config.seed + 15485863))
        n_sel = int(round(n * config.selection_fraction))
        if n_sel > 0:
            sel, fit_rows = order[:n_sel].sort().values, order[n_sel:].sort().values
            self.x_fit, self.y_fit = data.x_train[fit_rows], data.y_train[fit_rows]
            self.x_sel, self.y_sel = data.x_train[sel], data.y_train[sel]
        else:
            self.x_fit, self.y_fit = self.x_sel, self.y_sel = data.x_train, data.y_train
        sample = torch.Generator().manual_seed(config.seed + 7919)
        n_decide = self.x_sel.shape[0]
        index = torch.randperm(n_decide, generator=sample)[: min(config.attempt_samples, n_decide)]
        self.x_attempt, self.y_attempt = self.x_sel[index], self.y_sel[index]
        n_fit = self.x_fit.shape[0]
        self.trial_data = (self.x_fit, self.y_fit) if n_sel > 0 else None
        if config.trial_samples is not None and config.trial_samples < n_fit:
            trial = torch.randperm(n_fit, generator=torch.Generator().manual_seed(config.seed + 104729))
            trial = trial[: config.trial_samples]
            self.trial_data = (self.x_fit[trial], self.y_fit[trial])
        self.generator = torch.Generator().manual_seed(config.seed)
        self.clock = time.perf_counter()
        self.seconds_at_resume = 0.0

    # -------------------------------------------------------------- lifecycle
    def begin(self, initial: DagNet | None) -> SearchState:
        config = self.config
        if initial is None:
            net = start_network(self.data, config)
            _warn_below_start(net.num_params(), config)  # before the (long) start training
            fit(net, Split(self.x_fit, self.y_fit), Budget(epochs=config.start_epochs), config.trainer, seed=config.seed)
        else:
            if initial.population_size != 1 or initial.n_in != self.data.n_in or initial.n_out != self.data.n_out:
                raise InputError("the initial network must have population 1 and match the task's inputs and outputs")
            net = initial.clone().to(self.data.x_train.device)
            _warn_below_start(net.num_params(), config)
        net = net.compact()
        train_loss = self.decision_loss(net)
        epochs = config.start_epochs if initial is None else None  # a given network's own training is not known
        state = SearchState(net=net, phase="prune", reference=train_loss, train_loss=train_loss, epochs=epochs)
        self.emit(state, "start", hidden=list(config.hidden))
        return state

    def resume(self, state: SearchState) -> SearchState:
        if state.generator_state is not None:
            self.generator.set_state(state.generator_state)
        self.seconds_at_resume = state.seconds
        device = self.data.x_train.device
        state.net = state.net.to(device)
        for point in state.front:
            point.net = point.net.to(device)
        return state

    def advance(self, state: SearchState) -> None:
        """Do one unit of work: a removal step, the end of a prune phase, or a neuron addition."""
        if state.phase == "prune":
            self.prune(state)
        elif state.phase == "grow":
            self.add_neuron(state)

    # -------------------------------------------------------------- moves
    def prune(self, state: SearchState) -> None:
        """One removal (a whole neuron first, with ``neuron_removal``, while one fits), or the end of
        the prune phase when nothing fits within eps (or the phase's step limit is reached)."""
        config = self.config
        exhausted = False
        if state.phase_steps < config.max_prune_steps:
            if config.neuron_removal and not state.neurons_done:
                result = neuron_removal_step(
                    state.net, self.x_sel, self.y_sel, config.n_trials, config.trial_epochs, config.trainer,
                    seed=self.next_seed(), trial_data=self.trial_data,
                )
                if self.accept_removal(state, result, _removed_neuron):
                    return
                state.neurons_done = True  # from here on, this phase removes synapses
            result = removal_step(
                state.net, self.x_sel, self.y_sel,
                config.n_candidates, config.n_trials, config.trial_epochs, config.trainer, seed=self.next_seed(),
                trial_data=self.trial_data,
            )
            if self.accept_removal(state, result, _removed_synapse):
                return
            exhausted = result is None
        # the phase ends: the best candidate would cost more than eps
        params = state.net.num_params()
        reason = None
        if params >= config.max_params:
            reason = "max_params"
        elif config.max_cycles is not None and state.cycles >= config.max_cycles:
            reason = "max_cycles"
        elif exhausted:
            reason = "no_synapses"
        if reason is not None:
            self.stop(state, reason)
        else:
            state.phase = "grow"

    def accept_removal(self, state: SearchState, result: Any, describe: Callable[[Any, tuple[str, ...]], dict]) -> bool:
        """Accept a removal step's result if it is within eps of the reference: the network, its
        loss and a "prune" event (``describe`` names what went, in the old network's terms)."""
        if result is None or result.train_loss > (1.0 + self.config.eps) * state.reference:
            return False
        details = describe(result, state.net.roles)
        state.net = result.net.compact()
        state.train_loss = result.train_loss
        state.phase_steps += 1
        state.epochs = _added(state.epochs, self.config.trial_epochs)  # the accepted candidate was retrained
        if self.config.reference == "previous":
            state.reference = result.train_loss
        self.emit(state, "prune", **details, trial_losses=[round(v * self.scale, 6) for v in result.trial_losses])
        return True

    def add_neuron(self, state: SearchState) -> None:
        config = self.config
        added = addition_step(
            state.net, self.x_attempt, self.y_attempt, config.n_attempts, config.activation,
            self.generator, config.init_range, config.init_range_out, config.feed_added, config.trainer.loss,
            config.placement, config.neuron_init,
        )
        net = added.net
        if config.hard_max_params and net.num_params() > config.max_params:
            self.stop(state, "max_params")  # the addition would exceed the hard limit: not kept
            return
        if config.grow_epochs > 0:
            fit(net, Split(self.x_fit, self.y_fit), Budget(epochs=config.grow_epochs), config.trainer, seed=self.next_seed())
        state.net = net.compact()
        state.train_loss = state.reference = self.decision_loss(state.net)
        state.cycles += 1
        state.epochs = _added(state.epochs, config.grow_epochs)
        state.phase = "prune"
        state.phase_steps = 0
        state.neurons_done = False
        self.emit(state, "grow", attempt_loss=round(added.attempt_loss * self.scale, 6))

    def stop(self, state: SearchState, reason: str) -> None:
        state.phase = "done"
        state.stop_reason = reason
        self.emit(state, "stop", reason=reason)

    # -------------------------------------------------------------- bookkeeping
    def decision_loss(self, net: DagNet) -> float:
        """The loss the search's decisions use (raw MSE on the selection data)."""
        return float(evaluate(net, self.x_sel, self.y_sel, self.config.trainer.loss)[0])

    @torch.no_grad()
    def val_accuracy(self, net: DagNet) -> dict[str, Any]:
        """A classifier's ``val_accuracy`` and ``val_errors`` (argmax of the logits) on the validation split."""
        x, y = self.data.x_val, self.data.y_val
        wrong = sum(int((population_outputs(net, xb)[0].argmax(dim=-1) != yb).sum()) for xb, yb in sample_chunks(net, x, y))
        return {"val_accuracy": round(1.0 - wrong / y.shape[0], 6), "val_errors": wrong}

    def next_seed(self) -> int:
        return int(torch.randint(0, 2**31 - 1, (1,), generator=self.generator))

    def emit(self, state: SearchState, kind: str, **details: Any) -> None:
        """Record an event, update the front, check budgets, then checkpoint."""
        state.seconds = self.seconds_at_resume + (time.perf_counter() - self.clock)
        loss = self.config.trainer.loss
        val_loss = float(evaluate(state.net, self.data.x_val, self.data.y_val, loss)[0])
        params = state.net.num_params()
        selection = {}
        train_loss = state.train_loss
        if self.x_sel is not self.data.x_train:  # decisions use held-out training data
            selection = {"selection_loss": state.train_loss * self.scale}
            train_loss = float(evaluate(state.net, self.data.x_train, self.data.y_train, loss)[0])
        event = {
            "event": kind,
            "index": len(state.events),
            "params": params,
            "train_loss": train_loss * self.scale,
            "val_loss": val_loss * self.scale,
            **(self.val_accuracy(state.net) if self.classification else {}),
            **selection,
            "seconds": round(state.seconds, 3),
            "cycle": state.cycles,
            "n_hidden": state.net.n_hidden,
            **({"epochs": state.epochs} if state.epochs is not None else {}),
            **details,
        }
        state.events.append(event)
        if kind != "stop":
            self.update_front(state, event)
        if self.on_event is not None:
            self.on_event(event)
        reason = self.budget_exhausted(state, event) if kind != "stop" else None
        if reason is not None:
            self.stop(state, reason)  # emits the stop event and checkpoints
            return
        state.generator_state = self.generator.get_state()
        if self.checkpoint is not None:
            self.checkpoint(state)

    def budget_exhausted(self, state: SearchState, event: dict[str, Any]) -> str | None:
        config = self.config
        if config.target_loss is not None and event["val_loss"] <= config.target_loss:
            return "target_loss"
        if config.max_seconds is not None and state.seconds >= config.max_seconds:
            return "max_seconds"
        return None

    def update_front(self, state: SearchState, event: dict[str, Any]) -> None:
        if self.config.hard_max_params and event["params"] > self.config.max_params:
            return  # never on the front above a hard limit
        point = FrontPoint(event["params"], event["train_loss"], event["val_loss"], event["index"], state.net.clone())
        points = state.front + [point]
        kept = {p["event"] for p in pareto_front([p.summary() for p in points])}
        state.front = [p for p in points if p.event in kept]
