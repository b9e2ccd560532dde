"""Neuron-level DagNet topologies as genotypes for genetic architecture search (paper 001, 4.4).

A :class:`TopologyGenotype` is the structure of a population-1 :class:`~netbonsai.nets.dag.DagNet`:
``n_in`` inputs, ``n_hidden`` hidden neurons and ``n_out`` outputs, numbered in the DagNet's
node order (inputs ``0..n_in-1``, then hidden, then outputs last), and a set of synapses
``(src, dst)`` with ``src < dst`` (so the network is a DAG), none into an input and none out of
an output. Hidden neurons share one activation; outputs are linear (identity).

Mutations (:data:`TOPOLOGY_MUTATIONS`) add or remove a neuron or a synapse; each returns a new,
valid genotype. :func:`train_generation` trains a whole generation as ONE padded DagNet
population through ``fit(list_of_dagnets, ...)`` (``netbonsai.train.together``), which equals
training each network alone, after :func:`aligned_slots` has laid the networks out with hidden
neurons grouped by level (a shallow union); ``together=False`` trains them one at a time.
A population pays off while its activations stay small: with many rows per optimiser step
(full-batch L-BFGS on a tall table) one network at a time is faster, so the generation is
trained in groups of at most :func:`population_group` networks
(``benchmarks/bench_population_rows.py``, docs/RESULTS.md).

A genotype may be constructed freely (its fields are only normalised: ints, synapses as a sorted
tuple of pairs); :func:`validate_topology` checks it, and every function here that returns or
consumes one (``from_dict``, the mutations, :func:`to_dagnet`) validates it.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from ..data.task import Split, Task
from ..errors import InputError
from ..nets.activations import check_activation
from ..nets.dag import DagNet
from ..train.fit import Budget, TrainerConfig, fit

__all__ = [
    "TOPOLOGY_MUTATIONS", "TopologyGenotype", "add_neuron", "add_synapse", "random_topology", "remove_neuron",
    "remove_synapse", "to_dagnet", "train_generation", "validate_topology", "live_params", "node_levels",
    "aligned_slots", "population_group", "POPULATION_ELEMENTS",
]

Synapse = tuple[int, int]
_TRIES = 8  # candidates a mutation tries (distinct ones for removals) before it returns an unchanged copy


@dataclass(frozen=True)
class TopologyGenotype:
    """A DagNet structure: node counts, synapses ``(src, dst)`` over node ids in DagNet order
    (inputs, hidden, outputs) and the hidden neurons' activation (outputs are identity)."""

    n_in: int
    n_out: int
    n_hidden: int
    synapses: tuple[Synapse, ...]
    activation: str = "tanh"  # DagNet.mlp's default hidden activation

    def __post_init__(self) -> None:
        pairs = tuple(sorted((int(s), int(d)) for s, d in self.synapses))
        for name in ("n_in", "n_out", "n_hidden"):
            object.__setattr__(self, name, int(getattr(self, name)))
        object.__setattr__(self, "synapses", pairs)

    @property
    def n_nodes(self) -> int:
        """Number of nodes, inputs and outputs included."""
        return self.n_in + self.n_hidden + self.n_out

    @property
    def num_synapses(self) -> int:
        """Number of synapses."""
        return len(self.synapses)

    def key(self) -> tuple:
        """A hashable identity for de-duplicating a generation (equal keys: equal networks)."""
        return (self.n_in, self.n_out, self.n_hidden, self.activation, self.synapses)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (:meth:`from_dict` reads it back)."""
        return {"n_in": self.n_in, "n_out": self.n_out, "n_hidden": self.n_hidden,
                "activation": self.activation, "synapses": [[s, d] for s, d in self.synapses]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TopologyGenotype":
        """The genotype :meth:`to_dict` wrote; raises :class:`InputError` unless it is valid."""
        missing = [k for k in ("n_in", "n_out", "n_hidden", "synapses") if k not in data]
        if missing:
            raise InputError(f"a topology genotype needs {', '.join(missing)}")
        try:
            synapses = tuple((int(s), int(d)) for s, d in data["synapses"])
            counts = (data["n_in"], data["n_out"], data["n_hidden"])
            genotype = cls(*counts, synapses, data.get("activation", "tanh"))
        except (TypeError, ValueError) as error:
            raise InputError(f"a topology genotype's counts and synapses must be integers: {error}") from None
        validate_topology(genotype)
        return genotype


# ---------------------------------------------------------------------------- structure checks
def _reaching(t: TopologyGenotype) -> list[bool]:
    """Per node: reachable from some input (ids are in topological order)."""
    varies = [i < t.n_in for i in range(t.n_nodes)]
    for s, d in sorted(t.synapses, key=lambda p: p[1]):
        if varies[s]:
            varies[d] = True
    return varies


def _outputs_reached(t: TopologyGenotype) -> bool:
    varies = _reaching(t)
    return all(varies[t.n_nodes - t.n_out :])


def validate_topology(t: TopologyGenotype) -> None:
    """Raise :class:`InputError` (one sentence) unless ``t`` is a valid genotype."""
    if t.n_in < 1 or t.n_out < 1 or t.n_hidden < 0:
        raise InputError(f"a topology needs n_in >= 1, n_out >= 1 and n_hidden >= 0, "
                         f"got {t.n_in}, {t.n_out}, {t.n_hidden}")
    check_activation(t.activation)
    n, first_out = t.n_nodes, t.n_nodes - t.n_out
    seen: set[Synapse] = set()
    for s, d in t.synapses:
        if not (0 <= s < n and 0 <= d < n):
            raise InputError(f"synapse {s} -> {d} is out of range: node ids run from 0 to {n - 1}")
        if s >= d:
            raise InputError(f"synapse {s} -> {d} goes backwards: synapses go from a lower to a higher id")
        if d < t.n_in:
            raise InputError(f"synapse {s} -> {d} goes into input node {d}")
        if s >= first_out:
            raise InputError(f"synapse {s} -> {d} leaves output node {s}")
        if (s, d) in seen:
            raise InputError(f"synapse {s} -> {d} appears more than once")
        seen.add((s, d))
    varies = _reaching(t)
    unreached = [o - first_out for o in range(first_out, n) if not varies[o]]
    if unreached:
        raise InputError(f"output {unreached[0]} (node {first_out + unreached[0]}) is reached by no input")


def live_params(t: TopologyGenotype) -> int:
    """The parameter count ``DagNet.num_params`` gives ``to_dagnet(t)``: synapses between live
    nodes (fed by an input and reaching an output) plus the biases of live hidden nodes and outputs."""
    validate_topology(t)
    varies = _reaching(t)
    useful = [i >= t.n_nodes - t.n_out for i in range(t.n_nodes)]
    for s, d in sorted(t.synapses, key=lambda p: -p[0]):
        if useful[d]:
            useful[s] = True
    kept = [i < t.n_in or i >= t.n_nodes - t.n_out or (varies[i] and useful[i]) for i in range(t.n_nodes)]
    edges = sum(1 for s, d in t.synapses if kept[s] and varies[s] and kept[d])
    return edges + sum(kept[t.n_in :])


# ---------------------------------------------------------------------------- random topologies
def random_topology(
    rng: random.Random, n_in: int, n_out: int, hidden: tuple[int, int] = (10, 40), density: float = 0.1,
    activation: str = "tanh",
) -> TopologyGenotype:
    """A random valid topology with ``hidden[0]..hidden[1]`` hidden neurons (inclusive).

    Every hidden neuron gets one synapse in (from a lower node) and one out (to a higher one)
    and every output one synapse in, so every node lies on an input-to-output path; then each
    other allowed synapse is added with probability ``density``.
    """
    lo, hi = hidden
    if not (1 <= n_in and 1 <= n_out and 0 <= lo <= hi and 0 <= density <= 1):
        raise InputError(f"random_topology needs n_in, n_out >= 1, 0 <= lo <= hi and density in [0, 1], "
                         f"got {n_in}, {n_out}, {hidden}, {density}")
    n_hidden = rng.randint(lo, hi)
    n = n_in + n_hidden + n_out
    first_out = n_in + n_hidden
    chosen: set[Synapse] = set()
    for j in range(n_in, n):  # one synapse into every hidden node and output
        chosen.add((rng.randrange(min(j, first_out)), j))
    for i in range(n_in, first_out):  # one synapse out of every hidden node
        chosen.add((i, rng.randrange(i + 1, n)))
    for j in range(n_in, n):
        for i in range(min(j, first_out)):
            if rng.random() < density:
                chosen.add((i, j))
    t = TopologyGenotype(n_in, n_out, n_hidden, tuple(chosen), activation)
    validate_topology(t)
    return t


# ---------------------------------------------------------------------------- mutations
def _copy(t: TopologyGenotype) -> TopologyGenotype:
    return replace(t)


def add_neuron(t: TopologyGenotype, rng: random.Random) -> TopologyGenotype:
    """A new hidden neuron with one synapse in from a lower node and one out to a higher node
    (outputs stay last: the nodes from its position on shift up by one)."""
    p = rng.randint(t.n_in, t.n_in + t.n_hidden)  # its id; old ids >= p move to id + 1
    shift = lambda i: i + 1 if i >= p else i  # noqa: E731
    moved = [(shift(s), shift(d)) for s, d in t.synapses]
    src, dst = rng.randrange(p), rng.randrange(p + 1, t.n_nodes + 1)
    child = replace(t, n_hidden=t.n_hidden + 1, synapses=tuple(moved + [(src, p), (p, dst)]))
    validate_topology(child)
    return child


def remove_neuron(t: TopologyGenotype, rng: random.Random) -> TopologyGenotype:
    """Without one hidden neuron and its synapses (one whose removal leaves every output reached)."""
    for h in rng.sample(range(t.n_in, t.n_in + t.n_hidden), min(_TRIES, t.n_hidden)):
        shift = lambda i: i - 1 if i > h else i  # noqa: E731
        kept = tuple((shift(s), shift(d)) for s, d in t.synapses if h not in (s, d))
        child = replace(t, n_hidden=t.n_hidden - 1, synapses=kept)
        if _outputs_reached(child):
            return child
    return _copy(t)


def add_synapse(t: TopologyGenotype, rng: random.Random) -> TopologyGenotype:
    """With one new synapse between two nodes it may join (a copy when every one is present)."""
    first_out, existing = t.n_nodes - t.n_out, set(t.synapses)
    for _ in range(_TRIES):
        d = rng.randrange(t.n_in, t.n_nodes)
        s = rng.randrange(min(d, first_out))
        if (s, d) not in existing:
            return replace(t, synapses=t.synapses + ((s, d),))
    return _copy(t)


def remove_synapse(t: TopologyGenotype, rng: random.Random) -> TopologyGenotype:
    """Without one synapse (one whose removal leaves every output reached)."""
    for gone in rng.sample(range(t.num_synapses), min(_TRIES, t.num_synapses)):
        child = replace(t, synapses=t.synapses[:gone] + t.synapses[gone + 1 :])
        if _outputs_reached(child):
            return child
    return _copy(t)


TOPOLOGY_MUTATIONS: dict[str, Callable[[TopologyGenotype, random.Random], TopologyGenotype]] = {
    "add_neuron": add_neuron,
    "remove_neuron": remove_neuron,
    "add_synapse": add_synapse,
    "remove_synapse": remove_synapse,
}


# ---------------------------------------------------------------------------- networks and training
def to_dagnet(t: TopologyGenotype, seed: int) -> DagNet:
    """A population-1 DagNet with ``t``'s synapses, initialised as ``priors.graphs.to_dagnet``
    does: each non-input node's in-weights and bias from ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``
    (``nn.Linear``'s range), a numpy generator seeded by ``seed``, node by node in node order."""
    validate_topology(t)
    n = t.n_nodes
    rng = np.random.default_rng(seed)
    weight = np.zeros((n, n))
    bias = np.zeros(n)
    sources: list[list[int]] = [[] for _ in range(n)]
    for s, d in t.synapses:
        sources[d].append(s)
    for j in range(t.n_in, n):
        bound = 1.0 / math.sqrt(max(1, len(sources[j])))
        draw = rng.uniform(-bound, bound, size=len(sources[j]) + 1)
        weight[sources[j], j] = draw[:-1]
        bias[j] = draw[-1]
    mask = torch.zeros(1, n, n, dtype=torch.bool)
    if t.synapses:
        src, dst = zip(*t.synapses)
        mask[0, list(src), list(dst)] = True
    activations = ["identity"] * t.n_in + [t.activation] * t.n_hidden + ["identity"] * t.n_out
    dtype = torch.get_default_dtype()
    net = DagNet(t.n_in, t.n_out, torch.as_tensor(weight, dtype=dtype)[None], mask,
                 torch.as_tensor(bias, dtype=dtype)[None], activations)
    net.info = {"genotype": t.to_dict(), "init_seed": int(seed)}
    return net


def node_levels(t: TopologyGenotype) -> list[int]:
    """Level of every node: inputs 0, any other node 1 + the highest level of its sources (at least 1)."""
    level = [0] * t.n_nodes
    for s, d in sorted(t.synapses, key=lambda p: p[1]):
        level[d] = max(level[d], level[s] + 1)
    return [0 if i < t.n_in else max(1, lv) for i, lv in enumerate(level)]


def aligned_slots(topologies: Sequence[TopologyGenotype]) -> tuple[int, list[list[int]]]:
    """A common node layout for a generation: ``(n_nodes, slots)``, ``slots[k][i]`` the place of
    node ``i`` of topology ``k``. Hidden neurons of level ``l`` share block ``l`` (as wide as the
    most any topology has there), so the stacked population is as deep as its deepest member.

    Why: ``fit`` on a list pads each network after its own hidden nodes, and the union of K
    masks in one id order chains nearly every hidden id into its own level (30 random
    topologies of depth 4-13: 36 levels and 593 block matmuls per forward; aligned: 13 and 89).
    """
    first = topologies[0]
    levels = [node_levels(t) for t in topologies]
    hidden = [lv[t.n_in : t.n_in + t.n_hidden] for t, lv in zip(topologies, levels)]
    depth = max((max(h, default=0) for h in hidden), default=0)
    width = [max(h.count(d) for h in hidden) for d in range(1, depth + 1)]
    starts = [first.n_in + sum(width[:d]) for d in range(depth)]
    n_nodes = first.n_in + sum(width) + first.n_out
    slots = []
    for t, h in zip(topologies, hidden):
        used = [0] * depth
        place = list(range(t.n_in))
        for level in h:  # hidden ids are in topological order, so each block keeps id order
            place.append(starts[level - 1] + used[level - 1])
            used[level - 1] += 1
        slots.append(place + list(range(n_nodes - t.n_out, n_nodes)))
    return n_nodes, slots


def _padded(net: DagNet, index: torch.Tensor, n_nodes: int, activation: str) -> DagNet:
    """``net`` laid out in ``n_nodes`` nodes, node i at ``index[i]``; the other hidden nodes are
    isolated (no synapse, zero bias) and use ``activation``, so every net of a generation stacks."""
    w, m, b = net.weight.detach()[0], net.mask[0], net.bias.detach()[0]
    weight, mask, bias = w.new_zeros(n_nodes, n_nodes), m.new_zeros(n_nodes, n_nodes), b.new_zeros(n_nodes)
    weight[index[:, None], index[None, :]] = w
    mask[index[:, None], index[None, :]] = m
    bias[index] = b
    n_hidden = n_nodes - net.n_in - net.n_out
    activations = ["identity"] * net.n_in + [activation] * n_hidden + ["identity"] * net.n_out
    return DagNet(net.n_in, net.n_out, weight[None], mask[None], bias[None], activations)


def _unpadded(padded: DagNet, index: torch.Tensor, original: DagNet) -> DagNet:
    """The trained ``padded`` network back in ``original``'s node order (node i from ``index[i]``)."""
    w, m, b = padded.weight.detach()[0], padded.mask[0], padded.bias.detach()[0]
    net = DagNet(original.n_in, original.n_out, w[index][:, index][None], m[index][:, index][None],
                 b[index][None], original.activations)
    net.info = dict(original.info)
    return net


# Rows per step x aligned nodes x networks a padded population holds while it still beats one
# network at a time (benchmarks/bench_population_rows.py: 30 random topologies, 74 aligned nodes,
# full-batch L-BFGS, 1 thread; groups of 6 were 1.75x faster than one at a time at 2,048 rows,
# while one population of 30 was 2.1x slower at 8,192 rows and 5.7x slower, with 6.6x the peak
# memory, at 48,000)
POPULATION_ELEMENTS = 2**20


def population_group(rows_per_step: int, n_nodes: int) -> int:
    """How many networks of ``n_nodes`` aligned nodes to train as one population when each
    optimiser step sees ``rows_per_step`` rows (at least 1)."""
    return max(1, POPULATION_ELEMENTS // max(1, rows_per_step * n_nodes))


def _rows_per_step(n_rows: int, trainer: TrainerConfig) -> int:
    """Rows one optimiser step reads: all of them for the full-batch methods, else a minibatch."""
    if trainer.method in ("lbfgs", "lm") or trainer.batch_size is None:
        return n_rows
    return min(n_rows, int(trainer.batch_size))


def train_generation(
    topologies: Sequence[TopologyGenotype],
    task_or_split: Task | Split,
    budget: Budget,
    trainer: TrainerConfig,
    seed: int = 0,
    together: bool = True,
) -> tuple[list[DagNet], torch.Tensor]:
    """Train a generation: ``to_dagnet(topologies[i], seed + i)`` for every i, each with the
    minibatch order of ``seed``. Returns the trained networks and their final train losses ``(K,)``.

    ``together`` trains them as padded DagNet populations (one ``fit`` on a list of networks
    laid out by :func:`aligned_slots`, each then moved back to its own node order), in groups of
    at most :func:`population_group` networks; otherwise one ``fit`` per network. Both give the
    same networks (to float rounding).
    """
    if not topologies:
        raise InputError("train_generation needs at least one topology")
    split = task_or_split.train if isinstance(task_or_split, Task) else task_or_split
    nets = [to_dagnet(t, seed + i) for i, t in enumerate(topologies)]
    mixed = len({(t.n_in, t.n_out, t.activation) for t in topologies}) > 1
    layout = None if mixed else aligned_slots(topologies)
    group = 0 if layout is None else population_group(_rows_per_step(len(split.y), trainer), layout[0])
    if not together or group == 1:
        losses = [fit(net, split, budget, trainer, seed=seed).loss.detach().reshape(-1) for net in nets]
        return nets, torch.cat(losses)
    if mixed:  # fit(list) falls back as it must
        result = fit(nets, split, budget, trainer, seed=seed)
        return list(result.models or []), result.loss.detach().reshape(-1)
    trained, losses = [], []
    for start in range(0, len(nets), group):
        members, chosen = nets[start:start + group], topologies[start:start + group]
        n_nodes, slots = layout if len(chosen) == len(topologies) else aligned_slots(chosen)
        index = [torch.tensor(s, dtype=torch.long) for s in slots]
        padded = [_padded(net, i, n_nodes, chosen[0].activation) for net, i in zip(members, index)]
        result = fit(padded, split, budget, trainer, seed=seed)
        trained += [_unpadded(model, i, net) for model, i, net in zip(result.models or [], index, members)]
        losses.append(result.loss.detach().reshape(-1))
    return trained, torch.cat(losses)
