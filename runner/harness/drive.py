"""Run one job's cells, each in its own process group with a timeout, results written atomically.

``python -m runner.harness run --job JOB --out RUN_DIR``

For every cell this writes, below ``RUN_DIR/cells/<interpreter>/``:
- ``<slug>.json``: the pyperf suite of the cell (only when it succeeded);
- ``<slug>.status.json``: ``{"status": "ok" | "failed" | "timeout", "reason", "elapsed", ...}``;
- ``<slug>.log``: everything the cell printed.
Each file is written to a temporary name and renamed, so an interrupted run leaves only whole
files. A cell whose ``.json`` already exists is not run again (``--resume``). Progress goes to
stdout as one JSON object per line, for the host to display.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from typing import Any

from runner.harness.bench import MODULE as BENCH_MODULE
from runner.harness.faults import ENV as FAULTS_ENV
from runner.harness.faults import fault_for, parse_faults

TAIL_CHARS = 4000
FORMAT_VERSION = 1


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


def pyperf_args(settings: Mapping[str, Any]) -> list[str]:
    args = [
        "--processes", str(settings.get("processes", 1)),
        "--values", str(settings.get("values", 3)),
        "--warmups", str(settings.get("warmups", 1)),
        "--min-time", str(settings.get("min_time", 0.1)),
        "--inherit-environ", "PYTHONPATH",
    ]
    if settings.get("loops"):
        args += ["--loops", str(settings["loops"])]
    return args


def stability_warnings(result_path: str) -> list[str]:
    """pyperf's own stability checks on a finished cell (as ``pyperf show`` prints them)."""
    import pyperf

    bench = pyperf.BenchmarkSuite.load(result_path).get_benchmarks()[0]
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


def failure_reason(output: str, returncode: int) -> str:
    """The most telling line of a failed cell's output.

    The exception that ended the pyperf worker comes first; pyperf's own "worker failed with
    exit code N" wrapper only when the worker died without one (killed by a signal).
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
    if returncode < 0:
        return f"killed by signal {-returncode} ({_SIGNALS.get(-returncode, '?')})"
    return f"exit code {returncode}" + (f": {lines[-1][:300]}" if lines else "")


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
        self.stopping = False
        self.faults = parse_faults(os.environ.get(FAULTS_ENV))
        memory_mb = job.get("memory_mb")
        self.memory_limit = int(memory_mb) * 1024 * 1024 if memory_mb else None

    def handle_signal(self, signum: int, frame: Any) -> None:
        self.stopping = True
        self._kill_current()

    def _kill_current(self) -> None:
        if self.current is not None and self.current.poll() is None:
            try:
                os.killpg(self.current.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

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
        if os.path.exists(tmp_result):
            os.unlink(tmp_result)
        fault = fault_for(self.faults, self.job["interpreter"], cell["id"])
        cell = {**cell, "fault": fault} if fault else cell
        command = [sys.executable, "-m", BENCH_MODULE, "--cell", json.dumps(cell),
                   "--output", tmp_result, "--quiet", *pyperf_args(self.job["pyperf"])]
        timeout = float(self.job.get("timeout") or 600)
        start = time.monotonic()
        with open(base + ".log", "wb") as log:
            # A session of its own: on timeout or interrupt, the pyperf workers and the pool's
            # processes die with the cell instead of running on as orphans.
            self.current = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True,
                                            preexec_fn=self._limit_memory)
            try:
                returncode = self.current.wait(timeout=timeout)
                timed_out = False
            except subprocess.TimeoutExpired:
                self._kill_current()
                returncode = self.current.wait()
                timed_out = True
            finally:
                self._kill_current()  # leftovers of the group (orphaned pool processes)
                self.current = None
        elapsed = round(time.monotonic() - start, 3)
        with open(base + ".log", encoding="utf-8", errors="replace") as log_text:
            output = log_text.read()
        status: dict[str, Any] = {"format": FORMAT_VERSION, "id": cell["id"], "elapsed": elapsed,
                                  "returncode": returncode, "reason": None, "output_tail": None}
        if timed_out:
            status.update(status="timeout", reason=f"no result after the cell timeout of {timeout:g} s")
        elif self.stopping:
            status.update(status="interrupted", reason="the run was interrupted")
        elif returncode != 0 or not os.path.exists(tmp_result):
            status.update(status="failed", reason=failure_reason(output, returncode))
        else:
            status["status"] = "ok"
            status["warnings"] = stability_warnings(tmp_result)
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
