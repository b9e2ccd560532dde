"""Same-shape Surgeon children trained as one population against one at a time.

The Surgeon retrains every child of a cycle briefly (1 minibatch after an exact edit, 10 after
an approximate one) and trains its best two on for the rest of the cycle; children of one shape
train as one :class:`~netbonsai.surgery.StackedMLP` population (batched matmuls over the
variants, the same minibatches), the others as separate jobs. This measures, side by side in one
run and alternating, ``K`` same-shape MLPs trained for ``--steps`` Adam minibatches of 32 rows:

* ``one at a time``: ``train_job([net])`` for each of the K networks in turn;
* ``population``: ``train_job(nets)``, one StackedMLP.

Prints per shape and K the median seconds of each, their ratio, and the largest weight
difference between the two results (the population equals separate trainings). Random data of
MNIST's shape. Usage::

    python benchmarks/bench_surgeon_population.py [--steps 50] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from netbonsai.data.task import Split, Task
from netbonsai.surgery import make_mlp
from netbonsai.surgery.surgeon import train_job
from netbonsai.train import Budget, TrainerConfig


def _task(rows: int = 4096) -> Task:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(rows, 784, generator=generator)
    y = torch.randint(0, 10, (rows,), generator=generator)
    return Task("bench", Split(x, y), Split(x[:512], y[:512]), loss="cross_entropy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    task = _task()
    trainer = TrainerConfig(method="adam", loss="cross_entropy", lr=1e-3, batch_size=32)
    budget = Budget(steps=args.steps)
    print(f"{args.steps} Adam steps of 32 rows, {args.threads} thread(s), median of {args.repeats}")
    print(f"{'shape':>18} {'K':>3} {'one at a time s':>16} {'population s':>13} {'ratio':>6} {'max |dw|':>9}")
    for sizes in ([784, 8, 10], [784, 32, 10], [784, 128, 64, 10]):
        for k in (2, 4, 8):
            nets = [make_mlp(sizes, "relu", seed=s) for s in range(k)]
            alone_times, together_times = [], []
            for _ in range(args.repeats):
                start = time.perf_counter()
                alone = [train_job([n], task, budget, trainer, 0, False)["nets"][0] for n in nets]
                alone_times.append(time.perf_counter() - start)
                start = time.perf_counter()
                together = train_job(nets, task, budget, trainer, 0, False)["nets"]
                together_times.append(time.perf_counter() - start)
            diff = max(float((a - b).detach().abs().max()) for x, y in zip(alone, together)
                       for a, b in zip(x.parameters(), y.parameters()))
            one, pop = statistics.median(alone_times), statistics.median(together_times)
            print(f"{'-'.join(map(str, sizes)):>18} {k:>3} {one:>16.3f} {pop:>13.3f} {one / pop:>6.2f} {diff:>9.1e}")


if __name__ == "__main__":
    main()
