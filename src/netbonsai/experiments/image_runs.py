"""The image-task runs behind ``netbonsai grow|baseline|compare``: the names the command line and tests import.

Each run validates its inputs before it creates anything, writes every output atomically,
checkpoints after every search event, and resumes from the last checkpoint when asked. The
work is split by job:

- :mod:`.run_options`: ``RunOptions`` and the ``--set`` routing (search, baselines, methods);
- :mod:`.image_run`: the shared pieces (config, run directory, search, saved networks, plots);
- :mod:`.image_baselines`: the dense sweep's and the magnitude-pruning jobs, their files and figures;
- :mod:`.image_grow`: ``grow`` and ``baseline``; :mod:`.image_compare`: ``compare`` and ``--seeds``;
- :mod:`netbonsai.analysis.comparison_text`: the reports' prose.
"""

from __future__ import annotations

from ..analysis.comparison_text import seeds_summary
from ..methods.front import final_front, polish
from ..runs import Reporter
from .image_baselines import (collect_dense, collect_magnitude, dense_file, load_dense, load_magnitude,
                              magnitude_summary, submit_dense, submit_magnitude)
from .image_compare import (_pooled_budget, at_train_loss, matched_epochs, pool_comparisons, run_compare,
                            run_compare_seeds, training_budget)
from .image_grow import run_baseline, run_grow
from .image_run import LOSS_UNITS, RunSummary, _model_info, load_model, prepare, run_search, save_front
from .run_options import BASELINE_OVERRIDES, RunOptions, search_only_keys, split_overrides

__all__ = [
    "BASELINE_OVERRIDES", "LOSS_UNITS", "Reporter", "RunOptions", "RunSummary", "at_train_loss", "collect_dense",
    "collect_magnitude", "dense_file", "final_front", "load_dense", "load_magnitude", "load_model",
    "magnitude_summary", "matched_epochs", "polish", "pool_comparisons", "prepare", "run_baseline", "run_compare",
    "run_compare_seeds", "run_grow", "run_search", "save_front", "search_only_keys", "seeds_summary",
    "split_overrides", "submit_dense", "submit_magnitude", "training_budget", "_model_info", "_pooled_budget",
]
