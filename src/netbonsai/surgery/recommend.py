"""The Surgeon's recommendations (paper 002): which modification each hidden layer invites.

A hidden layer ``i`` (the output of Linear ``i``, 0-based) with ``n`` units is judged by its
*outgoing* kernel, Linear ``i + 1``'s weight ``(n_next, n)``: a direction of the layer that the
next layer reads with a small singular value carries little, so the layer has room to shrink.
The output layer is never changed. As in the authors' public code:

- ``r`` (*removable*) counts the singular values ``s < absolute`` or ``s < relative * s_max``
  (0.3 and 5e-3) among the ``min(n, n_next)`` of the kernel, as the authors' code does. The
  ``n - n_next`` null-space directions of a layer wider than the next one do not count (an
  option, ``null_space=True``): counted, every hidden layer wider than a 10-class output
  would be told to shrink to 10 units, whatever it carries;
- with ``i`` the 1-based hidden index (1..L-1) and ``L`` the number of Linear layers:
  ``p_add_neurons = 1 - r/n``, ``p_add_layer = p_add_neurons * i/(L-1)``,
  ``p_svd = p_truncate = r/n``, ``p_remove_layer = (r/n) * i/(L-1)``: a layer using all its
  units wants more, one with many idle directions wants less, and depth changes are more
  likely near the output;
- neurons to add: ``max(2, n // 10)`` and ten times that.

The paper names the Bayesian information criterion for the number of components to keep, which
the code lacks; :func:`bic_rank` implements it and ``recommend(..., rule="bic")`` uses it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from ..errors import InputError
from .mlp import parse_mlp

RULES = ("threshold", "bic")
# the candidate kinds in tie-break order; "identity" is the unmodified parent copy
KINDS = ("add-neurons", "add-layer", "svd-narrow", "svd-split", "remove-layer")


def _linears(net: nn.Module) -> list[nn.Linear]:
    """The Linear layers of the layered MLP ``net`` in order (:func:`~netbonsai.surgery.mlp.parse_mlp`)."""
    return parse_mlp(net).linears


def singular_values(net: nn.Module, layer: int) -> torch.Tensor:
    """Singular values (descending, float64) of the outgoing kernel of hidden layer ``layer``
    (Linear ``layer + 1``'s weight): ``min(n, n_next)`` values."""
    linears = _linears(net)
    if not 0 <= layer < len(linears) - 1:
        raise InputError(f"hidden layer {layer} does not exist; the network has {max(len(linears) - 1, 0)}")
    return torch.linalg.svdvals(linears[layer + 1].weight.detach().to(torch.float64))


def removable_count(s: torch.Tensor, units: int, absolute: float = 0.3, relative: float = 5e-3,
                    null_space: bool = False) -> int:
    """How many of a layer's ``units`` directions the next layer barely reads: singular values
    ``s`` (of the outgoing kernel) below ``absolute`` or below ``relative * max(s)``; with
    ``null_space`` also the ``units - len(s)`` directions the next layer cannot see at all."""
    if s.dim() != 1 or s.numel() > units:
        raise InputError(f"removable_count needs a vector of at most {units} singular values, "
                         f"got shape {tuple(s.shape)}")
    small = (s < absolute) | (s < relative * s.max()) if s.numel() else s.new_zeros(0, dtype=torch.bool)
    return int(small.sum()) + (units - s.numel() if null_space else 0)


def bic_rank(matrix: torch.Tensor) -> int:
    """The rank ``k`` the Bayesian information criterion picks for ``matrix`` (``m x n``) seen as
    a rank-``k`` part plus iid Gaussian noise: probabilistic PCA (Tipping & Bishop 1999) with
    Minka's BIC for its dimensionality (Minka 2000, eq. 80).

    The vectors along the longer side are the ``N = max(m, n)`` samples in ``d = min(m, n)``
    dimensions (the rank is the same either way; this keeps the sample covariance full rank),
    not centred (a weight matrix's directions pass through the origin). With the covariance
    eigenvalues ``l_j = s_j^2 / N`` (``s`` the singular values, descending), the noise variance
    ``v_k = sum_{j>k} l_j / (d - k)`` and ``p_k = d k - k (k + 1) / 2 + k`` free parameters
    (the k orthonormal directions and their variances; the noise variance adds the same 1 to
    every ``k``):

        BIC(k) = N sum_{j<=k} ln l_j + N (d - k) ln v_k + p_k ln N,   k = 1 .. d - 1

    and the ``k`` minimising it. Rank ``d`` has the likelihood of rank ``d - 1`` (its last
    direction's variance is rank ``d - 1``'s noise variance) and one parameter more, so it never
    wins; a vector or a zero matrix gives 1.

    Why not the matrix model the paper's wording suggests (``RSS_k = sum_{j>k} s_j^2``,
    ``BIC = m n ln(RSS_k / (m n)) + k (m + n - k) ln(m n)``): it fits both factors, the scores
    of every row included, so its likelihood grows without bound as ``k`` nears ``d``; it picked
    ``d - 1`` for rank-5 and rank-12 60 x 40 matrices plus noise of std 0.01 and for 50 x 50
    pure noise. With the noise variance taken over the residual's degrees of freedom it picked
    49 for a rank-20 50 x 50 matrix and 1 for a rank-30 60 x 40 one with noise 0.3, where this
    criterion finds 20 and 30.

    The ``l_j`` and ``v_k`` are floored at the total variance times ``eps^2`` of the matrix's
    dtype: what lies below is rounding error, which follows the entries' magnitudes rather than
    iid noise (a float32 product of rank 5 read as rank 6 to 9 without the floor), and an
    exactly low-rank matrix gets a finite criterion (its exact rank wins).
    """
    if matrix.dim() != 2 or matrix.numel() == 0:
        raise InputError(f"bic_rank needs a non-empty 2-D matrix, got shape {tuple(matrix.shape)}")
    samples, d = max(matrix.shape), min(matrix.shape)
    variances = torch.linalg.svdvals(matrix.detach().to(torch.float64)).pow(2) / samples
    mean = float(variances.mean())
    if d < 2 or mean == 0.0:
        return 1
    eps = torch.finfo(matrix.dtype).eps if matrix.dtype.is_floating_point else torch.finfo(torch.float64).eps
    floor = d * mean * eps**2  # the total variance times eps^2: below it, rounding error
    k = torch.arange(1, d, dtype=torch.float64)
    kept = variances.clamp_min(floor).log().cumsum(0)[: d - 1]  # sum_{j<=k} ln l_j
    noise = (variances.flip(0).cumsum(0).flip(0)[1:d] / (d - k)).clamp_min(floor)  # v_k (tail sums)
    params = d * k - k * (k + 1) / 2 + k
    criterion = samples * kept + samples * (d - k) * noise.log() + params * math.log(samples)
    return int(criterion.argmin()) + 1


@dataclass(frozen=True)
class LayerAdvice:
    """The Surgeon's reading of one hidden layer: its outgoing kernel's singular values, how many
    directions could go, and the probability of each modification (module docstring)."""

    layer: int
    units: int
    singular_values: tuple[float, ...]
    removable: int
    p_add_neurons: float
    p_add_layer: float
    p_svd: float
    p_truncate: float
    p_remove_layer: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the singular values as a list)."""
        out = asdict(self)
        out["singular_values"] = list(self.singular_values)
        return out


def recommend(net: nn.Module, rule: str = "threshold", absolute: float = 0.3,
              relative: float = 5e-3, null_space: bool = False) -> list[LayerAdvice]:
    """One :class:`LayerAdvice` per hidden layer of ``net`` (empty without hidden layers).

    ``rule`` "threshold" counts the removable directions with :func:`removable_count`
    (``absolute``, ``relative``); "bic" takes ``units - bic_rank(outgoing kernel)``, clamped to
    ``[0, units - 1]``.
    """
    if rule not in RULES:
        raise InputError(f"unknown recommendation rule {rule!r}; choose one of {', '.join(RULES)}")
    linears = _linears(net)
    depth = len(linears) - 1  # L - 1: the number of hidden layers
    advice: list[LayerAdvice] = []
    for layer in range(depth):
        units = linears[layer].out_features
        s = singular_values(net, layer)
        if rule == "threshold":
            removable = removable_count(s, units, absolute, relative, null_space)
        else:
            removable = min(max(units - bic_rank(linears[layer + 1].weight), 0), units - 1)
        share = removable / units
        place = (layer + 1) / depth  # i / (L - 1) with the 1-based hidden index i
        advice.append(LayerAdvice(layer, units, tuple(s.tolist()), removable, 1.0 - share,
                                  (1.0 - share) * place, share, share, share * place))
    return advice


@dataclass(frozen=True)
class Modification:
    """One candidate child: ``kind`` (one of :data:`KINDS`, or "identity" for the parent copy)
    applied to hidden layer ``layer``, with ``amount`` neurons to add (add-neurons) or rank kept
    (svd-narrow, svd-split; 0 otherwise), chosen with probability ``p``."""

    kind: str
    layer: int
    amount: int
    p: float

    @property
    def label(self) -> str:
        """A unique name: "add-neurons@1+20", "svd-narrow@1:12", "add-layer@1", "identity"."""
        if self.kind == "identity":
            return "identity"
        if self.kind == "add-neurons":
            return f"{self.kind}@{self.layer}+{self.amount}"
        if self.kind in ("svd-narrow", "svd-split"):
            return f"{self.kind}@{self.layer}:{self.amount}"
        return f"{self.kind}@{self.layer}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, the label included."""
        return {**asdict(self), "label": self.label}


def _order(m: Modification) -> tuple[float, int, int, int]:
    return (-m.p, m.layer, KINDS.index(m.kind) if m.kind in KINDS else len(KINDS), m.amount)


def modifications(advice: list[LayerAdvice]) -> list[Modification]:
    """Every candidate for every hidden layer, most probable first (ties: layer ascending, then
    the order of :data:`KINDS`, then amount): add-neurons by ``max(2, n // 10)`` and ten times
    that, add-layer, svd-narrow and svd-split to rank ``n - removable`` (only when something is
    removed and at least one direction is kept), remove-layer (not for the only hidden layer: a
    network without one is linear and offers no edit the Surgeon could grow it back with)."""
    out: list[Modification] = []
    for a in advice:
        step = max(2, a.units // 10)
        out += [Modification("add-neurons", a.layer, step, a.p_add_neurons),
                Modification("add-neurons", a.layer, 10 * step, a.p_add_neurons),
                Modification("add-layer", a.layer, 0, a.p_add_layer)]
        kept = a.units - a.removable
        if 1 <= a.removable and kept >= 1:
            out += [Modification("svd-narrow", a.layer, kept, a.p_svd),
                    Modification("svd-split", a.layer, kept, a.p_truncate)]
        if len(advice) > 1:
            out.append(Modification("remove-layer", a.layer, 0, a.p_remove_layer))
    return sorted(out, key=_order)


def plan_children(candidates: list[Modification], tried: set[str],
                  generator: torch.Generator) -> list[Modification]:
    """One cycle's children: per kind (order of :data:`KINDS`) the untried candidate with the
    highest ``p`` (ties as in :func:`modifications`), skipping kinds whose best ``p`` is 0 (the
    Surgeon sees no reason for them); then the parent copy ``Modification("identity", -1, 0,
    1.0)``; then one untried candidate not chosen yet, drawn uniformly with ``generator`` whatever
    its ``p`` (none when nothing is left). A label in ``tried`` is never chosen; the caller
    records the labels it ran."""
    untried = sorted((c for c in candidates if c.label not in tried and c.kind != "identity"), key=_order)
    chosen: list[Modification] = []
    for kind in KINDS:
        best = next((c for c in untried if c.kind == kind), None)
        if best is not None and best.p > 0:
            chosen.append(best)
    taken = {c.label for c in chosen}
    leftover = [c for c in untried if c.label not in taken]
    chosen.append(Modification("identity", -1, 0, 1.0))
    if leftover:
        chosen.append(leftover[int(torch.randint(len(leftover), (1,), generator=generator))])
    return chosen
