"""Genetic architecture search as a method (paper 001 section 4.4) over neuron-level DagNets.

The genotype is a :class:`~netbonsai.search.dag_genotype.TopologyGenotype` (hidden neurons of
the policy's activation, a set of synapses); the loop is :func:`~netbonsai.search.evolution.evolve`:
``population`` random topologies (``hidden`` neurons, each further synapse with probability
``density``), then every generation the worst ``cull_fraction`` go and as many children of
tournament winners, each mutated by one of the four topology mutations, are trained. There is
no performance predictor (every child is trained) and no crossover: two topologies' hidden
neurons do not correspond, so ``crossover_prob`` must stay 0.

``hidden`` (None): ``(max(1, hi // 4), hi)`` with ``hi`` the most hidden neurons whose random
topology's expected size (``density`` times the allowed synapses, plus the synapses every node
is given, plus the biases; :func:`expected_params`) stays within the policy's ``max_params``.

Training: each generation's new topologies train as padded populations
(:func:`~netbonsai.search.dag_genotype.train_generation`) on the standardised task (as
``residual`` trains: :func:`~netbonsai.methods.residual.standardized`, the maps then set on the
DagNet) with the policy's trainer (L-BFGS is full batch: an epoch is one iteration). The search
only has to rank topologies, so it trains each for ``epochs`` (None: the policy's ``grow_epochs``,
what the grow search gives a network between its steps) on ``search_rows`` training rows drawn
at random once per run (None: the policy's ``attempt_samples``; all rows when there are fewer);
its fitness is read on the whole validation split, and every network it reports is then
polished on all training rows like every other method's. (On the approximation task, 57
trainings at the dense budget on all rows would cost 5 to 12 dense sweeps: docs/RESULTS.md.)
Generation ``g`` uses seed ``policy seed + g * population`` (network ``i`` is initialised from
that plus ``i``, so every network of a run has its own). Fitness (``val_loss``): minus the validation loss in reported units, ties to fewer
parameters (the loop's rank); ``within_max_params``: the same, but a network above the policy's
``max_params`` gets -inf (culled first) and is left off the front (when none qualifies, the
smallest network trained is the front).

Checkpointed after every generation (the loop's JSON-able state plus the trained weights of the
records on the search's Pareto front of parameters against validation loss, the only networks
the front can hold, since a dominated record stays dominated), so a resumed run continues
exactly. One ``generation`` event per generation. The front: those networks, rebuilt from the
kept weights, polished like every reported network and reduced to their Pareto front; the final
network is the one of lowest validation loss.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import torch

from ..data.task import Split, Task
from ..errors import InputError
from ..grow.search import FrontPoint
from ..nets.dag import DagNet
from ..search.dag_genotype import TOPOLOGY_MUTATIONS, TopologyGenotype, random_topology, to_dagnet, train_generation
from ..search.evolution import EvolutionSettings, GenotypeKind, evolve
from ..train import Budget
from .base import Method, MethodResult, candidate, finite_front, measure
from .front import polish
from .registry import register
from .residual import standardized

if TYPE_CHECKING:
    from ..runs import RunContext

FITNESS = ("val_loss", "within_max_params")
STAGE = "genetic generations"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class GeneticSettings:
    """The loop's settings (paper 001's defaults) and the random topologies' shape."""

    population: int = 30
    generations: int = 10  # generation 0 (random topologies) included
    mutation_prob: float = 0.5  # a child is mutated anyway: there is no crossover
    crossover_prob: float = 0.0  # must be 0: topologies have no crossover
    cull_fraction: float = 0.1  # removed (and replaced by children) per generation
    tournament: int = 3  # survivors drawn per parent selection
    hidden: tuple[int, int] | None = None  # hidden neurons of random topologies; None: from max_params
    density: float = 0.2  # probability of each further allowed synapse
    epochs: int | None = None  # search training of every topology; None: the policy's grow_epochs
    search_rows: int | None = None  # training rows the search trains on; None: the policy's attempt_samples
    fitness: str = "val_loss"  # or "within_max_params"

    def __post_init__(self) -> None:
        if not _number(self.crossover_prob) or self.crossover_prob != 0:
            raise InputError(f"genetic.crossover_prob must be 0: topologies have no crossover operator, "
                             f"got {self.crossover_prob!r}")
        try:
            self.evolution()
        except InputError as error:
            raise InputError(f"genetic.{error}") from None
        if self.hidden is not None:
            pair = self.hidden
            if (not isinstance(pair, (list, tuple)) or len(pair) != 2
                    or any(isinstance(h, bool) or not isinstance(h, int) or h < 0 for h in pair) or pair[0] > pair[1]):
                raise InputError(f"genetic.hidden must be [lo, hi], whole numbers with 0 <= lo <= hi (or null), "
                                 f"got {pair!r}")
            object.__setattr__(self, "hidden", tuple(pair))
        if not _number(self.density) or not 0 <= self.density <= 1:
            raise InputError(f"genetic.density must be a number in [0, 1], got {self.density!r}")
        if self.epochs is not None and (isinstance(self.epochs, bool) or not isinstance(self.epochs, int)
                                        or self.epochs < 1):
            raise InputError(f"genetic.epochs must be an integer >= 1 (or null), got {self.epochs!r}")
        if self.search_rows is not None and (isinstance(self.search_rows, bool) or not isinstance(self.search_rows, int)
                                             or self.search_rows < 1):
            raise InputError(f"genetic.search_rows must be an integer >= 1 (or null), got {self.search_rows!r}")
        if self.fitness not in FITNESS:
            raise InputError(f"genetic.fitness must be one of {', '.join(FITNESS)}, got {self.fitness!r}")

    def evolution(self) -> EvolutionSettings:
        """The loop's settings (no predictor: nothing is estimated)."""
        return EvolutionSettings(population=self.population, generations=self.generations,
                                 mutation_prob=self.mutation_prob, crossover_prob=0.0,
                                 cull_fraction=self.cull_fraction, estimation_fraction=0.0, tournament=self.tournament)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}


def expected_params(n_in: int, n_out: int, hidden: int, density: float) -> float:
    """About the parameters of a random topology with ``hidden`` neurons: each allowed synapse
    with probability ``density`` (or its guaranteed one), plus the hidden and output biases."""
    allowed = hidden * n_in + hidden * (hidden - 1) / 2 + n_out * (n_in + hidden)
    return min(allowed, density * allowed + 2 * hidden + n_out) + hidden + n_out


def default_hidden(n_in: int, n_out: int, density: float, max_params: int) -> tuple[int, int]:
    """``(max(1, hi // 4), hi)``: ``hi`` the most hidden neurons (at least 1) whose expected
    random topology stays within ``max_params``."""
    hi = 1
    while expected_params(n_in, n_out, hi + 1, density) <= max_params:
        hi += 1
    return max(1, hi // 4), hi


def search_rows(split: Split, rows: int, seed: int) -> Split:
    """``rows`` training rows drawn at random (seeded, kept in their order), on the CPU; all of
    them when there are no more."""
    x, y = split.x.cpu(), split.y.cpu()
    if len(y) <= rows:
        return Split(x, y)
    chosen = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[:rows].sort().values
    return Split(x[chosen], y[chosen])


def topology_key(t: TopologyGenotype) -> str:
    """A short string identity (equal keys: equal networks)."""
    return hashlib.sha1(json.dumps(t.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


def searched_front(records: list[dict[str, Any]], cap: int | None = None) -> list[dict[str, Any]]:
    """The records on the Pareto front of (params, val_loss), ascending params; non-finite
    losses, and with ``cap`` networks above it, left out."""
    kept = [r for r in records if math.isfinite(r["val_loss"]) and (cap is None or r["params"] <= cap)]
    front, best = [], math.inf
    for r in sorted(kept, key=lambda r: (r["params"], r["val_loss"], r["key"])):
        if r["val_loss"] < best:
            front.append(r)
            best = r["val_loss"]
    return front


def reported(records: list[dict[str, Any]], cap: int | None = None) -> list[dict[str, Any]]:
    """The records whose networks the front is made of: :func:`searched_front`, or when it is
    empty (no finite loss, or nothing within ``cap``) the smallest network trained."""
    return searched_front(records, cap) or sorted(records, key=lambda r: (r["params"], r["key"]))[:1]


@register
class Genetic(Method):
    """Evolved neuron-level topologies (paper 001 section 4.4)."""

    name = "genetic"
    summary = "genetic architecture search over neuron-level DAG topologies (paper 001, section 4.4)"
    sequences = False
    Settings = GeneticSettings

    def run(self, task: Task, ctx: "RunContext") -> MethodResult:
        """The search from the checkpoint (or from scratch), then the polished front."""
        started = time.perf_counter()
        policy, settings = self.policy, self.settings
        grow = policy.grow
        hidden = settings.hidden or default_hidden(task.n_in, task.n_out, settings.density, grow.max_params)
        epochs = grow.grow_epochs if settings.epochs is None else settings.epochs
        rows = grow.attempt_samples if settings.search_rows is None else settings.search_rows
        cap = grow.max_params if settings.fitness == "within_max_params" else None
        inner, maps = standardized(task)
        train = search_rows(inner.train, rows, grow.seed)
        kind = GenotypeKind(
            random=lambda rng: random_topology(rng, task.n_in, task.n_out, hidden, settings.density, grow.activation),
            mutations=TOPOLOGY_MUTATIONS, crossovers={}, to_dict=TopologyGenotype.to_dict,
            from_dict=TopologyGenotype.from_dict, key=topology_key)
        state = ctx.restore() or {"evolve": None, "nets": {}}
        kept: dict[str, dict[str, torch.Tensor]] = dict(state["nets"])
        done = 0 if state["evolve"] is None else state["evolve"]["step"] + 1
        ctx.reporter.stage_started(STAGE, settings.generations)
        if done:
            ctx.reporter.stage_advanced(STAGE, done, f"resumed after generation {done - 1}")
        generation = [done]

        def evaluate(topologies: list[TopologyGenotype]) -> list[dict[str, Any]]:
            seed = grow.seed + generation[0] * settings.population
            clock = time.perf_counter()
            nets, _ = train_generation(topologies, train, Budget(epochs=epochs), grow.trainer, seed=seed)
            seconds = (time.perf_counter() - clock) / len(nets)
            results = []
            for i, (t, net) in enumerate(zip(topologies, nets)):
                net = net.set_normalization(*(m.cpu() for m in maps)).to(task.x_train.device)
                figures, params = measure(net, task), net.num_params()
                loss = figures.pop("val_loss")
                fitness = -loss if math.isfinite(loss) else math.nan
                if cap is not None and params > cap:
                    fitness = -math.inf
                kept[topology_key(t)] = {"weight": net.weight.detach()[0][net.mask[0]].cpu().clone(),
                                         "bias": net.bias.detach()[0].cpu().clone()}
                results.append({"fitness": fitness, "params": params, "seconds": seconds, "val_loss": loss,
                                "seed": seed + i, **figures})
            generation[0] += 1
            return results

        def on_generation(search: dict[str, Any]) -> None:
            front = {r["key"] for r in reported(search["records"], cap)}
            for key in [k for k in kept if k not in front]:
                del kept[key]
            ctx.checkpoint({"evolve": search, "nets": dict(kept)})
            row = search["history"][-1]
            best = next(r for r in search["records"] if r["key"] == row["best_key"])
            fields_ = {"generation": row["generation"], "best_val_loss": best["val_loss"],
                       "best_params": best["params"], "trained": row["trained"],
                       "population": len(search["population"]), "records": len(search["records"]),
                       "front": len(front)}
            ctx.emit("generation", method=self.name, **fields_)
            ctx.reporter.stage_advanced(STAGE, 1, f"generation {row['generation']}: best val loss "
                                        f"{best['val_loss']:.4g} at {best['params']} params")

        result = evolve(kind, evaluate, settings.evolution(), seed=grow.seed, state=state["evolve"],
                        on_generation=on_generation)
        front = self._front(task, result.records, kept, maps, cap, ctx)
        extra = {"population": settings.population, "generations": settings.generations, "trained": len(result.records),
                 "hidden": list(hidden), "density": settings.density, "epochs": epochs, "search_rows": len(train.y),
                 "fitness": settings.fitness,
                 "searched_front": len(reported(result.records, cap)), "params": front[-1].params}
        return MethodResult(front, front[-1].net, f"{settings.generations} generations", time.perf_counter() - started,
                            extra=extra)

    def _front(self, task: Task, records: list[dict[str, Any]], kept: dict[str, dict[str, torch.Tensor]],
               maps: tuple[torch.Tensor, ...], cap: int | None, ctx: "RunContext") -> list:
        """The search's Pareto front rebuilt from the kept weights, polished, reduced to its front."""
        chosen = reported(records, cap)
        points = []
        for index, record in enumerate(chosen):
            net = self._rebuild(record, kept[record["key"]]).set_normalization(*(m.cpu() for m in maps))
            points.append(FrontPoint(net.num_params(), math.nan, math.nan, index, net))
        points = polish(points, task, self.policy, ctx.executor)
        found = []
        for point in points:
            record = chosen[point.event]
            genotype = record["genotype"]
            training = {"generation": record["generation"], "hidden_neurons": genotype["n_hidden"],
                        "synapses": len(genotype["synapses"]), "search_val_loss": record["val_loss"]}
            found.append(candidate(point.net.to(task.x_train.device), task, training=training))
        return finite_front(found) or found

    @staticmethod
    def _rebuild(record: dict[str, Any], weights: dict[str, torch.Tensor]) -> DagNet:
        """The trained network of ``record``: its topology with the kept synapse weights and biases."""
        net = to_dagnet(TopologyGenotype.from_dict(record["genotype"]), record["seed"])
        with torch.no_grad():
            net.weight[0][net.mask[0]] = weights["weight"].to(net.weight.dtype)
            net.bias[0] = weights["bias"].to(net.bias.dtype)
        return net
