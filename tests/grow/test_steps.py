"""The two moves of the search: batched synapse removal and batched neuron addition."""

from __future__ import annotations

import pytest
import torch

from netbonsai.nets import DagNet
from netbonsai.nets.normalization import standardize_for
from netbonsai.grow import addition_step, lowest_synapses, removal_scores, removal_step
from netbonsai.grow.steps import neuron_targets
from netbonsai.errors import InputError
from netbonsai.grow import GrowConfig
from netbonsai.train import Budget, TrainerConfig, evaluate, fit


def data(n: int = 600, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 4, generator=g) * 2 - 1
    y = torch.tanh(x[:, :1] - 0.5 * x[:, 1:2]) + 0.3 * x[:, 2:3] * x[:, 3:4]
    return x, y


def trained(seed: int = 0, hidden=(4, 3), epochs: int = 40) -> DagNet:
    x, y = data()
    net = DagNet.mlp([4, *hidden, 1], generator=torch.Generator().manual_seed(seed))
    standardize_for(net, x, y)
    fit(net, x, y, Budget(epochs=epochs), TrainerConfig(method="lbfgs"))
    return net


# ---------------------------------------------------------------------- removal scores
def known_net() -> DagNet:
    """A 2-2-1 MLP with hand-set weights: inputs 0, 1; hidden 2, 3; output 4."""
    net = DagNet.mlp([2, 2, 1])
    with torch.no_grad():
        w = net.weight[0]
        w[0, 2], w[1, 2] = 1.0, 0.125  # column 2: scores 1, 0.125
        w[0, 3], w[1, 3] = -0.5, 2.0  # column 3: scores 0.25, 1
        w[2, 4], w[3, 4] = 3.0, -0.375  # column 4: scores 1, 0.125
    return net


def test_removal_scores_are_normalised_magnitudes() -> None:
    scores = removal_scores(known_net())
    assert scores[0, 2] == 1.0 and scores[1, 2] == 0.125
    assert scores[0, 3] == 0.25 and scores[1, 3] == 1.0
    assert scores[2, 4] == 1.0 and scores[3, 4] == 0.125
    assert torch.isinf(scores[0, 1]) and torch.isinf(scores[4, 0]) and torch.isinf(scores[0, 4])


def test_lowest_synapses_picks_the_smallest_scores() -> None:
    net = known_net()
    sources, targets = lowest_synapses(net, 3)
    # the 0.125 tie is broken by node order: (1 -> 2) before (3 -> 4)
    assert list(zip(sources.tolist(), targets.tolist())) == [(1, 2), (3, 4), (0, 3)]
    sources, targets = lowest_synapses(net, 1)
    assert (sources.tolist(), targets.tolist()) == ([1], [2])
    # more than there are: all six live synapses, never a dead one
    sources, targets = lowest_synapses(net, 100)
    assert len(sources) == 6
    assert all(bool(net.mask[0, s, t]) for s, t in zip(sources.tolist(), targets.tolist()))
    # a removed synapse (even with a zero weight) is no candidate; its column renormalises
    net.remove_synapses_(torch.tensor([1]), torch.tensor([2]))
    sources, targets = lowest_synapses(net, 2)
    assert list(zip(sources.tolist(), targets.tolist())) == [(3, 4), (0, 3)]


# ---------------------------------------------------------------------- removal step
TRAINER = TrainerConfig(method="lbfgs")


def test_removal_step_removes_exactly_one_synapse() -> None:
    net = trained()
    x, y = data()
    before = net.num_params()
    result = removal_step(net, x, y, n_candidates=6, n_trials=3, trial_epochs=5, trainer=TRAINER, seed=11)
    assert result is not None
    source, target = result.synapse
    assert bool(net.mask[0, source, target])  # the input network is not modified
    assert not bool(result.net.mask[0, source, target])
    assert float(result.net.weight.detach()[0, source, target]) == 0.0
    assert int(result.net.mask.sum()) == int(net.mask.sum()) - 1
    assert result.net.num_params() <= before - 1
    assert result.net.population_size == 1 and result.net.n_nodes == net.n_nodes
    assert len(result.candidate_losses) == 6 and len(result.trial_losses) == 3
    assert result.train_loss == min(result.trial_losses)
    assert result.train_loss == pytest.approx(float(evaluate(result.net, x, y)[0]), rel=1e-5)
    # the removed synapse stays removed through further training
    fit(result.net, x, y, Budget(epochs=5), TRAINER)
    assert float(result.net.weight.detach()[0, source, target]) == 0.0


def test_removal_step_equals_one_candidate_at_a_time() -> None:
    net = trained(seed=2)
    x, y = data()
    n1, n2, epochs, seed = 6, 3, 5, 23
    result = removal_step(net, x, y, n1, n2, epochs, TRAINER, seed=seed)

    # the same work, one copy at a time
    sources, targets = lowest_synapses(net, n1)
    candidates = []
    for s, t in zip(sources.tolist(), targets.tolist()):
        copy = net.clone()
        copy.remove_synapses_(torch.tensor([s]), torch.tensor([t]))
        candidates.append((float(evaluate(copy, x, y)[0]), s, t, copy))
    torch.testing.assert_close(
        torch.tensor(result.candidate_losses), torch.tensor([c[0] for c in candidates]), rtol=1e-5, atol=0
    )
    best = sorted(range(n1), key=lambda i: candidates[i][0])[:n2]
    trials = []
    for i in best:
        loss, s, t, copy = candidates[i]
        trial_loss = float(fit(copy, x, y, Budget(epochs=epochs), TRAINER, seed=seed).loss[0])
        trials.append((trial_loss, s, t, copy))
    torch.testing.assert_close(
        torch.tensor(result.trial_losses), torch.tensor([t[0] for t in trials]), rtol=1e-4, atol=0
    )
    chosen = min(trials, key=lambda t: t[0])
    assert result.synapse == (chosen[1], chosen[2])
    assert result.train_loss == pytest.approx(chosen[0], rel=1e-4)
    torch.testing.assert_close(result.net.weight.detach(), chosen[3].weight.detach(), atol=1e-4, rtol=0)


def test_removal_step_without_retraining_and_on_an_empty_network() -> None:
    net = trained()
    x, y = data()
    result = removal_step(net, x, y, 5, 2, 0, TRAINER)
    assert result.train_loss == min(result.candidate_losses)
    assert torch.equal(result.net.weight.detach()[net.mask & result.net.mask], net.weight.detach()[net.mask & result.net.mask])
    empty = DagNet.mlp([4, 1])
    empty.remove_synapses_(torch.tensor([0]), torch.tensor([4]))
    for i in range(1, 4):
        empty.remove_synapses_(torch.tensor([i]), torch.tensor([4]))
    assert removal_step(empty, x, y, 5, 2, 3, TRAINER) is None


# ---------------------------------------------------------------------- addition step
def test_addition_step_adds_one_neuron_after_the_inputs() -> None:
    net = trained(hidden=(3, 2))  # inputs 0-3, hidden 4-6 and 7-8, output 9
    x, y = data()
    result = addition_step(net, x, y, 10, "tanh", torch.Generator().manual_seed(0), init_range_out=0.1)
    grown = result.net
    assert result.position == net.n_in == 4
    assert grown.n_nodes == net.n_nodes + 1 and grown.population_size == 1
    assert grown.roles[4] == "added" and grown.activations[4] == "tanh"
    assert grown.roles.count("added") == 1
    assert grown.mask[0, :4, 4].all()
    assert torch.nonzero(grown.mask[0, :, 4]).squeeze(1).tolist() == [0, 1, 2, 3]
    # it feeds every hidden and output neuron of the network
    assert torch.nonzero(grown.mask[0, 4]).squeeze(1).tolist() == list(range(5, 11))
    # the rest of the network is untouched
    old = [0, 1, 2, 3, *range(5, 11)]
    assert torch.equal(grown.mask[0][old][:, old], net.mask[0])
    assert torch.equal(grown.weight.detach()[0][old][:, old], net.weight.detach()[0])
    assert grown.num_params() == net.num_params() + 4 + 1 + 6
    assert len(result.attempt_losses) == 10
    assert result.attempt_loss == min(result.attempt_losses)
    assert result.attempt_loss == pytest.approx(float(evaluate(grown, x, y)[0]), rel=1e-5)

    # a second neuron: the first one (now at index 5) is fed only with feed_added=True
    again = addition_step(grown, x, y, 4, "tanh", torch.Generator().manual_seed(1))
    assert again.net.roles[4:6] == ("added", "added")
    assert not bool(again.net.mask[0, 4, 5])
    assert torch.nonzero(again.net.mask[0, 4]).squeeze(1).tolist() == list(range(6, 12))
    fed = addition_step(grown, x, y, 4, "tanh", torch.Generator().manual_seed(1), feed_added=True)
    assert bool(fed.net.mask[0, 4, 5])
    assert torch.nonzero(fed.net.mask[0, 4]).squeeze(1).tolist() == list(range(5, 12))
    assert neuron_targets(grown) == list(range(5, 11))
    assert neuron_targets(grown, feed_added=True) == list(range(4, 11))


def test_cascade_placement_adds_a_neuron_fed_by_every_neuron_before_the_outputs() -> None:
    net = trained(hidden=(3, 2))  # inputs 0-3, hidden 4-6 and 7-8, output 9
    x, y = data()
    result = addition_step(net, x, y, 10, "tanh", torch.Generator().manual_seed(0), init_range_out=0.1,
                           placement="cascade")
    grown = result.net
    assert result.position == 9 and grown.n_nodes == 11
    assert grown.roles[9] == "hidden" and grown.roles[10] == "output"
    # fed by every input and hidden neuron, feeding only the output
    assert torch.nonzero(grown.mask[0, :, 9]).squeeze(1).tolist() == list(range(9))
    assert torch.nonzero(grown.mask[0, 9]).squeeze(1).tolist() == [10]
    old = [*range(9), 10]
    assert torch.equal(grown.mask[0][old][:, old], net.mask[0])
    assert grown.num_params() == net.num_params() + 9 + 1 + 1
    assert result.attempt_loss == pytest.approx(float(evaluate(grown, x, y)[0]), rel=1e-5)
    # the next cascade neuron reads this one too: the network gets deeper
    again = addition_step(grown, x, y, 4, "tanh", torch.Generator().manual_seed(1), placement="cascade").net
    assert bool(again.mask[0, 9, 10]) and again.roles[9:11] == ("hidden", "hidden")
    with pytest.raises(InputError, match="placement"):
        addition_step(net, x, y, 4, "tanh", torch.Generator().manual_seed(1), placement="sideways")
    with pytest.raises(InputError, match="placement"):
        GrowConfig(placement="sideways")
    with pytest.raises(InputError, match="feed_added"):
        GrowConfig(placement="cascade", feed_added=True)


def test_addition_step_picks_the_best_attempt() -> None:
    net = trained(hidden=(3, 2))
    x, y = data(n=300, seed=5)
    n_attempts, r_in, r_out = 12, 1.0, 0.5
    result = addition_step(net, x, y, n_attempts, "tanh", torch.Generator().manual_seed(9), r_in, r_out)

    # rebuild each attempt alone from the same random stream and evaluate it separately
    g = torch.Generator().manual_seed(9)
    targets = neuron_targets(net)
    w_in = (torch.rand(n_attempts, net.n_in, generator=g) * 2 - 1) * r_in
    bias = (torch.rand(n_attempts, generator=g) * 2 - 1) * r_in
    w_out = (torch.rand(n_attempts, len(targets), generator=g) * 2 - 1) * r_out
    losses, nets = [], []
    for k in range(n_attempts):
        alone = net.insert_neuron(4, range(4), targets, "tanh")
        with torch.no_grad():
            alone.weight[0, :4, 4] = w_in[k]
            alone.bias[0, 4] = bias[k]
            alone.weight[0, 4, [t + 1 for t in targets]] = w_out[k]
        losses.append(float(evaluate(alone, x, y)[0]))
        nets.append(alone)
    torch.testing.assert_close(torch.tensor(result.attempt_losses), torch.tensor(losses), rtol=1e-5, atol=0)
    best = min(range(n_attempts), key=lambda k: losses[k])
    assert result.attempt_loss == pytest.approx(losses[best], rel=1e-5)
    torch.testing.assert_close(result.net.weight.detach(), nets[best].weight.detach(), atol=1e-6, rtol=0)
    torch.testing.assert_close(result.net.bias.detach(), nets[best].bias.detach(), atol=1e-6, rtol=0)
    # the attempts really differ
    assert max(losses) > 1.05 * min(losses)


def test_trial_retraining_on_a_subsample_compares_candidates_on_all_data() -> None:
    net = trained()
    x, y = data()
    result = removal_step(net, x, y, 6, 3, 5, TrainerConfig(method="lbfgs"), trial_data=(x[:150], y[:150]))
    assert result is not None
    assert result.net.num_params() == net.num_params() - 1
    # the reported losses are full-data losses of the retrained candidates
    assert result.train_loss == pytest.approx(float(evaluate(result.net, x, y)[0]), rel=1e-5)
    assert result.train_loss == pytest.approx(min(result.trial_losses))


def test_output_gradients_are_each_attempts_own_loss_gradient() -> None:
    from netbonsai.grow.steps import output_gradients

    net = trained(hidden=(3, 2))
    x, y = data(n=300, seed=3)
    targets = [t + 1 for t in neuron_targets(net)]
    grown = net.insert_neuron(4, range(4), neuron_targets(net), "tanh", role="added").expand(5)
    with torch.no_grad():
        grown.weight[:, :4, 4] = torch.randn(5, 4, generator=torch.Generator().manual_seed(2))
        grown.weight[:, 4, targets] = 0.3  # zeroed by output_gradients
    # chunks of 7 rows: accumulated over many chunks, the same as one pass
    grad = output_gradients(grown, 4, targets, x, y, chunk_rows=7 * 5 * grown.n_nodes)
    assert grad.shape == (5, len(targets))
    assert torch.all(grown.weight.detach()[:, 4, targets] == 0)
    for k in range(5):
        alone = grown.select(k)
        loss = ((alone(x) - y) ** 2).mean()
        (expected,) = torch.autograd.grad(loss, alone.weight)
        torch.testing.assert_close(grad[k], expected[0, 4, targets], rtol=1e-4, atol=1e-7)
    # the draws differ, and so do their gradients
    assert grad.abs().sum() > 0 and not torch.allclose(grad[0], grad[1])


def test_gradient_init_lowers_the_loss_and_is_reproducible() -> None:
    from netbonsai.grow.steps import GRADIENT_FINALISTS, GRADIENT_STEP_FACTORS

    net = trained(hidden=(3, 2))
    x, y = data()
    before = float(evaluate(net, x, y)[0])
    generator = torch.Generator().manual_seed(4)
    result = addition_step(net, x, y, 20, "tanh", generator, init="gradient")
    again = addition_step(net, x, y, 20, "tanh", torch.Generator().manual_seed(4), init="gradient")
    random_generator = torch.Generator().manual_seed(4)
    random = addition_step(net, x, y, 20, "tanh", random_generator, init_range_out=0.1)
    # FINALISTS x FACTORS line-search variants, the best kept; its loss is the network's loss
    losses = torch.tensor(result.attempt_losses).reshape(GRADIENT_FINALISTS, len(GRADIENT_STEP_FACTORS))
    assert result.attempt_loss == min(result.attempt_losses)
    assert result.attempt_loss == pytest.approx(float(evaluate(result.net, x, y)[0]), rel=1e-5)
    # every finalist's parabola step beats a quarter of it and twice it: t* is near each optimum
    best_factor = losses.argmin(dim=1)
    assert torch.all((best_factor > 0) & (best_factor < len(GRADIENT_STEP_FACTORS) - 1)), losses
    # a step along the negative gradient helps
    assert result.attempt_loss < before
    torch.testing.assert_close(result.net.weight.detach(), again.net.weight.detach(), atol=0, rtol=0)
    # the input weights and bias are one of the random draws, and the random stream moves on as
    # with init="random" (a search's later draws do not depend on the init)
    assert torch.equal(generator.get_state(), random_generator.get_state())
    g = torch.Generator().manual_seed(4)
    w_in = (torch.rand(20, net.n_in, generator=g) * 2 - 1)
    chosen = result.net.weight.detach()[0, : net.n_in, net.n_in]
    assert torch.isclose(w_in, chosen.unsqueeze(0), atol=1e-6).all(dim=1).any()
    with pytest.raises(InputError, match="neuron init"):
        addition_step(net, x, y, 4, "tanh", torch.Generator().manual_seed(1), init="zeros")
    with pytest.raises(InputError, match="neuron_init"):
        GrowConfig(neuron_init="zeros")


def test_neuron_removal_step_equals_removing_each_neuron_alone() -> None:
    from netbonsai.grow.steps import neuron_removal_step

    net = trained(hidden=(3, 2))  # hidden neurons 4-8
    x, y = data()
    trainer = TrainerConfig(method="lbfgs")
    result = neuron_removal_step(net, x, y, n_trials=2, trial_epochs=0, trainer=trainer)
    losses = []
    for neuron in range(4, 9):
        alone = net.clone()
        with torch.no_grad():
            # its mean contribution moves into its consumers' biases
            mean = float(net.node_values(x)[0, :, neuron].mean())
            alone.bias[0] += mean * net.weight.detach()[0, neuron] * net.mask[0, neuron]
            alone.mask[0, neuron, :] = False
            alone.mask[0, :, neuron] = False
            alone.apply_mask_()
            alone.bias[0, neuron] = 0.0
        losses.append(float(evaluate(alone, x, y)[0]))
    torch.testing.assert_close(torch.tensor(result.candidate_losses), torch.tensor(losses), rtol=1e-5, atol=0)
    best = 4 + min(range(5), key=lambda k: losses[k])
    assert result.neuron == best and result.train_loss == pytest.approx(min(losses), rel=1e-5)
    removed = result.net.compact()
    # the neuron and every synapse and bias it had are gone
    lost = (net.mask[0, best].sum() + net.mask[0, :, best].sum() + 1).item()
    assert removed.num_params() <= net.num_params() - lost
    assert removed.n_hidden <= net.n_hidden - 1
    torch.testing.assert_close(evaluate(removed, x, y), evaluate(result.net, x, y), rtol=1e-5, atol=1e-7)

    # with retraining: the N2 best are retrained in one population, the best of those returned
    retrained = neuron_removal_step(net, x, y, n_trials=2, trial_epochs=5, trainer=trainer, seed=1)
    assert len(retrained.trial_losses) == 2
    assert retrained.train_loss == min(retrained.trial_losses) < sorted(losses)[1] * 1.5
    plain = DagNet.mlp([4, 1])  # no hidden neuron: nothing to remove
    assert neuron_removal_step(plain, x, y, 2, 0, trainer) is None
