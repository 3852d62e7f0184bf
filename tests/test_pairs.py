"""Call-by-call pairs (reports/pairs.py, harness/bench.py Partner): a cell's values against its
workload's sequential run timed around each call in the same process, on data whose truth is
known, and the partner's figures as a real worker records them."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pyperf
import pytest

from gilmatrix.reports.compare import version_changes
from gilmatrix.reports.results import FRAME_COLUMNS
from gilmatrix.reports.stats import cell_table, compare_cells, compare_pairs, trimmed, welch_from_stats
from tests.conftest import ROOT, RUNNING_ID, gilmatrix, harness, local_run, small_matrix, write_job

SEQ = 0.020  # the sequential run's true seconds per call


def cell_rows(
    rng: np.random.Generator,
    interpreter: str,
    executor: str,
    workers: int,
    true: float,
    processes: int = 6,
    values: int = 3,
    machine_sd: float = 0.2,
    paired: bool = True,
    seq: float = SEQ,
) -> list[dict]:
    """One cell's values: each process on a machine ``machine_sd`` slower or faster than the
    next (log-normal), each call a little more; the partner (sequential, true SEQ) feels the same
    call's machine. The sequential cell has no partner (it is the partner); ``seq``: the
    sequential run's true seconds on this interpreter."""
    rows = []
    for run in range(processes):
        process_speed = math.exp(rng.normal(0.0, machine_sd))
        for _ in range(values):
            speed = process_speed * math.exp(rng.normal(0.0, 0.02))
            partner = seq * speed * math.exp(rng.normal(0.0, 0.003))
            rows.append(
                {
                    "interpreter": interpreter,
                    "workload": "crunch",
                    "kind": "cpu",
                    "executor": executor,
                    "workers": workers,
                    "cell": f"crunch/{executor}/{workers}",
                    "tasks": 4,
                    "params": '{"size": 50000, "tasks": 4}',
                    "free_threaded": False,
                    "gil": "true",
                    "gil_reenabled_by": "",
                    "model": "sequential" if executor == "sequential" else executor,
                    "start_method": "",
                    "async_mode": "",
                    "pool_in_timing": "no",
                    "machine": "box",
                    "run": run,
                    "cpu_time": math.nan,
                    "parallelism": math.nan,
                    "cpu_class": "",
                    "peak_rss": math.nan,
                    "reference": math.nan,
                    "round": 0,
                    "partner": partner if paired and executor != "sequential" else math.nan,
                    "value": true * speed * math.exp(rng.normal(0.0, 0.003)),
                    "loops": 1,
                }
            )
    return rows


def table_of(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(FRAME_COLUMNS))
    return cell_table(frame)


def rows_by_cell(table: pd.DataFrame) -> dict[tuple[str, str], object]:
    return {(r.interpreter, r.cell): r for r in table.itertuples(index=False)}


def test_pairs_see_a_5_percent_difference_that_a_20_percent_machine_hides() -> None:
    rng = np.random.default_rng(11)
    rows = cell_rows(rng, "3.13", "sequential", 1, SEQ) + cell_rows(rng, "3.13", "threads", 2, 0.95 * SEQ)
    cells = rows_by_cell(table_of(rows))
    threads, seq = cells[("3.13", "crunch/threads/2")], cells[("3.13", "crunch/sequential/1")]
    assert threads.pair_n == 6 and math.isnan(seq.pair_mean)
    by_pairs = compare_cells(threads, seq, floor=0.15)
    assert by_pairs.significant and by_pairs.ratio == pytest.approx(0.95, rel=0.01)
    assert by_pairs.ratio_low > 0.93 and by_pairs.ratio_high < 0.97
    assert by_pairs.floor == pytest.approx(0.01)  # the machine's band is cancelled by the pairs
    raw = welch_from_stats(threads.mean, threads.proc_sd, 6, seq.mean, seq.proc_sd, 6, 0.15)
    assert not raw.significant  # the same processes, by their means: a tie


def test_two_paired_cells_compare_through_their_common_partner() -> None:
    rng = np.random.default_rng(12)
    rows = (
        cell_rows(rng, "3.13", "sequential", 1, SEQ)
        + cell_rows(rng, "3.13", "threads", 2, 0.9 * SEQ)
        + cell_rows(rng, "3.13", "processes", 2, 0.6 * SEQ)
    )
    cells = rows_by_cell(table_of(rows))
    cmp = compare_cells(cells[("3.13", "crunch/processes/2")], cells[("3.13", "crunch/threads/2")])
    assert cmp.significant and cmp.ratio == pytest.approx(0.6 / 0.9, rel=0.01)


def test_identical_cells_are_rarely_called_different() -> None:
    """An A/A test over 200 seeded machines: two execution models as fast as each other."""
    called = 0
    for seed in range(200):
        rng = np.random.default_rng(1000 + seed)
        rows = (
            cell_rows(rng, "3.13", "sequential", 1, SEQ, processes=4)
            + cell_rows(rng, "3.13", "threads", 2, SEQ, processes=4)
            + cell_rows(rng, "3.13", "processes", 2, SEQ, processes=4)
        )
        cells = rows_by_cell(table_of(rows))
        called += compare_cells(
            cells[("3.13", "crunch/threads/2")], cells[("3.13", "crunch/processes/2")]
        ).significant
    assert called <= 200 * 0.07


def test_cells_of_two_interpreters_compare_through_their_workloads_levels() -> None:
    """3.14 5% slower on every cell; a machine 5% from one process to the next. Each side's
    level pools the five paired cells' 30 processes, so the comparison of two cells is much
    tighter than their six processes each allow."""
    rng = np.random.default_rng(13)
    rows = []
    for interpreter, slower in (("3.13", 1.0), ("3.14", 1.05)):
        for executor, workers, share in (
            ("sequential", 1, 1.0),
            ("threads", 1, 1.0),
            ("threads", 2, 0.9),
            ("threads", 4, 0.9),
            ("processes", 2, 0.6),
            ("processes", 4, 0.5),
        ):
            true = SEQ * share * slower
            rows += cell_rows(rng, interpreter, executor, workers, true, machine_sd=0.05, seq=SEQ * slower)
    cells = rows_by_cell(table_of(rows))
    new, old = cells[("3.14", "crunch/processes/2")], cells[("3.13", "crunch/processes/2")]
    assert new.level_n == 30  # every paired process of the workload on its interpreter
    cmp = compare_pairs(new, old, floor=0.02)
    assert cmp is not None and cmp.ratio == pytest.approx(1.05, rel=0.02)
    assert cmp.significant
    by_means = welch_from_stats(new.mean, new.proc_sd, 6, old.mean, old.proc_sd, 6, 0.02)
    assert by_means.significant is False  # six processes a side: a tie
    assert math.log(cmp.ratio_high / cmp.ratio_low) < math.log(by_means.ratio_high / by_means.ratio_low) / 1.8
    seq = compare_pairs(cells[("3.14", "crunch/sequential/1")], cells[("3.13", "crunch/sequential/1")], 0.02)
    assert seq is not None and seq.ratio == pytest.approx(1.05, rel=0.02)
    # the report's version comparison takes the same route
    changes = version_changes(table_of(rows), 0.02).set_index("cell")
    assert changes.loc["crunch/processes/2", "ratio"] == pytest.approx(cmp.ratio)
    assert changes.loc["crunch/processes/2", "change"] == "regression"


def test_cells_without_partners_compare_as_before() -> None:
    rng = np.random.default_rng(14)
    rows = cell_rows(rng, "3.13", "sequential", 1, SEQ, paired=False) + cell_rows(
        rng, "3.13", "threads", 2, SEQ, paired=False
    )
    cells = rows_by_cell(table_of(rows))
    threads, seq = cells[("3.13", "crunch/threads/2")], cells[("3.13", "crunch/sequential/1")]
    assert threads.pair_n == 0 and threads.level_n == 0
    assert compare_pairs(threads, seq) is None
    cmp = compare_cells(threads, seq, 0.05)
    # by the test of cells without pairs: trimmed means of their process means (no references
    # recorded here: the raw ones)
    assert cmp.ratio == pytest.approx(trimmed(threads.series.raw)[0] / trimmed(seq.series.raw)[0])


def test_a_paired_worker_records_the_sequential_run_around_each_call(tmp_path: Path) -> None:
    cells = [
        {
            "id": f"crunch/{executor}/{workers}",
            "interpreter": "host",
            "workload": "crunch",
            "implementation": "crunch",
            "kind": "cpu",
            "executor": executor,
            "workers": workers,
            "params": {"tasks": 2, "size": 2000},
            "partner": "sequential",
        }
        for executor, workers in (("threads", 2), ("sequential", 1))
    ]
    job = write_job(tmp_path, cells, pyperf={"processes": 2, "values": 3, "warmups": 1, "loops": 2})
    proc = harness("run", job, tmp_path)
    assert proc.returncode == 0, proc.stderr
    threads = pyperf.Benchmark.load(str(tmp_path / "cells/host/crunch__threads__2.json"))
    for run in threads.get_runs():
        partners = [float(x) for x in run.get_metadata()["gilmatrix_partners"].split()]
        references = run.get_metadata()["gilmatrix_references"].split()
        assert len(partners) == len(references) >= 3  # every call at the final loop count
        assert all(p > 0 for p in partners)
        # the same tasks in one thread: the same order as the cell's own values per loop (the
        # medians: one call of a fraction of a millisecond can meet a busy runner's preemption)
        assert 0.1 < statistics.median(partners) / statistics.median(run.values) < 10
    seq = pyperf.Benchmark.load(str(tmp_path / "cells/host/crunch__sequential__1.json"))
    assert all("gilmatrix_partners" not in r.get_metadata() for r in seq.get_runs())  # it is the partner


def test_a_paired_run_stops_its_cells_on_their_ratios_and_the_report_compares_by_them(tmp_path: Path) -> None:
    """``pairing: calls`` end to end on the running interpreter: the job's cells carry their
    partner, each non-sequential cell's processes their ratios (the host's status says its
    precision was judged on them), and the report's comparisons are the pairs'."""
    matrix = small_matrix(
        tmp_path,
        executors="[sequential, threads]",
        workers="[2]",
        extra_profile="    pairing: calls\n    precision: {target: 0.05, min_processes: 3, max_processes: 4}",
    )
    text = matrix.read_text().replace("processes: 1, ", "")
    matrix.write_text(text.replace("loops: 1}", "min_time: 0.005}"))
    proc = gilmatrix(*local_run(matrix, tmp_path / "out", "p"), cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr
    run_dir = tmp_path / "out" / "results" / "p"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["schedule"]["pairing"] == "calls"
    job = json.loads(next((run_dir / "jobs").glob("*.json")).read_text())
    assert {c["id"]: c.get("partner") for c in job["cells"]} == {
        f"{w}/{e}": ("sequential" if e.startswith("threads") else None)
        for w in ("crunch", "fetch", "sum_squares")
        for e in ("sequential/1", "threads/2")
    }
    statuses = {
        path.name: json.loads(path.read_text())
        for path in (run_dir / "cells" / RUNNING_ID).glob("*.status.json")
    }
    assert {name: s["paired"] for name, s in statuses.items()} == {
        name: "threads" in name for name in statuses
    }
    from gilmatrix.reports.results import load_run

    table = cell_table(load_run(run_dir).frame)
    rows = {r.cell: r for r in table.itertuples(index=False)}
    threads, seq = rows["crunch/threads/2"], rows["crunch/sequential/1"]
    assert threads.pair_n == threads.processes >= 3
    assert threads.level_n == threads.processes  # the one paired cell of its workload
    cmp = compare_cells(threads, seq, 0.2)
    assert cmp.ratio == pytest.approx(math.exp(threads.pair_mean))
    assert cmp.floor == pytest.approx(0.01)
    # the report says how its comparisons were made
    report = gilmatrix("report", str(run_dir), "--out", str(tmp_path / "out"), "--no-chart-images")
    assert report.returncode == 0, report.stderr
    page = (tmp_path / "out" / "report" / "index.html").read_text()
    assert "<th>pairing</th>" in page and "3 cells timed their workload&#39;s sequential run" in page
    if "is made on values adjusted" in page:  # the covariate applied (enough processes to fit it)
        assert "every comparison within this run that is not made by pairs" in page
