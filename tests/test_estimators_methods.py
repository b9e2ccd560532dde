"""The scikit-learn estimators around any registered method: conventions, figures, pipelines,
grid search, pickling and one ValueError per bad argument."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

pytest.importorskip("sklearn")
from sklearn.datasets import load_wine, make_friedman1, make_regression  # noqa: E402
from sklearn.model_selection import GridSearchCV, train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import netbonsai  # noqa: E402
from netbonsai.estimators_methods import MethodClassifier, MethodRegressor, estimator_methods  # noqa: E402
from netbonsai.methods.magnitude import mlp_params  # noqa: E402

# one 4-neuron dense network, 10 L-BFGS iterations, one pruning round of 30% with 3 iterations of
# retraining, no polish, no L2 search: a fit costs a fraction of a second
TINY_POLICY = {"dense.grid": [[4]], "dense.epochs": 10, "grow.grow_epochs": 3, "polish.epochs": 0}
TINY = dict(settings={"sparsity": 0.3, "schedule": "relative:0.3"}, policy=TINY_POLICY, l2=0.0)
# small budgets for the other methods (on top of TINY_POLICY)
METHOD_SETTINGS = {
    "grow": {"hidden": [4], "start_epochs": 10, "trial_epochs": 2, "max_cycles": 1, "n_attempts": 5,
             "n_candidates": 4, "n_trials": 2, "max_params": 20},
    "loss-aware": {"n_candidates": 4, "n_trials": 2, "max_fraction": 0.3},
}
COMMITTED = ("dense", "grow", "magnitude", "magnitude-uniform", "magnitude-distributed", "random", "obd", "loss-aware")


@parametrize_with_checks([MethodRegressor(**TINY), MethodClassifier(**TINY)])
def test_sklearn_conventions(estimator, check):
    check(estimator)


def test_lazy_export_and_choices():
    assert netbonsai.MethodRegressor is MethodRegressor
    assert netbonsai.MethodClassifier is MethodClassifier
    for kind in ("regression", "classification"):
        assert set(COMMITTED) <= set(estimator_methods(kind))


def test_magnitude_classifier_on_wine_is_accurate_and_smaller_than_its_dense_start():
    X, y = load_wine(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0, stratify=y)
    model = MethodClassifier(method="magnitude")  # the quick tables preset, as compare runs it
    assert model.fit(X_train, y_train) is model
    np.testing.assert_array_equal(model.classes_, [0, 1, 2])
    assert model.score(X_test, y_test) > 0.9
    # the dense network pruned: the largest grid network within max_params=1000 (32 hidden neurons)
    assert model.extra_["from"] == [32]
    assert model.start_params_ == mlp_params([13, 32, 3]) == 547
    assert model.n_params_ == model.net_.num_params() < model.start_params_
    assert model.l2_ in (0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
    params = [p["params"] for p in model.front_]
    assert params == sorted(params) and len(params) >= 2
    assert all(p["params"] < 547 and "round" in p and "val_accuracy" in p for p in model.front_)
    best = min(model.front_, key=lambda p: p["val_loss"])
    assert best["params"] == model.n_params_
    proba = model.predict_proba(X_test)
    assert proba.dtype == np.float64 and proba.shape == (len(X_test), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(model.classes_[proba.argmax(axis=1)], model.predict(X_test))
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(restored.predict_proba(X_test), proba)


def test_regressor_on_friedman1():
    X, y = make_friedman1(n_samples=500, noise=0.5, random_state=0)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    model = MethodRegressor(policy={"dense.epochs": 100, "grow.grow_epochs": 20, "polish.epochs": 20})
    model.fit(X_train, y_train)
    assert model.score(X_test, y_test) > 0.8
    assert model.predict(X_test).dtype == np.float64
    assert model.n_params_ < model.start_params_
    assert model.stop_reason_ == "sparsity reached or paths cut"
    assert model.method_settings_["method"] == "magnitude-blinded"


@pytest.mark.parametrize("method", COMMITTED)
def test_every_method_fits_a_small_table(method):
    X, y = make_regression(n_samples=80, n_features=3, noise=1.0, random_state=0)
    model = MethodRegressor(method=method, settings=METHOD_SETTINGS.get(method), policy=TINY_POLICY, l2=0.0)
    model.fit(X, y)
    assert model.score(X, y) > 0.8
    params = [p["params"] for p in model.front_]
    losses = [p["val_loss"] for p in model.front_]
    assert params == sorted(params) and losses == sorted(losses, reverse=True)  # a Pareto front
    assert model.n_params_ == model.net_.num_params() == params[-1]
    if method not in ("dense", "grow"):
        assert model.start_params_ == mlp_params([3, 4, 1]) == 21
        assert model.n_params_ < 21


def test_settings_reach_the_method():
    X, y = make_regression(n_samples=60, n_features=3, random_state=0)
    settings = {"sparsity": 0.6, "schedule": "relative:0.2"}
    model = MethodRegressor(method="random", settings=settings, policy=TINY_POLICY, l2=0.0).fit(X, y)
    assert model.method_settings_ == {"enabled": True, "method": "random", "schedule": "relative:0.2",
                                      "sparsity": 0.6}
    assert settings == {"sparsity": 0.6, "schedule": "relative:0.2"}  # not changed by fit
    assert max(p["round"] for p in model.front_) >= 2  # 0.8 ** 2 > 0.4 of the synapses are left: several rounds
    dense = MethodRegressor(method="dense", policy={**TINY_POLICY, "dense.grid": [[2], [6]]}, l2=0.0).fit(X, y)
    assert {p["hidden"][0] for p in dense.front_} <= {2, 6}
    assert dense.extra_ == {"grid": [[2], [6]]} and dense.start_params_ is None


def test_deterministic_and_pickles():
    X, y = make_regression(n_samples=60, n_features=3, random_state=0)
    a = MethodRegressor(**TINY).fit(X, y)
    b = MethodRegressor(**TINY).fit(X, y)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    restored = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(restored.predict(X), a.predict(X))
    other = MethodRegressor(**{**TINY, "random_state": 1}).fit(X, y)
    assert not np.array_equal(other.predict(X), a.predict(X))


def test_pipeline_and_grid_search_over_methods():
    X, y = make_regression(n_samples=90, n_features=3, noise=1.0, random_state=0)
    pipe = make_pipeline(StandardScaler(), MethodRegressor(**TINY))
    search = GridSearchCV(pipe, {"methodregressor__method": ["magnitude", "random"]}, cv=2)
    search.fit(X, y)
    assert search.best_params_["methodregressor__method"] in ("magnitude", "random")
    assert search.predict(X).shape == (90,)
    assert search.best_estimator_[-1].method == search.best_params_["methodregressor__method"]


def test_one_value_error_per_bad_argument(monkeypatch):
    X, y = make_regression(n_samples=40, n_features=3, random_state=0)

    def no_work(*args, **kwargs):
        raise AssertionError("an argument was checked after the work began")

    monkeypatch.setattr(MethodRegressor, "_task", no_work)
    cases = [
        (dict(method="prune-everything"),
         r"unknown method 'prune-everything'; MethodRegressor takes one of dense, .*magnitude"),
        (dict(method=None), "unknown method None"),
        (dict(preset="slow"), "unknown preset 'slow'; choose one of quick, paper"),
        (dict(settings={"sparsity": 0.5, "rounds": 3}),
         "unknown setting magnitude.rounds; magnitude takes enabled, method, schedule, sparsity"),
        (dict(method="loss-aware", settings={"sparsity": 0.5}),
         "unknown setting loss-aware.sparsity; loss-aware takes chunk, eps"),
        (dict(settings={"sparsity": 1.5}), "magnitude.sparsity must be a fraction in"),
        (dict(settings={"schedule": "often"}), "bad pruning schedule 'often'"),
        (dict(settings=[("sparsity", 0.5)]), "settings must be a dict of magnitude's settings"),
        (dict(policy={"dense.width": 3}), r"unknown policy key 'dense.width'; policy takes dense.grid, dense.epochs"),
        (dict(policy={"grow.nonsense": 3}), r"unknown policy key 'grow.nonsense'.*grow.KEY: activation"),
        (dict(policy={"dense.grid": [[0]]}), "policy dense.grid must be a non-empty list"),
        (dict(policy={"dense.epochs": "match"}), "policy dense.epochs must be an integer >= 0"),
        (dict(policy={"trainer.l2": 0.1}), "policy trainer.l2 is not a policy setting here: give the estimator's l2"),
        (dict(policy={"grow.seed": 3}), "random_state is the seed"),
        (dict(policy={"trainer.method": "rmsprop"}), "unknown training method 'rmsprop'"),
        (dict(policy="fast"), "policy must be a dict"),
        (dict(l2="strong"), "l2 must be 'auto' or a number >= 0"),
        (dict(l2=-1.0), "l2 must be 'auto' or a number >= 0"),
        (dict(val_fraction=1.0), r"val_fraction must be in \[0, 1\)"),
        (dict(device="tpu"), "device: unknown device 'tpu'"),
    ]
    for arguments, message in cases:
        with pytest.raises(ValueError, match=message):
            MethodRegressor(**arguments).fit(X, y)
    with pytest.raises(ValueError, match="MethodClassifier takes one of"):
        MethodClassifier(method="grow-everything").fit(X, y > 0)
