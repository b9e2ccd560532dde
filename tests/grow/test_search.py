"""The grow-and-prune loop on a tiny brightness task: events, front, determinism, resume."""

from __future__ import annotations

import io

import networkx as nx
import pytest
import torch

from netbonsai.data.tasks import TaskData
from netbonsai.errors import InputError
from netbonsai.grow import GrowConfig, SearchState, grow
from netbonsai.nets import DagNet
from netbonsai.nets.convert import to_networkx
from netbonsai.train import evaluate
from tiny_runs import pattern_task

CONFIG = GrowConfig(
    hidden=(4, 4),  # a 4-4-4-1 start: 45 parameters
    start_epochs=30,
    trial_epochs=5,
    grow_epochs=10,
    n_attempts=10,
    attempt_samples=500,
    eps=0.01,
    max_params=60,
    max_cycles=2,
    seed=3,
)


@pytest.fixture(scope="module")
def task(tmp_path_factory: pytest.TempPathFactory) -> TaskData:
    """Brightness prediction on a 40x40 smooth pattern with noise."""
    return pattern_task(tmp_path_factory.mktemp("img"))


def without_time(events: list[dict]) -> list[dict]:
    return [{k: v for k, v in e.items() if k != "seconds"} for e in events]


@pytest.fixture(scope="module")
def run(task: TaskData):
    """One uninterrupted run, with every checkpoint serialised the moment it is handed over."""
    checkpoints: list[bytes] = []
    seen: list[dict] = []

    def checkpoint(state: SearchState) -> None:
        buffer = io.BytesIO()
        torch.save(state.to_dict(), buffer)
        checkpoints.append(buffer.getvalue())

    result = grow(task, CONFIG, on_event=seen.append, checkpoint=checkpoint)
    return result, checkpoints, seen


def test_events_are_consistent(run, task: TaskData) -> None:
    result, checkpoints, seen = run
    events = result.events
    assert seen == events
    assert events[0]["event"] == "start" and events[-1]["event"] == "stop"
    assert {e["event"] for e in events[1:-1]} <= {"prune", "grow"}
    assert [e["index"] for e in events] == list(range(len(events)))
    assert sum(e["event"] == "grow" for e in events) == 2  # max_cycles
    assert result.stop_reason == events[-1]["reason"] == "max_cycles"
    assert len(checkpoints) == len(events)
    assert events[0]["params"] == 45
    for before, after in zip(events, events[1:]):
        if after["event"] == "prune":
            assert after["params"] < before["params"]
            assert after["cycle"] == before["cycle"]
        elif after["event"] == "grow":
            assert after["params"] > before["params"]
            assert after["cycle"] == before["cycle"] + 1
            assert after["n_hidden"] == before["n_hidden"] + 1
    # the stop event describes the final network
    final = result.net
    assert events[-1]["params"] == final.num_params()
    assert events[-1]["n_hidden"] == final.n_hidden
    val = float(evaluate(final, task.x_val, task.y_val)[0]) * task.loss_scale
    assert events[-1]["val_loss"] == pytest.approx(val, rel=1e-6)
    train = float(evaluate(final, task.x_train, task.y_train)[0]) * task.loss_scale
    assert events[-1]["train_loss"] == pytest.approx(train, rel=1e-4)
    assert final.roles.count("added") <= 2
    # a prune phase ends when the best retrained candidate costs more than eps
    for e in events:
        if e["event"] == "prune":
            assert len(e["trial_losses"]) == CONFIG.n_trials


def test_front_is_non_dominated(run, task: TaskData) -> None:
    result, _, _ = run
    front = result.front
    assert front
    params = [p.params for p in front]
    losses = [p.val_loss for p in front]
    assert params == sorted(params) and len(set(params)) == len(params)
    assert all(b < a for a, b in zip(losses, losses[1:]))
    by_index = {e["index"]: e for e in result.events}
    for point in front:
        event = by_index[point.event]
        assert (event["params"], event["val_loss"]) == (point.params, point.val_loss)
        assert point.net.num_params() == point.params
        val = float(evaluate(point.net, task.x_val, task.y_val)[0]) * task.loss_scale
        assert val == pytest.approx(point.val_loss, rel=1e-6)
    # no event dominates a front point
    for point in front:
        for e in result.events:
            assert not (e["params"] <= point.params and e["val_loss"] < point.val_loss)
    assert result.best().val_loss == min(losses)


def test_same_seed_gives_identical_events(run, task: TaskData) -> None:
    result, _, _ = run
    again = grow(task, CONFIG)
    assert without_time(again.events) == without_time(result.events)
    assert torch.equal(again.net.weight, result.net.weight)
    other = grow(task, CONFIG.with_overrides(seed=4, max_cycles=0))
    assert other.events[0]["train_loss"] != result.events[0]["train_loss"]


@pytest.mark.parametrize("which", ["prune", "grow"])
def test_resume_from_a_checkpoint_continues_exactly(run, task: TaskData, which: str) -> None:
    result, checkpoints, _ = run
    # the checkpoint written right after the first event of this kind (mid-run, not the last)
    index = next(e["index"] for e in result.events if e["event"] == which)
    assert index < len(result.events) - 2
    saved = torch.load(io.BytesIO(checkpoints[index]), weights_only=True)
    state = SearchState.from_dict(saved)
    assert len(state.events) == index + 1 and state.phase == "prune"
    resumed = grow(task, CONFIG, state=state)
    assert len(resumed.events) == len(result.events)
    assert without_time(resumed.events) == without_time(result.events)
    assert [(p.params, p.val_loss, p.event) for p in resumed.front] == [
        (p.params, p.val_loss, p.event) for p in result.front
    ]
    assert torch.equal(resumed.net.weight, result.net.weight)
    assert resumed.stop_reason == result.stop_reason


def test_resume_a_finished_run_does_nothing(run, task: TaskData) -> None:
    result, checkpoints, _ = run
    state = SearchState.from_dict(torch.load(io.BytesIO(checkpoints[-1]), weights_only=True))
    assert state.phase == "done"
    calls: list[dict] = []
    again = grow(task, CONFIG, state=state, on_event=calls.append)
    assert calls == []
    assert without_time(again.events) == without_time(result.events)


def test_stop_reasons(task: TaskData) -> None:
    # the start network is already above the limit: one prune phase, then max_params
    small = CONFIG.with_overrides(max_params=10, max_cycles=5)
    result = grow(task, small)
    assert result.stop_reason == "max_params"
    assert sum(e["event"] == "grow" for e in result.events) == 0
    # a loss target met by the start network stops right after it
    easy = CONFIG.with_overrides(target_loss=1e9)
    result = grow(task, easy)
    assert [e["event"] for e in result.events] == ["start", "stop"]
    assert result.stop_reason == "target_loss"
    # the step limit ends a prune phase (the search grows on), it does not stop the search
    limited = grow(task, CONFIG.with_overrides(max_prune_steps=1, max_params=1000))
    assert limited.stop_reason == "max_cycles"
    kinds = [e["event"] for e in limited.events]
    assert kinds.count("grow") == 2
    phases = "".join("p" if k == "prune" else "|" for k in kinds[1:-1]).split("|")
    assert max(len(p) for p in phases) == 1


def test_epochs_count_the_training_of_each_events_network(task: TaskData) -> None:
    """start + trial_epochs per accepted removal + grow_epochs per addition; a given initial
    network's own training is unknown, so its search does not count."""
    events = grow(task, CONFIG).events
    for position, event in enumerate(events):
        before = events[: position + 1]
        kinds = [e["event"] for e in before]
        assert event["epochs"] == 30 + 5 * kinds.count("prune") + 10 * kinds.count("grow")
    given = grow(task, CONFIG.with_overrides(max_cycles=0), initial=DagNet.mlp([4, 3, 1]))
    assert all("epochs" not in e for e in given.events)


def test_initial_network_must_match(task: TaskData) -> None:
    with pytest.raises(InputError):
        grow(task, CONFIG, initial=DagNet.mlp([3, 2, 1]))
    with pytest.raises(InputError):
        grow(task, CONFIG, initial=DagNet.mlp([4, 2, 1], population=2))


def test_config_validation() -> None:
    with pytest.raises(InputError):
        GrowConfig(n_trials=9, n_candidates=8)
    with pytest.raises(InputError):
        GrowConfig(eps=1.5)
    with pytest.raises(InputError):
        GrowConfig(reference="nope")
    with pytest.raises(InputError):
        GrowConfig(hidden=())
    with pytest.raises(InputError):
        GrowConfig.from_dict({"bogus": 1})
    assert GrowConfig.from_dict(CONFIG.to_dict()) == CONFIG


def test_decisions_on_held_out_training_data(task: TaskData) -> None:
    """With selection_fraction the decisions use a held-out quarter of the training split: every
    event's selection_loss is the network's loss on exactly those rows (recomputed here from the
    documented split), and train_loss stays the loss on the whole training split."""
    config = GrowConfig(**{**CONFIG.__dict__, "selection_fraction": 0.25, "trial_samples": 400})
    nets: dict[int, DagNet] = {}

    def checkpoint(state: SearchState) -> None:
        nets[len(state.events) - 1] = state.net.clone()  # the network of the event just emitted

    result = grow(task, config, checkpoint=checkpoint)
    assert result.events[0]["event"] == "start" and result.events[-1]["event"] == "stop"
    # the split the search carves: a seeded permutation, its first quarter held out for decisions
    n = task.x_train.shape[0]
    order = torch.randperm(n, generator=torch.Generator().manual_seed(config.seed + 15485863))
    held_out = order[: int(round(n * 0.25))].sort().values
    x_sel, y_sel = task.x_train[held_out], task.y_train[held_out]
    assert len(nets) == len(result.events)
    for index, event in enumerate(result.events):
        net = nets[index]
        selection = float(evaluate(net, x_sel, y_sel)[0]) * task.loss_scale
        train = float(evaluate(net, task.x_train, task.y_train)[0]) * task.loss_scale
        assert event["selection_loss"] == pytest.approx(selection, rel=1e-4)
        assert event["train_loss"] == pytest.approx(train, rel=1e-5)
        assert abs(selection - train) > 1e-3 * train  # the held-out loss is not the full-split loss
    final_train = float(evaluate(result.net, task.x_train, task.y_train)[0]) * task.loss_scale
    assert result.events[-1]["train_loss"] == pytest.approx(final_train, rel=1e-5)
    with pytest.raises(InputError):
        GrowConfig(selection_fraction=1.0)


def test_cascade_search_grows_deeper_networks(task: TaskData) -> None:
    """With placement=cascade an added neuron reads every earlier neuron and feeds the output:
    right after the first addition the network is one level deeper than the 4-4 start (later
    pruning may remove it again on this small task), and no neuron has the "added" role."""
    config = GrowConfig(**{**CONFIG.__dict__, "placement": "cascade"})
    after_growth: list[DagNet] = []

    def checkpoint(state: SearchState) -> None:
        if state.cycles == 1 and not after_growth:
            after_growth.append(state.net)

    result = grow(task, config, checkpoint=checkpoint)
    assert sum(e["event"] == "grow" for e in result.events) == 2
    grown = after_growth[0]
    assert "added" not in grown.roles
    graph = to_networkx(grown)
    assert nx.dag_longest_path_length(graph, weight=None) == 4  # inputs -> 4 -> 4 -> new -> output
    new = grown.n_nodes - grown.n_out - 1
    assert set(graph.successors(new)) == {grown.n_nodes - 1}
    assert result.events[-1]["params"] == result.net.num_params()


def test_neuron_removal_removes_whole_neurons_and_resumes_exactly(task: TaskData) -> None:
    """With neuron_removal a prune phase first removes whole hidden neurons while one fits eps
    (an eps this loose lets several go), then continues synapse by synapse; the phase's mode is
    part of the checkpoint, so a resumed run repeats the uninterrupted one."""
    config = CONFIG.with_overrides(neuron_removal=True, eps=0.05)
    checkpoints: list[bytes] = []

    def checkpoint(state: SearchState) -> None:
        buffer = io.BytesIO()
        torch.save(state.to_dict(), buffer)
        checkpoints.append(buffer.getvalue())

    result = grow(task, config, checkpoint=checkpoint)
    neuron_events = [e for e in result.events if "neuron" in e]
    assert neuron_events, "no neuron was removed"
    by_index = {e["index"]: e for e in result.events}
    for event in neuron_events:
        before = by_index[event["index"] - 1]
        assert event["event"] == "prune" and event["n_hidden"] < before["n_hidden"]
        assert before["params"] - event["params"] >= 2  # at least one synapse in and out, or a bias
    # within a phase no neuron goes after the first synapse
    phase_kinds: list[str] = []
    for event in result.events:
        if event["event"] != "prune":
            phase_kinds = []
            continue
        phase_kinds.append("neuron" if "neuron" in event else "synapse")
        assert phase_kinds == sorted(phase_kinds)  # "neuron" < "synapse"
    middle = neuron_events[0]["index"]
    state = SearchState.from_dict(torch.load(io.BytesIO(checkpoints[middle]), weights_only=True))
    resumed = grow(task, config, state=state)
    assert without_time(resumed.events) == without_time(result.events)
    # a checkpoint written before neuron removal existed has no "neurons_done": read as False
    older = torch.load(io.BytesIO(checkpoints[1]), weights_only=True)
    del older["neurons_done"]
    assert SearchState.from_dict(older).neurons_done is False
    plain = grow(task, CONFIG.with_overrides(eps=0.05))
    assert not any("neuron" in e for e in plain.events)


def test_skip_starts_from_an_mlp_with_input_output_synapses(task: TaskData) -> None:
    """skip=True: the start network is the 4-4-4-1 MLP plus one synapse per input -> output pair,
    and the search prunes and grows it like any other network."""
    config = CONFIG.with_overrides(skip=True, max_cycles=1)
    result = grow(task, config)
    start = result.events[0]
    assert start["event"] == "start" and start["params"] == 45 + 4
    assert [e["event"] for e in result.events].count("grow") == 1
    with pytest.raises(InputError, match="skip"):
        GrowConfig.from_dict({"skip": "yes"})
