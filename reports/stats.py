"""Statistics of the report: per-cell summaries and Welch's t-test between two cells.

The unit of replication is the pyperf **worker process**, not the value: the values of one
process share its memory layout, hash seed and minute of machine noise, so they are not
independent, and a test that counted them as independent called noise a change (13 of 20
cells of an unchanged re-run). Each cell's interval and every test therefore use the means of
its worker processes: ``processes`` observations, their standard deviation ``proc_sd``.

Why Welch: cells differ in variance (a process pool is noisier than a sequential loop). A
difference is called a change only when Welch's test on the process means says it is
significant *and* it is larger than the noise floor the run measured on itself (its sentinels,
runner/run/schedule.py); otherwise "no change", with the interval. Distributions come from SciPy.

Why trimmed, inside a run: a burst of other work slows a few of a pool's processes far more
than the rest (a burner on one of two cores holds up every worker of a pool), and a mean follows
them. Two cells of one run with a pool on either side compare by Yuen's test — Welch's on 20%
trimmed means of the adjusted process means, each with its winsorized variance
(:func:`trimmed`) — which is Welch's exactly below 5 processes (nothing trimmed). Two cells of
one in-process worker compare by Welch's test on their adjusted means: the reference loop and
the run-queue wait take most bursts out of those, and trimming what is left called identical
twins different more often at no gain in power (:func:`pool_compared`). Measured
under seeded noise (results log, sessions 20 and 21): over 47 runs, pools' twins called
different 15 of 602 times against Welch's 31, a 5% change found 141 of 329 against 124;
in-process twins 23 of 258 trimmed against 14 on means, changes found 118 and 119 of 141; on
12 fresh runs of in-process cells, after the rule was written down, twins 19 of 144 trimmed
against 10, changes 34 and 33 of 36. Comparisons between runs stay on means: a baseline's
stored summaries are means.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import special

from gilmatrix.confidence import ALPHA, mean_floor, t_quantile
from gilmatrix.harness.contract import stability_warnings
from gilmatrix.reports.pairs import PAIR_COLUMNS, pair_columns, paired_sides, pairs_floor, through_levels
from gilmatrix.reports.results import CELL_COLUMNS
from gilmatrix.reports.sidebyside import Series, adjust, cell_series, in_process

NOT_COMPARED = "not compared"  # two cells of different machines: a comparison, never a verdict
CELL_KEYS = list(CELL_COLUMNS)
# what the harness measured per pyperf run, summarised per cell (see run_summary)
RUN_SUMMARY = ["cpu_time", "parallelism", "cpu_class", "peak_rss"]
# what a cell is tested on inside a run where a pool is compared (location_stats): Yuen's trimmed
# mean of its adjusted process means, the sd that gives its standard error, its degrees of freedom
TRIMMED = ["trim_mean", "trim_sd", "trim_df"]


def different_machines(a: str, b: str) -> str:
    """What the report says instead of a verdict on two cells of different machines ``a`` and
    ``b`` (the first-named cell's machine first): hardware would be read as a change."""
    return f"{NOT_COMPARED}: different machines ({a or '?'} vs {b or '?'})"


def machine_of(row: Any) -> str:
    """The machine of a cell-table row ("" for tables without the column)."""
    value = getattr(row, "machine", "")
    return value if isinstance(value, str) else ""


TRIM = 0.2  # the share of a cell's process means trimmed from each end inside a run (Yuen's test)


def kept(n: int, cut: float = TRIM) -> int:
    """How many of ``n`` process means a ``cut`` trimmed mean keeps: n - 2·floor(cut·n)."""
    return n - 2 * math.floor(cut * n + 1e-9)


def trimmed(values: Sequence[float], cut: float = TRIM) -> tuple[float, float, float]:
    """(location, sd, df) of a sample for Welch's formula, by Yuen: the ``cut`` trimmed mean,
    and an sd such that sd² / n is Yuen's squared standard error (n - 1)·s_w² / (h·(h - 1)) —
    s_w² the winsorized variance, h the values kept — on h - 1 degrees of freedom. With nothing
    trimmed (fewer than 5 values at 20%) that is the mean, the standard deviation and n - 1:
    Welch's own. (nan, nan, 0) for no values; sd 0 and df 0 for one."""
    x = sorted(float(v) for v in values)
    n = len(x)
    if n == 0:
        return math.nan, math.nan, 0.0
    h = kept(n, cut)
    g = (n - h) // 2
    location = math.fsum(x[g : n - g]) / h
    if h < 2:
        return location, 0.0, 0.0
    winsorized = np.array([x[g]] * g + x[g : n - g] + [x[n - g - 1]] * g)
    variance = float(winsorized.var(ddof=1))
    return location, math.sqrt(n * (n - 1) * variance / (h * (h - 1))), h - 1.0


@dataclass(frozen=True, slots=True)
class Comparison:
    """Welch's t-test of a against b, and the ratio of their means with its 95% interval."""

    mean_a: float
    mean_b: float
    n_a: int
    n_b: int
    ratio: float  # mean_a / mean_b: below 1 means a is faster
    ratio_low: float
    ratio_high: float
    p_value: float
    significant: bool  # p < ALPHA and |ratio - 1| > floor
    floor: float = 0.0  # the noise floor the difference had to exceed
    below_floor: bool = False  # significant by the test alone, but within the noise floor

    @property
    def direction(self) -> str:
        """'faster', 'slower' or 'tie' for a relative to b."""
        if not self.significant:
            return "tie"
        return "faster" if self.ratio < 1.0 else "slower"


def welch_from_stats(
    mean_a: float,
    sd_a: float,
    n_a: int,
    mean_b: float,
    sd_b: float,
    n_b: int,
    floor: float = 0.0,
    drift: float = 0.0,
    per_mean: bool = True,
    df_a: float | None = None,
    df_b: float | None = None,
) -> Comparison:
    """Welch's test from summaries (of process means). With fewer than 2 observations on a
    side nothing is significant: one process says nothing about noise, so the report says
    'tie' rather than guess. A significant difference within ``floor`` (relative) is no change.
    ``df_a``, ``df_b``: each side's degrees of freedom where they are not n - 1 (Yuen's test of
    trimmed means, :func:`trimmed`).

    ``drift`` (relative variance) is what two means measured at different times differ by
    beyond their processes' scatter (gilmatrix.run.schedule.drift): comparing two runs, it is
    added to the variance of the difference, as a hierarchical model's run-level component
    would be.

    ``floor`` is the run's band, scaled to the two means (:func:`mean_floor`) unless
    ``per_mean`` is False: against a single baseline run, where nothing else guards against
    how far a cell moves between runs, the whole band."""
    ratio = mean_a / mean_b if mean_b else math.nan
    if per_mean:
        floor = mean_floor(floor, n_a, n_b)
    if n_a < 2 or n_b < 2 or not mean_b:
        return Comparison(mean_a, mean_b, n_a, n_b, ratio, -math.inf, math.inf, 1.0, False, floor)
    va, vb = sd_a * sd_a / n_a, sd_b * sd_b / n_b
    se = math.sqrt(va + vb + drift * mean_b * mean_b)
    diff = mean_a - mean_b
    if se == 0.0:  # identical values on both sides: exact, if unlikely
        significant = diff != 0.0
        beyond = abs(ratio - 1.0) > floor
        return Comparison(
            mean_a,
            mean_b,
            n_a,
            n_b,
            ratio,
            ratio,
            ratio,
            0.0 if significant else 1.0,
            significant and beyond,
            floor,
            significant and not beyond,
        )
    dfa = n_a - 1.0 if df_a is None else max(df_a, 1.0)
    dfb = n_b - 1.0 if df_b is None else max(df_b, 1.0)
    # Welch-Satterthwaite degrees of freedom
    df = (va + vb) ** 2 / (va * va / dfa + vb * vb / dfb)
    # Student's t tail as a plain ufunc: stats.t.sf costs ~0.1 ms a call (10,000 cells: 1 s)
    p_value = float(2.0 * special.stdtr(df, -abs(diff / se)))
    low, high = log_ratio_interval(
        ratio, [(va / (mean_a * mean_a), dfa), (vb / (mean_b * mean_b), dfb)], drift
    )
    tested = p_value < ALPHA
    beyond = abs(ratio - 1.0) > floor
    return Comparison(
        mean_a, mean_b, n_a, n_b, ratio, low, high, p_value, tested and beyond, floor, tested and not beyond
    )


def log_ratio_interval(
    ratio: float, parts: Sequence[tuple[float, float]], extra: float = 0.0
) -> tuple[float, float]:
    """The 95% interval of a ratio of two positive means, on the log scale: log(ratio) has the
    variance of the sum of the means' relative variances (the delta method), ``parts`` as
    (relative variance, degrees of freedom), ``extra`` a relative variance counted as known;
    degrees of freedom by Welch-Satterthwaite. ratio x exp(-+t·se): always above 0, and as
    asymmetric as a ratio's uncertainty is (a linear interval of 2 noisy processes went below
    zero). NaN when the ratio is not a positive number."""
    if not ratio > 0.0 or not math.isfinite(ratio):
        return math.nan, math.nan
    var = sum(v for v, _ in parts) + extra
    if var <= 0.0:
        return ratio, ratio
    df = (
        var * var / sum(v * v / max(d, 1.0) for v, d in parts if v > 0)
        if any(v > 0 for v, _ in parts)
        else math.inf
    )
    factor = math.exp(t_quantile(1.0 - ALPHA / 2.0, df) * math.sqrt(var))
    return ratio / factor, ratio * factor


def welch(a: Sequence[float], b: Sequence[float], floor: float = 0.0) -> Comparison:
    """Welch's t-test on two samples (of process means)."""
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    sd_a = float(xa.std(ddof=1)) if len(xa) > 1 else 0.0
    sd_b = float(xb.std(ddof=1)) if len(xb) > 1 else 0.0
    return welch_from_stats(float(xa.mean()), sd_a, len(xa), float(xb.mean()), sd_b, len(xb), floor)


def adjusted_stats(row: Any) -> tuple[float, float]:
    """(mean, sd) of a cell-table row's process means adjusted by the reference covariate
    (reports/sidebyside.py), or its raw ones where the table has no adjusted figures."""
    mean, sd = getattr(row, "adj_mean", math.nan), getattr(row, "adj_sd", math.nan)
    if mean is None or sd is None or not (math.isfinite(mean) and math.isfinite(sd)) or mean <= 0:
        return row.mean, row.proc_sd
    return mean, sd


def location_stats(row: Any, trim: bool = True) -> tuple[float, float, float]:
    """(location, sd, df) a cell-table row is tested on inside a run: with ``trim``, Yuen's
    trimmed mean of its adjusted process means (:func:`trimmed`); without, or where the table has
    none, its adjusted (else raw) mean and sd on n - 1 degrees of freedom."""
    location, sd, df = (getattr(row, c, math.nan) for c in TRIMMED)
    if (
        trim
        and all(isinstance(v, float | int) and math.isfinite(v) for v in (location, sd, df))
        and location > 0
    ):
        return float(location), float(sd), float(df)
    mean, sd = adjusted_stats(row)
    return mean, sd, float(row.processes) - 1.0


def _one_worker(row: Any) -> bool:
    """Whether a row is a cell of one in-process worker (sidebyside.in_process); a row that does
    not say its model and workers is not."""
    model, workers = getattr(row, "model", None), getattr(row, "workers", None)
    if model is None or workers is None:
        return False
    try:
        return bool(in_process(model, int(workers)))
    except (TypeError, ValueError):
        return False


def pool_compared(a: Any, b: Any) -> bool:
    """Whether a comparison of two cell-table rows has a pool on either side (the reach's kind
    "pools": reports/power.py): it tests their trimmed means. Two cells of one in-process worker
    test their adjusted means: trimmed, such twins were called different about twice as often
    (23 of 258 and 19 of 144 against 14 and 10 on means, results log, session 21) for no more
    5% changes found, while pools gained on both counts (module docstring)."""
    return not (_one_worker(a) and _one_worker(b))


def compare_cells(a: Any, b: Any, floor: float = 0.0) -> Comparison:
    """a against b, two rows of one run's cell table (itertuples rows).

    Two cells of one workload on one interpreter measured with pairing compare by their
    per-call ratios to the workload's sequential run (reports/pairs.py): the machine's speed
    cancels call by call. Otherwise on their process means adjusted by the reference covariate
    (the machine's speed while each process ran is taken out: reports/sidebyside.py; measured by
    ``selfbench --only noisy``): by Yuen's test (Welch's on trimmed means, :func:`trimmed`) where
    a pool is on either side, by Welch's on the means between two cells of one in-process worker
    (:func:`pool_compared`). Cells of results without references compare on their raw means."""
    by_pairs = compare_pairs(a, b, floor)
    if by_pairs is not None:
        return by_pairs
    trim = pool_compared(a, b)
    mean_a, sd_a, df_a = location_stats(a, trim)
    mean_b, sd_b, df_b = location_stats(b, trim)
    return welch_from_stats(
        mean_a, sd_a, int(a.processes), mean_b, sd_b, int(b.processes), floor, df_a=df_a, df_b=df_b
    )


def compare_pairs(a: Any, b: Any, floor: float = 0.0) -> Comparison | None:
    """a against b by their pairs (reports/pairs.py): directly when they share a partner, else
    through their workloads' levels; None where either has none. The means reported are the
    cells' raw ones; the ratio and its interval are the pairs'."""
    sides = paired_sides(a, b)
    if sides is not None:
        d, se, df = sides
        n_a, n_b = int(getattr(a, "pair_n", 0) or a.processes), int(getattr(b, "pair_n", 0) or b.processes)
        return from_log_difference(float(a.mean), float(b.mean), n_a, n_b, d, se, df, pairs_floor(floor))
    return compare_levels(a, b, floor)


def compare_levels(a: Any, b: Any, floor: float = 0.0) -> Comparison | None:
    """a against b through their workloads' levels (reports/pairs.py: two interpreters, or two
    workloads), or None where either has no level."""
    levels = through_levels(a, b)
    if levels is None:
        return None
    d, se, df, n_a, n_b = levels  # means over that many processes: the run's floor for them
    return from_log_difference(float(a.mean), float(b.mean), n_a, n_b, d, se, df, mean_floor(floor, n_a, n_b))


def from_log_difference(
    mean_a: float, mean_b: float, n_a: int, n_b: int, d: float, se: float, df: float, floor: float
) -> Comparison:
    """The Comparison of a log ratio ``d`` with standard error ``se`` (t with ``df``): its
    ratio exp(d), 95% interval, two-sided p, significant when p < ALPHA and beyond ``floor``."""
    ratio = math.exp(d)
    beyond = abs(ratio - 1.0) > floor
    if se == 0.0:
        significant = d != 0.0
        return Comparison(
            mean_a, mean_b, n_a, n_b, ratio, ratio, ratio, 0.0 if significant else 1.0,
            significant and beyond, floor, significant and not beyond,
        )  # fmt: skip
    p_value = float(2.0 * special.stdtr(df, -abs(d / se)))
    half = t_quantile(1.0 - ALPHA / 2.0, df) * se
    tested = p_value < ALPHA
    return Comparison(
        mean_a, mean_b, n_a, n_b, ratio, math.exp(d - half), math.exp(d + half), p_value,
        tested and beyond, floor, tested and not beyond,
    )  # fmt: skip


MIN_PAIRS = 3  # fewer common rounds than this: no paired comparison


def paired(a: Series, b: Series, floor: float = 0.0, adjusted: bool = True) -> Comparison | None:
    """a against b on their common rounds: the mean of the per-round log ratios, a paired t
    interval; None with fewer than MIN_PAIRS common rounds. The means reported are the two
    cells' (adjusted) means over the paired rounds; the floor is the run's, scaled to the pairs
    (stats.mean_floor)."""
    ra, rb = a.by_round(adjusted), b.by_round(adjusted)
    common = sorted(set(ra) & set(rb))
    n = len(common)
    if n < MIN_PAIRS:
        return None
    d = np.array([ra[r] - rb[r] for r in common])
    mean_a = float(np.exp([ra[r] for r in common]).mean())
    mean_b = float(np.exp([rb[r] for r in common]).mean())
    sd = float(d.std(ddof=1))
    return from_log_difference(
        mean_a, mean_b, n, n, float(d.mean()), sd / math.sqrt(n), n - 1.0, mean_floor(floor, n, n)
    )


# a cell's figures in seconds (per call): what scales with the work a call does
SUMMARY_FIELDS = ("mean", "median", "stdev", "min", "max", "ci_low", "ci_high")  # of a cell's values
TIME_FIELDS = (*SUMMARY_FIELDS, "proc_sd", "cpu_time", "adj_mean", "adj_sd", "trim_mean", "trim_sd")


def at_tasks(row: Any, tasks: int) -> Any:
    """A cell-table row (an itertuples row) with its times scaled to ``tasks`` tasks at its own
    throughput (each time x tasks / the tasks it ran), so that cells which ran different
    numbers of tasks (a workload with ``tasks_per_worker``: workers x it) compare as throughput.
    The row itself when it ran ``tasks`` tasks, or does not say: every figure of a workload with
    the same tasks in all its cells is left exactly as measured."""
    own = getattr(row, "tasks", None)
    if own is None or pd.isna(own) or int(own) <= 0 or int(own) == tasks:
        return row
    factor = tasks / int(own)
    return row._replace(**{f: getattr(row, f) * factor for f in TIME_FIELDS if f in row._fields})


def cell_table(frame: pd.DataFrame, others: bool = False) -> pd.DataFrame:
    """One row per cell: n values, their mean, median, stdev, min, max; ``processes`` (worker
    processes with values) and the standard deviation of their means, ``proc_sd``; the 95%
    interval of the mean from the process means and its half-width relative to the mean,
    ``precision``; pyperf's stability warnings, so that an unstable cell is flagged where it
    is shown; the process means adjusted for the machine's speed (``adj_mean``, ``adj_sd``, each
    cell's ``series``) and what a comparison inside the run tests (``trim_mean``, ``trim_sd``,
    ``trim_df``: :func:`location_stats`). ``others``: see process_series."""
    extra = [
        "processes",
        "proc_sd",
        "precision",
        "drift",
        "adj_mean",
        "adj_sd",
        *TRIMMED,
        "series",
        *PAIR_COLUMNS,
    ]
    if frame.empty:
        return pd.DataFrame(
            columns=[
                *CELL_KEYS,
                "n",
                *SUMMARY_FIELDS,
                *extra,
                "warnings",
                *RUN_SUMMARY,
            ]
        )
    frame = frame.assign(raw=frame["value"] * frame["loops"])
    grouped = frame.groupby(CELL_KEYS, sort=False, observed=True)
    table = grouped["value"].agg(["count", "mean", "median", "std", "min", "max"])
    table["raw_min"] = grouped["raw"].min()
    table = table.rename(columns={"count": "n", "std": "stdev"}).reset_index()
    group = grouped.ngroup().to_numpy()  # groups are numbered in agg's order (sort=False)
    # one mean per worker process (pyperf run); the cell's mean is the mean of these
    runs = frame.assign(group=group).groupby(["group", "run"], sort=True)["value"].mean()
    per_cell = runs.groupby(level="group").agg(["count", "mean", "std"])
    table["processes"] = per_cell["count"].to_numpy()
    table["mean"] = per_cell["mean"].to_numpy()
    table["proc_sd"] = per_cell["std"].fillna(0.0).to_numpy()
    summary = run_summary(frame.assign(group=group), len(table))
    for column in RUN_SUMMARY:
        table[column] = summary[column].to_numpy()
    table["stdev"] = table["stdev"].fillna(0.0)
    quantiles = {n: t_quantile(1.0 - ALPHA / 2.0, n - 1) for n in table["processes"].unique() if n > 1}
    t_crit = table["processes"].map(lambda n: quantiles.get(n, math.inf))
    half = t_crit * table["proc_sd"] / np.sqrt(table["processes"])
    # on the log scale (the delta method: log of the mean, se / mean), so that a time's interval
    # is never below 0 however few and scattered its processes: mean x exp(-+ half / mean)
    factor = np.exp(half / table["mean"])
    table["ci_low"] = table["mean"] / factor
    table["ci_high"] = table["mean"] * factor
    table["precision"] = (half / table["mean"]).where(table["processes"] > 1)
    drift = runs.groupby(level="group").agg(lambda s: split_half_drift(s.to_numpy()))
    table["drift"] = drift.to_numpy()
    series = process_series(frame.assign(group=group), table, others)
    table["adj_mean"] = [float(np.mean(s.adjusted)) for s in series]
    table["adj_sd"] = [float(np.std(s.adjusted, ddof=1)) if len(s.adjusted) > 1 else 0.0 for s in series]
    tested = [trimmed(s.adjusted) for s in series]
    for n, column in enumerate(TRIMMED):
        table[column] = [t[n] for t in tested]
    table["series"] = series
    pairs = pair_columns(frame.assign(group=group), table)
    for column in PAIR_COLUMNS:
        table[column] = pairs[column].to_numpy()
    table["warnings"] = [
        tuple(stability_warnings(row.n, row.mean, row.stdev, row.min, row.max, row.raw_min))
        for row in table.itertuples(index=False)
    ]
    # One thread cannot keep more than one core busy: a "parallel" class there comes from a
    # call too short for its CPU time to be measured, so it is not shown as a finding.
    impossible = (table["model"] == "sequential") & table["cpu_class"].str.startswith("parallel")
    if impossible.any():
        table.loc[impossible, "warnings"] = [
            (*w, f"CPU/wall {p:.2f} on one thread: too short to classify")
            for w, p in zip(
                table.loc[impossible, "warnings"], table.loc[impossible, "parallelism"], strict=True
            )
        ]
        table.loc[impossible, "cpu_class"] = "unknown"
    return table.drop(columns=["raw_min"])


def process_series(frame: pd.DataFrame, table: pd.DataFrame, others: bool = False) -> list[Series]:
    """Each cell's worker processes (frame with its "group" column, in the table's order) as a
    sidebyside.Series: rounds, raw means, means of the values adjusted by the reference
    covariate (each value by the reference timed around its own call) and the run-queue wait;
    with ``others``, pools also by other work's share of their CPUs — a study's option
    (selfbench noisy), not the report's: with one slope per execution model it put noise into
    the pools that do not need their CPUs (results log, session 16)."""
    obs = pd.DataFrame(
        {
            "group": frame["group"].to_numpy(),
            "run": frame["run"].to_numpy(),
            "mean": frame["value"].to_numpy(),
            "reference": frame["reference"].to_numpy() if "reference" in frame else math.nan,
            "wait": frame["wait"].to_numpy() if "wait" in frame else math.nan,
            "other": frame["other"].to_numpy() if others and "other" in frame else math.nan,
            "round": frame["round"].fillna(0).astype(int).to_numpy() if "round" in frame else 0,
        }
    )
    for column in ("interpreter", "model", "workers"):
        obs[column] = table[column].to_numpy()[obs["group"]]
    adjusted, _ = adjust(obs)
    procs = (
        adjusted.groupby(["group", "run"], sort=True)
        .agg(mean=("mean", "mean"), adjusted=("adjusted", "mean"), round=("round", "first"))
        .reset_index()
    )
    by_group = cell_series(procs)
    return [by_group[g] for g in range(len(table))]


def split_half_drift(means: Sequence[float]) -> float:
    """A cell's own A/A test: how far the mean of the second half of its processes (in the
    order they ran) is from the first half's, beyond what their scatter explains, as a relative
    variance (0 when within it, or with fewer than 4 processes). A comparison with another run
    adds it to the variance of the difference (gilmatrix.run.schedule.drift: the run's median)."""
    n = len(means)
    if n < 4:
        return 0.0
    half = n // 2
    first, second = np.asarray(means[:half], float), np.asarray(means[half:], float)
    m1 = float(first.mean())
    if m1 <= 0:
        return 0.0
    d = float(second.mean()) / m1 - 1.0
    within = (first.var(ddof=1) * (half - 1) + second.var(ddof=1) * (n - half - 1)) / (n - 2)
    return max(0.0, float(d * d - within * (1 / half + 1 / (n - half)) / (m1 * m1)))


def run_summary(frame: pd.DataFrame, groups: int) -> pd.DataFrame:
    """Per cell (column "group" of frame): the median over its pyperf runs of CPU time and
    parallelism, the largest peak RSS, and the class most runs were given.

    Each run's figures repeat on every value of the run; they are counted once per run, so
    a run with more values does not weigh more."""
    runs = frame.drop_duplicates(["group", "run"])[["group", *RUN_SUMMARY]]
    by_group = runs.groupby("group", sort=True)
    out = pd.DataFrame(index=pd.RangeIndex(groups))
    out["cpu_time"] = by_group["cpu_time"].median()
    out["parallelism"] = by_group["parallelism"].median()
    out["peak_rss"] = by_group["peak_rss"].max()
    counts = runs.groupby(["group", "cpu_class"], sort=True).size().rename("k").reset_index()
    # most frequent first; a tie goes to the class that sorts first (stable sort)
    mode = counts.sort_values(["group", "k"], ascending=[True, False], kind="stable")
    out["cpu_class"] = mode.drop_duplicates("group").set_index("group")["cpu_class"]
    out["cpu_class"] = out["cpu_class"].fillna("")
    return out


# -- replicated baselines: the machine's run-to-run component, measured -----------------------

REPLICATE_KEYS = ["interpreter", "workload", "executor", "workers", "cell"]
# The cells that move *together* between runs: one workload under one execution model on one
# interpreter (its worker counts). Measured on a 2-core VM, 5 unchanged runs of 20 cells: per
# run, every pool cell of a workload shifts by one common factor (sd 0.8% for crunch, 4.2% for
# sum_squares, the executors of a workload alike), each cell by a smaller part of its own
# (0.6%, 2.3%); sequential cells by neither.
SHIFT_KEYS = ["interpreter", "workload", "executor"]


def pool_baselines(tables: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Two or more runs of the same cells, unchanged (an A/A of the baseline), pooled into one
    baseline and the **run-to-run component** it shows.

    A run's cells share more than their processes' scatter says: on a shared or virtual
    machine the same cell's mean moves between runs, and no single run can see it. It moves in
    two parts (a random-effects model, measured: see SHIFT_KEYS): a shift common to the cells of
    a group (one workload, execution model and interpreter) in each run, variance τ_g², and a
    part of each cell's own, τ_r². With k runs, d_ci = m_ci / m̄_c - 1 (cell c, run i); the
    group's shift in run i is s_i = mean_c d_ci, whose variance over the runs estimates
    τ_g² + (τ_r² + w)/n (n cells, w their intervals' relative variance); the residuals
    d_ci - s_i estimate τ_r² + w with (n - 1)(k - 1) degrees of freedom. A cell's run-to-run
    variance is τ² = τ_g² + τ_r² — and its degrees of freedom are those of k - 1 shifts, not of
    cells × (k - 1): the cells of a group moved *together*, so 10 of them are one draw per run,
    not 10 (the own part's larger count is not combined in: at small k, Satterthwaite over the
    two estimates called 11% of an unchanged re-run's cells changes). Two baseline runs bound a
    movement common to a group only loosely (1 degree of freedom), as they should.

    Per cell: ``mean`` (of the run means), ``within`` (relative variance of that mean from the
    runs' intervals, /k), ``within_df``, ``runs``, ``processes`` (all runs'), ``between`` (τ²,
    relative, as a test adds it: see :func:`_run_to_run`), ``between_df``, ``shift`` (τ_g²)
    and ``own`` (τ_r²)."""
    k = len(tables)
    keep = [*REPLICATE_KEYS, "mean", "proc_sd", "processes"]
    long = pd.concat([t[keep].assign(replicate=i) for i, t in enumerate(tables)], ignore_index=True)
    long["rel_var"] = (long["proc_sd"] ** 2 / long["processes"]) / long["mean"] ** 2
    grouped = long.groupby(REPLICATE_KEYS, sort=False, observed=True)
    out = grouped.agg(
        mean=("mean", "mean"),
        runs=("replicate", "nunique"),
        processes=("processes", "sum"),
        within=("rel_var", "mean"),
        df_sum=("processes", lambda s: float((s - 1).sum())),
    ).reset_index()
    out = out[out["runs"] == k].reset_index(drop=True)  # cells every baseline run has
    long = long.merge(out[[*REPLICATE_KEYS, "mean"]], on=REPLICATE_KEYS, suffixes=("", "_c"))
    long["dev"] = long["mean"] / long["mean_c"] - 1.0
    parts = pd.DataFrame(
        [
            (*key, *_run_to_run(group, k))
            for key, group in long.groupby(SHIFT_KEYS, sort=False, observed=True)
        ],
        columns=[*SHIFT_KEYS, "shift", "own", "between", "between_df"],
    )
    out = out.merge(parts, on=SHIFT_KEYS, how="left")  # every cell's group is in parts
    out["within"] = out["within"] / k
    out["within_df"] = out["df_sum"].clip(lower=1.0)
    return out.drop(columns=["df_sum"])


def _run_to_run(group: pd.DataFrame, k: int) -> tuple[float, float, float, float]:
    """(τ_g², τ_r², the variance a test adds, its degrees of freedom) of one group's cells over
    k runs (:func:`pool_baselines`): columns ``cell``, ``replicate``, ``dev``, ``rel_var``."""
    dev = group.pivot_table(index="cell", columns="replicate", values="dev", aggfunc="mean", observed=True)
    n = len(dev)
    w = float(group["rel_var"].mean())
    shifts = dev.mean(axis=0).to_numpy()  # one per run
    var_shift = float(np.var(shifts, ddof=1)) if k > 1 else 0.0
    # The shift is taken as measured, its noise not subtracted: var_shift is a scaled χ² of
    # k - 1 degrees of freedom, the variance a t-test of that many wants; clipped to 0 after a
    # subtraction, a small draw of it (two runs that happen to agree: often, with 1 degree of
    # freedom) would leave the test with no run-to-run component at all.
    own = 0.0
    if n > 1:
        resid = dev.to_numpy() - shifts[None, :]
        own = max(0.0, float((resid**2).sum()) / ((n - 1.0) * (k - 1.0)) - w)
    shift = max(0.0, var_shift - (own + w) / n)  # the estimate, shown: its noise subtracted
    return shift, own, var_shift + own, k - 1.0


def replicated_comparison(mean_a: float, sd_a: float, n_a: int, base: Any, floor: float = 0.0) -> Comparison:
    """A cell of this run against a pooled baseline (a row of :func:`pool_baselines`): the
    difference's relative variance is this run's interval, the baseline mean's, and the
    run-to-run component twice over (this run's own level, τ², and the baseline mean's, τ²/k);
    degrees of freedom by Welch-Satterthwaite over the three, so an estimate of τ² from few
    cells counts as the uncertain figure it is. Significant when p < ALPHA and beyond ``floor``."""
    mean_b, k = float(base.mean), int(base.runs)
    ratio = mean_a / mean_b if mean_b else math.nan
    floor = mean_floor(floor, n_a, int(base.processes))
    if n_a < 2 or not mean_b:
        return Comparison(
            mean_a, mean_b, n_a, int(base.processes), ratio, -math.inf, math.inf, 1.0, False, floor
        )
    va = (sd_a * sd_a / n_a) / (mean_b * mean_b)
    parts = [(va, n_a - 1.0), (float(base.within), float(base.within_df))]
    if base.between > 0:
        parts.append((float(base.between) * (1.0 + 1.0 / k), float(base.between_df)))
    var = sum(v for v, _ in parts)
    diff = ratio - 1.0
    if var <= 0.0:
        significant = diff != 0.0 and abs(diff) > floor
        return Comparison(
            mean_a, mean_b, n_a, int(base.processes), ratio, ratio, ratio, 0.0, significant, floor
        )
    df = var * var / sum(v * v / max(d, 1.0) for v, d in parts if v > 0)
    se = math.sqrt(var)
    p_value = float(2.0 * special.stdtr(df, -abs(diff / se)))
    # the interval on the log scale: this run's part relative to its own mean, the baseline's
    # (already relative to it) as they are
    low, high = log_ratio_interval(ratio, [(va / (ratio * ratio), n_a - 1.0), *parts[1:]])
    tested, beyond = p_value < ALPHA, abs(diff) > floor
    return Comparison(
        mean_a,
        mean_b,
        n_a,
        int(base.processes),
        ratio,
        low,
        high,
        p_value,
        tested and beyond,
        floor,
        tested and not beyond,
    )
