"""Run one job's cells, each in its own process group with a timeout, results written atomically.

``python -m gilmatrix.harness run --job JOB --out RUN_DIR``

For every cell this writes, below ``RUN_DIR/cells/<interpreter>/``:
- ``<slug>.json``: the pyperf suite of the cell (only when it succeeded);
- ``<slug>.status.json``: ``{"status": "ok" | "failed" | "timeout", "reason", "elapsed", ...}``;
- ``<slug>.log``: everything the cell printed.
Each file is written to a temporary name and renamed, so an interrupted run leaves only whole
files. A cell whose ``.json`` already exists is not run again (``--resume``). Progress goes to
stdout as one JSON object per line, for the host to display.

The driver is the cell's pyperf *manager*: it spawns the pyperf worker processes itself
(``python -m gilmatrix.harness.bench --worker ...``, the command lines pyperf's own ``Manager``
builds: one loop-calibration worker unless the profile fixes ``loops``, then ``processes``
workers) and merges their runs into one benchmark, as pyperf's manager does. Running pyperf's
manager in a process of its own per cell would cost one more interpreter start-up and import of
pyperf and the harness per cell (~0.1 s: a third of a smoke cell) for nothing the driver, a
long-lived process of the same interpreter, cannot do. Every worker runs in a session of its own
(a timeout or an interrupt kills it with its pool's processes) under the cell's memory limit,
with the environment pyperf gives its workers.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

from gilmatrix.harness.faults import ENV as FAULTS_ENV
from gilmatrix.harness.faults import fault_for, parse_faults

TAIL_CHARS = 4000
FORMAT_VERSION = 1
BENCH_MODULE = "gilmatrix.harness.bench"  # the pyperf worker program (bench.MODULE)


def cell_slug(cell_id: str) -> str:
    return cell_id.replace("/", "__")


def write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def worker_command(cell: Mapping[str, Any], settings: Mapping[str, Any], output: str,
                   loops: int | None) -> list[str]:
    """One pyperf worker of ``cell``: a loop calibration when ``loops`` is None, else values."""
    command = [sys.executable, "-m", BENCH_MODULE, "--worker", "--worker-task=0",
               "--values", str(settings.get("values", 3)),
               "--min-time", str(settings.get("min_time", 0.1))]
    command += ["--calibrate-loops"] if loops is None else ["--loops", str(loops)]
    command += ["--warmups", str(settings.get("warmups", 1)), "--output", output,
                "--cell", json.dumps(cell)]
    return command


def worker_environ() -> dict[str, str]:
    """What pyperf's manager hands its workers (pyperf's own create_environ, no --copy-env): a
    worker's environment is the same whether pyperf's manager or this driver spawns it."""
    from pyperf._utils import create_environ  # pyperf is pinned: its worker protocol is used too

    return dict(create_environ(None, False, False))


def _kill_session(leader: int) -> None:
    try:
        os.killpg(leader, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class WorkerFailed(Exception):
    def __init__(self, returncode: int, what: str) -> None:
        super().__init__(what)
        self.returncode = returncode
        self.what = what


class CellTimeout(Exception):
    pass


def stability_warnings(result_path: str) -> list[str]:
    """pyperf's own stability checks on a finished cell's result file."""
    import pyperf

    return bench_warnings(pyperf.BenchmarkSuite.load(result_path).get_benchmarks()[0])


def bench_warnings(bench: Any) -> list[str]:
    """pyperf's own stability checks on a benchmark (as ``pyperf show`` prints them)."""
    values = bench.get_values()
    mean = bench.mean()
    warnings = []
    if len(values) >= 2 and mean > 0:
        percent = bench.stdev() * 100.0 / mean
        if percent >= 10.0:
            warnings.append(f"the standard deviation is {percent:.0f}% of the mean")
    for name, value in (("minimum", min(values)), ("maximum", max(values))):
        percent = (value - mean) * 100.0 / mean if mean > 0 else 0.0
        if abs(percent) >= 50:
            side = "greater" if percent > 0 else "smaller"
            warnings.append(f"the {name} is {abs(percent):.0f}% {side} than the mean")
    return warnings


def failure_reason(output: str, returncode: int, what: str = "") -> str:
    """The most telling line of a failed cell's output (``what``: which process failed).

    The exception that ended the pyperf worker comes first; pyperf's own "worker failed with
    exit code N" wrapper (its manager's, when a cell is run by ``bench`` directly) only when the
    worker died without one (killed by a signal).
    """
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    exceptions = [line for line in lines if _is_exception_line(line)]
    own = [line for line in exceptions if "failed with exit code" not in line]
    chosen = (own or exceptions or [None])[-1]
    if chosen is not None:
        match = re.search(r"exit code (-\d+)", chosen)
        if match and -int(match.group(1)) in _SIGNALS:
            chosen += f" ({_SIGNALS[-int(match.group(1))]})"
        return chosen[:500]
    prefix = f"{what} " if what else ""
    if returncode < 0:
        return (f"{prefix}killed by signal {-returncode} ({_SIGNALS.get(-returncode, '?')}): "
                f"exit code {returncode}")
    return f"{prefix}exit code {returncode}" + (f": {lines[-1][:300]}" if lines else "")


_SIGNALS = {int(s): s.name for s in signal.Signals}


def _is_exception_line(line: str) -> bool:
    head = line.split(":", 1)[0]
    return " " not in head and head.endswith(("Error", "Exception", "Fault", "WrongAnswer"))


class CellRunner:
    """Runs cells one at a time; stops the running cell's whole process group on a signal."""

    def __init__(self, job: Mapping[str, Any], out_dir: str) -> None:
        self.job = job
        self.cells_dir = os.path.join(out_dir, "cells", job["interpreter"])
        os.makedirs(self.cells_dir, exist_ok=True)
        self.current: subprocess.Popen[bytes] | None = None
        self.worker_seconds: list[float] = []  # the running cell's finished workers
        self.stopping = False
        self.faults = parse_faults(os.environ.get(FAULTS_ENV))
        memory_mb = job.get("memory_mb")
        self.memory_limit = int(memory_mb) * 1024 * 1024 if memory_mb else None

    def handle_signal(self, signum: int, frame: Any) -> None:
        self.stopping = True
        self._kill_current()

    def _kill_current(self) -> None:
        """Kill the running worker's session: the worker, or what it left (pool processes)."""
        if self.current is not None:
            _kill_session(self.current.pid)

    def _limit_memory(self) -> None:
        """In the cell's process, before exec: cap its address space (and its children's)."""
        if self.memory_limit is not None:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (self.memory_limit, self.memory_limit))

    def run_all(self) -> int:
        cells: list[dict[str, Any]] = list(self.job["cells"])
        emit("start", interpreter=self.job["interpreter"], total=len(cells))
        failed = 0
        for index, cell in enumerate(cells, 1):
            if self.stopping:
                break
            base = os.path.join(self.cells_dir, cell_slug(cell["id"]))
            if os.path.exists(base + ".json"):
                emit("cell", index=index, total=len(cells), id=cell["id"], status="done-before",
                     elapsed=None)
                continue
            emit("cell-start", index=index, total=len(cells), id=cell["id"])
            status = self.run_cell(cell, base)
            if self.stopping:
                break
            failed += status["status"] != "ok"
            emit("cell", index=index, total=len(cells), id=cell["id"], status=status["status"],
                 elapsed=status["elapsed"], reason=status["reason"])
        emit("end", interpreter=self.job["interpreter"], interrupted=self.stopping, failed=failed)
        return 130 if self.stopping else 0

    def run_cell(self, cell: Mapping[str, Any], base: str) -> dict[str, Any]:
        tmp_result = f"{base}.json.tmp-{os.getpid()}"
        fault = fault_for(self.faults, self.job["interpreter"], cell["id"])
        cell = {**cell, "fault": fault} if fault else cell
        timeout = float(self.job.get("timeout") or 600)
        start = time.monotonic()
        status: dict[str, Any] = {"format": FORMAT_VERSION, "id": cell["id"], "elapsed": None,
                                  "returncode": 0, "reason": None, "output_tail": None}
        self.worker_seconds = []
        with open(base + ".log", "wb") as log:
            try:
                bench = self.run_workers(cell, log, tmp_result, deadline=start + timeout)
                bench.dump(tmp_result, replace=True)
                status["status"] = "ok"
            except CellTimeout:
                status.update(status="timeout",
                              reason=f"no result after the cell timeout of {timeout:g} s")
            except WorkerFailed as exc:
                status.update(status="failed", returncode=exc.returncode)
                failed_with = (exc.returncode, exc.what)
        status["elapsed"] = round(time.monotonic() - start, 3)
        # Each pyperf worker's life, spawn to exit: what pyperf's process model costs (the rest
        # of ``elapsed`` is the driver's own work for the cell).
        status["worker_seconds"] = [round(seconds, 4) for seconds in self.worker_seconds]
        with open(base + ".log", encoding="utf-8", errors="replace") as log_text:
            output = log_text.read()
        if self.stopping:
            status.update(status="interrupted", reason="the run was interrupted")
        elif status["status"] == "failed":
            status["reason"] = failure_reason(output, *failed_with)
        elif status["status"] == "ok":
            status["warnings"] = bench_warnings(bench)
        if status["status"] != "ok":
            status["output_tail"] = output[-TAIL_CHARS:]
            if os.path.exists(tmp_result):
                os.unlink(tmp_result)
        if self.stopping:
            return status
        write_atomic(base + ".status.json", json.dumps(status, indent=1) + "\n")
        if status["status"] == "ok":
            os.replace(tmp_result, base + ".json")  # the result last: its presence means done
        return status

    def run_workers(self, cell: Mapping[str, Any], log: Any, tmp_result: str,
                    deadline: float) -> Any:
        """pyperf's manager for one cell: calibrate the loops unless fixed, then ``processes``
        workers; their runs merged into one ``pyperf.Benchmark`` (calibration run included)."""
        settings = self.job["pyperf"]
        processes = int(settings.get("processes", 1))
        loops = int(settings["loops"]) if settings.get("loops") else None
        bench = None
        plan = ([None] if loops is None else []) + ["values"] * processes
        for number, task in enumerate(plan, 1):
            what = f"pyperf worker {number} of {len(plan)}" + (" (loop calibration)"
                                                               if task is None else "")
            worker = self.run_worker(worker_command(cell, settings, f"{tmp_result}.w", loops),
                                     log, f"{tmp_result}.w", deadline, what)
            if task is None:
                loops = int(worker.get_runs()[0].get_metadata()["calibrate_loops"])
            if bench is None:
                bench = worker
            else:
                bench.add_runs(worker)
        return bench

    def run_worker(self, command: list[str], log: Any, output: str, deadline: float,
                   what: str) -> Any:
        import pyperf

        if os.path.exists(output):
            os.unlink(output)
        log.write(f"--- {what}\n".encode())
        log.flush()
        started = time.monotonic()
        # A session of its own: on timeout or interrupt, the worker and its pool's processes die
        # together instead of running on as orphans.
        self.current = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=worker_environ(), start_new_session=True,
            preexec_fn=self._limit_memory if self.memory_limit is not None else None)
        # A blocking wait, the timeout enforced by a timer that kills the session: Popen.wait()
        # with a timeout polls, with sleeps growing to 50 ms, and noticed a worker's exit ~25 ms
        # late on average (measured: 6.3 s asleep in 21 smoke cells of ~0.3 s).
        expired, worker = threading.Event(), self.current

        def expire() -> None:
            expired.set()
            _kill_session(worker.pid)

        timer = threading.Timer(max(deadline - time.monotonic(), 0.001), expire)
        timer.start()
        try:
            returncode = self.current.wait()
        finally:
            timer.cancel()
            self._kill_current()  # leftovers of its session (orphaned pool processes)
            self.current = None
            self.worker_seconds.append(time.monotonic() - started)
        if expired.is_set():
            raise CellTimeout
        if returncode != 0 or self.stopping or not os.path.exists(output):
            raise WorkerFailed(returncode, what)
        suite = pyperf.BenchmarkSuite.load(output)
        os.unlink(output)
        (bench,) = suite.get_benchmarks()
        return bench


def run_job(job_path: str, out_dir: str) -> int:
    with open(job_path, encoding="utf-8") as handle:
        job = json.load(handle)
    if job.get("format") != FORMAT_VERSION:
        sys.stderr.write(f"{job_path}: job format {job.get('format')!r} is not {FORMAT_VERSION}\n")
        return 2
    runner = CellRunner(job, out_dir)
    signal.signal(signal.SIGINT, runner.handle_signal)
    signal.signal(signal.SIGTERM, runner.handle_signal)
    return runner.run_all()
