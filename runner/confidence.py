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
