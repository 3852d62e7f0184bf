"""The schedule: round order, when a cell has been measured enough, the noise sentinels' verdict
on a window, the noise floor — and, for real, a run whose worker processes are interleaved
across cells and interpreters, round by round, and a resumed run that keeps the processes a
killed one had finished."""

from __future__ import annotations

import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import pyperf
import pytest
from scipy import stats

from gilmatrix.harness.contract import Status
from gilmatrix.run import schedule
from gilmatrix.run.estimate import needed_processes
from gilmatrix.run.schedule import CellState, NoiseMonitor, Reading, Sampling, Window, round_order
from tests.conftest import ROOT, RUNNING_ID, gilmatrix, host_interpreters, local_run, small_matrix


def states(n: int) -> list[CellState]:
    return [CellState("3.13", f"crunch/threads/{i}") for i in range(n)]


def test_round_order_is_a_seeded_shuffle_that_changes_every_round() -> None:
    cells = states(30)
    first = [c.cell_id for c in round_order(cells, 7, 1)]
    assert sorted(first) == sorted(c.cell_id for c in cells)
    assert first == [c.cell_id for c in round_order(list(reversed(cells)), 7, 1)]  # seeded
    assert first != [c.cell_id for c in round_order(cells, 7, 2)]
    assert first != [c.cell_id for c in round_order(cells, 8, 1)]


def test_relative_precision_is_the_t_interval_of_the_process_means() -> None:
    means = [1.0, 1.02, 0.98, 1.01]
    sd = stats.tstd(means)
    expected = stats.t.ppf(0.975, 3) * sd / math.sqrt(4) / (sum(means) / 4)
    assert schedule.relative_precision(means) == pytest.approx(expected)
    assert schedule.relative_precision([1.0]) is None


def test_fixed_sampling_stops_after_its_processes() -> None:
    fixed = Sampling(processes=3)
    assert fixed.stop([1.0, 1.0], 1.0) is None
    assert fixed.stop([1.0, 1.0, 1.0], 1.0) == "fixed"


def test_adaptive_sampling_stops_precise_cells_early_and_noisy_ones_at_the_budget() -> None:
    policy = Sampling(processes=3, target=0.02, min_processes=3, max_processes=6, max_seconds=10)
    assert policy.stop([1.0, 1.001], 0.1) is None  # below min_processes, however tight
    assert policy.stop([1.0, 1.001, 0.999], 0.1) == "precision"
    noisy = [1.0, 1.3, 0.8, 1.2]
    assert policy.stop(noisy, 0.1) is None
    assert policy.stop([*noisy, 0.9, 1.1], 0.1) == "budget"  # max_processes
    assert policy.stop(noisy, 10.0) == "budget"  # max_seconds of worker time


def test_a_cell_that_looks_quieter_than_its_model_is_pooled_with_the_typical_scatter() -> None:
    policy = Sampling(processes=4, target=0.02, min_processes=4, max_processes=40)
    lucky = [1.0, 1.01, 0.99, 1.005]  # ±1.2% from 4 processes: within the target on its own
    assert policy.stop(lucky, 1.0) == "precision"
    # its execution model's cells scatter by 5% in this run: four quiet processes are luck
    assert policy.stop(lucky, 1.0, typical=0.05) is None
    pooled = schedule.pooled_precision(lucky, 0.05)
    s = stats.tstd(lucky) / statistics.fmean(lucky)
    expected = stats.t.ppf(0.975, 3) * math.sqrt((3 * s * s + 4 * 0.05**2) / 7) / 2
    assert pooled == pytest.approx(expected)
    # a cell noisier than typical keeps its own, wider interval: pooling never narrows it
    noisy = [1.0, 1.2, 0.8, 1.1]
    assert schedule.pooled_precision(noisy, 0.01) == schedule.relative_precision(noisy)
    # with more processes its own scatter wins: 30 quiet processes stop despite the 5%
    many = [1.0 + 0.01 * ((i % 5) - 2) for i in range(30)]
    assert policy.stop(many, 1.0, typical=0.05) == "precision"


def cell(interp: str, cell_id: str, means: list[float], status: str = Status.PENDING) -> CellState:
    return CellState(interp, cell_id, means=means, status=status)


def test_the_typical_scatter_is_the_other_cells_of_its_interpreter_and_execution_model() -> None:
    cells = [
        cell("3.13", "crunch/processes/2", [1.0, 1.1, 0.9]),  # 10%
        cell("3.13", "fetch/processes/4", [1.0, 1.2, 0.8]),  # 20%
        cell("3.13", "mixed/processes/1", [1.0, 1.3, 0.7, 1.0]),  # 24.5%, 3 degrees of freedom
        cell("3.13", "crunch/threads/2", [1.0, 1.01]),  # too few processes to show a scatter
        cell("3.13", "crunch/sequential/1", [1.0, 1.01, 0.99]),  # alone in its model
        cell("3.14", "crunch/processes/2", [1.0, 1.02, 0.98]),
        cell("3.14", "fetch/processes/2", [1.0, 1.04, 0.96]),
    ]
    typical = schedule.typical_scatter(cells)

    def scatter(means: list[float]) -> float:
        return statistics.stdev(means) / statistics.fmean(means)

    # pooled as variances, by degrees of freedom, over the *other* cells: never the cell's own
    s = [scatter(c.means) for c in cells[:3]]
    assert typical[("3.13", "crunch/processes/2")] == pytest.approx(
        math.sqrt((2 * s[1] ** 2 + 3 * s[2] ** 2) / 5)
    )
    assert typical[("3.13", "mixed/processes/1")] == pytest.approx(math.sqrt((s[0] ** 2 + s[1] ** 2) / 2))
    # one other cell, and no more to come: that one's
    assert typical[("3.14", "crunch/processes/2")] == pytest.approx(0.04)
    assert typical[("3.14", "fetch/processes/2")] == pytest.approx(0.02)
    # alone in its model (with 3 processes or not): nothing to pool with
    assert typical[("3.13", "crunch/sequential/1")] is None
    assert typical[("3.13", "crunch/threads/2")] is None
    # a cell under 3 processes is given its model's typical all the same
    more = [*cells, cell("3.14", "mixed/processes/1", [1.0])]
    assert schedule.typical_scatter(more)[("3.14", "mixed/processes/1")] == pytest.approx(
        math.sqrt((0.02**2 + 0.04**2) / 2)
    )
    assert schedule.executor_of("my_module/interpreters/4") == "interpreters"


def test_a_cell_waits_for_its_models_other_cells_to_show_their_scatter() -> None:
    # the first rounds of a busy run (stored run, session 18, seed 53, round 5; means in ms):
    # crunch/asyncio/1 had 5 processes at 1.2% while its model's other cells had 3 or fewer
    # (the others' set aside in disturbed windows); the median of the three that had 3 was
    # 1.1% and it stopped, at a third of its model's scatter, 3% off its twin at the end
    lucky = cell("3.13", "crunch/asyncio/1", [23.279, 23.687, 24.028, 23.824, 23.549])
    shown = [
        cell("3.13", "crunch_plus/asyncio/1", [24.562, 27.955, 25.147]),
        cell("3.13", "crunch_plus/asyncio/2", [25.094, 25.006, 24.57]),
        cell("3.13", "crunch_plus/asyncio/4", [26.6, 26.952, 26.617]),
    ]
    coming = [
        cell("3.13", "crunch/asyncio/2", [24.159]),
        cell("3.13", "crunch_twin/asyncio/1", [23.584, 27.282]),
    ]
    policy = Sampling(processes=4, target=0.02, min_processes=4, max_processes=80)
    assert policy.stop(lucky.means, 1.0) == "precision"  # on its own
    typical = schedule.typical_scatter([lucky, *shown, *coming])
    assert 0.035 < typical[lucky.key] < 0.045  # the others' variances pooled: about 4.1%
    assert policy.stop(lucky.means, 1.0, typical=typical[lucky.key]) is None
    # had only one of the others shown a scatter, it would wait for those to come
    typical = schedule.typical_scatter([lucky, shown[2], *coming])
    assert typical[lucky.key] == math.inf
    assert schedule.pooled_precision(lucky.means, math.inf) == math.inf
    assert policy.stop(lucky.means, 1.0, typical=math.inf) is None
    # ... unless they will not come (failed, or done under 3 processes): then that one's
    gone = [cell(c.interpreter, c.cell_id, c.means, Status.FAILED) for c in coming]
    typical = schedule.typical_scatter([lucky, shown[2], *gone])
    assert typical[lucky.key] == pytest.approx(
        statistics.stdev(shown[2].means) / statistics.fmean(shown[2].means)
    )
    assert policy.stop(lucky.means, 1.0, typical=typical[lucky.key]) == "precision"
    # a cell waiting still gets a time estimate, from its own scatter
    assert needed_processes(policy, lucky.means, math.inf) == needed_processes(policy, lucky.means)


def test_worker_time_set_aside_does_not_spend_a_cells_budget() -> None:
    policy = Sampling(processes=4, target=0.001, min_processes=4, max_processes=40, max_seconds=10)
    state = CellState("3.13", "crunch/threads/2")
    for worker in range(1, 6):  # five processes of 3 s, the first four taken in disturbed windows
        state.add(worker, [1.0 + worker / 100], [3.0])
    for worker in range(1, 5):
        state.drop(worker)
    assert state.discarded == 4 and state.means == [1.05]
    assert sum(state.seconds) == 15.0 and state.kept_seconds == 3.0
    assert policy.stop(state.means, state.kept_seconds) is None  # was "budget", with one process
    state.add(6, [1.0], [8.0])
    assert policy.stop(state.means, state.kept_seconds) == "budget"


def test_a_paired_cell_is_judged_on_its_ratios_to_the_partner() -> None:
    """With pairing, a process' values over its partner's: the machine's 20% between processes
    is in the means, not in the ratios, and the cell stops when the ratios are precise."""
    policy = Sampling(processes=4, target=0.02, min_processes=4, max_processes=40)
    state = CellState("3.13", "crunch/threads/2")
    for worker, slow in enumerate((1.0, 1.25, 0.8, 1.2, 0.9), start=1):
        values = [0.010 * slow, 0.011 * slow]
        partners = [0.020 * slow, 0.021 * slow]
        state.add(worker, values, [1.0], [v / p for v, p in zip(values, partners, strict=True)])
    assert state.measured is state.ratios and len(state.ratios) == 5
    assert policy.stop(state.means, state.kept_seconds) is None  # ±20%: far from the target
    assert policy.stop(state.measured, state.kept_seconds) == "precision"
    state.drop(2)
    assert len(state.ratios) == len(state.means) == 4 and state.summary(policy)["paired"]
    unpaired = CellState("3.13", "crunch/sequential/1")
    unpaired.add(1, [0.02], [1.0])
    assert unpaired.measured is unpaired.means and not unpaired.summary(policy)["paired"]


def test_the_runs_budget_stops_cells_that_have_their_minimum_of_processes() -> None:
    policy = Sampling(processes=3, target=0.02, min_processes=3, max_processes=20, run_seconds=60.0)
    noisy = [1.0, 1.3, 0.8]
    assert policy.stop(noisy, 1.0, run_seconds=59.0) is None
    assert policy.stop(noisy, 1.0, run_seconds=60.0) == "run-budget"
    assert policy.stop(noisy[:2], 1.0, run_seconds=600.0) is None  # the minimum comes first
    assert policy.stop([1.0, 1.001, 0.999], 1.0, run_seconds=600.0) == "precision"
    assert Sampling(processes=3, target=0.02).stop(noisy, 1.0, run_seconds=1e9) is None


def reading(ms: float, steal: float = 0.0, total: float = 0.0) -> Reading:
    return Reading(time.monotonic(), ms / 1e3, 1.0, (steal, total))


@pytest.fixture
def monitor(monkeypatch) -> NoiseMonitor:
    monkeypatch.setattr(schedule, "read_sentinel", lambda: reading(4.0))
    return NoiseMonitor()


def window(monitor: NoiseMonitor, before: Reading, workers: int = 3) -> Window:
    w = Window(len(monitor.windows), 1, before)
    w.workers = [(CellState("3.13", f"c{i}"), 1) for i in range(workers)]
    return w


def test_a_window_with_a_slow_sentinel_is_redone(monitor, monkeypatch) -> None:
    monkeypatch.setattr(schedule, "read_sentinel", lambda: reading(4.02, 0, 100))
    assert not monitor.judge(window(monitor, reading(4.0, 0, 0)))["disturbed"]
    monkeypatch.setattr(schedule, "read_sentinel", lambda: reading(6.0, 0, 200))
    record = monitor.judge(window(monitor, reading(4.0, 0, 100)))
    assert record["disturbed"] and record["action"] == "redone"
    assert record["why"].startswith("sentinel +50%")


def test_a_window_with_cpu_steal_is_disturbed(monitor, monkeypatch) -> None:
    monkeypatch.setattr(schedule, "read_sentinel", lambda: reading(4.0, 20, 200))
    record = monitor.judge(window(monitor, reading(4.0, 0, 100)))
    assert record["disturbed"] and record["steal"] == 0.2 and "CPU steal 20%" in record["why"]


def test_redoing_stops_when_most_windows_are_disturbed(monitor, monkeypatch) -> None:
    """A machine disturbed all the time: redo a share of the windows, then keep and flag."""
    monkeypatch.setattr(schedule, "read_sentinel", lambda: reading(9.0))
    actions = [monitor.judge(window(monitor, reading(9.0)))["action"] for _ in range(9)]
    assert actions[0] == "redone" and actions[1] == "flagged"
    assert actions.count("redone") == 4 and actions.count("flagged") == 5  # ~a third
    summary = monitor.summary()
    assert summary["disturbed_windows"] == 9 and summary["redone_windows"] == 4


def test_the_floor_is_a_robust_band_of_the_sentinel_and_never_below_the_minimum(monitor, monkeypatch) -> None:
    assert monitor.summary()["floor"] == schedule.MIN_FLOOR  # identical readings
    readings = (4.4, 3.6, 4.2, 3.8, 4.0, 4.3, 3.7, 4.1, 3.9, 30.0)  # ±10%, one odd reading
    for ms in readings:
        monkeypatch.setattr(schedule, "read_sentinel", lambda ms=ms: reading(ms))
        monitor.judge(window(monitor, reading(4.0)))
    kept = [4.0] * 3 + [ms for ms in readings if ms < 4.0 * schedule.DISTURBED_RATIO]
    median = statistics.median(kept)
    mad = statistics.median(abs(x / median - 1) for x in kept)
    summary = monitor.summary()
    assert summary["sentinel_median_ms"] == pytest.approx(4.0)
    assert summary["floor"] == pytest.approx(2 * 1.4826 * mad, abs=1e-4)
    assert 0.05 < summary["floor"] < 0.3  # the 30 ms reading was disturbed: not in the band


def test_a_run_that_starts_in_a_burst_still_sees_the_bursts(monkeypatch) -> None:
    """A machine busy in bursts (its sentinel 4 ms quiet, 8 ms in a burst of other work, as the
    seeded burners make it): whether the monitor's first readings fall in a burst or not, the
    busy windows are disturbed and the floor is the quiet readings' band. Before session 21 the
    median of the readings so far took a burst at the start for the machine's speed: no window
    of such a run was disturbed, and its floor spanned both speeds (4 of 12 runs of one seeded
    noise; floors 4.5-28.6%)."""

    def run(first: float, order: tuple[float, ...]) -> dict[str, Any]:
        monkeypatch.setattr(schedule, "read_sentinel", lambda: reading(first))
        monitor = NoiseMonitor()
        for ms in order * 5:
            monkeypatch.setattr(schedule, "read_sentinel", lambda ms=ms: reading(ms))
            monitor.judge(window(monitor, monitor.last))
        return monitor.summary()

    quiet_first = run(4.0, (4.0, 4.1, 8.0, 7.9))
    busy_first = run(8.0, (4.0, 4.1, 8.0, 7.9))
    for summary in (quiet_first, busy_first):
        assert 4.0 <= summary["sentinel_median_ms"] <= 4.1  # the quiet readings
        assert summary["disturbed_windows"] == 14  # of 20: every window with a busy reading
        assert summary["floor"] < 0.05
    # every reading counts, whenever it came: the same readings in another order, the same floor
    assert run(4.0, (4.1, 7.9, 4.0, 8.0))["floor"] == quiet_first["floor"]


def test_the_undisturbed_speed_is_the_fast_mode_not_a_lone_fast_reading() -> None:
    speed = schedule.undisturbed_speed
    assert speed([8.0] * 6 + [4.0, 4.1, 3.9, 4.0]) == 4.0  # busy most of the time: the quiet speed
    assert speed([3.6, 4.4, 4.0, 3.8, 4.2]) == 4.0  # one mode, ±10%: its median
    assert speed([2.0, 4.0, 4.1, 3.9, 4.0]) == 4.0  # nothing else near 2.0: not the machine's speed
    assert speed([3.8, 8.0, 8.1]) == 8.05  # one quiet reading is no mode either


def test_drift_is_the_wander_between_halves_beyond_process_noise() -> None:
    steady, stepped = [], []
    for i in range(9):
        steady.append(CellState("3.13", f"s{i}", means=[1.0, 1.01, 0.99, 1.0, 1.01, 0.99]))
        stepped.append(CellState("3.13", f"t{i}", means=[1.0, 1.0, 1.0, 1.05, 1.05, 1.05]))
    still, n = schedule.drift(steady)
    assert n == 9 and still == 0.0  # the halves differ by no more than the processes scatter
    moved, _ = schedule.drift(stepped)
    assert moved == pytest.approx(0.05, rel=0.05)
    assert schedule.drift([CellState("3.13", "x", means=[1.0, 1.1, 0.9])]) is None


# -- real runs -----------------------------------------------------------------------------------


def run_dates(run_dir: Path, interp: str) -> list[tuple[datetime, str, str]]:
    """(date, interpreter, cell) of every values worker of every cell: pyperf dates each run."""
    out = []
    suite = pyperf.BenchmarkSuite.load(str(run_dir / f"{interp}.json"))
    for bench in suite.get_benchmarks():
        for run in bench.get_runs():
            if run.values:
                out.append((datetime.fromisoformat(run.get_metadata()["date"]), interp, bench.get_name()))
    return out


@pytest.mark.integration
def test_worker_processes_are_interleaved_across_cells_and_interpreters(tmp_path: Path) -> None:
    out = tmp_path / "out"
    ids = host_interpreters(out, (12, 13))
    if len(ids) < 2:
        pytest.skip("needs two host interpreters (pyenv 3.12 and 3.13)")
    matrix = small_matrix(tmp_path, ids, executors="[sequential, threads]", workers="[1, 2]")
    matrix.write_text(matrix.read_text().replace("processes: 1", "processes: 3"))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gilmatrix.cli",
            *local_run(matrix, out, "r", python=False),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    run_dir = out / "results" / "r"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    schedule_ = manifest["schedule"]
    assert schedule_["sampling"] == {"mode": "fixed", "processes": 3}
    # A busy machine (the sentinels saw it) sets a disturbed window's processes aside and
    # measures those cells again in a later round: extra rounds are such re-measurements only.
    redone = {(c["interpreter"], c["id"]) for c in manifest["cells"] if c.get("discarded")}
    assert [r["round"] for r in schedule_["rounds"]][:3] == [1, 2, 3]
    assert len(schedule_["rounds"]) == 3 or redone
    assert all(c["processes"] == 3 and c["stopped"] == "fixed" for c in manifest["cells"])
    assert all(c["rounds"] == 3 for c in manifest["cells"] if (c["interpreter"], c["id"]) not in redone)
    assert schedule_["noise"]["floor"] >= schedule.MIN_FLOOR and schedule_["windows"]
    timeline = sorted(d for interp in ids for d in run_dates(run_dir, interp))
    cells = {(i, c) for _, i, c in timeline}
    assert len(timeline) == 3 * len(cells) == 3 * 9 * len(ids)
    # Round by round: every kept worker process ran in one of the rounds the manifest dates, and
    # no cell has two kept in one round (a process set aside on a disturbed machine is measured
    # again in a later round, so its cell's kept ones may skip a round, never share one).
    starts = [datetime.fromisoformat(r["started"]) for r in schedule_["rounds"]]
    assert starts == sorted(starts) and all(s.tzinfo is not None for s in starts)
    by_round: dict[int, list[tuple[str, str]]] = {}
    for date, interp, cell in timeline:
        number = sum(s <= date.astimezone() for s in starts)  # pyperf dates a run in local time
        assert number >= 1, (date, starts)
        by_round.setdefault(number, []).append((interp, cell))
    for number, ran in by_round.items():
        assert len(ran) == len(set(ran)), (number, ran)
    # and each kept process carries the round the host ran it in (what the report pairs on)
    recorded = {
        (interp, bench.get_name(), datetime.fromisoformat(run.get_metadata()["date"])): run.get_metadata()[
            "gilmatrix_round"
        ]
        for interp in ids
        for bench in pyperf.BenchmarkSuite.load(str(run_dir / f"{interp}.json")).get_benchmarks()
        for run in bench.get_runs()
        if run.values
    }
    for date, interp, cell in timeline:
        assert recorded[(interp, cell, date)] == sum(s <= date.astimezone() for s in starts)
    # every cell not set aside has a kept process in each of the first three rounds
    for number in (1, 2, 3):
        assert cells - redone <= set(by_round.get(number, ())), number
    # each of those rounds (every cell pending in it) ran in the order the run's seed shuffled
    # them into, afresh each round: the kept processes follow it
    everything = [CellState(i, c) for i, c in sorted(cells)]
    for number in (1, 2, 3):
        expected = [s.key for s in round_order(everything, schedule_["seed"], number)]
        kept = set(by_round.get(number, ()))
        assert by_round.get(number, []) == [k for k in expected if k in kept], number
    # and that order interleaves the interpreters rather than run one after the other (the
    # seed is drawn per run: one round of 18 cells alternates at most twice 4 times in 10,000,
    # all three rounds about once in 10^10)
    seed = schedule_["seed"]
    orders = [[s.key[0] for s in round_order(everything, seed, n)] for n in (1, 2, 3)]
    assert any(sum(a != b for a, b in pairwise(o)) > len(ids) for o in orders), orders
    # and the report says how it was measured
    report = gilmatrix("report", str(run_dir), "--out", str(out), "--no-chart-images")
    assert report.returncode == 0, report.stderr
    html = (out / "report" / "index.html").read_text()
    assert "How it was measured" in html and f"{len(schedule_['rounds'])} interleaved rounds" in html
    assert "fixed: 3 worker processes per cell" in html


@pytest.mark.integration
def test_a_spent_run_budget_ends_the_run_and_the_report_lists_the_cells_that_missed(tmp_path: Path) -> None:
    """``run_minutes``: once the rounds have taken that long, every cell with its minimum of
    processes stops, its target missed; the manifest and the report say so."""
    out = tmp_path / "out"
    matrix = small_matrix(tmp_path, [RUNNING_ID], executors="[sequential, threads]", workers="[1, 2]")
    matrix.write_text(
        matrix.read_text().replace(
            "    pyperf: {processes: 1, values: 2, warmups: 0, loops: 1}",
            "    pyperf: {values: 2, warmups: 0, loops: 1}\n"
            "    precision: {target: 0.00001, min_processes: 2, max_processes: 50, "
            "run_minutes: 0.0001}",
        )
    )
    args = [
        sys.executable,
        "-m",
        "gilmatrix.cli",
        *local_run(matrix, out, "b"),
    ]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    manifest = json.loads((out / "results" / "b" / "manifest.json").read_text())
    assert manifest["schedule"]["sampling"]["run_minutes"] == 0.0001
    cells = manifest["cells"]
    # two rounds, unless a disturbed window's processes were set aside and measured again
    assert len(manifest["schedule"]["rounds"]) == 2 or any(c.get("discarded") for c in cells)
    assert cells and {(c["status"], c["stopped"], c["processes"]) for c in cells} == {("ok", "run-budget", 2)}
    assert "the run's budget spent" in done.stderr
    report = gilmatrix("report", str(out / "results" / "b"), "--out", str(out), "--no-chart-images")
    assert report.returncode == 0, report.stderr
    html = (out / "report" / "index.html").read_text()
    assert "once the run had measured for 0.0001 minutes" in html
    assert html.count("(target ±0.0% missed)") == len(cells)


@pytest.mark.integration
def test_adaptive_run_killed_then_resumed_keeps_every_finished_process(tmp_path: Path) -> None:
    """SIGKILL of the host mid-run (no chance to clean up), then --resume: the cells pick up
    the worker processes already on disk, and each stops by its precision target or budget."""
    out = tmp_path / "out"
    matrix = small_matrix(tmp_path, [RUNNING_ID], executors="[sequential, threads]", workers="[1, 2]")
    text = matrix.read_text().replace(
        "    pyperf: {processes: 1, values: 2, warmups: 0, loops: 1}",
        "    pyperf: {values: 2, warmups: 0, loops: 1}\n"
        "    precision: {target: 0.5, min_processes: 3, max_processes: 4}",
    )
    matrix.write_text(text)
    args = [
        sys.executable,
        "-m",
        "gilmatrix.cli",
        *local_run(matrix, out, "k"),
    ]
    first = subprocess.Popen(
        args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    cells_dir = out / "results" / "k" / "cells" / RUNNING_ID

    def on_disk() -> dict[str, int]:  # kept worker files per cell (a redone one is renamed)
        return (
            {
                runs.name: len(list(runs.glob("w[0-9][0-9][0-9][0-9].json")))
                for runs in cells_dir.glob("*.runs")
            }
            if cells_dir.exists()
            else {}
        )

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and sum(on_disk().values()) < 4:  # some rounds done
        time.sleep(0.02)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    kept = on_disk()
    assert sum(kept.values()) >= 4, kept
    resumed = subprocess.run(
        [*args[:-4], "--resume", str(out / "results" / "k"), "--python", f"{RUNNING_ID}={sys.executable}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr
    manifest = json.loads((out / "results" / "k" / "manifest.json").read_text())
    assert manifest["state"] == "complete"
    for cell in manifest["cells"]:
        assert cell["status"] == "ok" and cell["stopped"] in ("precision", "budget")
        assert 3 <= cell["processes"] <= 4
        if cell["stopped"] == "precision":
            assert cell["precision"] <= 0.5
        slug = cell["id"].replace("/", "__")
        bench = pyperf.Benchmark.load(str(cells_dir / f"{slug}.json"))
        assert len([r for r in bench.get_runs() if r.values]) == cell["processes"]
        assert cell["processes"] >= kept.get(f"{slug}.runs", 0)  # nothing on disk was lost
    assert not list(cells_dir.glob("*.runs"))


def test_core_sentinels_time_every_usable_core_at_once() -> None:
    cores = schedule.CoreSentinels()
    try:
        times = cores.time()
        assert len(times) == len(os.sched_getaffinity(0))
        assert all(0 < t < 5 for t in times)
        schedule._CORES.append(cores)
        reading_ = schedule.read_sentinel()
        assert reading_.loop_seconds > 0 and reading_.cpu is not None
    finally:
        schedule._CORES.clear()
        helpers = list(cores.helpers)
        cores.close()
    assert not any(process.is_alive() for process, _ in helpers)
