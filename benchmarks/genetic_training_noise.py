"""How much a genotype's validation accuracy moves between trainings, in a finished genetic-nas run.

Takes three genotypes of the run's meta-dataset (the best, the upper quartile and the median by
recorded validation accuracy), trains each again from ``--seeds`` other initial weights with the
run's preset (``train_job``: same data split, epochs and optimiser) and prints the recorded and
the retrained accuracies with their population standard deviation. A search's best is the
luckiest of its trainings: this shows by how much.

Usage::

    python benchmarks/genetic_training_noise.py runs/gnas-quick [--data DIR] [--preset quick] [--seeds 11 12 13]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from netbonsai.experiments.genetic_nas import data_spec, genetic_nas_settings, train_job


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished genetic-nas run folder (meta_dataset.jsonl)")
    parser.add_argument("--data", default=None, help="the IDX folder the run used (--data), if any")
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--run-seed", type=int, default=0, help="the run's --seed (its data split)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[11, 12, 13], help="initial weights to retrain from")
    args = parser.parse_args()
    torch.set_num_threads(1)
    settings = genetic_nas_settings(args.preset)
    spec = data_spec(args.data, settings, args.run_seed)
    records: dict[str, dict] = {}
    for line in (args.run / "meta_dataset.jsonl").read_text().splitlines():
        record = json.loads(line)
        records.setdefault(record["key"], record)
    ranked = sorted(records.values(), key=lambda r: -r["accuracy"])
    print("| recorded validation accuracy | retrained | std (points) |")
    print("| ---: | --- | ---: |")
    for record in (ranked[0], ranked[len(ranked) // 4], ranked[len(ranked) // 2]):
        accuracies = [train_job(record["genotype"], spec, settings, seed)["fitness"] for seed in args.seeds]
        retrained = ", ".join(f"{a:.2%}" for a in accuracies)
        print(f"| {record['accuracy']:.2%} | {retrained} | {100 * statistics.pstdev(accuracies):.2f} |", flush=True)


if __name__ == "__main__":
    main()
