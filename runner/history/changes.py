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
runs, and gilmatrix knows each run's noise: its own interval (w, from its processes) plus a
run-to-run scatter τ that ``noise_scale`` measures on the history itself (the successive
differences of many series, robustly, beyond what their intervals explain). Each run's sd is
√(τ² + w), w never below the series' median (``run_variances``: a lucky narrow interval from a
few processes does not make a run count more). A split is kept when its standardised step

    t(τ) = (weighted mean after − weighted mean before) / √(V_before + V_after)

(inverse-variance weights; V a side's mean's variance) is beyond the (1 − alpha) quantile of
max over τ of |t(τ)| on a Gaussian series of the same length with no step (equal variances;
simulated once per length and cached): the largest of many splits is tested as what it is, so
a flat series is flagged about ``alpha`` of the time whatever its length (the maximum over
every split is at least |t| at E-Divisive's split). Each side holds at least ``min_size``
runs, and the test reads each run's value held within CLIP = 2.5 sd of the segment's median
(Huber's clipping): a single odd Monday is an outlier, not a step — a run 50% slow would
otherwise carry the two runs after a split past any bar, and a noisy Monday whose interval
says so counts little anyway. (Simulated, eight runs then two, σ = 1: a step of 4σ found 94% of
the time, 96% unclipped; a flat series flagged 3.3%; one run 20σ off, 12%, against 50%
unclipped. On histories with this project's noise: devtools/selfbench/history.py.)

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


def noise_scale(series: Iterable[Sequence[float]], within: Iterable[Sequence[float]] | None = None) -> float:
    """τ: the run-to-run scatter of one run's log mean beyond its own interval, from every
    successive difference d of the given series (positive values in run order) and each run's
    own variance w (``within``: (half-width / 1.96)² on the log scale, as a run's interval
    says; none: 0). A difference holds 2τ² + wᵢ + wᵢ₊₁; τ is where the median of
    |d| / √(2τ² + wᵢ + wᵢ₊₁) is the normal's, 0.6745 — with w = 0 that is 1.4826 × the median
    |d| / √2. The median keeps the few differences that hold a step, or a noisy Monday, from
    setting it. 0.0 when there are no differences, or the intervals explain them all."""
    d_all: list[np.ndarray] = []
    w_all: list[np.ndarray] = []
    pairs = zip(series, within, strict=True) if within is not None else ((v, None) for v in series)
    for values, own in pairs:
        z = np.log(np.asarray(values, dtype=float))
        w = np.zeros(len(z)) if own is None else np.asarray(own, dtype=float)
        w = np.where(np.isfinite(w), w, 0.0)  # a run without an interval: its diffs count whole
        keep = np.isfinite(z)
        z, w = z[keep], w[keep]
        d_all.append(np.abs(np.diff(z)))
        w_all.append(w[:-1] + w[1:])
    if not d_all or not sum(len(d) for d in d_all):
        return 0.0
    d, w = np.concatenate(d_all), np.concatenate(w_all)
    if not np.any(w > 0):
        return 1.4826 * float(np.median(d)) / math.sqrt(2.0)

    def excess(tau2: float) -> float:
        return float(np.median(d / np.sqrt(2.0 * tau2 + w))) - 0.6745

    if excess(0.0) <= 0.0:
        return 0.0
    low, high = 0.0, float(np.max(d)) ** 2
    for _ in range(60):
        mid = (low + high) / 2.0
        low, high = (mid, high) if excess(mid) > 0.0 else (low, mid)
    return math.sqrt((low + high) / 2.0)


def run_variances(within: Sequence[float], processes: Sequence[float] | None = None) -> np.ndarray:
    """The own variances of a series' runs as the test counts them: each run's recorded one
    (from a handful of processes: often far too small by chance), never below the series'
    typical one; a run without one takes the typical one. A noisy Monday's wide interval still
    counts against it, a lucky narrow one does not count for it. The typical variance is the
    median of the recorded ones, over the median of χ²(df)/df (df: the runs' median processes
    − 1): a sample variance's median is below its mean (by 21% with four processes)."""
    w = np.asarray(within, dtype=float)
    known = np.isfinite(w)
    floor = float(np.median(w[known])) if known.any() else 0.0
    if processes is not None and known.any():
        df = float(np.median(np.asarray(processes, dtype=float)[known])) - 1.0
        if df >= 1.0:
            # the median of χ²(df)/df by Wilson and Hilferty's cube root (1931): within 0.6% from
            # df = 3 (SciPy's exact one would add ~70 MB of imports to every site build)
            floor /= (1.0 - 2.0 / (9.0 * df)) ** 3
    out: np.ndarray = np.where(known, np.maximum(w, floor), floor)
    return out


DRAWS = 20_000
CLIP = 2.5


@lru_cache(maxsize=256)
def _null(n: int, min_size: int) -> np.ndarray:
    """max over the splits of |t(τ)| (σ known, each side at least ``min_size``) for DRAWS
    Gaussian series of n values with no step, sorted (a fixed seed: the same every time)."""
    rng = np.random.default_rng(20141)
    chunk = 2_000  # a few MB at a time, not DRAWS × n × the temporaries at once
    out = np.sort(
        np.concatenate([_max_t(rng.standard_normal((chunk, n)), min_size) for _ in range(DRAWS // chunk)])
    )
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


def _tested_split(part: np.ndarray, sd: np.ndarray, min_size: int, clip: float) -> tuple[int, float]:
    """E-Divisive's split of ``part`` (log values; ``sd``: each one's) and its standardised
    step t: the difference of the two sides' inverse-variance weighted means over its sd."""
    tau, _ = _best_split(part, min_size)
    # the test's values held within ``clip`` sd of the segment's median: one odd Monday moves
    # a side's mean by a bounded amount, a step moves every run after it
    centre = float(np.median(part))
    held = np.clip(part, centre - clip * sd, centre + clip * sd)
    weight = 1.0 / sd**2
    (left, wl), (right, wr) = (held[:tau], weight[:tau]), (held[tau:], weight[tau:])
    step = float((right * wr).sum() / wr.sum() - (left * wl).sum() / wl.sum())
    return tau, step / math.sqrt(1.0 / wl.sum() + 1.0 / wr.sum())


def _testable(
    values: Sequence[float], sigma: float | Sequence[float], min_size: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """The log values and each one's sd, or None when there is nothing to test (too few, not
    positive, no sd)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        z: np.ndarray = np.log(np.asarray(values, dtype=float))
    sd: np.ndarray = np.broadcast_to(np.asarray(sigma, dtype=float), z.shape).astype(float)
    if len(z) < 2 * min_size or not np.all(np.isfinite(z)) or not np.all(sd > 0):
        return None
    return z, sd


def first_split_p(
    values: Sequence[float], *, sigma: float | Sequence[float], min_size: int = 2, clip: float = CLIP
) -> float:
    """The p-value of the first split ``change_points`` would test on ``values`` (1.0 when it
    would test none): what a false discovery rate over many series is controlled on."""
    found = _testable(values, sigma, min_size)
    if found is None:
        return 1.0
    z, sd = found
    return p_value(_tested_split(z, sd, min_size, clip)[1], len(z), min_size)


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
    sigma: float | Sequence[float],
    alpha: float = 0.05,
    min_size: int = 2,
    clip: float = CLIP,
) -> list[ChangePoint]:
    """The change points of ``values`` (positive, in run order; compared on the log scale),
    oldest first. ``sigma``: one run's scatter on that scale, one for all or one per run
    (√(τ² + w): ``noise_scale``'s τ and the run's own interval); ``alpha``: the share of flat
    series that may be flagged; ``clip``: how far from a segment's median a run's value counts,
    in its sd."""
    found_values = _testable(values, sigma, min_size)
    if found_values is None:
        return []
    z, sd = found_values
    found: dict[int, tuple[float, float]] = {}
    segments = [(0, len(z))]
    while segments:
        start, end = segments.pop()
        if end - start < 2 * min_size:
            continue
        tau, t = _tested_split(z[start:end], sd[start:end], min_size, clip)
        if p_value(t, end - start, min_size) > alpha:
            continue
        found[start + tau] = (t, critical_value(end - start, min_size, alpha))
        segments += [(start, start + tau), (start + tau, end)]
    points = []
    bounds = sorted(found)
    weight = 1.0 / sd**2
    for k, split in enumerate(bounds):
        start = bounds[k - 1] if k else 0
        end = bounds[k + 1] if k + 1 < len(bounds) else len(z)
        wl, wr = weight[start:split], weight[split:end]
        step = float((z[split:end] * wr).sum() / wr.sum() - (z[start:split] * wl).sum() / wl.sum())
        half = 1.959964 * math.sqrt(1.0 / wl.sum() + 1.0 / wr.sum())
        t, critical = found[split]
        points.append(
            ChangePoint(split, math.exp(step), math.exp(step - half), math.exp(step + half), t, critical)
        )
    return points
