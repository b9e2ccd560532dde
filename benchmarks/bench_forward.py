"""DagNet's forward pass skips empty level pairs: before and after, side by side in one run.

A DagNet level's pre-activation is one batched matmul per earlier level. In a dense layered MLP
only the level just before has live synapses; the products with the other levels (the inputs
into the second hidden layer, the inputs and the first hidden layer into the output, ...) are
exactly zero, yet they cost as much as the real ones, forward and backward. The plan now lists
the earlier levels with a live synapse into each level and multiplies only those.

Workloads, on the camera brightness task with the quick preset's 60,000 training pixels, one
torch thread, alternating ``all`` (every earlier level, the old forward) and ``live`` (only
levels with live synapses) so that both see the same machine load:

- ``dense``: the dense sweep's MLPs (a few of the brightness grid), ``--epochs`` L-BFGS iterations each;
- ``search``: a short quick-preset grow-and-prune search (``--cycles`` neurons);
- ``polish``: the search's Pareto front (grown DAGs) trained together, ``--epochs`` iterations.

Both variants must give bit-identical losses (a skipped product is exactly zero).

    python benchmarks/bench_forward.py --epochs 100 --cycles 2 --repeats 3
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import statistics
import time
from typing import Callable, Iterator

import torch

from netbonsai.data.tasks import load_task
from netbonsai.experiments.presets import task_settings
from netbonsai.grow.search import grow
from netbonsai.nets import dag
from netbonsai.runtime import keep_freed_memory
from netbonsai.train import Budget
from netbonsai.train.sweep import train_dense
from netbonsai.train.together import fit_together

DENSE = ((5, 5), (12, 11), (17, 17), (25, 25))


@contextlib.contextmanager
def every_level(enabled: bool) -> Iterator[None]:
    """While ``enabled``, new plans multiply every earlier level (the forward before this change)."""
    original = dag._make_plan

    def all_sources(*args, **kwargs):
        plan = original(*args, **kwargs)
        return dataclasses.replace(plan, sources=tuple(tuple(range(i + 1)) for i in range(len(plan.levels))))

    if enabled:
        dag._make_plan = all_sources
    try:
        yield
    finally:
        dag._make_plan = original


def timed(func: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    value = func()
    return time.perf_counter() - started, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100, help="L-BFGS iterations per dense net and for the polish")
    parser.add_argument("--cycles", type=int, default=2, help="neurons the search adds")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    keep_freed_memory()
    torch.set_num_threads(1)
    settings = task_settings("brightness", "quick")
    data = load_task("brightness", max_train=settings.data.max_train)
    trainer = settings.grow.trainer

    def dense() -> list[float]:
        return [train_dense(data, h, "tanh", args.epochs, trainer, seed=0).train_loss for h in DENSE]

    def search() -> list[tuple]:
        result = grow(data, settings.grow.with_overrides(max_cycles=args.cycles))
        return [(e["event"], e["params"], e["train_loss"]) for e in result.events]

    grown = [point.net for point in grow(data, settings.grow.with_overrides(max_cycles=args.cycles)).front]

    def polish() -> list[float]:
        _, result = fit_together(grown, data.x_train, data.y_train, Budget(epochs=args.epochs), trainer, seed=0)
        return result.loss.tolist()

    workloads = {"dense": dense, "search": search, "polish": polish}
    times: dict[tuple[str, str], list[float]] = {}
    values: dict[tuple[str, str], object] = {}
    for _ in range(args.repeats):
        for name, work in workloads.items():
            for variant in ("all", "live"):
                with every_level(variant == "all"):
                    seconds, value = timed(work)
                times.setdefault((name, variant), []).append(seconds)
                values[(name, variant)] = value
    print(f"brightness, quick preset data ({data.x_train.shape[0]:,} training pixels), one torch thread, "
          f"median of {args.repeats}; dense: {', '.join('-'.join(map(str, h)) for h in DENSE)} x {args.epochs} "
          f"iterations; search: {args.cycles} neurons; polish: {len(grown)} front networks x {args.epochs} iterations")
    print("| workload | every level (s) | live levels only (s) | speedup | identical results |")
    print("| --- | ---: | ---: | ---: | --- |")
    for name in workloads:
        before, after = (statistics.median(times[(name, v)]) for v in ("all", "live"))
        same = values[(name, "all")] == values[(name, "live")]
        print(f"| {name} | {before:.2f} | {after:.2f} | {before / after:.2f}x | {same} |")


if __name__ == "__main__":
    main()
