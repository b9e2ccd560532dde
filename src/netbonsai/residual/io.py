"""Saving and loading residual CNNs whose stages were pruned or grown.

A :class:`~netbonsai.residual.blocks.ResidualCNN` after :func:`remove_blocks` or
:func:`insert_block` still has the layout of a fresh one with other block counts (stages are
``nn.Sequential`` whose children are renumbered), so a file holds the constructor's arguments
(:func:`cnn_spec`) and the state dict, written atomically and read back with
``torch.load(weights_only=True)``: no pickled code runs on load.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch
from ..atomic import write_bytes
from ..errors import InputError
from .blocks import DownsampleBlock, ResidualBlock, ResidualCNN

FORMAT = "netbonsai-residual-cnn"
VERSION = 1


def cnn_spec(model: ResidualCNN) -> dict[str, Any]:
    """The constructor arguments that rebuild ``model``'s layout: ``in_channels``, ``widths``,
    ``blocks`` per stage (the downsampling block counted), ``n_out`` and ``image_size``."""
    if not isinstance(model, ResidualCNN):
        raise InputError(f"cnn_spec needs a ResidualCNN, got {type(model).__name__}")
    widths, blocks = [], []
    for stage in model.stages:
        first = stage[0]
        if not isinstance(first, DownsampleBlock) or not all(isinstance(b, ResidualBlock) for b in stage[1:]):
            raise InputError("cnn_spec: every stage must be a DownsampleBlock followed by ResidualBlocks")
        widths.append(int(first.body[0].out_channels))
        blocks.append(len(stage))
    conv = model.stem[0]
    return {"in_channels": int(conv.in_channels), "widths": widths, "blocks": blocks,
            "n_out": int(model.head[-1].out_features),
            "image_size": None if model.image_shape is None else list(model.image_shape[1:])}


def save_residual_cnn(model: ResidualCNN, path: str | os.PathLike, info: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (its layout, its weights and ``info``) to exactly ``path``, atomically."""
    spec = cnn_spec(model)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, "spec": spec, "state": state, "info": dict(info or {})}, buffer)
    return write_bytes(Path(path), buffer.getvalue())


def load_residual_cnn(path: str | os.PathLike) -> tuple[ResidualCNN, dict[str, Any]]:
    """The network saved by :func:`save_residual_cnn` (in eval mode) and its ``info``; a missing,
    foreign or corrupt file is an :class:`InputError`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no residual network file at {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file is the user's input error
        raise InputError(f"{path} is not a readable residual network file ({type(error).__name__})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(f"{path} is not a netbonsai residual CNN file")
    if data.get("version") != VERSION:
        raise InputError(f"{path} has format version {data.get('version')!r}; this netbonsai reads {VERSION}")
    spec = data["spec"]
    model = ResidualCNN(spec["in_channels"], spec["widths"], spec["blocks"], spec["n_out"], spec["image_size"])
    try:
        model.load_state_dict(data["state"])
    except (RuntimeError, KeyError) as error:
        raise InputError(f"{path}: the weights do not fit the saved layout ({str(error).splitlines()[0]})") from None
    return model.eval(), dict(data.get("info") or {})
