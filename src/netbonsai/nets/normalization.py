"""Data-driven standardisation of a DagNet's inputs and outputs (training preconditioning)."""

from __future__ import annotations

import torch

from .dag import DagNet


def standardize_for(net: DagNet, x: torch.Tensor, y: torch.Tensor) -> DagNet:
    """Set ``net``'s fixed affine maps from training data so its weights see unit-scale data.

    Inputs are shifted by their mean and divided by their standard deviation; outputs are
    de-standardised with the targets' mean and standard deviation. Small tanh networks on
    brightness differences (std about 0.06) train far faster this way; the maps fold into the
    weights (:meth:`DagNet.fold_normalization`) without adding parameters. Call it on a freshly
    initialised network: on a trained one it changes the function.
    """
    in_std = x.std(dim=0)
    in_scale = torch.where(in_std > 1e-8, in_std, torch.ones_like(in_std))  # a constant input stays as it is
    if not y.is_floating_point() or y.dim() == 1:  # class labels: the outputs are logits, left unscaled
        out_mean = torch.zeros(net.n_out, device=x.device)
        return net.set_normalization(x.mean(dim=0), in_scale, out_mean, torch.ones_like(out_mean))
    out_scale = y.std(dim=0).clamp_min(1e-8)
    return net.set_normalization(x.mean(dim=0), in_scale, y.mean(dim=0), out_scale)
