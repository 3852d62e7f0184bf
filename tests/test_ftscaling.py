"""Where free-threading stops scaling: the ftscalingbench patterns as workloads (each checks its
own answer, also when threads run it), worker counts up to the machine's cores, placement on
physical cores, the scaling table and its verdicts, and a real run's report."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pandas as pd
import pytest

from gilmatrix.harness.executors import Dispatcher
from gilmatrix.harness.facts import cpu_topology
from gilmatrix.harness.workloads import (
    FT_PATTERNS,
    FT_SHARED_PATTERNS,
    WORKLOADS,
    WrongAnswer,
    resolve_params,
)
from gilmatrix.matrix.model import load_matrix
from gilmatrix.matrix.plan import plan_cells, worker_limit
from gilmatrix.reports.compare import ft_scaling_table, scaling_changes, with_speedup
from gilmatrix.reports.verdicts import decide
from tests.conftest import ROOT, RUNNING_ID, gilmatrix, local_run


@pytest.mark.parametrize(
    ("workload", "pattern"),
    [("ftscaling", p) for p in FT_PATTERNS] + [("ftscaling_shared", p) for p in FT_SHARED_PATTERNS],
)
def test_every_pattern_checks_its_answer_on_threads(workload: str, pattern: str) -> None:
    spec = WORKLOADS[workload]
    params = resolve_params(spec, {"pattern": pattern, "iterations": 200, "tasks": 4})
    dispatcher = Dispatcher("threads", 2)
    try:
        tasks = spec.make_tasks(params)
        results = dispatcher.run(spec.run_task, tasks)
        spec.check(params, tasks, results)
        with pytest.raises(WrongAnswer):
            spec.check(params, tasks, [r + 1 for r in results])
    finally:
        dispatcher.close()


@pytest.mark.parametrize("iterations", [1, 3, 201, 4096])
def test_a_pattern_is_right_at_any_iteration_count(iterations: int) -> None:
    for workload, patterns in (("ftscaling", FT_PATTERNS), ("ftscaling_shared", FT_SHARED_PATTERNS)):
        spec = WORKLOADS[workload]
        for pattern in patterns:
            params = resolve_params(spec, {"pattern": pattern, "iterations": iterations, "tasks": 2})
            tasks = spec.make_tasks(params)
            spec.check(params, tasks, [spec.run_task(task) for task in tasks])


def test_the_shared_patterns_are_not_planned_where_each_worker_would_have_a_copy() -> None:
    assert set(WORKLOADS["ftscaling_shared"].unsupported) == {"processes", "interpreters"}
    assert not WORKLOADS["ftscaling"].unsupported


def test_cpu_topology_names_usable_cpus_one_per_physical_core() -> None:
    topology = cpu_topology()
    assert list(topology.cpus) == sorted(os.sched_getaffinity(0))
    assert set(topology.physical) <= set(topology.cpus) and topology.physical
    if topology.sockets == 1 and not topology.efficiency:  # SMT: fewer cores than CPUs
        assert topology.smt == (len(topology.physical) < len(topology.cpus))


def test_worker_counts_stop_at_the_machines_cores() -> None:
    counts = (1, 2, 4, 8, 16, 32, 64, 128, 256)
    topology = cpu_topology()
    physical = len(topology.physical)
    assert worker_limit(counts, None) == counts
    assert worker_limit(counts, 4) == (1, 2, 4)
    assert worker_limit(counts, "physical-cores", topology) == tuple(c for c in counts if c <= physical)
    usable = len(os.sched_getaffinity(0))
    assert worker_limit(counts, "cpus", topology) == tuple(c for c in counts if c <= usable)
    assert worker_limit((2, 4), 1) == (2,)  # the smallest count whatever the machine


def test_the_ftscaling_profile_of_the_matrix() -> None:
    matrix = load_matrix(ROOT / "matrix.yaml")
    profile = matrix.profile("ftscaling")
    assert profile.placement == "physical-cores" and profile.max_workers == "physical-cores"
    ft = [w for w in matrix.workloads if w.implementation in ("ftscaling", "ftscaling_shared")]
    assert {w.params["pattern"] for w in ft} == set(FT_PATTERNS) | set(FT_SHARED_PATTERNS)
    assert set(profile.workloads or ()) == {w.id for w in ft}
    # ftscalingbench's weak scaling: every worker one task, N workers N tasks
    assert {w.tasks_per_worker for w in ft} == {1} and not any("tasks" in w.params for w in ft)
    plan = plan_cells(matrix, "ftscaling", ["3.14t"])
    threads = [c for c in plan.cells if c.executor == "threads"]
    assert {c.workers for c in threads} == set(
        worker_limit(profile.workers or (), "physical-cores", plan.topology)
    )
    assert all(c.tasks == c.params["tasks"] == c.workers for c in threads)
    assert plan.topology is not None and plan.cpuset == plan.topology.physical
    # the other profiles keep the classic workloads
    assert not {w.id for w in ft} & set(matrix.profile("default").workloads or ())


def cell_row(interp: str, workload: str, workers: int, mean: float, sd: float = 0.01, tasks: int = 8) -> dict:
    return {
        "interpreter": interp,
        "workload": workload,
        "executor": "threads",
        "workers": workers,
        "tasks": tasks,
        "mean": mean,
        "proc_sd": sd * mean,
        "processes": 8,
        "free_threaded": interp.endswith("t"),
        "gil": "false" if interp.endswith("t") else "true",
    }


def test_scaling_is_t1_over_tn_with_an_interval_and_a_verdict() -> None:
    """Fixed tasks spread over the threads: scaling = T1 / TN."""
    rows = []
    for interp, two in (("3.13t", 0.55), ("3.14t", 0.51), ("3.14", 1.0)):
        rows += [cell_row(interp, "ft_method_call", 1, 1.0), cell_row(interp, "ft_method_call", 2, two)]
    rows += [
        cell_row("3.14t", "ft_shared_list_append", 1, 1.0),
        cell_row("3.14t", "ft_shared_list_append", 2, 1.6),
    ]
    rows += [cell_row("3.14t", "other", 1, 1.0), cell_row("3.14t", "other", 2, 0.5)]
    table = ft_scaling_table(pd.DataFrame(rows), {"ft_method_call", "ft_shared_list_append"})
    assert set(table["workload"]) == {"ft_method_call", "ft_shared_list_append"}  # only the ftscaling ones
    by = {(r.interpreter, r.workload): r for r in table.itertuples()}
    good = by[("3.14t", "ft_method_call")]
    assert good.scaling == pytest.approx(1 / 0.51) and good.scaling_low < good.scaling < good.scaling_high
    assert good.efficiency == pytest.approx(good.scaling / 2) and good.verdict == "scales"
    assert by[("3.14", "ft_method_call")].verdict == "no scaling"
    assert by[("3.14t", "ft_shared_list_append")].verdict == "no scaling"  # slower on two threads
    (change,) = scaling_changes(table[table["workload"] == "ft_method_call"])
    assert (change["old"], change["new"], change["change"]) == ("3.13t", "3.14t", "improved")
    assert math.isclose(change["new_scaling"], 1 / 0.51)


def test_equal_work_per_thread_scales_as_t1_times_n_over_tn() -> None:
    """tasks_per_worker (N threads, N times the tasks): ftscalingbench's T1 * N / TN, efficiency
    T1 / TN, and the interval from the per-task times."""
    rows = [cell_row("3.14t", "ft_method_call", 1, 1.0, tasks=1)]
    rows += [cell_row("3.14t", "ft_method_call", n, t, tasks=n) for n, t in ((2, 1.0), (4, 1.25), (64, 8.0))]
    rows += [
        cell_row("3.14", "ft_method_call", 1, 1.0, tasks=1),
        cell_row("3.14", "ft_method_call", 4, 4.0, tasks=4),
    ]
    table = ft_scaling_table(pd.DataFrame(rows), {"ft_method_call"})
    by = {(r.interpreter, r.workers): r for r in table.itertuples()}
    assert by[("3.14t", 2)].scaling == pytest.approx(2.0) and by[("3.14t", 2)].efficiency == pytest.approx(
        1.0
    )
    assert by[("3.14t", 4)].scaling == pytest.approx(4 / 1.25) and by[
        ("3.14t", 4)
    ].efficiency == pytest.approx(0.8)
    assert by[("3.14t", 64)].scaling == pytest.approx(8.0) and by[("3.14t", 64)].efficiency == pytest.approx(
        1 / 8
    )
    assert by[("3.14t", 2)].verdict == "scales" and by[("3.14t", 64)].verdict == "partly"
    low, high = by[("3.14t", 4)].scaling_low, by[("3.14t", 4)].scaling_high
    assert low < 4 / 1.25 < high and high - low < 0.5
    assert by[("3.14", 4)].scaling == pytest.approx(1.0) and by[("3.14", 4)].verdict == "no scaling"


def test_speedups_are_throughput_ratios_and_equal_task_figures_stay_as_measured() -> None:
    rows = [
        {**cell_row("3.14t", "weak", 1, 0.5, tasks=1), "executor": "sequential"},
        cell_row("3.14t", "weak", 1, 0.6, tasks=1),
        cell_row("3.14t", "weak", 4, 0.8, tasks=4),
        {**cell_row("3.14t", "fixed", 1, 0.9), "executor": "sequential"},
        cell_row("3.14t", "fixed", 1, 1.1),
        cell_row("3.14t", "fixed", 4, 0.3),
    ]
    speed = with_speedup(pd.DataFrame(rows))
    at = {(r.workload, r.executor, r.workers): r for r in speed.itertuples()}
    weak = at[("weak", "threads", 4)]
    assert weak.speedup == pytest.approx(0.5 * 4 / 0.8) and weak.efficiency == pytest.approx(0.5 / 0.8)
    assert weak.parallel_efficiency == pytest.approx(0.6 / 0.8)
    fixed = at[("fixed", "threads", 4)]
    assert fixed.speedup == 0.9 / 0.3 and fixed.parallel_efficiency == 1.1 / (4 * 0.3)  # bit for bit
    assert list(speed.columns) == [
        *pd.DataFrame(rows).columns,
        "seq_mean",
        "speedup",
        "efficiency",
        "parallel_efficiency",
    ]


def test_a_card_compares_equal_work_per_worker_by_throughput() -> None:
    base = {
        "kind": "cpu",
        "gil": "false",
        "free_threaded": True,
        "cpu_class": "",
        "parallelism": float("nan"),
    }
    rows = [
        {**cell_row("3.14t", "weak", 1, 0.010, tasks=1), **base, "executor": "sequential"},
        {**cell_row("3.14t", "weak", 1, 0.011, tasks=1), **base},
        {**cell_row("3.14t", "weak", 8, 0.016, tasks=8), **base},
    ]
    (card,) = decide(pd.DataFrame(rows))
    # at 8 workers a call did 8 times the work in 1.6 times the time: threads @ 8 win, per task
    assert card.per_tasks == 1 and card.winner.workers == 8 and card.winner.executor == "threads"
    assert card.winner.mean == pytest.approx(0.002) and card.winner.speedup == pytest.approx(5.0)
    assert "per task @ 8 workers" in card.headline
    assert "compared by throughput" in card.sentences[0].text
    fixed = [{**r, "tasks": 8, "workload": "fixed"} for r in rows]
    (plain,) = decide(pd.DataFrame(fixed))
    assert plain.per_tasks is None and plain.winner.workers == 1 and plain.winner.mean == 0.010


@pytest.mark.integration
def test_a_run_of_ftscaling_workloads_on_physical_cores_and_its_report(tmp_path: Path) -> None:
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text(
        "format: 1\n"
        f'interpreters:\n  - id: "{RUNNING_ID}"\n'
        "workloads:\n"
        "  ft_method_call: {workload: ftscaling, params: {pattern: method_call, iterations: 2000}}\n"
        "  ft_shared_dict_read:\n"
        "    workload: ftscaling_shared\n"
        "    params: {pattern: shared_dict_read, iterations: 2000}\n"
        "executors: [sequential, threads]\n"
        "workers: [1, 2, 256]\n"
        "profiles:\n"
        "  default:\n"
        "    pyperf: {processes: 2, values: 2, warmups: 0, loops: 1}\n"
        "    max_workers: physical-cores\n"
        "    placement: physical-cores\n"
    )
    out = tmp_path / "out"
    proc = gilmatrix(*local_run(matrix, out, "r"), timeout=600)
    assert proc.returncode == 0, proc.stderr
    physical = cpu_topology().physical
    assert f"placement: one CPU per physical core, CPUs {','.join(map(str, physical))}" in proc.stderr
    manifest = json.loads((out / "results" / "r" / "manifest.json").read_text())
    assert manifest["backend"]["settings"]["cpuset"] == ",".join(map(str, physical))
    assert manifest["host"]["physical_cores"] == len(physical)
    assert not any(c["workers"] == 256 for c in manifest["cells"])  # above the machine's cores
    report = gilmatrix("report", str(out / "results" / "r"), "--out", str(out), "--no-chart-images")
    assert report.returncode == 0, report.stderr
    html = (out / "report" / "index.html").read_text()
    if len(physical) >= 2:
        assert "Where free-threading stops scaling" in html
        assert "ft_method_call" in html and f"{RUNNING_ID} @ 2" in html
