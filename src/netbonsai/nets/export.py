"""Export a population-1 :class:`DagNet` to ONNX and to TorchScript.

ONNX (:func:`to_onnx`, :func:`export_onnx`) holds **only live weights**: its initializers are
exactly the synapse weights and the biases of the compacted network, so their element count
equals ``net.num_params()`` (biases included). The graph is built with ``onnx.helper`` and
checked with ``onnx.checker``; it needs only ``onnx`` to build and runs in ``onnxruntime``.

How the graph is laid out (activations are kept feature-major, ``(nodes, batch)``):

1. the network is compacted and its input/output normalization folded into the weights
   (:meth:`DagNet.compact`, :meth:`DagNet.fold_normalization`): same function, same parameter
   count, no affine maps left over (the normalization constants cost nothing);
2. the input ``(batch, n_in)`` is transposed to ``H = (n_in, batch)`` (feature-major); when a
   sparse level needs padding (below), a row of zeros (``ConstantOfShape``: no stored value)
   is put in front of it;
3. for every level (:meth:`DagNet.levels`), its nodes' pre-activations are computed from the
   rows of ``H`` (the inputs and all earlier levels) in one of two ways:

   * *dense*, when the level's synapses form a complete block (every node of the level reads
     every one of the level's distinct sources, as in a layered MLP): ``W @ Gather(H, sources)
     + b`` with ``W`` of shape ``(n_level, n_sources)``, which then holds exactly the live
     weights;
   * *sparse*, otherwise. The level's ``E`` live weights are one vector ``w`` ``(E,)``. With
     ``K`` the level's largest fan-in, an int64 table ``(n_level, K)`` lists each node's
     source rows of ``H`` and a second one the positions of the matching weights in ``w``;
     a node with fewer than ``K`` synapses is padded with the zero row of ``H`` (and any
     weight: it multiplies zero). Then ``Gather(H, sources)`` ``(n_level, K, batch)``,
     ``Gather(w, positions)`` ``(n_level, 1, K)``, one batched ``MatMul`` and the bias give
     ``(n_level, batch)``. No matrix with zeros for absent synapses is stored anywhere, and the
     sum is deterministic (a ``ScatterND`` with ``reduction="add"`` over repeated indices,
     the obvious alternative, gives wrong sums in onnxruntime when it runs multithreaded);

   the level's activations are applied (nodes are grouped by activation within a level) and
   the level's rows are appended to ``H`` with ``Concat``;
4. the outputs are sliced (or gathered) from ``H`` and transposed back to ``(batch, n_out)``.

What counts: the graph's **initializers are the parameters and nothing else** (float32
weights and biases). The structure (the gather tables of synapse sources and weight
positions, slice bounds, shapes) is stored as ``Constant`` nodes of int64, which are not
parameters; the zero row is computed (``ConstantOfShape``). So ``sum(initializer sizes) ==
net.num_params()``. A sparse level's gathered activations take ``n_level * K * batch`` floats
at run time (the padding costs memory and time, never stored values). The model's ``metadata_props`` hold the
parameter count and the model file's ``info`` (task, preprocessing, training config) as JSON.

TorchScript (:func:`to_torchscript`, :func:`export_torchscript`) scripts
:func:`netbonsai.nets.convert.to_module`; that module evaluates each level as one dense block
(absent synapses are zeros there: it is the fast CPU form, not the minimal one). The file
loads with ``torch.jit.load`` alone and carries the same JSON as an extra file
``netbonsai.json``.

Both writers are atomic: a failure leaves no file, partial or temporary, behind.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..atomic import write_bytes
from ..errors import InputError
from .convert import activation_groups
from .dag import DagNet

OPSET = 17
IR_VERSION = 8  # the IR version of opset 17: loads in onnxruntime >= 1.13
INPUT_NAME = "input"
OUTPUT_NAME = "output"
METADATA_KEY = "netbonsai"
TORCHSCRIPT_EXTRA = "netbonsai.json"

_ONNX_ACTIVATIONS = {"tanh": "Tanh", "relu": "Relu", "sigmoid": "Sigmoid", "softplus": "Softplus", "elu": "Elu"}


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote: the path, the format and the model's parameter count."""

    path: Path
    format: str  # "onnx" or "torchscript"
    params: int  # the model's parameter count (live weights + biases)
    stored_values: int  # float values the file stores as parameters (== params for ONNX)


# ---------------------------------------------------------------------- model preparation
def as_dagnet(model: DagNet | nn.Sequential) -> DagNet:
    """The population-1 :class:`DagNet` to export.

    A :class:`DagNet` is used as it is (population size 1 needed). An ``nn.Sequential`` MLP
    (``nn.Linear`` / ``MaskedLinear`` with the activations of :func:`from_sequential`, for
    example the result of :func:`netbonsai.nets.compact.compact_mlp`) is converted exactly;
    its masks come along, and weights that are exactly zero (the removed-but-kept zeros of a
    compacted pruned MLP) are treated as removed synapses, which changes no output.
    """
    if isinstance(model, DagNet):
        if model.population_size != 1:
            raise InputError(f"export needs a network with population size 1, got {model.population_size}")
        return model
    if isinstance(model, nn.Sequential):
        from .convert import from_sequential

        net = from_sequential(model)
        with torch.no_grad():
            net.mask &= net.weight != 0
            net.apply_mask_()
        return net
    raise InputError(f"export needs a DagNet or an nn.Sequential MLP, got {type(model).__name__}")


def _info_json(net: DagNet, params: int) -> str:
    try:
        return json.dumps({"params": params, "n_in": net.n_in, "n_out": net.n_out, "info": net.info},
                          allow_nan=False)
    except (TypeError, ValueError):  # info of a hand-built net need not be JSON: keep the structure
        return json.dumps({"params": params, "n_in": net.n_in, "n_out": net.n_out, "info": {}})


# ---------------------------------------------------------------------- ONNX
def _require_onnx():
    try:
        import onnx
    except ImportError:
        raise InputError(
            "ONNX export needs the onnx package: pip install 'netbonsai[export]' (onnx and onnxruntime)"
        ) from None
    return onnx


class _Graph:
    """A small helper that names nodes uniquely and keeps nodes, constants and initializers."""

    def __init__(self, onnx) -> None:
        self.onnx = onnx
        self.helper = onnx.helper
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.counter = 0

    def name(self, stem: str) -> str:
        self.counter += 1
        return f"{stem}_{self.counter}"

    def op(self, op_type: str, inputs: list[str], stem: str | None = None, **attrs) -> str:
        out = self.name(stem or op_type.lower())
        self.nodes.append(self.helper.make_node(op_type, inputs, [out], name=f"{out}_op", **attrs))
        return out

    def const_int(self, values, stem: str) -> str:
        """An int64 ``Constant`` node (structure, not a parameter)."""
        array = np.asarray(values, dtype=np.int64)
        out = self.name(stem)
        tensor = self.onnx.numpy_helper.from_array(array, name=f"{out}_value")
        self.nodes.append(self.helper.make_node("Constant", [], [out], name=f"{out}_op", value=tensor))
        return out

    def param(self, values: np.ndarray, name: str) -> str:
        """A float32 initializer: a model parameter."""
        self.initializers.append(self.onnx.numpy_helper.from_array(np.asarray(values, dtype=np.float32), name=name))
        return name


def _rows(g: _Graph, h: str, rows: np.ndarray, n_rows: int, stem: str) -> str:
    """Rows ``rows`` of the feature-major tensor ``h`` (``n_rows`` rows): Slice when contiguous."""
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) == n_rows and np.array_equal(rows, np.arange(n_rows)):
        return h
    if len(rows) and np.array_equal(rows, np.arange(rows[0], rows[0] + len(rows))):
        return g.op("Slice", [h, g.const_int([rows[0]], "start"), g.const_int([rows[0] + len(rows)], "end"),
                              g.const_int([0], "axis")], stem)
    return g.op("Gather", [h, g.const_int(rows, "rows")], stem, axis=0)


def _activate(g: _Graph, pre: str, groups: list[tuple[str, int, int]], n: int, stem: str) -> str:
    parts = []
    for name, start, end in groups:
        part = pre if len(groups) == 1 else _rows(g, pre, np.arange(start, end), n, f"{stem}_{name}_pre")
        if name != "identity":
            attrs = {"alpha": 1.0} if name == "elu" else {}
            part = g.op(_ONNX_ACTIVATIONS[name], [part], f"{stem}_{name}", **attrs)
        parts.append(part)
    return parts[0] if len(parts) == 1 else g.op("Concat", parts, f"{stem}_act", axis=0)


def to_onnx(model: DagNet | nn.Sequential, graph_name: str = "netbonsai", check: bool = True):
    """An ``onnx.ModelProto`` computing ``model`` with only its live weights (see the module docstring).

    Input ``"input"``: float32 ``(batch, n_in)``; output ``"output"``: float32 ``(batch, n_out)``;
    the batch dimension is dynamic. The sum of the initializers' sizes equals
    ``num_params()`` of the (converted) network. Needs the ``onnx`` package (extra ``export``).
    """
    onnx = _require_onnx()
    net = as_dagnet(model)
    params = net.num_params()
    with torch.no_grad():
        net = net.compact().fold_normalization()
    weight = (net.weight.detach()[0] * net.mask[0]).to("cpu", torch.float64).numpy()
    mask = net.mask[0].cpu().numpy()
    bias = net.bias.detach()[0].to("cpu", torch.float64).numpy()
    level = net.levels()
    act_rank = {a: i for i, a in enumerate(sorted(set(net.activations)))}

    levels = []  # (level, nodes, sub-mask (N, n_level), dense?)
    for lvl in range(1, int(level.max(initial=0)) + 1):
        nodes = sorted(np.nonzero(level == lvl)[0].tolist(), key=lambda i: (act_rank[net.activations[i]], i))
        if nodes:
            sub = mask[:, nodes]
            n_sources = int(sub.any(axis=1).sum())
            levels.append((lvl, nodes, sub, bool(sub.sum()) and int(sub.sum()) == n_sources * len(nodes)))

    g = _Graph(onnx)
    h = g.op("Transpose", [INPUT_NAME], "inputs_t", perm=[1, 0])  # (n_in, batch)
    # A zero row is needed where a sparse level pads a fan-in (or has no synapse at all).
    zero_row = any(not dense and (not sub.any() or len(set(sub.sum(axis=0).tolist())) > 1)
                   for _, _, sub, dense in levels)
    position = np.full(net.n_nodes, -1, dtype=np.int64)  # node -> row of H
    position[: net.n_in] = np.arange(net.n_in) + int(zero_row)
    n_rows = net.n_in + int(zero_row)
    if zero_row:
        batch = g.op("Slice", [g.op("Shape", [INPUT_NAME], "input_shape"), g.const_int([0], "start"),
                               g.const_int([1], "end")], "batch")
        shape = g.op("Concat", [g.const_int([1], "one"), batch], "zero_shape", axis=0)
        zeros = g.op("ConstantOfShape", [shape], "zeros")  # float32 zeros (1, batch): no stored value
        h = g.op("Concat", [zeros, h], "h0", axis=0)
    for lvl, nodes, sub, dense in levels:
        n_level = len(nodes)
        stem = f"level{lvl}"
        b = g.param(bias[nodes].reshape(n_level, 1), f"{stem}.bias")
        if dense:  # a complete block: one MatMul with exactly the live weights
            sources = np.nonzero(sub.any(axis=1))[0]
            order = np.argsort(position[sources], kind="stable")
            w = g.param(weight[np.ix_(sources[order], nodes)].T, f"{stem}.weight")  # (n_level, n_sources)
            gathered = _rows(g, h, position[sources[order]], n_rows, f"{stem}_in")
            pre = g.op("Add", [g.op("MatMul", [w, gathered], f"{stem}_matmul"), b], f"{stem}_pre")
        elif not sub.any():  # no synapse into this level: the biases alone
            pre = g.op("Add", [_rows(g, h, np.array([0]), n_rows, f"{stem}_zero"), b], f"{stem}_pre")
        else:
            dst, src = np.nonzero(sub.T)  # sorted by destination, then source
            n_edges = len(dst)
            fan_in = np.bincount(dst, minlength=n_level)
            k = int(fan_in.max())
            slot = np.arange(n_edges) - (np.cumsum(fan_in) - fan_in)[dst]
            src_rows = np.zeros((n_level, k), dtype=np.int64)  # padding: the zero row
            w_index = np.zeros((n_level, 1, k), dtype=np.int64)  # padding: any weight (times zero)
            src_rows[dst, slot] = position[src]
            w_index[dst, 0, slot] = np.arange(n_edges)
            if (position[src] < 0).any():  # cannot happen for a valid DagNet: sources are on earlier levels
                raise RuntimeError("a synapse's source is not on an earlier level")
            w = g.param(weight[src, np.asarray(nodes)[dst]], f"{stem}.weight")  # (E,)
            gathered = g.op("Gather", [h, g.const_int(src_rows, f"{stem}_src")], f"{stem}_in", axis=0)
            weights = g.op("Gather", [w, g.const_int(w_index, f"{stem}_widx")], f"{stem}_w", axis=0)
            products = g.op("MatMul", [weights, gathered], f"{stem}_sum")  # (n_level, 1, batch)
            summed = g.op("Squeeze", [products, g.const_int([1], "axis")], f"{stem}_squeeze")
            pre = g.op("Add", [summed, b], f"{stem}_pre")
        values = _activate(g, pre, activation_groups(net, nodes), n_level, stem)
        h = g.op("Concat", [h, values], f"h{lvl}", axis=0)
        position[nodes] = np.arange(n_rows, n_rows + n_level)
        n_rows += n_level
    outputs = _rows(g, h, position[list(net.output_nodes)], n_rows, "outputs_t")
    g.nodes.append(g.helper.make_node("Transpose", [outputs], [OUTPUT_NAME], name="outputs_op", perm=[1, 0]))

    graph = g.helper.make_graph(
        g.nodes, graph_name,
        [g.helper.make_tensor_value_info(INPUT_NAME, onnx.TensorProto.FLOAT, ["batch", net.n_in])],
        [g.helper.make_tensor_value_info(OUTPUT_NAME, onnx.TensorProto.FLOAT, ["batch", net.n_out])],
        initializer=g.initializers,
    )
    proto = g.helper.make_model(graph, opset_imports=[g.helper.make_opsetid("", OPSET)], producer_name="netbonsai",
                                ir_version=IR_VERSION)
    g.helper.set_model_props(proto, {METADATA_KEY: _info_json(net, params)})
    stored = initializer_count(proto)
    if stored != params:  # the promise of this module: fail loudly rather than write a wrong file
        raise RuntimeError(f"ONNX graph stores {stored} parameter values but the network has {params}")
    if check:
        onnx.checker.check_model(proto, full_check=True)
    return proto


def initializer_count(model) -> int:
    """Total number of elements of an ONNX model's initializers (its stored parameters)."""
    return sum(int(np.prod(t.dims, dtype=np.int64)) for t in model.graph.initializer)


def export_onnx(model: DagNet | nn.Sequential, path: str | os.PathLike) -> ExportResult:
    """Write ``model`` as an ONNX file at ``path`` (atomically); see :func:`to_onnx`."""
    path = Path(path)
    proto = to_onnx(model)
    write_bytes(path, proto.SerializeToString())
    params = initializer_count(proto)
    return ExportResult(path, "onnx", params, params)


# ---------------------------------------------------------------------- TorchScript
def to_torchscript(model: DagNet | nn.Sequential) -> torch.jit.ScriptModule:
    """``torch.jit.script`` of :func:`netbonsai.nets.convert.to_module` (population size 1)."""
    from .convert import to_module

    module = to_module(as_dagnet(model)).eval()
    with warnings.catch_warnings():  # torch.jit is deprecated in favour of torch.export, still supported
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.script(module)


def export_torchscript(model: DagNet | nn.Sequential, path: str | os.PathLike) -> ExportResult:
    """Write ``model`` as a TorchScript file at ``path`` (atomically); load with ``torch.jit.load``."""
    path = Path(path)
    net = as_dagnet(model)
    params = net.num_params()
    scripted = to_torchscript(net)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(scripted, buffer, _extra_files={TORCHSCRIPT_EXTRA: _info_json(net, params)})
    write_bytes(path, buffer.getvalue())
    stored = sum(p.numel() for p in scripted.parameters())
    return ExportResult(path, "torchscript", params, int(stored))
