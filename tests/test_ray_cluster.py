"""``reproduce --executor ray`` on a real local Ray cluster (a head node and a second node, both on
127.0.0.1): the second node's worker processes are SIGKILLed while one of them runs a job, and the
run still completes, with the same result as ``--executor inline``. The executor has Ray retry
the killed job, so the run must finish by itself; if it does not, the test checks that
``--resume`` finishes it, and fails anyway.

The cluster is started by the test and stopped by process id (tests/ray_cluster.py); afterwards
no process of it may be left. The run is ``reproduce reber-rnn-pruning`` through the real command
line with the experiment's smoke preset (the command line offers quick and paper only, so the
child process swaps the preset in before it calls ``netbonsai.cli.main``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import netbonsai
from netbonsai.runs import read_history
from ray_cluster import LocalRayCluster, is_loopback, kill, title  # tests/ is on sys.path
from tiny_runs import without_clock

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux process trees from /proc"),
    # only the children import ray; the dev extra installs it (pip install -e '.[dev]')
    pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed"),
]

# `netbonsai reproduce reber-rnn-pruning ...` with the smoke preset (4 cells, 2x6 units, 600 strings)
REPRODUCE_SMOKE = """
import sys
import netbonsai.experiments.reber_pruning as reber
from netbonsai.cli import main

preset = reber.pruning_settings
reber.pruning_settings = lambda name="quick", **overrides: preset("smoke", **overrides)
sys.exit(main(sys.argv[1:]))
"""
TASK_TITLE = "ray::_ray_call"  # a Ray worker's process title while it runs an executor job
RUN_TIMEOUT = 240.0


def reproduce(executor: str, out: Path, env: dict[str, str], resume: bool = False) -> subprocess.Popen:
    """Start the smoke reproduce in a child process; its output goes to ``out``.log."""
    src = str(Path(netbonsai.__file__).resolve().parents[1])
    env = {**env, "PYTHONPATH": os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)}
    argv = [sys.executable, "-c", REPRODUCE_SMOKE, "reproduce", "reber-rnn-pruning", "--executor", executor,
            "--threads", "1", "--quiet", "--out", str(out), *(["--resume"] if resume else [])]
    log = out.with_name(out.name + (".resume" if resume else "") + ".log")
    with open(log, "wb") as handle:
        return subprocess.Popen(argv, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)


def finish(child: subprocess.Popen, timeout: float = RUN_TIMEOUT) -> int:
    try:
        return child.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait(timeout=10)
        return -9


def assert_same_result(ray_run: Path, inline_run: Path) -> None:
    """Same config, same result.json and history.jsonl up to wall-clock fields."""
    assert (ray_run / "config.json").read_bytes() == (inline_run / "config.json").read_bytes()
    ray_result = json.loads((ray_run / "result.json").read_text())
    inline_result = json.loads((inline_run / "result.json").read_text())
    assert without_clock(ray_result) == without_clock(inline_result)
    assert without_clock(list(read_history(ray_run / "history.jsonl"))) == \
        without_clock(list(read_history(inline_run / "history.jsonl")))


def kill_a_busy_node(cluster: LocalRayCluster, node: int, driver: subprocess.Popen,
                     timeout: float) -> list[str]:
    """Once one of ``node``'s workers runs a job, SIGKILL all its workers; the titles they had.

    Just before, while every kind of process of the run is up (GCS, raylets, agents, workers, the
    driver), the cluster must listen on 127.0.0.1 only."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and driver.poll() is None:
        workers = cluster.workers(node)
        if any(title(w) == TASK_TITLE for w in workers):
            listening = cluster.listening()
            titles = [title(w) for w in workers]
            kill(workers)
            assert listening, "found no listening socket of the cluster"
            outside = sorted((title(pid), address, port) for pid, address, port in listening
                             if not is_loopback(address))
            assert not outside, f"the cluster listens beyond 127.0.0.1: {outside}"
            print(f"{len(listening)} listening sockets of the cluster, all on 127.0.0.1")
            return titles
        time.sleep(0.02)
    raise AssertionError(f"no job ran on node {node} (driver exit code {driver.poll()})")


@pytest.fixture
def cluster():
    """A head node and a second node on 127.0.0.1 (one CPU each), for the test to start; no
    process of it survives the test."""
    cluster = LocalRayCluster(extra_nodes=1, cpus=1)
    try:
        yield cluster
    finally:
        cluster.stop()
        left = cluster.processes()
        assert not left, f"ray processes outlived the test: {[(pid, title(pid)) for pid in left]}"


def test_reproduce_on_a_ray_cluster_survives_killed_workers(cluster: LocalRayCluster, tmp_path: Path) -> None:
    env = cluster.driver_env()
    # the reference runs while the cluster starts
    inline_env = {name: value for name, value in env.items() if not name.startswith("RAY_")}
    inline = reproduce("inline", tmp_path / "inline", inline_env)
    driver = None
    try:
        cluster.start()
        started = time.monotonic()
        driver = reproduce("ray", tmp_path / "ray", env)
        titles = kill_a_busy_node(cluster, 1, driver, timeout=RUN_TIMEOUT)
        killed = time.monotonic()
        code = finish(driver)
        print(f"workers {titles} of the second node killed {killed - started:.1f} s into the run; "
              f"it exited with {code} after {time.monotonic() - started:.1f} s")
        log = (tmp_path / "ray.log").read_text(errors="replace")
        retried = code == 0
        if not retried:  # a resume must still finish the run (and then the test fails below)
            code = finish(reproduce("ray", tmp_path / "ray", env, resume=True))
            log += (tmp_path / "ray.resume.log").read_text(errors="replace")
            print(f"resumed: exit code {code}")
        assert code == 0, log[-3000:]
        assert finish(inline) == 0, (tmp_path / "inline.log").read_text(errors="replace")[-3000:]
    finally:
        for child in (driver, inline):
            if child is not None and child.poll() is None:
                child.kill()
                child.wait(timeout=10)
    assert TASK_TITLE in titles
    assert_same_result(tmp_path / "ray", tmp_path / "inline")
    # the executor retries a job whose worker died (RAY_TASK_RETRIES): no resume was needed
    assert retried, "the run finished only with --resume: Ray did not retry the killed worker's job"
