"""Networks: DagNet (neuron-level sparse DAG with a population dimension) and its conversions."""

from .convert import DagModule, from_networkx, from_sequential, to_module, to_networkx, to_sequential
from .dag import ROLES, DagNet
from .export import export_onnx, export_torchscript
from .io import load, save
from .normalization import standardize_for
from .recurrent import MaskedRecurrent, stack_members
from .structure import LayeredStructure

__all__ = [
    "ROLES",
    "DagNet",
    "LayeredStructure",
    "MaskedRecurrent",
    "stack_members",
    "standardize_for",
    "DagModule",
    "from_networkx",
    "from_sequential",
    "to_module",
    "to_networkx",
    "to_sequential",
    "load",
    "save",
    "export_onnx",
    "export_torchscript",
]
