"""What a run could find: the smallest change its comparisons find 9 times in 10, and what it
would take to find a given one (analysis stage, read by the report page and selfbench).

A tie is not a finding that two cells perform alike: it says the difference was too small for
*this* run's scatter and processes to see. The report compares cells (each against its
workload's sequential cell and the other models at its worker count, against the previous
release, a free-threaded build against its default build: gilmatrix.comparisons) by Welch's
test on the process means adjusted for the machine's speed (on 20% trimmed means where a pool is
compared, Yuen's: stats.compare_cells, stats.pool_compared; a run made with ``pairing: calls``
compares by its pairs, which this does not model). With relative scatters s_a and s_b (the sd
that gives the tested mean's standard error, over it: stats.location_stats) and n_a, n_b
processes, the log of the ratio of the means has the standard error se = √(s_a²/n_a + s_b²/n_b),
on Welch-Satterthwaite's degrees of freedom df (each side's: the processes the mean keeps, less
one), and a true
change c is found at ``ALPHA`` (two-sided) with the chance

    1 - T_df(t_df,1-α/2 - ln(1 + c) / se)   (the other tail, a change the wrong way, neglected)

so the smallest change found with the chance ``POWER`` is exp((t_df,1-α/2 + t_df,POWER) · se) - 1,
never below the 1% a change must exceed inside a run (confidence.within_run_floor). A
comparison's scatter is the one it measured: what the figures promise holds while the machine
stays as noisy as it was during the run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from scipy import special

from gilmatrix.comparisons import comparisons
from gilmatrix.confidence import ALPHA, MIN_FLOOR, t_quantile
from gilmatrix.harness.contract import Stopped
from gilmatrix.reports.stats import kept, location_stats, pool_compared

POWER = 0.9  # "found 9 times in 10"
CHANGE = 0.05  # the change a run should be able to find (#25: a 5% change within one run)
MOST = 1000  # processes a cell: beyond, "more than"


def _se_df(s_a: float, n_a: int, s_b: float, n_b: int, trim: bool = True) -> tuple[float, float]:
    va, vb = s_a * s_a / n_a, s_b * s_b / n_b
    var = va + vb
    if var <= 0.0:
        return 0.0, math.inf
    k_a, k_b = (kept(n_a), kept(n_b)) if trim else (n_a, n_b)
    df = var * var / (va * va / max(k_a - 1, 1) + vb * vb / max(k_b - 1, 1))
    return math.sqrt(var), df


def chance(s_a: float, n_a: int, s_b: float, n_b: int, change: float = CHANGE, trim: bool = True) -> float:
    """The chance that the report's test at ALPHA (Welch's, on trimmed means with ``trim``)
    finds a true relative ``change`` between two cells of relative scatters ``s_a``, ``s_b``
    over ``n_a``, ``n_b`` processes (0 with fewer than 2)."""
    if n_a < 2 or n_b < 2:
        return 0.0
    se, df = _se_df(s_a, n_a, s_b, n_b, trim)
    shift = math.log1p(abs(change))
    if se == 0.0:
        return 1.0 if abs(change) > MIN_FLOOR else 0.0
    return float(special.stdtr(df, shift / se - t_quantile(1.0 - ALPHA / 2.0, df)))


def detectable(s_a: float, n_a: int, s_b: float, n_b: int, power: float = POWER, trim: bool = True) -> float:
    """The smallest relative change such a comparison finds with the chance ``power`` (inf with
    fewer than 2 processes a side)."""
    if n_a < 2 or n_b < 2:
        return math.inf
    se, df = _se_df(s_a, n_a, s_b, n_b, trim)
    if se == 0.0:
        return MIN_FLOOR
    return max(math.expm1((t_quantile(1.0 - ALPHA / 2.0, df) + t_quantile(power, df)) * se), MIN_FLOOR)


def needed(
    s_a: float, s_b: float, change: float = CHANGE, power: float = POWER, most: int = MOST, trim: bool = True
) -> int:
    """The processes each of two cells of relative scatters ``s_a``, ``s_b`` needs for their
    comparison to find ``change`` with the chance ``power``; ``most + 1`` when ``most`` do not."""
    if detectable(s_a, most, s_b, most, power, trim) > change:
        return most + 1
    low, high = 2, most  # detectable falls as n grows: the least n that reaches it
    while low < high:
        mid = (low + high) // 2
        if detectable(s_a, mid, s_b, mid, power, trim) <= change:
            high = mid
        else:
            low = mid + 1
    return low


def scatter(row: Any, trim: bool = True) -> float:
    """A cell-table row's relative scatter as the report tests it (stats.location_stats): the sd
    that gives the standard error of its mean of process means adjusted for the machine's speed
    (with ``trim``, its trimmed mean: where a pool is compared), over that mean."""
    mean, sd, _ = location_stats(row, trim)
    return float(sd) / float(mean) if mean else math.nan


@dataclass(frozen=True, slots=True)
class Reach:
    """What one kind of comparison (both cells of one in-process worker, or a pool on either
    side) could find in a run: medians over its comparisons."""

    kind: str  # "one worker" or "pools"
    comparisons: int
    processes: float  # the processes of a compared cell (the mean of the two sides)
    detectable: float  # the smallest change found 9 times in 10 with them
    needed: int  # the processes each side needs to find CHANGE 9 times in 10 (MOST + 1: more than MOST)


def compared(cells: pd.DataFrame) -> list[tuple[str, Any, Any]]:
    """(kind, a, b): every comparison the report makes of a run's cells, as cell-table rows
    (gilmatrix.comparisons: each cell against its workload's sequential cell and the other
    models at its worker count, against the previous release of its build kind, a free-threaded
    build against its default build), each once; "pools" where either side is a pool. Cells of
    fewer than 2 processes are here too: ``reach`` leaves them out."""
    rows = {(str(r.interpreter), str(r.cell)): r for r in cells.itertuples(index=False)}
    out = []
    for key, partners in comparisons(rows).items():
        for other in sorted(partners):
            if other <= key:
                continue
            a, b = rows[key], rows[other]
            out.append(("pools" if pool_compared(a, b) else "one worker", a, b))
    return out


def reach(cells: pd.DataFrame, pairs: Sequence[tuple[str, Any, Any]] | None = None) -> tuple[Reach, ...]:
    """Each kind's reach over a run's cell table (kinds without comparisons left out); ``pairs``:
    its comparisons (``compared``), when the caller has them already."""
    found: dict[str, list[tuple[float, float, int]]] = {}
    for kind, row, base in compared(cells) if pairs is None else pairs:
        n_a, n_b, trim = int(row.processes), int(base.processes), kind == "pools"
        s_a, s_b = scatter(row, trim), scatter(base, trim)
        if n_a < 2 or n_b < 2 or not (math.isfinite(s_a) and math.isfinite(s_b)):
            continue
        found.setdefault(kind, []).append(
            ((n_a + n_b) / 2, detectable(s_a, n_a, s_b, n_b, trim=trim), needed(s_a, s_b, trim=trim))
        )
    out = []
    for kind in ("one worker", "pools"):
        if kind in found:
            frame = pd.DataFrame(found[kind], columns=["n", "detectable", "needed"])
            out.append(
                Reach(
                    kind,
                    len(frame),
                    float(frame["n"].median()),
                    float(frame["detectable"].median()),
                    math.ceil(frame["needed"].median()),
                )
            )
    return tuple(out)


def minutes_needed(
    pairs: Sequence[tuple[str, Any, Any]],
    reaches: Sequence[Reach],
    sampled: Mapping[tuple[str, str], Mapping[str, Any]],
    measured_seconds: float,
) -> float | None:
    """The minutes of measuring on this machine for every cell of ``pairs`` (``compared``) to have its kind's
    ``needed`` processes (a sequential cell: the most of its partners'), at this run's cost of a
    process for each cell (its worker seconds in the manifest) and its overhead (the run's
    measuring seconds over the worker seconds it spent); None without those figures."""
    want = {r.kind: r.needed for r in reaches}
    cells_needed: dict[tuple[str, str], int] = {}
    for kind, row, base in pairs:
        if kind not in want:
            continue
        for side in (row, base):
            key = (str(side.interpreter), str(side.cell))
            cells_needed[key] = max(cells_needed.get(key, 0), want[kind])
    spent = wanted = 0.0
    for key, entry in sampled.items():
        seconds = [float(s) for s in entry.get("worker_seconds") or [] if s is not None]
        if not seconds:
            continue
        spent += sum(seconds)
        wanted += max(cells_needed.get(key, len(seconds)), 1) * (sum(seconds) / len(seconds))
    if spent <= 0.0 or measured_seconds <= 0.0:
        return None
    return measured_seconds * wanted / spent / 60.0


@dataclass(frozen=True, slots=True)
class RunReach:
    """A run's reach: each kind's, and the minutes of measuring it spent and would need for the
    median comparison of each kind to find CHANGE 9 times in 10 (None: not recorded)."""

    kinds: tuple[Reach, ...]
    measured_minutes: float | None
    minutes_needed: float | None
    max_processes: int | None = None  # where the run's profile stops a cell
    fixed: bool = False  # the profile gives every cell max_processes (pyperf.processes), no more
    budgeted: bool = False  # cells stopped on the run's budget (run_minutes): shards give them more

    def beyond_cap(self) -> int | None:
        """The most processes a kind needs, where that is more than the profile lets a cell have."""
        most = max((r.needed for r in self.kinds), default=0)
        return most if self.max_processes is not None and most > self.max_processes else None


def run_reach(
    cells: pd.DataFrame, schedule: Mapping[str, Any], sampled: Mapping[tuple[str, str], Mapping[str, Any]]
) -> RunReach:
    """The reach of a run from its cell table and its manifest's schedule (the rounds' seconds,
    the profile's sampling: its cap on processes, its run budget) and cells (each process'
    worker seconds)."""
    pairs = compared(cells)
    kinds = reach(cells, pairs)
    sampling = schedule.get("sampling") or {}
    fixed = sampling.get("mode") == "fixed"
    cap = sampling.get("processes" if fixed else "max_processes")
    cap = int(cap) if isinstance(cap, int | float) else None
    # a run that ended before its run_minutes (its cells at their cap) gains nothing from shards
    budgeted = any(entry.get("stopped") == Stopped.RUN_BUDGET for entry in sampled.values())
    rounds = [r for r in schedule.get("rounds") or [] if isinstance(r, Mapping)]
    seconds = sum(float(r.get("seconds") or 0.0) for r in rounds)
    if seconds <= 0.0:
        return RunReach(kinds, None, None, cap, fixed, budgeted)
    needed_minutes = minutes_needed(pairs, kinds, sampled, seconds)
    return RunReach(kinds, seconds / 60.0, needed_minutes, cap, fixed, budgeted)
