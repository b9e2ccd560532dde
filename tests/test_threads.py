"""One torch-thread policy: every command defaults to --threads 1, and the Python API's
``grow()`` runs with 1 thread unless the program chose otherwise (``runtime.set_threads``)."""

from __future__ import annotations

import pytest
import torch

from netbonsai import runtime
from netbonsai.cli import cli
from netbonsai.errors import InputError
from netbonsai.grow import GrowConfig, grow
from netbonsai.runs import environment
from tiny_runs import pattern_task

TINY = GrowConfig(hidden=(3,), start_epochs=5, trial_epochs=2, grow_epochs=2, n_attempts=3, n_candidates=3,
                  n_trials=1, attempt_samples=100, max_prune_steps=1, max_cycles=0, seed=1)


@pytest.fixture(autouse=True)
def restore_threads():
    """Each test starts from the default policy and leaves torch's count as it found it."""
    before = torch.get_num_threads()
    runtime.set_threads(None)
    yield
    runtime.set_threads(None)
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def task(tmp_path_factory: pytest.TempPathFactory):
    return pattern_task(tmp_path_factory.mktemp("img"), size=16, max_train=200, periods=(3.0, 4.0), noise=5.0)


def test_every_command_defaults_to_one_thread() -> None:
    with_threads = {name: p for name, command in cli.commands.items() for p in command.params if p.name == "threads"}
    assert {"grow", "compare", "baseline", "prune", "reproduce"} <= set(with_threads)
    assert {name: p.default for name, p in with_threads.items()} == dict.fromkeys(with_threads, 1)


def test_the_policy_is_one_thread_unless_set() -> None:
    assert runtime.thread_policy() == 1
    runtime.set_threads(3)
    assert runtime.thread_policy() == 3 and torch.get_num_threads() == 3
    assert environment()["torch_threads"] == 3  # what a result records
    runtime.set_threads(None)
    assert runtime.thread_policy() == 1
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(InputError, match="positive integer"):
            runtime.set_threads(bad)


def test_the_context_manager_restores_the_count_and_the_policy() -> None:
    torch.set_num_threads(2)
    with runtime.threads(1) as n:
        assert n == 1 and torch.get_num_threads() == 1 and runtime.thread_policy() == 1
        with runtime.threads(3):
            assert torch.get_num_threads() == 3 and runtime.thread_policy() == 3
        assert torch.get_num_threads() == 1 and runtime.thread_policy() == 1
    assert torch.get_num_threads() == 2 and runtime.thread_policy() == 1
    with pytest.raises(RuntimeError), runtime.threads(3):
        raise RuntimeError("the block fails")
    assert torch.get_num_threads() == 2


def test_grow_runs_with_one_thread_by_default_and_restores_the_callers_count(task) -> None:
    torch.set_num_threads(2)  # e.g. torch's own default on a 2-core machine
    seen: list[int] = []
    result = grow(task, TINY, on_event=lambda event: seen.append(torch.get_num_threads()))
    assert result.stop_reason == "max_cycles"
    assert seen and set(seen) == {1}
    assert torch.get_num_threads() == 2


def test_grow_follows_set_threads(task) -> None:
    runtime.set_threads(2)
    torch.set_num_threads(1)  # changed behind the policy's back: grow applies the choice again
    seen: list[int] = []
    grow(task, TINY, on_event=lambda event: seen.append(torch.get_num_threads()))
    assert set(seen) == {2}
    assert torch.get_num_threads() == 1
    seen.clear()
    with runtime.threads(1):
        grow(task, TINY, on_event=lambda event: seen.append(torch.get_num_threads()))
    assert set(seen) == {1}


def test_the_cli_passes_threads_to_the_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    from netbonsai import cli as cli_module

    monkeypatch.setattr(runtime, "keep_freed_memory", lambda: False)
    cli_module._set_threads(2)
    assert runtime.thread_policy() == 2 and torch.get_num_threads() == 2
