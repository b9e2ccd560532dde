"""scikit-learn estimators around the grow-and-prune search: :class:`GrowRegressor`, :class:`GrowClassifier`.

``fit(X, y)`` standardises the inputs (and a regressor's targets) with the training rows'
statistics, holds out a seeded ``val_fraction`` of the rows as the search's validation split,
runs :func:`netbonsai.grow.grow` on the rest and keeps the network of the search's Pareto front
with the lowest validation loss (``net_``; the whole front in ``front_``). The constructor only
stores its arguments (scikit-learn's rule), so the estimators clone, pickle and work inside
``Pipeline`` and ``GridSearchCV``.

Budgets come from ``preset`` (``quick`` or ``paper``: the image tasks' search budgets); any of
``start_epochs``, ``trial_epochs``, ``grow_epochs``, ``max_cycles`` given overrides it.
``hidden=None`` starts from the paper's (6, 6) MLP for regression and from one hidden layer of
64 neurons for classification (a classifier's outputs are one logit per class; its ``quick``
budgets: :data:`CLASSIFIER_PRESETS`). ``max_params`` is where the search stops;
the kept network is the front's lowest validation loss, whatever its size (a start network
above ``max_params`` is not warned about here). ``l2`` is the L2 penalty on the weights of
every training (``"auto"``: chosen on the validation rows, see
:func:`netbonsai.train.regularization.choose_l2`; the value used is ``l2_``).
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .data.task import Split, Task
from .grow.config import GrowConfig
from .grow.search import grow
from .runtime import thread_policy, threads
from .train.regularization import choose_l2

__all__ = ["CLASSIFIER_PRESETS", "GrowClassifier", "GrowRegressor", "PRESETS"]

# search budgets (trainer epochs: L-BFGS iterations) of each preset, as the image tasks' presets
PRESETS: dict[str, dict[str, int]] = {
    "quick": {"start_epochs": 1000, "trial_epochs": 20, "grow_epochs": 150, "max_cycles": 10},
    "paper": {"start_epochs": 4000, "trial_epochs": 50, "grow_epochs": 400, "max_cycles": 30},
}
# a classifier's quick start network (64 units) and budget (500 L-BFGS iterations) were chosen by
# validation accuracy alone, mean over three bundled tables (digits, breast_cancer, wine; their
# test rows never read): benchmarks/choose_classifier_preset.py, recorded in docs/RESULTS.md
CLASSIFIER_PRESETS: dict[str, dict[str, int]] = {
    "quick": {"start_epochs": 500, "trial_epochs": 10, "grow_epochs": 50, "max_cycles": 1},
    "paper": PRESETS["paper"],
}


class _NetEstimator(BaseEstimator):
    """What every netbonsai estimator shares (these and :mod:`netbonsai.estimators_methods`'): the
    seed, the :class:`~netbonsai.data.task.Task` built from ``X`` and ``y`` (inputs standardised
    with the training rows' statistics, a seeded ``val_fraction`` of the rows held out), the
    forward pass in float64 and the tags. A subclass provides ``_search(X, y)``: fit on the
    prepared arrays and set ``net_`` (``y``: standardised targets, or class indices)."""

    _kind = "regression"

    def _seed(self) -> int:
        if isinstance(self.random_state, (int, np.integer)) and not isinstance(self.random_state, bool):
            return int(self.random_state)
        return int(check_random_state(self.random_state).randint(0, 2**31 - 1))

    def _check_split(self, X: np.ndarray) -> None:
        """Refuse a ``val_fraction`` outside [0, 1) and fewer than 2 rows (before any work)."""
        if isinstance(self.val_fraction, bool) or not isinstance(self.val_fraction, (int, float, np.number)) \
                or not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction!r}")
        if X.shape[0] < 2:
            raise ValueError(f"n_samples={X.shape[0]}: the search needs at least 2 samples")

    def _task(self, X: np.ndarray, y: np.ndarray, seed: int, device: str) -> Task:
        """The task of ``X`` (standardised: ``x_mean_``, ``x_scale_``) and ``y``, its validation
        rows a seeded ``val_fraction`` of the rows (all rows when too few are left to hold any out)."""
        self._check_split(X)
        self.x_mean_ = X.mean(axis=0)
        std = X.std(axis=0)
        self.x_scale_ = np.where(std > 1e-12, std, 1.0)
        x = self._inputs(X)
        n = x.shape[0]
        n_val = int(round(n * self.val_fraction))
        if n - n_val < 1:
            n_val = 0
        order = np.random.RandomState(seed).permutation(n)
        val_rows, train_rows = np.sort(order[:n_val]), np.sort(order[n_val:])
        if n_val == 0:
            val_rows = train_rows  # too few rows to hold any out: validate on the training rows
        target = torch.as_tensor(y)
        classes = {"n_classes": len(self.classes_)} if self._kind == "classification" else {}
        return Task(
            name=type(self).__name__, train=Split(x[train_rows], target[train_rows]),
            val=Split(x[val_rows], target[val_rows]),
            loss="cross_entropy" if self._kind == "classification" else "mse",
            metrics=("loss", "accuracy", "errors") if self._kind == "classification" else ("loss",),
            meta={"split_seed": seed, **classes},
        ).to(device)

    def _inputs(self, X: np.ndarray) -> torch.Tensor:
        return torch.as_tensor((X - self.x_mean_) / self.x_scale_, dtype=torch.get_default_dtype())

    def _outputs(self, X: Any) -> np.ndarray:
        """The network's ``(n, n_out)`` outputs for ``X`` (raw: logits, or standardised targets),
        computed in float64 so that a row's prediction does not depend on the rows batched with
        it (float32 matrix products round differently for different batch shapes)."""
        check_is_fitted(self, "net_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        net = copy.deepcopy(self.net_).to(torch.float64)
        with torch.no_grad():
            return net(self._inputs(X).to(torch.float64)).numpy()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None or isinstance(self.random_state, np.random.RandomState)
        return tags


class _Regression:
    """A regressor's fit (targets standardised with the training statistics: ``y_mean_``,
    ``y_scale_``) and predict (mapped back); ``y`` of shape ``(n,)`` or ``(n, k)``."""

    def fit(self, X: Any, y: Any):
        X, y = validate_data(self, X, y, y_numeric=True, multi_output=True, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        self._y_1d = y.ndim == 1
        y2 = y.reshape(len(y), -1)
        self.y_mean_ = y2.mean(axis=0)
        std = y2.std(axis=0)
        self.y_scale_ = np.where(std > 1e-12, std, 1.0)
        target = torch.as_tensor((y2 - self.y_mean_) / self.y_scale_, dtype=torch.get_default_dtype())
        with threads(thread_policy()):  # the library's thread policy (1 unless set_threads chose more)
            return self._search(X, target.numpy())

    def predict(self, X: Any) -> np.ndarray:
        out = self._outputs(X) * self.y_scale_ + self.y_mean_
        return out.ravel() if self._y_1d else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


class _Classification:
    """A classifier's fit (labels encoded as indices into ``classes_``) and its softmax outputs."""

    _kind = "classification"

    def fit(self, X: Any, y: Any):
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        self.classes_, encoded = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"{type(self).__name__} needs samples of at least 2 classes; got 1 class "
                             f"({self.classes_[0]!r})")
        with threads(thread_policy()):  # the library's thread policy (1 unless set_threads chose more)
            return self._search(X, encoded.astype(np.int64))

    def decision_function(self, X: Any) -> np.ndarray:
        """The logits, ``(n, n_classes)`` (``(n,)`` for two classes: the second's minus the first's)."""
        logits = self._outputs(X)
        return logits[:, 1] - logits[:, 0] if len(self.classes_) == 2 else logits

    def predict_proba(self, X: Any) -> np.ndarray:
        logits = self._outputs(X)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X: Any) -> np.ndarray:
        logits = self._outputs(X)
        logits -= logits.max(axis=1, keepdims=True)
        return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))

    def predict(self, X: Any) -> np.ndarray:
        logits = self._outputs(X)  # first: checks that the classifier is fitted
        return self.classes_[logits.argmax(axis=1)]


class _GrowEstimator(_NetEstimator):
    """What both estimators share: the hyperparameters and the search."""

    _default_hidden: tuple[int, ...] = (6, 6)
    _presets = PRESETS

    def __init__(
        self,
        preset: str = "quick",
        max_params: int = 300,
        eps: float = 0.002,
        n_candidates: int = 8,
        n_trials: int = 3,
        n_attempts: int = 100,
        start_epochs: int | None = None,
        trial_epochs: int | None = None,
        grow_epochs: int | None = None,
        max_cycles: int | None = None,
        hidden: tuple[int, ...] | None = None,
        activation: str = "tanh",
        val_fraction: float = 0.2,
        l2: float | str = "auto",
        random_state: int | np.random.RandomState | None = 0,
        device: str = "cpu",
    ) -> None:
        self.preset = preset
        self.max_params = max_params
        self.eps = eps
        self.n_candidates = n_candidates
        self.n_trials = n_trials
        self.n_attempts = n_attempts
        self.start_epochs = start_epochs
        self.trial_epochs = trial_epochs
        self.grow_epochs = grow_epochs
        self.max_cycles = max_cycles
        self.hidden = hidden
        self.activation = activation
        self.val_fraction = val_fraction
        self.l2 = l2
        self.random_state = random_state
        self.device = device

    # -------------------------------------------------------------- the search
    def _config(self, seed: int) -> GrowConfig:
        if self.preset not in self._presets:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of {', '.join(self._presets)}")
        budgets = {name: getattr(self, name) if getattr(self, name) is not None else value
                   for name, value in self._presets[self.preset].items()}
        hidden = self._default_hidden if self.hidden is None else tuple(int(h) for h in np.atleast_1d(self.hidden))
        return GrowConfig(
            hidden=hidden, activation=self.activation, n_candidates=int(self.n_candidates),
            n_trials=int(self.n_trials), n_attempts=int(self.n_attempts), eps=float(self.eps),
            max_params=int(self.max_params), seed=seed, **budgets,
        )

    def _search(self, X: np.ndarray, y: np.ndarray) -> "_GrowEstimator":
        """Standardise ``X``, split off the validation rows, run the search, keep the best network."""
        self._check_split(X)
        seed = self._seed()
        config = self._config(seed)
        task = self._task(X, y, seed, self.device)
        config = self._regularised(config, task, seed)
        with warnings.catch_warnings():
            # the estimator keeps the best front network whatever its size: a limit below the
            # start network is a setting, not a mistake here
            warnings.filterwarnings("ignore", message="max_params=.* is below the start network", category=UserWarning)
            result = grow(task, config)
        best = min(result.front, key=lambda p: p.val_loss) if result.front else None
        net = best.net if best is not None else result.net
        self.net_ = net.to("cpu")
        self.front_ = [{"params": p.params, "train_loss": p.train_loss, "val_loss": p.val_loss} for p in result.front]
        self.n_params_ = int(self.net_.num_params())
        self.stop_reason_ = result.stop_reason
        return self

    def _regularised(self, config: GrowConfig, task: Task, seed: int) -> GrowConfig:
        """``config`` with the trainer's L2 strength: ``l2`` as given, or with ``"auto"`` the value
        of :data:`~netbonsai.train.regularization.L2_GRID` whose start network (trained as the
        search trains it) has the lowest validation loss; kept in ``l2_``."""
        trainer = replace(config.trainer, loss=task.loss)
        if isinstance(self.l2, str):
            if self.l2 != "auto":
                raise ValueError(f"l2 must be 'auto' or a number >= 0, got {self.l2!r}")
            self.l2_, _ = choose_l2(task, config.hidden, config.activation, config.start_epochs, trainer, seed=seed)
        else:
            value = float(self.l2)
            if not 0 <= value < float("inf"):
                raise ValueError(f"l2 must be 'auto' or a number >= 0, got {self.l2!r}")
            self.l2_ = value
        return replace(config, trainer=replace(trainer, l2=self.l2_))


class GrowRegressor(RegressorMixin, _Regression, _GrowEstimator):
    """The smallest network that meets the error target, as a scikit-learn regressor.

    Targets are standardised with the training statistics (the network predicts them in
    standard units; :meth:`predict` maps back). ``y`` of shape ``(n,)`` or ``(n, k)``.
    Fitted attributes: ``net_`` (a :class:`~netbonsai.nets.DagNet` on standardised inputs and
    targets), ``front_`` (the search's front: ``params``, ``train_loss``, ``val_loss`` in
    standardised units), ``n_params_``, ``n_features_in_``, ``x_mean_``, ``x_scale_``,
    ``y_mean_``, ``y_scale_``, ``stop_reason_``, ``l2_``.
    """


class GrowClassifier(ClassifierMixin, _Classification, _GrowEstimator):
    """The smallest network that meets the error target, as a scikit-learn classifier (softmax
    cross-entropy, one logit per class).

    Fitted attributes: ``classes_``, ``net_`` (a :class:`~netbonsai.nets.DagNet` on
    standardised inputs, logits out), ``front_`` (``params``, ``train_loss``, ``val_loss``:
    cross-entropy), ``n_params_``, ``n_features_in_``, ``x_mean_``, ``x_scale_``, ``stop_reason_``, ``l2_``.
    """

    _default_hidden = (64,)
    _presets = CLASSIFIER_PRESETS
