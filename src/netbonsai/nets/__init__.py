"""Networks: DagNet (neuron-level sparse DAG with a population dimension) and its conversions."""

from .dag import ROLES, DagNet
from .normalization import standardize_for

__all__ = ["ROLES", "DagNet", "standardize_for"]
