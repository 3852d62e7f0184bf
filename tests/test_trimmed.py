"""Analysis stage: two cells of one run with a pool on either side are tested on trimmed means
of their process means (Yuen's test), two of one in-process worker on their means (Welch's):
reports/stats.py ``trimmed``, ``location_stats``, ``pool_compared``, ``compare_cells``."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sst

from gilmatrix.reports.compare import version_changes
from gilmatrix.reports.power import chance
from gilmatrix.reports.sidebyside import Series
from gilmatrix.reports.stats import (
    compare_cells,
    kept,
    location_stats,
    pool_compared,
    trimmed,
    welch,
    welch_from_stats,
)


def row(values: list[float], **extra: object) -> SimpleNamespace:
    """A cell-table row of these adjusted process means, as cell_table makes it."""
    x = np.asarray(values, float)
    location, sd, df = trimmed(values)
    return SimpleNamespace(
        mean=float(x.mean()),
        proc_sd=float(x.std(ddof=1)),
        processes=len(x),
        adj_mean=float(x.mean()),
        adj_sd=float(x.std(ddof=1)),
        trim_mean=location,
        trim_sd=sd,
        trim_df=df,
        series=Series(tuple(range(1, len(x) + 1)), tuple(values), tuple(values)),
        **extra,
    )


@pytest.mark.parametrize("n_a,n_b", [(5, 5), (7, 12), (12, 31), (40, 9)])
def test_the_test_is_scipys_yuen_test(n_a: int, n_b: int) -> None:
    rng = np.random.default_rng(n_a * 100 + n_b)
    # heavy right tail, as processes hit by a burst of other work
    a = 1.0 + 0.02 * rng.standard_normal(n_a) + (rng.random(n_a) < 0.2) * rng.uniform(0.1, 0.5, n_a)
    b = 1.03 + 0.02 * rng.standard_normal(n_b) + (rng.random(n_b) < 0.2) * rng.uniform(0.1, 0.5, n_b)
    (ma, sa, da), (mb, sb, db) = trimmed(a), trimmed(b)
    ours = welch_from_stats(ma, sa, n_a, mb, sb, n_b, df_a=da, df_b=db)
    theirs = sst.ttest_ind(a, b, equal_var=False, trim=0.2)
    assert ours.p_value == pytest.approx(float(theirs.pvalue), rel=1e-9)
    assert ours.ratio == pytest.approx(float(sst.trim_mean(a, 0.2) / sst.trim_mean(b, 0.2)), rel=1e-12)


def test_a_hand_worked_trimmed_mean() -> None:
    # n 5: one value trimmed from each end; winsorized 2, 2, 3, 4, 4 (variance 1);
    # se² = (n - 1)·1 / (h·(h - 1)) = 4 / 6 on h - 1 = 2 degrees of freedom
    location, sd, df = trimmed([4.0, 1.0, 100.0, 3.0, 2.0])
    assert location == 3.0
    assert sd * sd / 5 == pytest.approx(4.0 / 6.0)
    assert df == 2.0
    assert [kept(n) for n in (2, 4, 5, 9, 10, 15, 40)] == [2, 4, 3, 7, 6, 9, 24]


@pytest.mark.parametrize("n", [2, 3, 4])
def test_below_five_processes_nothing_is_trimmed_the_test_is_welchs(n: int) -> None:
    a = [1.00, 1.07, 0.98, 1.12][:n]
    b = [1.10, 1.04, 1.16, 1.09][:n]
    location, sd, df = trimmed(a)
    assert location == pytest.approx(np.mean(a))
    assert sd == pytest.approx(np.std(a, ddof=1))
    assert df == n - 1
    ours, plain = compare_cells(row(a), row(b), 0.01), welch(a, b, 0.01)
    assert ours.p_value == pytest.approx(plain.p_value, rel=1e-12)
    assert (ours.ratio_low, ours.ratio_high) == pytest.approx((plain.ratio_low, plain.ratio_high), rel=1e-12)


def burst(base: float, hit: tuple[int, ...]) -> list[float]:
    """12 process means around ``base`` (±1%), those in ``hit`` slowed by a burst (+35-45%)."""
    wobble = [0.000, 0.008, -0.006, 0.004, -0.009, 0.002, 0.010, -0.003, 0.005, -0.007, 0.001, -0.004]
    return [base * (1 + w) * ((1.35 + 0.1 * (k % 2)) if k in hit else 1.0) for k, w in enumerate(wobble)]


def test_a_burst_in_a_few_processes_does_not_hide_a_five_percent_change() -> None:
    slower, before = row(burst(1.05, (3, 8))), row(burst(1.00, (5,)))
    found = compare_cells(slower, before, 0.01)
    assert found.significant and found.direction == "slower"
    assert found.ratio == pytest.approx(1.05, abs=0.01)
    # Welch's test of the same adjusted means follows the bursts: no change found
    on_means = welch_from_stats(slower.adj_mean, slower.adj_sd, 12, before.adj_mean, before.adj_sd, 12, 0.01)
    assert not on_means.significant


def test_twins_hit_by_different_bursts_stay_a_tie() -> None:
    a, b = burst(1.0, (1, 6)), burst(1.0, (9,))
    found = compare_cells(row(a), row(b), 0.01)
    assert not found.significant
    assert found.ratio_low < 1.0 < found.ratio_high
    assert found.ratio == pytest.approx(1.0, abs=0.005)  # the bursts trimmed away
    assert np.mean(a) / np.mean(b) > 1.02  # where the means stand apart


def test_a_row_without_trimmed_figures_is_tested_on_its_adjusted_or_raw_means() -> None:
    old = SimpleNamespace(mean=1.0, proc_sd=0.1, processes=6, adj_mean=0.9, adj_sd=0.05)
    assert location_stats(old) == (0.9, 0.05, 5.0)
    raw = SimpleNamespace(mean=1.0, proc_sd=0.1, processes=6)
    assert location_stats(raw) == (1.0, 0.1, 5.0)
    nan = SimpleNamespace(mean=1.0, proc_sd=0.1, processes=6, trim_mean=math.nan, trim_sd=0.1, trim_df=3.0)
    assert location_stats(nan) == (1.0, 0.1, 5.0)


def test_two_cells_of_one_in_process_worker_are_tested_on_their_means() -> None:
    """Between two cells of one in-process worker the report tests their adjusted means
    (Welch's); with a pool on either side (a process pool of one too), the trimmed means."""
    slower, before = burst(1.05, (3, 8)), burst(1.00, (5,))
    sequential = row(before, model="sequential", workers=1)
    one = compare_cells(row(slower, model="threads", workers=1), sequential, 0.01)
    on_means = welch(slower, before, 0.01)
    assert one.p_value == pytest.approx(on_means.p_value, rel=1e-12)
    assert one.ratio == pytest.approx(on_means.ratio, rel=1e-12)
    assert not one.significant  # the means follow the bursts
    for model, workers in (("threads", 2), ("processes", 1)):
        pool = compare_cells(row(slower, model=model, workers=workers), sequential, 0.01)
        assert pool.significant and pool.ratio == pytest.approx(1.05, abs=0.01)


def test_a_pool_on_either_side_makes_a_comparison_of_pools() -> None:
    def cell(model: str, workers: int) -> SimpleNamespace:
        return SimpleNamespace(model=model, workers=workers)

    one = [cell("sequential", 1), cell("threads", 1), cell("asyncio", 1), cell("interpreters", 1)]
    assert not any(pool_compared(a, b) for a in one for b in one)
    for pool in (cell("threads", 2), cell("processes", 1), cell("asyncio", 4)):
        assert pool_compared(pool, one[0]) and pool_compared(one[1], pool) and pool_compared(pool, pool)
    assert pool_compared(SimpleNamespace(), one[0])  # a row that does not say: trimmed


@pytest.mark.parametrize(
    ("executor", "workers", "change"), [("threads", 2, "regression"), ("threads", 1, "no significant change")]
)
def test_version_changes_test_what_compare_cells_tests(executor: str, workers: int, change: str) -> None:
    new, old = burst(1.05, (3, 8)), burst(1.00, (5,))

    def figures(values: list[float]) -> dict[str, object]:
        return {k: v for k, v in vars(row(values, model=executor)).items() if k != "series"}

    cells = pd.DataFrame(
        [
            {"interpreter": interp, "workload": "crunch", "executor": executor, "workers": workers,
             "cell": f"{executor}/{workers}", **figures(values)}
            for interp, values in (("3.13", old), ("3.14", new))
        ]
    )  # fmt: skip
    found = version_changes(cells, 0.01).iloc[0]
    direct = compare_cells(
        row(new, model=executor, workers=workers), row(old, model=executor, workers=workers), 0.01
    )
    assert found["p_value"] == pytest.approx(direct.p_value, rel=1e-12)
    assert found["ratio"] == pytest.approx(direct.ratio, rel=1e-12)
    assert found["change"] == change


def test_the_reach_counts_the_degrees_of_freedom_the_trimmed_mean_keeps() -> None:
    # 10 processes a side keep 6: the test reads t on ~10 degrees of freedom, not ~18
    s = 0.03
    se = s * math.sqrt(2 / 10)
    on_kept = float(sst.t.sf(sst.t.ppf(0.975, 10) - math.log(1.05) / se, 10))
    assert chance(s, 10, s, 10) == pytest.approx(on_kept, rel=1e-6)
