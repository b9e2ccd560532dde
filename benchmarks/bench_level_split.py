"""DagNet's level blocks cut by ``split`` instead of slicing: before and after, side by side in one run.

``nets.dag_plan.run_levels`` multiplies, per level, the weight block of every earlier level that
feeds it. It used to take each block as a slice ``weight_t[:, rows, a:b]``; the backward of a
slice fills a zero gradient the size of the whole ``K x N x N`` weight tensor and autograd sums
these, one per block: for a padded population of sparse networks (30 random topologies, 89
blocks) that is most of a training step. It now cuts the weight into row blocks per level with
one ``split`` and each row block into the earlier levels' columns with another (the same views,
the same products), so the backward is a concatenation. Bias, probe and activation groups are
split the same way.

The old implementation is kept here (:func:`run_levels_slicing`, :func:`activate_level_slicing`)
and patched in for the ``slicing`` rows, so both run in the same process, alternating, on one
torch thread; median of ``--repeats``. Workloads:

- ``mlp K``: a dense 784-100-10 DagNet (MNIST-sized, random data), population K = 1 and 8;
- ``sparse K=50``: a 2-input, 30-hidden, 1-output sparse DAG (brightness-style), 50 variants
  that each lack a few of its synapses (like removal trials);
- ``genetic K=30``: 30 random topologies (64-10 digits, 10-40 hidden, density 0.1) padded into
  one population by ``search.dag_genotype.aligned_slots`` (what ``train_generation`` trains).

Per workload: ``fwd+bwd`` (``--steps`` forward and backward passes on a minibatch), ``fit``
(``fit`` with Adam for ``--fit-steps`` minibatches) and, for the first two, ``offset`` (the
same with ``prune.removal.train_population``, the ``offset`` path of ``run_levels``). Before
timing, each workload checks that both implementations give bitwise-identical outputs and
gradients (``torch.equal``) and identical trained weights.

    python benchmarks/bench_level_split.py [--repeats 5] [--steps 20] [--fit-steps 20]
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import time
from typing import Callable, Iterator

import torch

import netbonsai.nets.dag as dag_module
import netbonsai.nets.dag_plan as plan_module
import netbonsai.prune.removal as removal_module
from netbonsai.data.task import Split
from netbonsai.nets.activations import apply_activation
from netbonsai.nets.dag import DagNet, ForwardPlan
from netbonsai.prune.removal import train_population
from netbonsai.search.dag_genotype import _padded, aligned_slots, random_topology, to_dagnet
from netbonsai.train import Budget, TrainerConfig, fit


# ------------------------------------------------------------------ the old implementation (reference)
def run_levels_slicing(
    plan: ForwardPlan,
    weight_t: torch.Tensor,
    bias: torch.Tensor,
    blocks: list[torch.Tensor],
    probe: torch.Tensor | None = None,
    offset: int = 0,
) -> None:
    """``run_levels`` as it was: every block a slice of ``weight_t``."""
    k, batch = blocks[0].shape[0], blocks[0].shape[-1]
    for (start, end, groups), sources in zip(plan.levels, plan.sources):
        rows = slice(start - offset, end - offset)
        pre = bias[:, rows, None]
        if not sources:  # nodes without live inputs: constant at their bias
            pre = pre.expand(k, end - start, batch).contiguous()
        for index in sources:
            src_start, src_end = plan.bounds[index]
            pre = torch.baddbmm(pre, weight_t[:, rows, src_start:src_end], blocks[index])
        if probe is not None:
            pre = pre + probe[:, start:end]
        blocks.append(activate_level_slicing(groups, pre, start))


def activate_level_slicing(groups: tuple[tuple[str, int, int], ...], pre: torch.Tensor, start: int) -> torch.Tensor:
    """``activate_level`` as it was: every activation group a slice of ``pre``."""
    if len(groups) == 1:
        return apply_activation(groups[0][0], pre)
    return torch.cat([apply_activation(a, pre[:, s - start : e - start]) for a, s, e in groups], dim=1)


@contextlib.contextmanager
def slicing() -> Iterator[None]:
    """Run DagNet and ``train_population`` with the old (slicing) ``run_levels``."""
    saved = dag_module.run_levels, removal_module.run_levels, plan_module.run_levels
    dag_module.run_levels = removal_module.run_levels = plan_module.run_levels = run_levels_slicing
    try:
        yield
    finally:
        dag_module.run_levels, removal_module.run_levels, plan_module.run_levels = saved


IMPLEMENTATIONS: dict[str, Callable[[], contextlib.AbstractContextManager]] = {
    "slicing": slicing,
    "split": contextlib.nullcontext,
}


# ------------------------------------------------------------------ workloads
def mlp_net(k: int) -> tuple[DagNet, Split, str]:
    g = torch.Generator().manual_seed(0)
    net = DagNet.mlp([784, 100, 10], "tanh", population=k, generator=g)
    x = torch.rand(2048, 784, generator=g)
    y = torch.randint(0, 10, (2048,), generator=g)
    return net, Split(x, y), "cross_entropy"


def sparse_net(k: int = 50, n_in: int = 2, hidden: int = 30, density: float = 0.25) -> tuple[DagNet, Split, str]:
    """A random sparse DAG (every hidden node fed and feeding), ``k`` variants each without a few synapses."""
    g = torch.Generator().manual_seed(1)
    n = n_in + hidden + 1
    allowed = torch.ones(n, n, dtype=torch.bool).triu(1)
    allowed[:, :n_in] = False
    mask = allowed & (torch.rand(n, n, generator=g) < density)
    for j in range(n_in, n):  # a source for every non-input node, a target for every hidden node
        mask[int(torch.randint(0, min(j, n - 1), (1,), generator=g)), j] = True
    for i in range(n_in, n - 1):
        mask[i, int(torch.randint(i + 1, n, (1,), generator=g))] = True
    masks = mask.expand(k, n, n).clone()
    live = mask.nonzero()
    for v in range(1, k):  # removal-trial-like variants: 1-4 synapses gone
        drop = live[torch.randperm(len(live), generator=g)[: 1 + v % 4]]
        masks[v, drop[:, 0], drop[:, 1]] = False
    weight = (torch.rand(k, n, n, generator=g) * 2 - 1) * masks
    bias = torch.rand(k, n, generator=g) * 0.2 - 0.1
    activations = ["identity"] * n_in + ["tanh"] * hidden + ["identity"]
    net = DagNet(n_in, 1, weight, masks, bias, activations)
    x = torch.rand(4096, n_in, generator=g) * 0.2 - 0.1
    y = (x[:, :1] * 0.7 - x[:, 1:] * 0.3 + 0.05 * torch.sin(20 * x[:, :1]))
    return net, Split(x, y), "mse"


def genetic_net(k: int = 30) -> tuple[DagNet, Split, str]:
    """``k`` random digits topologies laid out as ``train_generation(together=True)`` lays them out."""
    rng = random.Random(0)
    generation = [random_topology(rng, 64, 10, hidden=(10, 40), density=0.1) for _ in range(k)]
    n_nodes, slots = aligned_slots(generation)
    nets = [to_dagnet(t, i) for i, t in enumerate(generation)]
    padded = [_padded(net, torch.tensor(s), n_nodes, "tanh") for net, s in zip(nets, slots)]
    net = DagNet.stack(padded)
    try:
        from sklearn.datasets import load_digits

        xd, yd = load_digits(return_X_y=True)
        x, y = torch.as_tensor(xd / 16.0, dtype=torch.float32), torch.as_tensor(yd, dtype=torch.long)
    except ImportError:  # the same shapes, random values
        g = torch.Generator().manual_seed(2)
        x, y = torch.rand(1797, 64, generator=g), torch.randint(0, 10, (1797,), generator=g)
    return net, Split(x, y), "cross_entropy"


def _loss(out: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """Summed over variants of each variant's mean loss; ``out`` is ``(K, B, n_out)``."""
    if loss == "cross_entropy":
        return torch.nn.functional.cross_entropy(out.transpose(1, 2), y.expand(out.shape[0], -1))
    return (out - y).pow(2).mean()


def _grads(net: DagNet, x: torch.Tensor, y: torch.Tensor, loss: str, offset: bool):
    """Output and gradients of one forward and backward pass (``offset``: through ``train_population``'s view)."""
    model = removal_module._TargetColumns(net.clone()) if offset else net.clone()
    out = model.population(x)
    _loss(out, y, loss).backward()
    return [out.detach(), model.weight.grad, model.bias.grad]


def _steps(net: DagNet, x: torch.Tensor, y: torch.Tensor, loss: str, steps: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(steps):
            net.weight.grad = net.bias.grad = None
            _loss(net.population(x), y, loss).backward()
    return run


def _fit(net: DagNet, split: Split, loss: str, steps: int, offset: bool) -> Callable[[], torch.Tensor]:
    trainer = TrainerConfig(method="adam", loss=loss, lr=3e-3, batch_size=128)

    def run() -> torch.Tensor:
        model = net.clone()
        if offset:
            train_population(model, split.x, split.y, Budget(steps=steps), trainer, seed=0)
        else:
            fit(model, split, Budget(steps=steps), trainer, seed=0)
        return model.weight.detach()
    return run


def check_identical(name: str, net: DagNet, split: Split, loss: str, offset: bool, fit_steps: int) -> None:
    x, y = split.x[:128], split.y[:128]
    ways = ((False, True) if offset else (False,))
    for off in ways:
        results = {}
        for impl, ctx in IMPLEMENTATIONS.items():
            with ctx():
                results[impl] = _grads(net, x, y, loss, off) + [_fit(net, split, loss, min(fit_steps, 5), off)()]
        for a, b in zip(results["slicing"], results["split"]):
            if not torch.equal(a, b):
                raise SystemExit(f"{name}{' offset' if off else ''}: split and slicing differ (max {float((a - b).abs().max()):.3e})")


def time_median(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    times: dict[str, list[float]] = {impl: [] for impl in fns}
    for impl, fn in fns.items():  # warm-up
        with IMPLEMENTATIONS[impl]():
            fn()
    for _ in range(repeats):
        for impl, fn in fns.items():
            with IMPLEMENTATIONS[impl]():
                start = time.perf_counter()
                fn()
                times[impl].append(time.perf_counter() - start)
    return {impl: statistics.median(t) for impl, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20, help="forward+backward passes per timing")
    parser.add_argument("--fit-steps", type=int, default=20, help="Adam minibatches per fit")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    workloads = {
        "mlp 784-100-10 K=1": (lambda: mlp_net(1), True),
        "mlp 784-100-10 K=8": (lambda: mlp_net(8), True),
        "sparse 2-30-1 K=50": (sparse_net, True),
        "genetic K=30": (genetic_net, False),
    }
    print(f"{args.threads} thread(s), median of {args.repeats}; fwd+bwd: {args.steps} passes of {args.batch} rows; "
          f"fit: Adam, {args.fit_steps} minibatches of 128")
    header = f"{'workload':<22} {'what':<8} {'N':>4} {'levels':>6} {'blocks':>6} {'slicing s':>10} {'split s':>9} {'ratio':>6}"
    print(header)
    for name, (make, offset) in workloads.items():
        net, split, loss = make()
        plan = net.plan()
        n_blocks = sum(len(s) for s in plan.sources)
        check_identical(name, net, split, loss, offset, args.fit_steps)
        x, y = split.x[: args.batch], split.y[: args.batch]
        tasks: dict[str, dict[str, Callable[[], object]]] = {}
        step_net = net.clone()
        tasks["fwd+bwd"] = {impl: _steps(step_net, x, y, loss, args.steps) for impl in IMPLEMENTATIONS}
        tasks["fit"] = {impl: _fit(net, split, loss, args.fit_steps, False) for impl in IMPLEMENTATIONS}
        if offset:
            tasks["offset"] = {impl: _fit(net, split, loss, args.fit_steps, True) for impl in IMPLEMENTATIONS}
        for what, fns in tasks.items():
            median = time_median(fns, args.repeats)
            print(f"{name:<22} {what:<8} {net.n_nodes:>4} {len(plan.levels):>6} {n_blocks:>6} "
                  f"{median['slicing']:>10.3f} {median['split']:>9.3f} {median['slicing'] / median['split']:>5.2f}x",
                  flush=True)
    print("outputs, gradients and trained weights: bitwise identical (torch.equal) in every workload")


if __name__ == "__main__":
    main()
