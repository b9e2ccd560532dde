"""The CPU runtime tweaks, before and after: tanh via sigmoid, and an allocator that keeps memory.

Runs one workload in a fresh subprocess per variant (the allocator setting is process-wide and
cannot be undone), side by side in one run:

- ``search``: a short quick-preset grow-and-prune search on the camera brightness task
  (``max_cycles`` neurons; the start network's training included);
- ``polish``: one population of 12 brightness networks trained together (full-batch L-BFGS on
  the quick preset's 60,000 training pixels), as ``compare`` polishes its front.

Variants: ``before`` (torch.tanh, the system allocator's defaults), ``tanh`` (only the sigmoid
tanh), ``allocator`` (only :func:`netbonsai.runtime.keep_freed_memory`), ``after`` (both, what the
CLI does). Also checks that ``before`` and ``after`` searches make the same decisions.

    python benchmarks/bench_runtime.py --cycles 2 --polish-epochs 60
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

VARIANTS = {"before": (False, False), "tanh": (True, False), "allocator": (False, True), "after": (True, True)}


def workload(fast_tanh: bool, allocator: bool, cycles: int, polish_epochs: int) -> dict:
    """Time the two workloads in this process with the given settings."""
    import torch

    from netbonsai.data.tasks import load_task
    from netbonsai.experiments.presets import task_settings
    from netbonsai.grow.search import grow, start_network
    from netbonsai.nets import activations
    from netbonsai.runtime import keep_freed_memory
    from netbonsai.train import Budget
    from netbonsai.train.together import fit_together

    if allocator:
        assert keep_freed_memory(), "the allocator setting could not be applied here"
    if not fast_tanh:
        activations.ACTIVATIONS["tanh"] = torch.tanh
    torch.set_num_threads(1)
    settings = task_settings("brightness", "quick")
    data = load_task("brightness", max_train=settings.data.max_train)
    started = time.perf_counter()
    result = grow(data, settings.grow.with_overrides(max_cycles=cycles))
    search = time.perf_counter() - started
    nets = [start_network(data, settings.grow.with_overrides(seed=s)) for s in range(12)]
    started = time.perf_counter()
    fit_together(nets, data.x_train, data.y_train, Budget(epochs=polish_epochs), settings.grow.trainer, seed=0)
    polish = time.perf_counter() - started
    return {
        "search": search, "polish": polish, "events": [(e["event"], e["params"]) for e in result.events],
        "final_train_loss": result.events[-1]["train_loss"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=2, help="neurons the search adds")
    parser.add_argument("--polish-epochs", type=int, default=60)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(workload(*VARIANTS[args.child], args.cycles, args.polish_epochs)))
        return
    results = {}
    for name in args.variants:
        env = dict(os.environ, NETBONSAI_SYSTEM_MALLOC="0")
        out = subprocess.run(
            [sys.executable, __file__, "--child", name, "--cycles", str(args.cycles),
             "--polish-epochs", str(args.polish_epochs)], capture_output=True, text=True, env=env, check=True)
        results[name] = json.loads(out.stdout.strip().splitlines()[-1])
    base = results.get("before")
    print(f"brightness, quick preset data (60,000 training pixels), one torch thread; search: {args.cycles} "
          f"neurons added; polish: 12 networks, {args.polish_epochs} L-BFGS iterations")
    print("| variant | search (s) | vs before | polish (s) | vs before |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, r in results.items():
        ratio = (lambda key: f"{base[key] / r[key]:.2f}x" if base else "-")
        print(f"| {name} | {r['search']:.1f} | {ratio('search')} | {r['polish']:.1f} | {ratio('polish')} |")
    if base and "after" in results:
        same = base["events"] == results["after"]["events"]
        print(f"before/after searches: same events {same}; final train loss "
              f"{base['final_train_loss']:.4f} / {results['after']['final_train_loss']:.4f}")


if __name__ == "__main__":
    main()
