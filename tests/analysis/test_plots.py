"""Plots and network drawings write valid PNG files, atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from matplotlib.image import imread

from netbonsai.analysis import draw_network, history_plot, pareto_plot
from netbonsai.analysis.draw import node_columns
from netbonsai.errors import InputError
from netbonsai.nets.dag import DagNet

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _check_png(path: Path, min_width: int = 300, min_height: int = 200) -> np.ndarray:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    assert min_height <= image.shape[0] <= 4000 and min_width <= image.shape[1] <= 4000
    assert image.std() > 0  # not a blank canvas
    return image


def _grown_net() -> DagNet:
    """A 4-6-6-1 MLP with one added ('1/2 layer') neuron fed by all inputs, feeding every neuron."""
    gen = torch.Generator().manual_seed(0)
    net = DagNet.mlp([4, 6, 6, 1], generator=gen)
    net = net.insert_neuron(4, range(4), range(4, net.n_nodes), "tanh")
    with torch.no_grad():
        net.weight.add_(torch.randn(net.weight.shape, generator=gen) * net.mask)
    return net


def _no_temp_files(folder: Path) -> bool:
    return not any(p.name.endswith(".tmp") for p in folder.iterdir())


def test_pareto_plot_writes_png(tmp_path):
    dense = [{"params": p, "val_loss": l} for p, l in [(61, 1e-3), (90, 9e-4), (131, 8e-4), (120, 9.5e-4)]]
    grown = [{"params": p, "val_loss": l} for p, l in [(50, 1e-3), (80, 8.5e-4), (70, None)]]
    path = pareto_plot(
        {"dense MLP": dense, "netbonsai": grown, "magnitude pruning": []},
        tmp_path / "sub" / "pareto.png",
        loss_scale=65025,
        title="brightness",
    )
    assert path == tmp_path / "sub" / "pareto.png"
    _check_png(path)
    assert _no_temp_files(path.parent)


def _captured(monkeypatch, module) -> list:
    """Replace a module's PNG writer by one that keeps the figure, to look at what was drawn."""
    figures = []
    monkeypatch.setattr(module, "save_png", lambda fig, path, dpi=120: figures.append(fig) or Path(path))
    return figures


def test_pareto_plot_labels_the_loss_axis_and_explains_the_series(tmp_path, monkeypatch):
    from netbonsai.analysis import plots

    figures = _captured(monkeypatch, plots)
    points = [{"params": 10, "val_loss": 3.0}, {"params": 20, "val_loss": 2.0}, {"params": 30, "val_loss": 2.5}]
    pareto_plot({"dense MLP": points}, tmp_path / "p.png", loss_label="validation loss (MSE in 8-bit units)")
    pareto_plot({"dense MLP": points}, tmp_path / "q.png", loss_scale=2.0)
    first, second = figures
    assert first.axes[0].get_ylabel() == "validation loss (MSE in 8-bit units)"
    assert second.axes[0].get_ylabel() == "validation loss (x 2)"
    legend = first.axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["dense MLP (2 on front, 3 in all)"]
    assert "Pareto front" in legend.get_title().get_text()


def test_pareto_plot_with_many_series_keeps_them_apart(tmp_path, monkeypatch):
    from netbonsai.analysis import plots

    figures = _captured(monkeypatch, plots)
    names = ["dense MLP", "magnitude pruning", "loss-aware pruning", "lottery ticket", "SNIP",
             "netbonsai, search front (before polish)", "netbonsai, polished front"]
    series = {name: [{"params": 10 * (i + 1) + k, "val_loss": 1.0 / (k + 1)} for k in range(4)]
              for i, name in enumerate(names)}
    pareto_plot(series, tmp_path / "many.png", focus="dense MLP")
    (fig,) = figures
    ax = fig.axes[0]
    assert ax.get_legend() is None and len(fig.legends) == 1  # the legend sits below the axes
    assert [t.get_text().rsplit(" (", 1)[0] for t in fig.legends[0].get_texts()] == names
    fronts = [line for line in ax.get_lines() if line.get_label() in
              {t.get_text() for t in fig.legends[0].get_texts()}]
    styles = {(line.get_color(), line.get_marker()) for line in fronts}
    assert len(fronts) == len(names) == len(styles)
    assert len({line.get_marker() for line in fronts}) == len(names)


def test_pareto_plot_linear_axis_and_no_series(tmp_path):
    _check_png(pareto_plot({}, tmp_path / "empty.png", log_x=False))


def test_history_plot_by_index_and_by_seconds(tmp_path):
    events = [
        {"params": 61 + i % 5, "train_loss": 1 / (i + 1), "val_loss": 1.2 / (i + 1), "seconds": 0.5 * i}
        for i in range(12)
    ]
    events[3]["val_loss"] = None
    _check_png(history_plot(events, tmp_path / "history.png", loss_scale=2.0))
    _check_png(history_plot(events, tmp_path / "history_s.png", x="seconds", title="run"))


def test_node_columns_put_added_neurons_between_inputs_and_hidden_layers():
    net = _grown_net()
    columns, captions = node_columns(net.roles, net.levels())
    assert captions == ["inputs", "1/2 layer", "layer 1", "layer 2", "outputs"]
    assert columns.tolist() == [0] * 4 + [1] + [2] * 6 + [3] * 6 + [4]


def test_draw_network_small(tmp_path):
    net = _grown_net()
    path = draw_network(net, tmp_path / "net.png", title="grown")
    _check_png(path)
    assert _no_temp_files(tmp_path)


def test_draw_network_many_nodes(tmp_path):
    net = DagNet.mlp([4, 45, 50, 1], generator=torch.Generator().manual_seed(1))
    for _ in range(2):
        net = net.insert_neuron(4, range(4), range(4, net.n_nodes), "tanh")
    assert net.n_nodes > 100
    _check_png(draw_network(net, tmp_path / "big.png"))
    from netbonsai.analysis.draw import network_layout

    assert network_layout(net).summary  # drawn as one box per level


def test_draw_network_rejects_populations(tmp_path):
    with pytest.raises(InputError):
        draw_network(DagNet.mlp([2, 3, 1], population=2), tmp_path / "pop.png")
    assert not (tmp_path / "pop.png").exists()


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "net.png"
    target.write_bytes(b"old contents")

    def broken_savefig(self, fname, *args, **kwargs):
        fname.write(PNG_SIGNATURE + b"truncated")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        draw_network(_grown_net(), target)
    with pytest.raises(OSError, match="disk full"):
        pareto_plot({"a": [{"params": 1, "val_loss": 1.0}]}, tmp_path / "new.png")
    assert target.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.png"]


def test_focus_limits_follow_the_focus_series_not_a_far_worse_one(tmp_path):
    """A pruned network near the constant predictor (loss 244) must not squash the plot: the
    axis spans the lowest loss of all series to the focus series' worst plus half its span."""
    from netbonsai.analysis.plots import focus_limits

    series = {
        "dense MLP": [{"params": 61, "val_loss": 92.0}, {"params": 131, "val_loss": 88.0}],
        "magnitude pruning": [{"params": 6, "val_loss": 244.0}, {"params": 98, "val_loss": 93.0}],
        "netbonsai": [{"params": 70, "val_loss": 87.0}],
    }
    low, high = focus_limits(series, "dense MLP")
    assert low == pytest.approx(87.0 - 0.25) and high == pytest.approx(92.0 + 2.5)
    assert focus_limits(series, "missing") is None
    assert focus_limits({"a": [{"params": 1, "val_loss": None}]}, "a") is None
    assert focus_limits({"a": [{"params": 1, "val_loss": 3.0}]}, "a") == pytest.approx((3.0 - 0.015, 3.15))
    _check_png(pareto_plot(series, tmp_path / "focus.png", focus="dense MLP"))
