"""Weight pruning for DagNet and masked modules: criteria (which weights) and schedules (how many, when).

A small functional surface in the spirit of ``torch.nn.utils.prune``::

    from netbonsai.nets.masked import make_prunable
    from netbonsai.prune import prune_step, run_schedule, retrainer, classification_evaluator

    model = make_prunable(model)                      # or a DagNet (population size 1)
    prune_step(model, "magnitude-blinded", 0.5)       # remove half of the live weights
    result = run_schedule(model, "obd", "relative:0.2", data=(x, y), target_sparsity=0.9,
                          retrain=retrainer(x, y, epochs=1), evaluate=classification_evaluator(xv, yv))

Criteria see the model as a list of prunable groups (one per layer; a DagNet's synapses grouped
by the level of their target node), see :mod:`netbonsai.prune.groups`.

Leaving netbonsai: :func:`remove` makes the pruning permanent (plain layers whose ``state_dict``
loads into the original class); :func:`channel_prune` removes whole conv channels (structured)
and compacts to a smaller dense CNN.
"""

from .criteria import (
    Criterion,
    CURVATURES,
    EXACT_HESSIAN_MAX,
    METHODS,
    Saliency,
    check_method,
    live_table,
    prune_step,
    remove_,
    resolve_amount,
    saliency,
    select,
    select_bucket,
)
from .channels import IMPORTANCES, channel_importance, channel_prune
from .curvature import exact_diagonal, fisher_diagonal
from .groups import PrunableGroup, live_params, live_weights, prunable_groups, remove_positions_
from .remove import remove
from .schedules import (
    KINDS,
    STOP_REASONS,
    Schedule,
    ScheduleResult,
    classification_evaluator,
    parse_schedule,
    retrainer,
    run_schedule,
)

__all__ = [
    "CURVATURES",
    "EXACT_HESSIAN_MAX",
    "IMPORTANCES",
    "KINDS",
    "METHODS",
    "STOP_REASONS",
    "PrunableGroup",
    "Saliency",
    "Schedule",
    "ScheduleResult",
    "channel_importance",
    "channel_prune",
    "Criterion",
    "check_method",
    "classification_evaluator",
    "exact_diagonal",
    "fisher_diagonal",
    "live_params",
    "live_table",
    "live_weights",
    "parse_schedule",
    "prunable_groups",
    "prune_step",
    "remove",
    "remove_",
    "remove_positions_",
    "resolve_amount",
    "retrainer",
    "run_schedule",
    "saliency",
    "select",
    "select_bucket",
]
