"""The confidence every interval and test of gilmatrix uses, defined once for the run loop
(when a cell is precise enough, runner/run/schedule.py) and the report (reports/stats.py)."""

from __future__ import annotations

import math
from functools import lru_cache

CONFIDENCE = 0.95  # every interval is a 95% one
ALPHA = 1.0 - CONFIDENCE  # two-sided: differences are called significant at 95% confidence
MIN_FLOOR = 0.01  # a noise floor is never below 1%


@lru_cache(maxsize=4096)
def _quantile(p: float, df: float) -> float:
    # scipy.special imports in about 0.3 s where scipy.stats takes 0.7 s, paid by every run
    from scipy.special import stdtrit

    return float(stdtrit(df, p))


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t. df is rounded down to 0.1 - a slightly wider, never
    narrower interval - so that thousands of cells share a few cached values."""
    return _quantile(p, max(math.floor(df * 10.0) / 10.0, 0.1))


def two_sided() -> float:
    """The quantile of a two-sided interval at CONFIDENCE: 0.975 for 95%."""
    return 0.5 + CONFIDENCE / 2.0


def within_run_floor(band: float) -> float:
    """The floor of a comparison of two cells of one run: the 1% minimum (``MIN_FLOOR``; the band
    if that is smaller, 0 if none was measured), not the run's sentinel band. The band is the
    machine's window-to-window variation; inside a run every cell's processes are spread over
    the same windows in shuffled rounds, so that variation is already in their scatter, which
    the test reads, and the means compared are adjusted for the machine's speed call by call.
    Measured under seeded noise (results log, session 17): without the band the test called
    25 of 598 identical twin pairs different (4.2%; 22 with it) and found a 5% change in
    132 of 299 comparisons against 107 — one-worker cells 74 of 90 against 54 — while the band
    itself, bimodal machine speed, came out anywhere from 2% to 21% for the same seeded noise.
    Between runs (a baseline) the band still counts: nothing shuffles two runs together."""
    return min(band, MIN_FLOOR)


def mean_floor(band: float, n_a: int, n_b: int) -> float:
    """The floor a difference of two means must exceed: the part of the machine's own
    window-to-window variation (``band``, the run's floor: a robust 95% band of its sentinel,
    one reading per ~10 s window) that can remain in two means over ``n_a`` and ``n_b``
    worker processes, each taken in a round of its own: band × sqrt(1/n_a + 1/n_b), never
    below 1% (or the band, if smaller).

    The whole band is the floor of one *reading*; a mean of 12 processes averages 12 windows
    of machine speed, and holding it to the band hid real 5% changes inside one run (measured:
    twins of one workload, 0 of 20 called changes by the test alone; the +5% cells within a
    4.7% band)."""
    if band <= 0.0 or n_a < 1 or n_b < 1:
        return max(band, 0.0)
    return max(min(band, MIN_FLOOR), band * math.sqrt(1.0 / n_a + 1.0 / n_b))
