"""The self-benchmark's table and JSON logic, on real small runs (no timing, nothing measured)."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import pyperf
import pytest

from devtools.selfbench import measure as selfbench_measure
from devtools.selfbench.bench import build_parser
from devtools.selfbench.figures import (
    TARGETS,
    CellFigures,
    bench_floor,
    fidelity,
    fidelity_rows,
    format_table,
    load_run,
    overhead,
    overhead_rows,
    row,
    rows_from_json,
    stability,
    stability_rows,
    summary,
    to_json,
)

FIXTURES = Path(__file__).parent / "fixtures"
SMOKE = FIXTURES / "real-smoke"
QUICK = FIXTURES / "real-quick"


@pytest.fixture(scope="module")
def smoke():
    return load_run(SMOKE)


@pytest.fixture(scope="module")
def quick():
    return load_run(QUICK)


def test_cells_are_the_finished_ones_with_their_kind_and_elapsed(smoke):
    manifest, cells = smoke
    ok = [c for c in manifest["cells"] if c["status"] == "ok"]
    assert len(cells) == len(ok) == 84
    first = cells[0]
    assert (first.interpreter, first.cell_id, first.kind) == ("3.10", "crunch/sequential/1", "cpu")
    assert first.elapsed == ok[0]["elapsed"]
    assert {c.kind for c in cells} == {"cpu", "io", "data"}


def test_floor_is_pyperf_duration_and_timed_is_values_times_loops():
    suite = pyperf.BenchmarkSuite.load(str(SMOKE / "3.12.json"))
    bench = suite.get_benchmark("crunch/sequential/1")
    duration, timed = bench_floor(bench)
    (run,) = bench.get_runs()
    assert duration == pytest.approx(run.get_metadata()["duration"])
    loops = run.get_loops()
    expected = sum(v * loops for v in run.values) + sum(n * v for n, v in run.warmups)
    assert timed == pytest.approx(expected)
    assert 0 < timed <= duration  # the timed function runs inside pyperf's duration


def test_floor_counts_every_pyperf_process(quick):
    # the quick fixture has processes=1; build a two-run benchmark to check the sum
    suite = pyperf.BenchmarkSuite.load(str(QUICK / "3.12.json"))
    bench = suite.get_benchmarks()[0]
    run = bench.get_runs()[0]
    twice = pyperf.Benchmark([run, run])
    assert bench_floor(twice)[0] == pytest.approx(2 * bench_floor(bench)[0])


def test_overhead_splits_the_wall_time(smoke):
    manifest, cells = smoke
    figures = overhead(40.0, manifest, cells)
    floor = sum(c.duration for c in cells)
    assert figures["floor"] == pytest.approx(floor, abs=1e-3)
    assert figures["ratio"] == pytest.approx(40.0 / floor, abs=1e-3)
    assert figures["ratio_timed"] > figures["ratio"]  # timed < floor
    run_stage = manifest["stages"]["run"]
    # the three remainders and the floor add up to the wall time
    total = (
        figures["floor"] + figures["cell_processes"] + figures["harness_loop"] + figures["outside_harness"]
    )
    assert total == pytest.approx(40.0, abs=0.01)
    assert figures["outside_harness"] == pytest.approx(40.0 - run_stage, abs=1e-3)
    assert figures["interpreters"] == ["3.10", "3.11", "3.12", "3.13"]
    assert figures["cells"] == 84


def test_overhead_against_pyperfs_process_model(smoke):
    manifest, cells = smoke
    assert overhead(40.0, manifest, cells)["ratio_processes"] is None  # not recorded back then
    # each cell's one worker lived its run's duration plus 0.1 s of start-up and exit
    timed = [dataclasses.replace(c, worker_seconds=(c.duration + 0.1,)) for c in cells]
    figures = overhead(40.0, manifest, timed)
    processes = sum(c.duration for c in cells) + 0.1 * len(cells)
    assert figures["pyperf_processes"] == pytest.approx(processes, abs=1e-3)
    assert figures["ratio_processes"] == pytest.approx(40.0 / processes, abs=1e-3)
    assert figures["workers"] == len(cells)
    assert figures["per_worker_start_exit"] == pytest.approx(0.1, abs=1e-3)
    assert figures["driver"] == pytest.approx(sum(c.elapsed for c in cells) - processes, abs=1e-3)
    rows = overhead_rows("smoke local", figures)
    assert rows[-1].figure == "smoke local wall/pyperf processes"
    assert "84 worker processes" in rows[-1].note


def test_overhead_row_carries_the_target(smoke):
    manifest, cells = smoke
    rows = overhead_rows("smoke local", overhead(40.0, manifest, cells), "reduced set: 3.12")
    assert rows[0].target == "<= 1.10x" and rows[0].status == "missed"
    assert "reduced set: 3.12" in rows[0].note and "84 cells" in rows[0].note
    assert rows[1].status == ""  # wall/timed is information, no target


def test_fidelity_pairs_the_same_cells_of_one_interpreter(smoke, quick):
    _, smoke_cells = smoke
    _, quick_cells = quick
    figures = fidelity(smoke_cells, quick_cells, "3.12")
    common = {c.cell_id for c in smoke_cells if c.interpreter == "3.12"} & {
        c.cell_id for c in quick_cells if c.interpreter == "3.12"
    }
    assert figures["cells"] == len(common) > 0
    assert figures["cpu_cells"] == sum(1 for c in common if c.startswith("crunch/"))
    same = fidelity(smoke_cells, smoke_cells, "3.12")
    assert same["median_ratio"] == 1.0 and same["cpu_median_ratio"] == 1.0
    rows = fidelity_rows("smoke 3.12", same)
    assert [r.status for r in rows] == ["met", "met"]


def test_fidelity_from_two_pairs_with_the_noise_of_each_side(smoke):
    _, cells = smoke

    def scaled(factor_by_kind: dict[str, float]) -> list[CellFigures]:
        return [dataclasses.replace(c, median=c.median * factor_by_kind.get(c.kind, 1.0)) for c in cells]

    host2 = scaled({"cpu": 1.02})  # the host, again: CPU-bound cells 2% slower
    box1 = scaled({"cpu": 1.10})
    box2 = scaled({"cpu": 1.10 * 0.98})
    figures = fidelity(cells, box1, "3.12", host2, box2)
    # per cell: sqrt(1.10 * (1.078 / 1.02))
    assert figures["cpu_median_ratio"] == pytest.approx((1.10 * 1.078 / 1.02) ** 0.5)
    assert figures["median_ratio"] == pytest.approx(1.0)  # most smoke cells are not CPU-bound
    assert figures["host_repeat_cpu_median_abs_delta"] == pytest.approx(0.02)
    assert figures["container_repeat_cpu_median_abs_delta"] == pytest.approx(0.02)
    rows = fidelity_rows("smoke 3.12", figures)
    assert [r.figure for r in rows] == [
        "smoke 3.12 container/host, all cells",
        "smoke 3.12 container/host, CPU-bound",
        "smoke 3.12 host/host repeat, CPU-bound median |Δ|",
        "smoke 3.12 container/container repeat, CPU-bound median |Δ|",
    ]
    assert rows[1].status == "missed" and "pair 1 1.100, pair 2 1.057" in rows[1].note
    assert rows[2].value == pytest.approx(2.0)


def test_fidelity_without_pairs_is_not_measured(smoke):
    _, cells = smoke
    figures = fidelity(cells, cells, "3.14t")
    assert figures["cells"] == 0 and figures["median_ratio"] is None
    rows = fidelity_rows("x", figures)
    assert {r.status for r in rows} == {"not measured"}
    assert "no paired cells" in rows[0].note


def test_stability_by_kind():
    def cell(cid, kind, median):
        return CellFigures("3.12", cid, kind, median, 1.0, 1.0, 1.0)

    kinds = {"a": "cpu", "b": "cpu", "c": "cpu", "d": "io", "gone": "io", "new": "io"}
    first = [cell(c, kinds[c], m) for c, m in (("a", 1.0), ("b", 2.0), ("c", 1.0), ("d", 1.0), ("gone", 1.0))]
    second = [
        cell(c, kinds[c], m) for c, m in (("a", 1.01), ("b", 1.9), ("c", 1.2), ("d", 1.0), ("new", 5.0))
    ]
    by_kind = stability(first, second)
    assert by_kind["cpu"]["cells"] == 3
    assert by_kind["cpu"]["median_abs_delta"] == pytest.approx(0.05)
    assert by_kind["cpu"]["worst_abs_delta"] == pytest.approx(0.2)
    assert by_kind["cpu"]["worst_cell"] == "3.12 c"
    assert by_kind["io"] == {
        "cells": 1,
        "median_abs_delta": 0.0,
        "worst_abs_delta": 0.0,
        "worst_cell": "3.12 d",
    }
    rows = stability_rows("smoke local", by_kind)
    cpu = next(r for r in rows if "cpu" in r.figure)
    assert cpu.value == 5.0 and cpu.unit == "%" and cpu.status == "missed"
    io = next(r for r in rows if " io " in r.figure)
    assert io.target == "" and io.status == ""  # the target is on CPU-bound cells only


def test_stability_of_real_runs_is_symmetric_enough(smoke, quick):
    _, a = smoke
    _, b = quick
    by_kind = stability(a, b)
    assert set(by_kind) <= {"cpu", "io", "data"}
    for figures in by_kind.values():
        assert 0 <= figures["median_abs_delta"] <= figures["worst_abs_delta"]


def test_targets():
    assert TARGETS["overhead"].met(1.10) and not TARGETS["overhead"].met(1.11)
    assert TARGETS["fidelity"].met(0.97) and TARGETS["fidelity"].met(1.03)
    assert not TARGETS["fidelity"].met(0.96) and not TARGETS["fidelity"].met(1.04)
    assert row("images", "x", None, "s", "image_unchanged").status == "not measured"
    assert row("images", "x", 4.0, "s", "image_unchanged").status == "met"
    assert row("memory", "x", 40.0, "MB").status == ""


def test_table_json_round_trip_and_previous_column(smoke, tmp_path):
    manifest, cells = smoke
    rows = [
        *overhead_rows("smoke local", overhead(40.0, manifest, cells)),
        row("report", "10,000 cells build", 4.2, "s", "report_seconds_10000"),
        row("report", "10,000 cells index.html", 5.5, "MB", "report_mb_10000"),
        row("images", "3.12 unchanged", None, "s", "image_unchanged", "failed: no docker"),
    ]
    table = format_table(rows)
    lines = table.splitlines()
    assert lines[0].split() == ["section", "figure", "value", "target", "status", "note"]
    assert len(lines) == 2 + len(rows)
    assert "4.20 s" in table and "5.50 MB" in table and "not measured" in table
    text = summary(rows)
    assert text.startswith("targets: 1 met, 2 missed")
    assert "report: 10,000 cells index.html" in text

    data = to_json(rows, context={"date": "x"}, details={"k": 1})
    path = tmp_path / "selfbench.json"
    path.write_text(json.dumps(data))
    previous = rows_from_json(json.loads(path.read_text()))
    assert previous["report: 10,000 cells build"] == rows[2]
    with_previous = format_table(rows, previous)
    assert with_previous.splitlines()[0].split()[-2:] == ["previous", "note"]
    with pytest.raises(ValueError, match="format"):
        rows_from_json({"format": 99, "rows": []})


def test_report_scale_specs_have_the_sizes_they_name():
    from devtools.report_bench import SPEC, cell_count

    assert [cell_count(selfbench_measure.scale_spec(SPEC, n)) for n in (100, 1000, 10_000)] == [
        100,
        1000,
        10_000,
    ]


def test_harness_only_copy_differs_in_one_harness_file(tmp_path):
    from gilmatrix.backends.staging import harness_digest

    copy = selfbench_measure.copy_with_harness_change(tmp_path / "repo", "stamp-1")
    changed = copy / "runner" / "harness" / "workloads.py"
    original = selfbench_measure.ROOT / "runner" / "harness" / "workloads.py"
    assert changed.read_text() == original.read_text() + "# selfbench harness-only change stamp-1\n"
    assert (copy / "images" / "Dockerfile").read_bytes() == (
        selfbench_measure.ROOT / "images" / "Dockerfile"
    ).read_bytes()
    assert not (copy / "_build").exists() and not (copy / ".git").exists()
    assert harness_digest()  # the original is untouched
    assert original.read_text().count("selfbench harness-only change") == 0


def test_parser_defaults():
    args = build_parser().parse_args(
        ["--quick", "--backends", "local", "--only", "report", "--interpreters", "3.12,3.13"]
    )
    assert args.quick and args.backends == ["local"] and args.only == ["report"]
    assert args.interpreters == ["3.12", "3.13"]
    assert build_parser().parse_args([]).report_sizes == [100, 1000, 10_000]


def test_start_up_costs_are_measured_step_by_step():
    costs = selfbench_measure.start_up_costs(sys.executable, repeat=1, pythonpath=str(selfbench_measure.ROOT))
    assert list(costs) == ["interpreter", "pyperf", "harness"]
    assert all(0 < seconds < 30 for seconds in costs.values())


def test_settings_cost_weighs_scatter_by_seconds_per_process():
    from devtools.selfbench.verdicts import settings_cost

    spread = [0.98, 1.02, 0.98, 1.02]  # relative variance 0.02² * 4/3, whatever the level
    runs = [
        {"cell": "a/sequential/1", "side": "default", "means": [x * 5 for x in spread], "per_process": 0.4},
        {"cell": "a/sequential/1", "side": "default", "means": [x * 7 for x in spread], "per_process": 0.4},
        {"cell": "a/sequential/1", "side": "pyperf", "means": [x / 2 for x in spread], "per_process": 0.8},
        # twice the scatter at the same cost: four times the variance
        {
            "cell": "b/threads/2",
            "side": "default",
            "means": [1 + 2 * (x - 1) for x in spread],
            "per_process": 1,
        },
        {"cell": "b/threads/2", "side": "pyperf", "means": spread, "per_process": 1},
        {
            "cell": "b/threads/2",
            "side": "pyperf",
            "means": [3.0],
            "per_process": 9,
        },  # one process: no scatter
        {"cell": "c/asyncio/1", "side": "default", "means": spread, "per_process": 0.4},  # no pyperf side
    ]
    cost = settings_cost(runs)
    assert set(cost["cells"]) == {"a/sequential/1", "b/threads/2"}
    a, b = cost["cells"]["a/sequential/1"], cost["cells"]["b/threads/2"]
    assert a["default"]["sd"] == pytest.approx(0.02 * (4 / 3) ** 0.5)
    assert a["ratio"] == pytest.approx(2.0)
    assert b["pyperf"]["per_process"] == 1  # the one-process run is left out
    assert b["ratio"] == pytest.approx(0.25)
    assert cost["geomean"] == pytest.approx((2.0 * 0.25) ** 0.5)


def test_process_means_are_those_of_the_runs_with_values(tmp_path):
    from devtools.selfbench.verdicts import process_means

    meta = {"name": "x", "loops": 4}
    runs = [
        pyperf.Run([], warmups=[(1, 0.5), (2, 0.4)], metadata={**meta, "calibrate_loops": 4}),
        pyperf.Run([0.10, 0.12], warmups=[(4, 0.2)], metadata=meta),
        pyperf.Run([0.20, 0.22], warmups=[(4, 0.3)], metadata=meta),
    ]
    folder = tmp_path / "cells" / "3.13"
    folder.mkdir(parents=True)
    pyperf.Benchmark(runs).dump(str(folder / "x__sequential__1.json"))
    (folder / "x__sequential__1.status.json").write_text("{}")
    assert process_means(tmp_path) == pytest.approx([0.11, 0.21])


def test_twins_measure_each_location_estimators_error():
    """Twins' true ratio is 1: a burst that hits one process of one twin moves its mean, not its
    median or trimmed mean; the errors pool over runs as a root mean square."""
    from devtools.selfbench.noisy import _trimmed, location_rms, twin_errors
    from gilmatrix.reports.sidebyside import Series

    class Row:
        def __init__(self, raw, adjusted=None):
            self.series = Series(tuple(range(1, len(raw) + 1)), tuple(raw), tuple(adjusted or raw))

    assert _trimmed([1.0, 2.0, 3.0, 4.0, 100.0]) == 3.0  # 20% off each end of five: one each
    calm = Row([1.0, 1.0, 1.0, 1.0, 1.0])
    burst = Row([1.0, 1.0, 2.0, 1.0, 1.0], adjusted=[1.0, 1.0, 1.0, 1.0, 1.0])
    errors = twin_errors([(burst, calm)])
    assert errors["mean"] == [pytest.approx(math.log(1.2))]
    assert errors["median"] == errors["trimmed 20%"] == errors["mean, adjusted"] == [0.0]
    pooled = location_rms([{"twin_errors": errors}, {"twin_errors": {"mean": [-math.log(1.2)]}}])
    assert pooled["mean"] == (pytest.approx(math.log(1.2)), 2) and pooled["median"] == (0.0, 1)


def test_power_at_matched_aa_does_not_credit_a_liberal_test():
    """noisy.matched_power: each estimator's α is set where it calls at most the given share of
    the twins different; a test that only halves every p-value (twice as liberal at a fixed α)
    finds exactly as many +5% changes there as the honest one."""
    from devtools.selfbench.noisy import called_at, matched_power
    from gilmatrix.reports.stats import Comparison

    twins = [0.004, 0.03, 0.2, 0.4, 0.6, 0.8, 0.9, 1.0, 0.5, 0.3] * 2  # 20 twin pairs
    plus = [0.001, 0.002, 0.01, 0.02, 0.04, 0.2, 0.6, 1.0, 0.003, 0.05]
    honest = {"p_values": {"t": {"twins": twins, "plus": plus}}}
    liberal = {"p_values": {"t": {"twins": [p / 2 for p in twins], "plus": [p / 2 for p in plus]}}}
    at_5 = matched_power([honest], 0.05)["t"]
    # 5% of 20 twins: one may be called; the two at 0.004 tie, so α stops below them: none
    assert at_5 == {"alpha": 0.004, "twins": 20, "flagged": 0, "plus": 10, "detected": 3}
    assert matched_power([liberal], 0.05)["t"]["detected"] == at_5["detected"]
    at_10 = matched_power([honest, honest], 0.10)["t"]  # runs pool: 40 twins, 4 may be called
    assert (at_10["alpha"], at_10["flagged"], at_10["detected"]) == (0.03, 4, 2 * 5)
    # a comparison within its floor, or a +5% pair called faster, is never called
    inside = Comparison(1.0, 1.0, 8, 8, 1.005, 0.99, 1.02, 0.001, False, 0.01)
    faster = Comparison(1.0, 1.0, 8, 8, 0.95, 0.93, 0.97, 0.001, True, 0.01)
    assert called_at([inside, faster], either=True) == [1.0, 0.001]
    assert called_at([inside, faster], either=False) == [1.0, 1.0]


def test_selfbench_prints_each_estimators_power_at_matched_aa(tmp_path: Path) -> None:
    from devtools.selfbench.bench import SelfBench, build_parser

    bench = SelfBench(build_parser().parse_args(["--out", str(tmp_path), "--only", "noisy"]))
    bench.details["noisy"] = {}
    twins = [0.004, 0.03, 0.2, 0.4, 0.6, 0.8, 0.9, 1.0, 0.5, 0.3] * 2
    plus = [0.001, 0.002, 0.01, 0.02, 0.04, 0.2, 0.6, 1.0, 0.003, 0.05]
    bench.matched_power([{"p_values": {"t": {"twins": twins, "plus": plus}}}], "seeded burner")
    rows = {r.figure: r for r in bench.rows}
    assert rows["t: power at 3% A/A"].value == rows["t: power at 5% A/A"].value == 30.0
    assert rows["t: power at 5% A/A"].note == (
        "3/10 +5% changes found at α 0.0040, where 0/20 twins are called different (seeded burner)"
    )
    assert bench.details["noisy"]["matched 0.05"]["t"]["detected"] == 3


def test_noisy_figures_are_pooled_per_budget_when_the_runs_had_several():
    """Runs of different budgets are never pooled together: what 12 minutes buy is not what 4
    buy. One budget keeps the keys as they were (the arm alone)."""
    from devtools.selfbench.noisy import pooled, run_cap, run_minutes

    assert run_minutes({"schedule": {"sampling": {"run_minutes": 12}}}) == 12.0
    assert run_minutes({"schedule": {"sampling": {}}}) is None and run_minutes({}) is None

    def run(budget, flagged, detected, width):
        entry = dict(fallback=0, twins=20, twins_flagged=flagged, plus=10, plus_detected=detected)
        entry.update(plus_one=3, plus_one_detected=min(detected, 3))
        entry.update(models=30, models_tied=0, half_width_median=width, twin_half_width_median=width)
        return {"order": "shuffle", "budget": budget, "estimators": {"welch": entry}}

    two = pooled([run(4.0, 2, 3, 0.06), run(12.0, 0, 9, 0.02), run(4.0, 1, 5, 0.05)])
    assert set(two) == {"shuffle, 4 min: welch", "shuffle, 12 min: welch"}
    assert two["shuffle, 4 min: welch"]["flagged"] == 3 and two["shuffle, 4 min: welch"]["detected"] == 8
    assert two["shuffle, 12 min: welch"]["power"] == 0.9 and two["shuffle, 12 min: welch"]["twins"] == 20
    assert (two["shuffle, 4 min: welch"]["plus_one"], two["shuffle, 4 min: welch"]["detected_one"]) == (6, 6)
    one = pooled([run(4.0, 2, 3, 0.06), run(4.0, 1, 5, 0.05)])
    assert set(one) == {"shuffle: welch"} and one["shuffle: welch"]["half_width"] == 0.055
    # runs of two caps on a cell's processes (--max-processes 24,96) are kept apart the same way
    assert run_cap({"schedule": {"sampling": {"max_processes": 96}}}) == 96 and run_cap({}) is None
    capped = [{**run(20.0, 0, 3, 0.06), "cap": 24}, {**run(20.0, 1, 9, 0.03), "cap": 96}]
    by_cap = pooled([*capped, {**run(20.0, 0, 7, 0.04), "cap": 96}])
    assert set(by_cap) == {"shuffle, cap 24: welch", "shuffle, cap 96: welch"}
    assert by_cap["shuffle, cap 96: welch"]["detected"] == 16
    assert by_cap["shuffle, cap 24: welch"]["plus"] == 10


def test_a_burner_of_no_processes_is_a_quiet_check():
    """--burners 0: nothing burns, and the figures say so rather than a busy share of nothing."""
    from devtools.selfbench.noisy import Burner

    with Burner(7, 0) as burner:
        pass
    assert burner.busy is None and burner.seconds is None and burner.describe() == "no burner"
    with Burner(7, 1, bursts=(0.01, 0.02), pause=0.01) as burner:
        time.sleep(0.3)
    assert burner.busy is not None and burner.describe().startswith("burner seed 7")


def test_power_is_also_given_apart_for_one_in_process_worker_and_for_pools():
    """The cells the run-queue wait adjusts (one worker in the worker process) against the rest:
    a process pool of one is a pool (its worker is another process). The selfbench split and the
    report's adjustment read one rule (sidebyside.in_process)."""
    from gilmatrix.reports.sidebyside import in_process

    assert in_process("sequential", 1) and in_process("threads", 1) and in_process("asyncio", 1)
    assert not in_process("processes", 1) and not in_process("threads", 2)


def test_the_reach_prediction_pools_runs_per_kind_at_the_built_and_the_measured_change():
    """noisy.predicted_power: per kind, each +5% comparison's chance (reports/power.chance) summed
    over the runs (one-worker comparisons on means, pools on trimmed means), at +5% and at the
    kind's mean measured change (the time does not grow quite
    as the work does: +4.5% for pools in session 17's collections), with its binomial sd."""
    from devtools.selfbench.noisy import predicted_power, predicted_text
    from gilmatrix.reports.power import chance

    one = ("one worker", 0.03, 10, 0.03, 10, math.log(1.04))
    pool = ("pools", 0.09, 10, 0.03, 10, math.log(1.06))
    found = predicted_power([{"plus_scatter": [one, pool]}, {"plus_scatter": [one]}, {}])
    assert found["one worker"]["comparisons"] == 2 and found["pools"]["comparisons"] == 1
    assert found["one worker"]["measured_change"] == pytest.approx(0.04)
    # one-worker cells are tested on their means (all processes' degrees of freedom), pools trimmed
    on_means = 2 * chance(0.03, 10, 0.03, 10, 0.04, trim=False)
    assert found["one worker"]["at_measured"] == pytest.approx(on_means)
    assert found["one worker"]["built"] == pytest.approx(2 * chance(0.03, 10, 0.03, 10, 0.05, trim=False))
    p = chance(0.09, 10, 0.03, 10, 0.06)
    assert found["pools"]["sd"] == pytest.approx(math.sqrt(p * (1 - p)))
    assert predicted_text(found).startswith(f"one worker: {found['one worker']['at_measured']:.1f} ± ")


def test_a_noisy_collection_can_raise_the_cap_and_take_a_part_of_the_matrix(tmp_path: Path) -> None:
    """--max-processes caps a cell's processes there (and its worker seconds with it: a cap of
    processes left at 20 s would stop a pool first); --workloads outside the within-run matrix
    are refused before any burner or run starts."""
    import yaml

    from devtools.selfbench import measure as sm
    from devtools.selfbench import verdicts as sv
    from devtools.selfbench.noisy import collect, noisy_matrix

    within = sv.within_matrix(sm.ROOT / "matrix.yaml", tmp_path / "within.yaml")
    plain = yaml.safe_load(noisy_matrix(within, tmp_path / "a.yaml", "decide", 4.0).read_text())
    raised = yaml.safe_load(noisy_matrix(within, tmp_path / "b.yaml", "shuffle", 16.0, 100).read_text())
    default = yaml.safe_load((sm.ROOT / "matrix.yaml").read_text())["profiles"]["default"]["precision"]
    assert plain["profiles"]["default"]["precision"] == {**default, "run_minutes": 4.0, "decide": True}
    assert raised["profiles"]["default"]["precision"] == {
        **default, "run_minutes": 16.0, "decide": False, "max_processes": 100, "max_seconds": 100,
    }  # fmt: skip
    with pytest.raises(ValueError, match="not workloads of the within-run matrix: fetch"):
        collect(
            tmp_path, "t", arms=["shuffle"], runs=1, minutes=[4.0], seed=1, burners=1,
            interpreter="3.13", log=print, workloads=["crunch", "fetch"],
        )  # fmt: skip


def test_the_stop_replay_stops_cells_as_the_run_loop_would() -> None:
    """devtools.selfbench.replay: the run loop's precision stop walked again over a stored run's
    rounds (Sampling.stop with schedule.typical_scatter), never beyond the processes recorded."""
    from devtools.selfbench.replay import replay_stops
    from gilmatrix.run.schedule import Sampling

    sampling = Sampling(processes=4, target=0.02, min_processes=4, max_processes=10**6)
    quiet = [1.0, 1.004, 0.996, 1.002, 0.998, 1.001] * 5  # ±0.3%: within ±2% at 4 processes

    def seq(values: list[float], first: int = 1, skip: frozenset[int] = frozenset()) -> list:
        rounds = [r for r in range(first, first + len(values) + len(skip)) if r not in skip]
        return list(zip(rounds, values, strict=False))

    # alone in its model: it stops at its minimum, the 4th process; set aside in round 3, round 5
    assert replay_stops({("3.13", "a/threads/1"): seq(quiet)}, sampling) == {("3.13", "a/threads/1"): 4}
    assert replay_stops({("3.13", "a/threads/1"): seq(quiet, skip=frozenset({3}))}, sampling) == {
        ("3.13", "a/threads/1"): 5
    }
    # beside two cells of its model scattering by 10%: four quiet processes are not enough
    noisy = [1.0, 1.1, 0.9, 1.05, 0.95, 1.1, 0.9, 1.0] * 4
    cells = {
        ("3.13", "a/threads/1"): seq(quiet),
        ("3.13", "b/threads/1"): seq(noisy),
        ("3.13", "c/threads/2"): seq(noisy),
        ("3.13", "a/sequential/1"): seq(quiet),  # another model: not pooled with them
    }
    stops = replay_stops(cells, sampling)
    assert stops[("3.13", "a/sequential/1")] == 4
    assert 10 < stops[("3.13", "a/threads/1")] < 30
    assert ("3.13", "b/threads/1") not in stops  # never within ±2%: keeps all it had
    # others of its model that start late: it waits until two of them have 3 processes
    late = {("3.13", f"{w}/threads/1"): seq(quiet, first=6) for w in "bc"}
    late[("3.13", "a/threads/1")] = seq(quiet)
    assert replay_stops(late, sampling)[("3.13", "a/threads/1")] == 8


def test_the_stop_replay_refuses_a_run_without_adaptive_sampling(capsys) -> None:
    from devtools.selfbench.replay import main

    assert main([str(FIXTURES / "real-quick"), "--targets", "0.03"]) == 1
    assert "not a run of adaptive sampling" in capsys.readouterr().err


def test_selfbench_rows_of_the_stop_replay_say_when_there_was_nothing_to_replay(tmp_path: Path) -> None:
    from devtools.selfbench.bench import REPLAY_TARGETS, SelfBench, build_parser

    bench = SelfBench(build_parser().parse_args(["--out", str(tmp_path), "--only", "noisy"]))
    bench.details["noisy"] = {}
    bench.stop_replay([FIXTURES / "real-quick"], "no burner")  # fixed processes: no stop to replay
    rows = [r for r in bench.rows if r.figure.startswith("stop replayed")]
    assert [r.figure for r in rows] == [f"stop replayed at ±{t:.0%}: A/A" for t in REPLAY_TARGETS]
    assert {r.status for r in rows} == {"not measured"} and rows[0].note == "no adaptive run to replay"
    assert bench.details["noisy"]["replay"] == {f"{t:g}": {} for t in REPLAY_TARGETS}
