"""The architecture-learning objective of paper 003 as a ``penalty(model)`` for training.

``loss + lambda_b * binarizing + lambda_m * complexity``:

- *binarizing* ``sum c_k w(1 - w)`` plus ``sum c_k (sum w_k) d_k(1 - d_k)`` has its minima at 0
  and 1 on [0, 1], so trained gates end near binary. ``c_k`` is what one unit of layer ``k``
  costs in the complexity (held constant in the gradient): 1 in ``neurons`` mode (the paper's
  plain ``w(1 - w)``), the parameters one unit brings in ``params`` mode. The paper adds "the
  same for d" without a weight; here ``d`` counts once per unit it acts for. Why: a gate at
  ``w = 1`` feels ``c_k (lambda_m - lambda_b)`` from the two terms, so every layer (and every
  ``d``) switches at the same ``lambda_m = lambda_b``; with unweighted terms, any ``lambda_m``
  near ``lambda_b`` made every layer linear at once (measured on MNIST and scikit-learn's
  digits: both collapsed to one linear layer), and in ``params`` mode the first layer of a
  784-100-50-10 MLP (835 parameters per unit) would switch at a ``lambda_m`` 7.5 times smaller
  than the second (111 per unit);
- *complexity* ``neurons`` (the paper): per gated layer its width ``sum w`` times the layer's
  nonlinearity indicator ``[d < 1/2]``, held constant in the gradient (the paper's rule), plus
  a depth part whose gradient on ``d`` is ``-sum w``: making a layer linear removes its neurons
  from the count, so the relaxed count ``(1 - d) sum w`` gives ``d`` that gradient. The value is
  the nonlinear-neuron count alone (the depth part is added with a stop-gradient, value 0);
- complexity ``params`` (our extension): the parameter count the collapsed network would have,
  with the live units of a layer relaxed to ``sum w`` and each mergeable layer merged with
  probability ``d`` (every way of keeping or merging consecutive layers weighted by its
  probability): weights ``units_in * per_pair * units_out``, biases and BatchNorm entries of each
  kept layer. At binary gates it equals the collapsed count whenever each linear layer's merge
  pays (the collapse merges only then).

Defaults (the paper's appendix heuristic): ``lambda_m * initial complexity = initial loss`` and
``lambda_b = ratio * lambda_m`` with ``ratio`` 4 ("a few times lambda_m"). A gate alone feels
``lambda_b w(1 - w) + lambda_m w`` (times ``c_k``), which peaks at ``w* = 1/2 + lambda_m /
(2 lambda_b)``: with ``lambda_b <= lambda_m`` nothing holds a gate up and every gate the data
loss does not defend is pushed to 0. Starting from ``w = 1``, a gate dies only when the data loss
pushes it below ``w*``; measured, with ``lambda_b > lambda_m`` (the defaults) almost none does,
and the useful range of ``lambda_m`` is a few percent either side of ``lambda_b``.

Calling a :class:`GatePenalty` gives one autograd node with closed-form gradients (equal to what
autograd gives for :meth:`GatePenalty.binarizing` and :meth:`GatePenalty.complexity`, which stay
as the reference): a few vectorised operations per layer, so a training step costs little more.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..errors import InputError
from .layout import Layout, read_layout
from .tristate import TriStateReLU

COMPLEXITY = ("neurons", "params")
DEFAULT_RATIO = 4.0


def _positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise InputError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_complexity(name: str) -> str:
    """``name`` if it is a complexity mode, else one :class:`InputError` listing them."""
    if name not in COMPLEXITY:
        raise InputError(f"unknown gate complexity {name!r}; choose one of {', '.join(COMPLEXITY)}")
    return name


class GatePenalty:
    """``lambda_b * binarizing + lambda_m * complexity`` of one gated model (see the module
    docstring), callable as ``penalty(model)`` (a scalar tensor), e.g. for
    :func:`~netbonsai.gates.training.train_gated`. It reads the gates it was built with."""

    def __init__(self, model: nn.Module, lambda_m: float, lambda_b: float, complexity: str = "neurons") -> None:
        self.lambda_m = _positive("lambda_m", lambda_m)
        self.lambda_b = _positive("lambda_b", lambda_b)
        self.complexity_mode = check_complexity(complexity)
        self.layout = gated_layout(model)
        self.gates: list[TriStateReLU] = [self.layout.modules[s.position] for s in self.layout.sites]
        self.count = ParamCount(self.layout)
        self.learnt = [p for g in self.gates for p in (g.w, g.d) if isinstance(p, nn.Parameter)]

    def __call__(self, model: nn.Module | None = None) -> torch.Tensor:
        """The penalty as one autograd node with closed-form gradients (what :meth:`binarizing`
        and :meth:`complexity` give through autograd, at a fraction of the cost per step)."""
        if not self.learnt:
            return self.gates[0].w.new_tensor(self.value_and_grads()[0])
        return _Closed.apply(self, *self.learnt)

    def value_and_grads(self) -> tuple[float, list[torch.Tensor]]:
        """The penalty's value and its gradient on each learnt ``w`` and ``d`` (gate order).

        Every term is linear in each layer's unit count ``S_k = sum w_k`` and in each ``d_k``, so
        all derivatives come from one pass over floats (:meth:`ParamCount.partials`), and
        ``w(1 - w)`` sums to ``S - sum w^2``."""
        lm, lb = self.lambda_m, self.lambda_b
        with torch.no_grad():
            stats = torch.stack([t for g in self.gates for t in (g.w.sum(), g.w.dot(g.w), g.d)]).tolist()
            sums, squares, merges = stats[0::3], stats[1::3], stats[2::3]
            neurons = self.complexity_mode == "neurons"
            if neurons:
                costs, pulls = [1.0] * len(sums), [-s_k for s_k in sums]
                value = lm * sum(s_k if not g.learn_depth or d_k < 0.5 else 0.0
                                 for g, s_k, d_k in zip(self.gates, sums, merges))
            else:
                count, costs, pulls = self.count.partials(sums, merges)
                value = lm * count
            grads: list[torch.Tensor] = []
            for k, g in enumerate(self.gates):
                c, s_k, d_k = costs[k], sums[k], merges[k]
                nonlinear = 1.0 if not g.learn_depth else float(d_k < 0.5)
                if g.learn_width:
                    value += lb * c * (s_k - squares[k])
                    grads.append(g.w.mul(-2 * lb * c).add_(lb * c + lm * (nonlinear if neurons else c)))
                if g.learn_depth:
                    value += lb * c * s_k * d_k * (1 - d_k)
                    grads.append(g.d.new_tensor(lb * c * s_k * (1 - 2 * d_k) + lm * pulls[k]))
        return value, grads

    def unit_costs(self, sums: list[float] | None = None, merges: list[float] | None = None) -> list[float]:
        """``c_k``: the complexity one unit of each gated layer costs now (1 in ``neurons`` mode;
        the relaxed parameter count's derivative in the layer's unit count in ``params`` mode)."""
        if self.complexity_mode == "neurons":
            return [1.0] * len(self.gates)
        sums = [float(g.w.detach().sum()) for g in self.gates] if sums is None else sums
        merges = [float(g.d.detach()) for g in self.gates] if merges is None else merges
        return self.count.partials(sums, merges)[1]

    def binarizing(self) -> torch.Tensor:
        """``sum c_k w(1 - w) + sum c_k (sum w_k) d_k(1 - d_k)`` over the learnt gate parameters."""
        total = self.gates[0].w.new_zeros(())
        for g, cost in zip(self.gates, self.unit_costs()):
            if g.learn_width:
                total = total + cost * (g.w * (1 - g.w)).sum()
            if g.learn_depth:
                total = total + cost * g.w.detach().sum() * g.d * (1 - g.d)
        return total

    def complexity(self) -> torch.Tensor:
        """The model complexity in the chosen mode (see the module docstring)."""
        if self.complexity_mode == "neurons":
            return neuron_complexity(self.gates)
        return self.count([g.w.sum() for g in self.gates], [g.d for g in self.gates])

    def parts(self) -> dict[str, float]:
        """The two terms' current values (unweighted), for logs."""
        with torch.no_grad():
            return {"binarizing": float(self.binarizing()), "complexity": float(self.complexity())}


class _Closed(torch.autograd.Function):
    """``GatePenalty.value_and_grads`` as one autograd node."""

    @staticmethod
    def forward(ctx, penalty: GatePenalty, *learnt: torch.Tensor) -> torch.Tensor:
        value, grads = penalty.value_and_grads()
        ctx.grads = grads
        return learnt[0].new_tensor(value)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return (None, *(grad * g for g in ctx.grads))


def gated_layout(model: nn.Module) -> Layout:
    """The layout of a gated model (one :class:`InputError` if it has no gates)."""
    layout = read_layout(model)
    if not layout.sites or not all(isinstance(layout.modules[s.position], TriStateReLU) for s in layout.sites):
        raise InputError("the penalty needs a gated model: call netbonsai.gates.gate(model) first")
    return layout


def neuron_complexity(gates: list[TriStateReLU]) -> torch.Tensor:
    """The paper's count: nonlinear live neurons, ``sum_k [d_k < 1/2] sum w_k``, with the depth
    gradient ``-sum w_k`` on each learnt ``d_k``."""
    total = gates[0].w.new_zeros(())
    for g in gates:
        width = g.w.sum()
        if not g.learn_depth:
            total = total + width
            continue
        nonlinear = (g.d.detach() < 0.5).to(width.dtype)
        depth = (1 - g.d) * width.detach()
        total = total + nonlinear * width + (depth - depth.detach())
    return total


class ParamCount:
    """The relaxed parameter count of a layout's collapsed network (see the module docstring),
    with everything that does not depend on the gates worked out once: called every step.

    Boundary 0 is the input, boundary ``k + 1`` the output of weighted layer ``k``. A collapsed
    layer from boundary ``a`` to ``b`` exists when ``a`` and ``b`` are kept and every boundary
    between is merged away: its weight is a product of ``d`` and ``1 - d`` factors."""

    def __init__(self, layout: Layout) -> None:
        n = len(layout.layers)
        by_layer = {site.layer: i for i, site in enumerate(layout.sites)}
        gates = [layout.modules[site.position] for site in layout.sites]
        self.fixed: list[float | None] = [float(layout.units_in)]  # a fixed unit count, or None ...
        self.site: list[int | None] = [None]  # ... and the gate site whose sum w it is
        mergeable = [False]
        for k in range(n):
            i = by_layer.get(k)
            self.fixed.append(None if i is not None else float(layout.out_units(k)))
            self.site.append(i)
            mergeable.append(i is not None and bool(gates[i].learn_depth) and k < n - 1)
        self.mergeable = mergeable
        # segments (a, b, weights per unit pair, biases and BatchNorm per unit of b, factors):
        # factors are (boundary, +1) for "merged away" (d) and (boundary, -1) for "kept" (1 - d)
        self.segments: list[tuple[int, int, int, int, tuple[tuple[int, float], ...]]] = []
        for b in range(1, n + 1):
            for a in range(b - 1, -1, -1):
                factors = tuple((i, 1.0) for i in range(a + 1, b))
                factors += tuple((x, -1.0) for x in (a, b) if mergeable[x])
                own = (1 if any(layout.bias[a:b]) or any(layout.batchnorm[a : b - 1]) else 0) + layout.batchnorm[b - 1]
                self.segments.append((a, b, layout.per_pair[a], own, factors))
                if not mergeable[a]:
                    break  # boundary a is always kept: no collapsed layer reaches past it

    def _values(self, sums: list, merges: list) -> tuple[list, list]:
        units = [f if f is not None else sums[i] for f, i in zip(self.fixed, self.site)]
        merge = [merges[i] if m else 0.0 for m, i in zip(self.mergeable, self.site)]
        return units, merge

    def __call__(self, sums: list, merges: list):
        """The count at unit counts ``sums`` and depths ``merges`` (per gate site): tensors give
        a differentiable count, floats a float."""
        units, merge = self._values(sums, merges)
        total = 0.0
        for a, b, pp, own, factors in self.segments:
            term = units[a] * pp * units[b] + own * units[b]
            for x, slope in factors:
                term = term * (merge[x] if slope > 0 else 1 - merge[x])
            total = total + term
        return total

    def partials(self, sums: list[float], merges: list[float]) -> tuple[float, list[float], list[float]]:
        """The count (floats) and its derivatives in each site's unit count and ``d``, in one
        pass: every term is a product of distinct factors, so each derivative is the product
        of the others."""
        units, merge = self._values(sums, merges)
        d_units, d_merge = [0.0] * len(units), [0.0] * len(units)
        total = 0.0
        for a, b, pp, own, factors in self.segments:
            values = [merge[x] if slope > 0 else 1 - merge[x] for x, slope in factors]
            weight = math.prod(values)
            inner = units[a] * pp * units[b] + own * units[b]
            total += weight * inner
            d_units[a] += weight * pp * units[b]
            d_units[b] += weight * (pp * units[a] + own)
            for j, (x, slope) in enumerate(factors):
                d_merge[x] += slope * inner * math.prod(v for m, v in enumerate(values) if m != j)
        by_site_u, by_site_m = [0.0] * len(sums), [0.0] * len(sums)
        for boundary, i in enumerate(self.site):
            if i is not None:
                by_site_u[i], by_site_m[i] = d_units[boundary], d_merge[boundary]
        return total, by_site_u, by_site_m


def param_complexity(layout: Layout, sums: list, merges: list):
    """The relaxed parameter count of the collapsed network (see the module docstring):
    ``sums[i]`` the live units and ``merges[i]`` the ``d`` of gate site ``i``, tensors (a
    differentiable count) or floats (a float)."""
    return ParamCount(layout)(sums, merges)


def default_lambdas(model: nn.Module, initial_loss: float, complexity: str = "neurons",
                    ratio: float = DEFAULT_RATIO) -> tuple[float, float]:
    """``(lambda_m, lambda_b)`` by the paper's heuristic for a freshly gated ``model`` whose
    data loss is ``initial_loss``: ``lambda_m * complexity = initial_loss``, ``lambda_b = ratio
    * lambda_m``."""
    loss = _positive("initial_loss", initial_loss)
    if _positive("ratio", ratio) <= 0:
        raise InputError(f"ratio must be > 0, got {ratio}")
    probe = GatePenalty(model, 0.0, 0.0, complexity)
    with torch.no_grad():
        start = float(probe.complexity())
    if loss == 0 or start <= 0:
        raise InputError("the default lambdas need a positive initial loss and complexity")
    return loss / start, ratio * loss / start


def gate_penalty(model: nn.Module, initial_loss: float, complexity: str = "neurons", *,
                 lambda_m: float | None = None, lambda_b: float | None = None, m_scale: float = 1.0,
                 ratio: float = DEFAULT_RATIO) -> GatePenalty:
    """A :class:`GatePenalty` with the default lambdas (:func:`default_lambdas`) and ``lambda_m``
    times ``m_scale`` (a sweep's multiplier; ``lambda_b`` keeps its default); a given
    ``lambda_m`` / ``lambda_b`` replaces its default."""
    default_m, default_b = default_lambdas(model, initial_loss, complexity, ratio)
    m = default_m if lambda_m is None else _positive("lambda_m", lambda_m)
    b = default_b if lambda_b is None else lambda_b
    return GatePenalty(model, m * _positive("m_scale", m_scale), b, complexity)
