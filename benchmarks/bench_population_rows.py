"""Full-batch training of random DagNet topologies: one padded population against one at a time,
as the rows per optimiser step grow.

``train_generation`` trains a generation of the ``genetic`` method in groups of at most
``population_group(rows_per_step, aligned_nodes)`` networks (``POPULATION_ELEMENTS``). This
benchmark is where that constant comes from: paper 000's image approximation (the camera image,
2 inputs, 1 output, standardised), ``--k`` random topologies of the method's default hidden range
for 300 parameters, full-batch L-BFGS for ``--epochs`` iterations on a seeded random subsample
of ``--rows`` training rows, trained in groups of 1 (one at a time), 3, ``--k`` (one
population) and the automatic group size. Side by side in one run, alternating, median of
``--repeats``; prints seconds per network and each way's ratio to one at a time.

``--peak-memory`` instead trains the ``--k`` networks once per way in a fresh process and prints
each process's peak resident memory.

Usage::

    python benchmarks/bench_population_rows.py [--k 12] [--rows 2048 8192 48000] [--epochs 10] [--peak-memory]
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import subprocess
import sys
import time

import torch

from netbonsai.data.specs import task_from_spec
from netbonsai.experiments.presets import task_settings
from netbonsai.methods.genetic import default_hidden, search_rows
from netbonsai.methods.residual import standardized
from netbonsai.search import dag_genotype
from netbonsai.search.dag_genotype import aligned_slots, random_topology, train_generation
from netbonsai.train import Budget


def train_in_groups(generation: list, split, budget: Budget, trainer, group: int | None) -> None:
    """Train ``generation`` in groups of ``group`` padded networks (None: train_generation's own grouping)."""
    if group is None:
        train_generation(generation, split, budget, trainer, seed=0)
        return
    automatic = dag_genotype.POPULATION_ELEMENTS
    dag_genotype.POPULATION_ELEMENTS = 2**62  # exactly the groups asked for
    try:
        for first in range(0, len(generation), group):
            train_generation(generation[first:first + group], split, budget, trainer, seed=0, together=group > 1)
    finally:
        dag_genotype.POPULATION_ELEMENTS = automatic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=12, help="topologies")
    parser.add_argument("--rows", type=int, nargs="+", default=[2048, 8192, 48000])
    parser.add_argument("--epochs", type=int, default=10, help="L-BFGS iterations")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--peak-memory", action="store_true", help="peak memory per way, each in a fresh process")
    parser.add_argument("--one-way", type=int, default=None, help=argparse.SUPPRESS)  # child of --peak-memory
    args = parser.parse_args()
    if args.peak_memory:
        print("| rows | group | peak resident memory (MB) |")
        print("| ---: | --- | ---: |")
        for rows in args.rows:
            for group in (1, 3, args.k, 0):
                child = [sys.executable, __file__, "--k", str(args.k), "--rows", str(rows), "--epochs", str(args.epochs),
                         "--threads", str(args.threads), "--one-way", str(group)]
                peak = subprocess.run(child, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
                print(f"| {rows} | {group or 'auto'} | {peak} |", flush=True)
        return
    torch.set_num_threads(args.threads)
    settings = task_settings("approx", "quick")
    task = task_from_spec("approx", max_train=60_000)
    inner, _ = standardized(task)
    hidden = default_hidden(task.n_in, task.n_out, 0.2, settings.grow.max_params)
    rng = random.Random(0)
    generation = [random_topology(rng, task.n_in, task.n_out, hidden, 0.2, settings.grow.activation)
                  for _ in range(args.k)]
    n_nodes = aligned_slots(generation)[0]
    print(f"approx (camera), K={args.k} topologies of {hidden[0]}-{hidden[1]} hidden neurons ({n_nodes} aligned "
          f"nodes), L-BFGS {args.epochs} iterations, {args.threads} thread(s), median of {args.repeats}; "
          f"POPULATION_ELEMENTS = {dag_genotype.POPULATION_ELEMENTS}")
    budget, trainer = Budget(epochs=args.epochs), settings.grow.trainer
    if args.one_way is not None:
        train_in_groups(generation, search_rows(inner.train, args.rows[0], 0), budget, trainer, args.one_way or None)
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
        return
    train_generation(generation[:2], search_rows(inner.train, 256, 0), Budget(epochs=2), trainer)  # warm-up
    print("| rows | group | seconds per network | against one at a time |")
    print("| ---: | --- | ---: | ---: |")
    for rows in args.rows:
        split = search_rows(inner.train, rows, 0)
        auto = dag_genotype.population_group(len(split.y), n_nodes)
        ways = {"1": 1, "3": 3, f"{args.k} (one population)": args.k, f"auto ({min(auto, args.k)})": None}
        times: dict[str, list[float]] = {way: [] for way in ways}
        for _ in range(args.repeats):
            for way, group in ways.items():
                start = time.perf_counter()
                train_in_groups(generation, split, budget, trainer, group)
                times[way].append((time.perf_counter() - start) / args.k)
        alone = statistics.median(times["1"])
        for way, values in times.items():
            seconds = statistics.median(values)
            print(f"| {len(split.y)} | {way} | {seconds:.3f} | {alone / seconds:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
