"""The harness driver: runs a job's cells one pyperf worker process at a time.

``python -m gilmatrix.harness serve --job JOB --out RUN_DIR`` (what the host runs) reads one
command per line on stdin and answers each with one JSON line on stdout, so that the host can
interleave the worker processes of every cell of every interpreter (rounds, in a shuffled
order) and stop each cell when its interval is tight enough:

- ``{"op": "worker", "cell": ID, "round": N}``: one pyperf worker process of the cell (the first one
  calibrates the loops as well, unless the profile fixes ``loops``: see
  ``values_from_calibration``); its runs are kept in ``<slug>.runs/wNNNN.json`` at once, so a
  crash loses at most the worker that was running.
  Answer: its values, loops and life time, or the failure (the cell is then over).
- ``{"op": "discard", "cell": ID, "worker": N}``: set worker N aside (taken while the machine
  was disturbed); it is renamed, not deleted, until the cell is finished.
- ``{"op": "finish", "cell": ID, "status": {...}}``: merge the cell's workers into
  ``<slug>.json`` and write ``<slug>.status.json`` with the host's figures in it.
- ``{"op": "quit"}`` (or end of input): exit.

``python -m gilmatrix.harness run --job JOB --out RUN_DIR`` runs every cell start to finish
with the profile's fixed number of processes, cell after cell (by hand, or for a quick check).

For every cell this leaves, below ``RUN_DIR/cells/<interpreter>/``:
- ``<slug>.json``: the pyperf suite of the cell (only when it succeeded);
- ``<slug>.status.json``: ``{"status": "ok" | "failed" | "timeout", "reason", "elapsed", ...}``;
- ``<slug>.log``: everything the cell's workers printed.
Each file is written to a temporary name and renamed, so an interrupted run leaves only whole
files.

The driver is the cell's pyperf *manager*: it spawns the pyperf worker processes itself
(``python -m gilmatrix.harness.bench --worker ...``, the command lines pyperf's own ``Manager``
builds) and merges their runs into one benchmark, as pyperf's manager does. Every worker runs in
a session of its own (a timeout or an interrupt kills it with its pool's processes) under the
cell's memory limit, with the environment pyperf gives its workers.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from typing import IO, Any

from gilmatrix.harness.contract import (
    JOB_FORMAT,
    Op,
    Status,
    WorkerFile,
    cell_slug,
    partner_ratios,
    stability_warnings,
    status_record,
)
from gilmatrix.harness.faults import ENV as FAULTS_ENV
from gilmatrix.harness.faults import fault_for, parse_faults
from gilmatrix.harness.usercode import UNSUPPORTED_EXIT, UNSUPPORTED_PREFIX

TAIL_CHARS = 4000

BENCH_MODULE = "gilmatrix.harness.bench"  # the pyperf worker program (bench.MODULE)


def write_atomic(path: str, text: str) -> None:
    """``text`` into ``path`` whole or not at all: a temporary file renamed over it. A failed
    write (a full disk) removes its temporary file and leaves ``path`` as it was."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


NO_SPACE = "no space left on device"
_EDQUOT = getattr(errno, "EDQUOT", errno.ENOSPC)  # a quota exhausted: the same for a run


def is_no_space(exc: BaseException) -> bool:
    """A full disk (or quota): ENOSPC, EDQUOT."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, _EDQUOT)


# how a worker's traceback names ENOSPC or EDQUOT (``OSError: [Errno 28] No space left ...``)
_NO_SPACE_ERRNO = re.compile(rf"\[Errno ({errno.ENOSPC}|{_EDQUOT})\]")


def no_space_reason(exc: OSError, writing: str) -> str:
    """The reason of a cell whose files could not be written: the disk is full."""
    return f"{NO_SPACE} while writing {exc.filename or writing}"


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def worker_command(
    cell: Mapping[str, Any], settings: Mapping[str, Any], *, output: str, loops: int | None
) -> list[str]:
    """One pyperf worker of ``cell``: a loop calibration when ``loops`` is None, else values."""
    command = [
        sys.executable,
        "-m",
        BENCH_MODULE,
        "--worker",
        "--worker-task=0",
        "--values",
        str(settings.get("values", 3)),
        "--min-time",
        str(settings.get("min_time", 0.1)),
    ]
    command += ["--calibrate-loops"] if loops is None else ["--loops", str(loops)]
    command += ["--warmups", str(settings.get("warmups", 1)), "--output", output, "--cell", json.dumps(cell)]
    return command


def worker_environ(cell: Mapping[str, Any] | None = None) -> dict[str, str]:
    """What pyperf's manager hands its workers (pyperf's own create_environ, no --copy-env): a
    worker's environment is the same whether pyperf's manager or this driver spawns it.

    A user workload's folders (its module's, its requirements') go first on ``PYTHONPATH``,
    which pyperf passes on: its pool processes inherit it and its sub-interpreters read it."""
    from pyperf._utils import create_environ  # pyperf is pinned: its worker protocol is used too

    env = dict(create_environ(None, False, False))
    paths = list((cell or {}).get("pythonpath") or ())
    if paths:
        env["PYTHONPATH"] = os.pathsep.join([*paths, *filter(None, [env.get("PYTHONPATH")])])
    for name, value in ((cell or {}).get("environ") or {}).items():
        env[name] = str(value)
    return env


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


def bench_warnings(bench: Any) -> list[str]:
    """pyperf's own stability checks on a benchmark (as ``pyperf show`` prints them)."""
    values = bench.get_values()
    return stability_warnings(
        len(values), bench.mean(), bench.stdev() if len(values) >= 2 else 0.0, min(values), max(values)
    )


def failure_reason(output: str, returncode: int, what: str = "") -> str:
    """The most telling line of a failed cell's output (``what``: which process failed).

    The exception that ended the pyperf worker comes first; pyperf's own "worker failed with
    exit code N" wrapper (its manager's, when a cell is run by ``bench`` directly) only when the
    worker died without one (killed by a signal).
    """
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    exceptions = [line for line in lines if _is_exception_line(line)]
    own = [line for line in exceptions if "failed with exit code" not in line]
    candidates = own or exceptions
    chosen = candidates[-1] if candidates else None
    if chosen is not None:
        match = re.search(r"exit code (-\d+)", chosen)
        if match and -int(match.group(1)) in _SIGNALS:
            chosen += f" ({_SIGNALS[-int(match.group(1))]})"
        return chosen[:500]
    prefix = f"{what} " if what else ""
    if returncode < 0:
        return (
            f"{prefix}killed by signal {-returncode} ({_SIGNALS.get(-returncode, '?')}): "
            f"exit code {returncode}"
        )
    return f"{prefix}exit code {returncode}" + (f": {lines[-1][:300]}" if lines else "")


_SIGNALS = {int(s): s.name for s in signal.Signals}


def _is_exception_line(line: str) -> bool:
    head = line.split(":", 1)[0]
    return " " not in head and head.endswith(("Error", "Exception", "Fault", "WrongAnswer"))


class CellStore:
    """A cell's files: ``<slug>.json`` (done), ``.status.json``, ``.log`` and, while it is being
    measured, ``<slug>.runs/`` with its loop calibration and one file per worker process."""

    def __init__(self, cells_dir: str, cell_id: str) -> None:
        self.base = os.path.join(cells_dir, cell_slug(cell_id))
        self.result, self.status = self.base + ".json", self.base + ".status.json"
        self.log, self.runs = self.base + ".log", self.base + ".runs"
        self.calibration = os.path.join(self.runs, "calibration.json")

    def workers(self, discarded: bool = False) -> list[str]:
        """The kept worker files (and the set-aside ones too), in the order they ran."""
        if not os.path.isdir(self.runs):
            return []
        names = (n for n in os.listdir(self.runs) if WorkerFile.number(n, discarded) is not None)
        return sorted(os.path.join(self.runs, n) for n in names)

    def worker(self, number: int, discarded: bool = False) -> str:
        return os.path.join(self.runs, WorkerFile.name(number, discarded))

    def next_worker(self) -> str:
        names = os.listdir(self.runs) if os.path.isdir(self.runs) else []
        numbers = [n for n in map(WorkerFile.number, names) if n is not None]
        return self.worker(max(numbers, default=0) + 1)


def _calibrated_loops(bench: Any) -> int:
    return int(bench.get_runs()[0].get_metadata()["calibrate_loops"])


def values_from_calibration(bench: Any, values: int, warmups: int) -> Any | None:
    """A pyperf loop-calibration run turned into a run of ``values`` values, or None.

    pyperf calibrates in a worker of its own, whose calls are all warm-ups: it doubles
    ``loops`` until one call lasts ``min_time``, then makes ``warmups + values`` more calls at
    that count, and its manager starts the value workers only then. Those last calls are what a
    value worker does — the same process life, each after at least ``warmups`` warm-up calls at
    the final loop count (and the shorter calibration calls before them) — so the last
    ``values`` of them are kept as values and the rest as warm-ups: every cell spares one
    worker process (about a third of a default run's time: one process of its 4 to 12).
    """
    import pyperf

    (run,) = bench.get_runs()
    metadata = run.get_metadata()
    loops = int(metadata.get("calibrate_loops", 0))
    calls = list(run.warmups or ())
    final = calls[-(warmups + values) :]
    if (
        loops < 1
        or run.values
        or len(calls) < warmups + values
        or any(count != loops for count, _ in final)
        or any(v <= 0 for _, v in final)
    ):
        return None
    metadata["loops"] = loops
    kept = pyperf.Run(
        [value for _, value in calls[-values:]],
        warmups=calls[:-values],
        metadata=metadata,
        collect_metadata=False,
    )
    return pyperf.Benchmark([kept])


def _dump(bench: Any, path: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        bench.dump(tmp, replace=True)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)  # no half-written file left on a full disk
        raise


def _remove_partial(store: CellStore) -> None:
    """A full disk: remove the half-written files of the cell's last worker (a worker's own
    output, a temporary file); the whole ones stay, and ``gilmatrix run --resume`` goes on from
    them once space is freed."""
    for name in os.listdir(store.runs) if os.path.isdir(store.runs) else ():
        if name.endswith(".w") or ".tmp-" in name:
            _remove(os.path.join(store.runs, name))


def _load(path: str) -> Any:
    import pyperf

    (bench,) = pyperf.BenchmarkSuite.load(path).get_benchmarks()
    return bench


class CellRunner:
    """Runs worker processes of a job's cells; stops the running one's session on a signal."""

    def __init__(self, job: Mapping[str, Any], out_dir: str) -> None:
        self.job = job
        self.cells = {cell["id"]: cell for cell in job["cells"]}
        self.cells_dir = os.path.join(out_dir, "cells", job["interpreter"])
        os.makedirs(self.cells_dir, exist_ok=True)
        self.current: subprocess.Popen[bytes] | None = None
        self.loops: dict[str, int] = {}  # cell id -> its calibrated loops
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

    # -- the commands --------------------------------------------------------------------

    def worker(self, cell_id: str, round_number: int | None = None) -> dict[str, Any]:
        """One more pyperf worker process of the cell (a loop calibration first, if needed);
        ``round_number``, the host's round, goes into its runs' metadata (``gilmatrix_round``)."""
        cell = self.cells[cell_id]
        if round_number is not None:
            cell = {**cell, "round": int(round_number)}
        store = CellStore(self.cells_dir, cell_id)
        fault = fault_for(self.faults, self.job["interpreter"], cell_id)
        cell = {**cell, "fault": fault} if fault else cell
        settings = self.job["pyperf"]
        timeout = float(self.job.get("timeout") or 600)
        started = time.monotonic()
        lives: list[float] = []
        reply: dict[str, Any] = {"event": "worker", "cell": cell_id}
        try:
            os.makedirs(store.runs, exist_ok=True)
            self._worker(cell, store, settings, timeout, started, lives, reply)
        except OSError as exc:
            if not is_no_space(exc):
                raise
            reply.update(status=Status.FAILED, reason=no_space_reason(exc, store.base + ".*"), disk_full=True)
        reply["seconds"] = [round(s, 4) for s in lives]
        reply["elapsed"] = round(time.monotonic() - started, 3)
        if self.stopping:
            reply.update(status=Status.INTERRUPTED, reason="the run was interrupted")
        elif reply["status"] != Status.OK and not reply.get("disk_full"):
            try:
                self._write_failure(store, reply)
            except OSError as exc:  # no room for the status file either
                if not is_no_space(exc):
                    raise
                reply.update(
                    reason=f"{no_space_reason(exc, store.status)} ({reply['reason']})", disk_full=True
                )
        if reply.get("disk_full"):
            _remove_partial(store)
        return reply

    def _worker(
        self,
        cell: Mapping[str, Any],
        store: CellStore,
        settings: Mapping[str, Any],
        timeout: float,
        started: float,
        lives: list[float],
        reply: dict[str, Any],
    ) -> None:
        cell_id = cell["id"]
        with open(store.log, "ab") as log:
            try:
                loops = self._loops(cell_id, store)
                path = store.next_worker()
                number = int(os.path.basename(path)[1:5])
                bench = None

                def one(loops: int | None, what: str) -> Any:  # loops None: calibrate them
                    command = worker_command(cell, settings, loops=loops, output=path + ".w")
                    return self.run_worker(command, log, path + ".w", started + timeout, what, lives, cell)

                if loops is None:
                    calibration = one(None, f"pyperf worker {number} (calibrates the loops)")
                    loops = _calibrated_loops(calibration)
                    bench = values_from_calibration(
                        calibration, int(settings.get("values", 3)), int(settings.get("warmups", 1))
                    )
                    if bench is None:  # not the shape pyperf's calibration has: keep it apart
                        _dump(calibration, store.calibration)
                    self.loops[cell_id] = loops
                if bench is None:
                    bench = one(loops, f"pyperf worker {number}")
                _dump(bench, path)
                values = [v for run in bench.get_runs() for v in run.values]
                reply.update(
                    status=Status.OK,
                    worker=number,
                    loops=loops,
                    values=values,
                    warnings=bench_warnings(bench) if len(values) > 1 else [],
                )
                ratios = partner_ratios(bench)
                if ratios:  # pairing: the host stops the cell on these (schedule.CellState)
                    reply["ratios"] = ratios
            except CellTimeout:
                reply.update(
                    status=Status.TIMEOUT,
                    reason=f"a worker process took longer than the timeout of {timeout:g} s",
                )
            except WorkerFailed as exc:
                if exc.returncode == UNSUPPORTED_EXIT:  # see usercode.refuse
                    reply.update(status=Status.SKIPPED, returncode=exc.returncode, what=exc.what)
                else:
                    reply.update(status=Status.FAILED, returncode=exc.returncode, what=exc.what)

    def _loops(self, cell_id: str, store: CellStore) -> int | None:
        """The cell's loops: the profile's, else those its first worker calibrated (kept in
        its file, or, in a run an older gilmatrix began, in ``calibration.json``)."""
        settings = self.job["pyperf"]
        if settings.get("loops"):
            return int(settings["loops"])
        if cell_id not in self.loops:
            if os.path.exists(store.calibration):
                self.loops[cell_id] = _calibrated_loops(_load(store.calibration))
            else:
                for path in store.workers(discarded=True):
                    self.loops[cell_id] = int(_load(path).get_runs()[0].get_metadata()["loops"])
                    break
        return self.loops.get(cell_id)

    def _write_failure(self, store: CellStore, reply: dict[str, Any]) -> None:
        with open(store.log, encoding="utf-8", errors="replace") as log_text:
            output = log_text.read()
        if reply["status"] == Status.SKIPPED:
            said = [line for line in output.splitlines() if line.startswith(UNSUPPORTED_PREFIX)]
            reply["reason"] = "unsupported: " + (
                said[-1][len(UNSUPPORTED_PREFIX) :] if said else "the worker refused the cell"
            )
        if reply["status"] == Status.FAILED:
            reply["reason"] = failure_reason(output, reply["returncode"], reply["what"])
            if _NO_SPACE_ERRNO.search(reply["reason"]):  # the worker could not write its runs
                reply["reason"] = f"{NO_SPACE}: {reply['what']} could not write its runs ({reply['reason']})"
                reply["disk_full"] = True
        if reply.get("disk_full"):
            return  # not the cell's fault: no status file, its kept workers go on in a resume
        status = status_record(
            reply["cell"],
            reply["status"],
            reply["reason"],
            elapsed=reply["elapsed"],
            returncode=reply.get("returncode", 0),
            output_tail=output[-TAIL_CHARS:],
            worker_seconds=reply["seconds"],
        )
        write_atomic(store.status, json.dumps(status, indent=1) + "\n")

    def discard(self, cell_id: str, number: int) -> dict[str, Any]:
        store = CellStore(self.cells_dir, cell_id)
        path = store.worker(number)
        if os.path.exists(path):
            os.replace(path, store.worker(number, discarded=True))
            return {"event": "discarded", "cell": cell_id, "worker": number, "status": Status.OK}
        return {"event": "discarded", "cell": cell_id, "worker": number, "status": Status.MISSING}

    def finish(self, cell_id: str, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Merge the cell's kept workers (calibration run first) into its result file."""
        store = CellStore(self.cells_dir, cell_id)
        paths = ([store.calibration] if os.path.exists(store.calibration) else []) + store.workers()
        if not store.workers():
            return {
                "event": "finished",
                "cell": cell_id,
                "status": Status.FAILED,
                "reason": "no worker process of this cell was kept",
            }
        bench = _load(paths[0])
        for path in paths[1:]:
            bench.add_runs(_load(path))
        status = status_record(
            cell_id, Status.OK, None, returncode=0, warnings=bench_warnings(bench), **dict(extra or {})
        )
        try:
            _dump(bench, store.result + ".part")
            write_atomic(store.status, json.dumps(status, indent=1) + "\n")
        except OSError as exc:
            if not is_no_space(exc):
                raise
            # the worker files stay: a resumed run merges them again once there is space
            _remove(store.result + ".part")
            return {
                "event": "finished",
                "cell": cell_id,
                "status": Status.FAILED,
                "reason": no_space_reason(exc, store.result),
                "disk_full": True,
            }
        os.replace(store.result + ".part", store.result)  # the result last: it means done
        shutil.rmtree(store.runs, ignore_errors=True)
        return {"event": "finished", "cell": cell_id, "status": Status.OK, "warnings": status["warnings"]}

    def serve(self, commands: IO[str], replies: IO[str]) -> int:
        """Answer the host's commands, one JSON line each, until ``quit`` or end of input."""
        for line in commands:
            if not line.strip():
                continue
            request = json.loads(line)
            op = request.get("op")
            if op == Op.QUIT:
                break
            if op == Op.WORKER:
                reply = self.worker(request["cell"], request.get("round"))
            elif op == Op.DISCARD:
                reply = self.discard(request["cell"], int(request["worker"]))
            elif op == Op.FINISH:
                reply = self.finish(request["cell"], request.get("status"))
            else:
                reply = {"event": "error", "status": Status.FAILED, "reason": f"unknown op {op!r}"}
            replies.write(json.dumps(reply) + "\n")
            replies.flush()
            if self.stopping:
                return 130
        return 130 if self.stopping else 0

    def run_all(self) -> int:
        """Every cell start to finish, the profile's fixed number of processes each."""
        cells: list[dict[str, Any]] = list(self.job["cells"])
        processes = int(self.job["pyperf"].get("processes", 1))
        emit("start", interpreter=self.job["interpreter"], total=len(cells))
        failed = 0
        for index, cell in enumerate(cells, 1):
            if self.stopping:
                break
            store = CellStore(self.cells_dir, cell["id"])
            if os.path.exists(store.result):
                emit("cell", index=index, total=len(cells), id=cell["id"], status="done-before", elapsed=None)
                continue
            shutil.rmtree(store.runs, ignore_errors=True)
            if os.path.exists(store.log):
                os.unlink(store.log)
            started, lives = time.monotonic(), []
            reply: dict[str, Any] = {"status": Status.OK}
            for _ in range(processes):
                reply = self.worker(cell["id"])
                lives += reply["seconds"]
                if reply["status"] != Status.OK:
                    break
            if self.stopping:
                break
            elapsed = round(time.monotonic() - started, 3)
            if reply["status"] == Status.OK:
                reply = self.finish(
                    cell["id"],
                    {"elapsed": elapsed, "worker_seconds": lives, "processes": processes, "stopped": "fixed"},
                )
            failed += reply["status"] != Status.OK
            emit(
                "cell",
                index=index,
                total=len(cells),
                id=cell["id"],
                status=reply["status"],
                elapsed=elapsed,
                reason=reply.get("reason"),
            )
        emit("end", interpreter=self.job["interpreter"], interrupted=self.stopping, failed=failed)
        return 130 if self.stopping else 0

    def run_worker(
        self,
        command: list[str],
        log: Any,
        output: str,
        deadline: float,
        what: str,
        lives: list[float],
        cell: Mapping[str, Any] | None = None,
    ) -> Any:
        if os.path.exists(output):
            os.unlink(output)
        log.write(f"--- {what}\n".encode())
        log.flush()
        started = time.monotonic()
        # A session of its own: on timeout or interrupt, the worker and its pool's processes die
        # together instead of running on as orphans.
        self.current = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=worker_environ(cell),
            start_new_session=True,
            preexec_fn=self._limit_memory if self.memory_limit is not None else None,
        )
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
            lives.append(time.monotonic() - started)
        if expired.is_set():
            raise CellTimeout
        if returncode != 0 or self.stopping or not os.path.exists(output):
            raise WorkerFailed(returncode, what)
        bench = _load(output)
        os.unlink(output)
        return bench


def load_job(job_path: str) -> dict[str, Any] | None:
    with open(job_path, encoding="utf-8") as handle:
        job: dict[str, Any] = json.load(handle)
    if job.get("format") != JOB_FORMAT:
        sys.stderr.write(f"{job_path}: job format {job.get('format')!r} is not {JOB_FORMAT}\n")
        return None
    return job


def run_job(job_path: str, out_dir: str, serve: bool = False) -> int:
    job = load_job(job_path)
    if job is None:
        return 2
    runner = CellRunner(job, out_dir)
    signal.signal(signal.SIGINT, runner.handle_signal)
    signal.signal(signal.SIGTERM, runner.handle_signal)
    if serve:
        return runner.serve(sys.stdin, sys.stdout)
    return runner.run_all()
