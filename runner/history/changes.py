"""Change points in a history series: E-Divisive means, with a noise gate.

The detector is E-Divisive (Matteson and James, "A Nonparametric Approach for Multiple Change
Point Analysis of Multivariate Data", JASA 109(505), 2014), as MongoDB's and DataStax's
performance CI use it (Daly et al., "Creating a Virtuous Cycle in Performance Testing at
MongoDB", ICPE 2021; Apache Otava, formerly Hunter): for a series Z₁..Zₙ and a split τ, the
divergence of the two sides

    Q(τ) = τ(n-τ)/n · [ 2/(τ(n-τ)) Σᵢ≤τ<ⱼ |Zᵢ-Zⱼ|
                        - 1/C(τ,2) Σᵢ<ₖ≤τ |Zᵢ-Zₖ| - 1/C(n-τ,2) Στ<ⱼ<ₗ |Zⱼ-Zₗ| ]

(the energy distance with α = 1) is largest at the best split; its significance is a
permutation test (the series shuffled, ``permutations`` times, the largest Q of each: p is the
share at least as large as the one found). Splits are found one at a time, each in the segment
where it is largest, until none is significant (bisection, as the paper's algorithm).

Here the series are log means of one cell across runs, and a machine that moves a few percent
from one run to the next makes significant steps of noise: a split is reported only when the
step (the difference of the two sides' medians, as a ratio) is also larger than ``threshold``
— the run-to-run component the runs themselves show (gilmatrix.reports.stats.pool_baselines'
estimate), times the normal quantile, and the runs' noise floors — and each side holds at
least ``min_size`` runs (a single odd Monday is an outlier, not a step).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class ChangePoint:
    """A step in a series: it begins at ``index`` (the first run after it); ``ratio`` is the
    median after over the median before, ``low``/``high`` its 95% interval (bootstrap of the
    two sides' medians), ``p_value`` the permutation test's."""

    index: int
    ratio: float
    low: float
    high: float
    p_value: float


def _q_values(z: np.ndarray, min_size: int) -> np.ndarray:
    """Q(τ) for every split τ = min_size .. n-min_size (the first τ values before, the rest
    after); -inf where a side would be shorter than min_size."""
    n = len(z)
    d = np.abs(z[:, None] - z[None, :])
    out = np.full(n + 1, -np.inf)
    # cumulative sums of the distance matrix make each Q(τ) O(1) after an O(n²) start
    within_left = np.zeros(n + 1)  # Σ_{i<k<τ} d
    for tau in range(1, n + 1):
        within_left[tau] = within_left[tau - 1] + d[tau - 1, : tau - 1].sum()
    total = d.sum() / 2.0
    rows = np.cumsum(d.sum(axis=1))  # Σ_{i<τ} Σ_j d[i, j]
    for tau in range(min_size, n - min_size + 1):
        left, right = tau, n - tau
        a = within_left[tau]
        across = rows[tau - 1] - 2.0 * a  # Σ_{i<τ, j≥τ} d
        b = total - a - across
        e = 2.0 * across / (left * right) - a / math.comb(left, 2) - b / math.comb(right, 2)
        out[tau] = left * right / n * e
    return out


def _best_split(z: np.ndarray, min_size: int) -> tuple[int, float]:
    q = _q_values(z, min_size)
    tau = int(np.argmax(q))
    return tau, float(q[tau])


def _interval(
    before: np.ndarray, after: np.ndarray, rng: random.Random, draws: int = 400
) -> tuple[float, float]:
    """95% bootstrap interval of the difference of medians (log scale)."""
    found = []
    for _ in range(draws):
        b = [before[rng.randrange(len(before))] for _ in before]
        a = [after[rng.randrange(len(after))] for _ in after]
        found.append(float(np.median(a) - np.median(b)))
    found.sort()
    return found[int(0.025 * draws)], found[int(0.975 * draws) - 1]


def change_points(
    values: Sequence[float],
    *,
    threshold: float = 0.0,
    alpha: float = 0.05,
    permutations: int = 199,
    min_size: int = 2,
    seed: int = 0,
) -> list[ChangePoint]:
    """The change points of ``values`` (positive, in run order; compared on the log scale),
    oldest first. ``threshold``: the least relative step reported (see the module's docstring);
    ``seed`` makes the permutation test repeatable."""
    z = np.log(np.asarray(values, dtype=float))
    if len(z) < 2 * min_size or not np.all(np.isfinite(z)):
        return []
    rng = random.Random(seed)
    found: list[int] = []
    segments = [(0, len(z))]
    p_values: dict[int, float] = {}
    while segments:
        best = None
        for start, end in segments:
            part = z[start:end]
            if len(part) < 2 * min_size:
                continue
            tau, q = _best_split(part, min_size)
            if best is None or q > best[2]:
                best = (start, end, q, start + tau)
        if best is None:
            break
        start, end, q, split = best
        part = z[start:end].copy()
        exceed = 0
        for _ in range(permutations):
            order = list(range(len(part)))
            rng.shuffle(order)
            if _best_split(part[order], min_size)[1] >= q:
                exceed += 1
        p = (exceed + 1) / (permutations + 1)
        if p >= alpha:
            break
        found.append(split)
        p_values[split] = p
        segments = [s for s in segments if s != (start, end)] + [(start, split), (split, end)]
    points = []
    bounds = sorted(found)
    for k, split in enumerate(bounds):
        start = bounds[k - 1] if k else 0
        end = bounds[k + 1] if k + 1 < len(bounds) else len(z)
        before, after = z[start:split], z[split:end]
        step = float(np.median(after) - np.median(before))
        if abs(math.expm1(step)) <= threshold:
            continue
        low, high = _interval(before, after, rng)
        points.append(ChangePoint(split, math.exp(step), math.exp(low), math.exp(high), p_values[split]))
    return points
