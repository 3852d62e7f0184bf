"""Side-by-side comparisons: the machine's speed removed, and processes compared in pairs.

Two things the run records make a comparison of two cells tighter on a noisy machine than
Welch's test on their process means (reports/stats.py):

- **The reference covariate** (CUPED, as controlled experiments use a covariate measured
  alongside): every worker process times a fixed pure-Python loop just before and just after
  each of its timed calls (harness/bench.py, ``gilmatrix_references``). Within one interpreter
  that loop's time moves only with the machine's speed, so ``x = log(reference / the
  interpreter's median reference)`` says how slow the machine was around that call. Each value
  is adjusted by ``exp(-θ·x)``, θ the pooled within-cell slope of log value on x over the cells
  of one execution model and worker class (one worker, or several) in the run: the regression
  of the data, never assumed (a multi-threaded cell feels a busy core less than a one-thread loop does:
  its θ comes out smaller). θ is clipped to [0, 2], and needs 12 residual degrees of freedom
  (else the worker class' θ over every model, else 0); without references (older results) it
  is 0 and nothing changes.
- **Round pairs**: with the profile's ``order: blocks`` (not the default), a round runs each
  workload's cells side by side, so two compared cells' processes of one round share the same
  seconds of machine. The comparison is then the mean of the per-round log ratios, its interval
  from their scatter (a paired t interval): what the two cells felt alike cancels.

- **The run-queue wait** of each call (harness/bench.py, ``gilmatrix_waits``: the seconds the
  call's threads were runnable but waited for a CPU, per second they ran): a one-thread call's
  wall time is its CPU time plus that wait, so ``z = log(1 + wait)``, less the least its cell
  showed, is a second covariate, its slope fitted jointly with the reference's (``slopes``). Used
  in cells whose one worker runs in the worker process itself (see ``adjust``).
- **Other work's share** of the worker's CPUs during each call (``gilmatrix_others``: their busy
  seconds less the cell's own CPU seconds, per second and CPU), where the observations carry it
  (``stats.cell_table(..., others=True)``: a study's option, not the report's): the second
  covariate of every other cell (pools, and a process pool of one), as ``z = -log(1 - share)``
  less its mean over the run's cells of that execution model and worker class.

Raw figures are kept: the cell table's ``mean`` and ``proc_sd`` stay the measured ones; the
adjusted ones are ``adj_mean`` and ``adj_sd``, and each cell's processes are its ``series``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

THETA_BOUNDS = (0.0, 2.0)
# the other work's share a call's -log(1 - share) is taken at: a clock tick's jitter below 0
# kept (it averages out), a machine wholly taken by others capped
OTHER_BOUNDS = (-0.5, 0.9)
# residual degrees of freedom a slope needs (Σ over cells of processes - 1); below, the slope of
# the worker class over every model, else none (θ = 0: the raw figures)
MIN_DF = 12


def in_process(model: Any, workers: Any) -> Any:
    """Whether a cell's one worker runs in the worker process itself (sequential, one thread, one
    sub-interpreter, asyncio with one worker): the cells the run-queue wait adjusts; a process
    pool of one is a pool. Scalars, or Series (elementwise)."""
    return (workers == 1) & (model != "processes")


@dataclass(frozen=True, slots=True)
class Series:
    """One cell's worker processes, in the order they ran: round, raw mean, adjusted mean."""

    rounds: tuple[int, ...]
    raw: tuple[float, ...]
    adjusted: tuple[float, ...]

    def by_round(self, adjusted: bool = True) -> dict[int, float]:
        """Round -> log of the process mean (the last process of a round, if it had two)."""
        values = self.adjusted if adjusted else self.raw
        return {r: math.log(v) for r, v in zip(self.rounds, values, strict=True) if r > 0 and v > 0}


def adjust(observations: pd.DataFrame) -> tuple[pd.DataFrame, dict[tuple[str, str], float]]:
    """``observations`` (one row per value, or per process: group (the cell), interpreter,
    model, workers, mean (the observation), reference and, where recorded, wait and other) with
    ``x``, ``z`` (the second covariate: the wait's, or other work's) and ``adjusted``; and the
    reference's θ per (model, worker class)."""
    procs = observations.copy()
    ref = procs["reference"].where(procs["reference"] > 0)
    median = ref.groupby(procs["interpreter"], observed=True).transform("median")
    procs["x"] = np.log(ref / median).fillna(0.0)
    wait = procs["wait"] if "wait" in procs else pd.Series(math.nan, index=procs.index)
    other = procs["other"] if "other" in procs else pd.Series(math.nan, index=procs.index)
    # cells whose one worker runs in this process: a call's wait beyond the least its cell
    # ever waited (the hand-off between the caller and its one worker stays in the figure).
    # Pools' threads, and a process pool's parent and child, also wait for each other, by an
    # amount no run can tell from the machine's noise: the least of it moved between identical
    # cells enough to call twins different (results log, 2026-12-05). They take the share of
    # their CPUs other work used instead, as -log(1 - share): a pool that needs its CPUs' time
    # takes 1 / (1 - share) as long when others take that share of them. It says nothing of
    # the cell's own threads, so identical cells see the same spread of it; less its mean over
    # the run's cells of that execution model and worker class, so that a call without it (too
    # short to read, older results) counts as an average one: each cell's level stays that of
    # the run's average noise, as its raw figures are, never "a quiet machine's" for some cells
    # and not others.
    one_in_process = in_process(procs["model"], procs["workers"])
    wait = pd.to_numeric(wait, errors="coerce").where(one_in_process)
    z_wait = np.log1p(wait.clip(lower=0.0))
    z_wait = z_wait - z_wait.groupby(procs["group"]).transform("min")
    share = pd.to_numeric(other, errors="coerce").where(~one_in_process).clip(*OTHER_BOUNDS)
    z_other = -np.log1p(-share)
    key = procs["model"].astype(str) + "|" + np.where(procs["workers"] > 1, "several", "one")
    z_other = z_other - z_other.groupby(key).transform("mean")
    procs["z"] = z_wait.where(one_in_process, z_other).fillna(0.0)
    procs["y"] = np.log(procs["mean"].where(procs["mean"] > 0))
    procs["key"] = key
    # within-cell centred: the slopes say how a value follows the machine's speed and the wait
    centred = {c: procs[c] - procs.groupby("group")[c].transform("mean") for c in ("x", "z", "y")}
    df = procs.groupby("group")["x"].transform("size") - 1  # per process: (n_c - 1) / n_c summed
    share = df / (df + 1)

    def slope(index: Any) -> tuple[float, float] | None:
        if float(share[index].sum()) < MIN_DF:  # too few to estimate: a fitted θ would chase noise
            return None
        cx, cz, cy = (centred[c][index] for c in ("x", "z", "y"))
        return slopes(
            float((cx * cx).sum()),
            float((cx * cz).sum()),
            float((cz * cz).sum()),
            float((cx * cy).sum(min_count=1)),
            float((cz * cy).sum(min_count=1)),
        )

    # the fallback of a key short of data: its worker class over every model (one worker in the
    # process, one in a pool process, several), whose second covariate is the same
    one = np.where(one_in_process, "one", "one pooled")
    kind = pd.Series(np.where(procs["workers"] > 1, "several", one), index=procs.index)
    classes = {c: slope(i) for c, i in procs.groupby(kind, sort=False).groups.items()}
    by_key: dict[str, tuple[float, float]] = {}
    for key, index in procs.groupby("key", sort=False).groups.items():
        theta = slope(index)
        by_key[key] = theta if theta is not None else (classes.get(kind[index[0]]) or (0.0, 0.0))
    procs["theta"] = procs["key"].map({k: t[0] for k, t in by_key.items()}).astype(float)
    procs["theta_wait"] = procs["key"].map({k: t[1] for k, t in by_key.items()}).astype(float)
    thetas = {(model, kind): t[0] for key, t in by_key.items() for model, kind in [key.rsplit("|", 1)]}
    slowness = procs["theta"] * procs["x"] + procs["theta_wait"] * procs["z"]
    procs["adjusted"] = procs["mean"] * np.exp(-slowness)
    return procs.drop(columns=["y", "key"]), thetas


def slopes(sxx: float, sxz: float, szz: float, sxy: float, szy: float) -> tuple[float, float]:
    """(θ of the reference, θ of the wait): the least-squares slopes of y on x and z from their
    centred sums of squares and products, each clipped to THETA_BOUNDS (the other refitted
    given a clipped one). Without wait (szz 0) the reference's alone, as before the wait; without
    a reference's spread (sxx 0) the wait's alone."""

    def one(sxy_: float, sxx_: float) -> float:
        theta = sxy_ / sxx_ if sxx_ > 0 and math.isfinite(sxy_) else 0.0
        return float(np.clip(theta, *THETA_BOUNDS))

    if not math.isfinite(szy):
        szy = 0.0
    if not math.isfinite(sxy):
        sxy = 0.0
    if sxx <= 0.0:  # no reference (or a constant one): the wait alone
        return 0.0, one(szy, szz)
    det = sxx * szz - sxz * sxz
    if szz <= 0.0 or det <= 1e-9 * sxx * szz:  # no wait, or one that says what the reference does
        return one(sxy, sxx), 0.0
    tx = float(np.clip((szz * sxy - sxz * szy) / det, *THETA_BOUNDS))
    tz = one(szy - tx * sxz, szz)
    tx = one(sxy - tz * sxz, sxx)
    return tx, tz


def cell_series(procs: pd.DataFrame) -> dict[int, Series]:
    """Group -> its Series (``procs``: one row per process, sorted by group and run: group,
    round, mean, adjusted)."""
    groups = procs["group"].to_numpy()
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    bounds = [*starts[1:], len(groups)]
    rounds = procs["round"].to_numpy().tolist()
    raw = procs["mean"].to_numpy().tolist()
    adjusted = procs["adjusted"].to_numpy().tolist()
    return {
        int(groups[a]): Series(tuple(rounds[a:b]), tuple(raw[a:b]), tuple(adjusted[a:b]))
        for a, b in zip(starts.tolist(), bounds, strict=True)
    }
