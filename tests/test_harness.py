"""The harness on the running interpreter: workloads check their answers, every executor gives
the same results, and the driver turns a job into per-cell pyperf results."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyperf
import pytest

from gilmatrix.harness import facts, workloads
from gilmatrix.harness.drive import bench_warnings, cell_slug, failure_reason
from gilmatrix.harness.executors import EXECUTORS, Dispatcher, unavailable_reason
from gilmatrix.harness.workloads import WORKLOADS, WrongAnswer, resolve_params
from tests.conftest import ROOT, harness, write_job

SMALL = {
    "fetch": {"wait_ms": 1},
    "mixed": {"wait_ms": 1, "size": 100},
    "hash_native": {"size_kb": 8},
    "contention": {"increments": 100},
}


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_workload_accepts_its_answer_and_rejects_a_wrong_one(name: str) -> None:
    workload = WORKLOADS[name]
    params = resolve_params(workload, {"tasks": 3, **SMALL.get(name, {})})
    tasks = workload.make_tasks(params)
    results = [workload.run_task(task) for task in tasks]
    workload.check(params, tasks, results)
    if name == "contention":  # its answer is the shared state, not the return values
        shared = tasks[0][0]
        shared.value -= 1
        shared.table[0] = shared.table.get(0, 0) - 1
        wrong = results
    else:
        wrong = list(results)
        wrong[-1] = wrong[0] + 1 if isinstance(wrong[0], int) else wrong[0] + "x"
    with pytest.raises(WrongAnswer):
        workload.check(params, tasks, wrong)


@pytest.mark.parametrize("mode", ["lock", "dict"])
def test_contention_loses_no_update_on_threads(mode: str) -> None:
    workload = WORKLOADS["contention"]
    params = resolve_params(workload, {"tasks": 4, "increments": 2000, "mode": mode})
    tasks = workload.make_tasks(params)
    dispatcher = Dispatcher("threads", 4)
    try:
        results = dispatcher.run(workload.run_task, tasks)
    finally:
        dispatcher.close()
    workload.check(params, tasks, results)


def test_crunch_matches_the_closed_form() -> None:
    assert workloads.crunch_task(10) == sum(i * i for i in range(10)) == 285


RUNNABLE = [name for name in EXECUTORS if unavailable_reason(name, sys.version_info[:2]) is None]


def test_every_executor_is_runnable_or_has_a_reason() -> None:
    assert {"sequential", "threads", "processes", "asyncio"} <= set(RUNNABLE)
    if sys.version_info < (3, 14):
        assert "3.14" in unavailable_reason("interpreters", sys.version_info[:2])


@pytest.mark.parametrize("executor", RUNNABLE)
@pytest.mark.parametrize("workers", [1, 3])
@pytest.mark.parametrize("workload_name", ["sum_squares", "fetch", "hash_native"])
def test_every_executor_returns_the_sequential_results(
    executor: str, workers: int, workload_name: str
) -> None:
    workload = WORKLOADS[workload_name]
    params = resolve_params(workload, {"tasks": 5, **SMALL.get(workload_name, {})})
    tasks = workload.make_tasks(params)
    dispatcher = Dispatcher(executor, workers, async_fn=workload.async_task)
    try:
        dispatcher.warm_up(workload.run_task, tasks)
        results = dispatcher.run(workload.run_task, tasks)
    finally:
        dispatcher.close()
    workload.check(params, tasks, results)
    if EXECUTORS[executor].model == "processes":
        expected = EXECUTORS[executor].start_method
        assert dispatcher.start_method == (expected or dispatcher.start_method)
        assert dispatcher.start_method in ("fork", "forkserver", "spawn")


def test_facts_describe_the_running_interpreter() -> None:
    data = facts.interpreter_facts()
    assert data["version_info"][:2] == list(sys.version_info[:2])
    assert data["py_gil_disabled"] in (0, 1)
    expected = sys._is_gil_enabled() if hasattr(sys, "_is_gil_enabled") else None
    assert data["gil_enabled"] == expected
    out = subprocess.run(
        [sys.executable, "-m", "gilmatrix.harness", "facts"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(out)["executable"] == sys.executable


def test_stability_warnings_follow_pyperf_checks() -> None:
    def bench(values: list[float]) -> pyperf.Benchmark:
        run = pyperf.Run(values, metadata={"name": "x", "unit": "second", "loops": 1}, collect_metadata=False)
        return pyperf.Benchmark([run])

    assert bench_warnings(bench([1.0, 1.01, 0.99])) == []
    noisy = bench_warnings(bench([1.0, 1.5, 0.5, 1.2]))
    assert any("standard deviation" in w for w in noisy)
    outlier = bench_warnings(bench([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 3.0]))
    assert any("maximum" in w and "greater" in w for w in outlier)


def test_failure_reason_picks_the_exception_line() -> None:
    output = (
        "Traceback (most recent call last):\n  File x\n"
        "gilmatrix.harness.workloads.WrongAnswer: crunch: got 1\n"
    )
    assert failure_reason(output, 1) == "gilmatrix.harness.workloads.WrongAnswer: crunch: got 1"
    assert "signal 6" in failure_reason("", -6)


def _job(tmp_path: Path, cells: list[dict], timeout: float = 60) -> Path:
    return write_job(tmp_path, cells, timeout)


def _cell(workload: str, executor: str, workers: int, **params) -> dict:
    return {
        "id": f"{workload}/{executor}/{workers}",
        "interpreter": "host",
        "workload": workload,
        "implementation": workload,
        "kind": WORKLOADS[workload].kind,
        "executor": executor,
        "workers": workers,
        "params": params,
    }


def test_driver_runs_cells_writes_pyperf_results_and_resumes(tmp_path: Path) -> None:
    cells = [
        _cell("crunch", "sequential", 1, tasks=2, size=2000),
        _cell("fetch", "threads", 2, tasks=2, wait_ms=1),
    ]
    job = _job(tmp_path, cells)
    proc = harness("run", job, tmp_path)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [e["status"] for e in events if e["event"] == "cell"] == ["ok", "ok"]
    for cell in cells:
        base = tmp_path / "cells" / "host" / cell_slug(cell["id"])
        suite = pyperf.BenchmarkSuite.load(str(base) + ".json")
        (bench,) = suite.get_benchmarks()
        assert bench.get_name() == cell["id"]
        meta = bench.get_metadata()
        assert meta["gilmatrix_executor"] == cell["executor"]
        assert meta["gilmatrix_workers"] == cell["workers"]
        assert meta["gilmatrix_pool_in_timing"] == "no"
        assert meta["gilmatrix_py_gil_disabled"] in (0, 1)
        assert bench.get_nvalue() == 2
        assert all(v > 0 for v in bench.get_values())
        status = json.loads((Path(str(base) + ".status.json")).read_text())
        assert status["status"] == "ok"
        assert isinstance(status["warnings"], list)
    # fetch: 2 tasks x 1 ms on 2 threads cannot take less than one wait
    fetch = pyperf.BenchmarkSuite.load(str(tmp_path / "cells/host/fetch__threads__2.json"))
    assert min(fetch.get_benchmarks()[0].get_values()) >= 0.001
    # CPU time per call and the classification it implies, in every run's metadata
    for run in fetch.get_benchmarks()[0].get_runs():
        meta = run.get_metadata()
        assert 0 <= meta["gilmatrix_parallelism"] < 0.5, meta  # sleeping threads burn no CPU
        assert meta["gilmatrix_class"] == "waiting"
        assert meta["gilmatrix_cpu_time"] >= 0
    again = harness("run", job, tmp_path)
    statuses = [
        json.loads(line)["status"]
        for line in again.stdout.splitlines()
        if json.loads(line)["event"] == "cell"
    ]
    assert statuses == ["done-before", "done-before"]


def test_driver_manages_workers_as_pyperfs_manager_does(tmp_path: Path) -> None:
    """The driver spawns the pyperf workers itself: the benchmark it writes has the runs and
    metadata that pyperf's own manager (``python -m gilmatrix.harness.bench``) produces, less
    pyperf's separate calibration worker (the first value worker calibrates)."""
    cell = _cell("crunch", "threads", 2, tasks=2, size=2000)
    job = json.loads(_job(tmp_path, [cell]).read_text())
    job["pyperf"] = {"processes": 2, "values": 2, "warmups": 1, "min_time": 0.002}  # calibrate
    (tmp_path / "job.json").write_text(json.dumps(job))
    proc = harness("run", tmp_path / "job.json", tmp_path)
    assert proc.returncode == 0, proc.stderr
    ours = pyperf.Benchmark.load(str(tmp_path / "cells/host/crunch__threads__2.json"))
    by_pyperf = tmp_path / "pyperf.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "gilmatrix.harness.bench",
            "--cell",
            json.dumps(cell),
            "-p",
            "2",
            "-n",
            "2",
            "-w",
            "1",
            "--min-time",
            "0.002",
            "--quiet",
            "-o",
            str(by_pyperf),
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )
    theirs = pyperf.Benchmark.load(str(by_pyperf))

    def keys(run: pyperf.Run) -> list[str]:
        return sorted(k for k in run.get_metadata() if k.startswith("gilmatrix_"))

    # pyperf: a calibration worker (warm-ups only), then one worker per process; ours: the
    # first worker calibrates and keeps its last calls at the final loop count as values.
    mine, reference = ours.get_runs(), theirs.get_runs()
    assert [len(r.values) for r in reference] == [0, 2, 2]
    # A call that falls below min_time after the count was found (a busy machine) makes pyperf
    # double once more, and then fewer than warm-ups + values calls share the final count: such
    # a calibration is kept apart, as pyperf keeps it (values_from_calibration's own test checks
    # both shapes). Either way the first worker process is the one that calibrated.
    calibration = mine[0]
    kept_apart = [len(r.values) for r in mine] == [0, 2, 2]
    if kept_apart:
        mine = mine[1:]
    assert [len(r.values) for r in mine] == [2, 2]
    assert [keys(r) for r in mine] == [keys(r) for r in reference[1:]]
    calibrated = calibration.get_metadata()["calibrate_loops"]
    assert {run.get_metadata()["loops"] for run in mine} == {calibrated}
    if not kept_apart:
        warmups = mine[0].warmups
        assert warmups[-1][0] == calibrated  # the profile's warm-up, at the final loop count
        assert [count for count, _ in warmups] == sorted(count for count, _ in warmups)
    assert ours.get_nvalue() == 4
    log = (tmp_path / "cells/host/crunch__threads__2.log").read_text()
    assert "--- loop calibration" not in log
    assert log.index("--- pyperf worker 1 (calibrates the loops)") < log.index("--- pyperf worker 2")
    status = json.loads((tmp_path / "cells/host/crunch__threads__2.status.json").read_text())
    assert len(status["worker_seconds"]) == 2 + kept_apart  # each worker's life, spawn to exit
    durations = [run.get_metadata()["duration"] for run in ours.get_runs()]
    assert all(life > run for life, run in zip(status["worker_seconds"], durations, strict=True))
    assert sum(status["worker_seconds"]) <= status["elapsed"]


def test_a_calibration_keeps_its_last_calls_as_values_only_when_pyperf_shaped() -> None:
    from gilmatrix.harness.drive import values_from_calibration

    def calibration(calls: list[tuple[int, float]]) -> pyperf.Benchmark:
        return pyperf.Benchmark(
            [
                pyperf.Run(
                    [],
                    warmups=calls,
                    collect_metadata=False,
                    metadata={"name": "c", "calibrate_loops": calls[-1][0]},
                )
            ]
        )

    kept = values_from_calibration(
        calibration([(1, 0.01), (2, 0.011), (2, 0.012), (2, 0.013)]), values=2, warmups=1
    )
    assert kept is not None
    (run,) = kept.get_runs()
    assert run.values == (0.012, 0.013)
    assert run.warmups == ((1, 0.01), (2, 0.011))
    assert run.get_metadata()["loops"] == 2
    # fewer calls at the final loop count than warm-ups + values: no value worker's shape
    assert (
        values_from_calibration(calibration([(1, 0.01), (2, 0.011), (2, 0.012)]), values=2, warmups=1) is None
    )


def test_serve_answers_worker_discard_and_finish_commands(tmp_path: Path) -> None:
    """The host's protocol: one worker process per command, its runs kept on disk at once;
    a discarded worker is left out of the merged result; finish writes result and status."""
    cell = _cell("crunch", "sequential", 1, tasks=2, size=2000)
    job = _job(tmp_path, [cell])
    commands = [{"op": "worker", "cell": cell["id"]}] * 3 + [
        {"op": "discard", "cell": cell["id"], "worker": 2},
        {"op": "finish", "cell": cell["id"], "status": {"processes": 2, "stopped": "precision"}},
        {"op": "quit"},
    ]
    proc = harness(
        "serve",
        job,
        tmp_path,
        input="".join(json.dumps(c) + "\n" for c in commands),
    )
    assert proc.returncode == 0, proc.stderr
    replies = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["status"] for r in replies] == ["ok"] * 5
    assert [r["worker"] for r in replies[:3]] == [1, 2, 3]
    assert all(len(r["values"]) == 2 and r["loops"] == 1 and len(r["seconds"]) == 1 for r in replies[:3])
    base = tmp_path / "cells" / "host" / "crunch__sequential__1"
    bench = pyperf.Benchmark.load(str(base) + ".json")
    kept = [v for r in (replies[0], replies[2]) for v in r["values"]]
    assert bench.get_values() == tuple(kept)  # worker 2 was set aside
    status = json.loads(Path(str(base) + ".status.json").read_text())
    assert status["status"] == "ok" and status["processes"] == 2
    assert status["stopped"] == "precision"
    assert not Path(str(base) + ".runs").exists()  # merged, then tidied away


def test_serve_keeps_each_worker_on_disk_as_it_finishes(tmp_path: Path) -> None:
    """A crash after a worker loses nothing of it: its runs are a file before the answer."""
    cell = _cell("crunch", "sequential", 1, tasks=2, size=2000)
    job = _job(tmp_path, [cell])
    proc = harness(
        "serve",
        job,
        tmp_path,
        input=json.dumps({"op": "worker", "cell": cell["id"]}),
    )
    assert proc.returncode == 0, proc.stderr  # end of input: the driver exits
    runs = tmp_path / "cells" / "host" / "crunch__sequential__1.runs"
    assert sorted(p.name for p in runs.iterdir()) == ["w0001.json"]
    assert not (tmp_path / "cells" / "host" / "crunch__sequential__1.json").exists()


def test_a_worker_imports_only_what_its_cell_needs() -> None:
    """Every cell starts several worker processes: what they import at start-up is overhead."""
    lazy = ["asyncio", "concurrent.futures", "multiprocessing", "hashlib", "dataclasses"]
    code = (
        "import sys, gilmatrix.harness.bench\n"
        f"early = [m for m in {lazy!r} if m in sys.modules]\n"
        "assert not early, f'imported at start-up: {early}'\n"
        "from gilmatrix.harness.executors import Dispatcher\n"
        "Dispatcher('asyncio', 1).run(abs, [-1])\n"
        "assert 'asyncio' in sys.modules and 'concurrent.futures' in sys.modules\n"
        "from gilmatrix.harness.workloads import WORKLOADS\n"
        "WORKLOADS['hash_native'].run_task((0, 1, 1))\n"
        "assert 'hashlib' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_a_worker_shuts_its_pool_down_before_exiting(tmp_path: Path) -> None:
    """Left to interpreter exit, ProcessPoolExecutor's exit hook races its manager thread and
    prints "OSError: [Errno 9] Bad file descriptor" into cell logs (seen in 7 of 60 workers)."""
    cell = _cell("sum_squares", "processes", 2, tasks=2, batch=1000)
    code = f"""
import os
from gilmatrix.harness import bench
closed = []
original = bench.CellTimer.close
def close(self):
    pids = self.dispatcher.worker_pids()
    original(self)
    closed.append(bool(pids) and not any(os.path.exists(f"/proc/{{pid}}") for pid in pids))
bench.CellTimer.close = close
bench.main(["--worker", "--worker-task=0", "--values", "1", "--loops", "1", "--warmups", "0",
            "--output", {str(tmp_path / "w.json")!r}, "--cell", {json.dumps(cell)!r}])
assert closed == [True], closed
"""
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)
    assert (tmp_path / "w.json").exists()


def test_driver_refuses_an_unknown_job_format(tmp_path: Path) -> None:
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"format": 99, "cells": []}))
    proc = subprocess.run(
        [sys.executable, "-m", "gilmatrix.harness", "run", "--job", str(job), "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "format 99" in proc.stderr


def test_driver_records_a_timeout_and_goes_on(tmp_path: Path) -> None:
    cells = [
        _cell("fetch", "sequential", 1, tasks=1, wait_ms=20_000),
        _cell("crunch", "sequential", 1, tasks=1, size=100),
    ]
    job = _job(tmp_path, cells, timeout=3)
    proc = subprocess.run(
        [sys.executable, "-m", "gilmatrix.harness", "run", "--job", str(job), "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [e["status"] for e in events if e["event"] == "cell"] == ["timeout", "ok"]
    status = json.loads((tmp_path / "cells/host/fetch__sequential__1.status.json").read_text())
    assert "timeout of 3 s" in status["reason"]
    assert not (tmp_path / "cells/host/fetch__sequential__1.json").exists()


def test_a_sub_interpreters_refusal_is_found_in_the_chain_of_causes():
    """3.14's InterpreterPoolExecutor raises `NotShareableError: args not shareable`; the
    extension's ImportError is the text of an exception two causes down (as seen in a 3.14t
    container with tests/fixtures/legacy_ext)."""
    from gilmatrix.harness.usercode import refusal

    inner = Exception(
        'Traceback (most recent call last):\n  File "/opt/x/uses_legacy.py", line 5, in <module>\n'
        "    import legacy_ext\nImportError: module legacy_ext does not support loading in subinterpreters"
    )
    middle = TypeError("object could not be unpickled")
    middle.__cause__ = inner
    outer = TypeError("args not shareable")
    outer.__cause__ = middle
    assert refusal(outer) == "module legacy_ext does not support sub-interpreters"
    assert refusal(TypeError("args not shareable")) is None
