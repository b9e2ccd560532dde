"""Paper 001 on the Reber grammar: pruning recurrent networks (Fig. 2b / 5) and random structural
priors with structural performance prediction (section 4.3, Table 1, the R^2 figures).

Both experiments are sets of independent trainings. They go through one executor (in-process, a
local process pool or Ray) as jobs; every finished job is checkpointed, so ``resume`` redoes only
what was running when a run was killed. Inside a job the trainings are batched: the 30 pruned
variants of one base network are retrained as one population, and the random structures of one
cell are trained ``population`` at a time, padded to a common shape (``MaskedRecurrent``).

Decisions never look at the test strings: the base networks train for a fixed number of epochs
and the pruning levels are fixed; test accuracy is only reported.

Each run is a :class:`netbonsai.runs.RunContext` (kind ``reber-rnn-pruning`` or
``reber-structure-prediction``): its executor runs the jobs, and result.json records the
``environment`` the figures were measured in.
"""

from __future__ import annotations

from .reber_common import (CELL_NAMES, LEVELS, PAPER_BASE, PAPER_R2, PARTS, ReberTraining, _reber, _run_jobs,
                           _submit_jobs, _test_accuracy, _train)
from .reber_pruning import (PruningSettings, _cell_event, _pruning_job, prune_variants, pruning_settings,
                            reproduce_reber_rnn_pruning)
from .reber_structures import (StructureSettings, _structures_job, reproduce_reber_structure_prediction,
                               shape_groups, structure_graphs, structure_population, structure_settings)

__all__ = [
    "CELL_NAMES", "LEVELS", "PAPER_BASE", "PAPER_R2", "PARTS", "PruningSettings", "ReberTraining", "StructureSettings",
    "prune_variants", "pruning_settings", "reproduce_reber_rnn_pruning", "reproduce_reber_structure_prediction",
    "shape_groups", "structure_graphs", "structure_population", "structure_settings", "_cell_event", "_pruning_job",
    "_reber", "_run_jobs", "_structures_job", "_submit_jobs", "_test_accuracy", "_train",
]
