"""Full-batch L-BFGS that treats each population variant as an independent problem.

``torch.optim.LBFGS`` mixes all parameters into one curvature history and one line search, so
training K variants jointly with it is *not* K separate trainings. Here every quantity (history
pairs, scaling, step length, Armijo backtracking, convergence) is kept per variant and computed
for all variants at once: one forward/backward pass per iteration for the whole population (or
for the variants that need one, see ``member_losses``), and variant k follows the trajectory it
would follow alone, up to float rounding.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch


@dataclass
class LbfgsResult:
    """Final per-variant losses and how much work was done."""

    loss: torch.Tensor  # (K,)
    iterations: int
    evaluations: int  # closure calls, of the whole population or of some of its variants
    seconds: float


class _FlatParams:
    """Read and write a list of ``(K, ...)`` parameters as one ``(K, P)`` matrix."""

    def __init__(self, params: Sequence[torch.Tensor], population: int) -> None:
        self.params = list(params)
        self.k = population
        self.sizes = [p.numel() // population for p in self.params]

    def get(self) -> torch.Tensor:
        return torch.cat([p.detach().reshape(self.k, -1) for p in self.params], dim=1)

    def grad(self) -> torch.Tensor:
        return torch.cat(
            [
                (p.grad if p.grad is not None else torch.zeros_like(p)).reshape(self.k, -1)
                for p in self.params
            ],
            dim=1,
        )

    @torch.no_grad()
    def set(self, flat: torch.Tensor) -> None:
        offset = 0
        for p, size in zip(self.params, self.sizes):
            p.copy_(flat[:, offset : offset + size].view_as(p))
            offset += size


def lbfgs(
    params: Sequence[torch.Tensor],
    losses: Callable[[], torch.Tensor],
    max_iter: int,
    population: int,
    max_seconds: float | None = None,
    history_size: int = 10,
    tolerance_grad: float = 1e-10,
    armijo: float = 1e-4,
    max_backtracks: int = 25,
    on_iteration: Callable[[int, torch.Tensor], None] | None = None,
    member_losses: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> LbfgsResult:
    """Minimise each variant's loss independently with L-BFGS and Armijo backtracking.

    Args:
        params: tensors with a leading population dimension K (requires_grad=True); with
            ``population == 1`` any shapes are accepted (a plain module).
        losses: closure returning the ``(K,)`` losses for the current parameter values.
        max_iter: iteration budget (each iteration costs one or more full-batch passes).
        population: the number of independent variants K.
        max_seconds: optional wall-clock budget, checked between iterations.
        on_iteration: called with ``(iteration, losses)`` after every iteration.
        member_losses: optional closure returning the losses of only the variants at the given
            indices ``(M,)``, at the cost of M. With it, an evaluation skips the variants that do
            not need it (finished ones, and during backtracking those whose step was already
            accepted), so a population costs what its members would cost alone instead of every
            variant paying for the others' backtracking. The trajectories are the same up to
            the float rounding of computing a subset.
    """
    flat = _FlatParams(params, population)
    k = flat.k
    evaluations = 0
    started = time.perf_counter()

    def members_of(need: torch.Tensor | None) -> torch.Tensor | None:
        """Indices of the variants to compute, or None for all of them (also without
        ``member_losses``, where a subset cannot be computed on its own)."""
        if need is None or member_losses is None or bool(need.all()):
            return None
        return need.nonzero().squeeze(1)

    def losses_of(members: torch.Tensor | None) -> torch.Tensor:
        """The closure's losses: of every variant, or of ``members`` only."""
        if members is None or member_losses is None:
            return losses()
        return member_losses(members)

    def value_and_grad(
        theta: torch.Tensor, need: torch.Tensor | None = None, fill: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Losses and gradients at ``theta``; with ``need`` (bool ``(K,)``) only those variants
        are computed and the others keep their values in ``fill``."""
        nonlocal evaluations
        members = members_of(need)
        if members is not None and fill is not None and members.numel() == 0:
            return fill
        flat.set(theta)
        for p in flat.params:
            p.grad = None
        with torch.enable_grad():
            f = losses_of(members)
            f.sum().backward()
        evaluations += 1
        if members is None or fill is None:
            return f.detach(), flat.grad()
        return fill[0].index_copy(0, members, f.detach()), fill[1].index_copy(0, members, flat.grad()[members])

    @torch.no_grad()
    def value(theta: torch.Tensor, need: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
        """Losses at ``theta`` of the variants in ``need``; the others keep their value in ``fill``."""
        nonlocal evaluations
        members = members_of(need)
        if members is not None and members.numel() == 0:
            return fill
        flat.set(theta)
        evaluations += 1
        f = losses_of(members).detach()
        return f if members is None else fill.index_copy(0, members, f)

    theta = flat.get()
    f, g = value_and_grad(theta)
    done = ~torch.isfinite(f) | (g.abs().amax(dim=1) <= tolerance_grad)
    s_hist: list[torch.Tensor] = []
    y_hist: list[torch.Tensor] = []
    rho_hist: list[torch.Tensor] = []
    gamma = torch.ones(k, dtype=theta.dtype, device=theta.device)
    iteration = 0
    for iteration in range(1, max_iter + 1):
        if bool(done.all()):
            iteration -= 1
            break
        if max_seconds is not None and time.perf_counter() - started >= max_seconds:
            iteration -= 1
            break
        direction = _two_loop(g, s_hist, y_hist, rho_hist, gamma)
        slope = (g * direction).sum(dim=1)
        not_descent = ~(slope < 0)
        if bool(not_descent.any()):  # restart those variants from steepest descent
            direction = torch.where(not_descent[:, None], -g, direction)
            slope = (g * direction).sum(dim=1)
            keep = (~not_descent).to(theta.dtype)
            rho_hist = [r * keep for r in rho_hist]
            gamma = torch.where(not_descent, torch.ones_like(gamma), gamma)
        if iteration == 1:
            step = torch.clamp(1.0 / g.abs().sum(dim=1).clamp_min(1e-30), max=1.0)
        else:
            step = torch.ones_like(f)
        step = torch.where(done, torch.zeros_like(step), step)

        f_new, g_new = value_and_grad(theta + step[:, None] * direction, ~done, (f, g))
        accepted = done | _armijo(f_new, f, step, slope, armijo)
        first_try = accepted
        for _ in range(max_backtracks):
            if bool(accepted.all()):
                break
            step = torch.where(accepted, step, step * 0.5)
            trial = value(theta + step[:, None] * direction, ~accepted, f)
            accepted = accepted | _armijo(trial, f, step, slope, armijo)
        stuck = ~accepted
        if bool(stuck.any()):  # no step: the gradient stays that of theta, so y = 0 below
            step = torch.where(stuck, torch.zeros_like(step), step)
            g_new = torch.where(stuck[:, None], g, g_new)
            done = done | stuck
        backtracked = ~first_try & accepted
        if bool(backtracked.any()):  # the gradient at the shorter steps
            f_new, g_new = value_and_grad(theta + step[:, None] * direction, backtracked, (f_new, g_new))

        s = step[:, None] * direction
        y = g_new - g
        sy = (s * y).sum(dim=1)
        valid = sy > 1e-10
        s_hist.append(s)
        y_hist.append(y)
        rho_hist.append(torch.where(valid, 1.0 / sy.clamp_min(1e-30), torch.zeros_like(sy)))
        if len(s_hist) > history_size:
            s_hist.pop(0)
            y_hist.pop(0)
            rho_hist.pop(0)
        gamma = torch.where(valid, sy / (y * y).sum(dim=1).clamp_min(1e-30), gamma)

        theta = theta + s
        f, g = torch.where(done, f, f_new), torch.where(done[:, None], g, g_new)
        done = done | (g.abs().amax(dim=1) <= tolerance_grad)
        if on_iteration is not None:
            on_iteration(iteration, f)
    flat.set(theta)
    return LbfgsResult(
        loss=f, iterations=iteration, evaluations=evaluations, seconds=time.perf_counter() - started
    )


def _armijo(trial: torch.Tensor, f: torch.Tensor, step: torch.Tensor, slope: torch.Tensor, c1: float) -> torch.Tensor:
    """Sufficient decrease, and a strict one: a step that leaves the loss unchanged is no progress."""
    return torch.isfinite(trial) & (trial <= f + c1 * step * slope) & (trial < f)


def _two_loop(
    g: torch.Tensor,
    s_hist: list[torch.Tensor],
    y_hist: list[torch.Tensor],
    rho_hist: list[torch.Tensor],
    gamma: torch.Tensor,
) -> torch.Tensor:
    """The L-BFGS direction ``-H g`` for every variant (history pairs with rho = 0 are skipped)."""
    q = -g
    alphas = []
    for s, y, rho in zip(reversed(s_hist), reversed(y_hist), reversed(rho_hist)):
        alpha = rho * (s * q).sum(dim=1)
        q = q - alpha[:, None] * y
        alphas.append(alpha)
    q = q * gamma[:, None]
    for s, y, rho, alpha in zip(s_hist, y_hist, rho_hist, reversed(alphas)):
        beta = rho * (y * q).sum(dim=1)
        q = q + (alpha - beta)[:, None] * s
    return q
