"""param_ratios, ratio_summary and seed_bootstrap against hand-computed numbers."""

from __future__ import annotations

import pytest

from netbonsai.analysis import param_ratios, ratio_summary, seed_bootstrap
from netbonsai.errors import InputError


def _pts(pairs, key="val_loss"):
    return [{"params": p, key: l} for p, l in pairs]


def test_interpolates_log_params_between_neighbouring_dense_points():
    # exp((log 61 + log 131) / 2) = sqrt(61 * 131) = 89.392...
    ratios = param_ratios(_pts([(80, 95)]), _pts([(61, 100), (131, 90)]))
    assert len(ratios) == 1
    r = ratios[0]
    assert r["val_loss"] == 95
    assert r["grown_params"] == 80
    assert r["dense_params"] == 89.4
    assert r["ratio"] == pytest.approx(1.117405, abs=1e-6)


def test_uses_the_right_segment_and_the_dense_front_only():
    dense = _pts([(61, 112.4630), (90, 104.1467), (131, 97.1992), (100, 110.0), (183, 94.9745)])
    # loss 100 lies between (90, 104.1467) and (131, 97.1992): fraction 0.596862 of the way,
    # log p = log 90 + 0.596862 * (log 131 - log 90) -> p = 112.6026; (100, 110) is dominated.
    ratios = param_ratios(_pts([(70, 100.0)]), dense)
    assert ratios[0]["dense_params"] == 112.6
    assert ratios[0]["ratio"] == pytest.approx(1.608608, abs=1e-6)


def test_exact_dense_losses_and_out_of_range_points():
    dense = _pts([(61, 100), (131, 90)])
    grown = _pts([(40, 101), (50, 100), (60, 90), (300, 85)])
    ratios = param_ratios(grown, dense)
    # (40, 101) is above the dense loss range; (300, 85) is below it; both are skipped.
    assert [(r["grown_params"], r["dense_params"]) for r in ratios] == [(50, 61.0), (60, 131.0)]
    assert ratios[0]["ratio"] == pytest.approx(61 / 50)
    assert ratios[1]["ratio"] == pytest.approx(131 / 60)


def test_grown_points_are_reduced_to_their_front_and_custom_loss_key():
    dense = _pts([(61, 100), (131, 90)], key="loss")
    grown = _pts([(80, 95), (90, 96)], key="loss")  # (90, 96) is dominated by (80, 95)
    ratios = param_ratios(grown, dense, loss_key="loss")
    assert [r["grown_params"] for r in ratios] == [80]
    assert set(ratios[0]) == {"loss", "grown_params", "dense_params", "ratio"}


def test_empty_inputs_and_bad_params():
    assert param_ratios([], _pts([(61, 100)])) == []
    assert param_ratios(_pts([(61, 100)]), []) == []
    with pytest.raises(InputError):
        param_ratios(_pts([(10, 95)]), _pts([(0, 100), (131, 90)]))


def test_ratio_summary():
    ratios = [{"ratio": r} for r in (1.0, 4.0, 2.0)]
    assert ratio_summary(ratios) == {"median_ratio": 2.0, "min_ratio": 1.0, "max_ratio": 4.0, "n": 3}
    assert ratio_summary([{"ratio": 1.0}, {"ratio": 2.0}])["median_ratio"] == 1.5
    assert ratio_summary([]) == {"median_ratio": None, "min_ratio": None, "max_ratio": None, "n": 0}


# Every seed shares one dense front, 10 params at 5.0 and 1000 at 1.0: loss 3.0 lies halfway in
# log-params, at 100 dense parameters. Seed s has one grown network at loss 3.0 with P[s]
# parameters, so a pooled resample's median ratio is 100 / min(P over the drawn seeds).
_DENSE = _pts([(10, 5.0), (1000, 1.0)])
_P = (10, 20, 50)
_RUNS = [(_pts([(p, 3.0)]), _DENSE) for p in _P]


def test_seed_bootstrap_pools_the_drawn_seeds():
    # P(a draw of 3 holds seed 0) = 19/27 -> ratio 10; holds seed 1 but not 0: 7/27 -> 5; only
    # seed 2: 1/27 -> 2. The 5% and 95% quantiles fall in the middle of the 5 and 10 bands.
    interval = seed_bootstrap(_RUNS, n_resamples=2000, confidence=0.9, seed=0)
    assert interval == {"low": pytest.approx(5.0), "high": pytest.approx(10.0), "confidence": 0.9,
                        "resamples": 2000, "without_ratio": 0}
    # a 98% interval reaches into the 1-in-27 band where only seed 2 is drawn
    assert seed_bootstrap(_RUNS, confidence=0.98)["low"] == pytest.approx(2.0)
    assert seed_bootstrap(_RUNS, seed=3) == seed_bootstrap(_RUNS, seed=3)
    # identical seeds: no spread at all
    same = seed_bootstrap([_RUNS[1]] * 4)
    assert (same["low"], same["high"]) == pytest.approx((5.0, 5.0))


def test_seed_bootstrap_counts_resamples_without_a_ratio():
    outside = (_pts([(5, 9.0)]), _DENSE)  # worse than every dense network: no ratio
    runs = [outside, outside, _RUNS[0]]
    interval = seed_bootstrap(runs, n_resamples=1000)
    # P(seed 2 is never drawn) = (2/3)^3 = 8/27: about 296 of 1000
    assert 230 < interval["without_ratio"] < 360
    assert (interval["low"], interval["high"]) == pytest.approx((10.0, 10.0))
    assert seed_bootstrap([outside] * 3) is None


def test_seed_bootstrap_needs_three_runs_and_valid_settings():
    assert seed_bootstrap(_RUNS[:2]) is None
    with pytest.raises(InputError, match="confidence"):
        seed_bootstrap(_RUNS, confidence=1.0)
    with pytest.raises(InputError, match="n_resamples"):
        seed_bootstrap(_RUNS, n_resamples=0)
