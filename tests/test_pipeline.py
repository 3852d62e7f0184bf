"""The whole pipeline for real, on interpreters of this machine: run → pyperf results → report."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyperf
import pytest

from tests.conftest import ROOT, RUNNING_ID, gilmatrix, host_interpreters, local_run, small_matrix

pytestmark = pytest.mark.integration


def test_smoke_run_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "out"
    ids = host_interpreters(out)
    matrix = small_matrix(tmp_path, [*ids, "3.15t"])
    proc = gilmatrix(
        *local_run(matrix, out, "e2e", command="matrix"),
        "--python",
        "3.15t=/nonexistent/python3.15t",
    )
    assert proc.returncode == 0, proc.stderr
    index = Path(proc.stdout.strip().splitlines()[-1])
    assert index == out / "report" / "index.html" and index.is_file()
    assert "crunch/threads/2: ok" in proc.stderr  # progress, per cell

    run_dir = out / "results" / "e2e"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["state"] == "complete"
    assert manifest["matrix"]["sha256"] and manifest["stages"]["run"] > 0
    skipped = manifest["interpreters"]["3.15t"]
    assert skipped["status"] == "skipped" and "/nonexistent/python3.15t" in skipped["reason"]
    assert {c["status"] for c in manifest["cells"] if c["interpreter"] == "3.15t"} == {"skipped"}
    for interp_id in ids:
        entry = manifest["interpreters"][interp_id]
        assert entry["status"] == "ran", entry
        assert entry["environment"]["facts"]["version"].startswith(interp_id)
        suite = pyperf.BenchmarkSuite.load(str(run_dir / f"{interp_id}.json"))
        assert len(suite.get_benchmarks()) == 15
    ok = [c for c in manifest["cells"] if c["status"] == "ok"]
    assert len(ok) == 15 * len(ids)

    with open(index.parent / "data.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["interpreter"] for r in rows} == set(ids)
    assert len(rows) == 15 * len(ids)  # one row per cell
    with open(index.parent / "values.csv", newline="") as handle:
        values = list(csv.DictReader(handle))
    assert len(values) == 15 * len(ids) * 2  # 2 values per cell in this profile

    first, last = run_dir / f"{ids[0]}.json", run_dir / f"{ids[-1]}.json"
    compare = subprocess.run(
        [sys.executable, "-m", "pyperf", "compare_to", str(first), str(last)], capture_output=True, text=True
    )
    assert compare.returncode == 0, compare.stderr
    assert "crunch/threads/2" in compare.stdout


def test_interrupt_then_resume_keeps_finished_cells(tmp_path: Path) -> None:
    """SIGINT after some cells, then --resume: the same cells as an uninterrupted run, and the
    cells that had finished are not run again."""
    out = tmp_path / "out"
    matrix = small_matrix(tmp_path, [RUNNING_ID], executors="[sequential, threads]")
    command = [
        sys.executable,
        "-m",
        "gilmatrix.cli",
        *local_run(matrix, out, "r"),
    ]
    proc = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    seen = 0
    assert proc.stderr is not None
    deadline = time.monotonic() + 300
    for line in proc.stderr:
        seen += ": ok " in line
        if seen >= 3 or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) == 130, rest
    assert "--resume" in rest
    run_dir = out / "results" / "r"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["state"] == "interrupted"
    done = {c["id"]: c for c in manifest["cells"] if c["status"] == "ok"}
    assert 3 <= len(done) < len(manifest["cells"]), manifest["cells"]
    cells = run_dir / "cells" / RUNNING_ID
    before = {
        p.name: p.stat().st_mtime_ns for p in cells.glob("*.json") if not p.name.endswith(".status.json")
    }
    assert len(before) == len(done)

    resumed = gilmatrix(*local_run(matrix, out, resume=run_dir))
    assert resumed.returncode == 0, resumed.stderr
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["state"] == "complete"
    assert {c["status"] for c in manifest["cells"]} == {"ok"}
    assert len(manifest["cells"]) == 9  # 3 workloads x (sequential + threads at 1 and 2)
    after = {
        p.name: p.stat().st_mtime_ns for p in cells.glob("*.json") if not p.name.endswith(".status.json")
    }
    assert {name: after[name] for name in before} == before  # finished cells were not re-run
    suite = pyperf.BenchmarkSuite.load(str(run_dir / f"{RUNNING_ID}.json"))
    assert sorted(b.get_name() for b in suite.get_benchmarks()) == sorted(c["id"] for c in manifest["cells"])


def test_a_workloads_description_in_the_matrix_reaches_the_report(tmp_path: Path) -> None:
    """matrix.yaml's ``description:`` of a workload is what the report's verdict card says the
    workload tests (it is the user's text: braces in it are kept as they are)."""
    out = tmp_path / "out"
    matrix = small_matrix(tmp_path, [RUNNING_ID], executors="[sequential, threads]")
    words = "Our own words for crunch: a {dict} of squares."
    matrix.write_text(
        matrix.read_text().replace(
            "  crunch: {params: {tasks: 4, size: 5000}}",
            f'  crunch: {{description: "{words}", params: {{tasks: 4, size: 5000}}}}',
        )
    )
    run = gilmatrix(
        *local_run(matrix, out, "d", python=False),
        "--only",
        "crunch",
        "--python",
        f"{RUNNING_ID}={sys.executable}",
    )
    assert run.returncode == 0, run.stderr
    manifest = json.loads((out / "results" / "d" / "manifest.json").read_text())
    assert manifest["workloads"]["crunch"]["description"] == words
    report = gilmatrix("report", str(out / "results" / "d"), "--out", str(out), "--no-chart-images")
    assert report.returncode == 0, report.stderr
    html = (out / "report" / "index.html").read_text()
    assert "Our own words for crunch: a {dict} of squares." in html


def test_resume_refuses_a_changed_matrix(tmp_path: Path) -> None:
    out = tmp_path / "out"
    matrix = small_matrix(tmp_path, [RUNNING_ID], executors="[sequential]")
    first = gilmatrix(
        *local_run(matrix, out, "r"),
    )
    assert first.returncode == 0, first.stderr
    matrix.write_text(matrix.read_text().replace("size: 5000", "size: 6000"))
    again = gilmatrix(*local_run(matrix, out, resume=out / "results" / "r", python=False))
    assert again.returncode == 2
    assert "changed since this run" in again.stderr


def test_bad_arguments_exit_2_without_traceback(tmp_path: Path) -> None:
    old = tmp_path / "old-run"
    old.mkdir()
    (old / "manifest.json").write_text(json.dumps({"format": 99}))
    a_file = tmp_path / "file"
    a_file.write_text("")
    for args, expected in [
        (["run", "--resume", str(old)], "format 99"),
        (["report", str(old)], "format 99"),
        (
            ["run", "--backend", "local", "--only", "3.12", "--out", str(a_file / "out")],
            "cannot create the results folder",
        ),
        (["report", "--out", str(tmp_path / "empty")], "no runs under"),
        (["run", "--backend", "kubernetes"], "invalid choice"),
        (["run", "--python", "3.12"], "expected ID=PATH"),
        (["run", "--resume", str(tmp_path)], "no manifest.json"),
        (["report", str(tmp_path)], "no manifest.json"),
        (["run", "--only", "3.99"], "--only '3.99'"),
    ]:
        proc = gilmatrix(*args, env={**os.environ})
        assert proc.returncode == 2, (args, proc.stderr)
        assert expected in proc.stderr and "Traceback" not in proc.stderr, (args, proc.stderr)
