"""Sparse recurrent structures trained per minute: one population training vs one at a time.

K random layered structures (3-6 layers of 2-10 units, random skip masks, embedded int input of
size 16) are trained for one epoch on synthetic sequences (lengths 10-30, batch 32) as one
MaskedRecurrent population, and then each alone (K=1) with the same data and batches. Prints
both times, structures per minute, the speedup, and checks that both give the same losses.

    python benchmarks/bench_recurrent.py --structures 32 --sequences 2000 --cell gru --threads 2

With ``--workload reber`` it times the reber-structure-prediction workload instead: random
Watts-Strogatz and Barabasi-Albert graphs (n in [10, 50], the authors' generators) as sparse
recurrent networks with an embedding of 128, Reber strings, populations of ``--population``
structures grouped by shape as the experiment groups them, against each structure alone.

    python benchmarks/bench_recurrent.py --workload reber --structures 50 --sequences 2000 --threads 1

Timings are side by side in one process run (compare ratios, not absolute times).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from netbonsai.nets.recurrent import MaskedRecurrent
from netbonsai.nets.structure import LayeredStructure
from netbonsai.train.fit import Budget
from netbonsai.train.sequences import fit_sequences


def random_structure(rng: np.random.Generator, input_size: int) -> LayeredStructure:
    """3-6 layers of 2-10 units; each unit reads the previous layer with p=0.7 and any earlier
    source (input or layer) with p=0.2, and at least one unit of the layer below."""
    widths = [int(w) for w in rng.integers(2, 11, size=int(rng.integers(3, 7)))]
    masks = []
    for layer, width in enumerate(widths):
        cols = input_size + sum(widths[:layer])
        previous = widths[layer - 1] if layer else input_size
        p = np.full(cols, 0.2)
        p[cols - previous :] = 0.7
        mask = rng.random((width, cols)) < p
        mask[np.arange(width), cols - previous + rng.integers(0, previous, width)] = True
        masks.append(mask)
    out = np.zeros(sum(widths), dtype=bool)
    out[-widths[-1] :] = True
    out |= rng.random(sum(widths)) < 0.1
    return LayeredStructure(input_size, tuple(widths), tuple(masks), out)


def synthetic(n: int, vocab: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(10, 31, (n,), generator=g)
    codes = torch.randint(0, vocab, (n, 30), generator=g)
    codes[torch.arange(30) >= lengths[:, None]] = 0
    labels = ((codes == 1).sum(1) % 2).long()  # parity of a symbol count
    return codes, lengths, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--structures", type=int, default=32)
    parser.add_argument("--sequences", type=int, default=2000)
    parser.add_argument("--cell", default="gru", choices=["tanh", "relu", "lstm", "gru"])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workload", choices=["synthetic", "reber"], default="synthetic")
    parser.add_argument("--population", type=int, default=25, help="structures per population (reber workload)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.workload == "reber":
        reber_workload(args)
        return
    rng = np.random.default_rng(args.seed)
    vocab, input_size = 12, 16
    structures = [random_structure(rng, input_size) for _ in range(args.structures)]
    codes, lengths, labels = synthetic(args.sequences, vocab, args.seed)
    budget = Budget(epochs=args.epochs)
    population = MaskedRecurrent(structures, args.cell, 2, vocab_size=vocab, seed=args.seed)
    singles = [population.select(k) for k in range(args.structures)]

    started = time.perf_counter()
    joint = fit_sequences(population, codes, lengths, labels, budget, seed=args.seed)
    t_joint = time.perf_counter() - started
    started = time.perf_counter()
    alone = [fit_sequences(m, codes, lengths, labels, budget, seed=args.seed).loss[0] for m in singles]
    t_alone = time.perf_counter() - started
    diff = float((joint.loss - torch.stack(alone)).abs().max())

    widths = [s.num_units for s in structures]
    print(f"{args.structures} {args.cell} structures ({min(widths)}-{max(widths)} units, "
          f"{min(s.num_layers for s in structures)}-{max(s.num_layers for s in structures)} layers), "
          f"{args.sequences} sequences of length 10-30, batch 32, {args.epochs} epoch(s), "
          f"{torch.get_num_threads()} thread(s)")
    print("| training | seconds | structures per minute |")
    print("|---|---:|---:|")
    print(f"| population (K={args.structures}) | {t_joint:.2f} | {args.structures * 60 / t_joint:.1f} |")
    print(f"| one at a time (K=1) | {t_alone:.2f} | {args.structures * 60 / t_alone:.1f} |")
    print(f"speedup {t_alone / t_joint:.1f}x; max |loss difference| {diff:.2e} (float32)")


def reber_workload(args: argparse.Namespace) -> None:
    """The reber-structure-prediction jobs: grouped populations against one structure at a time."""
    from netbonsai.data.reber import make_reber
    from netbonsai.experiments.reber import shape_groups, structure_population
    from netbonsai.priors import orient, sample_graphs, to_structure

    half = args.structures // 2
    graphs = sample_graphs("watts-strogatz", half, seed=args.seed) + sample_graphs(
        "barabasi-albert", args.structures - half, seed=args.seed + 1)
    structures = [to_structure(orient(g), 128) for g in graphs]
    data = make_reber(25_000, seed=args.seed)
    n = args.sequences
    train = (data.train_codes[:n], data.train_lengths[:n], data.train_labels[:n])
    budget = Budget(epochs=args.epochs)
    groups = shape_groups(structures, args.population)

    def model(indices: list[int]) -> MaskedRecurrent:
        return structure_population(args.cell, [structures[i] for i in indices], indices, 128, args.seed)

    started = time.perf_counter()
    joint = {}
    for group in groups:
        losses = fit_sequences(model(group), *train, budget, seed=args.seed).loss
        joint.update(zip(group, losses.tolist()))
    t_joint = time.perf_counter() - started
    started = time.perf_counter()
    alone = {i: float(fit_sequences(model([i]), *train, budget, seed=args.seed).loss[0]) for i in range(len(structures))}
    t_alone = time.perf_counter() - started
    diff = max(abs(joint[i] - alone[i]) for i in alone)
    units = [s.num_units for s in structures]
    print(f"{len(structures)} {args.cell} random-graph structures (WS + BA, {min(units)}-{max(units)} units, "
          f"{min(s.num_layers for s in structures)}-{max(s.num_layers for s in structures)} layers), {n} Reber "
          f"strings, batch 32, {args.epochs} epoch(s), populations of {args.population} grouped by shape, "
          f"{torch.get_num_threads()} thread(s)")
    print("| training | seconds | structures per minute |")
    print("|---|---:|---:|")
    print(f"| populations of {args.population} | {t_joint:.2f} | {len(structures) * 60 / t_joint:.1f} |")
    print(f"| one at a time (K=1) | {t_alone:.2f} | {len(structures) * 60 / t_alone:.1f} |")
    print(f"speedup {t_alone / t_joint:.1f}x; max |loss difference| {diff:.2e} (float32)")


if __name__ == "__main__":
    main()
