"""Conversions between :class:`DagNet` and other representations.

* :func:`from_sequential` / :func:`to_sequential`: plain ``nn.Sequential`` MLPs of ``nn.Linear``
  layers and activation modules.
* :func:`to_networkx` / :func:`from_networkx`: an attributed ``networkx.DiGraph`` (for analysis,
  drawing and hand-built architectures).
* :func:`to_module`: a standalone :class:`DagModule` that depends only on torch (for deployment,
  TorchScript and export), computing the same function level by level with dense blocks.
"""

from __future__ import annotations

from typing import Any, Hashable, List, Sequence

import networkx as nx
import numpy as np
import torch
from torch import nn

from ..errors import InputError
from .activations import MODULE_TO_NAME, NAME_TO_MODULE, check_activation
from .dag import ROLES, DagNet, _levels
from .masked import MaskedLinear

# Default arguments of the activation modules whose functional form DagNet applies; a module
# configured otherwise (``nn.ELU(alpha=0.5)``) computes a different function.
_DEFAULT_ARGS: dict[type, dict[str, float]] = {
    nn.ELU: {"alpha": 1.0},
    nn.Softplus: {"beta": 1.0, "threshold": 20.0},
}


# ---------------------------------------------------------------------- nn.Sequential
def _activation_name(module: nn.Module, position: int) -> str | None:
    """The DagNet activation name of ``module``, or None if it is not an activation module."""
    name = MODULE_TO_NAME.get(type(module))
    if name is None:
        return None
    for attr, default in _DEFAULT_ARGS.get(type(module), {}).items():
        if float(getattr(module, attr)) != default:
            raise InputError(
                f"module {position} ({module!r}) has {attr}={getattr(module, attr)}; "
                f"only the default {attr}={default} can be converted"
            )
    return name


def from_sequential(model: nn.Sequential, zeros_are_pruned: bool = False) -> DagNet:
    """Convert a (trained) MLP ``nn.Sequential`` of ``nn.Linear`` and activation modules exactly.

    Every ``Linear`` may be followed by at most one activation module (one of
    ``activations.MODULE_TO_NAME``); it becomes the activation of that layer's nodes (identity
    when absent). Node order is inputs, hidden layer 1, hidden layer 2, ..., outputs, and every
    ``Linear`` becomes a dense block of live synapses: ``weight[0, i, j] = linear.weight[j, i]``
    in layer-local indices; a pruned ``MaskedLinear`` brings its mask along, so removed weights
    are removed synapses. Anything else raises :class:`InputError`.

    A plain ``nn.Linear`` carries no mask: the removed-but-kept zeros of a compacted pruned MLP
    (``compact_mlp(m)``, ``netbonsai.prune.remove(m)``) would count as live synapses. With
    ``zeros_are_pruned`` every weight that is exactly zero becomes a removed synapse (same outputs;
    ``num_params()`` then equals the pruned model's live count). ``compact_mlp(m, masked=True)``
    keeps the masks themselves instead.
    """
    if not isinstance(model, nn.Sequential):
        raise InputError(f"from_sequential() needs an nn.Sequential, got {type(model).__name__}")
    layers: list[nn.Linear] = []
    layer_activations: list[str] = []
    for position, module in enumerate(model):
        if type(module) is nn.Linear or isinstance(module, MaskedLinear):  # other subclasses may compute otherwise
            if layers and module.in_features != layers[-1].out_features:
                raise InputError(
                    f"module {position} (Linear) takes {module.in_features} features but the "
                    f"previous Linear gives {layers[-1].out_features}"
                )
            layers.append(module)
            layer_activations.append("")  # no activation yet
            continue
        name = _activation_name(module, position)
        if name is None:
            raise InputError(
                f"module {position} ({type(module).__name__}) cannot be converted: only nn.Linear "
                f"and the activations {', '.join(sorted(c.__name__ for c in MODULE_TO_NAME))} are supported"
            )
        if not layers:
            raise InputError(f"module {position} ({type(module).__name__}) comes before the first Linear")
        if layer_activations[-1]:
            raise InputError(
                f"module {position} ({type(module).__name__}) is a second activation in a row; "
                "each Linear may be followed by at most one activation"
            )
        layer_activations[-1] = name
    if not layers:
        raise InputError("the Sequential holds no nn.Linear layer")

    sizes = [layers[0].in_features] + [layer.out_features for layer in layers]
    offsets = np.cumsum([0] + sizes).tolist()
    n_nodes = offsets[-1]
    device = layers[0].weight.device
    dtype = torch.get_default_dtype()
    weight = torch.zeros(1, n_nodes, n_nodes, dtype=dtype)
    mask = torch.zeros(1, n_nodes, n_nodes, dtype=torch.bool)
    bias = torch.zeros(1, n_nodes, dtype=dtype)
    activations = ["identity"] * sizes[0]
    with torch.no_grad():
        for layer_index, (layer, act) in enumerate(zip(layers, layer_activations)):
            src = slice(offsets[layer_index], offsets[layer_index + 1])
            dst = slice(offsets[layer_index + 1], offsets[layer_index + 2])
            weight[0, src, dst] = layer.weight.detach().to("cpu", dtype).T
            layer_mask = getattr(layer, "mask", None)
            mask[0, src, dst] = True if layer_mask is None else layer_mask.detach().to("cpu", torch.bool).T
            if zeros_are_pruned:
                mask[0, src, dst] &= weight[0, src, dst] != 0
            weight[0, src, dst] *= mask[0, src, dst]
            if layer.bias is not None:
                bias[0, dst] = layer.bias.detach().to("cpu", dtype)
            activations += [act or "identity"] * layer.out_features
    # Built on the CPU and moved as a whole: DagNet creates its normalization buffers there.
    return DagNet(sizes[0], sizes[-1], weight, mask, bias, activations).to(device)


def to_sequential(net: DagNet) -> nn.Sequential:
    """An ``nn.Sequential`` computing the same function as a *layered* population-1 network.

    Layered means every live synapse joins consecutive levels, all nodes of a level share one
    activation and the outputs form the last level, in order. Normalization is folded into the
    weights first; absent synapses between consecutive levels become zero weights, so the
    Sequential holds at least ``num_params`` parameters. Raises :class:`InputError` otherwise.
    """
    if net.population_size != 1:
        raise InputError("to_sequential() needs a network with population size 1")
    net = net.fold_normalization()
    mask = net.mask[0].cpu().numpy()
    level = _levels(mask, net.n_in)
    src, dst = np.nonzero(mask)
    if np.any(level[dst] != level[src] + 1):
        raise InputError("to_sequential() needs a layered network: a synapse skips a level")
    depth = int(level.max())
    outputs = np.arange(net.n_nodes - net.n_out, net.n_nodes)
    if np.any(level[: net.n_nodes - net.n_out] == depth) or np.any(level[outputs] != depth):
        raise InputError("to_sequential() needs the outputs to form the last level on their own")
    weight = net.weight.detach()[0] * net.mask[0]
    bias = net.bias.detach()[0]
    modules: list[nn.Module] = []
    previous = np.arange(net.n_in)
    for lvl in range(1, depth + 1):
        nodes = np.nonzero(level == lvl)[0]
        names = {net.activations[i] for i in nodes}
        if len(names) != 1:
            raise InputError(
                f"to_sequential() needs one activation per level; level {lvl} has {sorted(names)}"
            )
        linear = nn.Linear(len(previous), len(nodes)).to(weight.device, weight.dtype)
        with torch.no_grad():
            linear.weight.copy_(weight[previous][:, nodes].T)
            linear.bias.copy_(bias[nodes])
        modules.append(linear)
        name = names.pop()
        if name != "identity":
            modules.append(NAME_TO_MODULE[name]())
        previous = nodes
    return nn.Sequential(*modules)


# ---------------------------------------------------------------------- networkx
def to_networkx(net: DagNet, variant: int = 0) -> nx.DiGraph:
    """One variant as a ``networkx.DiGraph`` whose nodes are the node indices ``0..N-1``.

    Node attributes: ``role``, ``activation``, ``bias`` (float) and ``level`` (in this variant);
    edges are the live synapses with attribute ``weight``. Graph attributes: ``n_in``, ``n_out``,
    the normalization vectors ``in_shift``, ``in_scale``, ``out_shift``, ``out_scale`` as lists
    and ``info`` (a copy of ``net.info``).
    """
    if not 0 <= variant < net.population_size:
        raise InputError(f"variant {variant} out of range for population size {net.population_size}")
    mask = net.mask[variant].cpu().numpy()
    level = _levels(mask, net.n_in)
    bias = net.bias.detach()[variant].cpu().tolist()
    graph = nx.DiGraph(
        n_in=net.n_in,
        n_out=net.n_out,
        in_shift=net.in_shift.cpu().tolist(),
        in_scale=net.in_scale.cpu().tolist(),
        out_shift=net.out_shift.cpu().tolist(),
        out_scale=net.out_scale.cpu().tolist(),
        info=dict(net.info),
    )
    for i in range(net.n_nodes):
        graph.add_node(
            i, role=net.roles[i], activation=net.activations[i], bias=float(bias[i]), level=int(level[i])
        )
    src, dst, w = net.edges(variant)
    graph.add_weighted_edges_from(zip(src.tolist(), dst.tolist(), w.tolist()))
    return graph


def _node_attr(graph: nx.DiGraph, node: Hashable, name: str) -> Any:
    try:
        return graph.nodes[node][name]
    except KeyError:
        raise InputError(f"graph node {node!r} has no {name!r} attribute") from None


def from_networkx(graph: nx.DiGraph) -> DagNet:
    """Build a population-1 :class:`DagNet` from a graph shaped like :func:`to_networkx`'s output.

    Nodes need ``role``, ``activation`` and ``bias``; edges need ``weight``. Inputs come first and
    outputs last, each in the graph's node order (which fixes the input and output order); the
    other nodes follow a topological order, ties broken by graph order, so ``from_networkx(
    to_networkx(net))`` reproduces ``net`` exactly. ``level`` is ignored (it is derived). Graph
    attributes ``n_in``/``n_out`` are checked when present; the normalization vectors default
    to the identity. A cycle, a synapse into an input or against the output order, or a missing
    attribute raises :class:`InputError`.
    """
    if not isinstance(graph, nx.DiGraph) or graph.is_multigraph():
        raise InputError(f"from_networkx() needs a networkx.DiGraph, got {type(graph).__name__}")
    if not nx.is_directed_acyclic_graph(graph):
        raise InputError("the graph has a cycle: a feed-forward network must be a DAG")
    nodes = list(graph.nodes)
    position = {node: i for i, node in enumerate(nodes)}
    roles = {node: _node_attr(graph, node, "role") for node in nodes}
    for node, role in roles.items():
        if role not in ROLES:
            raise InputError(f"graph node {node!r} has unknown role {role!r}; roles are {', '.join(ROLES)}")
    inputs = [n for n in nodes if roles[n] == "input"]
    outputs = [n for n in nodes if roles[n] == "output"]
    hidden_graph = graph.subgraph(n for n in nodes if roles[n] not in ("input", "output"))
    hidden = list(nx.lexicographical_topological_sort(hidden_graph, key=position.__getitem__))
    for name, count in (("n_in", len(inputs)), ("n_out", len(outputs))):
        if name in graph.graph and int(graph.graph[name]) != count:
            raise InputError(
                f"graph attribute {name}={graph.graph[name]} but the graph has {count} such nodes"
            )
    if not inputs or not outputs:
        raise InputError("the graph needs at least one 'input' and one 'output' node")
    order = inputs + hidden + outputs
    index = {node: i for i, node in enumerate(order)}
    n = len(order)
    weight = torch.zeros(1, n, n, dtype=torch.float64)
    mask = torch.zeros(1, n, n, dtype=torch.bool)
    bias = torch.zeros(1, n, dtype=torch.float64)
    activations = []
    for node in order:
        activation = _node_attr(graph, node, "activation")
        if not isinstance(activation, str):
            raise InputError(f"graph node {node!r} has a non-string activation {activation!r}")
        activations.append(check_activation(activation))
        if roles[node] != "input":
            bias[0, index[node]] = _as_float(_node_attr(graph, node, "bias"), f"bias of node {node!r}")
    for u, v, data in graph.edges(data=True):
        if "weight" not in data:
            raise InputError(f"graph edge {u!r} -> {v!r} has no 'weight' attribute")
        i, j = index[u], index[v]
        if roles[v] == "input":
            raise InputError(f"graph edge {u!r} -> {v!r} enters an input node")
        if i >= j:
            raise InputError(
                f"graph edge {u!r} -> {v!r} goes against the node order (outputs last, in graph order)"
            )
        weight[0, i, j] = _as_float(data["weight"], f"weight of edge {u!r} -> {v!r}")
        mask[0, i, j] = True
    net = DagNet(
        len(inputs),
        len(outputs),
        weight.to(torch.get_default_dtype()),
        mask,
        bias.to(torch.get_default_dtype()),
        activations,
        [roles[node] for node in order],
    )
    attrs = graph.graph
    try:
        vectors = [
            torch.as_tensor(attrs.get(name, default), dtype=torch.float64)
            for name, default in (
                ("in_shift", [0.0] * net.n_in),
                ("in_scale", [1.0] * net.n_in),
                ("out_shift", [0.0] * net.n_out),
                ("out_scale", [1.0] * net.n_out),
            )
        ]
    except (TypeError, ValueError, RuntimeError) as exc:
        raise InputError(f"graph normalization attributes are not numeric vectors: {exc}") from None
    net.set_normalization(*vectors)
    info = attrs.get("info", {})
    if not isinstance(info, dict):
        raise InputError(f"graph attribute 'info' must be a dict, got {type(info).__name__}")
    net.info = dict(info)
    return net


def _as_float(value: Any, what: str) -> float:
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{what} is not a number: {value!r}") from None
    if not np.isfinite(result):
        raise InputError(f"{what} is not finite: {result}")
    return result


# ---------------------------------------------------------------------- standalone module
def activation_groups(net: DagNet, nodes: list[int]) -> list[tuple[str, int, int]]:
    """Runs of equal activation among ``nodes``: ``(name, start, stop)`` positions, in order, so a
    level applies each activation once to a slice instead of once per node."""
    groups: list[tuple[str, int, int]] = []
    for p, node in enumerate(nodes):
        name = net.activations[node]
        if groups and groups[-1][0] == name:
            groups[-1] = (name, groups[-1][1], p + 1)
        else:
            groups.append((name, p, p + 1))
    return groups


def _activate(name: str, t: torch.Tensor) -> torch.Tensor:
    """The activation called ``name`` (same names and functions as ``activations.ACTIVATIONS``)."""
    if name == "identity":
        return t
    if name == "tanh":
        return torch.tanh(t)
    if name == "relu":
        return torch.relu(t)
    if name == "sigmoid":
        return torch.sigmoid(t)
    if name == "softplus":
        return nn.functional.softplus(t)
    if name == "elu":
        return nn.functional.elu(t)
    raise ValueError("unknown activation " + name)


class DagLevel(nn.Module):
    """One level of a :class:`DagModule`: a dense ``(n_level, n_previous)`` block and activations.

    ``names[g]`` is applied to output columns ``starts[g]:ends[g]``.
    """

    def __init__(
        self, weight: torch.Tensor, bias: torch.Tensor, groups: Sequence[tuple[str, int, int]]
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone().contiguous())
        self.bias = nn.Parameter(bias.detach().clone().contiguous())
        self.names: List[str] = [g[0] for g in groups]
        self.starts: List[int] = [int(g[1]) for g in groups]
        self.ends: List[int] = [int(g[2]) for g in groups]

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """``(B, n_previous) -> (B, n_level)``."""
        pre = torch.addmm(self.bias, h, self.weight.t())
        if len(self.names) == 1:
            return _activate(self.names[0], pre)
        parts: List[torch.Tensor] = []
        for g in range(len(self.names)):
            parts.append(_activate(self.names[g], pre[:, self.starts[g] : self.ends[g]]))
        return torch.cat(parts, dim=1)


class DagModule(nn.Module):
    """A plain torch module computing a population-1 DagNet's function (build with :func:`to_module`).

    Nodes are grouped by level; level ``L`` reads the concatenation of the inputs and all
    earlier levels through one dense block, so absent synapses are stored as zeros
    (``n_params`` records the DagNet's parameter count). TorchScript-able.
    """

    def __init__(
        self, n_in: int, n_out: int, levels: Sequence[DagLevel], out_index: torch.Tensor, n_params: int
    ) -> None:
        super().__init__()
        self.n_in = int(n_in)
        self.n_out = int(n_out)
        self.n_params = int(n_params)
        self.levels = nn.ModuleList(levels)
        self.register_buffer("out_index", out_index.to(torch.long))
        n_total = n_in + sum(level.weight.shape[0] for level in levels)
        # The outputs are the last columns in order (the usual case): slice instead of gather.
        self.outputs_last = bool(torch.equal(self.out_index.cpu(), torch.arange(n_total - n_out, n_total)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, n_in) -> (B, n_out)``."""
        if x.dim() != 2 or x.shape[1] != self.n_in:
            raise ValueError(f"expected input of shape (B, {self.n_in}), got {list(x.shape)}")
        h = x
        for level in self.levels:
            h = torch.cat([h, level(h)], dim=1)
        if self.outputs_last:
            return h[:, h.shape[1] - self.n_out :]
        return h.index_select(1, self.out_index)


def to_module(net: DagNet) -> DagModule:
    """A standalone :class:`DagModule` equal to ``net.compact().fold_normalization()``.

    Needs population size 1. Dead neurons are removed and the normalization is folded in first,
    so the module holds no affine maps; within a level, nodes are grouped by activation.
    """
    if net.population_size != 1:
        raise InputError("to_module() needs a network with population size 1")
    n_params = net.num_params()
    net = net.compact().fold_normalization()
    weight = (net.weight.detach()[0] * net.mask[0]).clone()
    bias = net.bias.detach()[0].clone()
    level = net.levels()
    act_rank = {a: i for i, a in enumerate(sorted(set(net.activations)))}
    order = sorted(range(net.n_nodes), key=lambda i: (level[i], act_rank[net.activations[i]], i))
    position = {node: p for p, node in enumerate(order)}
    blocks: list[DagLevel] = []
    done = net.n_in  # nodes of levels < lvl, in order[:done]
    for lvl in range(1, int(level.max(initial=0)) + 1):
        nodes = [i for i in order if level[i] == lvl]
        if not nodes:
            continue
        previous = torch.as_tensor(order[:done], device=weight.device)
        current = torch.as_tensor(nodes, device=weight.device)
        blocks.append(DagLevel(weight[previous][:, current].T, bias[current], activation_groups(net, nodes)))
        done += len(nodes)
    out_index = torch.as_tensor([position[o] for o in net.output_nodes], device=weight.device)
    return DagModule(net.n_in, net.n_out, blocks, out_index, n_params)
