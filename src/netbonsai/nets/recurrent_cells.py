"""The recurrent cells of MaskedRecurrent: their gate counts and one layer's loop over time.

``CELLS`` names the cells (``tanh``, ``relu``, ``lstm``, ``gru``) with their number of gates, and
:func:`recur` runs one hidden layer of a population through time once its input projections are
known, with the equations of ``torch.nn.RNN`` / ``LSTM`` / ``GRU`` (an LSTM's gates reordered to
i, f, o, g by the caller). It is the hot inner loop of ``MaskedRecurrent.forward``, kept apart as
a plain function of tensors so the model's module holds the layout, counts and data flow;
``netbonsai.nets.recurrent`` re-exports ``CELLS``.
"""

from __future__ import annotations

import torch

CELLS = {"tanh": 1, "relu": 1, "lstm": 4, "gru": 3}


def recur(
    cell: str,
    pre: torch.Tensor,
    w_hh: torch.Tensor,
    b_hh: torch.Tensor,
    valid: torch.Tensor,
    full_until: int,
    keep_outputs: bool,
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """One layer's recurrence over time for ``cell`` (a key of :data:`CELLS`): per step, one
    ``(K, G*W, W) x (K, W, B)`` product and a few element-wise operations (differentiated by
    autograd, higher orders too).

    ``pre`` (K, G*W, T, B): input projections plus every bias except a GRU's ``b_hh``;
    ``w_hh`` (K, G*W, W); ``valid`` (T, 1, 1, B). Returns the states over time (K, W, T, B)
    (None unless ``keep_outputs``) and the final state (K, W, B). A step past a sample's
    length keeps its state (checked from step ``full_until`` on).
    """
    k, gw, t_max, b = pre.shape
    w = gw // CELLS[cell]
    h = c = None
    outputs = []
    b_hh = b_hh.unsqueeze(2)
    # unbind / split / chunk (not indexing): their backward assembles the gradient once, where
    # an indexed slice's backward would fill a whole zero tensor of the source at every step
    for t, p in enumerate(pre.unbind(2)):
        if cell == "gru":
            gh = b_hh.expand(k, gw, b) if h is None else torch.baddbmm(b_hh, w_hh, h)
            p_rz, p_n = p.split_with_sizes([2 * w, w], 1)
            gh_rz, gh_n = gh.split_with_sizes([2 * w, w], 1)
            r, z = torch.sigmoid(p_rz + gh_rz).chunk(2, 1)
            n = torch.tanh(torch.addcmul(p_n, r, gh_n))
            new = n - z * n if h is None else torch.lerp(n, h, z)
        else:
            a = p if h is None else torch.baddbmm(p, w_hh, h)
            if cell == "tanh":
                new = torch.tanh(a)
            elif cell == "relu":
                new = torch.relu(a)
            else:
                a_ifo, a_g = a.split_with_sizes([3 * w, w], 1)
                i, f, o = torch.sigmoid(a_ifo).chunk(3, 1)
                g = torch.tanh(a_g)
                new_c = i * g if c is None else torch.addcmul(f * c, i, g)
                new = o * torch.tanh(new_c)
                if t >= full_until:
                    new_c = torch.where(valid[t], new_c, c)
                c = new_c
        if t >= full_until:  # some samples have ended: they keep their state
            new = torch.where(valid[t], new, h)
        h = new
        if keep_outputs:
            outputs.append(h)
    return (torch.stack(outputs, 2) if keep_outputs else None), h
