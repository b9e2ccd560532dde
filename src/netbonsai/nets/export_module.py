"""ONNX export of plain torch modules (compacted CNNs and MLPs) through ``torch.onnx.export``.

netbonsai's own exporter (:mod:`netbonsai.nets.export`) writes DagNets and Sequential MLPs with
only their live weights; a CNN (or any other module) goes through torch's exporter instead.
Masked layers are made permanent first (:func:`netbonsai.prune.remove` on a copy), so the file
holds plain weights; compact first (:func:`netbonsai.nets.compact_cnn.compact_cnn`) to store fewer.
"""

from __future__ import annotations

import copy
import io
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from ..atomic import write_bytes
from ..errors import InputError

OPSET = 17


def module_to_onnx_bytes(module: nn.Module, example_input: torch.Tensor, opset: int = OPSET) -> bytes:
    """The serialized ONNX model of ``module`` in eval mode (input ``"input"``, output ``"output"``,
    dynamic batch dimension), traced on ``example_input``."""
    from ..prune.remove import remove

    if not isinstance(module, nn.Module):
        raise InputError(f"export_module_onnx needs an nn.Module, got {type(module).__name__}")
    if not isinstance(example_input, torch.Tensor) or example_input.dim() < 1:
        raise InputError("example_input must be a tensor with a batch dimension")
    plain = remove(copy.deepcopy(module)).eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy (TorchScript) exporter's deprecation notice
        torch.onnx.export(
            plain, (example_input,), buffer, dynamo=False, opset_version=opset, input_names=["input"],
            output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
            do_constant_folding=True,
        )
    return buffer.getvalue()


def export_module_onnx(module: nn.Module, example_input: torch.Tensor, path: str | os.PathLike,
                       opset: int = OPSET) -> Path:
    """Write ``module`` as an ONNX file at ``path`` (atomically) and return the path; see
    :func:`module_to_onnx_bytes`."""
    path = Path(path)
    write_bytes(path, module_to_onnx_bytes(module, example_input, opset))
    return path
