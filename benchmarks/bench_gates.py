"""Gated training against plain training: one epoch of LeNet-300-100 (784-300-100-10) on MNIST.

Side by side in one run, alternating, median of ``--repeats`` epochs each:

* ``fit``: netbonsai's :func:`~netbonsai.train.fit` (minibatch Adam), the plain network;
* ``loop``: :func:`~netbonsai.gates.train_gated` on the plain network (the same loop without
  gates, so its difference to ``fit`` is the loop's own cost);
* ``gated-neurons`` / ``gated-params``: the gated network (w per neuron, d per layer) with the
  paper's penalty in each complexity mode, the projection after every step included.

Prints the median seconds per epoch, their ratio to ``fit``, and the median of the per-repeat
ratios (each repeat runs the four back to back, so a busy machine's slow spells cancel out;
target: gated at most 1.3x). Uses the MNIST
files in ``--data`` (netbonsai's idx loader) when they are there, else random data of MNIST's
size. Usage::

    python benchmarks/bench_gates.py [--data /work/shared/data/mnist] [--rows 10000] [--batch 64]
        [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from netbonsai.data.task import Split
from netbonsai.gates import gate, gate_penalty, train_gated
from netbonsai.train import Budget, TrainerConfig, fit


def lenet_300_100(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10))


def data(root: str, rows: int) -> tuple[Split, str]:
    """The first ``rows`` MNIST training images, or random images of the same shape."""
    if Path(root).is_dir():
        from netbonsai.data import load_mnist

        mnist = load_mnist(root)
        return Split(mnist.x_train[:rows].float(), mnist.y_train[:rows]), f"MNIST ({rows} images)"
    generator = torch.Generator().manual_seed(0)
    return (Split(torch.rand(rows, 784, generator=generator), torch.randint(0, 10, (rows,), generator=generator)),
            f"random MNIST-sized data ({rows} rows)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="/work/shared/data/mnist")
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    split, source = data(args.data, args.rows)
    trainer = TrainerConfig(method="adam", loss="cross_entropy", lr=1e-3, batch_size=args.batch)
    one = Budget(epochs=1)
    plain = lenet_300_100()
    gated = {mode: gate(copy.deepcopy(plain)) for mode in ("neurons", "params")}
    penalties = {mode: gate_penalty(model, 2.3, mode) for mode, model in gated.items()}
    runs = {
        "fit": lambda seed: fit(plain, split, one, trainer, seed=seed),
        "loop": lambda seed: train_gated(plain, split, one, trainer, seed=seed),
        "gated-neurons": lambda seed: train_gated(gated["neurons"], split, one, trainer, penalties["neurons"], seed=seed),
        "gated-params": lambda seed: train_gated(gated["params"], split, one, trainer, penalties["params"], seed=seed),
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    for name, run in runs.items():  # warm-up
        run(0)
    for repeat in range(args.repeats):
        for name, run in runs.items():
            started = time.perf_counter()
            run(repeat + 1)
            times[name].append(time.perf_counter() - started)
    base = statistics.median(times["fit"])
    print(f"LeNet-300-100, {source}, batch {args.batch}, {args.threads} thread(s), median of {args.repeats} epochs")
    print(f"{'run':<14} {'s/epoch':>8} {'ratio':>6} {'paired':>7}")
    for name, values in times.items():
        median = statistics.median(values)
        paired = statistics.median(v / f for v, f in zip(values, times["fit"]))
        print(f"{name:<14} {median:8.3f} {median / base:6.2f} {paired:7.2f}")


if __name__ == "__main__":
    main()
