"""Paper 001 section 4.4: genetic architecture search with and without structural performance
prediction, against random search, at equal training compute.

``netbonsai reproduce genetic-nas [--preset quick|paper] [--data DIR]`` runs three searches over the
CNN DAG genotypes of :mod:`netbonsai.search` (depth limits, mutations and the paper's GA settings:
population 30, mutation probability 0.5, crossover probability 0, the worst 10% removed):

1. ``with_prediction``: the GA with the structural performance predictor (a random forest on the
   56 genotype features, refitted on every trained record, through
   :class:`~netbonsai.search.RecordAdapter`): by default (``estimation_mode="screen"``) twice as
   many children are bred and scored, and the better predicted half is trained; with
   ``"replace"`` half of the children get a predicted accuracy instead of a training;
2. ``without_prediction``: the same GA training every child (estimation fraction 0);
3. ``random``: random genotypes, a population's worth at a time.

Equal compute: every search trains exactly ``n_trained`` genotypes (the settings are refused when a
GA cannot stop at exactly that count), each record carrying the training's seconds. All three use
the run's seed, so they start from the same random population (common random numbers: the
searches differ only in what they do after it); a genotype an earlier search already trained (same
canonical key) is not trained again: its result is reused, seconds included, so every search is
charged the training as if it had run it (``reused: true`` in its record).

Fitness is the validation accuracy after ``epochs`` of minibatch Adam (a fresh network seeded with
the run's seed; one executor job per genotype, so a generation trains in parallel). Data: scikit-
learn's digits (8x8, pixels / 16) split seeded 60/20/20 into training, validation and test rows;
with ``--data DIR`` an MNIST-style IDX folder, images average-pooled to ``image_side``. Every job
also measures its network's test accuracy, but no decision reads it: it goes into the records and
is reported only for each search's best genotype (chosen by validation accuracy) at the end, which
is cheaper than training the three best networks again.

The searches' states (plain JSON-like dicts) are checkpointed after every generation (batch), so
``--resume`` continues a killed run exactly. At the end: result.json, report.md,
``meta_dataset.jsonl`` (one line per record of every search), ``curves.png`` and
``best_genotype.png`` (:mod:`.genetic_nas_report`).
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..data.idx import resolve_data_root
from ..data.specs import idx_task
from ..data.task import Split
from ..errors import InputError
from ..methods.base import settings_with
from ..runs import HISTORY, RunContext, read_history
from ..search import (
    CROSSOVERS, MUTATIONS, AccuracyPredictor, EvolutionSettings, Genotype, GenotypeKind, RecordAdapter,
    count_params, decode, evolve, make_record, random_genotype, random_search,
)
from ..search.evolution import EvolutionResult, round_half_up
from ..search.genotype import OPS
from ..search.predictor import REGRESSORS
from ..train import Budget, TrainerConfig, fit
from ..train.losses import correct_predictions
from .genetic_nas_report import LABELS, SEARCHES, write_outputs
from .presets import reproduce_config

KIND = "genetic-nas"
EVAL_ROWS = 2_000  # rows per forward pass when measuring accuracies
RESULT_FIELDS = ("fitness", "params", "seconds", "test_accuracy")  # what a training job returns


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


@dataclass(frozen=True)
class GeneticNasSettings:
    """One preset: the searches' size, the GA (paper section 4.4), the genotypes, the training, the data."""

    n_trained: int = 300  # N: genotypes every search trains (equal compute)
    population: int = 30
    mutation_prob: float = 0.5
    crossover_prob: float = 0.0
    cull_fraction: float = 0.1  # the worst members removed (and children bred) per generation
    estimation_fraction: float = 0.5  # of the GA with prediction (the other GA: 0)
    # how that GA uses the predictor (search.evolution): "screen" trains the better predicted half of twice
    # the candidates; "replace" (the paper's wording) gives half of the children a predicted fitness.
    # Chosen on the quick preset's validation curves: screen reached the other GA's best validation
    # accuracy after 1.06-1.31x fewer trainings (seeds 0-2), replace after 1.02x (docs/RESULTS.md)
    estimation_mode: str = "screen"
    tournament: int = 3
    min_depth: int = 6
    max_depth: int = 12
    random_min_depth: int | None = None  # random search's limits; None: the GA's (the paper's random search: 10..36)
    random_max_depth: int | None = None
    channels: tuple[int, ...] = (8, 16, 32, 64)  # a conv vertex's channel counts
    epochs: int = 8
    lr: float = 3e-3
    batch_size: int = 64
    predictor_min_records: int = 20  # the predictor estimates once fitted on this many trained records
    regressor: str = "forest"
    val_fraction: float = 0.2  # digits rows held out for validation ...
    test_fraction: float = 0.2  # ... and for the test
    image_side: int = 14  # --data: IDX images average-pooled to image_side x image_side
    idx_val_size: int = 5_000
    idx_max_train: int | None = 10_000
    idx_max_test: int | None = None

    def __post_init__(self) -> None:
        positive = {"n_trained": self.n_trained, "epochs": self.epochs, "batch_size": self.batch_size,
                    "image_side": self.image_side, "idx_val_size": self.idx_val_size}
        for name, value in positive.items():
            if not _positive_int(value):
                raise InputError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("idx_max_train", "idx_max_test"):
            if getattr(self, name) is not None and not _positive_int(getattr(self, name)):
                raise InputError(f"{name} must be None or an integer >= 1, got {getattr(self, name)!r}")
        if not self.channels or not all(_positive_int(c) for c in self.channels):
            raise InputError(f"channels must be positive integers, got {self.channels!r}")
        for low, high in (self.depths(), self.depths(random=True)):
            if not (isinstance(low, int) and isinstance(high, int) and 1 <= low <= high):
                raise InputError(f"depth limits must be integers with 1 <= min <= max, got {low}..{high}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise InputError(f"lr must be a finite number > 0, got {self.lr!r}")
        held_out = (self.val_fraction, self.test_fraction)
        if not all(0 < f < 1 for f in held_out) or sum(held_out) >= 1:
            raise InputError("val_fraction and test_fraction must be in (0, 1) and leave training rows")
        if self.regressor not in REGRESSORS:
            raise InputError(f"regressor must be one of {', '.join(REGRESSORS)}, got {self.regressor!r}")
        if not _positive_int(self.predictor_min_records) or self.predictor_min_records < 2:
            raise InputError(f"predictor_min_records must be an integer >= 2, got {self.predictor_min_records!r}")
        self._ga(0.0)  # the GA settings (population first: n_trained is compared with it)
        if self.n_trained < self.population:
            raise InputError(f"n_trained ({self.n_trained}) must be at least the population ({self.population})")
        for estimation in (self.estimation_fraction, 0.0):
            self.evolution(estimation)  # validates the GA settings and that it stops at exactly n_trained

    def depths(self, random: bool = False) -> tuple[int, int]:
        if not random:
            return self.min_depth, self.max_depth
        low = self.min_depth if self.random_min_depth is None else self.random_min_depth
        return low, self.max_depth if self.random_max_depth is None else self.random_max_depth

    def trainer(self) -> TrainerConfig:
        return TrainerConfig(method="adam", loss="cross_entropy", lr=self.lr, batch_size=self.batch_size)

    def evolution(self, estimation: float) -> EvolutionSettings:
        """The GA's settings, with as many generations as it needs to train exactly ``n_trained``."""
        base = self._ga(estimation)
        counts = ga_trained_counts(base, self.predictor_min_records, self.n_trained)
        return EvolutionSettings(**{**asdict(base), "generations": len(counts)})

    def _ga(self, estimation: float) -> EvolutionSettings:
        """One generation's GA settings (EvolutionSettings checks them)."""
        return EvolutionSettings(population=self.population, generations=1, mutation_prob=self.mutation_prob,
                                 crossover_prob=self.crossover_prob, cull_fraction=self.cull_fraction,
                                 estimation_fraction=estimation, tournament=self.tournament,
                                 estimation_mode=self.estimation_mode)

    def kind(self, random: bool = False) -> GenotypeKind:
        """The genotypes within the (GA's or random search's) depth limits, convs with ``channels``."""
        low, high = self.depths(random)
        lim = {"min_depth": low, "max_depth": high}
        labels = {"ops": OPS, "channels": self.channels}
        return GenotypeKind(
            random=partial(random_genotype, **lim, **labels),
            mutations={name: partial(fn, **lim, **labels) for name, fn in MUTATIONS.items()},
            crossovers={name: partial(fn, **lim) for name, fn in CROSSOVERS.items()},
            to_dict=Genotype.to_dict, from_dict=Genotype.from_dict, key=Genotype.key)


def ga_trained_counts(settings: EvolutionSettings, min_records: int, n_trained: int) -> list[int]:
    """Trained genotypes after each generation of a GA that stops at ``n_trained``: the population,
    then ``cull`` children a generation, of which ``round_half_up(estimation_fraction * cull)`` are
    estimated once the predictor has ``min_records`` trained records in ``replace`` mode (none in
    ``screen`` mode: the estimated candidates come on top of the children). Every fitness is an
    accuracy, always finite, so every trained genotype is a record. InputError when no generation
    ends there."""
    cull, estimation = settings.cull, settings.estimation_fraction
    estimated = round_half_up(estimation * cull) if settings.estimation_mode == "replace" else 0
    counts = [settings.population]
    while counts[-1] < n_trained:
        ready = estimation > 0 and counts[-1] >= min_records
        step = cull - estimated if ready else cull
        if step < 1:
            raise InputError(f"estimation_fraction {estimation} estimates all {cull} children of a generation, "
                             "so the GA with prediction never trains another genotype")
        counts.append(counts[-1] + step)
    if counts[-1] != n_trained:
        which = "with" if estimation > 0 else "without"
        raise InputError(f"n_trained {n_trained} is not reachable by the GA {which} prediction: its generations "
                         f"end at {counts[-2]} and {counts[-1]} trained genotypes (population {settings.population}, "
                         f"{cull} children a generation)")
    return counts


PRESETS: dict[str, GeneticNasSettings] = {
    # Timing (digits, one torch thread, train_job as run): eight random genotypes (depth 6..12,
    # channels 8/16/32) took 1.2-14.6 s, mean 5.5 s, for 8 epochs of Adam while another experiment
    # kept both cores busy (load 4.3); about half of that on idle cores. N = 72 a search: both GAs
    # run 31 generations (2 trainings each; with prediction 4 candidates are scored for them), the
    # random search 6 batches of 12; the first population is shared, so about 180 trainings in
    # about 100 rounds of the two workers: 7-9 minutes on idle cores (seeds 0-2: 395-510 s).
    # --data DIR (MNIST-style): 2,000 training images average-pooled to 7 x 7 (about 1.4x digits' pixels
    # per epoch), 1,000 held-out training images for validation, the whole test split.
    "quick": GeneticNasSettings(n_trained=72, population=12, channels=(8, 16, 32), epochs=8, image_side=7,
                                idx_max_train=2_000, idx_val_size=1_000),
    # The paper's GA (population 30, 3 children a generation, 2 of them estimated); 300 trainings a
    # search: several hours on 2 cores.
    "paper": GeneticNasSettings(n_trained=300, population=30, channels=(8, 16, 32, 64), epochs=12, image_side=28,
                                idx_max_train=None),
}


def genetic_nas_settings(preset: str, overrides: dict[str, Any] | None = None) -> GeneticNasSettings:
    """The preset's settings with ``overrides`` (field -> value, e.g. from ``--set``) applied and checked."""
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in (overrides or {}).items()}
    return settings_with(PRESETS[preset], overrides, KIND)


# ------------------------------------------------------------------------------------------ data
@dataclass(frozen=True)
class DataSpec:
    """What a training job loads (picklable and hashable: each worker loads and caches the data itself)."""

    source: str  # "digits" or "idx"
    root: str | None
    seed: int
    side: int  # the images' side after pooling (IDX); digits: 8
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    val_size: int = 5_000
    max_train: int | None = None
    max_test: int | None = None


class Data(NamedTuple):
    train: Split
    val: Split
    test: Split
    side: int
    n_classes: int


def data_spec(data_root: str | None, settings: GeneticNasSettings, seed: int) -> DataSpec:
    """Digits without a folder; an IDX folder (which must exist) otherwise."""
    if data_root is None:
        return DataSpec("digits", None, seed, 8, settings.val_fraction, settings.test_fraction)
    root = str(resolve_data_root(data_root).resolve())
    return DataSpec("idx", root, seed, settings.image_side, val_size=settings.idx_val_size,
                    max_train=settings.idx_max_train, max_test=settings.idx_max_test)


@functools.lru_cache(maxsize=2)
def load_data(spec: DataSpec) -> Data:
    """The splits of ``spec`` (cached per process), inputs flat rows of side x side pixels in [0, 1]."""
    if spec.source == "digits":
        from sklearn.datasets import load_digits

        bunch = load_digits()
        x = torch.tensor(bunch.data / 16.0, dtype=torch.float32)
        y = torch.tensor(bunch.target, dtype=torch.int64)
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(spec.seed))
        n_val, n_test = round(spec.val_fraction * len(y)), round(spec.test_fraction * len(y))
        val, test = order[:n_val].sort().values, order[n_val:n_val + n_test].sort().values
        train = order[n_val + n_test:].sort().values
        return Data(Split(x[train], y[train]), Split(x[val], y[val]), Split(x[test], y[test]), 8, 10)
    task = idx_task(spec.root, val_size=spec.val_size, seed=spec.seed, max_train=spec.max_train,
                    max_test=spec.max_test)
    shape = task.meta["preprocessing"]["image_shape"]
    if shape is None:
        raise InputError(f"the images in {spec.root} are not square; the genotype CNNs need their shape")
    side = shape[0]
    if side % spec.side:
        raise InputError(f"image_side {spec.side} does not divide the images' side {side} (average pooling)")
    factor = side // spec.side

    def pooled(split: Split) -> Split:
        x = split.x if factor == 1 else F.avg_pool2d(split.x.reshape(-1, 1, side, side), factor).flatten(1)
        return Split(x.contiguous(), split.y)

    return Data(pooled(task.train), pooled(task.val), pooled(task.test), spec.side, task.n_out)


# ------------------------------------------------------------------------------------------ training
def accuracy(model: nn.Module, split: Split) -> float:
    """Accuracy (a fraction) in eval mode, in slices of EVAL_ROWS; the modules' modes restored after."""
    return correct_predictions(model, split.x, split.y, EVAL_ROWS) / len(split)


def train_job(genotype: dict, spec: DataSpec, settings: GeneticNasSettings, seed: int) -> dict[str, Any]:
    """One genotype decoded, trained and measured (an executor job: picklable arguments, the data
    loaded here). ``seconds``: building, training and the validation measurement (the fitness's
    cost); the test accuracy is measured after the clock stops and read by no decision."""
    data = load_data(spec)
    started = time.perf_counter()
    torch.manual_seed(seed)
    net = decode(Genotype.from_dict(genotype), 1, (data.side, data.side), data.n_classes)
    fit(net, data.train, Budget(epochs=settings.epochs), settings.trainer(), seed=seed)
    fitness = accuracy(net, data.val)
    seconds = time.perf_counter() - started
    return {"fitness": fitness, "params": count_params(net), "seconds": seconds,
            "test_accuracy": accuracy(net, data.test)}


class Evaluator:
    """``evaluate(genotypes)`` for evolve and random_search: the batch's new genotypes trained as
    executor jobs at once, results in order; a key trained before (by any search of the run, or
    twice in one batch) reuses that training's result (``reused: True``)."""

    def __init__(self, submit: Callable[..., Any], spec: DataSpec, settings: GeneticNasSettings, seed: int,
                 memo: dict[str, dict[str, Any]]) -> None:
        self.submit, self.spec, self.settings, self.seed, self.memo = submit, spec, settings, seed, memo

    def __call__(self, genotypes: list[Genotype]) -> list[dict[str, Any]]:
        keys = [g.key() for g in genotypes]
        futures: dict[str, Any] = {}
        for g, k in zip(genotypes, keys):
            if k not in self.memo and k not in futures:
                futures[k] = self.submit(train_job, g.to_dict(), self.spec, self.settings, self.seed)
        fresh = {k: f.result() for k, f in futures.items()}  # every job finishes before any result is kept
        out = []
        for k in keys:
            if k in fresh and k not in self.memo:
                self.memo[k] = {f: fresh[k][f] for f in RESULT_FIELDS}
                out.append({**self.memo[k], "reused": False})
            else:
                out.append({**self.memo[k], "reused": True})
        return out


def memo_from(searches: dict[str, dict]) -> dict[str, dict[str, Any]]:
    """The results every saved search state has recorded, by genotype key (in search order)."""
    memo: dict[str, dict[str, Any]] = {}
    for name in SEARCHES:
        for record in (searches.get(name) or {}).get("records", []):
            memo.setdefault(record["key"], {f: record[f] for f in RESULT_FIELDS})
    return memo


def run_search(name: str, settings: GeneticNasSettings, evaluate: Evaluator, seed: int, state: dict | None,
               on_step: Callable[[dict], None]) -> EvolutionResult:
    """One of :data:`SEARCHES`, from ``state`` when given (a finished one returns at once)."""
    if name == "random":
        return random_search(settings.kind(random=True), evaluate, settings.n_trained, batch=settings.population,
                             seed=seed, state=state, on_batch=on_step)
    kind = settings.kind()
    if name == "without_prediction":
        return evolve(kind, evaluate, settings.evolution(0.0), seed, None, state, on_step)
    predictor = RecordAdapter(AccuracyPredictor(settings.regressor, settings.predictor_min_records, seed), kind,
                              partial(make_record, in_channels=1), in_channels=1)
    return evolve(kind, evaluate, settings.evolution(settings.estimation_fraction), seed, predictor, state, on_step)


def reproduce_genetic_nas(out: str | Path, preset: str = "quick", data_root: str | None = None, seed: int = 0,
                          resume: bool = False, executor: str = "process", workers: int = 2,
                          on_progress: Callable[[str], None] | None = None,
                          settings: GeneticNasSettings | None = None,
                          overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the three searches into ``out``; writes result.json, report.md, meta_dataset.jsonl and the plots.
    ``settings`` replaces the preset; ``overrides`` (field -> value) change some of the preset's fields."""
    settings = settings or genetic_nas_settings(preset, overrides)
    spec = data_spec(data_root, settings, seed)
    data = load_data(spec)  # validates the data before the run folder exists
    config = reproduce_config(KIND, preset, seed, "sklearn:digits" if spec.root is None else spec.root,
                              {"n_train": len(data.train), "n_val": len(data.val), "n_test": len(data.test),
                               "image_side": data.side}, settings)
    say = on_progress or (lambda text: None)
    started = time.perf_counter()
    with RunContext(out, config, kind=KIND, resume=resume, executor=executor, workers=workers) as ctx:
        saved = ctx.restore() or {"searches": {}, "seconds": 0.0}
        earlier = float(saved["seconds"])
        if ctx.resume:  # history.jsonl: the generations the checkpoint knows (a killed run may have logged more)
            known = {(name, h["generation"]) for name, state in saved["searches"].items() for h in state["history"]}
            events = list(read_history(ctx.file(HISTORY))) if ctx.file(HISTORY).exists() else []
            ctx.rewind_history([e for e in events if e.get("event") != "generation"
                                or (e.get("search"), e.get("generation")) in known])
        evaluate = Evaluator(lambda *a: ctx.executor.submit(*a), spec, settings, seed, memo_from(saved["searches"]))
        results: dict[str, EvolutionResult] = {}
        for name in SEARCHES:
            def on_step(state: dict, name: str = name) -> None:
                saved["searches"][name] = state
                saved["seconds"] = earlier + time.perf_counter() - started
                ctx.checkpoint(saved)
                row = state["history"][-1]
                trained = len(state["records"])
                ctx.emit("generation", search=name, generation=row["generation"], trained=trained,
                         estimated=row["estimated"], best_val_accuracy=row["best_fitness"],
                         training_seconds=row["training_seconds_total"])
                estimated = f" ({row['estimated']} estimated)" if row["estimated"] else ""
                say(f"{LABELS[name]}, generation {row['generation']}: {trained}/{settings.n_trained} trained"
                    f"{estimated}, best validation accuracy {row['best_fitness']:.2%}")

            results[name] = run_search(name, settings, evaluate, seed, saved["searches"].get(name), on_step)
        wall = earlier + time.perf_counter() - started
        return write_outputs(ctx, results, settings, seed, wall, {"preset": preset, "seed": seed})


__all__ = ["PRESETS", "SEARCHES", "DataSpec", "Evaluator", "GeneticNasSettings", "data_spec", "ga_trained_counts",
           "genetic_nas_settings", "load_data", "reproduce_genetic_nas", "train_job"]
