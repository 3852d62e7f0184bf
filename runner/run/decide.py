"""Budget where it buys verdicts: which cells' comparisons are already decided.

With a profile's ``precision: {decide: true}``, a cell stops once every comparison the report
will make of it is decided, instead of going on to its precision target — its processes then
go, round after round, to the comparisons still open. The comparisons are the report's
(gilmatrix.comparisons).

A comparison of two cells is *decided* when the interval of the ratio of their means, at
``DECIDE_CONFIDENCE``, lies wholly outside the band ±floor (a verdict that more processes would
not undo) or wholly inside it (a tie that they could not turn into a verdict); ``floor`` is
what the report holds a comparison inside a run to (confidence.within_run_floor: 1%, the run's
noise floor only where that is smaller), scaled to the two means as the report scales it
(confidence.mean_floor). 99%, not the report's 95%: the run looks again after every round, and
stopping on the first look that clears a 95% interval would call more than 5% of A/A
differences. A cell in no comparison (a workload with one cell) keeps the precision target.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence

from gilmatrix.comparisons import Key, comparisons
from gilmatrix.confidence import mean_floor, t_quantile, within_run_floor

DECIDE_CONFIDENCE = 0.99


def is_decided(a: Sequence[float], b: Sequence[float], floor: float) -> bool:
    """Whether the comparison of two cells' process means ``a`` and ``b`` is decided."""
    if len(a) < 2 or len(b) < 2:
        return False
    mean_a, mean_b = statistics.fmean(a), statistics.fmean(b)
    if mean_a <= 0 or mean_b <= 0:
        return False
    va = (statistics.stdev(a) / mean_a) ** 2 / len(a)
    vb = (statistics.stdev(b) / mean_b) ** 2 / len(b)
    var = va + vb
    d = abs(math.log(mean_a / mean_b))
    band = math.log1p(mean_floor(within_run_floor(floor), len(a), len(b)))
    if var == 0.0:
        return d != band
    df = var * var / (va * va / (len(a) - 1) + vb * vb / (len(b) - 1)) if va or vb else math.inf
    half = t_quantile(0.5 + DECIDE_CONFIDENCE / 2.0, df) * math.sqrt(var)
    return d - half > band or d + half < band


def decided_cells(means: Mapping[Key, Sequence[float]], floor: float) -> set[Key]:
    """The cells (of ``means``: every cell's process means so far, finished ones too) whose
    every comparison is decided; a cell in none is not among them."""
    found = set()
    partners = comparisons(means)
    verdicts: dict[frozenset[Key], bool] = {}
    for key, others in partners.items():
        if not others:
            continue
        for other in others:
            pair = frozenset((key, other))
            if pair not in verdicts:
                verdicts[pair] = is_decided(means[key], means[other], floor)
            if not verdicts[pair]:
                break
        else:
            found.add(key)
    return found
