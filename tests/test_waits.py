"""What other work took from each timed call (harness/bench.py): the run-queue wait of the cell's
threads (``gilmatrix_waits``, Linux schedstat) and the share of the worker's CPUs other work used
(``gilmatrix_others``, /proc/stat), recorded by a real worker and read by the report."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pyperf
import pytest

from gilmatrix.harness.bench import cpu_set, others_share, run_queue_share
from gilmatrix.harness.executors import CLOCK_TICKS, busy_cpu_seconds, run_queue_seconds
from tests.conftest import ROOT, harness, write_job

linux_schedstat = pytest.mark.skipif(
    not os.path.exists(f"/proc/self/task/{os.getpid()}/schedstat"), reason="no Linux schedstat here"
)
linux_stat = pytest.mark.skipif(busy_cpu_seconds(cpu_set()) is None, reason="no Linux /proc/stat here")


def test_the_share_is_the_wait_per_second_on_a_cpu() -> None:
    assert run_queue_share((1.0, 0.5), (1.2, 0.6)) == pytest.approx(0.5)
    assert run_queue_share((1.0, 0.5), (1.2, 0.4)) == 0.0  # a thread gone meanwhile: never negative
    assert run_queue_share((1.0, 0.5), (1.0, 0.6)) is None  # no time on a CPU: nothing to say
    assert run_queue_share((1.0, 0.5), None) is None  # unreadable


def test_the_others_share_is_other_work_per_second_and_cpu() -> None:
    # two CPUs busy 1.5 s of a 1 s call, 0.9 s of it the cell's: others used 0.3 of each CPU
    assert others_share(1.5, 0.9, 1.0, 2) == pytest.approx(0.3)
    assert others_share(0.9, 1.0, 1.0, 2) == pytest.approx(-0.05)  # a tick's jitter: kept as read
    assert others_share(1.0, 0.5, 1.5 / CLOCK_TICKS, 1) is None  # under 2 ticks: too short to say


@linux_stat
def test_busy_seconds_grow_with_work_on_the_cpu() -> None:
    allowed = cpu_set()
    cpu = min(allowed)
    before = busy_cpu_seconds(frozenset({cpu}))
    os.sched_setaffinity(0, {cpu})
    try:
        total = 0
        for i in range(3_000_000):  # ~0.2 s: many ticks
            total += i * i
    finally:
        os.sched_setaffinity(0, allowed)
    after = busy_cpu_seconds(frozenset({cpu}))
    assert before is not None and after is not None and after - before >= 5.0 / CLOCK_TICKS


@linux_schedstat
def test_the_seconds_on_a_cpu_grow_with_work() -> None:
    before = run_queue_seconds()
    assert before is not None
    total = 0
    for i in range(300_000):
        total += i * i
    after = run_queue_seconds()
    assert after is not None and after[0] > before[0] and after[1] >= before[1]


def cells(workers: list[tuple[str, int]]) -> list[dict]:
    return [
        {
            "id": f"crunch/{executor}/{n}",
            "interpreter": "host",
            "workload": "crunch",
            "implementation": "crunch",
            "kind": "cpu",
            "executor": executor,
            "workers": n,
            "params": {"tasks": 2, "size": 400_000},  # calls of ~0.1 s: many clock ticks
        }
        for executor, n in workers
    ]


@linux_schedstat
def test_a_worker_records_each_calls_wait_where_its_workers_fit_the_cpus(tmp_path: Path) -> None:
    too_many = len(cpu_set()) + 1  # more workers than CPUs: they wait for each other, not recorded
    job = write_job(
        tmp_path,
        cells([("sequential", 1), ("processes", 1), ("threads", too_many)]),
        timeout=120,
        pyperf={"processes": 2, "values": 3, "warmups": 1, "loops": 2},
    )
    proc = harness("run", job, tmp_path)
    assert proc.returncode == 0, proc.stderr
    for name in ("crunch__sequential__1", "crunch__processes__1"):
        bench = pyperf.Benchmark.load(str(tmp_path / f"cells/host/{name}.json"))
        for run in bench.get_runs():
            if not run.values:
                continue
            waits = [float(x) for x in run.get_metadata()["gilmatrix_waits"].split()]
            references = run.get_metadata()["gilmatrix_references"].split()
            assert len(waits) == len(references) >= 3 and all(w >= 0.0 for w in waits)
    crowded = pyperf.Benchmark.load(str(tmp_path / f"cells/host/crunch__threads__{too_many}.json"))
    assert all("gilmatrix_waits" not in r.get_metadata() for r in crowded.get_runs())
    for name in ("crunch__sequential__1", "crunch__processes__1", f"crunch__threads__{too_many}"):
        bench = pyperf.Benchmark.load(str(tmp_path / f"cells/host/{name}.json"))
        for run in (r for r in bench.get_runs() if r.values):  # every cell: other work's share
            others = [float(x) for x in run.get_metadata()["gilmatrix_others"].split()]
            assert len(others) == len(run.get_metadata()["gilmatrix_references"].split())
            assert all(-0.5 < share < 1.5 for share in others)  # a share, give or take a tick


SHARED_CPU = textwrap.dedent(
    """
    import os, subprocess, sys
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    os.sched_setaffinity(burner.pid, {cpu})
    try:
        from gilmatrix.harness.bench import CellTimer
        cell = {"id": "c", "interpreter": "host", "workload": "crunch", "implementation": "crunch",
                "kind": "cpu", "executor": "sequential", "workers": 1,
                "params": {"tasks": 4, "size": 20000}}
        timer = CellTimer(cell)
        for _ in range(6):
            timer(16)
        print(" ".join(str(share) for share, _ in CellTimer.waits))
        print(" ".join(str(share) for share, _ in CellTimer.others))
    finally:
        burner.kill()
    """
)


@linux_schedstat
def test_a_call_sharing_its_cpu_with_a_busy_process_shows_the_wait() -> None:
    """One CPU, the worker and a busy loop on it: the scheduler gives each about half, so each
    call waits on the run queue for a good part of its time — whatever else the machine runs."""
    proc = subprocess.run(
        [sys.executable, "-c", SHARED_CPU], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    waits, others = ([float(x) for x in line.split()] for line in proc.stdout.splitlines())
    assert len(waits) == 6
    assert sorted(waits)[3] > 0.3  # ~1 expected (two runnable, one CPU)
    # the busy loop had about half the CPU: /proc/stat says so (more if the machine adds work)
    assert len(others) == 6 and sorted(others)[3] > 0.3


def test_the_report_reads_each_values_wait_zeros_included() -> None:
    from gilmatrix.reports.results import value_references

    facts = {"gilmatrix_waits": "0.5 0 0.25 0.0"}
    assert value_references(facts, 3, "gilmatrix_waits", zero=True) == [0.0, 0.25, 0.0]
    assert value_references(facts, 3, "gilmatrix_waits") is None  # a reference is never 0
    assert value_references({"gilmatrix_waits": "0.1 nan"}, 2, "gilmatrix_waits", zero=True) is None
