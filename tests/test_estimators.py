"""The scikit-learn estimators: API conventions, pipelines, grid search, pickling."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

pytest.importorskip("sklearn")
from sklearn.datasets import load_digits, make_regression  # noqa: E402
from sklearn.model_selection import GridSearchCV, train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import netbonsai  # noqa: E402
from netbonsai.estimators import GrowClassifier, GrowRegressor  # noqa: E402

TINY = dict(start_epochs=20, trial_epochs=2, grow_epochs=5, max_cycles=1, n_attempts=10, n_candidates=4, n_trials=2,
            max_params=30, hidden=(3,))


@parametrize_with_checks([GrowRegressor(**TINY), GrowClassifier(**TINY)])
def test_sklearn_conventions(estimator, check):
    check(estimator)


def regression_data(n: int = 200):
    return make_regression(n_samples=n, n_features=4, noise=1.0, random_state=0)


def test_lazy_export():
    assert netbonsai.GrowRegressor is GrowRegressor
    assert netbonsai.GrowClassifier is GrowClassifier


def test_regressor_fits_and_reports_its_front():
    X, y = regression_data()
    model = GrowRegressor(start_epochs=100, trial_epochs=5, grow_epochs=20, max_cycles=1, n_attempts=10,
                          max_params=40, hidden=(4,))
    assert model.fit(X, y) is model
    assert model.n_features_in_ == 4
    assert model.predict(X).shape == (200,)
    assert model.score(X, y) > 0.9
    assert model.front_ and {"params", "train_loss", "val_loss"} <= set(model.front_[0])
    assert model.n_params_ == model.net_.num_params()
    assert min(p["val_loss"] for p in model.front_) == pytest.approx(
        next(p["val_loss"] for p in model.front_ if p["params"] == model.n_params_))


def test_regressor_is_deterministic_and_pickles():
    X, y = regression_data(80)
    a = GrowRegressor(**TINY).fit(X, y)
    b = GrowRegressor(**TINY).fit(X, y)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    restored = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(restored.predict(X), a.predict(X))
    net = pickle.loads(pickle.dumps(a.net_))
    assert net.num_params() == a.net_.num_params()


def test_multi_output_regression():
    X, y = make_regression(n_samples=60, n_features=3, n_targets=2, random_state=0)
    assert GrowRegressor(**TINY).fit(X, y).predict(X).shape == (60, 2)


def test_classifier_on_digits():
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    model = GrowClassifier(start_epochs=60, trial_epochs=3, grow_epochs=10, max_cycles=1, n_attempts=10,
                           max_params=400, hidden=(8,))
    model.fit(X_train, y_train)
    np.testing.assert_array_equal(model.classes_, np.arange(10))
    proba = model.predict_proba(X_test)
    assert proba.shape == (len(X_test), 10)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-6)
    assert model.score(X_test, y_test) > 0.7  # chance is 0.1
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(restored.predict(X_test), model.predict(X_test))


def test_classifier_keeps_string_labels():
    X, y = load_digits(n_class=3, return_X_y=True)
    labels = np.array(["zero", "one", "two"])[y]
    model = GrowClassifier(**TINY).fit(X[:150], labels[:150])
    assert set(model.predict(X[150:])) <= set(labels)


def test_pipeline_and_grid_search():
    X, y = regression_data(90)
    pipe = make_pipeline(StandardScaler(), GrowRegressor(**TINY))
    search = GridSearchCV(pipe, {"growregressor__max_params": [20, 30]}, cv=2)
    search.fit(X, y)
    assert search.best_params_["growregressor__max_params"] in (20, 30)
    assert search.predict(X).shape == (90,)


def test_bad_settings_are_value_errors():
    X, y = regression_data(40)
    with pytest.raises(ValueError, match="preset"):
        GrowRegressor(preset="slow").fit(X, y)
    with pytest.raises(ValueError, match="val_fraction"):
        GrowRegressor(val_fraction=1.0).fit(X, y)
