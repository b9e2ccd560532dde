"""Channel (structured) pruning: netbonsai.prune.channel_prune vs Torch-Pruning at equal parameters.

A small CNN is trained 1 epoch on MNIST; then each hidden conv loses the same fraction of its
output channels by L1 magnitude, with

* netbonsai: ``channel_prune(model, amount, importance="l1")`` (per-layer L1 norm of the conv's
  weights, then :func:`compact_cnn`);
* Torch-Pruning: ``MetaPruner`` with ``MagnitudeImportance(p=1)`` (L1 over the whole coupled
  group: conv, BatchNorm, next layer's inputs), Linear layers ignored so only conv channels go.

Both give plain dense CNNs; the script reports parameters and test accuracy right after pruning
and after 1 epoch of fine-tuning. Torch-Pruning is optional (``pip install torch-pruning``; not a
dependency of netbonsai). Usage::

    python benchmarks/bench_channel_pruning.py [--data /work/shared/data/mnist] [--amount 0.5]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from torch import nn

from netbonsai.data import load_mnist
from netbonsai.prune import channel_prune


def make_cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, 10),
    )


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int = 1, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(128):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return float(sum((model(xb).argmax(1) == yb).sum() for xb, yb in zip(x.split(1000), y.split(1000))) / len(x))


def params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def channels(model: nn.Module) -> list[int]:
    return [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]


def torch_pruning(model: nn.Module, amount: float, example: torch.Tensor) -> nn.Module:
    import torch_pruning as tp

    model = copy.deepcopy(model)
    ignored = [m for m in model.modules() if isinstance(m, nn.Linear)]
    pruner = tp.pruner.MetaPruner(model, example, importance=tp.importance.MagnitudeImportance(p=1),
                                  pruning_ratio=amount, ignored_layers=ignored)
    pruner.step()
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="/work/shared/data/mnist")
    parser.add_argument("--amount", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = load_mnist(args.data, flatten=False)
    xtr, ytr, xte, yte = data.x_train, data.y_train, data.x_test, data.y_test
    base = make_cnn()
    t0 = time.perf_counter()
    train(base, xtr, ytr)
    print(f"dense: params={params(base)} channels={channels(base)} acc={accuracy(base, xte, yte):.4f} "
          f"(trained 1 epoch in {time.perf_counter() - t0:.0f}s)")
    variants = {"netbonsai channel_prune l1": channel_prune(copy.deepcopy(base), args.amount, importance="l1")}
    try:
        variants["torch-pruning Magnitude p=1"] = torch_pruning(base, args.amount, xtr[:2])
    except ImportError:
        print("torch-pruning not installed: skipped")
    rows = []
    for name, model in variants.items():
        before = accuracy(model, xte, yte)
        train(model, xtr, ytr, seed=1)
        rows.append((name, params(model), channels(model), before, accuracy(model, xte, yte)))
    print(f"\namount={args.amount}\n| method | params | conv channels | acc pruned | acc +1 epoch |\n|---|---|---|---|---|")
    for name, n, ch, before, after in rows:
        print(f"| {name} | {n} | {ch} | {before:.4f} | {after:.4f} |")


if __name__ == "__main__":
    main()
