"""The scikit-learn estimators on two small tables: fit time and held-out score.

- ``GrowRegressor(preset="quick")`` on a generated 1,000-row, 8-feature regression table
  (``make_regression``, noise 10), 75/25 split: fit seconds, parameters, test R^2;
- ``GrowClassifier(preset="quick")`` on scikit-learn's bundled digits, 75/25 split
  (``random_state=0``): fit seconds, parameters, test accuracy (goal: at least 97%).

    python benchmarks/bench_estimators.py       # about 1-2 minutes on 2 cores
"""

from __future__ import annotations

import time

from sklearn.datasets import load_digits, make_regression
from sklearn.model_selection import train_test_split

from netbonsai import GrowClassifier, GrowRegressor


def main() -> None:
    x, y = make_regression(n_samples=1000, n_features=8, noise=10.0, random_state=0)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.25, random_state=0)
    started = time.perf_counter()
    regressor = GrowRegressor(preset="quick").fit(xtr, ytr)
    seconds = time.perf_counter() - started
    print(f"| GrowRegressor, make_regression 1000x8 | {seconds:.1f} | {regressor.n_params_} | "
          f"R^2 {regressor.score(xte, yte):.4f} |")
    digits = load_digits()  # the classifier preset was chosen on validation rows (choose_classifier_preset.py)
    xtr, xte, ytr, yte = train_test_split(digits.data, digits.target, test_size=0.25, random_state=0)
    started = time.perf_counter()
    classifier = GrowClassifier(preset="quick").fit(xtr, ytr)
    seconds = time.perf_counter() - started
    print(f"| GrowClassifier, digits | {seconds:.1f} | {classifier.n_params_} | "
          f"accuracy {classifier.score(xte, yte):.4f} |")


if __name__ == "__main__":
    main()
