"""The reference covariate and round pairs (reports/sidebyside.py, stats.paired), and the round
order that puts compared cells side by side (run.schedule.round_order with blocks)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from gilmatrix.reports.sidebyside import MIN_DF, THETA_BOUNDS, Series, adjust, slopes
from gilmatrix.reports.stats import compare_cells, paired, welch
from gilmatrix.run.schedule import CellState, round_order


def processes(
    speed: np.ndarray, base: float, noise: np.ndarray, cells: int, model: str = "threads"
) -> pd.DataFrame:
    """``cells`` cells of one interpreter, each process' mean = base × the machine's slowness ×
    its own noise, and its reference = 1 ms × the same slowness."""
    n = len(speed) // cells
    return pd.DataFrame(
        {
            "group": np.repeat(np.arange(cells), n),
            "interpreter": "3.13",
            "model": "threads",
            "workers": 2,
            "mean": base * speed * noise,
            "reference": 1e-3 * speed,
            "round": np.tile(np.arange(1, n + 1), cells),
        }
    )


def test_the_slope_is_measured_and_takes_the_machines_speed_out() -> None:
    rng = np.random.default_rng(1)
    speed = np.exp(rng.normal(0.0, 0.15, 200))  # a noisy machine: 15% between processes
    procs = processes(speed, 0.02, np.exp(rng.normal(0.0, 0.01, 200)), cells=10)
    adjusted, thetas = adjust(procs)
    assert thetas[("threads", "several")] == pytest.approx(1.0, abs=0.05)
    raw_sd = np.log(procs["mean"]).groupby(procs["group"]).std().median()
    adj_sd = np.log(adjusted["adjusted"]).groupby(procs["group"]).std().median()
    assert adj_sd < raw_sd / 5  # what is left is the cells' own 1%


def test_a_reference_that_says_nothing_leaves_the_figures_nearly_alone() -> None:
    rng = np.random.default_rng(2)
    procs = processes(np.ones(200), 0.02, np.exp(rng.normal(0.0, 0.05, 200)), cells=10)
    procs["reference"] = 1e-3 * np.exp(rng.normal(0.0, 0.1, 200))  # unrelated to the cells' noise
    _, thetas = adjust(procs)
    assert thetas[("threads", "several")] < 0.2


def test_too_few_processes_to_estimate_a_slope_change_nothing() -> None:
    rng = np.random.default_rng(3)
    speed = np.exp(rng.normal(0.0, 0.2, 8))
    procs = processes(speed, 0.02, np.ones(8), cells=2)  # 2 cells x 4: 6 residual df < MIN_DF
    assert MIN_DF > 6
    adjusted, thetas = adjust(procs)
    assert thetas[("threads", "several")] == 0.0
    assert np.allclose(adjusted["adjusted"], procs["mean"])


def test_results_without_references_are_left_as_measured() -> None:
    procs = processes(np.ones(40), 0.02, np.linspace(0.9, 1.1, 40), cells=4)
    procs["reference"] = math.nan
    adjusted, _ = adjust(procs)
    assert np.allclose(adjusted["adjusted"], procs["mean"])


def waiting(rng: np.random.Generator, own_wait: float, cells: int = 10, n: int = 20) -> pd.DataFrame:
    """One-thread cells whose calls lost a random share to other work (run-queue wait): each
    call's time = its work x (1 + wait / cpu), the work 1% noisy; every call of a cell also
    waits ``own_wait`` that is the cell's own (a pool's hand-offs)."""
    lost = np.where(rng.random(cells * n) < 0.5, 0.0, rng.uniform(0.0, 1.0, cells * n))  # bursts
    work = 0.02 * np.exp(rng.normal(0.0, 0.01, cells * n))
    procs = processes(np.ones(cells * n), 0.02, np.ones(cells * n), cells=cells)
    procs["workers"], procs["model"] = 1, "sequential"
    procs["wait"] = own_wait + lost
    procs["mean"] = work * (1.0 + procs["wait"])
    return procs


def test_the_run_queue_wait_is_a_second_covariate_with_its_own_slope() -> None:
    procs = waiting(np.random.default_rng(5), own_wait=0.0)
    adjusted, _ = adjust(procs)
    assert adjusted["theta_wait"].iloc[0] == pytest.approx(1.0, abs=0.05)
    raw_sd = np.log(procs["mean"]).groupby(procs["group"]).std().median()
    adj_sd = np.log(adjusted["adjusted"]).groupby(procs["group"]).std().median()
    assert raw_sd > 0.1 and adj_sd < 0.02  # the bursts are out, the work's 1% is left
    assert np.exp(np.log(adjusted["adjusted"]).mean()) == pytest.approx(0.02, rel=0.01)


def test_a_cells_own_waiting_stays_in_its_figure() -> None:
    """Only the wait beyond the least the cell ever waited is taken out: a cell whose threads
    always wait 30% for each other keeps that 30% (it is how the cell behaves)."""
    own = waiting(np.random.default_rng(6), own_wait=0.3)
    adjusted, _ = adjust(own)
    level = np.exp(np.log(adjusted["adjusted"]).mean())
    assert level == pytest.approx(0.02 * 1.3, rel=0.02)


def test_results_without_waits_are_adjusted_as_before() -> None:
    rng = np.random.default_rng(1)
    speed = np.exp(rng.normal(0.0, 0.15, 200))
    procs = processes(speed, 0.02, np.exp(rng.normal(0.0, 0.01, 200)), cells=10)
    before, thetas = adjust(procs)
    procs["wait"] = math.nan
    after, thetas_nan = adjust(procs)
    assert thetas_nan == thetas
    assert np.allclose(after["adjusted"], before["adjusted"])
    assert (after["theta_wait"] == 0.0).all()


def test_pools_and_process_pools_do_not_take_the_wait() -> None:
    """A pool's threads, or a process pool's parent and children, wait for each other: their
    wait is recorded but not used (see adjust), whatever the build's GIL."""
    pools = [("threads", 2, "true"), ("threads", 2, "false"), ("interpreters", 2, "true")]
    pools.append(("processes", 1, "false"))
    for model, workers, gil in pools:
        procs = waiting(np.random.default_rng(7), own_wait=0.0)
        procs["model"], procs["workers"], procs["gil"] = model, workers, gil
        adjusted, _ = adjust(procs)
        without, _ = adjust(procs.drop(columns=["wait"]))
        assert (adjusted["theta_wait"] == 0.0).all() or (adjusted["z"] == 0.0).all()
        assert np.allclose(adjusted["adjusted"], without["adjusted"])


def test_slopes_are_clipped_and_the_other_refitted() -> None:
    assert slopes(1.0, 0.0, 1.0, 0.5, 0.7) == pytest.approx((0.5, 0.7))  # independent covariates
    assert slopes(1.0, 0.0, 0.0, 0.5, 0.0) == pytest.approx((0.5, 0.0))  # no wait: the reference alone
    assert slopes(0.0, 0.0, 2.0, 0.0, 1.0) == pytest.approx((0.0, 0.5))  # no reference: the wait alone
    tx, tz = slopes(1.0, 0.0, 1.0, -3.0, 5.0)
    assert (tx, tz) == (THETA_BOUNDS[0], THETA_BOUNDS[1])
    # correlated covariates, the reference's joint slope negative: clipped to 0, the wait's
    # refitted alone (szy / szz) instead of the joint value
    tx, tz = slopes(1.0, 0.9, 1.0, 0.5, 1.0)
    assert tx == 0.0 and tz == pytest.approx(1.0)


def test_compare_cells_uses_the_adjusted_means_when_a_row_has_them() -> None:
    class Row:
        def __init__(self, mean: float, sd: float, adj: float | None) -> None:
            self.mean, self.proc_sd, self.processes = mean, sd, 8
            if adj is not None:
                self.adj_mean, self.adj_sd = adj, sd / 10

    raw = compare_cells(Row(1.1, 0.2, None), Row(1.0, 0.2, None))
    adj = compare_cells(Row(1.1, 0.2, 1.05), Row(1.0, 0.2, 1.0))
    assert raw.ratio == pytest.approx(1.1) and not raw.significant
    assert adj.ratio == pytest.approx(1.05) and adj.significant
    assert adj.ratio_high - adj.ratio_low < raw.ratio_high - raw.ratio_low


def test_round_pairs_cancel_what_both_cells_felt_in_a_round() -> None:
    rng = np.random.default_rng(4)
    rounds = tuple(range(1, 11))
    shared = np.exp(rng.normal(0.0, 0.2, 10))  # each round's machine, felt by both cells
    a = Series(rounds, tuple(1.05 * shared * np.exp(rng.normal(0, 0.005, 10))), ())
    b = Series(rounds, tuple(1.00 * shared * np.exp(rng.normal(0, 0.005, 10))), ())
    a = Series(a.rounds, a.raw, a.raw)
    b = Series(b.rounds, b.raw, b.raw)
    cmp = paired(a, b)
    assert cmp is not None and cmp.significant and cmp.ratio == pytest.approx(1.05, rel=0.01)
    unpaired = welch(a.raw, b.raw)
    assert not unpaired.significant  # the rounds' 20% hides it from an unpaired test
    assert cmp.ratio_low > 1.03 and cmp.ratio_high < 1.07


def test_round_pairs_need_common_rounds() -> None:
    a = Series((1, 2, 3), (1.0, 1.1, 0.9), (1.0, 1.1, 0.9))
    b = Series((3, 4, 5), (1.0, 1.1, 0.9), (1.0, 1.1, 0.9))
    assert paired(a, b) is None


def test_blocks_keep_each_workloads_cells_together_in_a_seeded_shuffle() -> None:
    cells = [
        CellState(interp, f"{workload}/{executor}/{workers}")
        for interp in ("3.13", "3.14")
        for workload in ("crunch", "fetch", "mixed")
        for executor in ("sequential", "threads")
        for workers in (1, 2)
    ]

    def block(state: CellState) -> str:
        return state.cell_id.split("/")[0]

    order = round_order(cells, 7, 1, block)
    assert sorted(s.key for s in order) == sorted(s.key for s in cells)
    names = [block(s) for s in order]
    runs = [name for i, name in enumerate(names) if i == 0 or names[i - 1] != name]
    assert sorted(runs) == ["crunch", "fetch", "mixed"]  # each block in one stretch
    assert {s.interpreter for s in order[:8]} == {"3.13", "3.14"}  # interpreters mixed in a block
    assert [s.key for s in order] == [s.key for s in round_order(list(reversed(cells)), 7, 1, block)]
    others = [[s.key for s in round_order(cells, 7, n, block)] for n in range(2, 6)]
    assert any(o != [s.key for s in order] for o in others)


def crowded(rng: np.random.Generator, model: str, workers: int, cells: int = 10, n: int = 20) -> pd.DataFrame:
    """Pool cells on a machine whose other work took a bursty share of their CPUs: each call
    needs its CPUs 0.02 s, so it lasts 0.02 / (1 - share), its work 1% noisy; its threads also
    wait for each other a random amount that is theirs (recorded as wait, never to be used)."""
    share = np.where(rng.random(cells * n) < 0.5, 0.0, rng.uniform(0.0, 0.6, cells * n))
    procs = processes(np.ones(cells * n), 0.02, np.ones(cells * n), cells=cells)
    procs["model"], procs["workers"] = model, workers
    procs["mean"] = 0.02 * np.exp(rng.normal(0.0, 0.01, cells * n)) / (1.0 - share)
    procs["other"] = share + rng.uniform(-0.05, 0.05, cells * n)  # a clock tick's jitter
    procs["wait"] = rng.uniform(0.0, 2.0, cells * n)
    return procs


@pytest.mark.parametrize(("model", "workers"), [("threads", 2), ("interpreters", 4), ("processes", 1)])
def test_pools_take_other_works_share_of_their_cpus_out(model: str, workers: int) -> None:
    procs = crowded(np.random.default_rng(8), model, workers)
    adjusted, _ = adjust(procs)
    assert adjusted["theta_wait"].iloc[0] == pytest.approx(1.0, abs=0.1)
    raw_sd = np.log(procs["mean"]).groupby(procs["group"]).std().median()
    adj_sd = np.log(adjusted["adjusted"]).groupby(procs["group"]).std().median()
    assert raw_sd > 0.15 and adj_sd < 0.04  # the bursts out; the work's 1% and the jitter left
    # the level stays the run's average one, as the raw figures' (not a quiet machine's)
    assert np.log(adjusted["adjusted"]).mean() == pytest.approx(np.log(procs["mean"]).mean(), abs=0.01)
    assert np.allclose(adjust(procs.drop(columns=["wait"]))[0]["adjusted"], adjusted["adjusted"])


def test_one_worker_in_the_process_takes_the_wait_not_other_works_share() -> None:
    procs = waiting(np.random.default_rng(9), own_wait=0.0)
    adjusted, _ = adjust(procs)
    procs["other"] = np.random.default_rng(10).uniform(0.0, 0.9, len(procs))
    with_other, _ = adjust(procs)
    assert np.allclose(with_other["adjusted"], adjusted["adjusted"])


def test_a_cell_whose_calls_lack_other_works_share_is_not_moved_apart_from_its_twin() -> None:
    """Calls too short to read the share (or older results) count as average ones: a cell
    without it keeps its raw level, and its twin with it lands on the same level."""
    procs = crowded(np.random.default_rng(11), "processes", 2, cells=10, n=40)
    procs.loc[procs["group"] == 0, "other"] = math.nan  # cell 0: none recorded
    adjusted, _ = adjust(procs)
    level = np.log(adjusted["adjusted"]).groupby(procs["group"]).mean()
    assert level[0] == pytest.approx(np.log(procs["mean"][procs["group"] == 0]).mean())
    assert abs(level[0] - level[1:].mean()) < 0.05  # its twins: the same work, the same noise


def test_the_report_leaves_other_works_share_out_unless_asked() -> None:
    """The report's cell table adjusts by the reference and the wait; other work's share is a
    study's option (cell_table(others=True)): with one slope per execution model it put noise
    into pools that do not need their CPUs (results log, session 16)."""
    from gilmatrix.reports.results import FRAME_COLUMNS
    from gilmatrix.reports.stats import cell_table

    rng = np.random.default_rng(12)
    fixed = {"workload": "crunch", "kind": "cpu", "executor": "threads", "workers": 2, "tasks": 4}
    fixed |= {"cell": "crunch/threads/2", "model": "threads", "free_threaded": False, "gil": "true"}
    rows = []
    for interpreter in ("3.10", "3.11", "3.12", "3.13"):  # four cells, as many slopes' data
        for run in range(6):
            share = rng.uniform(0.0, 0.6)  # other work's share of the CPUs, process by process
            for _ in range(5):
                value = 0.02 / (1.0 - share) * math.exp(rng.normal(0.0, 0.01))
                row = fixed | {"interpreter": interpreter, "run": run, "value": value, "loops": 1}
                rows.append(row | {"reference": 1e-3, "wait": math.nan, "other": share, "round": 0})
    frame = pd.DataFrame(rows).reindex(columns=list(FRAME_COLUMNS))
    text = [
        "params",
        "gil_reenabled_by",
        "start_method",
        "async_mode",
        "pool_in_timing",
        "machine",
        "cpu_class",
    ]
    frame[text] = ""
    report = cell_table(frame)
    assert np.allclose(report["adj_sd"], report["proc_sd"])  # nothing to take out but the share
    study = cell_table(frame, others=True)
    assert (study["adj_sd"] < 0.3 * study["proc_sd"]).all()
