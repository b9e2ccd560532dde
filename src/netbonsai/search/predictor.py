"""Structural performance prediction for the genetic search (paper 001 section 4.4).

Every trained candidate becomes a *record* of the meta-dataset (:func:`make_record`), a JSON-able dict::

    {"genotype": g.to_dict(), "features": {name: value, ...}, "accuracy": val_accuracy,
     "params": int, "seconds": float, "depth": int}

with ``features`` the 56 :data:`~netbonsai.search.features.FEATURE_NAMES` of ``genotype_features``.
:class:`AccuracyPredictor` regresses validation accuracy on those features so that half of a
generation can be scored without training; :func:`evaluate_predictor` measures it on a seeded 70/30
split against single-feature baselines (parameter count alone, depth alone) and against the 23
random-graph features of paper 001 section 4.3 (``analysis.graph_features``).

``graph_features`` is given the genotype's own DiGraph: it is a DAG (so it is used as given, not
re-oriented by node id, which would reverse the edges into a branch's end, whose ids are larger), and
its ``layers`` is then the longest input -> output path in vertices. Its path statistics are computed
on the undirected graph there, as in section 4.3.

Features depend on ``in_channels`` (the layer mass): a predictor must be asked with the same
``in_channels`` the records were made with.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from scipy.stats import spearmanr
from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..analysis.graph_features import FEATURES as GRAPH23, graph_features
from ..errors import InputError
from .features import FEATURE_NAMES, feature_matrix, genotype_features
from .genotype import Genotype

__all__ = [
    "REGRESSORS",
    "RECORD_KEYS",
    "AccuracyPredictor",
    "evaluate_predictor",
    "make_record",
    "records_matrix",
]

REGRESSORS = ("forest", "boosting", "ridge")
RECORD_KEYS = ("genotype", "features", "accuracy", "params", "seconds", "depth")


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _is_real(x: Any) -> bool:
    numeric = isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)
    return numeric and math.isfinite(x)


def make_record(
    genotype: Genotype, accuracy: float, params: int, seconds: float, in_channels: int = 1
) -> dict[str, Any]:
    """One meta-dataset record of a trained genotype (features and depth computed here), JSON-able."""
    if not isinstance(genotype, Genotype):
        raise InputError(f"make_record needs a Genotype, got {type(genotype).__name__}")
    if not _is_real(accuracy):
        raise InputError(f"accuracy must be a finite number, got {accuracy!r}")
    if not _is_int(params) or params < 0:
        raise InputError(f"params must be a non-negative int, got {params!r}")
    if not _is_real(seconds) or seconds < 0:
        raise InputError(f"seconds must be a finite non-negative number, got {seconds!r}")
    return {
        "genotype": genotype.to_dict(),
        "features": genotype_features(genotype, in_channels),
        "accuracy": float(accuracy),
        "params": int(params),
        "seconds": float(seconds),
        "depth": int(genotype.depth),
    }


def _check_records(records: Any) -> list[Mapping[str, Any]]:
    if isinstance(records, (str, bytes, Mapping)) or not isinstance(records, Iterable):
        raise InputError(f"records must be a list of record dicts, got {type(records).__name__}")
    records = list(records)
    for i, r in enumerate(records):
        if not isinstance(r, Mapping):
            raise InputError(f"record {i} is not a dict but {type(r).__name__}")
        missing = [k for k in RECORD_KEYS if k not in r]
        if missing:
            raise InputError(f"record {i} lacks the keys {missing}")
        if not isinstance(r["features"], Mapping):
            raise InputError(f"record {i}: 'features' must be a dict of feature name -> value")
        absent = [n for n in FEATURE_NAMES if n not in r["features"]]
        if absent:
            raise InputError(f"record {i} lacks {len(absent)} features, e.g. {absent[0]!r}")
        bad = [n for n in FEATURE_NAMES if not _is_real(r["features"][n])]
        if bad:
            raise InputError(f"record {i}: feature {bad[0]!r} is not a finite number")
        for key in ("accuracy", "params", "depth"):
            if not _is_real(r[key]):
                raise InputError(f"record {i}: {key!r} must be a finite number, got {r[key]!r}")
    return records


def records_matrix(records: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)``: features in ``FEATURE_NAMES`` order, shape ``(n, 56)``, and the accuracies ``(n,)``."""
    records = _check_records(records)
    X = np.array([[r["features"][n] for n in FEATURE_NAMES] for r in records], dtype=np.float64)
    y = np.array([r["accuracy"] for r in records], dtype=np.float64)
    return X.reshape(len(records), len(FEATURE_NAMES)), y


def _regressor(kind: str, seed: int) -> Any:
    """A fresh, unfitted scikit-learn regressor of the named family."""
    if kind == "forest":
        return RandomForestRegressor(n_estimators=200, random_state=seed, n_jobs=1)
    if kind == "boosting":
        return GradientBoostingRegressor(random_state=seed)
    return make_pipeline(StandardScaler(), Ridge())


def _check_family(regressor: Any, seed: Any) -> None:
    if regressor not in REGRESSORS:
        raise InputError(f"regressor must be one of {', '.join(REGRESSORS)}, got {regressor!r}")
    if not _is_int(seed) or not 0 <= seed < 2**32:
        raise InputError(f"seed must be an int in 0..2**32-1, got {seed!r}")


class AccuracyPredictor:
    """Predicts a genotype's validation accuracy from its structural features (scikit-learn style).

    ``fit`` with fewer than ``min_records`` records fits nothing and leaves the predictor not
    :attr:`ready` (a search calls ``fit`` every generation and trains everything until it is ready);
    ``predict`` on a predictor that is not ready raises InputError. Deterministic for a seed.
    """

    def __init__(self, regressor: str = "forest", min_records: int = 20, seed: int = 0) -> None:
        _check_family(regressor, seed)
        if not _is_int(min_records) or min_records < 2:
            raise InputError(f"min_records must be an int >= 2, got {min_records!r}")
        self.regressor = regressor
        self.min_records = int(min_records)
        self.seed = int(seed)
        self.n_records_ = 0
        self.model_: Any = None

    def __repr__(self) -> str:
        return (
            f"AccuracyPredictor(regressor={self.regressor!r}, min_records={self.min_records}, "
            f"seed={self.seed}, n_records={self.n_records_}, ready={self.ready})"
        )

    @property
    def ready(self) -> bool:
        """True once fitted on at least ``min_records`` records."""
        return self.model_ is not None

    def fit(self, records: Sequence[Mapping[str, Any]]) -> AccuracyPredictor:
        """Refit from scratch on all ``records`` (a previous fit is discarded); returns self."""
        X, y = records_matrix(records)
        self.n_records_ = len(y)
        self.model_ = None
        if len(y) >= self.min_records:
            self.model_ = _regressor(self.regressor, self.seed).fit(X, y)
        return self

    def predict(self, genotypes: Iterable[Genotype], in_channels: int = 1) -> np.ndarray:
        """Predicted accuracies, shape ``(n,)``; ``in_channels`` as the records were made with."""
        if not self.ready:
            raise InputError(
                f"the predictor is not ready: fitted on {self.n_records_} records, needs {self.min_records}"
            )
        X = feature_matrix(list(genotypes), in_channels)
        if len(X) == 0:
            return np.zeros(0, dtype=np.float64)
        return np.asarray(self.model_.predict(X), dtype=np.float64)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho; 0.0 where it is undefined (a constant prediction or target has no ranking)."""
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    rho = float(spearmanr(a, b)[0])
    return rho if math.isfinite(rho) else 0.0


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    """R^2 on held-out data (can be negative); 0.0 where undefined (a constant target)."""
    if np.ptp(y) == 0:
        return 0.0
    value = float(r2_score(y, pred))
    return value if math.isfinite(value) else 0.0


def _graph23_row(genotype: Mapping[str, Any]) -> list[float]:
    """The 23 section-4.3 features of a stored genotype's DiGraph (used as given: it is a DAG)."""
    feats = graph_features(Genotype.from_dict(dict(genotype)).graph)
    return [feats[name] for name in GRAPH23]


def evaluate_predictor(
    records: Sequence[Mapping[str, Any]],
    regressor: str = "forest",
    test_fraction: float = 0.3,
    seed: int = 0,
) -> dict[str, Any]:
    """Held-out quality of the predictor on a seeded split, with baselines.

    The same regressor family is trained on: all 56 features (``r2``, ``spearman``), the record's
    ``params`` alone, its ``depth`` alone, and the 23 ``analysis.graph_features`` of each genotype's
    DiGraph (``r2_graph23``). ``importances`` lists the 10 features the full forest relies on most
    (``[]`` for other regressors). Scores that are undefined (a constant target or prediction) are 0.0.
    """
    _check_family(regressor, seed)
    if not _is_real(test_fraction) or not 0.0 < test_fraction < 1.0:
        raise InputError(f"test_fraction must be a number strictly between 0 and 1, got {test_fraction!r}")
    records = _check_records(records)
    X, y = records_matrix(records)
    n = len(y)
    if n < 10:
        raise InputError(f"evaluate_predictor needs at least 10 records, got {n}")
    n_test = math.ceil(test_fraction * n)  # train_test_split's rule for a float test_size
    if n_test < 2 or n - n_test < 2:
        raise InputError(
            f"test_fraction {test_fraction} leaves {n_test} of {n} records to test: need >= 2 on each side"
        )
    params = np.array([[float(r["params"])] for r in records], dtype=np.float64)
    depth = np.array([[float(r["depth"])] for r in records], dtype=np.float64)
    graph23 = np.array([_graph23_row(r["genotype"]) for r in records], dtype=np.float64)
    train, test = train_test_split(np.arange(n), test_size=test_fraction, random_state=seed)

    def fit_predict(Z: np.ndarray) -> tuple[Any, np.ndarray]:
        model = _regressor(regressor, seed).fit(Z[train], y[train])
        return model, np.asarray(model.predict(Z[test]), dtype=np.float64)

    model, pred = fit_predict(X)
    _, pred_params = fit_predict(params)
    _, pred_depth = fit_predict(depth)
    _, pred_graph = fit_predict(graph23)
    y_test = y[test]
    importances: list[str] = []
    if regressor == "forest":
        order = np.argsort(-model.feature_importances_, kind="stable")
        importances = [FEATURE_NAMES[i] for i in order[:10]]
    return {
        "r2": _r2(y_test, pred),
        "spearman": _spearman(y_test, pred),
        "r2_params_only": _r2(y_test, pred_params),
        "r2_depth_only": _r2(y_test, pred_depth),
        "r2_graph23": _r2(y_test, pred_graph),
        "spearman_params_only": _spearman(y_test, pred_params),
        "spearman_depth_only": _spearman(y_test, pred_depth),
        "n_train": int(len(train)),
        "n_test": int(len(test)),
        "importances": importances,
    }
