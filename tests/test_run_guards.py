"""Guards of a run folder and of what a run says: one writer per run folder (a second run or
resume refused at once, a SIGKILLed holder's lock never in the way), a resume keeps the run's
own backend and settings, the exit code is never 0 with cells failed or missing, and the
progress counts describe what really runs."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gilmatrix.run.execute import exit_code
from tests.conftest import ROOT, RUNNING_ID, gilmatrix, small_matrix

PYTHON = f"{RUNNING_ID}={sys.executable}"


def run_args(matrix: Path, out: Path, *extra: str) -> list[str]:
    return ["run", "--matrix", str(matrix), "--backend", "local", "--out", str(out), *extra]


def popen(args: list[str], **kwargs) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "gilmatrix.cli", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        **kwargs,
    )


def lock_holder(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / ".lock").read_text())
    except (OSError, ValueError):
        return None


def wait_for(what, proc: subprocess.Popen[str], timeout: float = 300) -> None:
    """Poll until ``what()`` (a hang guard, not a timed assertion)."""
    deadline = time.monotonic() + timeout
    while not what():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "hang guard"
        time.sleep(0.01)


def lock_is_held(run_dir: Path) -> bool:
    fd = os.open(run_dir / ".lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.rglob("*") if p.is_file()}


def statuses(run_dir: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for cell in json.loads((run_dir / "manifest.json").read_text())["cells"]:
        counts[cell["status"]] = counts.get(cell["status"], 0) + 1
    return counts


@pytest.mark.integration
def test_second_writer_is_refused_and_the_first_run_is_unharmed(tmp_path: Path) -> None:
    """Two real runs on one folder: while the first holds the lock (stopped with SIGSTOP, so it
    provably still runs), a `--resume` and a `run --run-id` of the same folder are refused with
    exit 2, naming the holder, and write nothing; the first then completes every cell."""
    out = tmp_path / "out"
    matrix = small_matrix(tmp_path, executors="[sequential, threads]")
    run_dir = out / "results" / "one"
    first = popen(run_args(matrix, out, "--run-id", "one", "--python", PYTHON))
    try:
        wait_for(lambda: (lock_holder(run_dir) or {}).get("pid") == first.pid, first)
        wait_for(lambda: (run_dir / "manifest.json").exists(), first)
        os.kill(first.pid, signal.SIGSTOP)
        assert lock_is_held(run_dir)
        before = snapshot(run_dir)
        resumed = gilmatrix(*run_args(matrix, out, "--resume", str(run_dir), "--python", PYTHON), timeout=120)
        assert resumed.returncode == 2, resumed.stderr
        assert f"{run_dir} is being written by process {first.pid} (started " in resumed.stderr
        assert "Traceback" not in resumed.stderr
        again = gilmatrix(*run_args(matrix, out, "--run-id", "one", "--python", PYTHON), timeout=120)
        assert again.returncode == 2 and "exists already" in again.stderr, again.stderr
        assert snapshot(run_dir) == before  # the refused processes wrote nothing
    finally:
        os.kill(first.pid, signal.SIGCONT)
    _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["state"] == "complete"
    assert len(manifest["cells"]) == 9 and {c["status"] for c in manifest["cells"]} == {"ok"}
    assert not lock_is_held(run_dir) and lock_holder(run_dir) is None  # released, emptied


@pytest.mark.integration
def test_resume_keeps_the_runs_backend_and_refuses_another(tmp_path: Path) -> None:
    """A local run resumed with --backend docker, or another --python, is refused (exit 2,
    saying why) before anything is touched; resumed without --backend (auto picks docker when an
    engine answers) it continues on its own local backend with its own --python."""
    out = tmp_path / "out"
    matrix = small_matrix(tmp_path, executors="[sequential]")
    run_dir = out / "results" / "r"
    made = gilmatrix(*run_args(matrix, out, "--run-id", "r", "--only", "crunch", "--python", PYTHON))
    assert made.returncode == 0, made.stderr
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["backend"]["name"] == "local"
    assert manifest["backend"]["settings"]["python"] == {RUNNING_ID: sys.executable}
    before = snapshot(run_dir)

    docker = gilmatrix("run", "--matrix", str(matrix), "--resume", str(run_dir), "--backend", "docker")
    assert docker.returncode == 2, docker.stderr
    assert "made with the local backend" in docker.stderr and "not --backend docker" in docker.stderr
    other = tmp_path / "python3"
    other.symlink_to(sys.executable)
    python = gilmatrix(
        "run", "--matrix", str(matrix), "--resume", str(run_dir), "--python", f"{RUNNING_ID}={other}"
    )
    assert python.returncode == 2, python.stderr
    assert f"--python {RUNNING_ID}={sys.executable}" in python.stderr
    assert "Traceback" not in docker.stderr + python.stderr
    assert snapshot(run_dir) == before

    own = gilmatrix("run", "--matrix", str(matrix), "--out", str(out), "--resume", str(run_dir))
    assert own.returncode == 0, own.stderr
    assert "local backend (the run's own)" in own.stderr
    resumed = json.loads((run_dir / "manifest.json").read_text())
    assert resumed["backend"]["name"] == "local" and resumed["state"] == "complete"
    assert resumed["interpreters"][RUNNING_ID]["environment"]["backend"] == "local"


@pytest.mark.integration
def test_sigkilled_runs_lock_does_not_block_resume(tmp_path: Path) -> None:
    """SIGKILL of a run's process group mid-run leaves `.lock` naming the dead process; the
    kernel dropped the flock, so --resume goes ahead at once."""
    out = tmp_path / "out"
    matrix = small_matrix(tmp_path, executors="[sequential, threads]")
    run_dir = out / "results" / "k"
    first = popen(run_args(matrix, out, "--run-id", "k", "--python", PYTHON))
    assert first.stderr is not None
    deadline = time.monotonic() + 300
    for line in first.stderr:  # until the first cell is done
        if ": ok " in line or time.monotonic() > deadline:
            break
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=60)
    assert (lock_holder(run_dir) or {}).get("pid") == first.pid  # stale content ...
    assert not lock_is_held(run_dir)  # ... but no lock
    cells = run_dir / "cells" / RUNNING_ID
    done_before = len([p for p in cells.glob("*.json") if not p.name.endswith(".status.json")])
    assert done_before >= 1  # killed after a cell was merged: the resume keeps it

    resumed = gilmatrix(*run_args(matrix, out, "--resume", str(run_dir)))
    assert resumed.returncode == 0, resumed.stderr
    assert statuses(run_dir) == {"ok": 9}


@pytest.mark.integration
def test_a_failing_cell_makes_the_exit_code_1_and_resume_reruns_it(tmp_path: Path) -> None:
    out = tmp_path / "out"
    matrix = small_matrix(tmp_path, executors="[sequential, threads]")
    run_dir = out / "results" / "f"
    failed = gilmatrix(
        *run_args(matrix, out, "--run-id", "f", "--only", "crunch", "--python", PYTHON),
        env={**os.environ, "GILMATRIX_FAULTS": "crunch/threads/2=raise"},
    )
    assert failed.returncode == 1, failed.stderr
    assert statuses(run_dir) == {"ok": 2, "failed": 1}
    assert "exit 1: 1 of 3 cells did not finish ok" in failed.stderr
    assert json.loads((run_dir / "manifest.json").read_text())["state"] == "partial"
    fixed = gilmatrix(*run_args(matrix, out, "--resume", str(run_dir)))
    assert fixed.returncode == 0, fixed.stderr
    assert statuses(run_dir) == {"ok": 3}


def test_exit_code_is_never_0_with_cells_missing_failed_or_timed_out() -> None:
    assert exit_code(0, {"ok": 3, "skipped": 5}) == 0
    for bad in ("missing", "failed", "timeout"):
        assert exit_code(0, {"ok": 3, bad: 1}) == 1
    assert exit_code(130, {"ok": 1, "missing": 2}) == 130
    assert exit_code(1, {"ok": 3}) == 1  # the run loop's own verdict stands
