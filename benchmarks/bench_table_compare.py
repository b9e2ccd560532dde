"""A 1,000-row, 8-feature regression table through ``netbonsai compare`` and ``GrowRegressor``.

Writes a CSV of Friedman's function #1 (``make_friedman1``: 5 informative and 3 noise features,
noise 1.0, ``random_state`` 0), then measures

- the wall time of ``netbonsai compare --data FILE --target y --preset quick --methods
  grow,magnitude`` (goal: within 5 minutes on 2 cores) and, per method, whether its
  lowest-validation-loss network is at least as accurate (validation loss) as the best dense
  network of the sweep with no more parameters; test RMSE of each, reported at the end;
- the wall time of ``GrowRegressor(preset="quick").fit`` on a 75/25 split (goal: within 60 s)
  and its test R^2.

    python benchmarks/bench_table_compare.py [--out DIR]     # about 3-5 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import make_friedman1
from sklearn.model_selection import train_test_split


def write_table(path: Path) -> Path:
    x, y = make_friedman1(n_samples=1000, n_features=8, noise=1.0, random_state=0)
    header = ",".join([f"x{i}" for i in range(8)] + ["y"])
    np.savetxt(path, np.column_stack([x, y]), delimiter=",", header=header, comments="", fmt="%.6f")
    return path


def best_dense_within(dense: list[dict], params: int) -> dict | None:
    within = [d for d in dense if d["params"] <= params]
    return min(within, key=lambda d: d["val_loss"]) if within else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="bench_table_"))
    root.mkdir(parents=True, exist_ok=True)
    table = write_table(root / "friedman1.csv")
    run = root / "compare"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "netbonsai", "compare", "--data", str(table), "--target", "y",
                    "--preset", "quick", "--methods", "grow,magnitude", "--out", str(run), "--quiet"], check=True)
    wall = time.perf_counter() - started
    comparison = json.loads((run / "comparison.json").read_text())
    print(f"compare --preset quick --methods grow,magnitude: {wall:.1f} s (goal 300 s)")
    print("| method | params | val loss | best dense within its params (params, val loss) | as accurate | test RMSE |")
    print("| --- | ---: | ---: | --- | --- | ---: |")
    for name, figures in comparison["methods"].items():
        best = min(figures["front"], key=lambda p: p["val_loss"])
        dense = best_dense_within(comparison["dense"], best["params"])
        dense_text = f"{dense['params']}, {dense['val_loss']:.4f}" if dense else "none that small"
        ok = dense is None or best["val_loss"] <= dense["val_loss"]
        print(f"| {name} | {best['params']} | {best['val_loss']:.4f} | {dense_text} | {'yes' if ok else 'no'} | "
              f"{figures['test']['rmse']:.4f} |")
    print(f"| dense (best validation) | {comparison['dense_test']['params']} | - | - | - | "
          f"{comparison['dense_test']['rmse']:.4f} |")

    from netbonsai import GrowRegressor

    x, y = make_friedman1(n_samples=1000, n_features=8, noise=1.0, random_state=0)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.25, random_state=0)
    started = time.perf_counter()
    model = GrowRegressor(preset="quick").fit(xtr, ytr)
    seconds = time.perf_counter() - started
    print(f"GrowRegressor(preset='quick').fit: {seconds:.1f} s (goal 60 s), {model.n_params_} parameters, "
          f"l2 {model.l2_}, test R^2 {model.score(xte, yte):.4f}")


if __name__ == "__main__":
    main()
