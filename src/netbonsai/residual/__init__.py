"""Self-optimising residual networks (paper 004): prune whole residual blocks by a per-block
efficiency metric and grow networks by zero-initialised blocks (AutoGrow, Wen et al. 2020).

- :mod:`.blocks`: removable blocks with an identity skip (:class:`ResidualBlock`), the
  :class:`ResidualMLP` and :class:`ResidualCNN` built from them, :func:`find_blocks` (ours and
  torchvision-style blocks), block parameter and FLOP counts, and :func:`skipped` (the lesion);
- :mod:`.efficiency`: per-block scores (``lesion``, ``norm_ratio``, ``cosine``, ``taylor``,
  ``taylor2``, ``cka``; the cheap ones from one forward and one backward pass), :func:`efficiency` (score per
  parameter or per FLOP) and :func:`spearman` to compare a cheap measure with the lesion;
- :mod:`.edits`: :func:`remove_blocks` (physically gone: the module stores fewer parameters),
  :func:`insert_block` (zero-initialised: the function is unchanged; or random) and
  :func:`new_block_like`;
- :mod:`.growth`: AutoGrow's round-robin growth and its convergent stopping policy;
- :mod:`.io`: :func:`save_residual_cnn` / :func:`load_residual_cnn` (a pruned or grown CNN);
- :mod:`.loop`: :func:`prune_blocks` (remove the least efficient block, retrain, repeat while
  the validation loss stays within a tolerance), :func:`grow_blocks` (round robin to a budget),
  :func:`residual_mlp_to_dag` (a residual MLP as a DagNet: saving, polish, export, drawing).
  ``methods.residual`` wraps them as the ``residual`` method; ``experiments.residual_mnist`` is
  ``netbonsai reproduce residual-mnist``.

Layering: ``residual`` sits beside ``grow``, ``prune`` and ``gates``; it imports ``nets``,
``data`` and ``train`` only.
"""

from .blocks import (
    BlockRef, DownsampleBlock, ResidualBlock, ResidualCNN, ResidualMLP, block_flops, block_params, conv_body,
    find_blocks, flops_per_block, is_removable, mlp_body, skipped,
)
from .edits import count_params, insert_block, new_block_like, remove_blocks, stage_containers
from .efficiency import MEASURES, block_scores, efficiency, spearman
from .growth import ConvergentPolicy, blocks_per_stage, grow_round_robin, round_robin
from .io import cnn_spec, load_residual_cnn, save_residual_cnn
from .loop import GrowResult, PruneResult, grow_blocks, prune_blocks, residual_mlp_to_dag, validation

__all__ = [
    "BlockRef", "ConvergentPolicy", "DownsampleBlock", "MEASURES", "ResidualBlock", "ResidualCNN", "ResidualMLP",
    "block_flops", "block_params", "cnn_spec", "load_residual_cnn", "save_residual_cnn", "block_scores", "blocks_per_stage", "conv_body", "count_params", "efficiency",
    "find_blocks", "flops_per_block", "grow_round_robin", "insert_block", "is_removable", "mlp_body",
    "new_block_like", "remove_blocks", "round_robin", "skipped", "spearman", "stage_containers",
    "GrowResult", "PruneResult", "grow_blocks", "prune_blocks", "residual_mlp_to_dag", "validation",
]
