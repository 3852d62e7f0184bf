"""Comparisons against replicated baseline runs: the run-to-run component two unchanged runs
show is measured and added to every test, so that an unchanged re-run on a machine whose cells
move between runs is not called a change — and a real change still is.

The populations are simulated with a fixed seed (many cells, so each rate is a tight estimate)
from the model the statistics assume: a cell's mean in a run is its true time × (1 + u), u the
run's level for that cell (sd τ, fresh every run), plus the scatter of its own processes."""

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

CELLS = 300  # per execution model
PROCESSES = 12
PROCESS_SD = 0.03  # the scatter of process means, relative
TAU = {"threads": 0.03, "sequential": 0.0}  # run-to-run sd of a cell's mean, per model


def simulated_run(
    rng: np.random.Generator, true: pd.DataFrame, factor: pd.Series | None = None
) -> pd.DataFrame:
    rows = []
    for r in true.itertuples(index=False):
        level = 1.0 + rng.normal(0.0, TAU[r.executor])
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
                "workers": 2,
                "cell": f"w{i}/{executor}/2",
                "seconds": float(rng.uniform(0.005, 0.05)),
            }
            for executor in TAU
            for i in range(CELLS)
        ]
    )
    return rng, true


def rate(changes: pd.DataFrame, executor: str) -> float:
    part = changes[changes["executor"] == executor]
    return float(part["significant"].mean())


def test_two_baselines_measure_the_run_to_run_component(population) -> None:
    rng, true = population
    pooled = pool_baselines([simulated_run(rng, true), simulated_run(rng, true)])
    by_model = pooled.drop_duplicates("executor").set_index("executor")
    assert math.sqrt(by_model.loc["threads", "between"]) == pytest.approx(TAU["threads"], rel=0.2)
    assert by_model.loc["sequential", "between"] < 0.005**2  # none there: (close to) 0
    assert by_model.loc["threads", "between_df"] == CELLS  # cells x (k - 1)
    assert (pooled["runs"] == 2).all() and (pooled["processes"] == 2 * PROCESSES).all()


def test_an_unchanged_rerun_is_called_a_change_against_one_baseline_not_against_two(population) -> None:
    rng, true = population
    a, b, rerun = (simulated_run(rng, true) for _ in range(3))
    single = baseline_changes(rerun, a)
    replicated = replicated_changes(rerun, pool_baselines([a, b]))
    # one baseline cannot see the cells' 3% run-to-run movement: most of them are "changes"
    assert rate(single, "threads") > 0.3
    # two can: the unchanged re-run is called unchanged at about the test's 5%
    assert rate(replicated, "threads") <= 0.08
    # where there is no such movement, both are at the test's level
    assert rate(single, "sequential") <= 0.08 and rate(replicated, "sequential") <= 0.08


def test_a_real_change_is_still_found_against_two_baselines(population) -> None:
    rng, true = population
    a, b = simulated_run(rng, true), simulated_run(rng, true)
    slower = pd.Series(1.25, index=true["cell"])  # every cell 25% slower
    changes = replicated_changes(simulated_run(rng, true, slower), pool_baselines([a, b]), floor=0.02)
    found = changes[changes["change"] == "regression"]
    assert len(found) / len(changes) > 0.9
    # and its interval holds the true ratio about 95% of the time
    within = ((changes["ratio_low"] <= 1.25) & (changes["ratio_high"] >= 1.25)).mean()
    assert 0.9 <= within <= 0.99


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
