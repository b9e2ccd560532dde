"""Polishing a search's front: one padded population against one network at a time, side by side.

``compare`` and ``grow`` give every reported front network a final training (the quick preset:
300 full-batch L-BFGS iterations on 60,000 pixels). This times three ways of doing it, in one run,
on the front of a short quick-preset brightness search:

- ``population``: every front network in one population, padded to the largest (before);
- ``alone``: one network after another in this process;
- ``pool``: one job per network on a process pool with one worker per core (what the runs do now).

    python benchmarks/bench_polish.py --cycles 4 --epochs 100
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace

import torch

from netbonsai.data.tasks import load_task
from netbonsai.executor import make_executor
from netbonsai.experiments.image_runs import polish
from netbonsai.experiments.presets import task_settings
from netbonsai.grow.search import grow
from netbonsai.runtime import keep_freed_memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=4, help="neurons the search adds (more front networks)")
    parser.add_argument("--epochs", type=int, default=100, help="polish iterations")
    args = parser.parse_args()
    keep_freed_memory()
    torch.set_num_threads(1)
    settings = task_settings("brightness", "quick")
    data = load_task("brightness", max_train=settings.data.max_train)
    front = sorted(grow(data, settings.grow.with_overrides(max_cycles=args.cycles)).front, key=lambda p: p.params)
    front = front[: settings.polish_points]
    workers = max(1, os.cpu_count() or 1)
    ways = {
        "population": lambda: polish(front, data, replace(settings, polish_epochs=args.epochs, polish_group=len(front))),
        "alone": lambda: polish(front, data, replace(settings, polish_epochs=args.epochs, polish_group=1)),
    }
    times, losses = {}, {}
    for name, work in ways.items():
        started = time.perf_counter()
        losses[name] = [p.train_loss for p in work()]
        times[name] = time.perf_counter() - started
    with make_executor("process", workers=workers) as executor:
        executor.submit(int).result()  # workers started before the clock
        started = time.perf_counter()
        pooled = polish(front, data, replace(settings, polish_epochs=args.epochs, polish_group=1), executor)
        times["pool"] = time.perf_counter() - started
        losses["pool"] = [p.train_loss for p in pooled]
    sizes = [p.params for p in front]
    print(f"brightness, quick preset data ({data.x_train.shape[0]:,} training pixels), one torch thread per process; "
          f"{len(front)} front networks of {min(sizes)}-{max(sizes)} parameters, {args.epochs} L-BFGS iterations; "
          f"pool: {workers} worker processes")
    print("| way | seconds | vs population |")
    print("| --- | ---: | ---: |")
    for name, seconds in times.items():
        print(f"| {name} | {seconds:.1f} | {times['population'] / seconds:.2f}x |")
    same = losses["alone"] == losses["pool"]
    gap = max(abs(a - b) / a for a, b in zip(losses["population"], losses["alone"]))
    print(f"alone and pool give identical losses: {same}; population vs alone: largest relative difference {gap:.1e}")


if __name__ == "__main__":
    main()
