"""The ``genetic`` method through ``compare``: registered, validated before anything is written,
a polished front of the searched topologies with saved, loadable DagNets, and resumable."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import torch

import netbonsai
from netbonsai.cli import main
from netbonsai.data.task import Split, Task
from netbonsai.errors import InputError
from netbonsai.methods import get_method, method_names
from netbonsai.methods.genetic import default_hidden, expected_params, reported, search_rows, searched_front
from netbonsai.runs import RunContext
from netbonsai.search.dag_genotype import live_params, random_topology
from tiny_runs import crop_of_camera

# the tiny image settings of test_residual_method.py, and a search of 5 topologies, 2 new per generation
TINY = ["--set", "start_epochs=60", "--set", "grow.grow_epochs=10", "--set", "dense.grid=[[4, 4], [6, 6], [8, 8]]",
        "--set", "polish.epochs=10", "--max-params", "120", "--quiet", "--executor", "inline",
        "--set", "genetic.population=5", "--set", "genetic.generations=3", "--set", "genetic.cull_fraction=0.4",
        "--set", "genetic.epochs=20", "--set", "genetic.search_rows=1000"]


def compare(image: Path, out: Path, *extra: str) -> int:
    return main(["compare", f"approx:{image}", "--methods", "genetic", "--out", str(out), *TINY, *extra])


def history(out: Path) -> list[dict]:
    lines = (out / "methods" / "genetic" / "history.jsonl").read_text().splitlines()
    return [event for event in map(json.loads, lines) if event["event"] == "generation"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished run, with every checkpoint the method wrote kept (to resume from an earlier one)."""
    folder = tmp_path_factory.mktemp("genetic-method")
    image = crop_of_camera(folder / "crop.png")
    out = folder / "run"
    states: list[dict] = []
    original = RunContext.checkpoint

    def keep(ctx, state):
        if "evolve" in state:
            states.append(state)
        original(ctx, state)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(RunContext, "checkpoint", keep)
        assert compare(image, out) == 0
    return {"image": image, "out": out, "states": states,
            "comparison": json.loads((out / "comparison.json").read_text())}


def test_compare_with_genetic_gives_a_polished_front_of_the_search(finished) -> None:
    out, figures = finished["out"], finished["comparison"]["methods"]["genetic"]
    extra = figures["extra"]
    assert figures["stop_reason"] == "3 generations"
    assert (extra["population"], extra["generations"], extra["trained"], extra["epochs"]) == (5, 3, 9, 20)
    assert extra["search_rows"] == 1000  # of about 2,300 training rows: the search trains on a subsample
    assert extra["hidden"] == list(default_hidden(2, 1, 0.2, 120)) and extra["fitness"] == "val_loss"
    events = history(out)  # generation 0 trains the population, each next one ceil(0.4 * 5) = 2 children
    assert [e["generation"] for e in events] == [0, 1, 2] and all(e["method"] == "genetic" for e in events)
    assert [e["trained"] for e in events] == [5, 2, 2] and [e["records"] for e in events] == [5, 7, 9]
    assert all(e["population"] == 5 for e in events)
    best = [e["best_val_loss"] for e in events]
    assert best == sorted(best, reverse=True)  # the best ever trained never gets worse
    state = finished["states"][-1]
    assert len(finished["states"]) == 3 and state["evolve"]["step"] == 2
    records = state["evolve"]["records"]
    assert len(records) == 9 and len({r["key"] for r in records}) == 9
    assert set(state["nets"]) <= {r["key"] for r in records} and len(state["nets"]) == extra["searched_front"]
    front = figures["front"]
    assert 1 <= len(front) <= extra["searched_front"]
    sizes = [p["params"] for p in front]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
    assert [p["val_loss"] for p in front] == sorted((p["val_loss"] for p in front), reverse=True)
    assert extra["params"] == sizes[-1]
    for point in front:
        net = netbonsai.load(out / point["file"])
        assert net.num_params() == point["params"] and point["val_loss"] > 0
        assert 0 <= point["generation"] <= 2 and net.n_nodes == 3 + point["hidden_neurons"]
    assert (out / "model").exists()


def test_resume_of_a_finished_run_gives_the_same_front(finished) -> None:
    out = finished["out"]
    assert compare(finished["image"], out, "--resume") == 0
    again = json.loads((out / "comparison.json").read_text())["methods"]["genetic"]
    before = finished["comparison"]["methods"]["genetic"]
    assert again["front"] == before["front"] and again["extra"] == before["extra"]


def test_resume_after_the_first_generation_gives_the_same_front(finished, tmp_path: Path) -> None:
    """Killed after generation 0: its checkpoint is the last; method.json and the front are not written."""
    out = tmp_path / "run"
    shutil.copytree(finished["out"], out)
    folder = out / "methods" / "genetic"
    assert finished["states"][0]["evolve"]["step"] == 0
    torch.save(finished["states"][0], folder / "checkpoint.pt")
    (folder / "method.json").unlink()
    for file in (folder / "front").iterdir():
        file.unlink()
    assert compare(finished["image"], out, "--resume") == 0
    again = json.loads((out / "comparison.json").read_text())["methods"]["genetic"]
    before = finished["comparison"]["methods"]["genetic"]
    assert again["front"] == before["front"] and again["extra"] == before["extra"]
    events = history(out)  # the interrupted run's three events, then generations 1 and 2 again, the same
    assert [e["generation"] for e in events] == [0, 1, 2, 1, 2] and events[3:] == events[1:3]


@pytest.mark.parametrize("setting, message", [
    ("genetic.population=1", "genetic.population"),
    ("genetic.generations=0", "genetic.generations"),
    ("genetic.mutation_prob=1.5", "genetic.mutation_prob"),
    ("genetic.crossover_prob=0.5", "genetic.crossover_prob must be 0"),
    ("genetic.cull_fraction=0", "genetic.cull_fraction"),
    ("genetic.tournament=0", "genetic.tournament"),
    ("genetic.hidden=[5,2]", "genetic.hidden"),
    ("genetic.hidden=[3]", "genetic.hidden"),
    ("genetic.density=2", "genetic.density"),
    ("genetic.epochs=0", "genetic.epochs"),
    ("genetic.search_rows=0", "genetic.search_rows"),
    ("genetic.fitness=\"accuracy\"", "genetic.fitness"),
    ("genetic.bogus=1", "unknown setting genetic.bogus"),
])
def test_bad_genetic_settings_exit_2_before_anything_is_written(tmp_path: Path, capsys, setting, message) -> None:
    out = tmp_path / "run"
    assert main(["compare", "approx", "--methods", "genetic", "--out", str(out), "--set", setting]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists()


def test_registered_with_its_settings_and_refuses_sequences() -> None:
    assert "genetic" in method_names()
    method = get_method("genetic")
    assert method.name == "genetic" and "paper 001" in method.summary
    settings = method.settings
    assert (settings.population, settings.generations, settings.mutation_prob, settings.crossover_prob,
            settings.cull_fraction, settings.hidden, settings.density, settings.epochs, settings.fitness) == (
        30, 10, 0.5, 0.0, 0.1, None, 0.2, None, "val_loss")
    changed = method.with_overrides({"hidden": [4, 9], "fitness": "within_max_params"})
    assert changed.settings.hidden == (4, 9) and changed.settings_dict()["hidden"] == [4, 9]
    assert type(settings)(**changed.settings_dict()) == changed.settings  # settings_dict round trip
    assert type(settings)(**method.settings_dict()) == settings
    with pytest.raises(InputError, match="genetic.cull_fraction"):
        method.with_overrides({"population": 2, "cull_fraction": 0.9})  # would cull every member
    codes = torch.zeros(4, 3, dtype=torch.long)
    sequences = Task("seq", Split((codes, torch.full((4,), 3)), torch.zeros(4, dtype=torch.long)),
                     Split((codes, torch.full((4,), 3)), torch.zeros(4, dtype=torch.long)), loss="cross_entropy")
    with pytest.raises(InputError, match="sequence task"):
        method.check(sequences)


@pytest.mark.parametrize("n_in, n_out, budget", [(2, 1, 120), (2, 1, 300), (64, 10, 3000)])
def test_the_default_hidden_range_fits_max_params(n_in, n_out, budget) -> None:
    lo, hi = default_hidden(n_in, n_out, 0.2, budget)
    assert 1 <= lo <= hi and expected_params(n_in, n_out, hi, 0.2) <= budget
    assert expected_params(n_in, n_out, hi + 1, 0.2) > budget or hi == 1
    rng = random.Random(0)  # random topologies of the largest size stay about within the budget on average
    sizes = [live_params(random_topology(rng, n_in, n_out, (hi, hi), 0.2)) for _ in range(20)]
    assert sum(sizes) / len(sizes) <= budget


def test_search_rows_are_a_seeded_subsample_in_order() -> None:
    x = torch.arange(20.0).reshape(10, 2)
    split = Split(x, torch.arange(10))
    part = search_rows(split, 4, seed=3)
    assert len(part.y) == 4 and torch.equal(part.y, part.y.sort().values)
    assert torch.equal(part.x, x[part.y]) and torch.equal(search_rows(split, 4, seed=3).y, part.y)
    assert not torch.equal(search_rows(split, 4, seed=4).y, part.y)
    assert torch.equal(search_rows(split, 10, seed=3).y, split.y) and torch.equal(search_rows(split, 99, 0).y, split.y)


def test_the_searched_front_and_its_cap() -> None:
    def record(key: str, params: int, loss: float) -> dict:
        return {"key": key, "params": params, "val_loss": loss}

    records = [record("a", 30, 0.5), record("b", 20, 0.7), record("c", 40, 0.6), record("d", 50, 0.2),
               record("e", 10, float("nan")), record("f", 20, 0.7)]
    assert [r["key"] for r in searched_front(records)] == ["b", "a", "d"]  # c dominated, e not finite, f a tie
    assert [r["key"] for r in searched_front(records, cap=40)] == ["b", "a"]
    assert [r["key"] for r in reported(records, cap=5)] == ["e"]  # nothing within the cap: the smallest
