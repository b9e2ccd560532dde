"""scikit-learn estimators around any registered method: :class:`MethodRegressor`, :class:`MethodClassifier`.

``MethodClassifier(method="magnitude")`` is a pruned MLP classifier, ``MethodRegressor(method=
"loss-aware")`` a regressor pruned by paper 000's loss-aware removal, ``method="dense"`` the
dense MLP of the grid with the lowest validation loss, ``method="grow"`` the grow-and-prune
search (as :class:`~netbonsai.estimators.GrowRegressor`, but with the tables' policy); every
registered method (``netbonsai methods``) whose ``tasks`` include the estimator's kind is
accepted. ``fit(X, y)`` prepares the data as the grow estimators do (inputs, and a regressor's
targets, standardised with the training rows' statistics; a seeded ``val_fraction`` of the rows
held out as the validation split), builds the method for the tables' policy of ``preset``
(:func:`netbonsai.experiments.presets.task_settings`, ``"table"``: the trainer, the dense grid
and budgets, the retraining budget, the polish) exactly as ``netbonsai compare`` builds it
(``METHODS[name].for_policy(policy).with_overrides(settings)``), runs it in a temporary run
folder that is deleted afterwards, and keeps the network of the method's Pareto front with the
lowest validation loss (``net_``; the front in ``front_``).

A front point is one network the method offers, after the policy's polish: for the pruning
methods (``magnitude``, ``magnitude-uniform``, ``magnitude-distributed``, ``random``, ``obd``)
the network left by one pruning round, for ``loss-aware`` the network after one accepted removal
step, for ``grow`` a network the search passed through, for ``dense`` one grid architecture and
for ``gates`` the collapsed network of one penalty multiplier.

``settings`` is a dict of the method's own settings, the keys ``--set NAME.KEY=VALUE`` takes
(``{"sparsity": 0.5, "schedule": "relative:0.5"}`` for ``magnitude``). ``policy`` is a dict of
the shared policy's settings, as ``--set`` names them: ``dense.grid`` (a list of hidden-layer
size lists), ``dense.epochs``, ``polish.epochs``, ``polish.points``, ``trainer.KEY`` (a
:class:`~netbonsai.train.TrainerConfig` field; not ``l2`` or ``loss``) and ``grow.KEY`` (a
:class:`~netbonsai.grow.config.GrowConfig` field: the budgets every method reads, e.g.
``grow.grow_epochs``, the retraining after every pruning round, or ``grow.max_params``, which
picks the dense network the pruning methods start from; not ``seed``: ``random_state`` is the
seed). ``l2`` is the L2 strength of every training (``"auto"``: chosen on the validation rows as
``compare`` chooses it for tables, :func:`~netbonsai.experiments.compare_methods.fitted_to_task`;
the value used is ``l2_``). Every bad argument is one :class:`ValueError` naming it, raised
before any training.
"""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin

from .data.task import Task
from .estimators import _Classification, _NetEstimator, _Regression
from .experiments.presets import TaskSettings, task_settings
from .grow.config import GrowConfig
from .methods.base import Method, finite_front
from .methods.magnitude import mlp_params
from .methods.registry import METHODS, method_names
from .runs import RunContext
from .runtime import resolve_device
from .train import TrainerConfig

__all__ = ["MethodClassifier", "MethodRegressor", "POLICY_KEYS", "estimator_methods"]

POLICY_KEYS = ("dense.grid", "dense.epochs", "polish.epochs", "polish.points", "trainer.KEY", "grow.KEY")
# keys of the shared policy the estimator sets itself
_TRAINER_OWN = {"l2": "give the estimator's l2 argument", "loss": "the loss is the estimator's (mse or cross-entropy)"}
_GROW_OWN = {"seed": "random_state is the seed", "trainer": "give trainer.KEY"}


def estimator_methods(kind: str) -> list[str]:
    """The registered methods an estimator of ``kind`` (``regression``, ``classification``) takes."""
    return [name for name in method_names() if kind in METHODS[name].tasks]


def _whole(value: Any, low: int) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= low


def policy_with(policy: TaskSettings, overrides: Mapping[str, Any]) -> TaskSettings:
    """``policy`` with the estimator's ``policy`` overrides (see the module's docstring); an
    unknown key or a bad value is one :class:`ValueError` naming it."""
    if not isinstance(overrides, Mapping):
        raise ValueError(f"policy must be a dict of shared settings ({', '.join(POLICY_KEYS)}), got {overrides!r}")
    grow_changes: dict[str, Any] = {}
    trainer_changes: dict[str, Any] = {}
    trainer_keys = {f.name for f in fields(TrainerConfig)}
    grow_keys = {f.name for f in fields(GrowConfig)}
    for key, value in overrides.items():
        prefix, dot, rest = str(key).partition(".")
        if key == "dense.grid":
            if not isinstance(value, (list, tuple)) or not value or not all(
                    isinstance(h, (list, tuple)) and h and all(_whole(w, 1) for w in h) for h in value):
                raise ValueError(f"policy dense.grid must be a non-empty list of hidden-layer size lists, "
                                 f"e.g. [[10], [5, 5]]; got {value!r}")
            policy = replace(policy, dense_grid=tuple(tuple(int(w) for w in h) for h in value))
        elif key in ("dense.epochs", "polish.epochs"):
            if not _whole(value, 0):
                raise ValueError(f"policy {key} must be an integer >= 0, got {value!r}")
            policy = replace(policy, **{"dense_epochs" if key == "dense.epochs" else "polish_epochs": int(value)})
        elif key == "polish.points":
            if not _whole(value, 2):
                raise ValueError(f"policy polish.points must be an integer >= 2, got {value!r}")
            policy = replace(policy, polish_points=int(value))
        elif dot and prefix == "trainer" and rest in trainer_keys:
            if rest in _TRAINER_OWN:
                raise ValueError(f"policy {key} is not a policy setting here: {_TRAINER_OWN[rest]}")
            trainer_changes[rest] = value
        elif dot and prefix == "grow" and rest in grow_keys:
            if rest in _GROW_OWN:
                raise ValueError(f"policy {key} is not a policy setting here: {_GROW_OWN[rest]}")
            grow_changes[rest] = value
        else:
            raise ValueError(f"unknown policy key {key!r}; policy takes {', '.join(POLICY_KEYS)} "
                             f"(trainer.KEY: {', '.join(sorted(trainer_keys - set(_TRAINER_OWN)))}; "
                             f"grow.KEY: {', '.join(sorted(grow_keys - set(_GROW_OWN)))})")
    if grow_changes or trainer_changes:
        config = policy.grow.to_dict()
        config.update(grow_changes)
        config["trainer"] = {**config["trainer"], **trainer_changes}
        try:
            policy = replace(policy, grow=GrowConfig.from_dict(config))
        except TypeError as exc:
            raise ValueError(f"invalid policy value: {exc}") from None
    return policy


class _MethodEstimator(_NetEstimator):
    """What both method estimators share: the hyperparameters, the method's run, the kept network."""

    def __init__(
        self,
        method: str = "magnitude",
        preset: str = "quick",
        settings: dict[str, Any] | None = None,
        policy: dict[str, Any] | None = None,
        l2: float | str = "auto",
        val_fraction: float = 0.2,
        random_state: int | np.random.RandomState | None = 0,
        device: str = "cpu",
    ) -> None:
        self.method = method
        self.preset = preset
        self.settings = settings
        self.policy = policy
        self.l2 = l2
        self.val_fraction = val_fraction
        self.random_state = random_state
        self.device = device

    # -------------------------------------------------------------- arguments (checked before any work)
    def _method_class(self) -> type[Method]:
        choices = estimator_methods(self._kind)
        if not isinstance(self.method, str) or self.method not in choices:
            other = isinstance(self.method, str) and self.method in method_names()
            why = (f"method {self.method!r} does not run on {self._kind} tasks" if other
                   else f"unknown method {self.method!r}")
            raise ValueError(f"{why}; {type(self).__name__} takes one of {', '.join(choices)}")
        return METHODS[self.method]

    def _policy(self, seed: int, device: str) -> TaskSettings:
        """The tables' policy of ``preset`` with ``policy`` applied, seeded with ``random_state``."""
        if self.preset not in ("quick", "paper"):
            raise ValueError(f"unknown preset {self.preset!r}; choose one of quick, paper")
        policy = task_settings("table", self.preset)
        policy = policy_with(policy, self.policy if self.policy is not None else {})
        return replace(policy, grow=replace(policy.grow, seed=seed), device=device)

    def _built(self, cls: type[Method], policy: TaskSettings) -> Method:
        """The method for ``policy`` with ``settings`` (an unknown key names the method's settings)."""
        settings = self.settings if self.settings is not None else {}
        if not isinstance(settings, Mapping):
            raise ValueError(f"settings must be a dict of {cls.name}'s settings, got {settings!r}")
        return cls.for_policy(policy).with_overrides(dict(settings))

    def _l2(self) -> float | None:
        """The fixed L2 strength, or None for ``"auto"``."""
        if isinstance(self.l2, str):
            if self.l2 != "auto":
                raise ValueError(f"l2 must be 'auto' or a number >= 0, got {self.l2!r}")
            return None
        number = not isinstance(self.l2, bool) and isinstance(self.l2, (int, float, np.number))
        if not number or not 0 <= self.l2 < float("inf"):
            raise ValueError(f"l2 must be 'auto' or a number >= 0, got {self.l2!r}")
        return float(self.l2)

    # -------------------------------------------------------------- the run
    def _search(self, X: np.ndarray, y: np.ndarray) -> "_MethodEstimator":
        """Check every argument, build the task, fit the policy to it (the loss, the L2 strength),
        run the method in a temporary folder and keep the front's lowest-validation-loss network."""
        from .experiments.compare_methods import fitted_to_task

        self._check_split(X)
        cls = self._method_class()
        seed = self._seed()
        try:
            device = resolve_device(self.device)
        except ValueError as exc:
            raise ValueError(f"device: {exc}") from None
        policy = self._policy(seed, device)
        l2 = self._l2()
        self._built(cls, policy)  # the settings are checked before any training
        task = self._task(X, y, seed, device)
        if l2 is None:
            policy = fitted_to_task(policy, task)
        else:
            trainer = replace(policy.grow.trainer, loss=task.loss, l2=l2)
            policy = replace(policy, grow=replace(policy.grow, trainer=trainer),
                             extras={**policy.extras, "l2": "given"})
        method = self._built(cls, policy)
        method.check(task)
        with tempfile.TemporaryDirectory(prefix="netbonsai-estimator-") as folder, warnings.catch_warnings():
            # the estimator keeps the best front network whatever its size (grow's start network
            # may exceed max_params: a setting, not a mistake here)
            warnings.filterwarnings("ignore", message="max_params=.* is below the start network", category=UserWarning)
            config = {"estimator": type(self).__name__, "method": method.name}
            with RunContext(Path(folder) / "run", config, kind="estimator", executor="inline", device=device) as ctx:
                result = method.run(task, ctx)
        self._keep(result, task, policy, method)
        return self

    def _keep(self, result, task: Task, policy: TaskSettings, method: Method) -> None:
        front = finite_front(list(result.front))
        if not front:
            raise ValueError(f"method {method.name!r} offered no network with a finite validation loss "
                             f"({result.stop_reason}); loosen its settings")
        best = min(front, key=lambda c: c.val_loss)
        self.net_ = best.net.to("cpu")
        self.front_ = [found.summary() for found in front]
        self.n_params_ = int(best.params)
        self.l2_ = float(policy.grow.trainer.l2)
        self.stop_reason_ = result.stop_reason
        self.extra_ = dict(result.extra)
        start = self.extra_.get("from")
        self.start_params_ = mlp_params([task.n_in, *start, task.n_out]) if start else None
        self.method_settings_ = method.settings_dict()


class MethodRegressor(RegressorMixin, _Regression, _MethodEstimator):
    """The lowest-validation-loss network of a registered method's front, as a scikit-learn regressor.

    Targets are standardised with the training statistics (the network predicts them in
    standard units; :meth:`predict` maps back, in float64). ``y`` of shape ``(n,)`` or ``(n, k)``.
    Fitted attributes: ``net_`` (a :class:`~netbonsai.nets.DagNet` on standardised inputs and
    targets), ``front_`` (the method's Pareto front, ascending ``params``: ``params``,
    ``train_loss``, ``val_loss`` in standardised units, and the method's own figures such as
    ``round``), ``n_params_``, ``start_params_`` (the dense network a pruning method started
    from; None for the others), ``l2_``, ``stop_reason_``, ``extra_`` (the method's figures),
    ``method_settings_``, ``n_features_in_``, ``x_mean_``, ``x_scale_``, ``y_mean_``, ``y_scale_``.
    """


class MethodClassifier(ClassifierMixin, _Classification, _MethodEstimator):
    """The lowest-validation-loss network of a registered method's front, as a scikit-learn
    classifier (softmax cross-entropy, one logit per class); ``method="magnitude"`` is a pruned
    MLP classifier.

    Fitted attributes: ``classes_``, ``net_`` (a :class:`~netbonsai.nets.DagNet` on
    standardised inputs, logits out), ``front_`` (``params``, ``train_loss``, ``val_loss``:
    cross-entropy, ``val_accuracy``, ``val_errors`` and the method's own figures),
    ``n_params_``, ``start_params_``, ``l2_``, ``stop_reason_``, ``extra_``,
    ``method_settings_``, ``n_features_in_``, ``x_mean_``, ``x_scale_``.
    """
