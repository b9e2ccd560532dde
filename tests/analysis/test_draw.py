"""What draw_network draws: the column of every neuron, arrows, and the per-level summary of big networks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from torch import nn

from netbonsai.analysis import draw as draw_module
from netbonsai.analysis.draw import draw_network, level_summary, network_layout, node_levels
from netbonsai.errors import InputError
from netbonsai.nets import DagNet, from_sequential

MLP_4661 = [0] * 4 + [1] * 6 + [2] * 6 + [3]


def _sequential(*sizes: int) -> nn.Sequential:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.Tanh()]
    return nn.Sequential(*layers[:-1])


def _captured(monkeypatch) -> list:
    """Replace the PNG writer by one that keeps the figure, to look at what was drawn."""
    figures = []

    def keep(fig, path, dpi=120):
        figures.append(fig)
        return path

    monkeypatch.setattr(draw_module, "save_png", keep)
    return figures


def _texts(fig) -> list[str]:
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    return texts + [fig.get_supxlabel(), fig.get_suptitle()]


def test_converted_mlp_keeps_each_layer_in_one_column():
    net = from_sequential(_sequential(4, 6, 6, 1))
    layout = network_layout(net)
    assert layout.columns.tolist() == MLP_4661
    assert layout.captions == ["inputs", "layer 1", "layer 2", "outputs"]
    assert layout.positions[:, 0].tolist() == MLP_4661
    # each column is centred, lower index on top
    assert layout.positions[4:10, 1].tolist() == [2.5, 1.5, 0.5, -0.5, -1.5, -2.5]
    assert not layout.summary and layout.n_synapses == 4 * 6 + 6 * 6 + 6


def test_added_neuron_feeding_part_of_a_layer_does_not_split_it():
    """The "1/2 layer" neuron feeds only two neurons of hidden layer 1: by longest path those would
    sit one level deeper than the other four; the drawing keeps the start network's layer together."""
    net = DagNet.mlp([4, 6, 6, 1], generator=torch.Generator().manual_seed(0))
    net = net.insert_neuron(4, range(4), [4, 5, 10], "tanh")  # two of layer 1, one of layer 2
    layout = network_layout(net)
    assert layout.captions == ["inputs", "1/2 layer", "layer 1", "layer 2", "outputs"]
    assert layout.columns.tolist() == [0] * 4 + [1] + [2] * 6 + [3] * 6 + [4]
    assert len(set(net.levels()[5:11].tolist())) == 2  # the plain levels do split it


def test_added_neurons_feeding_each_other_share_the_half_layer_column():
    net = DagNet.mlp([3, 4, 1])
    for _ in range(2):  # the second one feeds the first: a synapse within the column
        net = net.insert_neuron(3, range(3), range(3, net.n_nodes), "tanh")
    layout = network_layout(net)
    assert layout.columns.tolist() == [0] * 3 + [1, 1] + [2] * 4 + [3]
    assert level_summary(layout).links[(1, 1)] == 1


def test_neuron_without_inputs_sits_just_before_what_it_feeds():
    net = DagNet.mlp([2, 3, 3, 1])
    layer2 = 2 + 3  # first neuron of layer 2
    net.remove_synapses_(torch.tensor([2]), torch.tensor([layer2]))
    net.remove_synapses_(torch.tensor([3]), torch.tensor([layer2]))
    net.remove_synapses_(torch.tensor([4]), torch.tensor([layer2]))
    levels, half = node_levels(net.mask[0].numpy(), net.roles)
    assert not half.any()
    assert network_layout(net).columns.tolist() == [0, 0, 1, 1, 1, 2, 2, 2, 3]
    assert levels[layer2] == 2


def test_cascade_neuron_gets_a_column_of_its_own():
    net = DagNet.mlp([2, 3, 1])
    net = net.insert_neuron(5, range(5), [5], "tanh", role="hidden")
    layout = network_layout(net)
    assert layout.captions == ["inputs", "layer 1", "layer 2", "outputs"]
    assert layout.columns.tolist() == [0, 0, 1, 1, 1, 2, 3]


def test_small_network_is_drawn_neuron_by_neuron_with_arrows(monkeypatch, tmp_path):
    figures = _captured(monkeypatch)
    net = from_sequential(_sequential(4, 6, 6, 1))
    draw_network(net, tmp_path / "mlp.png", title="4-6-6-1")
    (fig,) = figures
    (ax,) = [a for a in fig.axes]
    arrows = [p for p in ax.patches if isinstance(p, FancyArrowPatch)]
    assert len(arrows) == 66 and all(a.get_arrowstyle().__class__.__name__ == "CurveFilledB" for a in arrows)
    texts = _texts(fig)
    assert [str(i) for i in range(17)] == [t for t in texts if t.isdigit()]
    assert "layer 1\n(6)" in texts and "4-6-6-1" in texts
    assert not any(t.startswith("summary") for t in texts)


def test_big_mlp_takes_the_summary_path(monkeypatch, tmp_path):
    net = from_sequential(_sequential(784, 300, 100, 10))
    layout = network_layout(net)
    assert layout.summary
    summary = level_summary(layout)
    assert summary.captions == ["inputs", "layer 1", "layer 2", "outputs"]
    assert summary.counts == [784, 300, 100, 10] and sum(summary.counts) == net.n_nodes
    assert summary.links == {(0, 1): 784 * 300, (1, 2): 300 * 100, (2, 3): 100 * 10}
    assert sum(summary.links.values()) == int(net.mask.sum())

    figures = _captured(monkeypatch)
    draw_network(net, tmp_path / "big.png")
    (fig,) = figures
    texts = _texts(fig)
    assert fig.get_supxlabel().startswith(
        "summary: 1,194 neurons in 4 levels; too large to draw neuron by neuron"
    )
    assert "784 inputs" in texts and "layer 1\n300 neurons" in texts and "10 outputs" in texts
    assert "235,200 synapses\n(100% of 235,200)" in texts
    boxes = [p for ax in fig.axes for p in ax.patches if isinstance(p, FancyBboxPatch)]
    assert len(boxes) == 4


def test_summary_counts_a_pruned_grown_network_with_skips():
    net = DagNet.mlp([4, 45, 50, 1], generator=torch.Generator().manual_seed(1))
    for _ in range(2):
        net = net.insert_neuron(4, range(4), range(4, net.n_nodes), "tanh")
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        net.mask &= torch.rand(net.mask.shape, generator=gen) < 0.5
        net.apply_mask_()
    layout = network_layout(net)
    assert layout.summary and net.n_nodes > 60
    summary = level_summary(layout)
    assert sum(summary.counts) == net.n_nodes == 4 + 2 + 45 + 50 + 1
    assert sum(summary.links.values()) == layout.n_synapses == int(net.mask.sum())
    assert all(a <= b for a, b in summary.links)  # synapses never point left


def test_thresholds_choose_the_drawing(monkeypatch, tmp_path):
    net = DagNet.mlp([4, 6, 6, 1])
    assert not network_layout(net).summary
    assert network_layout(net, max_nodes=16).summary
    assert network_layout(net, max_synapses=65).summary
    figures = _captured(monkeypatch)
    draw_network(net, tmp_path / "n.png", max_synapses=10)
    assert figures[0].get_supxlabel().startswith("summary: 17 neurons in 4 levels")


def test_layout_rejects_a_missing_variant():
    with pytest.raises(InputError):
        network_layout(DagNet.mlp([2, 1]), variant=1)
    with pytest.raises(InputError):
        node_levels(np.zeros((2, 2), dtype=bool), ["input", "hidden", "output"])
