"""Peak memory and time of loading a 50,000-row CSV table (8 numeric + 2 text columns, a numeric
target) with :func:`netbonsai.data.table_task`.

    .venv/bin/python benchmarks/bench_table_memory.py [--rows 50000]

Prints the peak resident set size (``resource.getrusage``; Linux reports KiB) before and after
loading, and the seconds the load took. Not a test: run it by hand.
"""

from __future__ import annotations

import argparse
import csv
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # macOS: bytes, Linux: KiB


def write_table(path: Path, rows: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    numbers = rng.normal(size=(rows, 8)).round(5)
    cities = np.array([f"city{i}" for i in range(40)])[rng.integers(0, 40, rows)]
    grades = np.array(["low", "mid", "high"])[rng.integers(0, 3, rows)]
    target = (numbers @ rng.normal(size=8) + (grades == "high") * 2.0).round(5)
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow([f"n{j}" for j in range(8)] + ["city", "grade", "target"])
        for i in range(rows):
            writer.writerow([*numbers[i].tolist(), cities[i], grades[i], target[i]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    args = parser.parse_args()
    from netbonsai.data import table_task  # imported first so its cost is not counted as the load's

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "table.csv"
        write_table(path, args.rows)
        size = path.stat().st_size / 2**20
        before = peak_rss_mib()
        start = time.perf_counter()
        task = table_task(path, "target")
        seconds = time.perf_counter() - start
        after = peak_rss_mib()
    print(f"rows={args.rows} csv={size:.1f} MiB n_in={task.n_in} kind={task.kind} "
          f"train/val/test={len(task.train)}/{len(task.val)}/{len(task.test)}")
    print(f"peak RSS before load {before:.1f} MiB, after {after:.1f} MiB (+{after - before:.1f} MiB); "
          f"load {seconds:.2f} s")


if __name__ == "__main__":
    main()
