"""Inference speed of a pruned MLP: masked dense vs compacted dense vs torch sparse CSR, side by side.

For a 784-300-100-10 ReLU network pruned by global magnitude (the smallest |w| over all layers
removed) at each sparsity, times one forward pass of:
* masked: the ``MaskedLinear`` network as trained (full matrices, ``weight * mask`` every call);
* compacted: :func:`netbonsai.nets.compact.compact_mlp` (dead and constant neurons removed, plain
  ``nn.Linear`` with smaller dense matrices);
* csr: :func:`netbonsai.nets.compact.to_sparse_mlp` (compacted, then CSR weights, sparse @ dense).

    python benchmarks/bench_inference.py --threads 1

The weights are drawn from one distribution for all layers (``--init normal``, the default), so
global pruning spreads over the layers as it does on a trained network and leaves some neurons
dead or constant. With PyTorch's default fan-in initialisation (``--init default``) the first layer's
weights are the smallest, global pruning empties it from about 97 % sparsity, and the whole network
compacts to its output bias. Every variant's outputs are checked against the masked network.
Times are medians over ``--repeats`` rounds; in each round the three variants are measured in turn
(torch.utils.benchmark, ``--min-time`` seconds each), all in one process.
"""

from __future__ import annotations

import argparse
import statistics

import torch
from torch import nn
from torch.utils import benchmark

from netbonsai.nets.compact import compact_mlp, compacted_params, compacted_shape, to_sparse_mlp
from netbonsai.nets.masked import make_prunable, masked_layers

SIZES = [784, 300, 100, 10]


def pruned_network(sparsity: float, init: str, seed: int) -> nn.Sequential:
    """A 784-300-100-10 ReLU ``MaskedLinear`` network with the smallest |w| (globally) removed."""
    torch.manual_seed(seed)
    modules: list[nn.Module] = []
    for a, b in zip(SIZES, SIZES[1:]):
        modules += [nn.Linear(a, b), nn.ReLU()]
    net = make_prunable(nn.Sequential(*modules[:-1])).eval()
    layers = [layer for _, layer in masked_layers(net)]
    with torch.no_grad():
        if init == "normal":
            for layer in layers:
                layer.weight.normal_(0.0, 0.05)
                layer.bias.normal_(0.0, 0.05)
        magnitudes = torch.cat([layer.weight.abs().flatten() for layer in layers])
        n_removed = round(sparsity * magnitudes.numel())
        if n_removed:
            threshold = torch.kthvalue(magnitudes, n_removed).values
            for layer in layers:
                layer.mask.copy_(layer.weight.abs() > threshold)
                layer.apply_mask_()
    return net


def median_time(model: nn.Module, x: torch.Tensor, threads: int, min_time: float) -> float:
    def forward() -> torch.Tensor:
        with torch.inference_mode():
            return model(x)

    timer = benchmark.Timer(stmt="forward()", globals={"forward": forward}, num_threads=threads)
    return timer.blocked_autorange(min_run_time=min_time).median


def live_params(net: nn.Sequential) -> int:
    """Live weights plus every bias of the masked network (what a sparse format must store at least)."""
    layers = [layer for _, layer in masked_layers(net)]
    return sum(int(layer.mask.sum()) + layer.bias.numel() for layer in layers)


def where_each_wins(rows: list[dict]) -> str:
    parts = []
    for batch in sorted({r["batch"] for r in rows}):
        wins: dict[str, list[str]] = {}
        for r in (r for r in rows if r["batch"] == batch):
            best = min(("masked", "compacted", "csr"), key=lambda k: r[k])
            wins.setdefault(best, []).append(f"{r['sparsity']:g}")
        parts.append(f"batch {batch}: " + ", ".join(f"{k} at {'/'.join(v)}" for k, v in wins.items()))
    return "; ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparsities", default="0.5,0.8,0.9,0.95,0.98,0.99")
    parser.add_argument("--batches", default="1,256")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--min-time", type=float, default=0.1, help="seconds per measurement")
    parser.add_argument("--init", choices=["normal", "default"], default="normal")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sparsities = [float(s) for s in args.sparsities.split(",")]
    batches = [int(b) for b in args.batches.split(",")]

    rows = []
    for sparsity in sparsities:
        net = pruned_network(sparsity, args.init, args.seed)
        variants = {"masked": net, "compacted": compact_mlp(net), "csr": to_sparse_mlp(net)}
        for batch in batches:
            x = torch.rand(batch, SIZES[0], generator=torch.Generator().manual_seed(1))
            with torch.inference_mode():
                reference = net(x)
                error = max(float((variants[k](x) - reference).abs().max()) for k in ("compacted", "csr"))
            if error > 1e-4:
                raise SystemExit(f"outputs differ at sparsity {sparsity}, batch {batch}: {error:.2e}")
            times: dict[str, list[float]] = {k: [] for k in variants}
            for _ in range(args.repeats):
                for name, model in variants.items():
                    times[name].append(median_time(model, x, args.threads, args.min_time))
            row = {k: statistics.median(v) * 1e3 for k, v in times.items()}
            row.update(sparsity=sparsity, batch=batch, live=live_params(net), compacted_params=compacted_params(net),
                       shape="-".join(map(str, compacted_shape(net))), error=error)
            rows.append(row)

    dense = sum(a * b + b for a, b in zip(SIZES, SIZES[1:]))
    print(f"784-300-100-10 ReLU ({dense} params dense), global magnitude masks on a random net (--init {args.init}), "
          f"torch {torch.__version__}, threads {args.threads}, median of {args.repeats} rounds\n")
    print("| sparsity | batch | live params | compacted params | compacted shape | ms masked | ms compacted | ms csr "
          "| compacted vs masked | csr vs masked | max abs diff |")
    print("| ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['sparsity']:g} | {r['batch']} | {r['live']} | {r['compacted_params']} | {r['shape']} "
              f"| {r['masked']:.4f} | {r['compacted']:.4f} | {r['csr']:.4f} "
              f"| {r['masked'] / r['compacted']:.2f}x | {r['masked'] / r['csr']:.2f}x | {r['error']:.1e} |")
    print(f"\nFastest: {where_each_wins(rows)}.")


if __name__ == "__main__":
    main()
