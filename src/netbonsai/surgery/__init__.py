"""Network surgery and the Surgeon (Schiessler et al. 2021, "Neural network surgery", paper 002).

- :mod:`.mlp`: a layered MLP as a plain ``nn.Sequential`` (:func:`parse_mlp`, :func:`build_mlp`,
  :func:`make_mlp`, conversions to and from a DagNet keeping its standardisation);
- :mod:`.edits`: the surgeries (add or remove a layer, add neurons, narrow or split a layer
  through its SVD), each returning a new network in a :class:`SurgeryResult` that says whether
  its function is unchanged; :func:`output_change` and the Lipschitz :func:`change_bound`;
- :mod:`.recommend`: per hidden layer the singular values of its outgoing kernel, the removable
  count (thresholds or BIC) and the probabilities of each edit; the candidate edits of a cycle;
- :mod:`.population`: same-shape MLPs trained as one population (:class:`StackedMLP`);
- :mod:`.surgeon`: the Surgeon, which branches edited children during training
  (:func:`run_surgeon`); ``methods.surgeon`` wraps it as the ``surgeon`` method.

Layering: ``surgery`` sits beside ``grow``, ``prune`` and ``gates``; it imports ``nets``,
``data``, ``train``, the executor and ``gates.convert`` only.
"""

from .edits import (
    SurgeryResult, add_layer, add_neurons, change_bound, output_change, remove_layer, svd_narrow, svd_split,
)
from .mlp import (
    MlpParts, activation_name, activation_names, build_mlp, copy_mlp, count_params, dag_from_mlp,
    hidden_widths, layer_sizes, make_mlp, mlp_from_dag, parse_mlp, shape_key,
)
from .population import StackedMLP
from .recommend import LayerAdvice, Modification, bic_rank, modifications, plan_children, recommend, singular_values
from .state import mlp_from_state, mlp_to_state
from .surgeon import SurgeonResult, SurgeonSettings, run_surgeon, score

__all__ = [
    "LayerAdvice", "MlpParts", "Modification", "StackedMLP", "SurgeonResult", "SurgeonSettings", "SurgeryResult",
    "activation_name", "activation_names", "add_layer", "add_neurons", "bic_rank", "build_mlp", "change_bound",
    "copy_mlp", "count_params", "dag_from_mlp", "hidden_widths", "layer_sizes", "make_mlp", "mlp_from_dag",
    "mlp_from_state", "mlp_to_state", "modifications", "output_change", "parse_mlp", "plan_children",
    "recommend", "remove_layer", "run_surgeon", "score", "shape_key", "singular_values", "svd_narrow", "svd_split",
]
