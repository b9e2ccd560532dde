"""How GrowClassifier's quick preset was chosen: on validation rows only, over three tables.

For each bundled classification table (digits, breast_cancer, wine) the rows are split 75/25
(``random_state=0``; the 25% is the test split, never read here) and the 75% again 75/25
(``random_state=1``): every candidate start network and start budget is fitted on the inner
75% and scored by accuracy on the inner 25%. The candidate with the best mean validation
accuracy over the three tables is the preset; ties go to the cheaper candidate.

    python benchmarks/choose_classifier_preset.py      # about 10-20 minutes on 2 cores
"""

from __future__ import annotations

import itertools
import time

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits, load_wine
from sklearn.model_selection import train_test_split

from netbonsai import GrowClassifier

TABLES = {"digits": load_digits, "breast_cancer": load_breast_cancer, "wine": load_wine}
HIDDEN = ((16,), (32,), (64,))
START_EPOCHS = (150, 500)


def main() -> None:
    rows = []
    for hidden, start_epochs in itertools.product(HIDDEN, START_EPOCHS):
        scores, seconds = [], 0.0
        for name, loader in TABLES.items():
            x, y = loader(return_X_y=True)
            x_fit, _x_test, y_fit, _y_test = train_test_split(x, y, test_size=0.25, random_state=0)
            x_in, x_val, y_in, y_val = train_test_split(x_fit, y_fit, test_size=0.25, random_state=1)
            started = time.perf_counter()
            model = GrowClassifier(preset="quick", hidden=hidden, start_epochs=start_epochs).fit(x_in, y_in)
            seconds += time.perf_counter() - started
            scores.append(model.score(x_val, y_val))
        rows.append((hidden, start_epochs, scores, float(np.mean(scores)), seconds))
        print(f"| {hidden} | {start_epochs} | " + " | ".join(f"{s:.4f}" for s in scores)
              + f" | {np.mean(scores):.4f} | {seconds:.0f} |", flush=True)
    best = max(rows, key=lambda r: (round(r[3], 4), -r[4]))
    print(f"chosen: hidden={best[0]}, start_epochs={best[1]} (mean validation accuracy {best[3]:.4f})")


if __name__ == "__main__":
    main()
