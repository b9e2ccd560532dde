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

**Table models** (``net.info["preprocessing"]["task"] == "table"``: trained on a CSV/NPZ file,
a DataFrame or ``sklearn:NAME``) are exported in the table's own units (``table_units=True``,
the default; ``False`` exports the network as trained, on standardized columns):

* input ``"input"`` ``(batch, n_in)``: the table's columns after one-hot encoding, in the
  stored order ``preprocessing["encoded_columns"]`` -- a numeric column in its own units, one
  0/1 column ``NAME=CATEGORY`` per category of a text column. The training split's
  standardization ``(x - mean) / scale`` is composed with the network's own ``in_shift`` /
  ``in_scale`` (``in_shift' = mean + scale * in_shift``, ``in_scale' = scale * in_scale``) and
  folded into the first weights and biases;
* regression: output ``"output"`` ``(batch, targets)`` holds the predictions in the targets'
  own units: the de-standardization ``y * target_std + target_mean`` is composed with the
  network's ``out_scale`` / ``out_shift`` and folded into the output nodes' weights and biases;
* classification: output ``"output"`` ``(batch, classes)`` holds the **logits** (as the network
  computes them) and a second output ``"probabilities"`` their softmax (a ``Softmax`` node, no
  stored value), columns in the order of ``preprocessing["classes"]``; the predicted label is
  the class of the largest logit.

Everything is folded in float64 and rounded once to float32, so the graph computes the same
function as ``prepare_rows`` + the network + ``decode_outputs`` (what ``netbonsai predict``
runs), with the same parameter count. The names are in ``metadata_props``: ``input_names``
(JSON list: the encoded columns, e.g. ``"color=red"``), ``output_names`` (JSON list: the
targets, or the class labels as text) and ``outputs`` (one sentence: what the outputs hold).
The TorchScript export of a table model takes and returns the same units (logits for a
classifier; it has no probabilities output).

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
PROBABILITIES_NAME = "probabilities"  # a table classifier's second output: softmax of the logits
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


# ---------------------------------------------------------------------- table models
def table_preprocessing(net: DagNet) -> dict[str, Any] | None:
    """The table preprocessing a model carries (``net.info["preprocessing"]``), or None."""
    preprocessing = net.info.get("preprocessing") if isinstance(net.info, dict) else None
    return preprocessing if isinstance(preprocessing, dict) and preprocessing.get("task") == "table" else None


def _vector(values: Any, size: int, what: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InputError(f"the model's table preprocessing has a malformed {what}") from None
    if array.shape != (size,) or not np.isfinite(array).all():
        raise InputError(f"the model's table preprocessing has {array.size} {what} values for {size} "
                         "network inputs/outputs, or a non-finite one")
    return array


def _normalization(net: DagNet, table_units: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``in_shift, in_scale, out_shift, out_scale`` (float64) of the function to export: the
    network's own maps, composed with a table model's preprocessing when ``table_units``.

    Inputs: ``((x - mean) / scale - in_shift) / in_scale == (x - (mean + scale * in_shift)) /
    (scale * in_scale)``; regression outputs: ``(y * out_scale + out_shift) * std + target_mean
    == y * (out_scale * std) + (out_shift * std + target_mean)``. Exact compositions of affine maps."""
    def buffer(name: str) -> np.ndarray:
        return getattr(net, name).detach().to("cpu", torch.float64).numpy().copy()

    in_shift, in_scale, out_shift, out_scale = (buffer(n) for n in ("in_shift", "in_scale", "out_shift", "out_scale"))
    preprocessing = table_preprocessing(net) if table_units else None
    if preprocessing is None:
        return in_shift, in_scale, out_shift, out_scale
    mean = _vector(preprocessing.get("means"), net.n_in, "means")
    scale = _vector(preprocessing.get("scales"), net.n_in, "scales")
    if (scale == 0).any():
        raise InputError("the model's table preprocessing has a zero input scale")
    in_shift, in_scale = mean + scale * in_shift, scale * in_scale
    if preprocessing.get("task_type") != "classification":
        target_mean = _vector(preprocessing.get("target_mean"), net.n_out, "target_mean")
        target_std = _vector(preprocessing.get("target_std"), net.n_out, "target_std")
        out_shift, out_scale = out_shift * target_std + target_mean, out_scale * target_std
        if any(net.activations[o] != "identity" for o in net.output_nodes) and not (
                (out_shift == 0).all() and (out_scale == 1).all()):
            raise InputError("a table regression model with non-identity output activations cannot carry the "
                             "target's de-standardization; export it with table_units=False")
    return in_shift, in_scale, out_shift, out_scale


def _folded(net: DagNet, in_shift: np.ndarray, in_scale: np.ndarray, out_shift: np.ndarray,
            out_scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The float64 ``(weight, bias)`` of ``net`` with the affine maps folded in (same parameters,
    same function; as :meth:`DagNet.fold_normalization`, which works in the default dtype)."""
    weight = (net.weight.detach()[0] * net.mask[0]).to("cpu", torch.float64).numpy().copy()
    bias = net.bias.detach()[0].to("cpu", torch.float64).numpy().copy()
    n_in = net.n_in
    outputs = slice(net.n_nodes - net.n_out, net.n_nodes)
    bias -= (in_shift / in_scale) @ weight[:n_in]
    weight[:n_in] /= in_scale[:, None]
    # a synapse leaving an output node used its standardised value (y - shift) / scale
    bias -= (out_shift / out_scale) @ weight[outputs]
    weight[outputs] /= out_scale[:, None]
    weight[:, outputs] *= out_scale[None, :]
    bias[outputs] = bias[outputs] * out_scale + out_shift
    bias[:n_in] = 0.0
    return weight, bias


def _table_names(preprocessing: dict[str, Any]) -> dict[str, str]:
    """The ONNX metadata naming a table model's inputs and outputs."""
    classifier = preprocessing.get("task_type") == "classification"
    outputs = ([str(c) for c in preprocessing.get("classes", [])] if classifier
               else [str(t) for t in preprocessing.get("targets", [])])
    what = ("output: one logit per class (in the order of output_names); probabilities: their softmax"
            if classifier else "output: the predicted values in the targets' own units (columns: output_names)")
    return {"input_names": json.dumps([str(n) for n in preprocessing.get("encoded_columns", [])]),
            "output_names": json.dumps(outputs), "outputs": what}


def table_units_net(model: DagNet | nn.Sequential) -> DagNet:
    """A copy of a table model whose normalization buffers take the table's encoded columns in
    their own units and return regression targets in theirs (classifiers: logits), as the ONNX
    export does; any other network is returned as it is (see the module docstring)."""
    net = as_dagnet(model)
    if table_preprocessing(net) is None:
        return net
    vectors = [torch.from_numpy(v) for v in _normalization(net, True)]
    return net.clone().set_normalization(*vectors)


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


def to_onnx(model: DagNet | nn.Sequential, graph_name: str = "netbonsai", check: bool = True,
            table_units: bool = True):
    """An ``onnx.ModelProto`` computing ``model`` with only its live weights (see the module docstring).

    Input ``"input"``: float32 ``(batch, n_in)``; output ``"output"``: float32 ``(batch, n_out)``;
    the batch dimension is dynamic. The sum of the initializers' sizes equals
    ``num_params()`` of the (converted) network. Needs the ``onnx`` package (extra ``export``).
    A table model (``table_units``, the default) takes its encoded columns in their own units and
    returns values in the targets' units, or logits and ``"probabilities"`` (module docstring).
    """
    onnx = _require_onnx()
    net = as_dagnet(model)
    params = net.num_params()
    preprocessing = table_preprocessing(net) if table_units else None
    with torch.no_grad():
        net = net.compact()
    weight, bias = _folded(net, *_normalization(net, table_units))  # float64, maps folded in
    mask = net.mask[0].cpu().numpy()
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
    graph_outputs = [g.helper.make_tensor_value_info(OUTPUT_NAME, onnx.TensorProto.FLOAT, ["batch", net.n_out])]
    props = {METADATA_KEY: _info_json(net, params)}
    if preprocessing is not None:
        props.update(_table_names(preprocessing))
        if preprocessing.get("task_type") == "classification":  # no stored value: softmax of the logits
            g.nodes.append(g.helper.make_node("Softmax", [OUTPUT_NAME], [PROBABILITIES_NAME],
                                              name="probabilities_op", axis=1))
            graph_outputs.append(g.helper.make_tensor_value_info(PROBABILITIES_NAME, onnx.TensorProto.FLOAT,
                                                                 ["batch", net.n_out]))

    graph = g.helper.make_graph(
        g.nodes, graph_name,
        [g.helper.make_tensor_value_info(INPUT_NAME, onnx.TensorProto.FLOAT, ["batch", net.n_in])],
        graph_outputs,
        initializer=g.initializers,
    )
    proto = g.helper.make_model(graph, opset_imports=[g.helper.make_opsetid("", OPSET)], producer_name="netbonsai",
                                ir_version=IR_VERSION)
    g.helper.set_model_props(proto, props)
    stored = initializer_count(proto)
    if stored != params:  # the promise of this module: fail loudly rather than write a wrong file
        raise RuntimeError(f"ONNX graph stores {stored} parameter values but the network has {params}")
    if check:
        onnx.checker.check_model(proto, full_check=True)
    return proto


def initializer_count(model) -> int:
    """Total number of elements of an ONNX model's initializers (its stored parameters)."""
    return sum(int(np.prod(t.dims, dtype=np.int64)) for t in model.graph.initializer)


def export_onnx(model: DagNet | nn.Sequential, path: str | os.PathLike, table_units: bool = True) -> ExportResult:
    """Write ``model`` as an ONNX file at ``path`` (atomically); see :func:`to_onnx`."""
    path = Path(path)
    proto = to_onnx(model, table_units=table_units)
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


def export_torchscript(model: DagNet | nn.Sequential, path: str | os.PathLike,
                       table_units: bool = True) -> ExportResult:
    """Write ``model`` as a TorchScript file at ``path`` (atomically); load with ``torch.jit.load``.
    A table model takes and returns the table's units (``table_units``; see the module docstring)."""
    path = Path(path)
    net = table_units_net(model) if table_units else as_dagnet(model)
    params = net.num_params()
    scripted = to_torchscript(net)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(scripted, buffer, _extra_files={TORCHSCRIPT_EXTRA: _info_json(net, params)})
    write_bytes(path, buffer.getvalue())
    stored = sum(p.numel() for p in scripted.parameters())
    return ExportResult(path, "torchscript", params, int(stored))
