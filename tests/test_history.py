"""The history store: runs kept as delivered, an SQLite index rebuilt from them, and what
`gilmatrix history add` does with the same run twice, another run under a used id, a damaged
run, a run with failed cells and a run of another matrix. On copies of a real run
(tests/fixtures/real-smoke: 3.10-3.13 on this project's VM)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gilmatrix.errors import UserError
from gilmatrix.history.store import History, kept_files, run_digest
from tests.conftest import ROOT

REAL = Path(__file__).parent / "fixtures" / "real-smoke"


def copy_run(tmp_path: Path, name: str, run_id: str | None = None, started: str | None = None) -> Path:
    run = shutil.copytree(REAL, tmp_path / name)
    if run_id or started:
        edit(run, lambda m: m.update({k: v for k, v in (("run_id", run_id), ("started", started)) if v}))
    return run


def edit(run: Path, change) -> None:
    path = run / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def history_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gilmatrix.cli", "history", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_run_is_kept_byte_for_byte_and_its_cells_indexed(tmp_path):
    run = copy_run(tmp_path, "run")
    history = History(tmp_path / "history")
    added = history.add(run)
    assert (
        added.status == "added" and added.run_id == json.loads((run / "manifest.json").read_text())["run_id"]
    )
    kept = history.runs / added.run_id
    assert tree(kept) == {str(p): (run / p).read_bytes() for p in kept_files(run)}
    assert set(tree(kept)) == {"manifest.json", "3.10.json", "3.11.json", "3.12.json", "3.13.json"}
    manifest = json.loads((run / "manifest.json").read_text())
    ok = sum(c["status"] == "ok" for c in manifest["cells"])
    assert added.cells_ok == ok > 0
    (row,) = history.runs_table()
    assert row["run_id"] == added.run_id and row["cells_ok"] == ok and row["state"] == manifest["state"]
    series = history.series("crunch", "threads", 2, "3.12")
    assert len(series) == 1 and series[0]["mean"] > 0 and series[0]["processes"] >= 1
    low, high = series[0]["ci_low"], series[0]["ci_high"]
    assert (low is None) == (high is None) and (low is None or low < series[0]["mean"] < high)
    assert series[0]["version"].startswith("3.12")


def test_the_same_run_twice_changes_nothing(tmp_path):
    run = copy_run(tmp_path, "run")
    history = History(tmp_path / "history")
    history.add(run)
    before = tree(history.runs)
    rows = history.runs_table()
    again = history.add(run)
    assert again.status == "present"
    assert tree(history.runs) == before and history.runs_table() == rows


def test_another_run_under_a_used_id_is_refused_and_nothing_is_replaced(tmp_path):
    history = History(tmp_path / "history")
    first = copy_run(tmp_path, "first")
    history.add(first)
    before = tree(history.runs)
    other = copy_run(tmp_path, "other")
    suite = json.loads((other / "3.12.json").read_text())
    suite["benchmarks"][0]["runs"][-1]["values"][0] *= 1.5
    (other / "3.12.json").write_text(json.dumps(suite))
    with pytest.raises(UserError, match=r"holds another run with the id .*nothing was replaced"):
        history.add(other)
    assert tree(history.runs) == before and len(history.runs_table()) == 1


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda run: (run / "manifest.json").write_text("{not json"), "manifest.json"),
        (lambda run: (run / "manifest.json").unlink(), "manifest.json"),
        (
            lambda run: ((run / "3.12.json").unlink(), os.symlink("/etc/passwd", run / "3.12.json")),
            "3.12.json",
        ),
        (lambda run: ((run / "3.12.json").unlink(), os.mkfifo(run / "3.12.json")), "3.12.json"),
        (lambda run: (run / "3.11.json").unlink(), "3.11.json: absent"),
    ],
    ids=["manifest-unreadable", "manifest-absent", "suite-links-out", "suite-fifo", "suite-absent"],
)
def test_a_damaged_run_is_refused_and_nothing_is_written(tmp_path, damage, message):
    history = History(tmp_path / "history")
    history.add(copy_run(tmp_path, "good", run_id="good"))
    before = tree(history.root)
    bad = copy_run(tmp_path, "bad", run_id="bad")
    damage(bad)
    with pytest.raises(UserError, match=message):
        history.add(bad)
    assert tree(history.root) == before  # no run folder, no staging left, the index unchanged
    assert [r["run_id"] for r in history.runs_table()] == ["good"]


def test_a_run_with_failures_and_an_unparseable_suite_is_kept_and_says_so(tmp_path):
    run = copy_run(tmp_path, "run", run_id="partial")
    failed: list[str] = []

    def fail_one(manifest: dict[str, Any]) -> None:
        cell = next(c for c in manifest["cells"] if c["interpreter"] == "3.10" and c["status"] == "ok")
        cell.update(status="failed", reason="MemoryError in a worker")
        manifest["state"] = "partial"
        failed.append(cell["id"])

    edit(run, fail_one)
    suite = json.loads((run / "3.10.json").read_text())  # a failed cell has no result
    suite["benchmarks"] = [b for b in suite["benchmarks"] if b["metadata"]["name"] != failed[0]]
    (run / "3.10.json").write_text(json.dumps(suite))
    (run / "3.11.json").write_text('{"version": "1.0", "benchmarks": [{"broken": true}]}')
    added = History(tmp_path / "history").add(run)
    assert added.status == "added" and added.cells_other > 0
    assert any(p.startswith("3.11: results file 3.11.json unreadable") for p in added.problems)
    # a kept run is never rewritten: no advice to resume it (the history keeps no cells/ folder)
    assert not any("--resume" in p for p in added.problems)
    kept = History(tmp_path / "history").runs / "partial"
    assert (kept / "3.11.json").read_bytes() == (run / "3.11.json").read_bytes()  # as delivered
    with sqlite3.connect(kept.parent.parent / "index.sqlite") as db:
        statuses = dict(
            db.execute(
                "SELECT status, count(*) FROM cells WHERE run_id = 'partial' GROUP BY status"
            ).fetchall()
        )
        reason = db.execute("SELECT reason FROM cells WHERE status = 'failed'").fetchone()[0]
    assert statuses["failed"] >= 1 and reason == "MemoryError in a worker"
    assert (History(tmp_path / "history").runs_table()[0]["state"]) == "partial"


def test_a_run_of_another_matrix_is_kept_and_noted(tmp_path):
    history = History(tmp_path / "history")
    history.add(copy_run(tmp_path, "a", run_id="a", started="2026-11-01T00:00:00"))
    b = copy_run(tmp_path, "b", run_id="b", started="2026-11-08T00:00:00")
    edit(b, lambda m: m["matrix"].update(sha256="0" * 64))
    added = history.add(b)
    assert added.status == "added" and added.notes == (
        "its matrix differs from the one of a (the run before it)",
    )
    assert [r["run_id"] for r in history.runs_table()] == ["a", "b"]
    assert len(history.series("crunch", "threads", 2, "3.12")) == 2


def test_the_index_is_rebuilt_from_the_runs(tmp_path):
    history = History(tmp_path / "history")
    for number, day in ((1, "01"), (2, "08"), (3, "15")):
        history.add(copy_run(tmp_path, f"r{number}", run_id=f"r{number}", started=f"2026-11-{day}T00:00:00"))
    rows = history.runs_table()
    series = history.series()
    history.index_path.unlink()
    assert history.reindex() == 3
    strip = [{k: v for k, v in r.items() if k != "added"} for r in history.runs_table()]
    assert strip == [{k: v for k, v in r.items() if k != "added"} for r in rows]
    assert history.series() == series
    # digests are of names and bytes: a kept run's digest is the source's
    assert rows[0]["digest"] == run_digest(tmp_path / "r1", kept_files(tmp_path / "r1"))


def test_sync_brings_a_stale_index_in_line_with_the_runs(tmp_path):
    # the workflow's case: runs come from a git branch, the index from an older cache
    history = History(tmp_path / "history")
    for number, day in ((1, "01"), (2, "08")):
        history.add(copy_run(tmp_path, f"r{number}", run_id=f"r{number}", started=f"2026-11-{day}T00:00:00"))
    stale = history.index_path.read_bytes()
    history.add(copy_run(tmp_path, "r3", run_id="r3", started="2026-11-15T00:00:00"))
    full = history.series()
    history.index_path.write_bytes(stale)  # an index from before r3
    shutil.rmtree(history.runs / "r1")  # and a run since taken out of the branch
    assert history.sync() == (["r3"], ["r1"])
    assert [r["run_id"] for r in history.runs_table()] == ["r2", "r3"]
    assert history.series() == [r for r in full if r["run_id"] != "r1"]
    assert history.sync() == ([], [])  # in line: nothing to do


def test_an_add_interrupted_after_the_copy_is_indexed_by_the_next(tmp_path):
    run = copy_run(tmp_path, "run", run_id="cut")
    history = History(tmp_path / "history")
    history.runs.mkdir(parents=True)
    shutil.copytree(run, history.runs / "cut")  # copied, then the machine stopped: not indexed
    assert history.add(run).status == "added" and history.runs_table()[0]["run_id"] == "cut"


def test_the_command_adds_lists_and_refuses_with_exit_2(tmp_path):
    history = tmp_path / "history"
    run = copy_run(tmp_path, "run", run_id="weekly-1")
    first = history_cli("--history", str(history), "add", str(run))
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("weekly-1: added (") and "cells measured" in first.stdout
    again = history_cli("--history", str(history), "add", str(run))
    assert again.returncode == 0 and "already in the history" in again.stdout
    listed = history_cli("--history", str(history), "list")
    assert listed.returncode == 0 and listed.stdout.startswith("weekly-1  ")
    missing = history_cli("--history", str(history), "add", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "error:" in missing.stdout and "Traceback" not in missing.stderr
