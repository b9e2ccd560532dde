"""Trainer choices for small brightness networks, side by side on the same data and seed.

Compares, for dense 4-6-6-1 and 4-12-11-1 tanh MLPs on the camera image:
* L-BFGS on the paper's raw scaling (inputs are differences / 255, std about 0.06) against
  L-BFGS with netbonsai's fixed input/output standardisation (folded into the weights later);
* the three trainers (L-BFGS, Levenberg-Marquardt, Adam) at a similar wall-clock budget.

    python benchmarks/bench_training.py --train-samples 60000

Prints a markdown table: training loss (MSE * 255^2) after each budget, and seconds.
"""

from __future__ import annotations

import argparse
import time

import torch

from netbonsai.data import load_task
from netbonsai.nets import DagNet, standardize_for
from netbonsai.train import Budget, TrainerConfig, evaluate, fit


def run(sizes, data, standardize: bool, trainer: TrainerConfig, epochs: int, seed: int) -> tuple[float, float, float]:
    net = DagNet.mlp(sizes, generator=torch.Generator().manual_seed(seed))
    if standardize:
        standardize_for(net, data.x_train, data.y_train)
    started = time.perf_counter()
    result = fit(net, data.x_train, data.y_train, Budget(epochs=epochs), trainer, seed=seed)
    seconds = time.perf_counter() - started
    val = float(evaluate(net, data.x_val, data.y_val)[0])
    return float(result.loss[0]) * data.loss_scale, val * data.loss_scale, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-samples", type=int, default=60_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_task("brightness", max_train=args.train_samples)
    cases = [
        ("L-BFGS, raw scaling", False, TrainerConfig(method="lbfgs"), 1000),
        ("L-BFGS, standardised", True, TrainerConfig(method="lbfgs"), 1000),
        ("Levenberg-Marquardt, standardised", True, TrainerConfig(method="lm"), 100),
        ("Adam lr 1e-2 batch 1024, standardised", True, TrainerConfig(method="adam", lr=1e-2, batch_size=1024), 60),
    ]
    print(f"brightness on skimage:camera, {data.x_train.shape[0]} training samples, seed {args.seed}, "
          f"torch threads {args.threads}\n")
    print("| network | trainer | budget | train loss | val loss | seconds |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for sizes in ([4, 6, 6, 1], [4, 12, 11, 1]):
        for name, standardize, trainer, epochs in cases:
            train, val, seconds = run(sizes, data, standardize, trainer, epochs, args.seed)
            unit = "iterations" if trainer.method != "adam" else "epochs"
            label = "-".join(str(s) for s in sizes)
            print(f"| {label} | {name} | {epochs} {unit} | {train:.2f} | {val:.2f} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
