"""Per-block measures of trained residual networks on MNIST: how well each cheap measure ranks
the blocks as the lesion does, and what scoring costs.

Trains (minibatch Adam, lr 1e-3, batch 64, one torch thread) a residual MLP (784 -> ``--width``,
8 blocks, 10 outputs) and a residual CNN (3 stages x 4 blocks: a downsampling block and 3
removable ones per stage, widths 8-16-32) on ``--rows`` MNIST training images, then scores every
removable block on ``--held-out`` validation images (held out of the training images):

* the Spearman correlation of each cheap measure (norm ratio, 1 - cosine, Taylor, 1 - CKA) with
  the lesion (the loss increase when the block is skipped), across blocks;
* the seconds of the cheap measures (one forward and one backward pass for all blocks) against
  the lesion (one forward pass per block), side by side, median of ``--repeats``.

Usage::

    python benchmarks/bench_block_scores.py --data /work/shared/data/mnist [--rows 10000]
        [--epochs 3] [--held-out 2000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from netbonsai.data.specs import idx_task
from netbonsai.data.task import Split
from netbonsai.residual import ResidualCNN, ResidualMLP, block_scores, find_blocks, spearman
from netbonsai.train import Budget, TrainerConfig, fit

CHEAP = ("norm_ratio", "cosine", "taylor", "cka")


def _report(name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int) -> None:
    loss = nn.functional.cross_entropy
    scores = block_scores(model, x, y, loss)
    print(f"\n{name}: {len(find_blocks(model))} removable blocks; lesion per block "
          f"{[round(v, 4) for v in scores['lesion'].tolist()]}")
    for measure in CHEAP:
        print(f"  Spearman({measure}, lesion) = {spearman(scores[measure], scores['lesion']):+.3f}")
    cheap_times, lesion_times = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        block_scores(model, x, y, loss, CHEAP)
        cheap_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        block_scores(model, x, y, loss, ("lesion",))
        lesion_times.append(time.perf_counter() - start)
    cheap, lesion = statistics.median(cheap_times), statistics.median(lesion_times)
    print(f"  scoring: cheap measures {cheap:.3f} s, lesion {lesion:.3f} s ({lesion / cheap:.1f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--held-out", type=int, default=2_000)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    task = idx_task(args.data, val_size=args.held_out, seed=0, max_train=args.rows)
    trainer = TrainerConfig(method="adam", loss="cross_entropy", lr=1e-3, batch_size=64)
    torch.manual_seed(0)
    mlp = ResidualMLP(784, args.width, 8, 10)
    started = time.perf_counter()
    fit(mlp, task.train, Budget(epochs=args.epochs), trainer, seed=0)
    print(f"residual MLP trained in {time.perf_counter() - started:.0f} s")
    _report("residual MLP (8 blocks)", mlp, task.x_val, task.y_val, args.repeats)
    images = Split(task.x_train.reshape(-1, 1, 28, 28), task.y_train)
    torch.manual_seed(0)
    cnn = ResidualCNN(1, (8, 16, 32), 4, 10)
    started = time.perf_counter()
    fit(cnn, images, Budget(epochs=args.epochs), trainer, seed=0)
    print(f"residual CNN trained in {time.perf_counter() - started:.0f} s")
    cnn.eval()
    _report("residual CNN (3 stages x 4 blocks)", cnn, task.x_val.reshape(-1, 1, 28, 28), task.y_val, args.repeats)


if __name__ == "__main__":
    main()
