"""The run loop's logic, driven without interpreters: MatrixRun with a driver that answers the
harness protocol (gilmatrix.harness.contract.Op) from a script, and a noise monitor fed scripted
sentinel readings. Rounds, the stopping rule, disturbed windows, failing and dying drivers and a
full disk are checked here on exact figures; tests/test_local_backend.py and the docker tests
run the same loop with real drivers."""

from __future__ import annotations

import io
import json
import random
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyperf

from gilmatrix.backends.base import Backend, BackendOptions, Environment
from gilmatrix.harness.contract import Op, Status, WorkerFile, status_record
from gilmatrix.harness.drive import CellStore
from gilmatrix.matrix.model import load_matrix
from gilmatrix.matrix.plan import plan_cells
from gilmatrix.run import execute
from gilmatrix.run.driver import DriverDied
from gilmatrix.run.execute import MatrixRun
from gilmatrix.run.progress import Progress
from gilmatrix.run.schedule import NoiseMonitor, Reading
from gilmatrix.run.store import RunDir


def write_matrix(tmp_path: Path, precision: str) -> Path:
    path = tmp_path / "matrix.yaml"
    path.write_text(
        "\n".join(
            [
                "format: 1",
                "interpreters:",
                '  - id: "3.12"',
                '  - id: "3.13"',
                "workloads:",
                "  crunch: {params: {tasks: 4, size: 5000}}",
                "  fetch: {params: {tasks: 4, wait_ms: 2}}",
                "executors: [sequential, threads]",
                "workers: [1, 2]",
                "profiles:",
                "  default:",
                "    pyperf: {values: 2, warmups: 0, loops: 1}",
                f"    precision: {precision}",
                "    timeout: 60",
            ]
        )
        + "\n"
    )
    return path


class ScriptedBackend(Backend):
    """Hands out environments without making any: the drivers below need no interpreter."""

    name = "scripted"

    def __init__(self, tmp_path: Path, unavailable: frozenset[str] = frozenset()) -> None:
        super().__init__(BackendOptions(work_dir=tmp_path))
        self.unavailable = unavailable
        self.cleaned: list[str] = []

    def prepare(self, interpreter: Any) -> Environment:
        from gilmatrix.errors import EnvironmentUnavailable

        if interpreter.id in self.unavailable:
            raise EnvironmentUnavailable(f"{interpreter.id} is not on this machine")
        facts = {"version": f"{interpreter.id}.0", "implementation": "cpython"}
        return Environment(interpreter.id, self.name, f"/scripted/{interpreter.id}", facts)

    def harness_command(self, env: Environment, run_dir: Path, job_name: str) -> list[str]:
        return ["scripted-harness", env.interpreter_id, job_name]

    def cleanup(self, run_dir: Path, job_name: str) -> None:
        self.cleaned.append(job_name)


class ScriptedDriver:
    """Answers the host as a harness would: a worker writes a pyperf worker file (w0001.json,
    ...) with values drawn around the cell's mean, discard sets one aside, finish merges the
    kept ones into the cell's result and status files. ``script`` may change a reply (or raise
    DriverDied) for a given request."""

    def __init__(
        self,
        interp_id: str,
        job: dict[str, Any],
        cells_dir: Path,
        scatter: Callable[[str, str], float],
        log: list[tuple[str, dict[str, Any]]],
        script: Callable[[ScriptedDriver, dict[str, Any]], dict[str, Any] | None] | None = None,
    ) -> None:
        self.interp_id, self.job_name = interp_id, f"{interp_id}.json"
        self.job, self.cells_dir = job, cells_dir
        self.scatter, self.log, self.script = scatter, log, script
        self.rng = random.Random(interp_id)
        self.closed: bool | None = None
        self.requests = 0

    def request(self, payload: dict[str, Any], timeout: float) -> dict[str, Any]:
        assert self.closed is None, "a request to a closed driver"
        self.requests += 1
        self.log.append((self.interp_id, payload))
        if self.script is not None:
            scripted = self.script(self, payload)
            if scripted is not None:
                return scripted
        store = CellStore(str(self.cells_dir), payload["cell"])
        if payload["op"] == Op.WORKER:
            return self.worker(store, payload)
        if payload["op"] == Op.DISCARD:
            path = Path(store.worker(payload["worker"]))
            path.replace(store.worker(payload["worker"], discarded=True))
            return {"status": Status.OK}
        assert payload["op"] == Op.FINISH
        return self.finish(store, payload)

    def worker(self, store: CellStore, payload: dict[str, Any]) -> dict[str, Any]:
        Path(store.runs).mkdir(parents=True, exist_ok=True)
        path = store.next_worker()
        number = WorkerFile.number(Path(path).name)
        assert number is not None
        mean = 0.01 * (1.0 + self.rng.gauss(0.0, self.scatter(self.interp_id, payload["cell"])))
        values = [mean, mean]
        run = pyperf.Run(values, metadata={"name": payload["cell"], "loops": 1}, collect_metadata=False)
        pyperf.Benchmark([run]).dump(path)
        return {"status": Status.OK, "worker": number, "values": values, "seconds": [0.05]}

    def finish(self, store: CellStore, payload: dict[str, Any]) -> dict[str, Any]:
        benches = [pyperf.Benchmark.load(p) for p in store.workers()]
        merged = benches[0]
        for bench in benches[1:]:
            merged.add_runs(bench)
        merged.dump(store.result)
        record = status_record(payload["cell"], Status.OK, None, returncode=0, **payload["status"])
        Path(store.status).write_text(json.dumps(record))
        shutil.rmtree(store.runs)  # as the harness does: the result holds the kept workers
        return {"status": Status.OK}

    def close(self, interrupted: bool = False) -> bool:
        self.closed = interrupted
        return True


class Harnesses:
    """The driver factory: one ScriptedDriver per interpreter, all requests in one log."""

    def __init__(
        self, run_dir: Path, scatter: Callable[[str, str], float] = lambda interp, cell: 0.001, script=None
    ):
        self.run_dir, self.scatter, self.script = run_dir, scatter, script
        self.log: list[tuple[str, dict[str, Any]]] = []
        self.drivers: dict[str, ScriptedDriver] = {}

    def __call__(self, interp_id: str, command: list[str], log_path: Path, job_name: str) -> ScriptedDriver:
        assert command == ["scripted-harness", interp_id, job_name]
        job = json.loads((self.run_dir / "jobs" / job_name).read_text())
        driver = ScriptedDriver(
            interp_id, job, self.run_dir / "cells" / interp_id, self.scatter, self.log, self.script
        )
        self.drivers[interp_id] = driver
        return driver

    def ops(self, op: str) -> list[tuple[str, dict[str, Any]]]:
        return [(i, p) for i, p in self.log if p["op"] == op]


def readings(slow: set[int] = frozenset(), base: float = 0.004) -> Callable[[], Reading]:
    """Sentinel readings: the n-th (from 0; the first four are the monitor's start) is 1.5x
    slower when n is in ``slow``."""
    count = iter(range(10**6))

    def read() -> Reading:
        n = next(count)
        return Reading(time.monotonic(), base * (1.5 if n in slow else 1.0), 0.5, None)

    return read


def monitor_of(read: Callable[[], Reading]):
    @contextmanager
    def open_monitor() -> Iterator[NoiseMonitor]:
        yield NoiseMonitor(read)

    return open_monitor


def matrix_run(
    tmp_path: Path,
    precision: str = "{target: 0.02, min_processes: 3, max_processes: 6}",
    *,
    harnesses: Callable[[Path], Harnesses] = Harnesses,
    read: Callable[[], Reading] | None = None,
    backend: ScriptedBackend | None = None,
) -> tuple[MatrixRun, Harnesses, io.StringIO]:
    matrix = load_matrix(write_matrix(tmp_path, precision))
    plan = plan_cells(matrix, "default")
    run_dir = RunDir.create(tmp_path / "out", "scripted")
    factory = harnesses(run_dir.path)
    stream = io.StringIO()
    run = MatrixRun(
        matrix,
        plan,
        backend or ScriptedBackend(tmp_path),
        run_dir,
        "scripted",
        [],
        stream.write,
        driver_factory=factory,
        monitor=monitor_of(read or readings()),
        progress=Progress(stream=stream),
    )
    return run, factory, stream


def manifest_cells(run: MatrixRun) -> dict[tuple[str, str], dict[str, Any]]:
    manifest = json.loads((run.run_dir.path / "manifest.json").read_text())
    return {(c["interpreter"], c["id"]): c for c in manifest["cells"]}


def processes(run: MatrixRun, interp: str, cell: str) -> int:
    return json.loads(
        (run.run_dir.path / "cells" / interp / (cell.replace("/", "__") + ".status.json")).read_text()
    )["processes"]


CELLS = ["crunch/sequential/1", "crunch/threads/1", "crunch/threads/2", "fetch/sequential/1"]


def test_rounds_give_every_pending_cell_one_worker_until_the_interval_is_tight(tmp_path):
    # 3.13's cells scatter by 20% per process: they never reach ±2% and stop at 6 processes;
    # 3.12's by 0.1%: they stop at their minimum of 3
    def scatter(interp: str, cell: str) -> float:
        return 0.2 if interp == "3.13" else 0.001

    run, harnesses, stream = matrix_run(tmp_path, harnesses=lambda path: Harnesses(path, scatter))
    run.seed = 7  # the run's seed is drawn afresh each run; a fixed one makes the order below certain
    assert run.execute() == 0
    cells = manifest_cells(run)
    assert len(cells) == 2 * 6 and {c["status"] for c in cells.values()} == {Status.OK}
    for cell in ("crunch/sequential/1", "crunch/threads/2", "fetch/sequential/1", "fetch/threads/1"):
        assert processes(run, "3.12", cell) == 3
        assert processes(run, "3.13", cell) == 6
    # round by round: every pending cell of both interpreters exactly once, tagged with its round
    workers = harnesses.ops(Op.WORKER)
    rounds = [p["round"] for _, p in workers]
    assert rounds == sorted(rounds) and set(rounds) == {1, 2, 3, 4, 5, 6}
    per_round = {r: [(i, p["cell"]) for i, p in workers if p["round"] == r] for r in range(1, 7)}
    assert all(len(set(v)) == len(v) for v in per_round.values())
    assert [len(per_round[r]) for r in range(1, 7)] == [12, 12, 12, 6, 6, 6]
    # shuffled by the run's seed: the two interpreters' cells mixed within a round, not one
    # after the other (with seed 7; a drawn seed puts one interpreter's six first 2 times in 924)
    assert json.loads((run.run_dir.path / "manifest.json").read_text())["schedule"]["seed"] == 7
    assert {i for i, _ in per_round[1][:6]} == {"3.12", "3.13"}
    # one finish per cell, after its last worker; the drivers told to quit, not killed
    finishes = harnesses.ops(Op.FINISH)
    assert sorted((i, p["cell"]) for i, p in finishes) == sorted(cells)
    assert all(d.closed is False for d in harnesses.drivers.values())
    assert "12 cells planned: 12 to run, 0 skipped" in stream.getvalue()
    manifest = json.loads((run.run_dir.path / "manifest.json").read_text())
    assert manifest["state"] == "complete" and len(manifest["schedule"]["rounds"]) == 6
    assert all(w["disturbed"] is False for w in manifest["schedule"]["windows"])


def test_a_quiet_cell_among_noisy_ones_of_its_model_is_not_stopped_on_its_own_luck(tmp_path):
    # on 3.12, crunch/threads/1 scatters by 0.1% per process, the other cells of its model
    # (threads) by 20%: three quiet processes do not stop it, its model's scatter is pooled in
    def scatter(interp: str, cell: str) -> float:
        return 0.001 if interp == "3.13" or "sequential" in cell or cell == "crunch/threads/1" else 0.2

    run, _, _ = matrix_run(tmp_path, harnesses=lambda path: Harnesses(path, scatter))
    assert run.execute() == 0
    cells = manifest_cells(run)
    quiet = cells[("3.12", "crunch/threads/1")]
    assert (quiet["processes"], quiet["stopped"]) == (6, "budget")
    # among quiet cells of its model a cell stops at its minimum, on precision
    for key in [("3.13", "crunch/threads/1"), *(("3.12", f"{w}/sequential/1") for w in ("crunch", "fetch"))]:
        assert (cells[key]["processes"], cells[key]["stopped"]) == (3, "precision"), key


def test_a_disturbed_window_sets_its_workers_aside_and_their_cells_are_measured_again(tmp_path, monkeypatch):
    # reading 4 is the first window's end: 1.5x the median -> disturbed, its workers redone.
    # A window closes at its round's end here, however slow a busy runner makes the round
    monkeypatch.setattr(execute, "WINDOW_SECONDS", 1e9)
    run, harnesses, stream = matrix_run(
        tmp_path, "{target: 0.5, min_processes: 2, max_processes: 2}", read=readings({4})
    )
    assert run.execute() == 0
    first_round = [(i, p["cell"]) for i, p in harnesses.ops(Op.WORKER) if p["round"] == 1]
    discards = [(i, p["cell"], p["worker"]) for i, p in harnesses.ops(Op.DISCARD)]
    assert sorted(discards) == sorted((i, c, 1) for i, c in first_round)  # every worker of window 0
    for interp in ("3.12", "3.13"):
        for cell in ("crunch/sequential/1", "fetch/threads/2"):
            assert processes(run, interp, cell) == 2
    windows = json.loads((run.run_dir.path / "manifest.json").read_text())["schedule"]["windows"]
    assert windows[0]["disturbed"] and windows[0]["action"] == "redone"
    assert windows[0]["workers"] == 12
    # the next window starts from that slow reading, so it is disturbed too; but redoing is
    # capped at a third of the windows (the first always): its workers are kept and flagged
    assert windows[1]["disturbed"] and windows[1]["action"] == "flagged"
    assert not any(w["disturbed"] for w in windows[2:])
    status = json.loads(
        (run.run_dir.path / "cells" / "3.12" / "crunch__sequential__1.status.json").read_text()
    )
    assert status["discarded"] == 1 and status["processes"] == 2
    assert "machine disturbed (sentinel +50%) during window 0" in stream.getvalue()


def test_a_driver_that_dies_fails_its_interpreters_cells_and_the_others_go_on(tmp_path):
    def script(driver: ScriptedDriver, payload: dict[str, Any]) -> dict[str, Any] | None:
        if driver.interp_id == "3.13" and driver.requests == 8:
            raise DriverDied("the harness exited with -9: Killed")
        return None

    run, harnesses, _ = matrix_run(
        tmp_path,
        "{target: 0.02, min_processes: 2, max_processes: 2}",
        harnesses=lambda path: Harnesses(path, script=script),
    )
    assert run.execute() == 1  # cells failed: the run is partial
    cells = manifest_cells(run)
    assert {c["status"] for k, c in cells.items() if k[0] == "3.12"} == {Status.OK}
    failed = [c for k, c in cells.items() if k[0] == "3.13"]
    assert {c["status"] for c in failed} == {Status.FAILED}
    assert all("the harness exited with -9: Killed" in c["reason"] for c in failed)
    manifest = json.loads((run.run_dir.path / "manifest.json").read_text())
    assert manifest["state"] == "partial"
    assert manifest["interpreters"]["3.13"]["status"] == Status.FAILED
    # no request reached the dead driver after it died; its job's leftovers were cleaned up
    assert harnesses.drivers["3.13"].requests == 8 and run.backend.cleaned == ["3.13.json"]
    # the host wrote each failed cell's status file with the contract's record
    status = json.loads((run.run_dir.path / "cells" / "3.13" / "fetch__threads__2.status.json").read_text())
    assert set(status_record("x", Status.FAILED, "r", worker_seconds=[])) <= set(status)


def test_a_failed_worker_fails_only_its_cell(tmp_path):
    def script(driver: ScriptedDriver, payload: dict[str, Any]) -> dict[str, Any] | None:
        if payload["op"] == Op.WORKER and payload["cell"] == "fetch/threads/2" and driver.interp_id == "3.12":
            # as the harness does: the failed cell's status file, then the reply
            store = CellStore(str(driver.cells_dir), payload["cell"])
            record = status_record(payload["cell"], Status.FAILED, "ValueError: boom", worker_seconds=[0.1])
            Path(store.status).parent.mkdir(parents=True, exist_ok=True)
            Path(store.status).write_text(json.dumps(record))
            return {"status": Status.FAILED, "reason": "ValueError: boom", "seconds": [0.1]}
        return None

    run, harnesses, _ = matrix_run(
        tmp_path,
        "{target: 0.02, min_processes: 2, max_processes: 2}",
        harnesses=lambda path: Harnesses(path, script=script),
    )
    assert run.execute() == 1
    cells = manifest_cells(run)
    assert cells["3.12", "fetch/threads/2"]["status"] == Status.FAILED
    assert cells["3.12", "fetch/threads/2"]["reason"] == "ValueError: boom"
    assert sum(c["status"] == Status.OK for c in cells.values()) == 11
    tried = [p for i, p in harnesses.ops(Op.WORKER) if i == "3.12" and p["cell"] == "fetch/threads/2"]
    assert len(tried) == 1  # not asked again once it failed


def test_a_full_disk_stops_the_run_and_says_so(tmp_path):
    full: list[int] = []

    def script(driver: ScriptedDriver, payload: dict[str, Any]) -> dict[str, Any] | None:
        if payload["op"] == Op.WORKER and driver.requests == 3 and not full:
            full.append(len(harnesses.log))
            return {"status": Status.FAILED, "reason": "no space left on device", "disk_full": True}
        return None

    run, harnesses, stream = matrix_run(tmp_path, harnesses=lambda path: Harnesses(path, script=script))
    assert run.execute() == 1
    assert run.state == "disk-full"
    cells = manifest_cells(run)
    assert sum(c["status"] == Status.FAILED for c in cells.values()) == 1
    assert "no space left on device" in stream.getvalue() and "the run stopped" in stream.getvalue()
    assert len(harnesses.log) == full[0]  # no request after the one that found no room
    assert not harnesses.ops(Op.FINISH)
    assert all(d.closed is True for d in harnesses.drivers.values())  # stopped, not asked to quit


def test_an_interpreter_that_cannot_be_had_is_skipped_with_its_reason(tmp_path):
    run, harnesses, stream = matrix_run(
        tmp_path,
        "{target: 0.02, min_processes: 2, max_processes: 2}",
        backend=ScriptedBackend(tmp_path, unavailable=frozenset({"3.13"})),
    )
    assert run.execute() == 0
    cells = manifest_cells(run)
    assert {c["status"] for k, c in cells.items() if k[0] == "3.13"} == {Status.SKIPPED}
    assert all(c["reason"] == "3.13 is not on this machine" for k, c in cells.items() if k[0] == "3.13")
    assert set(harnesses.drivers) == {"3.12"}
    assert "6 skipped, 3.13 not available: 3.13 is not on this machine" in stream.getvalue()


def test_a_resumed_run_picks_up_the_workers_on_disk(tmp_path):
    """Workers written before a stop are read back (their numbers from the file names) and count
    toward the cell's processes."""
    run, _, _ = matrix_run(tmp_path, "{target: 0.02, min_processes: 3, max_processes: 3}")
    cell = run.plan.cells[0]
    store = run.run_dir.cell_store(cell)
    Path(store.runs).mkdir(parents=True)
    for number in (1, 2):
        values = [0.01, 0.01]
        pyperf.Benchmark(
            [pyperf.Run(values, metadata={"name": cell.id, "loops": 1}, collect_metadata=False)]
        ).dump(store.worker(number))
    Path(store.worker(3, discarded=True)).write_text("{}")
    state = run.load_state(cell)
    assert state.workers == [1, 2] and state.discarded == 1 and state.status == Status.PENDING
