"""Change points (gilmatrix.history.changes) on series of known answer: E-Divisive's divergence
against its formula, the paper's single mean shift, several steps, noise that holds none, the
test against the history's own noise and its calibration."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from gilmatrix.history.changes import _q_values, change_points, critical_value, noise_scale, run_variances


def noisy(levels: list[tuple[int, float]], sd: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [level * math.exp(rng.gauss(0.0, sd)) for count, level in levels for _ in range(count)]


def brute_q(z: np.ndarray, tau: int) -> float:
    """Q(τ) from its definition, pair by pair (the fast one uses cumulative sums)."""
    x, y = z[:tau], z[tau:]
    n, m = len(x), len(y)
    across = sum(abs(a - b) for a in x for b in y) * 2 / (n * m)
    left = sum(abs(x[i] - x[k]) for i in range(n) for k in range(i + 1, n)) / math.comb(n, 2)
    right = sum(abs(y[j] - y[k]) for j in range(m) for k in range(j + 1, m)) / math.comb(m, 2)
    return n * m / (n + m) * (across - left - right)


def test_the_divergence_is_the_papers_formula():
    z = np.log(np.array(noisy([(7, 1.0), (6, 1.3)], 0.05, 1)))
    q = _q_values(z, 2)
    for tau in range(2, len(z) - 1):
        assert q[tau] == pytest.approx(brute_q(z, tau))
    assert int(np.argmax(q)) == 7


def test_a_mean_shift_is_found_where_it_begins_with_its_size():
    # Matteson & James' first example, on this project's scale: a 10% step in 2% noise
    series = noisy([(10, 1.0), (10, 1.10)], 0.02, 7)
    (point,) = change_points(series, sigma=0.02)
    assert point.index == 10 and point.t > point.critical
    assert point.ratio == pytest.approx(1.10, rel=0.03) and point.low < point.ratio < point.high
    # the interval is the step's: ±1.96 σ √(1/10 + 1/10) on the log scale
    assert math.log(point.high / point.low) == pytest.approx(2 * 1.96 * 0.02 * math.sqrt(0.2), rel=1e-3)


def test_several_steps_are_found_each_where_it_begins():
    series = noisy([(8, 1.0), (8, 0.85), (8, 1.05)], 0.015, 3)
    assert [p.index for p in change_points(series, sigma=0.015)] == [8, 16]


def test_six_weekly_runs_are_enough_where_a_permutation_test_is_not():
    # three and three: a permutation test's smallest p is 2/C(6,3) = 0.1; the history's
    # measured noise makes the step testable
    series = noisy([(3, 1.0), (3, 1.15)], 0.02, 2)
    (point,) = change_points(series, sigma=0.02)
    assert point.index == 3


def test_the_critical_value_is_the_maximum_over_the_splits():
    # one split (n = 4, both sides 2): |t| of one normal, its 97.5% quantile
    assert critical_value(4, 2, 0.05) == pytest.approx(1.96, abs=0.05)
    # more splits, a larger maximum: longer series must clear a higher bar
    assert critical_value(8) < critical_value(26) < critical_value(52)
    assert critical_value(52, alpha=0.01) > critical_value(52, alpha=0.05)


def test_flat_series_are_flagged_about_alpha_of_the_time():
    rng = np.random.default_rng(5)
    flagged = sum(
        bool(change_points(np.exp(rng.normal(0.0, 0.02, 20)), sigma=0.02, alpha=0.05)) for _ in range(400)
    )
    # E-Divisive's split is tested against the maximum over all splits: at most alpha, and
    # not far below (binomial, 400 series: 5% is 20 ± 9)
    assert 4 <= flagged <= 29


def test_a_step_below_the_noise_is_not_reported():
    series = noisy([(10, 1.0), (10, 1.04)], 0.005, 11)
    assert [p.index for p in change_points(series, sigma=0.005)] == [10]
    # the same step in a history whose runs scatter by 5%: noise, not a change
    assert change_points(series, sigma=0.05) == []


def test_one_odd_run_is_rarely_a_step():
    # the last Monday 50% slow, on 200 seeded flat series of ten 1%-noisy runs: read as it is,
    # it carries the two runs after a split past the bar half of the time; held within 2.5 σ
    # of the segment's median it is an outlier, not a step, most of the time
    flagged, unclipped = 0, 0
    for seed in range(200):
        series = noisy([(10, 1.0)], 0.01, seed)
        series[-2] *= 1.5
        flagged += bool(change_points(series, sigma=0.01))
        unclipped += bool(change_points(series, sigma=0.01, clip=math.inf))
    assert unclipped >= 0.4 * 200 and flagged <= 0.2 * 200


def test_the_noise_scale_is_one_runs_scatter_and_ignores_a_few_steps():
    rng = np.random.default_rng(8)
    flat = [np.exp(rng.normal(0.0, 0.03, 30)) for _ in range(40)]
    assert noise_scale(flat) == pytest.approx(0.03, rel=0.1)
    stepped = [np.concatenate([s[:15], 1.3 * s[15:]]) for s in flat]
    assert noise_scale(stepped) == pytest.approx(0.03, rel=0.12)
    assert noise_scale([[1.0]]) == 0.0


def test_nothing_is_found_without_a_noise_scale_or_enough_runs():
    series = noisy([(6, 1.0), (6, 1.5)], 0.01, 1)
    assert change_points(series, sigma=0.0) == []
    assert change_points(series[:3], sigma=0.01) == []


def test_each_run_counts_by_its_own_interval():
    # two runs after a flat stretch, one of them far off but with an interval that says so:
    # weighed by its variance it does not make a step; given the same sd as the others it does
    series = noisy([(8, 1.0), (2, 1.0)], 0.005, 4)
    series[-1] *= 1.06
    sd = [0.005] * 9 + [0.05]
    assert change_points(series, sigma=sd) == []
    assert 8 in [p.index for p in change_points(series, sigma=0.005, clip=math.inf)]


def test_the_noise_scale_is_what_the_intervals_do_not_explain():
    rng = np.random.default_rng(3)
    tau, own = 0.01, 0.02  # run-to-run 1%, each run's interval 2% (its sd)
    values = [np.exp(rng.normal(0.0, math.hypot(tau, own), 40)) for _ in range(30)]
    within = [np.full(40, own**2) for _ in values]
    assert noise_scale(values, within) == pytest.approx(tau, abs=0.004)
    assert noise_scale(values) == pytest.approx(math.hypot(tau, own), rel=0.1)
    # intervals wider than the scatter: nothing left for the runs
    assert noise_scale(values, [np.full(40, 0.05**2) for _ in values]) == 0.0


def test_a_run_counts_no_more_precise_than_its_series_typical_run():
    assert list(run_variances([4.0, 1.0, 9.0, float("nan"), 0.01, 4.0])) == [4.0, 4.0, 9.0, 4.0, 4.0, 4.0]
    assert list(run_variances([float("nan")] * 2)) == [0.0, 0.0]
    # from four processes a variance's median is 0.789 of its mean (χ² of 3 degrees of freedom;
    # Wilson-Hilferty's 0.794 is what is used)
    typical = 4.0 / 0.78868
    counted = run_variances([4.0, 1.0, 9.0, float("nan"), 0.01, 4.0], [4] * 6)
    assert list(counted) == pytest.approx([typical, typical, 9.0, typical, typical, typical], rel=0.008)
