"""The two moves of paper 000: removing one synapse and adding one neuron, each batched.

Synapse removal: score every live synapse i -> j by |w_ij| / max_k |w_kj|, evaluate the loss
without each of the N1 lowest (one forward pass over a population of N1 masks), retrain the N2
best briefly (one training of a population of N2), and return the best retrained candidate.

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
from ..train import Budget, TrainerConfig, evaluate, fit
from ..train.losses import get_loss, population_outputs
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
    candidates = net.expand(sources.numel()).remove_synapses_(sources, targets)
    candidate_losses = evaluate(candidates, x, y, trainer.loss)  # N1 removals in one pass
    keep = torch.argsort(candidate_losses, stable=True)[: min(n_trials, sources.numel())]
    trials = candidates.select(keep)
    trial_losses = _retrain_trials(trials, x, y, trial_epochs, trainer, seed, trial_data, candidate_losses[keep])
    best = int(torch.argmin(trial_losses))
    chosen = int(keep[best])
    return RemovalResult(
        net=trials.select(best),
        train_loss=float(trial_losses[best]),
        synapse=(int(sources[chosen]), int(targets[chosen])),
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
    """Remove one whole hidden neuron (all its synapses and its bias): every hidden neuron's
    removal is evaluated in one batched pass, the ``n_trials`` best are retrained briefly in one
    batched training, the best is returned; None for a network without hidden neurons.

    A neuron costs its in-degree + out-degree + 1 parameters, so one accepted neuron removal
    saves what many synapse steps would, at the price of one step's evaluations.
    """
    hidden = torch.arange(net.n_in, net.n_nodes - net.n_out)
    if hidden.numel() == 0:
        return None
    candidates = net.expand(hidden.numel())
    rows = torch.arange(hidden.numel())
    with torch.no_grad():
        for tensor, value in ((candidates.mask, False), (candidates.weight, 0.0)):
            tensor[rows, hidden, :] = value
            tensor[rows, :, hidden] = value
        candidates.bias[rows, hidden] = 0.0
    candidate_losses = evaluate(candidates, x, y, trainer.loss)
    keep = torch.argsort(candidate_losses, stable=True)[: min(n_trials, hidden.numel())]
    trials = candidates.select(keep)
    trial_losses = _retrain_trials(trials, x, y, trial_epochs, trainer, seed, trial_data, candidate_losses[keep])
    best = int(torch.argmin(trial_losses))
    return NeuronRemovalResult(
        net=trials.select(best),
        train_loss=float(trial_losses[best]),
        neuron=int(hidden[keep[best]]),
        candidate_losses=candidate_losses.tolist(),
        trial_losses=trial_losses.tolist(),
    )


def _retrain_trials(
    trials: DagNet,
    x: torch.Tensor,
    y: torch.Tensor,
    trial_epochs: int,
    trainer: TrainerConfig,
    seed: int,
    trial_data: tuple[torch.Tensor, torch.Tensor] | None,
    untrained_losses: torch.Tensor,
) -> torch.Tensor:
    """Retrain a population of removal candidates briefly (in place); their losses on ``(x, y)``."""
    if trial_epochs > 0 and trial_data is not None:
        fit(trials, trial_data[0], trial_data[1], Budget(epochs=trial_epochs), trainer, seed=seed)
        return evaluate(trials, x, y, trainer.loss)
    if trial_epochs > 0:
        return fit(trials, x, y, Budget(epochs=trial_epochs), trainer, seed=seed).loss
    return untrained_losses


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


# the line search of init="gradient": this many best-correlated draws, each tried at these norms
# of its output-weight vector (a geometric grid from well below to well above the random draw's
# typical norm); FINALISTS x STEPS variants cost one forward pass, as the N3 random attempts do
GRADIENT_FINALISTS = 10
GRADIENT_STEPS = tuple(0.01 * 2.0**i for i in range(10))


def output_gradients(
    attempts: DagNet, position: int, targets: list[int], x: torch.Tensor, y: torch.Tensor, loss: str = "mse",
    chunk_rows: int = 1 << 20,
) -> torch.Tensor:
    """``(K, T)`` gradient of each variant's loss on ``(x, y)`` with respect to the output
    weights ``position -> targets``, taken with those weights set to zero (they are zeroed in
    place): the correlation of the new neuron's activation with the error back-propagated to
    each target. One backward pass over the population, in sample chunks to bound memory."""
    with torch.no_grad():
        attempts.weight[:, position, targets] = 0.0
    loss_fn = get_loss(loss)
    k, width = attempts.population_size, max(attempts.n_nodes, 1)
    step = max(1, chunk_rows // (k * width))
    n = x.shape[0]
    total = attempts.weight.new_zeros(k, len(targets))
    with torch.enable_grad():
        for start in range(0, n, step):
            xb, yb = x[start : start + step], y[start : start + step]
            part = loss_fn(population_outputs(attempts, xb), yb).sum() * (xb.shape[0] / n)
            (grad,) = torch.autograd.grad(part, attempts.weight)
            total += grad[:, position, targets]
    return total


def _gradient_line_search(
    attempts: DagNet, position: int, targets: list[int], x: torch.Tensor, y: torch.Tensor, loss: str
) -> DagNet:
    """The FINALISTS x STEPS variants of ``init="gradient"``: the draws whose output-weight
    gradient is largest, each with output weights ``-step * g / |g|``."""
    grad = output_gradients(attempts, position, targets, x, y, loss)
    norms = grad.norm(dim=1)
    finalists = torch.argsort(norms, descending=True, stable=True)[: min(GRADIENT_FINALISTS, norms.numel())]
    steps = torch.tensor(GRADIENT_STEPS, dtype=grad.dtype, device=grad.device)
    variants = attempts.select(finalists.repeat_interleave(steps.numel()))
    direction = -grad[finalists] / norms[finalists].clamp_min(torch.finfo(grad.dtype).tiny).unsqueeze(1)
    with torch.no_grad():
        out_weights = (direction.unsqueeze(1) * steps.view(1, -1, 1)).reshape(-1, len(targets))
        variants.weight[:, position, targets] = out_weights.to(variants.weight)
    return variants
