"""A generation of random DagNet topologies trained as one padded population against one at a time.

Genetic architecture search over neuron-level topologies (``netbonsai.search.dag_genotype``)
trains every generation's K networks. Three ways, side by side:

* ``one at a time``: ``train_generation(..., together=False)``, one ``fit`` per network;
* ``fit(list)``: ``fit`` on the list of networks as they are (``train.together`` pads each after
  its own hidden nodes: the union of K masks is nearly one level per hidden id);
* ``population``: ``train_generation(..., together=True)``, the same single ``fit`` on a list,
  with the networks first laid out by ``aligned_slots`` (hidden neurons grouped by level).

All see the same minibatches and give the same networks (the largest weight difference between
``population`` and ``one at a time`` is printed).

Task: scikit-learn's digits (1,797 images of 8x8 = 64 pixels scaled to [0, 1], 10 classes),
``--k`` random topologies with ``--hidden`` neurons (density ``--density``), Adam with
cross-entropy for ``--epochs`` epochs of ``--batch`` rows. Side by side in one run, alternating,
median of ``--repeats``; prints both times and their ratio (the target is >= 4x for K = 30).
Usage::

    python benchmarks/bench_genetic_population.py [--k 30] [--epochs 5] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch
from sklearn.datasets import load_digits

from netbonsai.data.task import Split
from netbonsai.search.dag_genotype import random_topology, to_dagnet, train_generation
from netbonsai.train import Budget, TrainerConfig, fit


def _digits() -> Split:
    x, y = load_digits(return_X_y=True)
    return Split(torch.as_tensor(x / 16.0, dtype=torch.float32), torch.as_tensor(y, dtype=torch.long))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=30, help="topologies per generation")
    parser.add_argument("--hidden", type=int, nargs=2, default=(10, 40), help="hidden neurons, lo hi")
    parser.add_argument("--density", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    split = _digits()
    rng = random.Random(args.seed)
    hidden = (args.hidden[0], args.hidden[1])
    generation = [random_topology(rng, 64, 10, hidden=hidden, density=args.density) for _ in range(args.k)]
    synapses = [t.num_synapses for t in generation]
    trainer = TrainerConfig(method="adam", loss="cross_entropy", lr=3e-3, batch_size=args.batch)
    budget = Budget(epochs=args.epochs)
    steps = args.epochs * -(-len(split) // args.batch)
    print(f"digits {len(split)} rows, K={args.k} topologies, hidden {hidden[0]}-{hidden[1]}, "
          f"synapses {min(synapses)}-{max(synapses)}; Adam {args.epochs} epochs ({steps} steps of "
          f"{args.batch}), {args.threads} thread(s), median of {args.repeats}")
    for together in (False, True):  # warm-up: the first training pays for lazy initialisation
        train_generation(generation[:2], split, Budget(steps=2), trainer, seed=args.seed, together=together)
    ways = ("one at a time", "fit(list)", "population")
    times: dict[str, list[float]] = {way: [] for way in ways}
    results = {}
    for _ in range(args.repeats):
        for way in ways:
            start = time.perf_counter()
            if way == "fit(list)":
                nets = [to_dagnet(t, args.seed + i) for i, t in enumerate(generation)]
                fitted = fit(nets, split, budget, trainer, seed=args.seed)
                results[way] = (fitted.models, fitted.loss)
            else:
                results[way] = train_generation(generation, split, budget, trainer, seed=args.seed,
                                                together=way == "population")
            times[way].append(time.perf_counter() - start)
    median = {way: statistics.median(times[way]) for way in ways}
    (nets_p, loss_p), (nets_a, loss_a) = results["population"], results["one at a time"]
    max_dw = max(float((a.weight - b.weight).detach().abs().max()) for a, b in zip(nets_p, nets_a))
    alone = median["one at a time"]
    header = ("one at a time s", "fit(list) s", "population s", "ratio", "fit(list) ratio", "max |dw|",
              "mean loss")
    row = (f"{alone:.2f}", f"{median['fit(list)']:.2f}", f"{median['population']:.2f}",
           f"{alone / median['population']:.1f}", f"{alone / median['fit(list)']:.1f}", f"{max_dw:.1e}",
           f"{float(loss_p.mean()):.3f}")
    print(" ".join(f"{h:>{len(h)}}" for h in header))
    print(" ".join(f"{v:>{len(h)}}" for v, h in zip(row, header)))
    for way in ways:
        print(f"{way:>14}, each repeat:", " ".join(f"{s:.2f}" for s in times[way]))
    if not torch.allclose(loss_p, loss_a, atol=1e-4):
        raise SystemExit(f"the population's losses differ from separate trainings: {loss_p} vs {loss_a}")


if __name__ == "__main__":
    main()
