"""The two pictures of the tri-state gate experiment (paper 003): how the gates binarise during
training, and how many neurons the gates keep against the number of classes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from ._figures import new_figure, save_png


def plot_gate_trace(trace: Sequence[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Per gated layer, the share of gates near 1 (alive), near 0 (dead) and in between against
    the epoch (``trace``: one ``{"epoch", "layers": [{"alive", "dead", "between", "d"}]}`` per epoch)."""
    fig = new_figure(6.4, 3.6)
    ax = fig.add_subplot()
    epochs = [t["epoch"] for t in trace]
    layers = len(trace[0]["layers"]) if trace else 0
    for layer in range(layers):
        for key, style in (("alive", "-"), ("dead", "--"), ("between", ":")):
            ax.plot(epochs, [t["layers"][layer][key] for t in trace], style, color=f"C{layer}",
                    label=f"layer {layer + 1}: {key}")
    ax.set_xlabel("epoch of gated training")
    ax.set_ylabel("share of the layer's gates")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Tri-state gates binarise: w > 0.9 (alive), w < 0.1 (dead), in between")
    if layers:
        ax.legend(fontsize=7, ncols=2)
    return save_png(fig, path)


def plot_classes(classes: Sequence[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Learned hidden neurons (and test error) against the number of classes."""
    fig = new_figure(5.6, 3.6)
    ax = fig.add_subplot()
    ks = [c["classes"] for c in classes]
    ax.plot(ks, [c["neurons"] for c in classes], "o-", color="C0", label="learned neurons")
    ax.set_xlabel("classes (MNIST digits 0..k-1)")
    ax.set_ylabel("hidden neurons kept by the gates")
    twin = ax.twinx()
    twin.plot(ks, [100 * c["test_error"] for c in classes], "s--", color="C3", label="test error (%)")
    twin.set_ylabel("test error (%)")
    ax.set_title("LeNet-300-100 with width gates: size against classes")
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], fontsize=8, loc="upper left")
    return save_png(fig, path)
