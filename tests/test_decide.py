"""Budget where it buys verdicts (runner/run/decide.py): which comparisons a cell is part of, when
one is decided, and a real run whose clear comparisons stop early."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gilmatrix.comparisons import comparisons
from gilmatrix.run.decide import decided_cells, is_decided
from gilmatrix.run.schedule import Sampling
from tests.conftest import ROOT, RUNNING_ID, gilmatrix, local_run, small_matrix


def test_a_cell_is_compared_as_the_report_compares_it() -> None:
    keys = [
        (interp, f"crunch/{cell}")
        for interp in ("3.13", "3.14", "3.14t")
        for cell in ("sequential/1", "threads/2", "processes/2", "threads/4")
    ]
    found = comparisons(keys)
    assert found[("3.14", "crunch/threads/2")] == {
        ("3.14", "crunch/sequential/1"),  # the workload's sequential cell
        ("3.14", "crunch/processes/2"),  # another model at the same worker count
        ("3.13", "crunch/threads/2"),  # the previous version
        ("3.14t", "crunch/threads/2"),  # the free-threaded build against its default build
    }
    assert found[("3.14", "crunch/sequential/1")] == {
        ("3.14", "crunch/threads/2"),
        ("3.14", "crunch/processes/2"),
        ("3.14", "crunch/threads/4"),
        ("3.13", "crunch/sequential/1"),
        ("3.14t", "crunch/sequential/1"),
    }
    # symmetric, and a lone cell is in no comparison
    assert all(key in found[other] for key, others in found.items() for other in others)
    assert comparisons([("3.13", "crunch/sequential/1")]) == {("3.13", "crunch/sequential/1"): set()}


def test_a_comparison_is_decided_beyond_the_floor_or_within_it_not_across_it() -> None:
    assert is_decided([1.0, 1.02, 0.98, 1.01], [2.0, 2.02, 1.99, 2.01], floor=0.05)  # 2x: a verdict
    assert is_decided([1.0, 1.001, 0.999, 1.0], [1.001, 1.0, 1.0, 0.999], floor=0.05)  # a sure tie
    assert not is_decided([1.0, 1.1, 0.9, 1.05], [1.05, 1.15, 0.95, 1.1], floor=0.02)  # 5% in 10%
    assert not is_decided([1.0], [2.0], floor=0.0)  # one process: no interval
    # the floor is the report's inside a run (confidence.within_run_floor): 1% whatever the run's
    # band, so a clear 5% is a verdict under a 40% band as under a 7% one — before session 17 it
    # was a "sure tie" within the 40% band (28% for the means), a verdict the report would not
    # make now; and an interval across 1% stays open under any band
    for band in (0.40, 0.07):
        assert is_decided([1.0, 1.01, 0.99, 1.0], [1.05, 1.06, 1.04, 1.05], floor=band)
        assert not is_decided([1.0, 1.01, 0.99, 1.0], [1.01, 1.02, 1.0, 1.01], floor=band)


def test_a_cell_is_decided_only_when_all_its_comparisons_are() -> None:
    means = {
        ("3.13", "fetch/sequential/1"): [8.0, 8.1, 7.9, 8.0],
        ("3.13", "fetch/threads/2"): [4.0, 4.05, 3.95, 4.0],
        ("3.13", "fetch/processes/2"): [4.1, 3.6, 4.6, 3.9],  # within 10% of threads/2: open
    }
    found = decided_cells(means, floor=0.02)
    assert ("3.13", "fetch/sequential/1") in found  # 2x both: decided
    assert ("3.13", "fetch/threads/2") not in found and ("3.13", "fetch/processes/2") not in found


def test_sampling_stops_a_decided_cell_at_its_minimum_only_when_asked() -> None:
    deciding = Sampling(processes=3, target=0.001, min_processes=3, max_processes=20, decide=True)
    means = [1.0, 1.1, 0.9]
    assert deciding.stop(means[:2], 1.0, decided=True) is None  # below its minimum
    assert deciding.stop(means, 1.0, decided=True) == "decided"
    assert deciding.stop(means, 1.0, decided=False) is None
    plain = Sampling(processes=3, target=0.001, min_processes=3, max_processes=20)
    assert plain.stop(means, 1.0, decided=True) is None
    assert deciding.to_json()["decide"] is True


@pytest.mark.integration
def test_a_run_stops_the_cells_whose_comparisons_are_decided(tmp_path: Path) -> None:
    """fetch (sleeps: a busy machine barely moves it) on 2 threads is twice as fast as sequential:
    decided after a few processes, long before a target no cell can meet."""
    matrix = small_matrix(
        tmp_path,
        executors="[sequential, threads]",
        workers="[2]",
        extra_profile="    precision: {target: 0.0001, min_processes: 3, max_processes: 12, decide: true}",
    )
    text = matrix.read_text().replace("processes: 1, ", "").replace("loops: 1}", "min_time: 0.01}")
    matrix.write_text(
        text.replace("fetch: {params: {tasks: 4, wait_ms: 2}}", "fetch: {params: {tasks: 4, wait_ms: 5}}")
    )
    proc = gilmatrix(*local_run(matrix, tmp_path / "out", "d"), "--only", "fetch", cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((tmp_path / "out" / "results" / "d" / "manifest.json").read_text())
    assert manifest["schedule"]["sampling"]["decide"] is True
    stopped = {
        c["id"]: (c["stopped"], c["processes"]) for c in manifest["cells"] if c["interpreter"] == RUNNING_ID
    }
    assert stopped["fetch/sequential/1"][0] == stopped["fetch/threads/2"][0] == "decided", stopped
    assert all(processes < 12 for _, processes in stopped.values())
    assert "its comparisons decided" in proc.stdout + proc.stderr
