"""Call-by-call pairs: the cells of one workload compared through its sequential run, timed in
their own processes around each of their calls (the profile's ``pairing: calls``).

With pairing, a worker process of a cell that is not sequential times the workload's sequential
run (same tasks, no pool) just before its first call and just after each call
(harness/bench.py ``Partner``); each value then has its partner: the mean of the two partner
calls around it, taken in the same process and the same seconds of machine. A process' figure
is the mean over its values of ``log(value / partner)``; a cell's ``pair_mean`` is the mean of
those over its processes and ``pair_sd`` their standard deviation: the cell's time relative to
the sequential run, with what the machine did to both cancelled in every call.

Two cells of one workload, interpreter and machine then compare by ``pair_mean`` (the
sequential cell itself by 0: it *is* the partner), with a Welch interval from the processes'
scatter. What pairing cannot cancel — the memory layout of a process, which differs between
the threads and processes that run the two — is in that scatter, so the interval holds it.
The run's noise floor is the part of the machine's window-to-window variation two means can
keep (stats.mean_floor); pairs cancel it, so a paired comparison's floor is MIN_FLOOR (1%).

Across interpreters (or workloads) the partners differ, but each is measured in every process
of every paired cell of its workload: its *level* (``level_mean``, the mean over those processes
of their mean log partner time, and ``level_var``, the variance of that mean) is known far
better than any one cell's mean, from processes spread over the whole run. A cell's time is
then its level plus its pair_mean (a sequential cell: its level), and two cells of different
interpreters compare by those, with the run's floor for means over that many processes —
the partners run in a thread of their own, so levels of two interpreters compare like with like.

Cells without partners (runs before pairing, profiles without it) are compared as before
(stats.compare_cells).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from gilmatrix.confidence import MIN_FLOOR

PAIR_COLUMNS = ("pair_mean", "pair_sd", "pair_n", "level_mean", "level_var", "level_n")
# what makes two cells share a partner (and a level)
PARTNER_KEYS = ("interpreter", "workload", "params", "machine")
MIN_PROCESSES = 2  # a cell's pairs need this many processes for an interval


def pair_columns(frame: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """Per cell of ``table`` (``frame``'s "group" column numbers its rows): pair_mean, pair_sd,
    pair_n, and its workload's level_mean, level_var, level_n; NaN / 0 without partners."""
    groups = len(table)
    out = pd.DataFrame(
        {
            "pair_mean": math.nan,
            "pair_sd": math.nan,
            "pair_n": 0,
            "level_mean": math.nan,
            "level_var": math.nan,
            "level_n": 0,
        },
        index=range(groups),
    )
    if "partner" not in frame or not groups:
        return out
    partner = pd.to_numeric(frame["partner"], errors="coerce")
    ok = (partner > 0) & (frame["value"] > 0)
    if not ok.any():
        return out
    kept = frame.loc[ok]
    logs = pd.DataFrame(
        {
            "group": kept["group"].to_numpy(),
            "run": kept["run"].to_numpy(),
            "d": np.log(kept["value"].to_numpy() / partner[ok].to_numpy()),
            "p": np.log(partner[ok].to_numpy()),
        }
    )
    per_process = logs.groupby(["group", "run"], sort=True)[["d", "p"]].mean()
    per_cell = per_process["d"].groupby(level="group").agg(["mean", "std", "count"])
    out.loc[per_cell.index, "pair_mean"] = per_cell["mean"].to_numpy()
    out.loc[per_cell.index, "pair_sd"] = per_cell["std"].to_numpy()
    out.loc[per_cell.index, "pair_n"] = per_cell["count"].to_numpy()
    # the level: every paired process of the workload (on its interpreter, machine), pooled
    keys = table[list(PARTNER_KEYS)].astype(str).agg("|".join, axis=1).to_numpy()
    process_keys = keys[per_process.index.get_level_values("group").to_numpy()]
    levels = per_process["p"].groupby(process_keys).agg(["mean", "var", "count"])
    levels["var"] = levels["var"] / levels["count"]
    known = pd.Series(keys).isin(levels.index).to_numpy()
    if known.any():
        chosen = levels.loc[keys[known]]
        out.loc[known, "level_mean"] = chosen["mean"].to_numpy()
        out.loc[known, "level_var"] = chosen["var"].to_numpy()
        out.loc[known, "level_n"] = chosen["count"].to_numpy()
    return out


def _side(row: Any) -> tuple[float, float, int] | None:
    """(log ratio to the partner, its variance of the mean, processes) of one row; the
    sequential cell is the partner (0, exactly); None where the row has no pairs."""
    if not hasattr(row, "pair_n"):  # a table without pairs (older code, a hand-made row)
        return None
    if getattr(row, "executor", "") == "sequential":
        return 0.0, 0.0, 0
    n = int(getattr(row, "pair_n", 0) or 0)
    mean, sd = getattr(row, "pair_mean", math.nan), getattr(row, "pair_sd", math.nan)
    if n < MIN_PROCESSES or not (math.isfinite(mean) and math.isfinite(sd)):
        return None
    return float(mean), float(sd) ** 2 / n, n


def same_partner(a: Any, b: Any) -> bool:
    """Whether two cell-table rows share a partner: one workload (and parameters) on one
    interpreter and one machine."""
    missing = object()
    return all(
        getattr(a, key, missing) is not missing and str(getattr(a, key)) == str(getattr(b, key, missing))
        for key in PARTNER_KEYS
    )


def level_of(row: Any) -> tuple[float, list[tuple[float, float]], int] | None:
    """(log time, its variance parts as (variance, degrees of freedom), processes of its level)
    of a row through its workload's level: level + pair_mean (a sequential cell: the level);
    None without a level (or, not sequential, without pairs)."""
    n = int(getattr(row, "level_n", 0) or 0)
    mean, var = getattr(row, "level_mean", math.nan), getattr(row, "level_var", math.nan)
    if n < MIN_PROCESSES or not (math.isfinite(mean) and math.isfinite(var)):
        return None
    side = _side(row)
    if side is None:
        return None
    parts = [(float(var), n - 1.0)] + ([(side[1], side[2] - 1.0)] if side[2] else [])
    return float(mean) + side[0], parts, n


def through_levels(a: Any, b: Any) -> tuple[float, float, float, int, int] | None:
    """(log(a / b), its standard error, Welch degrees of freedom, processes behind each side's
    level) of two rows that do not share a partner, through their levels; None without them."""
    la, lb = level_of(a), level_of(b)
    if la is None or lb is None:
        return None
    parts = la[1] + lb[1]
    var = sum(v for v, _ in parts)
    terms = sum(v * v / max(d, 1.0) for v, d in parts if v > 0)
    df = var * var / terms if terms > 0 else float(min(la[2], lb[2]) - 1)
    return la[0] - lb[0], math.sqrt(var), max(df, 1.0), la[2], lb[2]


def paired_sides(a: Any, b: Any) -> tuple[float, float, float] | None:
    """(log(a / b), its standard error, Welch degrees of freedom) from the two rows' pairs, or
    None when they cannot be compared so (not the same partner, a side without pairs, two
    sequential cells)."""
    if not same_partner(a, b):
        return None
    sa, sb = _side(a), _side(b)
    if sa is None or sb is None or (sa[2] == 0 and sb[2] == 0):
        return None
    var = sa[1] + sb[1]
    terms = [v * v / (n - 1) for _, v, n in (sa, sb) if n > 1]
    df = var * var / sum(terms) if var > 0 and sum(terms) > 0 else float(max(sa[2], sb[2]) - 1)
    return sa[0] - sb[0], math.sqrt(var), max(df, 1.0)


def pairs_floor(floor: float) -> float:
    """The floor of a paired comparison: the run's window-to-window band is cancelled by the
    pairs; what is left is MIN_FLOOR (or the run's floor, if smaller)."""
    return min(floor, MIN_FLOOR) if floor > 0 else 0.0
