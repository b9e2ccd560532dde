"""Neuron-level topology genotypes: validity, mutations, DagNet conversion and generation training."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import pytest
import torch

from netbonsai.data.task import Split, Task
from netbonsai.errors import InputError
from netbonsai.search import dag_genotype
from netbonsai.search.dag_genotype import (
    TOPOLOGY_MUTATIONS,
    _padded,
    TopologyGenotype,
    add_neuron,
    add_synapse,
    aligned_slots,
    live_params,
    node_levels,
    random_topology,
    remove_neuron,
    remove_synapse,
    to_dagnet,
    train_generation,
    validate_topology,
)
from netbonsai.train import Budget, TrainerConfig
from netbonsai.train import together as together_module
from netbonsai.train.together import stack_padded

SEEDS = range(30)


def _random(seed: int, hidden: tuple[int, int] = (2, 8), density: float = 0.3) -> TopologyGenotype:
    return random_topology(random.Random(seed), 4, 2, hidden=hidden, density=density)


def _chain() -> TopologyGenotype:
    """2 inputs, 1 hidden, 1 output: 0 -> 2, 1 -> 2, 2 -> 3."""
    return TopologyGenotype(2, 1, 1, ((0, 2), (1, 2), (2, 3)))


# ---------------------------------------------------------------------------- genotype basics
def test_random_topology_is_valid_seeded_and_in_range() -> None:
    counts = set()
    for seed in SEEDS:
        t = _random(seed)
        validate_topology(t)
        assert 2 <= t.n_hidden <= 8 and t.n_nodes == 4 + t.n_hidden + 2
        assert t == _random(seed) and t.key() == _random(seed).key()  # seeded
        assert list(t.synapses) == sorted(set(t.synapses))
        # every node lies on an input -> output path, so DagNet counts every parameter
        assert live_params(t) == t.num_synapses + t.n_hidden + t.n_out
        counts.add((t.n_hidden, t.num_synapses))
    assert len(counts) > 10  # different seeds give different topologies


def test_dict_round_trip_is_json() -> None:
    t = _random(3)
    data = json.loads(json.dumps(t.to_dict()))
    back = TopologyGenotype.from_dict(data)
    assert back == t and back.key() == t.key() and back.num_synapses == t.num_synapses
    with pytest.raises(InputError, match="needs synapses"):
        TopologyGenotype.from_dict({"n_in": 1, "n_out": 1, "n_hidden": 0})
    with pytest.raises(InputError, match="goes backwards"):
        TopologyGenotype.from_dict({**data, "synapses": [[5, 4]]})


@pytest.mark.parametrize(
    "synapses, message",
    [
        (((0, 2), (1, 2), (2, 3), (2, 9)), r"synapse 2 -> 9 is out of range: node ids run from 0 to 3"),
        (((0, 2), (1, 2), (2, 3), (-1, 3)), r"synapse -1 -> 3 is out of range"),
        (((0, 2), (1, 2), (2, 3), (2, 2)), r"synapse 2 -> 2 goes backwards"),
        (((0, 2), (1, 2), (2, 3), (0, 1)), r"synapse 0 -> 1 goes into input node 1"),
        (((0, 2), (1, 2), (2, 3), (2, 3)), r"synapse 2 -> 3 appears more than once"),
        (((0, 2), (1, 2)), r"output 0 \(node 3\) is reached by no input"),
        (((2, 3),), r"output 0 \(node 3\) is reached by no input"),
    ],
)
def test_validation_errors(synapses, message) -> None:
    with pytest.raises(InputError, match=message):
        validate_topology(TopologyGenotype(2, 1, 1, synapses))


def test_validation_of_outputs_and_counts() -> None:
    two_out = TopologyGenotype(1, 2, 0, ((0, 1), (0, 2), (1, 2)))
    with pytest.raises(InputError, match=r"synapse 1 -> 2 leaves output node 1"):
        validate_topology(two_out)
    with pytest.raises(InputError, match="n_hidden >= 0"):
        validate_topology(TopologyGenotype(1, 1, -1, ()))
    with pytest.raises(InputError, match="activation"):
        validate_topology(replace(_chain(), activation="nope"))
    validate_topology(_chain())


# ---------------------------------------------------------------------------- mutations
@pytest.mark.parametrize("name", sorted(TOPOLOGY_MUTATIONS))
def test_mutations_keep_validity_and_leave_input_untouched(name: str) -> None:
    mutate = TOPOLOGY_MUTATIONS[name]
    changed = 0
    for seed in SEEDS:
        t = _random(seed)
        before = (t.n_hidden, t.synapses, t.to_dict())
        child = mutate(t, random.Random(seed))
        assert child is not t
        validate_topology(child)
        assert (t.n_hidden, t.synapses, t.to_dict()) == before  # input untouched
        assert child == mutate(t, random.Random(seed))  # seeded
        changed += child != t
    assert changed >= 25


def test_mutation_counts() -> None:
    for seed in SEEDS:
        t = _random(seed)
        rng = random.Random(seed)
        grown = add_neuron(t, rng)
        assert (grown.n_hidden, grown.num_synapses) == (t.n_hidden + 1, t.num_synapses + 2)
        plus = add_synapse(t, rng)
        assert (plus.n_hidden, plus.num_synapses) == (t.n_hidden, t.num_synapses + 1)
        assert set(t.synapses) < set(plus.synapses)
        minus = remove_synapse(t, rng)
        assert (minus.n_hidden, minus.num_synapses) == (t.n_hidden, t.num_synapses - 1)
        assert set(minus.synapses) < set(t.synapses)
        smaller = remove_neuron(t, rng)
        if smaller != t:
            assert smaller.n_hidden == t.n_hidden - 1 and smaller.num_synapses < t.num_synapses


def test_add_neuron_renumbers_so_outputs_stay_last() -> None:
    t = _chain()
    for seed in SEEDS:
        child = add_neuron(t, random.Random(seed))
        assert child.n_nodes == 5
        assert all(d in (2, 3, 4) and s < 4 for s, d in child.synapses)  # output is node 4 now
        assert sum(1 for _, d in child.synapses if d == 4) >= 1


def test_mutations_that_would_break_reachability_return_a_copy() -> None:
    t = TopologyGenotype(1, 1, 1, ((0, 1), (1, 2)))  # every synapse and the hidden node are needed
    for mutate in (remove_synapse, remove_neuron):
        child = mutate(t, random.Random(0))
        assert child == t and child is not t
    full = TopologyGenotype(1, 1, 0, ((0, 1),))  # no synapse left to add
    assert add_synapse(full, random.Random(0)) == full
    assert remove_neuron(full, random.Random(0)) == full


def test_remove_neuron_drops_its_synapses() -> None:
    t = TopologyGenotype(1, 1, 2, ((0, 1), (0, 2), (1, 3), (2, 3)))  # two parallel paths
    child = remove_neuron(t, random.Random(0))
    assert child.n_hidden == 1 and child.synapses == ((0, 1), (1, 2))


# ---------------------------------------------------------------------------- DagNet conversion
def test_to_dagnet_mask_params_and_initialisation() -> None:
    for seed in SEEDS:
        t = remove_synapse(add_neuron(_random(seed), random.Random(seed)), random.Random(seed + 1))
        net = to_dagnet(t, seed)
        assert net.population_size == 1
        assert (net.n_in, net.n_hidden, net.n_out) == (t.n_in, t.n_hidden, t.n_out)
        src, dst = torch.nonzero(net.mask[0], as_tuple=True)
        assert sorted(zip(src.tolist(), dst.tolist())) == list(t.synapses)
        assert net.num_params() == live_params(t) <= t.num_synapses + t.n_hidden + t.n_out
        fan_in = net.mask[0].sum(dim=0).clamp(min=1).to(net.weight.dtype)
        assert bool((net.weight[0].abs() <= fan_in.rsqrt()[None, :]).all())
        assert bool((net.bias[0, t.n_in :].abs() <= fan_in[t.n_in :].rsqrt()).all())
        assert torch.equal(net.weight, to_dagnet(t, seed).weight)
        assert not torch.equal(net.weight, to_dagnet(t, seed + 1).weight)
    t = _random(0)
    assert to_dagnet(t, 0).num_params() == t.num_synapses + t.n_hidden + t.n_out
    assert to_dagnet(t, 0).activations[t.n_in] == "tanh" and to_dagnet(t, 0).activations[-1] == "identity"
    with pytest.raises(InputError, match="goes backwards"):
        to_dagnet(TopologyGenotype(2, 1, 1, ((0, 2), (1, 2), (2, 3), (3, 2))), 0)


def test_dead_nodes_are_not_counted() -> None:
    # hidden node 1 feeds nothing, hidden node 2 is fed by nothing: only 0 -> 3 and node 3's bias count
    t = TopologyGenotype(1, 1, 2, ((0, 1), (0, 3), (2, 3)))
    assert live_params(t) == to_dagnet(t, 0).num_params() == 2


# ---------------------------------------------------------------------------- generation training
def _classification() -> Task:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(96, 4, generator=g)
    y = (x[:, 0] + x[:, 1] > x[:, 2] + x[:, 3]).long()
    return Task("toy", Split(x, y), Split(x[:16], y[:16]), loss="cross_entropy", meta={"n_classes": 2})


def test_generation_trained_together_equals_one_at_a_time(monkeypatch) -> None:
    task = _classification()
    no_hidden = TopologyGenotype(4, 2, 0, ((0, 4), (1, 5)))
    generation = [_random(seed, hidden=(0, 8)) for seed in range(6)] + [no_hidden]
    assert len({t.n_nodes for t in generation}) > 2  # padding really happens
    populations = []  # the population size of every DagNet train.together's fit trains
    original_fit = together_module.fit
    monkeypatch.setattr(together_module, "fit", lambda m, *a, **k: populations.append(m.population_size)
                        or original_fit(m, *a, **k))
    trainer = TrainerConfig(method="adam", loss="cross_entropy", lr=0.02, batch_size=32)
    budget = Budget(epochs=4)
    together, loss_t = train_generation(generation, task, budget, trainer, seed=5, together=True)
    alone, loss_a = train_generation(generation, task.train, budget, trainer, seed=5, together=False)
    assert populations == [7]  # one padded population, even with a net without hidden neurons
    assert len(together) == len(alone) == 7 and loss_t.shape == loss_a.shape == (7,)
    for i, (t, a, b) in enumerate(zip(generation, together, alone)):
        start = to_dagnet(t, 5 + i)
        assert a.n_nodes == b.n_nodes == t.n_nodes and torch.equal(a.mask, b.mask)
        assert torch.allclose(a.weight, b.weight, atol=1e-5) and torch.allclose(a.bias, b.bias, atol=1e-5)
        assert not torch.allclose(a.weight, start.weight)  # it did train
    assert torch.allclose(loss_t, loss_a, atol=1e-5)
    initial = torch.stack([torch.nn.functional.cross_entropy(to_dagnet(t, 5 + i)(task.train.x), task.train.y)
                           for i, t in enumerate(generation)])
    assert bool((loss_t < initial).all())
    with pytest.raises(InputError, match="at least one topology"):
        train_generation([], task, budget, trainer)


def test_large_steps_train_in_groups_with_the_same_result(monkeypatch) -> None:
    task = _classification()
    generation = [_random(seed, hidden=(0, 8)) for seed in range(7)]
    populations = []
    original_fit = together_module.fit
    monkeypatch.setattr(together_module, "fit", lambda m, *a, **k: populations.append(m.population_size)
                        or original_fit(m, *a, **k))
    trainer = TrainerConfig(method="lbfgs", loss="cross_entropy")  # full batch: 96 rows a step
    n_nodes = aligned_slots(generation)[0]
    monkeypatch.setattr(dag_genotype, "POPULATION_ELEMENTS", 3 * 96 * n_nodes)
    assert dag_genotype.population_group(96, n_nodes) == 3
    grouped, loss_g = train_generation(generation, task, Budget(epochs=5), trainer, seed=2)
    assert populations == [3, 3, 1]
    alone, loss_a = train_generation(generation, task, Budget(epochs=5), trainer, seed=2, together=False)
    for a, b in zip(grouped, alone):
        assert torch.allclose(a.weight, b.weight, atol=1e-5) and torch.allclose(a.bias, b.bias, atol=1e-5)
    assert torch.allclose(loss_g, loss_a, atol=1e-5)


def test_population_group_sizes() -> None:
    assert dag_genotype.population_group(64, 120) == 2**20 // (64 * 120) > 30  # minibatches: one population
    assert dag_genotype.population_group(48_000, 74) == 1  # a tall full batch: one network at a time
    assert dag_genotype.population_group(0, 0) == 2**20


def test_aligned_slots_keep_order_and_depth() -> None:
    generation = [_random(seed, hidden=(0, 12)) for seed in range(12)]
    n_nodes, slots = aligned_slots(generation)
    depth = max(max(node_levels(t)) for t in generation)
    for t, place in zip(generation, slots):
        assert len(set(place)) == t.n_nodes and max(place) < n_nodes
        assert place[: t.n_in] == list(range(t.n_in))
        assert place[-t.n_out :] == list(range(n_nodes - t.n_out, n_nodes))
        assert all(place[s] < place[d] for s, d in t.synapses)  # still a topological order
    assert node_levels(TopologyGenotype(1, 1, 2, ((0, 1), (1, 2), (2, 3)))) == [0, 1, 2, 3]
    nets = [to_dagnet(t, 0) for t in generation]
    plain = stack_padded(nets)
    aligned = stack_padded([_padded(net, torch.tensor(p), n_nodes, "tanh") for net, p in zip(nets, slots)])
    assert len(aligned.plan().levels) == depth < len(plain.plan().levels)


def test_mixed_activations_fall_back_to_separate_trainings() -> None:
    task = _classification()
    generation = [_random(0), replace(_random(1), activation="relu")]
    trainer = TrainerConfig(method="adam", loss="cross_entropy", lr=0.02, batch_size=32)
    together, loss_t = train_generation(generation, task, Budget(steps=5), trainer, seed=1)
    alone, loss_a = train_generation(generation, task, Budget(steps=5), trainer, seed=1, together=False)
    assert together[1].activations[4] == "relu" and torch.allclose(loss_t, loss_a, atol=1e-6)
