"""Tests of the structural accuracy predictor (paper 001 section 4.4) on synthetic meta-datasets.

The records are random genotypes with a made-up accuracy that is a known function of one feature, so
the right answer (which input explains the accuracy) is known. ``params`` is the conv-weight proxy of
``baseline_features`` (decoding 120 nets would only slow the tests down).
"""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest

from netbonsai.analysis.graph_features import graph_features
from netbonsai.errors import InputError
from netbonsai.search.features import FEATURE_NAMES, baseline_features, genotype_features
from netbonsai.search.genotype import Genotype, random_genotype
from netbonsai.search.predictor import AccuracyPredictor, evaluate_predictor, make_record, records_matrix

N = 120
FLOAT_KEYS = ("r2", "spearman", "r2_params_only", "r2_depth_only", "r2_graph23",
              "spearman_params_only", "spearman_depth_only")


def _standard(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / x.std()


def _with_accuracy(records: list[dict], accuracy: np.ndarray) -> list[dict]:
    return [{**r, "accuracy": float(a)} for r, a in zip(records, accuracy)]


@pytest.fixture(scope="module")
def genotypes() -> list[Genotype]:
    rng = random.Random(7)
    return [random_genotype(rng) for _ in range(N)]


@pytest.fixture(scope="module")
def base_records(genotypes: list[Genotype]) -> list[dict]:
    return [
        make_record(g, 0.0, int(baseline_features(g)["params_proxy"]), 1.0 + i)
        for i, g in enumerate(genotypes)
    ]


@pytest.fixture(scope="module")
def path_records(base_records: list[dict]) -> list[dict]:
    """Accuracy driven by the std of shortest path lengths through the operation vertices: neither depth
    nor the parameter count can express it (their rank correlations with it are about 0.2)."""
    x = np.array([r["features"]["shortest_any_std"] for r in base_records])
    noise = np.random.default_rng(0).normal(0.0, 0.005, N)
    return _with_accuracy(base_records, 0.6 + 0.05 * _standard(x) + noise)


@pytest.fixture(scope="module")
def forest_result(path_records: list[dict]) -> dict:
    return evaluate_predictor(path_records, "forest", seed=0)


def test_forest_learns_a_path_length_feature_the_baselines_cannot(forest_result: dict) -> None:
    res = forest_result
    assert res["r2"] >= 0.8 and res["spearman"] >= 0.8
    assert res["r2"] > res["r2_params_only"] + 0.3
    assert res["r2"] > res["r2_depth_only"] + 0.3
    assert res["r2"] > res["r2_graph23"]
    assert res["spearman"] > res["spearman_params_only"] and res["spearman"] > res["spearman_depth_only"]
    assert res["importances"][0] == "shortest_any_std"
    assert len(res["importances"]) == 10 and set(res["importances"]) <= set(FEATURE_NAMES)


def test_split_sizes_and_finite_floats(forest_result: dict) -> None:
    res = forest_result
    assert res["n_train"] + res["n_test"] == N
    assert abs(res["n_test"] - round(0.3 * N)) <= 1
    for key in FLOAT_KEYS:
        assert type(res[key]) is float and math.isfinite(res[key]), key
    assert type(res["n_train"]) is int and type(res["n_test"]) is int


def test_evaluation_is_seeded(path_records: list[dict], forest_result: dict) -> None:
    assert evaluate_predictor(path_records, "forest", seed=0) == forest_result
    a = evaluate_predictor(path_records, "ridge", seed=0)
    assert evaluate_predictor(path_records, "ridge", seed=0) == a
    assert evaluate_predictor(path_records, "ridge", seed=1) != a  # another split


@pytest.mark.parametrize("regressor", ["boosting", "ridge"])
def test_other_regressors(path_records: list[dict], regressor: str) -> None:
    res = evaluate_predictor(path_records, regressor, seed=0)
    assert res["r2"] >= 0.8 and res["r2"] > res["r2_params_only"] and res["r2"] > res["r2_depth_only"]
    assert res["importances"] == []


def test_params_only_baseline_wins_when_accuracy_is_a_function_of_params(base_records: list[dict]) -> None:
    p = np.log1p([r["params"] for r in base_records])
    noise = np.random.default_rng(1).normal(0.0, 0.002, N)
    res = evaluate_predictor(_with_accuracy(base_records, 0.5 + 0.05 * _standard(p) + noise), "forest")
    assert res["r2_params_only"] > res["r2"] and res["r2_params_only"] > res["r2_depth_only"]
    assert res["spearman_params_only"] >= 0.9 and res["spearman_params_only"] > res["spearman"]


def test_graph23_baseline_reads_each_genotypes_graph(
    genotypes: list[Genotype], base_records: list[dict]
) -> None:
    # linear in a 4.3 feature that is not among the 56: only the graph23 ridge can fit it exactly
    density = np.array([graph_features(g.graph)["density"] for g in genotypes])
    res = evaluate_predictor(_with_accuracy(base_records, 0.5 + 0.05 * _standard(density)), "ridge")
    assert res["r2_graph23"] >= 0.99 and res["r2_graph23"] > res["r2_params_only"] + 0.5


def test_constant_accuracy_gives_zero_scores(base_records: list[dict]) -> None:
    res = evaluate_predictor(_with_accuracy(base_records, np.full(N, 0.7)), "ridge")
    assert all(res[k] == 0.0 for k in FLOAT_KEYS)


def test_evaluate_refuses_bad_input(path_records: list[dict]) -> None:
    with pytest.raises(InputError, match="at least 10"):
        evaluate_predictor(path_records[:9], "ridge")
    assert evaluate_predictor(path_records[:10], "ridge")["n_test"] == 3
    for fraction in (0.0, 1.0, -0.3, "0.3", float("nan"), 0.01):
        with pytest.raises(InputError, match="test_fraction"):
            evaluate_predictor(path_records[:10], "ridge", test_fraction=fraction)
    with pytest.raises(InputError, match="regressor"):
        evaluate_predictor(path_records, "svm")
    with pytest.raises(InputError, match="seed"):
        evaluate_predictor(path_records, "ridge", seed=-1)


def test_predictor_needs_min_records(path_records: list[dict], genotypes: list[Genotype]) -> None:
    pred = AccuracyPredictor("ridge", min_records=20)
    assert not pred.ready
    with pytest.raises(InputError, match="not ready"):
        pred.predict(genotypes[:3])
    assert pred.fit(path_records[:19]) is pred and not pred.ready
    with pytest.raises(InputError, match="19 records, needs 20"):
        pred.predict(genotypes[:3])
    assert pred.fit(path_records[:20]).ready
    assert pred.predict(genotypes[:3]).shape == (3,)
    assert not pred.fit(path_records[:5]).ready  # a refit starts from scratch


def test_forest_predictor_is_seeded_and_predicts_held_out_genotypes(
    path_records: list[dict], genotypes: list[Genotype]
) -> None:
    a = AccuracyPredictor(seed=3).fit(path_records[:90])
    b = AccuracyPredictor(seed=3).fit(path_records[:90])
    pa = a.predict(genotypes[90:])
    assert pa.dtype == np.float64 and pa.shape == (N - 90,)
    np.testing.assert_array_equal(pa, b.predict(genotypes[90:]))
    truth = np.array([r["accuracy"] for r in path_records[90:]])
    assert np.corrcoef(pa, truth)[0, 1] >= 0.9
    assert a.predict([]).shape == (0,)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"regressor": "svm"}, "regressor"),
        ({"regressor": None}, "regressor"),
        ({"min_records": 1}, "min_records"),
        ({"min_records": 2.5}, "min_records"),
        ({"min_records": True}, "min_records"),
        ({"seed": -1}, "seed"),
        ({"seed": "0"}, "seed"),
        ({"seed": True}, "seed"),
    ],
)
def test_bad_constructor_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(InputError, match=match):
        AccuracyPredictor(**kwargs)


def test_make_record_round_trips_through_json(genotypes: list[Genotype]) -> None:
    g = genotypes[0]
    rec = make_record(g, 0.81, 1234, 2.5, in_channels=3)
    assert rec["features"] == genotype_features(g, 3)
    assert rec["depth"] == g.depth and type(rec["depth"]) is int
    assert (rec["accuracy"], rec["params"], rec["seconds"]) == (0.81, 1234, 2.5)
    back = json.loads(json.dumps(rec))
    assert back == rec
    assert Genotype.from_dict(back["genotype"]) == g
    X, y = records_matrix([back])
    assert X.shape == (1, len(FEATURE_NAMES)) and y.tolist() == [0.81]
    assert X[0].tolist() == [rec["features"][n] for n in FEATURE_NAMES]


def test_make_record_and_records_matrix_refuse_bad_input(genotypes: list[Genotype]) -> None:
    g = genotypes[0]
    for bad in ({"accuracy": float("nan")}, {"params": -1}, {"params": 1.5}, {"seconds": -1.0}):
        args = {"accuracy": 0.5, "params": 10, "seconds": 1.0, **bad}
        with pytest.raises(InputError):
            make_record(g, **args)
    with pytest.raises(InputError, match="Genotype"):
        make_record(g.graph, 0.5, 10, 1.0)  # type: ignore[arg-type]
    rec = make_record(g, 0.5, 10, 1.0)
    with pytest.raises(InputError, match="lacks the keys"):
        records_matrix([{k: v for k, v in rec.items() if k != "accuracy"}])
    features = dict(rec["features"])
    del features["depth"]
    with pytest.raises(InputError, match="features"):
        records_matrix([{**rec, "features": features}])
    assert records_matrix([])[0].shape == (0, len(FEATURE_NAMES))
