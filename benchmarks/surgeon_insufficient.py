"""The Surgeon from the insufficient MNIST starts with more data and epochs than the quick preset.

``reproduce surgeon-mnist --preset quick`` trains on 20,000 images for 20 epochs; this runs the
same jobs (:func:`netbonsai.experiments.surgeon_mnist.run_job`: the start alone, and per rule set
the Surgeon and its final shape from scratch) for the insufficient starts only, on all 50,000
training images (10,000 held out for validation, as every preset) and ``--epochs`` epochs
(a fifth first, then four cycles), one process per start. Prints one row per run and writes the
records to ``--out`` (JSON). Usage::

    python benchmarks/surgeon_insufficient.py --data /work/shared/data/mnist [--epochs 40]
        [--optimizer adam] [--out surgeon_insufficient.json]
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

import torch

from netbonsai.experiments.surgeon_mnist import run_job, surgeon_mnist_settings


def _job(args: tuple) -> list[dict]:
    torch.set_num_threads(1)
    return run_job(*args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--optimizer", default="adam", choices=("adam", "sgd"))
    parser.add_argument("--out", default="surgeon_insufficient.json")
    args = parser.parse_args()
    cycle = args.epochs // 5
    settings = replace(surgeon_mnist_settings("quick"), max_train=None, first_epochs=cycle, cycle_epochs=cycle,
                       total_epochs=5 * cycle, starts=((10, 10, 10, 10), (4,)), optimizers=(args.optimizer,))
    started = time.perf_counter()
    jobs = [(args.data, settings, hidden, args.optimizer, 0) for hidden in settings.starts]
    with ProcessPoolExecutor(max_workers=len(jobs)) as pool:
        records = [r for done in pool.map(_job, jobs) for r in done]
    for r in records:
        r["surgeon"].pop("net", None)
        print(f"{r['start']:>20} {r['rules']:>9}: surgeon {r['surgeon']['test_accuracy']:.2%} "
              f"({r['surgeon']['params']} params, widths {r['surgeon']['widths']}), alone "
              f"{r['same_start']['test_accuracy']:.2%}, final shape from scratch "
              f"{r['final_shape_scratch']['test_accuracy']:.2%}")
    print(f"wall {time.perf_counter() - started:.0f} s")
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(records, handle, indent=1)


if __name__ == "__main__":
    main()
