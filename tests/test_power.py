"""What a run could find (reports/power.py): the chance a comparison finds a change, the smallest
change it finds 9 times in 10, the processes that would take, and what the page says of it."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from gilmatrix.reports.power import MOST, RunReach, chance, detectable, needed, reach, run_reach
from gilmatrix.reports.stats import trimmed, welch_from_stats


@pytest.mark.parametrize(
    ("s_a", "n_a", "s_b", "n_b", "change"),
    [
        (0.05, 10, 0.04, 10, 0.05),
        (0.10, 24, 0.03, 8, 0.05),
        (0.09, 30, 0.09, 30, 0.05),
        (0.02, 8, 0.02, 8, 0.02),
    ],
)
@pytest.mark.parametrize("trim", [True, False])
def test_the_chance_is_how_often_the_reports_test_finds_the_change(
    s_a: float, n_a: int, s_b: float, n_b: int, change: float, trim: bool
) -> None:
    """Simulated process means (normal, seeded) compared by the report's own test (Welch's, on
    trimmed means with ``trim``: Yuen's) at the 1% floor inside a run: the share of trials that
    call the change agrees within four binomial standard deviations with ``chance`` of the
    scatter the reach reads of such cells (the root mean square of the sd of their tested
    means: stats.trimmed, or the process means')."""

    def located(x: np.ndarray) -> tuple[float, float, float]:
        return trimmed(x) if trim else (float(x.mean()), float(x.std(ddof=1)), len(x) - 1.0)

    rng = np.random.default_rng(2026)
    trials = 3000
    found = 0
    sds: list[tuple[float, float]] = []
    for _ in range(trials):
        (ma, sa, da) = located(rng.normal(1.0 + change, s_a * (1.0 + change), n_a))
        (mb, sb, db) = located(rng.normal(1.0, s_b, n_b))
        cmp = welch_from_stats(ma, sa, n_a, mb, sb, n_b, 0.01, df_a=da, df_b=db)
        found += cmp.significant and cmp.ratio > 1.0
        sds.append((sa / ma, sb / mb))
    read_a, read_b = np.sqrt(np.mean(np.square(sds), axis=0))
    p = chance(float(read_a), n_a, float(read_b), n_b, change, trim)
    assert abs(found / trials - p) < 4 * math.sqrt(p * (1 - p) / trials) + 1e-9, (found / trials, p)


def test_the_detectable_change_is_found_9_times_in_10_and_shrinks_with_processes() -> None:
    for s_a, s_b, n in [(0.05, 0.04, 10), (0.1, 0.03, 24), (0.2, 0.2, 6)]:
        smallest = detectable(s_a, n, s_b, n)
        assert chance(s_a, n, s_b, n, smallest) == pytest.approx(0.9, abs=0.005)
        assert detectable(s_a, 2 * n, s_b, 2 * n) < smallest
    assert detectable(0.0, 10, 0.0, 10) == 0.01  # never below the 1% a change must exceed
    assert detectable(0.05, 1, 0.05, 10) == math.inf  # one process says nothing of its scatter


def test_needed_is_the_least_count_that_finds_the_change() -> None:
    for s_a, s_b, change in [(0.09, 0.09, 0.05), (0.04, 0.03, 0.05), (0.1, 0.02, 0.1)]:
        n = needed(s_a, s_b, change)
        assert detectable(s_a, n, s_b, n) <= change < detectable(s_a, n - 1, s_b, n - 1)
    # a pool against a pool, 9% scatter each (session 17): 73 on n - 1 degrees of freedom a side,
    # 74 on those of the processes a 20% trimmed mean keeps (45 of 73)
    assert needed(0.09, 0.09, 0.05) == 74
    assert needed(0.09, 0.09, 0.05, trim=False) == 73
    assert needed(2.0, 2.0, 0.05) == MOST + 1  # unreachable: "more than MOST"


def _cell(interpreter: str, cell: str, processes: int, scatter: float) -> dict[str, object]:
    workload, model, workers = cell.split("/")
    mean = 0.01 * (1 + int(workers))
    return {
        "interpreter": interpreter,
        "cell": cell,
        "workload": workload,
        "model": model,
        "workers": int(workers),
        "machine": "",
        "processes": processes,
        "mean": mean,
        "proc_sd": 3 * scatter * mean,  # the raw scatter: not what the report tests
        "adj_mean": mean,
        "adj_sd": scatter * mean,
    }


def test_a_runs_reach_splits_one_worker_cells_from_pools_and_prices_the_processes() -> None:
    """Two interpreters, crunch sequential, one thread and a pool of two threads, 8 processes
    each: the report's comparisons (gilmatrix.comparisons) are 4 of cells of one in-process
    worker and 3 with a pool, judged on the adjusted scatter; the minutes scale this run's
    measuring by the worker seconds the needed processes would take."""
    cells = pd.DataFrame(
        [
            _cell(i, c, 8, s)
            for i in ("3.13", "3.14")
            for c, s in (
                ("crunch/sequential/1", 0.03),
                ("crunch/threads/1", 0.03),
                ("crunch/threads/2", 0.09),
            )
        ]
    )
    kinds = {r.kind: r for r in reach(cells)}
    one, pools = kinds["one worker"], kinds["pools"]
    # one worker: threads/1 vs sequential on each, and each of the two one-worker cells
    # against the previous release; pools: threads/2 vs sequential on each, vs its previous
    assert (one.comparisons, pools.comparisons) == (4, 3)
    # two cells of one in-process worker are tested on their means (n - 1 degrees of freedom),
    # a pool on trimmed means (those of the processes kept)
    assert one.detectable == pytest.approx(detectable(0.03, 8, 0.03, 8, trim=False))
    assert one.detectable < detectable(0.03, 8, 0.03, 8)
    # the median of two pool-vs-sequential comparisons and one pool-vs-pool
    assert pools.detectable == pytest.approx(detectable(0.09, 8, 0.03, 8))
    assert one.needed == needed(0.03, 0.03, trim=False) and pools.needed == needed(0.09, 0.03)
    # every cell took 8 processes of 0.5 s, the run measured 60 s; the needed processes at the
    # same cost: sequential and threads/2 cells the pools' count, threads/1 the one worker's
    sampled = {
        (i, c): {"worker_seconds": [0.5] * 8}
        for i, c in zip(cells["interpreter"], cells["cell"], strict=True)
    }
    reached = run_reach(cells, {"rounds": [{"seconds": 30.0}, {"seconds": 30.0}]}, sampled)
    want = 2 * (pools.needed + one.needed + pools.needed) * 0.5
    assert reached.measured_minutes == 1.0
    assert reached.minutes_needed == pytest.approx(60.0 * want / (6 * 8 * 0.5) / 60.0)
    assert run_reach(cells, {}, sampled) == RunReach(reach(cells), None, None)
    # shards widen a run only where its budget stopped the cells, not where they reached the cap
    assert not reached.budgeted
    for stopped, budgeted in (("run-budget", True), ("budget", False), ("precision", False)):
        entries = {k: {**v, "stopped": stopped} for k, v in sampled.items()}
        assert run_reach(cells, {"rounds": [{"seconds": 60.0}]}, entries).budgeted is budgeted
