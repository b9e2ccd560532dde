"""Genetic search loop and random-search baseline on a toy genotype kind (tuples of digits) with a known
fitness, plus one run on the CNN DAG genotypes with a fake evaluate: no training anywhere."""

from __future__ import annotations

import json
import random

import pytest

from netbonsai.errors import InputError
from netbonsai.search.evolution import (
    EvolutionSettings,
    GenotypeKind,
    conv_kind,
    evolve,
    random_search,
    round_half_up,
)

TARGET = (7, 1, 8, 2, 8)


def _point(g: tuple, rng: random.Random) -> tuple:
    i = rng.randrange(len(g))
    return g[:i] + (rng.choice([v for v in range(10) if v != g[i]]),) + g[i + 1 :]


def _shift(g: tuple, rng: random.Random) -> tuple:
    i = rng.randrange(len(g))
    return g[:i] + ((g[i] + rng.choice((1, -1))) % 10,) + g[i + 1 :]


def _onepoint(a: tuple, b: tuple, rng: random.Random) -> tuple:
    cut = rng.randrange(1, len(a))
    return a[:cut] + b[cut:]


def toy_kind(mutations: dict | None = None, crossovers: dict | None = None) -> GenotypeKind:
    return GenotypeKind(
        random=lambda rng: tuple(rng.randrange(10) for _ in TARGET),
        mutations=mutations or {"point": _point, "shift": _shift},
        crossovers=crossovers if crossovers is not None else {"onepoint": _onepoint},
        to_dict=list,
        from_dict=tuple,
        key=lambda g: "".join(map(str, g)),
    )


def fitness(g: tuple) -> float:
    return -float(sum(abs(a - b) for a, b in zip(g, TARGET)))


class Evaluate:
    """Deterministic fake training; remembers every genotype it trained."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __call__(self, genotypes: list) -> list[dict]:
        self.calls.extend(genotypes)
        return [{"fitness": fitness(g), "params": sum(g) + 1, "seconds": 0.5, "note": "toy"}
                for g in genotypes]


class FakePredictor:
    """Ready once it has seen ``min_records`` records; predicts an (overrated) known fitness."""

    def __init__(self, min_records: int = 1, bonus: float = 100.0) -> None:
        self.min_records, self.bonus, self.n, self.fits = min_records, bonus, 0, 0

    @property
    def ready(self) -> bool:
        return self.n >= self.min_records

    def fit(self, records: list[dict]) -> FakePredictor:
        self.n, self.fits = len(records), self.fits + 1
        assert all("genotype" in r and "fitness" in r for r in records)
        return self

    def predict(self, genotypes: list) -> list[float]:
        return [fitness(g) + self.bonus for g in genotypes]


def run(settings: EvolutionSettings, seed: int = 0, **kw):
    states: list[dict] = []
    res = evolve(toy_kind(), Evaluate(), settings, seed=seed, on_generation=states.append, **kw)
    return res, states


def summary(res) -> tuple:
    pop = [(m.key, m.fitness, m.params, m.estimated) for m in res.population]
    return pop, res.records, res.history, res.best, res.best_record


def test_population_size_cull_and_progress() -> None:
    settings = EvolutionSettings(population=20, generations=12)
    res, states = run(settings)
    assert len(states) == len(res.history) == 12
    for st in states:
        assert len(st["population"]) == 20
    for before, after in zip(states, states[1:]):
        ranked = before["population"]  # stored best first
        worst = {m["key"] for m in ranked[-2:]}  # ceil(0.1 * 20) = 2
        keys_after = {m["key"] for m in after["population"]}
        assert not worst & keys_after
        assert {m["key"] for m in ranked[:-2]} <= keys_after
        fits = [m["fitness"] for m in ranked]
        assert fits == sorted(fits, reverse=True)
    best = [h["best_fitness"] for h in res.history]
    assert best == sorted(best)
    assert best[-1] > best[0]
    assert res.best_record["fitness"] == max(r["fitness"] for r in res.records) == fitness(res.best)
    assert [h["trained"] for h in res.history] == [20] + [2] * 11
    assert res.records[0]["note"] == "toy" and res.records[-1]["generation"] == 11
    assert res.history[-1]["training_seconds_total"] == pytest.approx(0.5 * len(res.records))


def test_cull_ties_broken_by_params_then_key() -> None:
    flat = GenotypeKind(
        random=lambda rng: tuple(rng.randrange(10) for _ in range(3)),
        mutations={"point": _point}, crossovers={}, to_dict=list, from_dict=tuple,
        key=lambda g: "".join(map(str, g)),
    )
    states: list[dict] = []
    res = evolve(flat, lambda gs: [{"fitness": 1.0, "params": g[0], "seconds": 0.0} for g in gs],
                 EvolutionSettings(population=10, generations=2), on_generation=states.append)
    first = states[0]["population"]
    assert [(m["params"], m["key"]) for m in first] == sorted((m["params"], m["key"]) for m in first)
    assert first[-1]["key"] not in {m.key for m in res.population}


def test_estimation_trains_the_rest_and_never_reports_estimates() -> None:
    settings = EvolutionSettings(population=20, generations=6, cull_fraction=0.25)  # 5 children
    ev, pred = Evaluate(), FakePredictor()
    res = evolve(toy_kind(), ev, settings, seed=3, predictor=pred)
    n_est = round_half_up(0.5 * 5)
    assert n_est == 3  # 2.5 rounds half up
    assert res.history[0]["trained"] == 20 and res.history[0]["estimated"] == 0
    for h in res.history[1:]:
        assert (h["trained"], h["estimated"]) == (5 - n_est, n_est)
    assert pred.fits == 5
    trained_keys = {"".join(map(str, g)) for g in ev.calls}
    assert [r["key"] for r in res.records] == ["".join(map(str, g)) for g in ev.calls]
    estimated = [m for m in res.population if m.estimated]
    assert estimated and all(m.params is None and m.key not in trained_keys for m in estimated)
    assert res.best_record["key"] in trained_keys
    assert res.best_record["fitness"] <= 0 < max(m.fitness for m in res.population)


class RecordingPredictor(FakePredictor):
    """A FakePredictor that remembers every batch it was asked to score."""

    def __init__(self) -> None:
        super().__init__(min_records=1, bonus=0.0)
        self.batches: list[list[tuple]] = []

    def predict(self, genotypes: list) -> list[float]:
        self.batches.append(list(genotypes))
        return super().predict(genotypes)


def test_screen_mode_trains_the_best_predicted_candidates() -> None:
    settings = EvolutionSettings(population=12, generations=5, cull_fraction=0.25, estimation_mode="screen")
    assert (settings.cull, settings.screened) == (3, 6)  # half of the candidates are only scored
    ev, pred = Evaluate(), RecordingPredictor()
    res = evolve(toy_kind(), ev, settings, seed=5, predictor=pred)
    assert [(h["trained"], h["estimated"]) for h in res.history] == [(12, 0)] + [(3, 3)] * 4
    assert len(pred.batches) == 4 and all(len(b) == 6 for b in pred.batches)
    trained = ev.calls[12:]
    for g, batch in enumerate(pred.batches):
        kept = trained[3 * g:3 * g + 3]
        assert set(kept) <= set(batch)
        dropped = [c for c in batch if c not in kept]
        assert min(map(fitness, kept)) >= max(map(fitness, dropped))  # the predictor is exact here
    assert not any(m.estimated for m in res.population) and len(res.population) == 12
    # equal training to the GA without a predictor, and a better population for it
    plain = evolve(toy_kind(), Evaluate(), EvolutionSettings(population=12, generations=5, cull_fraction=0.25), seed=5)
    assert len(plain.records) == len(res.records)
    mean = lambda r: sum(m.fitness for m in r.population) / len(r.population)  # noqa: E731
    assert mean(res) > mean(plain)


def test_screen_mode_resumes_exactly() -> None:
    settings = EvolutionSettings(population=10, generations=6, cull_fraction=0.2, estimation_mode="screen")
    states: list[dict] = []
    full = evolve(toy_kind(), Evaluate(), settings, seed=2, predictor=FakePredictor(bonus=0.0),
                  on_generation=states.append)
    resumed = evolve(toy_kind(), Evaluate(), settings, predictor=FakePredictor(bonus=0.0),
                     state=json.loads(json.dumps(states[2])))
    assert summary(resumed) == summary(full)


def test_unready_predictor_trains_everything() -> None:
    res = evolve(toy_kind(), Evaluate(), EvolutionSettings(population=10, generations=3),
                 predictor=FakePredictor(min_records=10**6))
    assert [h["estimated"] for h in res.history] == [0, 0, 0]
    assert len(res.records) == 10 + 1 + 1


def _spied(counts: dict) -> GenotypeKind:
    def spy(name, fn):
        def wrapped(*args):
            counts[name] += 1
            return fn(*args)
        return wrapped

    return toy_kind({"point": spy("mut", _point)}, {"onepoint": spy("cx", _onepoint)})


@pytest.mark.parametrize("cx_prob", [0.0, 1.0])
def test_crossover_probability(cx_prob: float) -> None:
    counts = {"mut": 0, "cx": 0}
    settings = EvolutionSettings(population=20, generations=5, mutation_prob=0.0, crossover_prob=cx_prob)
    res = evolve(_spied(counts), Evaluate(), settings)
    children = len(res.records) - 20
    if cx_prob == 0:
        assert counts["cx"] == 0 and counts["mut"] >= children  # a child that got nothing is mutated anyway
    else:
        assert counts["cx"] >= children and counts["mut"] == 0


def test_resume_continues_exactly() -> None:
    settings = EvolutionSettings(population=12, generations=4, cull_fraction=0.25)
    full, states = run(settings, seed=5, predictor=FakePredictor(bonus=0.3))
    saved = json.loads(json.dumps(states[2]))  # after generation 2
    assert saved["step"] == 2
    resumed_states: list[dict] = []
    resumed = evolve(toy_kind(), Evaluate(), settings, seed=999, predictor=FakePredictor(bonus=0.3),
                     state=saved, on_generation=resumed_states.append)
    assert summary(resumed) == summary(full)
    assert resumed_states == states[3:]


def test_seeded_determinism() -> None:
    settings = EvolutionSettings(population=10, generations=4)
    a, b, c = (run(settings, seed=s)[0] for s in (1, 1, 2))
    assert summary(a) == summary(b)
    assert a.records != c.records


def test_random_search_counts_and_resume() -> None:
    ev, states = Evaluate(), []
    res = random_search(toy_kind(), ev, n_trained=25, batch=10, seed=4, on_batch=states.append)
    assert len(res.records) == len(ev.calls) == 25
    assert len({r["key"] for r in res.records}) == 25
    assert [h["trained"] for h in res.history] == [10, 10, 5] and len(res.population) == 5
    assert res.best_record["fitness"] == max(r["fitness"] for r in res.records)
    again = random_search(toy_kind(), Evaluate(), 25, batch=10, state=json.loads(json.dumps(states[0])))
    assert summary(again) == summary(res)


def test_conv_kind_search() -> None:
    def evaluate(gs: list) -> list[dict]:
        return [{"fitness": -abs(g.depth - 8), "params": g.graph.number_of_nodes(), "seconds": 0.0}
                for g in gs]

    states: list[dict] = []
    settings = EvolutionSettings(population=8, generations=3, cull_fraction=0.25)
    res = evolve(conv_kind(), evaluate, settings, seed=1, on_generation=states.append)
    assert res.best.depth in range(6, 13) and res.best_record["fitness"] == -abs(res.best.depth - 8)
    assert len(res.population) == 8 and len(res.records) == 8 + 2 + 2
    json.dumps(states[-1])
    resumed = evolve(conv_kind(), evaluate, settings, state=json.loads(json.dumps(states[0])))
    assert resumed.records == res.records and resumed.best == res.best


@pytest.mark.parametrize(
    "name, value",
    [("population", 1), ("generations", 0), ("mutation_prob", 1.5), ("crossover_prob", -0.1),
     ("cull_fraction", 0.0), ("cull_fraction", 0.99), ("estimation_fraction", 2), ("tournament", 0),
     ("population", True), ("estimation_mode", "guess")],
)
def test_bad_settings(name: str, value) -> None:
    with pytest.raises(InputError, match=name):
        EvolutionSettings(**{name: value})


def test_screen_needs_a_fraction_below_one() -> None:
    with pytest.raises(InputError, match="below 1"):
        EvolutionSettings(estimation_fraction=1.0, estimation_mode="screen")


def test_bad_calls() -> None:
    with pytest.raises(InputError, match="crossover"):
        evolve(toy_kind(crossovers={}), Evaluate(), EvolutionSettings(crossover_prob=0.5))
    with pytest.raises(InputError, match="one dict per genotype"):
        evolve(toy_kind(), lambda gs: [], EvolutionSettings(population=4))
    with pytest.raises(InputError, match="n_trained"):
        random_search(toy_kind(), Evaluate(), 0)


def test_record_adapter_converts_records_once() -> None:
    from netbonsai.search.evolution import RecordAdapter

    made: list[tuple] = []

    def make_record(g, accuracy, params, seconds):
        made.append(g)
        return {"x": sum(g), "accuracy": accuracy}

    class Inner(FakePredictor):
        def fit(self, records):
            assert all(set(r) == {"x", "accuracy"} for r in records)
            self.n, self.fits = len(records), self.fits + 1
            return self

        def predict(self, genotypes, scale=1.0):
            return [scale * v for v in super().predict(genotypes)]

    inner = Inner()
    adapter = RecordAdapter(inner, toy_kind(), make_record, scale=2.0)
    res = evolve(toy_kind(), Evaluate(), EvolutionSettings(population=10, generations=3), predictor=adapter)
    assert len(made) == len(res.records) and all(isinstance(g, tuple) for g in made)
    assert inner.fits == 2 and adapter.ready
    assert all(m.fitness == 2 * (fitness(m.genotype) + 100) for m in res.population if m.estimated)
