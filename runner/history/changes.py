"""Change points in a history series: E-Divisive means to place a step, a test against the
history's own run-to-run noise to keep it.

**Where.** E-Divisive (Matteson and James, "A Nonparametric Approach for Multiple Change Point
Analysis of Multivariate Data", JASA 109(505), 2014), as MongoDB's and DataStax's performance CI
use it (Daly et al., ICPE 2021; Fleming et al., "Hunter: Using Change Point Detection to Hunt for
Performance Regressions", ICPE 2023; Apache Otava): for a series Z₁..Zₙ and a split τ, the
divergence of the two sides

    Q(τ) = τ(n-τ)/n · [ 2/(τ(n-τ)) Σᵢ≤τ<ⱼ |Zᵢ-Zⱼ|
                        - 1/C(τ,2) Σᵢ<ₖ≤τ |Zᵢ-Zₖ| - 1/C(n-τ,2) Στ<ⱼ<ₗ |Zⱼ-Zₗ| ]

(the energy distance with α = 1) is largest at the best split. Splits are found one at a time,
each in the segment where it is largest (bisection, as the paper's algorithm).

**Whether.** The paper tests a split by permutations; Hunter replaced that with a t-test of the
two sides, because a permutation test cannot be significant on a short series (six weekly runs
split three and three: p ≥ 2/C(6,3) = 0.1). Here the series are log means of one cell across
runs, and the history measures its own noise: ``noise_scale`` pools the successive differences
of many series (robustly: the median absolute difference) into σ, the scatter of one run's
mean around its level — the run-to-run component and the run's own interval together. A split
is kept when its standardised step

    t(τ) = (mean after − mean before) / (σ · √(1/τ + 1/(n−τ)))

is beyond the (1 − alpha) quantile of max over τ of |t(τ)| on a Gaussian series of the same
length with no step (simulated once per length and cached): the largest of many splits is
tested as what it is, so a flat series is flagged at most ``alpha`` of the time whatever its
length (the maximum over every split is at least |t| at E-Divisive's split: conservative).
Each side holds at least ``min_size`` runs, and the test reads each run's value held within
CLIP = 2.5 σ of the segment's median (Huber's clipping): a single odd Monday is an outlier, not a
step — a run 50% slow would otherwise carry the two runs after a split past any bar. (Simulated,
eight runs then two, σ = 1: a step of 4σ found 94% of the time, 96% unclipped; a flat series
flagged 3.3%; one run 20σ off, 12%, against 50% unclipped; at 2σ those are 84%, 2.3% and 4%.)

**Over many series.** A flat series is flagged ``alpha`` of the time: over the 738 series of the
default matrix that is 37 false steps a history. The site therefore tests every series' first
split and keeps the series that pass Benjamini and Hochberg's false discovery rate (``fdr_level``):
of the change points it lists, about ``q`` are noise, whatever the number of series.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True, slots=True)
class ChangePoint:
    """A step in a series: it begins at ``index`` (the first run after it); ``ratio`` is the
    mean after over the mean before (geometric, between the neighbouring change points),
    ``low``/``high`` its 95% interval, ``t`` its standardised size and ``critical`` the value
    it had to exceed."""

    index: int
    ratio: float
    low: float
    high: float
    t: float
    critical: float


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


def noise_scale(series: Iterable[Sequence[float]]) -> float:
    """σ of one run's log mean around its series' level, from every successive difference of
    the given series (positive values in run order): 1.4826 × their median absolute value,
    over √2 (a difference holds two runs' scatter). The median keeps the few differences that
    hold a step, or a noisy Monday, from setting it. 0.0 when there are no differences."""
    diffs: list[float] = []
    for values in series:
        z = np.log(np.asarray(values, dtype=float))
        z = z[np.isfinite(z)]
        diffs.extend(np.abs(np.diff(z)).tolist())
    if not diffs:
        return 0.0
    return 1.4826 * float(np.median(diffs)) / math.sqrt(2.0)


DRAWS = 20_000
CLIP = 2.5


@lru_cache(maxsize=256)
def _null(n: int, min_size: int) -> np.ndarray:
    """max over the splits of |t(τ)| (σ known, each side at least ``min_size``) for DRAWS
    Gaussian series of n values with no step, sorted (a fixed seed: the same every time)."""
    rng = np.random.default_rng(20141)
    out = np.sort(_max_t(rng.standard_normal((DRAWS, n)), min_size))
    out.setflags(write=False)
    return out


def critical_value(n: int, min_size: int = 2, alpha: float = 0.05) -> float:
    """The (1 − alpha) quantile of max over the splits of |t(τ)| on n values with no step."""
    return float(np.quantile(_null(n, min_size), 1.0 - alpha))


def p_value(t: float, n: int, min_size: int = 2) -> float:
    """The share of flat series of n values whose largest |t(τ)| reaches |t|."""
    null = _null(n, min_size)
    above = len(null) - int(np.searchsorted(null, abs(t), side="left"))
    return (above + 1) / (len(null) + 1)


def _max_t(z: np.ndarray, min_size: int) -> np.ndarray:
    """max over τ = min_size .. n − min_size of |t(τ)|, σ = 1, along the last axis."""
    n = z.shape[-1]
    cum = np.cumsum(z, axis=-1)
    tau = np.arange(min_size, n - min_size + 1)
    before = cum[..., tau - 1] / tau
    after = (cum[..., -1:] - cum[..., tau - 1]) / (n - tau)
    t: np.ndarray = np.abs(after - before) / np.sqrt(1.0 / tau + 1.0 / (n - tau))
    out: np.ndarray = t.max(axis=-1)
    return out


def _tested_split(part: np.ndarray, sigma: float, min_size: int, clip: float) -> tuple[int, float]:
    """E-Divisive's split of ``part`` (log values) and its standardised step t."""
    tau, _ = _best_split(part, min_size)
    # the test's values held within ``clip`` σ of the segment's median: one odd Monday moves a
    # side's mean by clip·σ / its length at most, a step moves every run after it
    held = np.clip(part, *(float(np.median(part)) + np.array([-clip, clip]) * sigma))
    left, right = held[:tau], held[tau:]
    return tau, float(right.mean() - left.mean()) / (sigma * math.sqrt(1.0 / len(left) + 1.0 / len(right)))


def _testable(values: Sequence[float], sigma: float, min_size: int) -> np.ndarray | None:
    """The log values, or None when there is nothing to test (too few, not positive, no σ)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        z: np.ndarray = np.log(np.asarray(values, dtype=float))
    if len(z) < 2 * min_size or not np.all(np.isfinite(z)) or not sigma > 0:
        return None
    return z


def first_split_p(values: Sequence[float], *, sigma: float, min_size: int = 2, clip: float = CLIP) -> float:
    """The p-value of the first split ``change_points`` would test on ``values`` (1.0 when it
    would test none): what a false discovery rate over many series is controlled on."""
    z = _testable(values, sigma, min_size)
    if z is None:
        return 1.0
    return p_value(_tested_split(z, sigma, min_size, clip)[1], len(z), min_size)


def fdr_level(p_values: Sequence[float], q: float = 0.05) -> float:
    """Benjamini and Hochberg's step-up rule ("Controlling the False Discovery Rate", JRSS B
    57(1), 1995): the largest p(k) ≤ k·q/m over the sorted p-values, 0.0 when there is none.
    Series whose p is at most it are discoveries, of which about q are false."""
    ranked = sorted(p_values)
    m = len(ranked)
    level = 0.0
    for k, p in enumerate(ranked, start=1):
        if p <= k * q / m:
            level = p
    return level


def change_points(
    values: Sequence[float],
    *,
    sigma: float,
    alpha: float = 0.05,
    min_size: int = 2,
    clip: float = CLIP,
) -> list[ChangePoint]:
    """The change points of ``values`` (positive, in run order; compared on the log scale),
    oldest first. ``sigma``: one run's scatter on that scale (``noise_scale`` of the history);
    ``alpha``: the share of flat series that may be flagged; ``clip``: how far from a segment's
    median a run's value counts, in σ."""
    z = _testable(values, sigma, min_size)
    if z is None:
        return []
    found: dict[int, tuple[float, float]] = {}
    segments = [(0, len(z))]
    while segments:
        start, end = segments.pop()
        part = z[start:end]
        if len(part) < 2 * min_size:
            continue
        tau, t = _tested_split(part, sigma, min_size, clip)
        if p_value(t, len(part), min_size) > alpha:
            continue
        found[start + tau] = (t, critical_value(len(part), min_size, alpha))
        segments += [(start, start + tau), (start + tau, end)]
    points = []
    bounds = sorted(found)
    for k, split in enumerate(bounds):
        start = bounds[k - 1] if k else 0
        end = bounds[k + 1] if k + 1 < len(bounds) else len(z)
        before, after = z[start:split], z[split:end]
        step = float(after.mean() - before.mean())
        half = 1.959964 * sigma * math.sqrt(1.0 / len(before) + 1.0 / len(after))
        t, critical = found[split]
        points.append(
            ChangePoint(split, math.exp(step), math.exp(step - half), math.exp(step + half), t, critical)
        )
    return points
