"""Layered MLPs as plain ``nn.Sequential``: read one into its parts, rebuild it, describe it.

A surgery (:mod:`netbonsai.surgery.edits`) edits one Linear layer and the next; it needs the
network as a list of Linears each with its activation, and the parameter-free maps around them
(a ``Flatten`` and the DagNet's standardisation as :class:`~netbonsai.gates.convert.Affine`) kept
apart so that they pass through unchanged. :func:`parse_mlp` reads that form (or says, with the
module's position, why a network is not in it) and :func:`build_mlp` writes it back.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral

import torch
from torch import nn

from ..errors import InputError
from ..gates.convert import Affine, dag_from_sequential, sequential_from_dag
from ..nets.activations import MODULE_TO_NAME, NAME_TO_MODULE, check_activation
from ..nets.dag import DagNet

# Arguments under which an activation module computes the function its DagNet name stands for.
_DEFAULT_ARGS: dict[type, dict[str, float]] = {
    nn.ELU: {"alpha": 1.0},
    nn.Softplus: {"beta": 1.0, "threshold": 20.0},
}


@dataclass
class MlpParts:
    """A layered MLP taken apart: ``prefix`` (parameter-free maps before the first Linear:
    ``nn.Flatten``, :class:`Affine`), ``linears``, one activation module per Linear
    (``nn.Identity()`` where none follows it) and ``suffix`` (:class:`Affine` maps at the end)."""

    prefix: list[nn.Module]
    linears: list[nn.Linear]
    activations: list[nn.Module]
    suffix: list[nn.Module]


def _flat(model: nn.Module, name: str = "") -> list[tuple[str, nn.Module]]:
    """``(position, module)`` leaves of a nested ``nn.Sequential``; positions are dotted paths."""
    out: list[tuple[str, nn.Module]] = []
    for key, child in model.named_children():
        path = f"{name}.{key}" if name else key
        out.extend(_flat(child, path) if isinstance(child, nn.Sequential) else [(path, child)])
    return out


def _check_default_args(module: nn.Module, position: str) -> None:
    for attr, default in _DEFAULT_ARGS.get(type(module), {}).items():
        if float(getattr(module, attr)) != default:
            raise InputError(f"module {position} ({module!r}) has {attr}={getattr(module, attr)}; "
                             f"only the default {attr}={default} is supported")


def parse_mlp(net: nn.Module) -> MlpParts:
    """The parts of ``net``, an ``nn.Sequential`` (nested ones read flat) of ``nn.Linear`` layers
    each followed by at most one activation (``netbonsai.nets.activations.MODULE_TO_NAME``), with
    an optional ``Flatten`` / :class:`Affine` prefix and :class:`Affine` suffix. Anything else
    raises :class:`InputError` naming the module's position. The parts are ``net``'s own modules."""
    if not isinstance(net, nn.Sequential):
        raise InputError(f"a layered MLP must be an nn.Sequential, got {type(net).__name__}")
    parts = MlpParts([], [], [], [])
    for position, module in _flat(net):
        kind = type(module)
        if kind is nn.Identity:
            continue
        if kind is nn.Linear:
            if parts.suffix:
                raise InputError(f"module {position} (Linear) comes after the closing Affine map")
            if module.in_features == 0 or module.out_features == 0:
                raise InputError(f"module {position} ({module!r}) has zero features")
            if parts.linears and module.in_features != parts.linears[-1].out_features:
                raise InputError(f"module {position} (Linear) takes {module.in_features} features but the "
                                 f"previous Linear gives {parts.linears[-1].out_features}")
            parts.linears.append(module)
            parts.activations.append(nn.Identity())
        elif kind in MODULE_TO_NAME:
            if not parts.linears or parts.suffix:
                where = "before the first Linear" if not parts.linears else "after the closing Affine map"
                raise InputError(f"module {position} ({kind.__name__}) comes {where}")
            if type(parts.activations[-1]) is not nn.Identity:
                raise InputError(f"module {position} ({kind.__name__}) is a second activation in a row; "
                                 "each Linear may be followed by at most one activation")
            _check_default_args(module, position)
            parts.activations[-1] = module
        elif kind is Affine or (kind is nn.Flatten and not parts.linears):
            (parts.suffix if parts.linears else parts.prefix).append(module)
        else:
            raise InputError(f"module {position} ({kind.__name__}) is not part of a layered MLP: only "
                             "nn.Linear, activations, a leading Flatten and Affine maps at either end")
    if not parts.linears:
        raise InputError("the network holds no nn.Linear layer")
    return parts


def build_mlp(parts: MlpParts) -> nn.Sequential:
    """``prefix, Linear, activation, ..., Linear, activation, suffix`` (identity activations left
    out) from ``parts``' own modules (nothing is copied)."""
    if len(parts.linears) != len(parts.activations) or not parts.linears:
        raise InputError(f"an MLP needs one activation per Linear and at least one Linear, got "
                         f"{len(parts.linears)} Linears and {len(parts.activations)} activations")
    modules: list[nn.Module] = list(parts.prefix)
    for linear, activation in zip(parts.linears, parts.activations):
        modules.append(linear)
        if type(activation) is not nn.Identity:
            modules.append(activation)
    return nn.Sequential(*modules, *parts.suffix)


def copy_mlp(net: nn.Module) -> nn.Sequential:
    """A deep copy of ``net`` in canonical form (flat, no ``nn.Identity``)."""
    return build_mlp(copy.deepcopy(parse_mlp(net)))


def layer_sizes(net: nn.Module) -> list[int]:
    """``[n_in, hidden widths..., n_out]`` of the Linear layers."""
    linears = parse_mlp(net).linears
    return [linears[0].in_features] + [linear.out_features for linear in linears]


def hidden_widths(net: nn.Module) -> list[int]:
    """The widths of the hidden layers (every Linear's output but the last)."""
    return layer_sizes(net)[1:-1]


def count_params(net: nn.Module) -> int:
    """Weights and biases of the Linear layers (the Affine maps hold buffers, not parameters)."""
    return sum(linear.weight.numel() + (0 if linear.bias is None else linear.bias.numel())
               for linear in parse_mlp(net).linears)


def activation_name(module: nn.Module) -> str:
    """The DagNet name of an activation module (``"identity"`` for ``nn.Identity``)."""
    return MODULE_TO_NAME[type(module)]


def activation_names(net: nn.Module) -> list[str]:
    """One activation name per Linear, ``"identity"`` where none follows it."""
    return [activation_name(a) for a in parse_mlp(net).activations]


def shape_key(net: nn.Module) -> tuple:
    """A hashable description of ``net``'s architecture: equal keys mean the same layer sizes,
    activations and prefix / suffix map types, so the networks can be stacked into a population."""
    parts = parse_mlp(net)
    return (
        tuple(type(m).__name__ for m in parts.prefix),
        tuple(layer_sizes(net)),
        tuple(activation_name(a) for a in parts.activations),
        tuple(type(m).__name__ for m in parts.suffix),
    )


def make_mlp(sizes: Sequence[int], activation: str = "relu", seed: int = 0,
             output_activation: str = "identity") -> nn.Sequential:
    """A fresh MLP ``sizes = [n_in, hidden..., n_out]`` with ``activation`` after every hidden
    layer, initialised by ``nn.Linear``'s default from ``seed`` without touching the global RNG
    (the same seed gives the same network, whatever ran before)."""
    if (isinstance(sizes, (str, bytes)) or len(sizes) < 2
            or not all(isinstance(s, Integral) and not isinstance(s, bool) and s >= 1 for s in sizes)):
        raise InputError(f"MLP sizes must be at least two positive integers, got {list(sizes)}")
    check_activation(activation)
    check_activation(output_activation)
    modules: list[nn.Module] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for index, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
            modules.append(nn.Linear(int(n_in), int(n_out)))
            name = activation if index < len(sizes) - 2 else output_activation
            if name != "identity":
                modules.append(NAME_TO_MODULE[name]())
    return nn.Sequential(*modules)


def mlp_from_dag(dag: DagNet) -> nn.Sequential:
    """A layered population-1 DagNet as an MLP; its standardisation stays outside the weights as
    :class:`Affine` maps (:func:`~netbonsai.gates.convert.sequential_from_dag`)."""
    return build_mlp(parse_mlp(sequential_from_dag(dag)))


def dag_from_mlp(net: nn.Module) -> DagNet:
    """The DagNet of an MLP, its :class:`Affine` maps becoming the DagNet's standardisation (in
    torch's default dtype, as :func:`netbonsai.nets.from_sequential` builds it)."""
    dag = dag_from_sequential(build_mlp(parse_mlp(net)))
    if dag is None:
        raise InputError("this MLP cannot become a DagNet: only a leading Flatten and one Affine map at "
                         "either end may surround its layers")
    return dag
