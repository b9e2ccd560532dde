"""Genetic architecture search loop (paper 001 section 4.4) and its random-search baseline.

Generic over the genotype kind (:class:`GenotypeKind`: how to draw, breed, serialise and key genotypes) and
over training (``evaluate``: the caller trains a batch however it likes). One ``random.Random`` drives every
choice, and after each generation the whole search is a plain JSON-able state dict, so a killed search
resumed from its last state continues exactly as an uninterrupted run would (given a deterministic
``evaluate`` and predictor).

Loop (settings of the paper: population 30, mutation probability 0.5, crossover probability 0, the worst
10% removed, half of the new candidates estimated by the performance predictor):

* generation 0: ``population`` random genotypes with distinct keys, all trained;
* each next generation: the worst ``ceil(cull_fraction * population)`` members go (rank: higher fitness,
  then fewer params, then smaller key; an estimated member has unknown params and loses such ties); the
  population is refilled with children of tournament winners among the survivors (``tournament`` members
  drawn without replacement, the best by rank wins). A child is crossed with a second winner with
  probability ``crossover_prob``, then mutated with probability ``mutation_prob``; a child that got neither
  is mutated anyway, since a copy of its parent would be useless. A child whose key was already seen is
  redrawn (at most :data:`REDRAWS` times, then kept: a small space never stalls the search);
* estimation: the predictor is refitted on every trained record; once it is then ``ready`` it is used
  in one of two ways (``estimation_mode``):

  - ``"replace"`` (the paper's wording): ``round_half_up(estimation_fraction * children)`` children drawn
    at random get the predicted fitness and ``estimated=True`` and are not trained. An estimated member
    stays estimated for good (also as a parent); estimates rank in the population but are never reported:
    ``best`` is the best trained genotype ever. An estimate is never checked: a child of the elite
    predicted above its trained relatives keeps its slot and breeds on that prediction (in the
    genetic-nas quick run, 4 of the final 12 members were estimates, 3 of them ranked 4th to 6th);
  - ``"screen"``: ``round_half_up(children / (1 - estimation_fraction))`` candidates are bred, all scored,
    and only the ``children`` with the highest predictions (ties: smaller key) are trained and join the
    population; the others (the estimation fraction of the candidates) are dropped and may be bred again
    later. A generation trains as many genotypes as without a predictor, so the predictor's worth shows
    as better children at equal training. Needs ``estimation_fraction < 1``.

Every trained genotype is a record of the meta-dataset (``result.records``).
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any, Callable, Generic, Mapping, Protocol, Sequence, TypeVar

from ..errors import InputError

__all__ = [
    "ESTIMATION_MODES",
    "REDRAWS",
    "EvolutionResult",
    "EvolutionSettings",
    "GenotypeKind",
    "Member",
    "Predictor",
    "RecordAdapter",
    "conv_kind",
    "evolve",
    "random_search",
    "round_half_up",
]

G = TypeVar("G")
REDRAWS = 50
ESTIMATION_MODES = ("replace", "screen")
Evaluate = Callable[[list], list]


@dataclass(frozen=True)
class GenotypeKind(Generic[G]):
    """How to make, breed, serialise and identify genotypes of one kind (operators hold their own limits)."""

    random: Callable[[random.Random], G]
    mutations: Mapping[str, Callable[[G, random.Random], G]]
    crossovers: Mapping[str, Callable[[G, G, random.Random], G]]
    to_dict: Callable[[G], Any]
    from_dict: Callable[[Any], G]
    key: Callable[[G], str]


def conv_kind(min_depth: int = 6, max_depth: int = 12) -> GenotypeKind:
    """The CNN DAG genotypes of genotype.py with the operators of operators.py, within the depth limits."""
    from .genotype import Genotype, random_genotype
    from .operators import CROSSOVERS, MUTATIONS

    lim = {"min_depth": min_depth, "max_depth": max_depth}
    return GenotypeKind(
        random=partial(random_genotype, **lim),
        mutations={name: partial(fn, **lim) for name, fn in MUTATIONS.items()},
        crossovers={name: partial(fn, **lim) for name, fn in CROSSOVERS.items()},
        to_dict=Genotype.to_dict,
        from_dict=Genotype.from_dict,
        key=Genotype.key,
    )


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_prob(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and 0.0 <= x <= 1.0


@dataclass(frozen=True)
class EvolutionSettings:
    """Search settings (paper defaults). ``generations`` counts generation 0; ``tournament`` is the number of
    members drawn per parent selection."""

    population: int = 30
    generations: int = 10
    mutation_prob: float = 0.5
    crossover_prob: float = 0.0
    cull_fraction: float = 0.1
    estimation_fraction: float = 0.5
    tournament: int = 3
    estimation_mode: str = "replace"  # or "screen" (module docstring)

    def __post_init__(self) -> None:
        if not _is_int(self.population) or self.population < 2:
            raise InputError(f"population must be an int of at least 2, got {self.population!r}")
        if not _is_int(self.generations) or self.generations < 1:
            raise InputError(f"generations must be a positive int, got {self.generations!r}")
        for name in ("mutation_prob", "crossover_prob", "estimation_fraction"):
            if not _is_prob(getattr(self, name)):
                raise InputError(f"{name} must be a number in [0, 1], got {getattr(self, name)!r}")
        c = self.cull_fraction
        if not _is_prob(c) or c == 0 or math.ceil(c * self.population) >= self.population:
            raise InputError(
                f"cull_fraction must be in (0, 1) and keep one of {self.population} members, got {c!r}"
            )
        if not _is_int(self.tournament) or self.tournament < 1:
            raise InputError(f"tournament must be a positive int, got {self.tournament!r}")
        if self.estimation_mode not in ESTIMATION_MODES:
            raise InputError(f"estimation_mode must be one of {', '.join(ESTIMATION_MODES)}, "
                             f"got {self.estimation_mode!r}")
        if self.estimation_mode == "screen" and self.estimation_fraction >= 1:
            raise InputError("estimation_fraction must be below 1 with estimation_mode 'screen' "
                             "(the trained children are the rest of the candidates)")

    @property
    def cull(self) -> int:
        """Members removed (and children made) per generation."""
        return math.ceil(self.cull_fraction * self.population)

    @property
    def screened(self) -> int:
        """Candidates bred per generation in ``screen`` mode once the predictor is ready."""
        return max(self.cull, round_half_up(self.cull / (1.0 - self.estimation_fraction)))


class Predictor(Protocol):
    """A performance predictor: refitted on the trained records, then scores genotype objects."""

    @property
    def ready(self) -> bool: ...

    def fit(self, records: list[dict]) -> Any: ...

    def predict(self, genotypes: list) -> Sequence[float]: ...


class RecordAdapter:
    """Feeds evolve's records to a predictor whose ``fit`` wants its own records, built by
    ``make_record(genotype, accuracy, params, seconds)`` (e.g. search/predictor.py's), cached per record.
    Records with a non-finite fitness (a failed training) are left out; ``predict_kwargs`` go to ``predict``
    (e.g. the ``in_channels`` the records were made with)."""

    def __init__(
        self, predictor: Any, kind: GenotypeKind, make_record: Callable[..., dict], **predict_kwargs: Any
    ) -> None:
        self.predictor, self.kind, self.make_record = predictor, kind, make_record
        self.predict_kwargs = predict_kwargs
        self._cache: dict[tuple[str, int], dict] = {}

    @property
    def ready(self) -> bool:
        return bool(self.predictor.ready)

    def fit(self, records: list[dict]) -> RecordAdapter:
        out = []
        for i, r in enumerate(records):
            k = (r["key"], i)
            if k not in self._cache and math.isfinite(r["fitness"]):
                g = self.kind.from_dict(r["genotype"])
                self._cache[k] = self.make_record(g, r["fitness"], r["params"], r["seconds"])
            if k in self._cache:
                out.append(self._cache[k])
        self.predictor.fit(out)
        return self

    def predict(self, genotypes: list) -> Sequence[float]:
        return self.predictor.predict(genotypes, **self.predict_kwargs)


@dataclass(frozen=True)
class Member(Generic[G]):
    """A population member; ``params`` is None for an estimated one (it was never built)."""

    genotype: G
    key: str
    fitness: float
    params: int | None
    estimated: bool = False


@dataclass
class EvolutionResult(Generic[G]):
    """``best``: the best trained genotype ever (its record in ``best_record``); ``records``: the meta-dataset
    of every trained genotype; ``history``: one row per generation (batch); ``population``: final members."""

    best: G
    best_record: dict
    records: list[dict]
    history: list[dict]
    population: list[Member] = field(default_factory=list)


def round_half_up(x: float) -> int:
    """Rounding of the estimated count: 2.5 -> 3 (Python's round would give 2)."""
    return math.floor(x + 0.5)


def _rank(fitness: float, params: int | None, key: str) -> tuple:
    """Sort key, best first: higher fitness (NaN worst), fewer params (unknown last), smaller key."""
    f = -math.inf if fitness != fitness else fitness
    return (-f, math.inf if params is None else params, key)


def _rec_rank(r: dict) -> tuple:
    return _rank(r["fitness"], r["params"], r["key"])


def _rng_state(rng: random.Random) -> list:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def _set_rng(rng: random.Random, state: list) -> None:
    rng.setstate((state[0], tuple(state[1]), state[2]))


class _Search:
    """Shared bookkeeping of evolve and random_search: seen keys, records, history, best, state dicts."""

    def __init__(self, kind: GenotypeKind, evaluate: Evaluate, seed: int, mode: str, state: dict | None):
        self.kind, self.evaluate, self.mode = kind, evaluate, mode
        self.rng = random.Random(seed)
        self.seen: set[str] = set()
        self.records: list[dict] = []
        self.history: list[dict] = []
        self.population: list[Member] = []
        self.step = -1  # last completed generation (batch)
        if state is not None:
            self._load(state)

    def _load(self, state: dict) -> None:
        if not isinstance(state, dict) or state.get("mode") != self.mode:
            raise InputError(f"the state to resume from is not a {self.mode} state")
        _set_rng(self.rng, state["rng"])
        self.step = int(state["step"])
        self.seen = set(state["seen"])
        self.records = [dict(r) for r in state["records"]]
        self.history = [dict(h) for h in state["history"]]
        self.population = [
            Member(self.kind.from_dict(m["genotype"]), m["key"], m["fitness"], m["params"], m["estimated"])
            for m in state["population"]
        ]

    def state(self, **extra: Any) -> dict:
        """A fresh JSON-able snapshot (evaluate's extra record fields must be JSON-able too)."""
        pop = [
            {"genotype": self.kind.to_dict(m.genotype), "key": m.key, "fitness": m.fitness,
             "params": m.params, "estimated": m.estimated}
            for m in self.population
        ]
        return {"mode": self.mode, "step": self.step, "rng": _rng_state(self.rng), "seen": sorted(self.seen),
                "population": pop, "records": [dict(r) for r in self.records],
                "history": [dict(h) for h in self.history], **extra}

    def fresh(self, draw: Callable[[], Any]) -> tuple[Any, str]:
        """Draw until the key is unseen (at most REDRAWS redraws, then the last draw is kept); mark seen."""
        for _ in range(REDRAWS + 1):
            g = draw()
            k = self.kind.key(g)
            if k not in self.seen:
                break
        self.seen.add(k)
        return g, k

    def train(self, batch: list[tuple[Any, str]]) -> list[Member]:
        """Train a batch with ``evaluate`` and append its records; returns the trained members."""
        if not batch:
            return []
        results = self.evaluate([g for g, _ in batch])
        if not isinstance(results, (list, tuple)) or len(results) != len(batch):
            n = len(batch)
            raise InputError(f"evaluate must return one dict per genotype ({n}), got {results!r:.80}")
        out = []
        for (g, k), res in zip(batch, results):
            if not isinstance(res, Mapping) or not {"fitness", "params", "seconds"} <= set(res):
                raise InputError(f"evaluate must return dicts of fitness, params, seconds, got {res!r:.80}")
            rec = {"genotype": self.kind.to_dict(g), "key": k, "generation": self.step + 1,
                   "fitness": float(res["fitness"]), "params": int(res["params"]),
                   "seconds": float(res["seconds"])}
            rec.update({n: v for n, v in res.items() if n not in rec})
            self.records.append(rec)
            out.append(Member(g, k, rec["fitness"], rec["params"]))
        return out

    def log(self, trained: int, estimated: int) -> None:
        """Close a generation (batch): append its history row and advance the step."""
        self.step += 1
        best = min(self.records, key=_rec_rank, default=None)
        self.history.append({
            "generation": self.step,
            "best_fitness": None if best is None else best["fitness"],
            "best_params": None if best is None else best["params"],
            "best_key": None if best is None else best["key"],
            "trained": trained,
            "estimated": estimated,
            "training_seconds_total": sum(r["seconds"] for r in self.records),
        })

    def result(self) -> EvolutionResult:
        if not self.records:
            raise InputError("the search trained no genotype, so it has no best one")
        best = min(self.records, key=_rec_rank)
        return EvolutionResult(self.kind.from_dict(best["genotype"]), dict(best), self.records, self.history,
                               list(self.population))


def _check_kind(kind: GenotypeKind, settings: EvolutionSettings) -> None:
    if not isinstance(kind, GenotypeKind):
        raise InputError(f"kind must be a GenotypeKind, got {type(kind).__name__}")
    if not kind.mutations:
        raise InputError("the genotype kind has no mutation, so children cannot be bred")
    if settings.crossover_prob > 0 and not kind.crossovers:
        raise InputError("crossover_prob is above 0 but the genotype kind has no crossover")


def _screen(candidates: list[tuple[Any, str]], predictor: Predictor, keep: int
            ) -> tuple[list[tuple[Any, str]], list[tuple[Any, str]]]:
    """``(kept, dropped)``: the ``keep`` candidates of highest predicted fitness (ties: smaller key; NaN
    lowest), in breeding order, and the rest."""
    preds = [float(p) for p in predictor.predict([g for g, _ in candidates])]
    order = sorted(range(len(candidates)),
                   key=lambda i: (-(preds[i] if preds[i] == preds[i] else -math.inf), candidates[i][1]))
    chosen = set(order[:keep])
    return ([c for i, c in enumerate(candidates) if i in chosen],
            [c for i, c in enumerate(candidates) if i not in chosen])


def evolve(
    kind: GenotypeKind,
    evaluate: Evaluate,
    settings: EvolutionSettings | None = None,
    seed: int = 0,
    predictor: Predictor | None = None,
    state: dict | None = None,
    on_generation: Callable[[dict], None] | None = None,
) -> EvolutionResult:
    """Run the genetic search (module docstring) for ``settings.generations`` generations, or continue one
    from ``state`` (``seed`` is then ignored: the generator comes from the state). ``on_generation(state)``
    is called after every generation with a JSON-able state to checkpoint."""
    settings = settings or EvolutionSettings()
    _check_kind(kind, settings)
    s = _Search(kind, evaluate, seed, "evolve", state)
    if state is not None and len(s.population) != settings.population:
        raise InputError(f"the state has {len(s.population)} members but population is {settings.population}")
    mutations, crossovers = sorted(kind.mutations), sorted(kind.crossovers)
    while s.step + 1 < settings.generations:
        if s.step < 0:
            batch = [s.fresh(partial(kind.random, s.rng)) for _ in range(settings.population)]
            s.population = s.train(batch)
            n_trained, n_est = len(batch), 0
        else:
            ranked = sorted(s.population, key=lambda m: _rank(m.fitness, m.params, m.key))
            survivors = ranked[: settings.population - settings.cull]

            def winner() -> Any:
                idx = s.rng.sample(range(len(survivors)), min(settings.tournament, len(survivors)))
                return survivors[min(idx)].genotype  # survivors are sorted best first

            def child() -> Any:
                g, changed = winner(), False
                if s.rng.random() < settings.crossover_prob:
                    g = kind.crossovers[s.rng.choice(crossovers)](g, winner(), s.rng)
                    changed = True
                if s.rng.random() < settings.mutation_prob or not changed:
                    g = kind.mutations[s.rng.choice(mutations)](g, s.rng)
                return g

            ready = False
            if predictor is not None and settings.estimation_fraction > 0:
                predictor.fit([dict(r) for r in s.records])
                ready = bool(predictor.ready)
            if ready and settings.estimation_mode == "screen":
                candidates = [s.fresh(child) for _ in range(settings.screened)]
                children, dropped = _screen(candidates, predictor, settings.cull)  # type: ignore[arg-type]
                s.seen.difference_update(k for _, k in dropped)
                trained = s.train(children)
                s.population = survivors + trained
                n_trained, n_est = len(trained), len(dropped)
            else:
                children = [s.fresh(child) for _ in range(settings.cull)]
                est_idx: set[int] = set()
                if ready:
                    n = round_half_up(settings.estimation_fraction * len(children))
                    est_idx = set(s.rng.sample(range(len(children)), n))
                est_order = sorted(est_idx)
                estimated: list[Member] = []
                if est_order:
                    preds = predictor.predict([children[i][0] for i in est_order])  # type: ignore[union-attr]
                    estimated = [Member(children[i][0], children[i][1], float(p), None, True)
                                 for i, p in zip(est_order, preds)]
                trained = s.train([c for i, c in enumerate(children) if i not in est_idx])
                s.population = survivors + trained + estimated
                n_trained, n_est = len(trained), len(estimated)
        s.population.sort(key=lambda m: _rank(m.fitness, m.params, m.key))
        s.log(n_trained, n_est)
        if on_generation is not None:
            on_generation(s.state(settings=asdict(settings)))
    return s.result()


def random_search(
    kind: GenotypeKind,
    evaluate: Evaluate,
    n_trained: int,
    batch: int = 30,
    seed: int = 0,
    state: dict | None = None,
    on_batch: Callable[[dict], None] | None = None,
) -> EvolutionResult:
    """The baseline: random genotypes with distinct keys, trained ``batch`` at a time until ``n_trained`` are
    trained; records and history as in :func:`evolve` (one row per batch); ``population`` is the last batch.
    Resumable from the state passed to ``on_batch`` like :func:`evolve`."""
    if not isinstance(kind, GenotypeKind):
        raise InputError(f"kind must be a GenotypeKind, got {type(kind).__name__}")
    if not _is_int(n_trained) or n_trained < 1:
        raise InputError(f"n_trained must be a positive int, got {n_trained!r}")
    if not _is_int(batch) or batch < 1:
        raise InputError(f"batch must be a positive int, got {batch!r}")
    s = _Search(kind, evaluate, seed, "random_search", state)
    while len(s.records) < n_trained:
        size = min(batch, n_trained - len(s.records))
        s.population = s.train([s.fresh(partial(kind.random, s.rng)) for _ in range(size)])
        s.population.sort(key=lambda m: _rank(m.fitness, m.params, m.key))
        s.log(size, 0)
        if on_batch is not None:
            on_batch(s.state(n_trained=n_trained, batch=batch))
    return s.result()
