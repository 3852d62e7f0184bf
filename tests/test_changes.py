"""E-Divisive change points (gilmatrix.history.changes) on series of known answer: the
paper's single mean shift, several steps, noise that holds none, and the noise gate."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from gilmatrix.history.changes import _q_values, change_points


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
    (point,) = change_points(series)
    assert point.index == 10 and point.p_value < 0.05
    assert point.ratio == pytest.approx(1.10, rel=0.03) and point.low < point.ratio < point.high


def test_several_steps_are_found_each_where_it_begins():
    series = noisy([(8, 1.0), (8, 0.85), (8, 1.05)], 0.015, 3)
    assert [p.index for p in change_points(series)] == [8, 16]


@pytest.mark.parametrize("seed", range(10))
def test_noise_alone_holds_no_change_point_once_gated(seed):
    # ungated, a permutation test at 5% flags about one flat series in twenty; the gate of a
    # 5% run-to-run threshold removes those steps of noise
    series = noisy([(20, 1.0)], 0.02, 100 + seed)
    assert change_points(series, threshold=0.05) == []


def test_a_step_below_the_threshold_is_not_reported():
    series = noisy([(10, 1.0), (10, 1.04)], 0.005, 11)
    assert [p.index for p in change_points(series)] == [10]
    assert change_points(series, threshold=0.05) == []


def test_one_odd_run_is_not_a_step():
    series = noisy([(10, 1.0)], 0.01, 5)
    series[-1] *= 1.5  # the last Monday: alone it cannot be a segment
    assert change_points(series, threshold=0.03) == []


def test_the_answer_is_repeatable():
    series = noisy([(6, 1.0), (6, 1.2)], 0.05, 9)
    assert change_points(series, seed=4) == change_points(series, seed=4)
