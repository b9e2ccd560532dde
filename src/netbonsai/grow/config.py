"""Configuration of the grow-and-prune search (paper 000), with the paper's values as defaults."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from ..errors import InputError
from ..nets.activations import check_activation
from ..train import TrainerConfig

REFERENCES = ("phase", "previous")
# "half-layer": paper 000's new neuron, fed by the inputs, feeding the starting network's neurons.
# "cascade": a neuron after every other one (before the outputs), fed by the inputs and every
# neuron, feeding the outputs (as in Fahlman and Lebiere's cascade-correlation): grown
# networks get deeper, where half-layer neurons only widen the first layer.
PLACEMENTS = ("half-layer", "cascade")
# How a new neuron's weights are chosen. "random" (paper 000): the best of N3 draws from U[-1, 1]
# by the loss right after insertion. "gradient": the N3 random input-weight draws are ranked by
# the norm of the loss gradient with respect to the new neuron's still-zero output weights: the
# product of its activation with the error back-propagated to each neuron it feeds (at a trained
# network that error sums to zero at every neuron, so this is their covariance, the score of
# Fahlman and Lebiere's cascade-correlation without its normalisation; also Evci et al.'s
# GradMax), and the output weights of the best few are set by a batched line search along -g.
NEURON_INITS = ("random", "gradient")
_TYPES = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}


def check_field_types(cls: type, data: dict[str, Any]) -> None:
    """Raise :class:`InputError` when a value does not match its dataclass field's annotation."""
    annotations = {f.name: str(f.type) for f in fields(cls)}
    for name, value in data.items():
        if name not in annotations:
            raise InputError(f"unknown {cls.__name__} key {name!r}")
        parts = [p.strip() for p in annotations[name].split("|")]
        if value is None and "None" in parts:
            continue
        allowed = tuple(t for p in parts for t in _TYPES.get(p, ()))
        if not allowed:
            continue
        if isinstance(value, bool) and bool not in allowed:
            raise InputError(f"{name} must be {annotations[name]}, got {value!r}")
        if not isinstance(value, allowed):
            raise InputError(f"{name} must be {annotations[name]}, got {value!r}")


@dataclass(frozen=True)
class GrowConfig:
    """Every knob of the search. Budgets are in trainer epochs (L-BFGS iterations).

    Paper 000 defaults: N1 = 8 removal candidates, N2 = 3 trial retrainings, N3 = 100 random
    attempts for a new neuron, eps = 0.002, reference loss = the loss at the start of the phase.
    """

    hidden: tuple[int, ...] = (6, 6)  # the starting dense MLP's hidden layers
    skip: bool = False  # the starting MLP also has a synapse from every input to every output
    activation: str = "tanh"
    n_candidates: int = 8  # N1: lowest-scoring synapses whose removal is evaluated
    n_trials: int = 3  # N2: best removals retrained briefly
    n_attempts: int = 100  # N3: random weight sets tried for a new neuron
    eps: float = 0.002  # a removal is accepted while loss <= (1 + eps) * reference
    reference: str = "phase"  # "phase": loss at the start of the prune phase; "previous": last step
    start_epochs: int = 2000  # training of the starting dense network
    trial_epochs: int = 30  # trial retraining of each of the N2 removals
    grow_epochs: int = 200  # training after a neuron is added
    attempt_samples: int = 8192  # training samples used to score the N3 attempts
    trial_samples: int | None = None  # training samples for trial retraining (None: all)
    selection_fraction: float = 0.0  # share of the training split held out for the search's decisions
    init_range: float = 1.0  # new-neuron input weights and bias ~ U[-init_range, init_range]
    init_range_out: float = 0.1  # new-neuron output weights ~ U[-init_range_out, init_range_out]
    feed_added: bool = False  # a new neuron also feeds earlier added neurons
    placement: str = "half-layer"  # where a new neuron goes: see PLACEMENTS
    neuron_init: str = "random"  # how a new neuron's weights are chosen: see NEURON_INITS
    neuron_removal: bool = False  # a prune phase first removes whole hidden neurons while one fits eps
    # stop once a prune phase ends at or above this complexity; the last addition can overshoot it
    # by one neuron's synapses (hard_max_params: never keep a network above it)
    max_params: int = 300
    max_cycles: int | None = None  # stop after this many added neurons
    max_seconds: float | None = None  # stop once the search has run this long
    target_loss: float | None = None  # stop once validation loss (reported units) is this low
    max_prune_steps: int = 10_000  # safety bound on removals in one phase
    # max_params as a hard cap: only networks with params <= max_params go on the front or end the
    # search, and an addition that would exceed it is not made (the search stops, "max_params")
    hard_max_params: bool = False
    seed: int = 0
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def __post_init__(self) -> None:
        check_activation(self.activation)
        if not self.hidden or any(int(h) < 1 for h in self.hidden):
            raise InputError(f"hidden layer sizes must be positive, got {list(self.hidden)}")
        positive = (
            "n_candidates", "n_trials", "n_attempts", "attempt_samples", "max_params", "max_prune_steps",
        )
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("start_epochs", "trial_epochs", "grow_epochs"):
            if int(getattr(self, name)) < 0:
                raise InputError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.n_trials > self.n_candidates:
            raise InputError(f"n_trials ({self.n_trials}) cannot exceed n_candidates ({self.n_candidates})")
        if not 0 <= self.eps < 1:
            raise InputError(f"eps must be in [0, 1), got {self.eps}")
        if self.placement not in PLACEMENTS:
            raise InputError(f"placement must be one of {', '.join(PLACEMENTS)}, got {self.placement!r}")
        if self.neuron_init not in NEURON_INITS:
            raise InputError(f"neuron_init must be one of {', '.join(NEURON_INITS)}, got {self.neuron_init!r}")
        if self.placement == "cascade" and self.feed_added:
            raise InputError("feed_added applies to half-layer neurons; a cascade neuron already feeds every later one")
        if self.reference not in REFERENCES:
            raise InputError(f"reference must be one of {', '.join(REFERENCES)}, got {self.reference!r}")
        if not 0 < self.init_range < float("inf") or not 0 < self.init_range_out < float("inf"):
            raise InputError("init_range and init_range_out must be positive")
        if not 0.0 <= self.selection_fraction < 1.0:
            raise InputError(f"selection_fraction must be in [0, 1), got {self.selection_fraction}")
        if self.trial_samples is not None and self.trial_samples < 1:
            raise InputError(f"trial_samples must be at least 1, got {self.trial_samples}")
        if self.max_cycles is not None and self.max_cycles < 0:
            raise InputError(f"max_cycles must be >= 0, got {self.max_cycles}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise InputError(f"max_seconds must be positive, got {self.max_seconds}")
        if self.target_loss is not None and not 0 <= self.target_loss < float("inf"):
            raise InputError(f"target_loss must be a finite loss >= 0, got {self.target_loss}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (written to config.json)."""
        data = asdict(self)
        data["hidden"] = list(self.hidden)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "GrowConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise InputError(f"unknown grow config keys: {', '.join(sorted(unknown))}")
        data = dict(data)
        if "hidden" in data:
            hidden = data["hidden"]
            if not isinstance(hidden, (list, tuple)) or not all(isinstance(h, int) and not isinstance(h, bool) for h in hidden):
                raise InputError(f"hidden must be a list of integers, got {hidden!r}")
            data["hidden"] = tuple(hidden)
        if isinstance(data.get("trainer"), dict):
            check_field_types(TrainerConfig, data["trainer"])
            data["trainer"] = TrainerConfig(**data["trainer"])
        check_field_types(cls, {k: v for k, v in data.items() if k not in ("hidden", "trainer")})
        return cls(**data)

    def with_overrides(self, **changes: Any) -> "GrowConfig":
        """A copy with the given fields replaced (None values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def for_task(config: GrowConfig, task: Any) -> GrowConfig:
    """``config`` with the loss ``task`` decides: a classification task (``task.loss ==
    "cross_entropy"``; integer labels, logit outputs) trains and decides with softmax
    cross-entropy, so a trainer left at ``mse`` (the default) is switched to ``cross_entropy``.
    A regression task, or a trainer already on cross-entropy, leaves ``config`` as it is."""
    if getattr(task, "loss", "mse") == "cross_entropy" and config.trainer.loss == "mse":
        return replace(config, trainer=replace(config.trainer, loss="cross_entropy"))
    return config
