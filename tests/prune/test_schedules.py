"""Pruning schedules: parsing, per-round removal counts, stopping rules, retraining helpers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from netbonsai.errors import InputError
from netbonsai.nets import DagNet
from netbonsai.nets.masked import count_weights, make_prunable, masked_layers, num_live_params
from netbonsai.prune import (
    Schedule,
    ScheduleResult,
    classification_evaluator,
    parse_schedule,
    retrainer,
    run_schedule,
)


def model(seed: int = 0) -> nn.Sequential:
    """A masked 8-10-4 MLP: 80 + 40 = 120 weights, 14 biases."""
    torch.manual_seed(seed)
    return make_prunable(nn.Sequential(nn.Linear(8, 10), nn.Tanh(), nn.Linear(10, 4)))


def no_metrics(_model: nn.Module) -> dict:
    return {}


def removed(result) -> list[int]:
    return [r["removed"] for r in result.records[1:]]


# ---------------------------------------------------------------------- parsing
@pytest.mark.parametrize(
    "text, kind, value",
    [("oneshot:0.9", "oneshot", 0.9), ("fixed:5000", "fixed", 5000), ("relative:0.2", "relative", 0.2),
     ("bucket:0.5", "bucket", 0.5), (" Relative : 1 ", "relative", 1.0), ("bucket:0", "bucket", 0.0)],
)
def test_parse_schedule(text: str, kind: str, value: float) -> None:
    schedule = parse_schedule(text)
    assert schedule == Schedule(kind, value)
    assert parse_schedule(str(schedule)) == schedule
    assert parse_schedule(schedule) is schedule


@pytest.mark.parametrize(
    "text, message",
    [("", "KIND:VALUE"), ("relative", "KIND:VALUE"), ("linear:0.2", "oneshot, fixed, relative, bucket"),
     ("relative:abc", "not a number"), ("relative:0", "fraction"), ("oneshot:1.5", "fraction"),
     ("fixed:0", "whole number"), ("fixed:2.5", "whole number"), ("bucket:-1", "budget"),
     ("oneshot:nan", "finite")],
)
def test_bad_schedules_give_one_clear_line(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        parse_schedule(text)
    assert "\n" not in str(info.value) and repr(text) in str(info.value)


# ---------------------------------------------------------------------- per-round counts
def test_fixed_removes_the_same_count_each_round_until_nothing_is_left() -> None:
    result = run_schedule(model(), "magnitude-blinded", "fixed:25", evaluate=no_metrics)
    assert removed(result) == [25, 25, 25, 25, 20]
    assert result.stopped == "exhausted" and result.final["sparsity"] == 1.0


def test_stop_ends_the_schedule_after_the_round_it_accepts() -> None:
    """stop(record) is asked after every round; True ends the schedule there ("stop")."""
    asked: list[int] = []

    def stop(record: dict) -> bool:
        asked.append(record["round"])
        return record["live_weights"] <= 70

    result = run_schedule(model(), "magnitude-blinded", "fixed:25", evaluate=no_metrics, stop=stop)
    assert asked == [1, 2] and removed(result) == [25, 25]
    assert result.stopped == "stop" and result.final_round == 2


def test_relative_removes_a_fraction_of_what_remains() -> None:
    result = run_schedule(model(), "magnitude-blinded", "relative:0.5", evaluate=no_metrics)
    # 120 -> 60 -> 30 -> 15 -> 7 (7.5 rounds half up to 8) -> 3 -> 1 -> 0 (at least one per round)
    assert removed(result) == [60, 30, 15, 8, 4, 2, 1]
    assert [r["live_weights"] for r in result.records] == [120, 60, 30, 15, 7, 3, 1, 0]


def test_target_sparsity_is_reached_exactly_without_overshoot() -> None:
    m = model()
    result = run_schedule(m, "magnitude-blinded", "relative:0.5", target_sparsity=0.9, evaluate=no_metrics)
    assert removed(result) == [60, 30, 15, 3]  # the last round removes only what reaches 108 of 120
    assert result.stopped == "target" and result.final_round == 4
    assert count_weights(m) == (12, 120) and result.final["sparsity"] == pytest.approx(0.9)


def test_oneshot_is_one_round() -> None:
    m = model()
    result = run_schedule(m, "magnitude-uniform", "oneshot:0.9", evaluate=no_metrics)
    assert removed(result) == [108] and result.stopped == "oneshot"
    assert [int((~layer.mask).sum()) for _, layer in masked_layers(m)] == [72, 36]  # 90% of each layer
    capped = run_schedule(
        model(), "magnitude-blinded", "oneshot:0.9", target_sparsity=0.5, evaluate=no_metrics
    )
    assert removed(capped) == [60] and capped.stopped == "target"


def test_bucket_removes_the_lowest_saliencies_summing_to_the_budget() -> None:
    m = make_prunable(nn.Sequential(nn.Linear(4, 5)))
    with torch.no_grad():
        m[0].weight.copy_(torch.arange(1.0, 21.0).reshape(5, 4) * torch.tensor([1.0, -1.0, 1.0, -1.0]))
    result = run_schedule(m, "magnitude-blinded", "bucket:10", evaluate=no_metrics, max_rounds=4)
    # 1+2+3+4 = 10; then 5 (5+6 > 10), 6, 7: each round at least one
    assert removed(result) == [4, 1, 1, 1] and result.stopped == "max_rounds"
    assert sorted(m[0].weight[~m[0].mask].tolist()) == [0.0] * 7
    assert sorted(abs(v) for v in m[0].weight[m[0].mask].tolist()) == list(range(8, 21))


def test_records_hold_the_round_state_and_evaluation() -> None:
    m = model()
    seen: list[dict] = []
    calls = []

    def evaluate(net: nn.Module) -> dict:
        return {"accuracy": torch.tensor(0.5), "live_check": count_weights(net)[0]}

    result = run_schedule(
        m, "random", "fixed:30", target_sparsity=0.5, evaluate=evaluate, on_round=seen.append,
        retrain=lambda net: calls.append(count_weights(net)[0]), generator=torch.Generator().manual_seed(0),
    )
    assert seen == result.records and [r["round"] for r in seen] == [0, 1, 2]
    assert seen[0] == {"round": 0, "sparsity": 0.0, "params": 134, "live_weights": 120, "removed": 0,
                       "accuracy": 0.5, "live_check": 120}
    assert [r["params"] for r in seen] == [134, 104, 74] and [r["sparsity"] for r in seen] == [0.0, 0.25, 0.5]
    assert calls == [90, 60]  # retrained after each pruning round
    assert num_live_params(m) == 74


# ---------------------------------------------------------------------- accuracy tolerance
def test_accuracy_drop_stops_and_rolls_back_to_the_last_round_within_tolerance() -> None:
    m = model()
    states: dict[int, dict] = {}

    def evaluate(net: nn.Module) -> dict:
        live, total = count_weights(net)
        return {"accuracy": live / total}  # drops by 0.1 per fixed:12 round

    def keep(record: dict) -> None:
        states[record["round"]] = {k: v.clone() for k, v in m.state_dict().items()}

    result = run_schedule(
        m, "magnitude-blinded", "fixed:12", evaluate=evaluate, max_accuracy_drop=0.25, on_round=keep
    )
    assert removed(result) == [12, 12, 12]
    assert result.stopped == "accuracy" and result.final_round == 2
    assert result.records[3]["rolled_back"] is True and "rolled_back" not in result.records[2]
    assert result.final["accuracy"] == pytest.approx(0.8)
    assert count_weights(m) == (96, 120)
    for key, value in m.state_dict().items():
        assert torch.equal(value, states[2][key])


def test_accuracy_tolerance_needs_the_metric() -> None:
    with pytest.raises(InputError, match="accuracy"):
        run_schedule(model(), "magnitude-blinded", "fixed:1", evaluate=no_metrics, max_accuracy_drop=0.1)


@pytest.mark.parametrize(
    "kwargs, message",
    [({"target_sparsity": 1.5}, "target sparsity"), ({"max_accuracy_drop": -1}, "accuracy drop"),
     ({"max_rounds": 0}, "max_rounds")],
)
def test_bad_loop_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        run_schedule(model(), "magnitude-blinded", "fixed:1", evaluate=no_metrics, **kwargs)
    with pytest.raises(InputError, match="unknown pruning method"):
        run_schedule(model(), "magnitude", "fixed:1", evaluate=no_metrics)


def test_resuming_from_a_checkpoint_continues_the_same_schedule() -> None:
    settings = dict(target_sparsity=0.9, max_accuracy_drop=0.5, evaluate=lambda net: {"accuracy": 1.0})
    full_model = model()
    full = run_schedule(full_model, "magnitude-blinded", "relative:0.5", **settings)
    checkpoints: list[tuple[dict, ScheduleResult]] = []

    def save(result: ScheduleResult) -> None:
        state = {k: v.clone() for k, v in interrupted.state_dict().items()}
        checkpoints.append((state, ScheduleResult(list(result.records), result.stopped, result.final_round)))

    interrupted = model()
    run_schedule(
        interrupted, "magnitude-blinded", "relative:0.5", max_rounds=2, on_checkpoint=save, **settings
    )
    state, saved = checkpoints[-1]
    assert saved.final_round == 2 and len(checkpoints) == 2
    resumed_model = model(seed=7)
    resumed_model.load_state_dict(state)
    seen: list[dict] = []
    resumed = run_schedule(
        resumed_model, "magnitude-blinded", "relative:0.5", resume_from=saved, on_round=seen.append,
        **settings,
    )
    assert resumed.records == full.records and resumed.stopped == full.stopped == "target"
    assert [r["round"] for r in seen] == [3, 4]  # round 0 is not evaluated again
    pairs = zip(resumed_model.state_dict().values(), full_model.state_dict().values())
    assert all(torch.equal(a, b) for a, b in pairs)


# ---------------------------------------------------------------------- DagNet and end to end
def test_schedule_on_a_dagnet_counts_sparsity_against_its_starting_synapses() -> None:
    net = DagNet.mlp([4, 5, 5, 1], generator=torch.Generator().manual_seed(0))  # 50 synapses, 61 params
    result = run_schedule(
        net, "magnitude-distributed", "relative:0.2", target_sparsity=0.5, evaluate=no_metrics
    )
    assert removed(result) == [10, 8, 6, 1]  # 50 -> 40 -> 32 -> 26 (6.4 -> 6) -> 25
    assert int(net.mask.sum()) == 25 and result.final["sparsity"] == 0.5
    assert result.records[0]["params"] == 61
    assert result.final["params"] == net.num_params()


def blobs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    centres = torch.tensor([[2.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0]])
    return centres[y] + 0.5 * torch.randn(n, 4, generator=g), y


def lowest(scores: torch.Tensor, count: int) -> set[int]:
    return set(torch.argsort(scores, stable=True)[:count].tolist())


def first_round_scores(m: nn.Sequential, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Both criteria's scores over the 64 + 48 weights (layer by layer, row-major), computed here
    from scratch: |w|, and OBD's h_kk w_k^2 / 2 with h_kk the exact Hessian diagonal of the mean
    cross-entropy on (x, y) (torch.autograd.functional.hessian of the flat weight vector)."""
    first, last = m[0], m[2]
    w = torch.cat([first.weight.detach().flatten(), last.weight.detach().flatten()])
    split = first.weight.numel()

    def loss(flat: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(x @ flat[:split].reshape(first.weight.shape).T + first.bias.detach())
        logits = hidden @ flat[split:].reshape(last.weight.shape).T + last.bias.detach()
        return nn.functional.cross_entropy(logits, y)

    h = torch.autograd.functional.hessian(loss, w).diagonal()
    return {"magnitude-blinded": w.abs(), "obd": h * w.pow(2) / 2}


@pytest.mark.parametrize("method", ["magnitude-blinded", "obd"])
def test_prune_and_retrain_keeps_a_classifier_accurate(method: str) -> None:
    x, y = blobs(300, seed=0)
    xv, yv = blobs(200, seed=1)
    torch.manual_seed(0)
    m = make_prunable(nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3)))
    retrain = retrainer(x, y, epochs=2, lr=1e-2, batch_size=32)
    for _ in range(5):
        retrain(m)
    evaluate = classification_evaluator(xv, yv)
    start = evaluate(m)
    assert start["accuracy"] > 0.95
    scores = first_round_scores(m, x, y)
    first_removed: set[int] = set()

    def on_round(record: dict) -> None:
        if record["round"] == 1:  # the masks as round 1 left them (retraining keeps them)
            live = torch.cat([layer.mask.flatten() for _, layer in masked_layers(m)])
            first_removed.update(torch.nonzero(~live).flatten().tolist())

    result = run_schedule(m, method, "relative:0.4", target_sparsity=0.8, retrain=retrain, evaluate=evaluate,
                          data=(x, y), on_round=on_round)
    assert result.stopped == "target" and count_weights(m) == (22, 112)  # 0.8 * 112 = 89.6 -> 90 removed
    # round 1 removed the 45 (0.4 * 112, rounded) lowest-scoring weights of this method, and OBD's
    # choice is not magnitude's: a criterion that fell back to |w| would fail here
    assert result.records[1]["removed"] == 45
    assert first_removed == lowest(scores[method], 45)
    assert lowest(scores["obd"], 45) != lowest(scores["magnitude-blinded"], 45)
    assert result.final["accuracy"] > 0.9
    for _, layer in masked_layers(m):
        assert bool((layer.weight[~layer.mask] == 0).all())


def test_classification_evaluator_numbers() -> None:
    layer = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(2))
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([0, 1, 1, 1])
    result = classification_evaluator(x, y, chunk=3)(layer)
    expected = nn.functional.cross_entropy(x, y).item()
    assert result["accuracy"] == 0.75 and result["loss"] == pytest.approx(expected)
    with pytest.raises(InputError, match="epochs, steps or seconds"):
        retrainer(x, y)
