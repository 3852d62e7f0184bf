"""Guards of a run folder and of what a run says: one writer per run folder (a second run or
resume refused at once, a SIGKILLed holder's lock never in the way), a resume keeps the run's
own backend and settings, the exit code is never 0 with cells failed or missing, and the
progress counts describe what really runs."""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gilmatrix.run.estimate import estimate_seconds, needed_processes
from gilmatrix.run.execute import exit_code
from gilmatrix.run.schedule import CellState, Sampling
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


def progress_of(stderr: str) -> tuple[dict[str, int], list[tuple[int, int]]]:
    """The announcement's figures and every progress counter [k/T] of a run's output."""
    found = re.search(
        r"^(\d+) cells planned: (\d+) to run(?:, (\d+) done before)?, (\d+) skipped$", stderr, re.M
    )
    assert found, stderr
    planned, to_run, before, skipped = (int(g or 0) for g in found.groups())
    reasons = sum(int(n) for n in re.findall(r"^   (\d+) skipped, ", stderr, re.M))
    counters = [(int(k), int(t)) for k, t in re.findall(r"^\[\s*(\d+)/(\d+) ", stderr, re.M)]
    return {
        "planned": planned,
        "to_run": to_run,
        "before": before,
        "skipped": skipped,
        "reasons": reasons,
    }, counters


@pytest.mark.integration
def test_sigkilled_runs_lock_does_not_block_resume_and_its_counts_add_up(tmp_path: Path) -> None:
    """SIGKILL of a run's process group mid-run leaves `.lock` naming the dead process; the
    kernel dropped the flock, so --resume goes ahead at once, and announces the cells done
    before apart from those it runs."""
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

    resumed = gilmatrix(*run_args(matrix, out, "--resume", str(run_dir)))
    assert resumed.returncode == 0, resumed.stderr
    assert statuses(run_dir) == {"ok": 9}
    figures, counters = progress_of(resumed.stderr)
    assert figures["planned"] == 9 and figures["skipped"] == 0
    assert figures["before"] == done_before >= 1  # the cells merged before the kill
    assert figures["to_run"] + figures["before"] == 9
    assert counters and {t for _, t in counters} == {figures["to_run"]}
    assert max(k for k, _ in counters) == figures["to_run"]


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


@pytest.mark.parametrize("command", ["run", "matrix"])
def test_a_run_that_could_have_no_interpreter_exits_1_and_says_what_would_work(
    tmp_path: Path, command: str
) -> None:
    """The local backend with none of the matrix' interpreters here: not a success with an
    empty report, but exit 1 naming what this machine's local discovery does find (here a
    made-up pyenv root with 3.12 and 3.13t, and nothing on PATH or in uv's folder)."""
    pyenv = tmp_path / "pyenv"
    for version in ("3.12.4", "3.13.1t"):
        (pyenv / "versions" / version / "bin").mkdir(parents=True)
    (tmp_path / "empty").mkdir()
    env = {
        **os.environ,
        "PYENV_ROOT": str(pyenv),
        "UV_PYTHON_INSTALL_DIR": str(tmp_path / "empty"),
        "PATH": str(tmp_path / "empty"),
    }
    matrix = small_matrix(tmp_path, ["3.15", "3.15t"], executors="[sequential, threads]")
    out = tmp_path / "out"
    args = run_args(matrix, out, "--run-id", "n")
    if command == "matrix":  # what `nox -s matrix` runs: the run, then its report
        args = ["matrix", *args[1:]]
    run = gilmatrix(*args, env=env)
    assert run.returncode == 1, run.stderr
    assert statuses(out / "results" / "n") == {"skipped": 18}
    assert (
        "exit 1: no cell was measured: no interpreter could be had: 3.15: no CPython 3.15 found" in run.stderr
    )
    assert (
        "The local backend finds CPython 3.12, 3.13t on this machine (a matrix can name those)" in run.stderr
    )


def test_what_would_work_for_docker_names_sources_download_base_and_the_local_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gilmatrix.cli import _what_would_work

    (tmp_path / "versions" / "3.14.0" / "bin").mkdir(parents=True)
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path))
    monkeypatch.setenv("UV_PYTHON_INSTALL_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("PATH", str(tmp_path / "none"))
    hint = _what_would_work("docker")
    assert "--sources DIR" in hint and "--download-base URL" in hint
    assert "--backend local: it finds CPython 3.14 on this machine" in hint


def test_a_run_whose_every_cell_is_unsupported_exits_1_and_says_so(tmp_path: Path) -> None:
    """Sub-interpreters only, before 3.14: nothing to measure, said as such (not as missing
    interpreters)."""
    matrix = small_matrix(tmp_path, executors="[interpreters]")
    out = tmp_path / "out"
    run = gilmatrix(*run_args(matrix, out, "--run-id", "u", "--python", PYTHON))
    if sys.version_info >= (3, 14):
        pytest.skip("sub-interpreters are supported on this interpreter")
    assert run.returncode == 1, run.stderr
    assert "exit 1: no cell was measured: every cell of the plan is unsupported (interpreters: " in run.stderr
    assert "no interpreter could be had" not in run.stderr and "local backend finds" not in run.stderr


@pytest.mark.integration
def test_progress_totals_count_only_the_cells_that_run(tmp_path: Path) -> None:
    """A plan with cells skipped two ways — sub-interpreters before 3.14 (by the plan) and an
    interpreter that cannot be prepared (a --python that is not there) — with --only mixing an
    interpreter and a workload: the announcement adds up to the plan, every progress counter's
    total is the cells that run, and the end's counts match."""
    out = tmp_path / "out"
    matrix = small_matrix(tmp_path, [RUNNING_ID, "3.15t"], executors="[sequential, threads, interpreters]")
    only = ["--only", RUNNING_ID, "--only", "3.15t", "--only", "crunch", "--only", "fetch"]
    plan = gilmatrix("plan", "--matrix", str(matrix), "--json", *only)
    assert plan.returncode == 0, plan.stderr
    cells = json.loads(plan.stdout)["cells"]
    runnable = [c for c in cells if c["interpreter"] == RUNNING_ID and c["status"] == "planned"]
    assert runnable and len(runnable) < len(cells)
    run = gilmatrix(
        *run_args(matrix, out, "--run-id", "p", *only, "--python", PYTHON),
        "--python",
        f"3.15t={tmp_path / 'no-such-python'}",
    )
    assert run.returncode == 0, run.stderr
    figures, counters = progress_of(run.stderr)
    assert figures["planned"] == len(cells)
    assert figures["to_run"] == len(runnable)
    assert figures["skipped"] == figures["reasons"] == len(cells) - len(runnable)
    assert "3.15t not available" in run.stderr
    assert counters and {t for _, t in counters} == {len(runnable)}
    assert [k for k, _ in counters if k] == sorted(k for k, _ in counters if k)
    assert max(k for k, _ in counters) == len(runnable)
    assert statuses(out / "results" / "p") == {"ok": len(runnable), "skipped": len(cells) - len(runnable)}
    assert f"— {len(runnable)} ok, {len(cells) - len(runnable)} skipped" in run.stderr


def test_estimate_gives_calibrating_first_workers_their_own_weight() -> None:
    """A cell's first worker calibrates and lives longer than its later ones: a cell with a
    later worker is estimated from it, a cell that has not run from one first worker then later
    ones (the mean of all lives would say 8 s here, not 6 s); a cell that had its worker in this
    round gets only what it still needs; max_seconds caps a cell."""
    fixed = Sampling(processes=3)
    ran = CellState("3.13", "crunch/threads/2", means=[1.0, 1.0], seconds=[3.0, 1.0])
    fresh = CellState("3.13", "crunch/threads/1")
    assert estimate_seconds(fixed, [ran, fresh], [ran, fresh]) == pytest.approx(1.0 + 3.0 + 2 * 1.0)
    assert estimate_seconds(fixed, [ran, fresh], [fresh], [ran]) == pytest.approx(1.0 + 3.0 + 2 * 1.0)
    done = CellState("3.13", "crunch/threads/4", means=[1.0] * 3, seconds=[3.0, 1.0, 1.0])
    assert estimate_seconds(fixed, [done], [], [done]) == 0  # has its 3: stops at the round's end
    assert estimate_seconds(fixed, [ran, fresh], [ran], overhead=1.5) == pytest.approx(1.5)
    assert estimate_seconds(fixed, [fresh], [fresh]) is None  # nothing has run yet
    capped = Sampling(processes=4, target=0.02, min_processes=4, max_processes=12, max_seconds=4.5)
    assert estimate_seconds(capped, [ran], [ran]) == pytest.approx(1.0)  # 0.5 s left: one worker


def test_estimate_expects_the_processes_the_interval_asks_for_and_the_runs_budget() -> None:
    """Adaptive: a cell at ±4% with 4 processes and a ±2% target needs about 4 × (4/2)² = 16,
    capped at max_processes; one at its target needs no more than min_processes; once the
    run's budget (run_minutes) is spent, a round more is all that is left."""
    adaptive = Sampling(processes=4, target=0.02, min_processes=4, max_processes=12)
    wide = [0.96, 1.04, 0.96, 1.04]  # half-width t(0.975, 3) * 0.0462 / 2 = ±7.3%
    assert needed_processes(adaptive, wide) == 12
    assert needed_processes(adaptive, [1.0, 1.001, 0.999, 1.0]) == 4
    assert needed_processes(adaptive, [1.0]) == 4  # no interval yet: the minimum
    loose = Sampling(processes=4, target=0.10, min_processes=4, max_processes=12)
    assert needed_processes(loose, wide) == 4 * 1  # ceil(4 × 0.73²) = 3 → the minimum, 4
    cells = [
        CellState("3.13", f"c/threads/{i}", means=list(wide), seconds=[2.0, 1.0, 1.0, 1.0]) for i in range(3)
    ]
    assert estimate_seconds(adaptive, cells, cells) == pytest.approx(3 * 8 * 1.0)
    budget = Sampling(processes=4, target=0.02, min_processes=4, max_processes=12, run_seconds=60)
    assert estimate_seconds(budget, cells, cells, run_left=5.0) == pytest.approx(5.0 + 3 * 1.0)
    assert estimate_seconds(budget, cells, cells, run_left=-1.0) == pytest.approx(3 * 1.0)
    assert estimate_seconds(budget, cells, cells, run_left=1000.0) == pytest.approx(3 * 8 * 1.0)
