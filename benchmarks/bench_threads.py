"""Torch threads: 1 against 2, on an idle machine and beside a competing CPU-bound process.

The workloads are the project's own, shrunk to seconds, run side by side in one process:

- ``grow``: :func:`netbonsai.grow.grow` on the camera brightness task with the quick preset's
  settings, a shorter start training (``--start-epochs``), at most ``--prune-steps`` removals per
  prune phase and ``max_cycles=1``;
- ``mnist``: one prune round of ``netbonsai prune mnist``'s 784-300-100-10 ReLU MLP on a subset of
  MNIST (``--mnist-train`` images): one dense Adam epoch, a magnitude-blinded round removing 20%,
  one retraining epoch (only when the MNIST files are in ``--mnist``).

Each workload runs with 1 and 2 threads, first on its own and then with one busy-loop child
process (``python -c "while True: pass"``, started here and killed by its pid afterwards). The
table gives seconds and the 2-thread/1-thread ratio, and says whether the two thread counts gave
the same result (the thread count changes float sums, so it may not). A shared machine's other
load moves the figures: the load average before the run is printed with them.

    python benchmarks/bench_threads.py            # about 2-4 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from netbonsai.runtime import keep_freed_memory, threads


def grow_workload(start_epochs: int, prune_steps: int):
    from netbonsai.data.tasks import load_task
    from netbonsai.experiments.presets import task_settings
    from netbonsai.grow import grow

    settings = task_settings("brightness", "quick")
    data = load_task("brightness", max_train=settings.data.max_train)
    config = settings.grow.with_overrides(max_cycles=1, start_epochs=start_epochs, max_prune_steps=prune_steps)

    def run() -> str:
        result = grow(data, config)
        last = result.events[-1]
        return f"{len(result.events)} events, {last['params']} params, train loss {last['train_loss']:.6g}"

    return run


def mnist_workload(root: Path, n_train: int):
    from netbonsai.data.idx import load_mnist
    from netbonsai.experiments.classification import build_mlp
    from netbonsai.nets.masked import make_prunable
    from netbonsai.prune.schedules import classification_evaluator, retrainer, run_schedule

    mnist = load_mnist(root)
    x, y = mnist.x_train[:n_train], mnist.y_train[:n_train]
    x_val, y_val = mnist.x_train[-5000:], mnist.y_train[-5000:]

    def run() -> str:
        model = make_prunable(build_mlp([784, 300, 100, 10], "relu", seed=0))
        train = retrainer(x, y, epochs=1, batch_size=64, seed=0)
        train(model)  # the dense network (one epoch here)
        result = run_schedule(model, "magnitude-blinded", "relative:0.2", evaluate=classification_evaluator(x_val, y_val),
                              retrain=retrainer(x, y, epochs=1, batch_size=64, seed=1), max_rounds=1,
                              generator=torch.Generator().manual_seed(0))
        final = result.records[-1]
        return f"sparsity {final['sparsity']:.3f}, val accuracy {final['accuracy']:.4f}"

    return run


def timed(run, n_threads: int) -> tuple[float, str]:
    with threads(n_threads):
        started = time.perf_counter()
        outcome = run()
        return time.perf_counter() - started, outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start-epochs", type=int, default=300, help="start training of the grow workload")
    parser.add_argument("--prune-steps", type=int, default=5, help="removals per prune phase of the grow workload")
    parser.add_argument("--mnist", type=Path, default=Path(os.environ.get("NETBONSAI_DATA", "/work/shared/data/mnist")))
    parser.add_argument("--mnist-train", type=int, default=6000, help="training images of the MNIST workload")
    args = parser.parse_args()

    keep_freed_memory()  # as the CLI does
    workloads = {f"grow (brightness, quick, {args.start_epochs} start epochs, 1 cycle)":
                 grow_workload(args.start_epochs, args.prune_steps)}
    if (args.mnist / "train-images-idx3-ubyte.gz").exists() or (args.mnist / "train-images-idx3-ubyte").exists():
        workloads[f"mnist prune round (784-300-100-10, {args.mnist_train} images)"] = mnist_workload(args.mnist, args.mnist_train)
    else:
        print(f"(no MNIST files in {args.mnist}: the mnist workload is skipped)")
    started = time.perf_counter()
    load = os.getloadavg()
    print(f"cpus {os.cpu_count()}, torch {torch.__version__}, load average before the run "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (a shared machine: other processes move these figures)")
    for name, run in workloads.items():  # warm-up: imports, first allocations
        timed(run, 1)

    rows = []
    for condition in ("no added load", "+1 busy process"):
        busy = None
        if condition != "no added load":
            busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            time.sleep(0.5)
        try:
            for name, run in workloads.items():
                one, outcome_one = timed(run, 1)
                two, outcome_two = timed(run, 2)
                rows.append((name, condition, one, two, outcome_one == outcome_two, outcome_one, outcome_two))
                print(f"  {name}, {condition}: 1 thread {one:.1f} s, 2 threads {two:.1f} s", flush=True)
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()

    print()
    print("| workload | machine | 1 thread (s) | 2 threads (s) | 2 / 1 | same result |")
    print("|---|---|---:|---:|---:|---|")
    for name, condition, one, two, same, *_ in rows:
        print(f"| {name} | {condition} | {one:.1f} | {two:.1f} | {two / one:.2f} | {'yes' if same else 'no'} |")
    different = dict.fromkeys((r[0], r[5], r[6]) for r in rows if not r[4])
    for name, a, b in different:
        print(f"\n{name}: 1 thread gave {a}; 2 threads gave {b}")
    load = os.getloadavg()
    print(f"\nload average after the run {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"{time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    main()
