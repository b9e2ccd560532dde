"""run_surgeon (paper 002) on tiny tasks: the score, the run's record, determinism, resume,
population grouping, the settings' checks and the branch / keep / random-child rules."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from netbonsai.data.task import Split, Task
from netbonsai.errors import InputError
from netbonsai.surgery.mlp import count_params, hidden_widths, make_mlp
from netbonsai.surgery.recommend import KINDS, modifications, recommend
from netbonsai.surgery.state import mlp_from_state
from netbonsai.surgery.surgeon import SurgeonSettings, run_surgeon, score, train_job, validation_figures
from netbonsai.train import Budget, TrainerConfig

datasets = pytest.importorskip("sklearn.datasets")

TRAINER = TrainerConfig(method="adam", loss="cross_entropy", lr=1e-2, batch_size=32)
SETTINGS = SurgeonSettings(first_epochs=1, cycle_epochs=1, total_epochs=4, retries=1)
N_TRAIN = 400


def digits_task() -> Task:
    """sklearn's digits, the first 600 rows: 64 pixels in [0, 1], 400 train / 200 validation."""
    x, y = datasets.load_digits(return_X_y=True)
    x = torch.tensor(x[:600] / 16.0, dtype=torch.float32)
    y = torch.tensor(y[:600])
    return Task("digits", Split(x[:N_TRAIN], y[:N_TRAIN]), Split(x[N_TRAIN:], y[N_TRAIN:]), loss="cross_entropy",
                metrics=("loss", "accuracy"), meta={"n_classes": 10})


def start_net() -> nn.Sequential:
    return make_mlp([64, 12, 10], "relu", seed=0)


def weights(state: dict) -> int:
    return sum(w.numel() for w in state["weights"])


def same_weights(a: nn.Module, b: nn.Module, atol: float = 0.0) -> bool:
    pa, pb = list(a.parameters()), list(b.parameters())
    if [p.shape for p in pa] != [p.shape for p in pb]:
        return False
    return all(torch.equal(x, y) if atol == 0 else torch.allclose(x, y, atol=atol) for x, y in zip(pa, pb))


def without_seconds(cycles: list[dict]) -> list[dict]:
    return [{k: v for k, v in c.items() if k != "seconds"} for c in cycles]


@pytest.fixture(scope="module")
def task() -> Task:
    return digits_task()


@pytest.fixture(scope="module")
def run(task):
    """One run of the main settings: the input (and a copy of its weights), the result, the
    checkpoints (deep copies) and the events."""
    net = start_net()
    before = copy.deepcopy(net.state_dict())
    checkpoints: list[dict] = []
    events: list[tuple[str, dict]] = []
    result = run_surgeon(net, task, TRAINER, SETTINGS, seed=0,
                         checkpoint=lambda state: checkpoints.append(copy.deepcopy(state)),
                         on_event=lambda kind, **fields: events.append((kind, fields)))
    return {"net": net, "before": before, "result": result, "checkpoints": checkpoints, "events": events}


# ------------------------------------------------------------------ the score


def test_score_is_the_authors_formula() -> None:
    assert score(0.8, 0.7, 100, 200) == pytest.approx(0.8 + math.exp(0.1) * math.exp(-0.5), rel=1e-12)
    assert score(0.5, 0.9, 300, 100) == pytest.approx(0.5 + math.exp(-0.4) * math.exp(-3.0), rel=1e-12)
    assert score(-0.2, -0.1, 50, 50) == pytest.approx(-0.2 + math.exp(-0.1) * math.exp(-1.0), rel=1e-12)
    # the parent's copy (same size) scores a + 1/e at its own accuracy; a smaller child with the
    # same accuracy scores more, a larger one less
    assert score(0.9, 0.9, 100, 100) == pytest.approx(0.9 + math.exp(-1.0))
    assert score(0.9, 0.9, 60, 100) > score(0.9, 0.9, 100, 100) > score(0.9, 0.9, 140, 100)
    # a gain in accuracy raises the size reward too
    assert score(0.95, 0.9, 100, 100) - 0.95 > score(0.9, 0.9, 100, 100) - 0.9


def test_validation_figures_are_accuracy_or_minus_the_loss(task) -> None:
    net = start_net()
    with torch.no_grad():
        expected = (net(task.x_val).argmax(dim=1) == task.y_val).double().mean().item()
    assert validation_figures(net, task, "cross_entropy") == [pytest.approx(expected, abs=1e-12)]
    regression = smooth_regression_task()
    small = make_mlp([3, 5, 1], "tanh", seed=1)
    with torch.no_grad():
        mse = (small(regression.x_val) - regression.y_val).pow(2).mean().item()
    assert validation_figures(small, regression, "mse") == [pytest.approx(-mse, rel=1e-5)]


# ------------------------------------------------------------------ one run's record


def test_a_run_covers_the_schedule(run) -> None:
    result = run["result"]
    assert result.epochs == SETTINGS.total_epochs == 4
    assert [p["epoch"] for p in result.curve] == [1, 2, 3, 4]
    assert all(0 <= p["val"] <= 1 for p in result.curve)
    assert len(result.cycles) == 3 and [c["cycle"] for c in result.cycles] == [1, 2, 3]
    assert [c["epoch"] for c in result.cycles] == [2, 3, 4]
    assert len(result.lineage) == 4 and result.lineage[0]["kept"] == "start"
    assert [e["epoch"] for e in result.lineage] == [1, 2, 3, 4]
    # each cycle continues from the previous one's figure, and the curve's last point of a cycle is it
    assert result.cycles[0]["parent_val"] == result.lineage[0]["val"] == result.curve[0]["val"]
    for before, cycle in zip(result.cycles, result.cycles[1:]):
        assert cycle["parent_val"] == before["val"]
    for cycle, point, entry in zip(result.cycles, result.curve[1:], result.lineage[1:]):
        assert point["val"] == cycle["val"] == entry["val"] and point["params"] == cycle["params"]
        assert entry["kept"] == cycle["kept"]
        assert count_params(mlp_from_state(entry["net"])) == cycle["params"]
        assert hidden_widths(mlp_from_state(entry["net"])) == cycle["widths"]
    # the kept network is the last cycle's
    assert hidden_widths(result.net) == result.cycles[-1]["widths"]
    assert count_params(result.net) == result.cycles[-1]["params"]
    assert same_weights(result.net, mlp_from_state(result.lineage[-1]["net"]))
    # and its figure is its validation accuracy
    assert validation_figures(result.net, digits_task(), "cross_entropy")[0] == pytest.approx(result.cycles[-1]["val"])
    summary = result.summary()
    assert summary["params"] == count_params(result.net) and summary["cycles"] == 3 and summary["epochs"] == 4
    # events: one start and one per cycle, without the networks
    assert [kind for kind, _ in run["events"]] == ["surgeon-start"] + ["surgeon-cycle"] * 3
    assert run["events"][0][1]["params"] == count_params(start_net())
    assert [fields["kept"] for _, fields in run["events"][1:]] == [c["kept"] for c in result.cycles]


def test_every_cycle_records_its_children_branches_and_kept_network(run) -> None:
    for cycle in run["result"].cycles:
        attempts = cycle["attempts"]
        assert 1 <= len(attempts) <= SETTINGS.retries + 1
        first_labels = [c["label"] for c in attempts[0]["children"]]
        assert "identity" in first_labels
        for later in attempts[1:]:  # the parent's copy is scored once, in the first attempt
            assert "identity" not in [c["label"] for c in later["children"]]
        labels = [c["label"] for a in attempts for c in a["children"]]
        assert len(labels) == len(set(labels))  # no edit is tried twice in a cycle
        for attempt in attempts:
            children = attempt["children"]
            for child in children:
                assert {"label", "val", "score", "params", "exact"} <= set(child)
                assert 0 <= child["val"] <= 1 and isinstance(child["exact"], bool)
                assert child["score"] == pytest.approx(score(child["val"], cycle["parent_val"], child["params"],
                                                             count_params(mlp_from_state(parent_of(run, cycle)))))
                assert "net" not in child
            assert [c["score"] for c in children] == sorted((c["score"] for c in children), reverse=True)
            # branch="score": the best-scored children train on, in order
            assert [b["label"] for b in attempt["branches"]] == [c["label"] for c in children[: SETTINGS.branches]]
        branches = [b for a in attempts for b in a["branches"]]
        assert cycle["kept"] in [b["label"] for b in branches]
        kept = next(b for b in branches if b["label"] == cycle["kept"])
        assert kept["val"] == cycle["val"] and kept["params"] == cycle["params"]
        survivors = [b for b in branches if b["val"] >= cycle["parent_val"]]
        assert cycle["accepted"] == bool(survivors)
        if survivors:  # keep="score": the best score among the survivors
            assert kept["score"] == max(b["score"] for b in survivors)
        else:  # none reached the parent: the most accurate branch
            assert kept["val"] == max(b["val"] for b in branches)
    check_retries(run["result"], SETTINGS)


def check_retries(result, settings: SurgeonSettings) -> None:
    """A retry follows exactly the attempts whose branches all fell short of the parent's figure,
    while retries and untried edits are left."""
    for cycle in result.cycles:
        attempts = cycle["attempts"]
        assert 1 <= len(attempts) <= settings.retries + 1
        for attempt in attempts[:-1]:
            assert max(b["val"] for b in attempt["branches"]) < cycle["parent_val"]
        if max(b["val"] for b in attempts[-1]["branches"]) < cycle["parent_val"] and len(attempts) <= settings.retries:
            parent = mlp_from_state(result.lineage[cycle["cycle"] - 1]["net"])
            tried = {c["label"] for a in attempts for c in a["children"]}
            assert {m.label for m in modifications(recommend(parent, settings.rule))} <= tried


def parent_of(run, cycle: dict) -> dict:
    return run["result"].lineage[cycle["cycle"] - 1]["net"]


def test_the_first_attempt_offers_one_best_edit_per_kind_the_copy_and_a_random_leftover(run) -> None:
    for cycle in run["result"].cycles:
        parent = mlp_from_state(parent_of(run, cycle))
        candidates = modifications(recommend(parent, SETTINGS.rule))
        best = {}
        for c in candidates:  # most probable first: the first of each kind is its best
            best.setdefault(c.kind, c)
        expected = {m.label for m in best.values() if m.p > 0} | {"identity"}
        labels = {c["label"] for c in cycle["attempts"][0]["children"]}
        assert expected <= labels
        leftovers = labels - expected
        assert len(leftovers) == (1 if len(candidates) > len(expected) - 1 else 0)
        assert leftovers <= {c.label for c in candidates}


def test_train_flops_count_the_main_line_and_every_side_training(run) -> None:
    result = run["result"]
    main_line = 6.0 * N_TRAIN * (SETTINGS.first_epochs * weights(result.lineage[0]["net"])
                                 + SETTINGS.cycle_epochs * sum(weights(e["net"]) for e in result.lineage[1:]))
    assert result.train_flops > main_line > 0
    # at most 6 x parameters (weights and biases) x rows over every training: children retrain
    # on 1 (exact) or 10 (approximate) minibatches of 32, branches on the cycle's epochs
    bound = 6.0 * N_TRAIN * SETTINGS.first_epochs * count_params(start_net())
    for cycle in result.cycles:
        for attempt in cycle["attempts"]:
            for child in attempt["children"]:
                rows = 32 * (SETTINGS.exact_steps if child["exact"] else SETTINGS.approximate_steps)
                bound += 6.0 * rows * child["params"]
            for branch in attempt["branches"]:
                bound += 6.0 * N_TRAIN * SETTINGS.cycle_epochs * branch["params"]
    assert result.train_flops < bound


# ------------------------------------------------------------------ determinism and resume


def test_the_same_seed_gives_the_same_run_and_the_input_is_left_alone(run, task) -> None:
    net, result = run["net"], run["result"]
    assert all(torch.equal(v, run["before"][k]) for k, v in net.state_dict().items())
    again = run_surgeon(net, task, TRAINER, SETTINGS, seed=0)
    assert [(c["kept"], c["val"]) for c in again.cycles] == [(c["kept"], c["val"]) for c in result.cycles]
    assert without_seconds(again.cycles) == without_seconds(result.cycles)
    assert again.curve == result.curve and again.train_flops == result.train_flops
    assert same_weights(again.net, result.net)
    assert all(torch.equal(v, run["before"][k]) for k, v in net.state_dict().items())


def test_resuming_after_the_first_cycle_gives_the_uninterrupted_result(run, task) -> None:
    result, checkpoints = run["result"], run["checkpoints"]
    assert len(checkpoints) == 4 and [c["epoch"] for c in checkpoints] == [1, 2, 3, 4]  # first training, cycles
    assert checkpoints[0]["cycles"] == [] and len(checkpoints[0]["lineage"]) == 1
    from_start = run_surgeon(start_net(), task, TRAINER, SETTINGS, seed=0, resume=copy.deepcopy(checkpoints[0]))
    assert from_start.curve == result.curve and same_weights(from_start.net, result.net, atol=1e-6)
    after_first = checkpoints[1]
    assert len(after_first["cycles"]) == 1 and len(after_first["curve"]) == 2 and len(after_first["lineage"]) == 2
    resumed = run_surgeon(start_net(), task, TRAINER, SETTINGS, seed=0, resume=copy.deepcopy(after_first))
    assert resumed.epochs == result.epochs
    assert without_seconds(resumed.cycles) == without_seconds(result.cycles)
    assert resumed.curve == result.curve
    assert resumed.train_flops == pytest.approx(result.train_flops, rel=1e-12)
    assert [e["kept"] for e in resumed.lineage] == [e["kept"] for e in result.lineage]
    assert same_weights(resumed.net, result.net) or same_weights(resumed.net, result.net, atol=1e-6)
    # a finished run's last checkpoint resumes to the same network without training
    done = run_surgeon(start_net(), task, TRAINER, SETTINGS, seed=0, resume=copy.deepcopy(checkpoints[-1]))
    assert same_weights(done.net, result.net) and done.curve == result.curve
    assert done.train_flops == result.train_flops


# ------------------------------------------------------------------ populations


def test_training_same_shape_networks_together_equals_training_each_alone(task) -> None:
    a, b = make_mlp([64, 12, 10], "relu", seed=1), make_mlp([64, 12, 10], "relu", seed=2)
    starts = copy.deepcopy([a, b])
    together = train_job([a, b], task, Budget(steps=5), TRAINER, 7, track=False)
    assert same_weights(a, starts[0]) and same_weights(b, starts[1])  # a population trains copies
    alone = [train_job([copy.deepcopy(n)], task, Budget(steps=5), TRAINER, 7, track=False) for n in (a, b)]
    assert len(together["nets"]) == 2
    for net, start, single in zip(together["nets"], starts, alone):
        assert not same_weights(net, start, atol=1e-4)  # trained
        assert same_weights(net, single["nets"][0], atol=1e-5)
    assert together["final"] == pytest.approx([s["final"][0] for s in alone], abs=1e-9)
    # 5 minibatches of 32 rows, 6 x weights each
    assert together["flops"] == pytest.approx(sum(s["flops"] for s in alone))
    assert alone[0]["flops"] == 6.0 * (64 * 12 + 12 * 10) * 5 * 32
    tracked = train_job([a, b], task, Budget(epochs=2), TRAINER, 7, track=True)
    singles = [train_job([copy.deepcopy(n)], task, Budget(epochs=2), TRAINER, 7, track=True) for n in (a, b)]
    assert [len(c) for c in tracked["curves"]] == [2, 2]
    for curve, single in zip(tracked["curves"], singles):
        assert curve == pytest.approx(single["curves"][0], abs=1e-9)
    assert tracked["flops"] == 2 * 6.0 * (64 * 12 + 12 * 10) * 2 * N_TRAIN


def test_train_job_leaves_a_lone_input_network_alone(task) -> None:
    net = make_mlp([64, 12, 10], "relu", seed=1)
    before = copy.deepcopy(net)
    done = train_job([net], task, Budget(steps=5), TRAINER, 7, track=False)
    assert not same_weights(done["nets"][0], before, atol=1e-4)
    assert same_weights(net, before)


# ------------------------------------------------------------------ settings


@pytest.mark.parametrize("changes, name", [
    ({"cycle_epochs": 0}, "cycle_epochs"),
    ({"first_epochs": 5, "total_epochs": 4}, "first_epochs"),
    ({"total_epochs": 0, "first_epochs": 0}, "total_epochs"),
    ({"first_epochs": -1}, "first_epochs"),
    ({"retries": -1}, "retries"),
    ({"branches": 0}, "branches"),
    ({"exact_steps": 1.5}, "exact_steps"),
    ({"rule": "x"}, "rule"),
    ({"branch": "x"}, "branch"),
    ({"keep": "x"}, "keep"),
    ({"noise": -1}, "noise"),
    ({"noise": math.inf}, "noise"),
    ({"tolerance": 1.5}, "tolerance"),
    ({"tolerance": -0.1}, "tolerance"),
    ({"max_params": 0}, "max_params"),
    ({"random_child": 1}, "random_child"),
    ({"cycle_epochs": True}, "cycle_epochs"),
])
def test_bad_settings_raise_an_input_error_naming_the_setting(changes, name) -> None:
    with pytest.raises(InputError, match=rf"surgeon\.{name}"):
        SurgeonSettings(**changes)


def test_good_edge_settings_are_accepted() -> None:
    SurgeonSettings(first_epochs=0, total_epochs=1, cycle_epochs=1, retries=0, noise=0, tolerance=0)
    SurgeonSettings(first_epochs=4, total_epochs=4, max_params=1, rule="bic", branch="recommended", keep="smallest")


# ------------------------------------------------------------------ the rules


def test_recommended_branch_and_smallest_keep(task) -> None:
    settings = SurgeonSettings(first_epochs=1, cycle_epochs=1, total_epochs=3, retries=1, branch="recommended",
                               keep="smallest", tolerance=0.05)
    result = run_surgeon(start_net(), task, TRAINER, settings, seed=0)
    assert len(result.cycles) == 2
    accepted = 0
    for cycle in result.cycles:
        for attempt in cycle["attempts"]:
            children, branches = attempt["children"], attempt["branches"]
            assert len(branches) == 2
            assert branches[0]["label"] == children[0]["label"]  # the best score
            edits = [c for c in children[1:] if c["label"] != "identity"]
            top = max(c["p"] for c in edits)
            best = min((c for c in edits if c["p"] == top),
                       key=lambda c: (KINDS.index(c["kind"]), c["layer"], -c["amount"]))
            assert branches[1]["label"] == best["label"]  # the most recommended edit
            assert branches[1]["label"] != "identity"
        trained = [b for a in cycle["attempts"] for b in a["branches"]]
        survivors = [b for b in trained if b["val"] >= cycle["parent_val"]]
        if survivors:
            accepted += 1
            best_val = max(b["val"] for b in survivors)
            near = [b for b in survivors if b["val"] >= best_val - settings.tolerance]
            assert cycle["params"] == min(b["params"] for b in near)
            assert cycle["kept"] in [b["label"] for b in near if b["params"] == cycle["params"]]
    assert accepted >= 1


def test_retries_try_the_next_untried_edits_and_keep_the_most_accurate_branch(task) -> None:
    settings = SurgeonSettings(first_epochs=1, cycle_epochs=1, total_epochs=4, retries=2)
    result = run_surgeon(start_net(), task, TRAINER, settings, seed=2)
    check_retries(result, settings)
    last = result.cycles[-1]
    assert len(last["attempts"]) == 3 and not last["accepted"]  # every retry used, none reached the parent
    labels = [c["label"] for a in last["attempts"] for c in a["children"]]
    assert len(labels) == len(set(labels)) and labels.count("identity") == 1
    assert all(a["children"] for a in last["attempts"])
    branches = [b for a in last["attempts"] for b in a["branches"]]
    assert [len(a["branches"]) for a in last["attempts"]] == [min(2, len(a["children"])) for a in last["attempts"]]
    assert all(b["val"] < last["parent_val"] for b in branches)
    assert last["val"] == max(b["val"] for b in branches) and last["val"] < last["parent_val"]
    assert result.curve[-1]["val"] == last["val"]


def test_accuracy_keep_takes_the_most_accurate_survivor(task) -> None:
    settings = SurgeonSettings(first_epochs=1, cycle_epochs=1, total_epochs=3, retries=1, keep="accuracy")
    result = run_surgeon(start_net(), task, TRAINER, settings, seed=3)
    for cycle in result.cycles:
        trained = [b for a in cycle["attempts"] for b in a["branches"]]
        survivors = [b for b in trained if b["val"] >= cycle["parent_val"]] or trained
        top = max(b["val"] for b in survivors)
        assert cycle["val"] == top
        assert cycle["params"] == min(b["params"] for b in survivors if b["val"] == top)


def test_without_the_random_child_each_kind_offers_one_edit(task) -> None:
    settings = SurgeonSettings(first_epochs=1, cycle_epochs=1, total_epochs=3, retries=1, random_child=False)
    result = run_surgeon(make_mlp([64, 10, 8, 10], "relu", seed=0), task, TRAINER, settings, seed=0)
    assert len(result.cycles) == 2
    for cycle in result.cycles:
        parent = mlp_from_state(result.lineage[cycle["cycle"] - 1]["net"])
        offered = {c.kind for c in modifications(recommend(parent, settings.rule)) if c.p > 0}
        children = cycle["attempts"][0]["children"]
        assert len(children) <= len(offered) + 1
        kinds = [c["kind"] for c in children if c["label"] != "identity"]
        assert len(kinds) == len(set(kinds))  # one edit of each kind, no extra draw
        assert "identity" in [c["label"] for c in children]


def smooth_regression_task() -> Task:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(200, 3, generator=g) * 2 - 1
    y = (torch.sin(2 * x[:, 0]) + x[:, 1] * x[:, 2] + 0.5 * x[:, 2] ** 2).unsqueeze(1)
    return Task("smooth", Split(x[:150], y[:150]), Split(x[150:], y[150:]), loss="mse")


def test_a_regression_task_uses_minus_the_validation_loss() -> None:
    task = smooth_regression_task()
    trainer = TrainerConfig(method="adam", loss="mse", lr=1e-2, batch_size=32)
    settings = SurgeonSettings(first_epochs=2, cycle_epochs=2, total_epochs=6, retries=1)
    result = run_surgeon(make_mlp([3, 8, 1], "tanh", seed=0), task, trainer, settings, seed=0)
    assert result.epochs == 6 and len(result.cycles) == 2 and len(result.curve) == 6
    assert all(c["val"] <= 0 and c["parent_val"] <= 0 for c in result.cycles)
    assert all(p["val"] <= 0 for p in result.curve)
    for cycle in result.cycles:
        assert all(child["val"] <= 0 for a in cycle["attempts"] for child in a["children"])
    with torch.no_grad():
        mse = (result.net(task.x_val) - task.y_val).pow(2).mean().item()
    assert result.cycles[-1]["val"] == pytest.approx(-mse, rel=1e-5)


def test_the_bic_rule_runs(task) -> None:
    settings = SurgeonSettings(first_epochs=1, cycle_epochs=1, total_epochs=3, retries=0, rule="bic")
    result = run_surgeon(make_mlp([64, 16, 10], "relu", seed=0), task, TRAINER, settings, seed=0)
    assert result.epochs == 3 and len(result.cycles) == 2 and len(result.lineage) == 3
    first = mlp_from_state(result.lineage[0]["net"])
    advice = recommend(first, "bic")
    offered = {m.label for m in modifications(advice)}
    labels = {c["label"] for c in result.cycles[0]["attempts"][0]["children"]}
    assert labels - {"identity"} <= offered
    assert hidden_widths(result.net) == result.cycles[-1]["widths"]


def test_children_of_different_shapes_train_on_a_process_pool_as_they_do_inline(task) -> None:
    """The executor path: one job per shape group, the same networks, figures and FLOPs."""
    from netbonsai.executor import make_executor
    from netbonsai.surgery.surgeon import _Trainer

    nets = [make_mlp([64, 12, 10], "relu", seed=1), make_mlp([64, 12, 10], "relu", seed=2),
            make_mlp([64, 7, 10], "relu", seed=3)]
    inline = _Trainer(task, TRAINER, None, "cpu")
    expected, _, expected_finals = inline.train(nets, Budget(steps=6), seed=4)
    pool = make_executor("process", 2)
    try:
        pooled = _Trainer(task, TRAINER, pool, "cpu")
        got, _, finals = pooled.train(nets, Budget(steps=6), seed=4)
    finally:
        pool.shutdown()
    assert finals == expected_finals and pooled.flops == inline.flops
    for a, b in zip(got, expected):
        assert same_weights(a, b, atol=1e-6)
