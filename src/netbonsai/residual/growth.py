"""AutoGrow's growth policies (Wen et al. 2020) for residual networks (paper 004).

Stages grow round-robin by one zero-initialised block at a time (:func:`round_robin`), and
growth stops once a moving average of validation accuracy stops improving by at least a
threshold (:class:`ConvergentPolicy`). Training is the caller's: :func:`grow_round_robin` only
calls ``train(model)``, so this module stays pure (no data, no optimiser).
"""

from __future__ import annotations

import copy
import math
from numbers import Integral, Real
from typing import Callable

import torch
from torch import nn

from ..errors import InputError
from .blocks import find_blocks
from .edits import count_params, insert_block, stage_containers


def _count(value: object, what: str, least: int) -> int:
    if not isinstance(value, Integral) or isinstance(value, bool) or value < least:
        raise InputError(f"{what} must be an integer >= {least}, got {value!r}")
    return int(value)


def _finite(value: object, what: str) -> float:
    if not isinstance(value, Real) or isinstance(value, bool) or not math.isfinite(value):
        raise InputError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def round_robin(stages: int, step: int) -> int:
    """The stage that grows at growth step ``step`` (0-based): 0, 1, ..., stages-1, 0, ..."""
    return _count(step, "round_robin: step", 0) % _count(stages, "round_robin: stages", 1)


class ConvergentPolicy:
    """AutoGrow's convergent policy: keep growing while validation accuracy still improves.

    :meth:`update` is called once per growth step with that step's validation accuracy a_n
    (n = 1, 2, ...). With ``window`` = K, the moving average is m_n = mean(a_{n-K+1} .. a_n),
    defined from n = K. Growth goes on while n <= K (no previous average to compare with yet);
    from n = K + 1 it goes on iff m_n - m_{n-1} >= ``threshold``, that is iff
    (a_n - a_{n-K}) / K >= threshold. The first failure stops the policy for good:
    :attr:`stopped` turns True and every later :meth:`update` returns False.
    """

    def __init__(self, threshold: float = 0.001, window: int = 3) -> None:
        self.threshold = _finite(threshold, "ConvergentPolicy: threshold")
        self.window = _count(window, "ConvergentPolicy: window", 1)
        self.history: list[float] = []
        self._stopped = False

    @property
    def stopped(self) -> bool:
        """True once an update has said to stop growing."""
        return self._stopped

    def averages(self) -> list[float]:
        """The moving averages m_K, m_{K+1}, ... of the accuracies seen so far."""
        k = self.window
        return [sum(self.history[i - k:i]) / k for i in range(k, len(self.history) + 1)]

    def update(self, val_accuracy: float) -> bool:
        """Record ``val_accuracy`` and return whether to keep growing (see the class)."""
        self.history.append(_finite(val_accuracy, "ConvergentPolicy.update: val_accuracy"))
        if self._stopped:
            return False
        averages = self.averages()
        if len(averages) >= 2 and averages[-1] - averages[-2] < self.threshold:
            self._stopped = True
        return not self._stopped


def blocks_per_stage(model: nn.Module) -> list[int]:
    """Removable blocks (``find_blocks``) in each stage of :func:`stage_containers`; a
    downsampling block is not counted."""
    refs = find_blocks(model)
    return [sum(1 for r in refs if r.parent is stage) for stage in stage_containers(model)]


def grow_round_robin(model: nn.Module, steps: int, train: Callable[[nn.Module], float], init: str = "zero",
                     policy: ConvergentPolicy | None = None,
                     generator: torch.Generator | None = None) -> tuple[nn.Module, list[dict]]:
    """Grow ``model`` (a copy; the input is untouched) by one block per step, for at most
    ``steps`` steps.

    Step k inserts a block (:func:`insert_block`, ``init``, ``generator``) at the end of stage
    ``round_robin(S, k)``, S = number of :func:`stage_containers`, then calls ``train(model)``,
    which trains the grown model in place and returns its validation accuracy. Each step adds a
    record {"step", "stage", "blocks_per_stage", "params", "val"}. Growth stops after the step
    at which ``policy.update(val)`` returns False; that step's model (with its block) is the one
    returned, so the caller can pick an earlier size from the records."""
    steps = _count(steps, "grow_round_robin: steps", 0)
    if not callable(train):
        raise InputError(f"grow_round_robin: train must be callable, got {type(train).__name__}")
    if policy is not None and not isinstance(policy, ConvergentPolicy):
        raise InputError(f"grow_round_robin: policy must be a ConvergentPolicy, got {type(policy).__name__}")
    n_stages = len(stage_containers(model))
    if n_stages == 0:
        raise InputError("grow_round_robin: the model has no stages of residual blocks")
    records: list[dict] = []
    for step in range(steps):
        stage = round_robin(n_stages, step)
        model = insert_block(model, stage, init=init, generator=generator)
        val = _finite(train(model), "grow_round_robin: train's return value")
        records.append({"step": step, "stage": stage, "blocks_per_stage": blocks_per_stage(model),
                        "params": count_params(model), "val": val})
        if policy is not None and not policy.update(val):
            break
    if steps == 0:
        model = copy.deepcopy(model)
    return model, records
