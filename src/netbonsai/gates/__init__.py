"""Tri-state ReLU gates (Srinivas & Babu 2016, paper 003): learn a network's width and depth in
one differentiable training run, then collapse it into the small plain network it stands for.

- :func:`gate` puts a :class:`TriStateReLU` (``w`` per unit, ``d`` per layer) in place of each
  hidden ReLU of a Sequential network (or of a layered ReLU DagNet);
- :class:`GatePenalty` / :func:`gate_penalty`: the binarising and complexity regularisers with
  the paper's default strengths (``neurons`` or ``params`` complexity);
- :func:`train_gated`: Adam with the gates projected onto [0, 1] after every step;
- :func:`collapse`: binarise, remove dead units, merge linear layers where it pays, return a
  plain module (and a DagNet for MLPs).

Layering: ``gates`` sits beside ``grow`` and ``prune``; it imports ``nets``, ``data`` and
``train`` only, and ``methods.gates`` wraps it as the ``gates`` method.
"""

from .collapse import Collapsed, binarized, collapse
from .convert import Affine, dag_from_sequential, sequential_from_dag
from .layout import Layout, Site, read_layout
from .objective import COMPLEXITY, GatePenalty, default_lambdas, gate_penalty
from .training import train_gated
from .tristate import TriStateReLU, binarize_gates, clamp_gates, gate, gate_modules, gate_parameters

__all__ = [
    "Affine", "COMPLEXITY", "Collapsed", "GatePenalty", "Layout", "Site", "TriStateReLU", "binarize_gates",
    "binarized", "clamp_gates", "collapse", "dag_from_sequential", "default_lambdas", "gate", "gate_modules",
    "gate_parameters", "gate_penalty", "read_layout", "sequential_from_dag", "train_gated",
]
