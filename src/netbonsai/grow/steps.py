"""The two moves of paper 000: removing one synapse and adding one neuron, each batched.

Synapse removal: score every live synapse i -> j by |w_ij| / max_k |w_kj|, evaluate the loss
without each of the N1 lowest (one forward pass over a population of N1 masks), retrain the N2
best briefly (one training of a population of N2), and return the best retrained candidate. The step is :func:`netbonsai.prune.removal.removal_trials` with
single-synapse windows, the same implementation loss-aware removal runs with larger ones.

Neuron addition: a neuron "in layer 1/2" reads every network input and feeds every neuron of the
starting network; N3 random weight sets from U[-1, 1] are scored in one forward pass over a
population of N3 and the best one is kept. With ``init="gradient"`` the N3 draws are ranked by
the gradient of the loss with respect to the new neuron's (zero) output weights instead, and the
output weights of the best few are set by a batched line search along that gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import InputError
from ..nets.dag import DagNet
from ..nets.synapses import lowest_synapses, removal_scores
from ..prune.removal import removal_trials, retrain_variants, variant_windows
from ..train import TrainerConfig, evaluate
from ..train.losses import get_loss, population_outputs, sample_chunks
from .config import NEURON_INITS, PLACEMENTS

__all__ = [
    "AdditionResult", "RemovalResult", "addition_step", "neuron_removal_step", "output_gradients", "lowest_synapses", "neuron_targets",
    "removal_scores", "removal_step",
]


@dataclass
class RemovalResult:
    """The best retrained candidate of one removal step, and what the step looked at."""

    net: DagNet  # population 1, retrained, not compacted
    train_loss: float  # after trial retraining
    synapse: tuple[int, int]  # (source, target) node indices in the step's input network
    candidate_losses: list[float]  # loss right after each of the N1 removals (no retraining)
    trial_losses: list[float]  # loss of each of the N2 candidates after retraining


def removal_step(
    net: DagNet,
    x: torch.Tensor,
    y: torch.Tensor,
    n_candidates: int,
    n_trials: int,
    trial_epochs: int,
    trainer: TrainerConfig,
    seed: int = 0,
    trial_data: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> RemovalResult | None:
    """One batched synapse-removal step on a population-1 network; None if nothing is left.

    ``trial_data`` (a subsample of the training set) makes the brief trial retraining cheaper;
    the retrained candidates are then compared on the full ``(x, y)`` in one batched pass.
    """
    sources, targets = lowest_synapses(net, n_candidates)
    if sources.numel() == 0:
        return None
    # the shared removal trial (prune/removal.py), with the plain kernels the seeded results used
    trial = removal_trials(net, sources, targets, variant_windows(1, n_trials, "shifts"), x, y, trainer,
                           trial_epochs, seed, trial_data=trial_data, fast=False)
    keep = torch.cat(trial.chosen)  # the n_trials cheapest single removals, cheapest first
    trial_losses = _trial_losses(trial.trials, trial.losses, trial.costs[keep], x, y, trainer, trial_epochs)
    best = int(torch.argmin(trial_losses))
    return RemovalResult(
        net=trial.trials.select(best),
        train_loss=float(trial_losses[best]),
        synapse=(int(sources[keep[best]]), int(targets[keep[best]])),
        candidate_losses=trial.costs.tolist(),
        trial_losses=trial_losses.tolist(),
    )


def _trial_losses(trials: DagNet, trained: torch.Tensor | None, untrained: torch.Tensor, x: torch.Tensor,
                  y: torch.Tensor, trainer: TrainerConfig, trial_epochs: int) -> torch.Tensor:
    """The losses on ``(x, y)`` the step compares: the retraining's own (when it saw ``(x, y)``),
    a fresh evaluation (when it saw the trial sample), or the losses before retraining (none)."""
    if trained is not None:
        return trained
    if trial_epochs > 0:
        return evaluate(trials, x, y, trainer.loss)
    return untrained


@dataclass
class _Best:
    """The outcome shared by both removal steps: the winner and what led to it."""

    net: DagNet
    index: int  # the winner's position in the candidate population
    train_loss: float
    candidate_losses: list[float]
    trial_losses: list[float]


def _best_candidate(
    candidates: DagNet,
    x: torch.Tensor,
    y: torch.Tensor,
    n_trials: int,
    trial_epochs: int,
    trainer: TrainerConfig,
    seed: int,
    trial_data: tuple[torch.Tensor, torch.Tensor] | None,
) -> _Best:
    """Evaluate a population of removal candidates in one pass, retrain the ``n_trials`` best
    briefly in one batched training (on ``trial_data`` when given, then compared on ``(x, y)``),
    and return the best retrained one."""
    candidate_losses = evaluate(candidates, x, y, trainer.loss)  # every removal in one pass
    keep = torch.argsort(candidate_losses, stable=True)[: min(n_trials, candidates.population_size)]
    trials = candidates.select(keep)
    trained = retrain_variants(trials, x, y, trainer, trial_epochs, seed, trial_data, fast=False)
    trial_losses = _trial_losses(trials, trained, candidate_losses[keep], x, y, trainer, trial_epochs)
    best = int(torch.argmin(trial_losses))
    return _Best(
        net=trials.select(best),
        index=int(keep[best]),
        train_loss=float(trial_losses[best]),
        candidate_losses=candidate_losses.tolist(),
        trial_losses=trial_losses.tolist(),
    )


@dataclass
class NeuronRemovalResult:
    """The best retrained candidate of one neuron-removal step."""

    net: DagNet  # population 1, retrained, not compacted
    train_loss: float  # after trial retraining
    neuron: int  # node index in the step's input network
    candidate_losses: list[float]  # loss right after each hidden neuron's removal (no retraining)
    trial_losses: list[float]


def neuron_removal_step(
    net: DagNet,
    x: torch.Tensor,
    y: torch.Tensor,
    n_trials: int,
    trial_epochs: int,
    trainer: TrainerConfig,
    seed: int = 0,
    trial_data: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> NeuronRemovalResult | None:
    """Remove one whole hidden neuron (its synapses and its bias): every hidden neuron's removal
    is evaluated in one batched pass, the ``n_trials`` best are retrained briefly in one batched
    training, the best is returned; None for a network without hidden neurons.

    A removed neuron's mean activation on ``x`` times each outgoing weight is added to that
    consumer's bias (what :meth:`DagNet.compact` does for a constant neuron), so a candidate
    loses only the neuron's variation, not its average contribution. A neuron costs its
    in-degree + out-degree + 1 parameters, so one accepted removal saves what many synapse steps
    would, at the price of one step's evaluations.
    """
    hidden = torch.arange(net.n_in, net.n_nodes - net.n_out, device=net.weight.device)
    if hidden.numel() == 0:
        return None
    with torch.no_grad():
        mean_activation = net.node_values(x)[0].mean(dim=0)  # (N,), the values the weights act on
        candidates = net.expand(hidden.numel())
        rows = torch.arange(hidden.numel(), device=hidden.device)
        outgoing = candidates.weight[rows, hidden, :] * candidates.mask[rows, hidden, :]
        candidates.bias[rows, :] += mean_activation[hidden, None] * outgoing
        for tensor, value in ((candidates.mask, False), (candidates.weight, 0.0)):
            tensor[rows, hidden, :] = value
            tensor[rows, :, hidden] = value
        candidates.bias[rows, hidden] = 0.0
    best = _best_candidate(candidates, x, y, n_trials, trial_epochs, trainer, seed, trial_data)
    return NeuronRemovalResult(
        net=best.net,
        train_loss=best.train_loss,
        neuron=int(hidden[best.index]),
        candidate_losses=best.candidate_losses,
        trial_losses=best.trial_losses,
    )


@dataclass
class AdditionResult:
    """The network with its new neuron (best of N3 random initialisations, not yet trained)."""

    net: DagNet
    position: int  # index of the new neuron
    attempt_loss: float  # loss of the best attempt on the scoring sample
    attempt_losses: list[float]


def neuron_targets(net: DagNet, feed_added: bool = False) -> list[int]:
    """Nodes a new "layer 1/2" neuron feeds: the starting network's neurons (and added ones if asked)."""
    roles = ("hidden", "output", "added") if feed_added else ("hidden", "output")
    return [j for j, role in enumerate(net.roles) if role in roles]


def neuron_wiring(net: DagNet, placement: str = "half-layer", feed_added: bool = False) -> tuple[int, list[int], list[int]]:
    """Where a new neuron goes and how it is wired: ``(position, sources, targets)`` as node
    indices of ``net`` (see :data:`~netbonsai.grow.config.PLACEMENTS`)."""
    if placement == "half-layer":
        return net.n_in, list(range(net.n_in)), neuron_targets(net, feed_added)
    if placement == "cascade":
        position = net.n_nodes - net.n_out
        return position, list(range(position)), list(range(position, net.n_nodes))
    raise InputError(f"unknown placement {placement!r}; choose one of {', '.join(PLACEMENTS)}")


def addition_step(
    net: DagNet,
    x_sample: torch.Tensor,
    y_sample: torch.Tensor,
    n_attempts: int,
    activation: str,
    generator: torch.Generator,
    init_range: float = 1.0,
    init_range_out: float = 1.0,
    feed_added: bool = False,
    loss: str = "mse",
    placement: str = "half-layer",
    init: str = "random",
) -> AdditionResult:
    """Add one neuron (after the inputs, or with ``placement="cascade"`` before the outputs, fed
    by every neuron); try ``n_attempts`` random weight sets in one pass.

    Input weights and bias are drawn from U[-init_range, init_range], output weights from
    U[-init_range_out, init_range_out] (the paper draws all from U[-1, 1] in its raw units; on
    standardised units a smaller output range keeps an attempt from wiping out what the network
    has learned). ``init="gradient"`` keeps the draws' input weights and biases but chooses the
    neuron and its output weights by the loss gradient (see :data:`~netbonsai.grow.config.NEURON_INITS`);
    ``attempt_losses`` are then the losses of its line-search variants.
    """
    position, sources, targets = neuron_wiring(net, placement, feed_added)
    role = "added" if placement == "half-layer" else "hidden"
    grown = net.insert_neuron(position, sources, targets, activation, role=role)
    attempts = grown.expand(n_attempts)
    new_targets = [t + 1 for t in targets]  # indices after the insertion
    with torch.no_grad():
        shape_in = (n_attempts, len(sources))
        shape_out = (n_attempts, len(new_targets))
        def uniform(scale: float, *shape: int) -> torch.Tensor:
            return ((torch.rand(*shape, generator=generator) * 2 - 1) * scale).to(attempts.weight)

        attempts.weight[:, sources, position] = uniform(init_range, *shape_in)
        attempts.bias[:, position] = uniform(init_range, n_attempts)
        attempts.weight[:, position, new_targets] = uniform(init_range_out, *shape_out)
    if init == "gradient":
        attempts = _gradient_line_search(attempts, position, new_targets, x_sample, y_sample, loss)
    elif init != "random":
        raise InputError(f"unknown neuron init {init!r}; choose one of {', '.join(NEURON_INITS)}")
    losses = evaluate(attempts, x_sample, y_sample, loss)  # every attempt in one pass
    best = int(torch.argmin(losses))
    return AdditionResult(
        net=attempts.select(best),
        position=position,
        attempt_loss=float(losses[best]),
        attempt_losses=losses.tolist(),
    )


# init="gradient": this many draws with the largest gradient go on to the line search; each is
# probed at one output-weight norm, a parabola through the loss at 0 (with the known slope -|g|)
# and at the probe gives its own best norm t*, and t* times each factor is tried
GRADIENT_FINALISTS = 10
GRADIENT_PROBE = 0.05
GRADIENT_STEP_FACTORS = (0.25, 0.5, 1.0, 2.0)


def output_gradients(
    attempts: DagNet, position: int, targets: list[int], x: torch.Tensor, y: torch.Tensor, loss: str = "mse",
    chunk_rows: int = 1 << 20,
) -> torch.Tensor:
    """``(K, T)`` gradient of each variant's loss on ``(x, y)`` with respect to the output
    weights ``position -> targets``, taken with those weights set to zero (they are zeroed in
    place): the product of the new neuron's activation with the error back-propagated to
    each target. One backward pass over the population, in sample chunks to bound memory."""
    with torch.no_grad():
        attempts.weight[:, position, targets] = 0.0
    loss_fn = get_loss(loss)
    n = x.shape[0]
    total = attempts.weight.new_zeros(attempts.population_size, len(targets))
    with torch.enable_grad():
        for xb, yb in sample_chunks(attempts, x, y, chunk_rows):
            part = loss_fn(population_outputs(attempts, xb), yb).sum() * (xb.shape[0] / n)
            (grad,) = torch.autograd.grad(part, attempts.weight)
            total += grad[:, position, targets]
    return total


def _gradient_line_search(
    attempts: DagNet, position: int, targets: list[int], x: torch.Tensor, y: torch.Tensor, loss: str
) -> DagNet:
    """The variants of ``init="gradient"``: for each of the FINALISTS draws with the largest
    output-weight gradient ``g``, output weights ``-t * g / |g|`` at its own parabola step t*
    times each of GRADIENT_STEP_FACTORS (two batched passes: the probe, then the variants)."""
    grad = output_gradients(attempts, position, targets, x, y, loss)
    norms = grad.norm(dim=1)
    finalists = torch.argsort(norms, descending=True, stable=True)[: min(GRADIENT_FINALISTS, norms.numel())]
    slope = norms[finalists]  # the loss falls at rate |g| along -g / |g|
    direction = -grad[finalists] / slope.clamp_min(torch.finfo(grad.dtype).tiny).unsqueeze(1)

    def along(steps: torch.Tensor) -> DagNet:  # (F, S) norms -> F * S variants, finalist-major
        variants = attempts.select(finalists.repeat_interleave(steps.shape[1]))
        with torch.no_grad():
            out = (direction.unsqueeze(1) * steps.unsqueeze(2)).reshape(-1, len(targets))
            variants.weight[:, position, targets] = out.to(variants.weight)
        return variants

    base = float(evaluate(attempts.select(int(finalists[0])), x, y, loss)[0])  # output weights still zero
    probe = torch.full((finalists.numel(), 1), GRADIENT_PROBE, dtype=grad.dtype, device=grad.device)
    probed = evaluate(along(probe), x, y, loss).to(grad.dtype)
    curvature = (probed - base + slope * GRADIENT_PROBE) / GRADIENT_PROBE**2  # L(t) ~ base - |g| t + c t^2
    best = torch.where(curvature > 0, slope / (2 * curvature.clamp_min(torch.finfo(grad.dtype).tiny)),
                       torch.full_like(slope, 4 * GRADIENT_PROBE))  # not convex there: go further out
    factors = torch.tensor(GRADIENT_STEP_FACTORS, dtype=grad.dtype, device=grad.device)
    return along(best.unsqueeze(1) * factors)
