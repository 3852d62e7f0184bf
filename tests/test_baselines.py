"""Comparisons against replicated baseline runs: the run-to-run component unchanged runs show
is measured and added to every test, so that an unchanged re-run on a machine whose cells move
between runs is not called a change — and a real change still is.

The populations are simulated with a fixed seed (many groups, so each rate is a tight estimate)
from the model the statistics assume, the one measured on this project's 2-core VM (five
unchanged runs of 20 cells): in every run, all the cells of a group (a workload under one
execution model: its worker counts) shift by one common factor (sd τ_g), each cell by a smaller
part of its own (sd τ_r), plus the scatter of its own processes."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from devtools.synthetic import SyntheticRun, write_run
from gilmatrix.cli import main
from gilmatrix.reports import build_report
from gilmatrix.reports.compare import baseline_changes, replicated_changes
from gilmatrix.reports.stats import pool_baselines

GROUPS = 200  # workloads per execution model
WORKERS = (1, 2, 4)  # a group's cells
PROCESSES = 12
PROCESS_SD = 0.03  # the scatter of process means, relative
SHIFT = {"threads": 0.04, "sequential": 0.0}  # run-to-run sd of a group's common shift
OWN = {"threads": 0.01, "sequential": 0.0}  # and of each cell's own part


def simulated_run(
    rng: np.random.Generator, true: pd.DataFrame, factor: pd.Series | None = None
) -> pd.DataFrame:
    shifts = {g: rng.normal(0.0, SHIFT[g[1]]) for g in true[["workload", "executor"]].itertuples(index=False)}
    rows = []
    for r in true.itertuples(index=False):
        level = 1.0 + shifts[(r.workload, r.executor)] + rng.normal(0.0, OWN[r.executor])
        scale = r.seconds * level * (1.0 if factor is None else float(factor.get(r.cell, 1.0)))
        means = scale * (1.0 + rng.normal(0.0, PROCESS_SD, PROCESSES))
        rows.append(
            {
                "interpreter": "3.13",
                "workload": r.workload,
                "executor": r.executor,
                "workers": r.workers,
                "cell": r.cell,
                "mean": float(means.mean()),
                "proc_sd": float(means.std(ddof=1)),
                "processes": PROCESSES,
                "drift": 0.0,
            }
        )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def population() -> tuple[np.random.Generator, pd.DataFrame]:
    rng = np.random.default_rng(20261202)
    true = pd.DataFrame(
        [
            {
                "workload": f"w{i}",
                "executor": executor,
                "workers": workers,
                "cell": f"w{i}/{executor}/{workers}",
                "seconds": float(rng.uniform(0.005, 0.05)),
            }
            for executor in SHIFT
            for i in range(GROUPS)
            for workers in WORKERS
        ]
    )
    return rng, true


def rate(changes: pd.DataFrame, executor: str) -> float:
    part = changes[changes["executor"] == executor]
    return float(part["significant"].mean())


def runs(rng: np.random.Generator, true: pd.DataFrame, k: int) -> list[pd.DataFrame]:
    return [simulated_run(rng, true) for _ in range(k)]


def test_baselines_measure_the_shift_a_group_shares_and_each_cells_own(population) -> None:
    rng, true = population
    pooled = pool_baselines(runs(rng, true, 5))
    groups = pooled.drop_duplicates(["workload", "executor"]).set_index("executor")
    threads, seq = groups.loc["threads"], groups.loc["sequential"]
    # over 200 groups, the estimates average to the components simulated
    assert math.sqrt(threads["shift"].mean()) == pytest.approx(SHIFT["threads"], rel=0.15)
    assert math.sqrt(threads["own"].mean()) == pytest.approx(OWN["threads"], rel=0.35)
    # a test adds the shift as measured, its noise not subtracted (never less than the estimate)
    assert (threads["between"] >= threads["shift"] + threads["own"]).all()
    assert math.sqrt((seq["shift"] + seq["own"]).mean()) < 0.005  # none there: (close to) 0
    # the shift is one draw per run, whatever the number of cells that share it: its degrees of
    # freedom are about k - 1 = 4 (a little more from each cell's own part, 8 of them), not
    # cells x (k - 1) = 12
    assert 3.0 <= threads["between_df"].median() <= 6.0
    assert (pooled["runs"] == 5).all() and (pooled["processes"] == 5 * PROCESSES).all()


def test_an_unchanged_rerun_is_called_a_change_against_one_baseline_not_against_several(population) -> None:
    rng, true = population
    single = baseline_changes(simulated_run(rng, true), simulated_run(rng, true))
    # one baseline cannot see the cells' run-to-run movement: most of them are "changes"
    assert rate(single, "threads") > 0.3
    called = {}
    for k in (2, 4):
        rerun, pooled = simulated_run(rng, true), pool_baselines(runs(rng, true, k))
        called[k] = rate(replicated_changes(rerun, pooled), "threads")
        if k == 2:
            # the shift a group shares is one draw per run: counting a group's 3 cells as 3
            # draws of it (degrees of freedom cells x (k - 1)) calls many more of them changes
            overstated = pooled.assign(between_df=pooled["between_df"] * len(WORKERS))
            assert rate(replicated_changes(rerun, overstated), "threads") > 1.5 * called[k]
    # several baselines can: an unchanged re-run is called unchanged at about the test's 5% with
    # 4 of them; with 2, a little above it (the shift is then known to 1 degree of freedom, and
    # the report says so)
    assert called[4] <= 0.07 and called[2] <= 0.10, called
    # where there is no such movement, both are at the test's level
    assert rate(single, "sequential") <= 0.08


def test_a_real_change_is_still_found_against_four_baselines(population) -> None:
    rng, true = population
    slower = pd.Series(1.25, index=true["cell"])  # every cell 25% slower
    changes = replicated_changes(
        simulated_run(rng, true, slower), pool_baselines(runs(rng, true, 4)), floor=0.02
    )
    found = changes[changes["change"] == "regression"]
    assert len(found) / len(changes) > 0.9
    # and its interval holds the true ratio about 95% of the time
    within = ((changes["ratio_low"] <= 1.25) & (changes["ratio_high"] >= 1.25)).mean()
    assert 0.9 <= within <= 0.995


def test_a_cell_missing_from_one_baseline_is_not_compared(population) -> None:
    rng, true = population
    a, b = simulated_run(rng, true), simulated_run(rng, true)
    pooled = pool_baselines([a, b.iloc[1:]])
    assert len(pooled) == len(a) - 1 and a.iloc[0]["cell"] not in set(pooled["cell"])


def test_report_with_two_baselines_says_what_it_measured(tmp_path: Path) -> None:
    spec = dict(interpreters=("3.12", "3.13"), runs=4)
    new = write_run(tmp_path / "new", SyntheticRun(**spec, seed=3, run_id="new"))
    base1 = write_run(tmp_path / "a", SyntheticRun(**spec, seed=1, run_id="base-a"))
    base2 = write_run(tmp_path / "b", SyntheticRun(**spec, seed=2, run_id="base-b"))
    html = build_report(new, tmp_path / "out", baseline=[base1, base2], chart_images=False).read_text(
        encoding="utf-8"
    )
    assert "Against the baseline run base-a, base-b" in html
    assert "2 baseline runs, pooled" in html and "run-to-run component" in html
    # two runs know a shift common to a group to 1 degree of freedom: the page says so
    assert "with 1 degree of freedom" in html and "4 or more baseline runs" in html
    one = build_report(new, tmp_path / "out1", baseline=base1, chart_images=False).read_text(encoding="utf-8")
    assert "One baseline run" in one and "--baseline A --baseline A2" in one
    # the command line takes --baseline twice
    assert (
        main(
            [
                "report",
                str(new),
                "--out",
                str(tmp_path / "cli"),
                "--baseline",
                str(base1),
                "--baseline",
                str(base2),
                "--no-chart-images",
            ]
        )
        == 0
    )
    summary = (tmp_path / "cli" / "report" / "summary.md").read_text(encoding="utf-8")
    assert "Against baseline base-a, base-b" in summary and "2 baseline runs, pooled" in summary
