"""Batched vs one-at-a-time: the three candidate computations of one prune step and one grow step.

For each of N1 removal evaluations, N2 trial retrainings and N3 random neuron attempts this
times the batched computation netbonsai uses (one pass or one training over a population)
against the same work done one candidate at a time on copies of the network, checks that both
choose the same candidate, and prints a markdown table of times and speedups.

    python benchmarks/bench_steps.py --preset quick --repeats 5

Timings are medians over ``--repeats`` runs, measured side by side in one process.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import time

import torch

from netbonsai.data import load_task
from netbonsai.experiments.presets import task_settings
from netbonsai.grow.search import start_network
from netbonsai.grow.steps import addition_step, lowest_synapses, neuron_targets
from netbonsai.runtime import keep_freed_memory, resolve_device
from netbonsai.train import Budget, evaluate, fit

FIT_MODULE = importlib.import_module("netbonsai.train.fit")  # the name ``fit`` is the function
MEMBER_COMMIT = "member evaluation"  # L-BFGS computing only the variants that need it


def timed(func):
    synchronize()
    started = time.perf_counter()
    value = func()
    synchronize()
    return time.perf_counter() - started, value


def synchronize() -> None:
    """Wait for queued GPU work, so that a time covers the computation and not only its launch."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def removal_evaluations(net, x, y, n1):
    """N1 losses after removing each candidate: batched vs one copy at a time."""
    sources, targets = lowest_synapses(net, n1)

    def batched():
        return evaluate(net.expand(len(sources)).remove_synapses_(sources, targets), x, y)

    def one_at_a_time():
        losses = []
        for s, t in zip(sources, targets):
            copy = net.clone().remove_synapses_(s.view(1), t.view(1))
            losses.append(evaluate(copy, x, y)[0])
        return torch.stack(losses)

    return batched, one_at_a_time


def trial_retrainings(net, x, y, n1, n2, epochs, trainer, whole_population=False):
    """N2 brief retrainings of the best removals: one population training vs N2 trainings.

    ``whole_population`` times the batched training as it was before L-BFGS evaluated only the
    variants that need an evaluation: every line-search step computes the whole population.
    """
    sources, targets = lowest_synapses(net, n1)
    losses = evaluate(net.expand(len(sources)).remove_synapses_(sources, targets), x, y)
    keep = torch.argsort(losses, stable=True)[:n2]
    chosen_src, chosen_dst = sources[keep], targets[keep]

    def batched():
        population = net.expand(n2).remove_synapses_(chosen_src, chosen_dst)
        if not whole_population:
            return fit(population, x, y, Budget(epochs=epochs), trainer, seed=0).loss
        member_losses = FIT_MODULE._member_losses
        FIT_MODULE._member_losses = lambda *args: None
        try:
            return fit(population, x, y, Budget(epochs=epochs), trainer, seed=0).loss
        finally:
            FIT_MODULE._member_losses = member_losses

    def one_at_a_time():
        out = []
        for s, t in zip(chosen_src, chosen_dst):
            copy = net.clone().remove_synapses_(s.view(1), t.view(1))
            out.append(fit(copy, x, y, Budget(epochs=epochs), trainer, seed=0).loss[0])
        return torch.stack(out)

    return batched, one_at_a_time


def neuron_attempts(net, x, y, n3, activation):
    """N3 random initialisations of a new neuron: one pass over a population vs N3 passes."""

    def batched():
        generator = torch.Generator().manual_seed(123)
        return torch.tensor(addition_step(net, x, y, n3, activation, generator, 1.0, 0.1).attempt_losses)

    def one_at_a_time():
        # the same random numbers, drawn the same way, applied to one copy at a time
        generator = torch.Generator().manual_seed(123)
        position, targets = net.n_in, [t + 1 for t in neuron_targets(net)]
        grown = net.insert_neuron(position, range(net.n_in), neuron_targets(net), activation)
        w_in = (torch.rand(n3, net.n_in, generator=generator) * 2 - 1) * 1.0
        b = (torch.rand(n3, generator=generator) * 2 - 1) * 1.0
        w_out = (torch.rand(n3, len(targets), generator=generator) * 2 - 1) * 0.1
        losses = []
        for k in range(n3):
            copy = grown.clone()
            with torch.no_grad():
                copy.weight[0, : net.n_in, position] = w_in[k].to(copy.weight)
                copy.bias[0, position] = b[k].to(copy.weight)
                copy.weight[0, position, targets] = w_out[k].to(copy.weight)
            losses.append(evaluate(copy, x, y)[0])
        return torch.stack(losses)

    return batched, one_at_a_time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="quick", choices=["quick", "paper"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="auto", help="torch device: auto (a CUDA GPU when present), cpu, cuda")
    parser.add_argument("--warm-epochs", type=int, default=300, help="training of the start network")
    parser.add_argument("--train-samples", type=int, default=None, help="override the preset's training size")
    parser.add_argument("--attempt-samples", type=int, default=None, help="override the preset's N3 sample")
    parser.add_argument("--trial-samples", type=int, default=None,
                        help="override the preset's trial-retraining sample (0: the whole training split)")
    args = parser.parse_args()
    keep_freed_memory()  # the process setup every netbonsai command uses
    torch.set_num_threads(args.threads)
    settings = task_settings("brightness", args.preset)
    d, g = settings.data, settings.grow.with_overrides(attempt_samples=args.attempt_samples)
    if args.trial_samples is not None:
        g = g.with_overrides(trial_samples=args.trial_samples or None)
    device = resolve_device(args.device)
    data = load_task("brightness", None, d.val_fraction, d.split_seed, args.train_samples or d.max_train, d.max_val)
    data = data.to(device)
    net = start_network(data, g)
    fit(net, data.x_train, data.y_train, Budget(epochs=args.warm_epochs), g.trainer)
    x, y = data.x_train, data.y_train
    sample = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(1))[: g.attempt_samples]
    trial = slice(None)  # the whole training split, as the search retrains by default
    if g.trial_samples is not None and g.trial_samples < x.shape[0]:
        trial = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(2))[: g.trial_samples]
    cases = [
        (f"N1 = {g.n_candidates} removal evaluations", removal_evaluations(net, x, y, g.n_candidates)),
        (f"N2 = {g.n_trials} trial retrainings ({g.trial_epochs} {g.trainer.method} iterations, {x[trial].shape[0]} samples)",
         trial_retrainings(net, x[trial], y[trial], g.n_candidates, g.n_trials, g.trial_epochs, g.trainer)),
        (f"N2, each line-search step over the whole population (before {MEMBER_COMMIT})",
         trial_retrainings(net, x[trial], y[trial], g.n_candidates, g.n_trials, g.trial_epochs, g.trainer, True)),
        (f"N3 = {g.n_attempts} neuron attempts ({len(sample)} samples)",
         neuron_attempts(net, x[sample], y[sample], g.n_attempts, g.activation)),
    ]
    print(f"brightness, preset {args.preset}: {x.shape[0]} training samples, start network "
          f"{net.num_params()} params, device {device}, torch threads {args.threads}, median of {args.repeats}\n")
    print("| computation | batched (s) | one at a time (s) | speedup | same choice | max loss difference |")
    print("| --- | ---: | ---: | ---: | :---: | ---: |")
    for name, (batched, sequential) in cases:
        times_b, times_s = [], []
        for _ in range(args.repeats):
            tb, losses_b = timed(batched)
            ts, losses_s = timed(sequential)
            losses_b, losses_s = losses_b.cpu(), losses_s.cpu()
            times_b.append(tb)
            times_s.append(ts)
        same = int(torch.argmin(losses_b)) == int(torch.argmin(losses_s))
        diff = float((losses_b - losses_s).abs().max() / losses_s.abs().max())
        mb, ms = statistics.median(times_b), statistics.median(times_s)
        print(f"| {name} | {mb:.4f} | {ms:.4f} | {ms / mb:.1f}x | {'yes' if same else 'NO'} | {diff:.1e} (relative) |")


if __name__ == "__main__":
    main()
