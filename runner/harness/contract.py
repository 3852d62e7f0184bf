"""What the host and the harness agree on, across the container boundary: one definition each.

The harness runs inside every interpreter of the matrix (CPython 3.10+, the standard library and
pyperf only) and the host reads what it writes, so the shapes both sides share live here, in a
module of the harness the host imports: the cell id, the job and status formats and statuses,
the execution models, the CPU classes, pyperf's stability checks and the registry of the
metadata keys gilmatrix adds to pyperf's (with the default a result written before a key
existed reads as).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

# The version of the files the harness reads and writes: a job (``jobs/<interp>.json``) and a
# cell's ``<slug>.status.json``.
JOB_FORMAT = 1


class CellId(NamedTuple):
    """A cell of an interpreter: ``workload/executor/workers``, e.g. ``crunch/threads/4``."""

    workload: str
    executor: str
    workers: int

    def __str__(self) -> str:
        return f"{self.workload}/{self.executor}/{self.workers}"

    @property
    def slug(self) -> str:
        """The cell's file name stem (``crunch__threads__4``)."""
        return cell_slug(str(self))

    @classmethod
    def parse(cls, text: str) -> CellId:
        """``"crunch/threads/4"`` -> CellId; ValueError when it is not of that shape (workload
        ids may not hold a slash; the last two parts are an executor and a worker count)."""
        parts = str(text).rsplit("/", 2)
        if len(parts) != 3 or not parts[0] or not parts[1] or not parts[2].isdigit():
            raise ValueError(f"{text!r} is not a cell id (workload/executor/workers)")
        return cls(parts[0], parts[1], int(parts[2]))

    @classmethod
    def maybe(cls, text: str) -> CellId | None:
        """Like parse, None instead of the error (a problem may name ``*`` or a workload)."""
        try:
            return cls.parse(text)
        except ValueError:
            return None


def cell_slug(cell_id: str) -> str:
    return str(cell_id).replace("/", "__")


class Status:
    """A cell's status, in its status file and in the manifest."""

    OK = "ok"
    FAILED = "failed"
    TIMEOUT = "timeout"
    INTERRUPTED = "interrupted"  # the run was stopped while the cell was measured
    SKIPPED = "skipped"  # planned but not runnable (the reason says why)
    MISSING = "missing"  # planned, never reported (merge: its machine did not deliver)
    PENDING = "pending"  # not finished yet (a run in progress, or interrupted)
    # the lifecycle around those: a plan's cell is PLANNED (or SKIPPED: unsupported); while a
    # run measures it the host holds it PENDING, then DONE (merged) or FAILED
    PLANNED = "planned"
    DONE = "done"
    # an interpreter's entry in the manifest: RUNNING while its driver lives, RAN after (else
    # SKIPPED: not available, or FAILED: its harness stopped)
    RUNNING = "running"
    RAN = "ran"


def status_record(
    cell_id: str,
    status: str,
    reason: str | None,
    *,
    elapsed: float | None = None,
    returncode: int | None = None,
    output_tail: str | None = None,
    worker_seconds: list[float] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A cell's ``<slug>.status.json``, written by the harness (a cell it finished or that
    failed) and by the host (a cell whose driver is gone): the one builder of that shape.
    ``extra``: the host's figures of a finished cell (processes, precision, ...)."""
    record: dict[str, Any] = {
        "format": JOB_FORMAT,
        "id": cell_id,
        "status": status,
        "reason": reason,
        "elapsed": elapsed,
        "returncode": returncode,
        "output_tail": output_tail,
    }
    if worker_seconds is not None:
        record["worker_seconds"] = worker_seconds
    record.update(extra)
    return record


class WorkerFile:
    """A worker process' file in a cell's ``<slug>.runs/``: ``w0001.json`` while it is kept,
    ``w0001.discarded`` once set aside (its window was disturbed). Numbered from 1 in the order
    the processes ran; the harness names them, the host reads the number back."""

    KEPT = ".json"
    DISCARDED = ".discarded"
    _NAME = re.compile(r"w(\d{4})\.(json|discarded)")

    @staticmethod
    def name(number: int, discarded: bool = False) -> str:
        return f"w{number:04d}" + (WorkerFile.DISCARDED if discarded else WorkerFile.KEPT)

    @staticmethod
    def number(name: str, discarded: bool = True) -> int | None:
        """The number of a worker file's name (``discarded``: set-aside ones count too), None
        for any other name."""
        match = WorkerFile._NAME.fullmatch(name)
        if match is None or (match.group(2) == "discarded" and not discarded):
            return None
        return int(match.group(1))


class Op:
    """The host's commands to an interpreter's harness driver (``python -m gilmatrix.harness
    serve``), one JSON object per line on its stdin; each but ``quit`` gets one JSON line back
    (a reply: ``status``, a Status, and the fields below)."""

    WORKER = "worker"  # {"cell", "round"} -> {"worker", "values", "seconds", "loops", "warnings"}
    DISCARD = "discard"  # {"cell", "worker"} -> the worker's file set aside (MISSING: no such file)
    FINISH = "finish"  # {"cell", "status": the host's figures} -> merged into <slug>.json
    QUIT = "quit"  # no reply: the driver exits

    @staticmethod
    def worker(cell_id: str, round_number: int | None) -> dict[str, Any]:
        return {"op": Op.WORKER, "cell": cell_id, "round": round_number}

    @staticmethod
    def discard(cell_id: str, number: int) -> dict[str, Any]:
        return {"op": Op.DISCARD, "cell": cell_id, "worker": number}

    @staticmethod
    def finish(cell_id: str, figures: Mapping[str, Any]) -> dict[str, Any]:
        return {"op": Op.FINISH, "cell": cell_id, "status": dict(figures)}

    @staticmethod
    def quit() -> dict[str, Any]:
        return {"op": Op.QUIT}


class Stopped:
    """Why the host stopped measuring a cell (its status file's ``stopped``)."""

    FIXED = "fixed"  # the profile's fixed number of processes
    PRECISION = "precision"  # its interval reached the target
    BUDGET = "budget"  # its own budget spent (max_processes, max_seconds)
    RUN_BUDGET = "run-budget"  # the run's budget spent (run_minutes), its minimum reached
    DECIDED = "decided"  # every comparison it is part of decided (precision.decide: run/decide.py)
    OUT_OF_BUDGET = frozenset({BUDGET, RUN_BUDGET})  # stopped short of the target


def interpreter_key(ident: str) -> tuple[Any, ...]:
    """The order of interpreters everywhere: 3.9 < 3.10 < 3.13 < 3.13t; any other id (a
    ``--python`` name, "host") after them, by name."""
    try:
        return (0, *(int(p) for p in ident.rstrip("t").split(".")), ident.endswith("t"))
    except ValueError:
        return (1, ident)


# -- execution models -----------------------------------------------------------------------------


class Executor(NamedTuple):
    name: str
    model: str  # sequential | threads | processes | interpreters | asyncio
    description: str
    uses_workers: bool  # False: one cell only, at 1 worker
    min_version: tuple[int, int] = (3, 10)
    start_method: str | None = None  # processes: None = the interpreter's default


EXECUTORS: dict[str, Executor] = {
    e.name: e
    for e in (
        Executor("sequential", "sequential", "a plain loop in the calling thread", False),
        Executor("threads", "threads", "concurrent.futures.ThreadPoolExecutor", True),
        Executor(
            "processes", "processes", "ProcessPoolExecutor, the interpreter's default start method", True
        ),
        Executor("processes-fork", "processes", "ProcessPoolExecutor, fork", True, start_method="fork"),
        Executor(
            "processes-forkserver",
            "processes",
            "ProcessPoolExecutor, forkserver",
            True,
            start_method="forkserver",
        ),
        Executor("processes-spawn", "processes", "ProcessPoolExecutor, spawn", True, start_method="spawn"),
        Executor(
            "interpreters",
            "interpreters",
            "concurrent.futures.InterpreterPoolExecutor (PEP 734)",
            True,
            min_version=(3, 14),
        ),
        Executor(
            "asyncio",
            "asyncio",
            "asyncio: native awaitables, else asyncio.to_thread; TaskGroup on 3.11+",
            True,
        ),
    )
}
EXECUTOR_ORDER = tuple(EXECUTORS)  # the order of tables and charts


def executor_rank(name: str) -> int:
    return EXECUTOR_ORDER.index(name) if name in EXECUTORS else len(EXECUTOR_ORDER)


def model_of(executor: str) -> str:
    """An executor's execution model (for results written before ``gilmatrix_model``)."""
    if executor in EXECUTORS:
        return EXECUTORS[executor].model
    return "processes" if executor.startswith("processes") else executor


# -- what a cell's CPU time says ------------------------------------------------------------------

# Below this wall time per call, CPU clocks are too coarse for a CPU/wall ratio to mean much.
MIN_CLASSIFIABLE_SECONDS = 0.001
WAITING_BELOW = 0.5  # CPU / wall: mostly waiting
SERIALIZED_BELOW = 1.3  # one core busy at a time: the GIL, or a single worker
CPU_CLASSES = ("waiting", "serialized", "parallel bytecode", "parallel native", "unknown")


def classify(kind: str, parallelism: float | None, wall: float | None = None) -> str:
    """What a cell's CPU/wall ratio says its time went to."""
    if parallelism is None or (wall is not None and wall < MIN_CLASSIFIABLE_SECONDS):
        return "unknown"
    if parallelism < WAITING_BELOW:
        return "waiting"
    if parallelism < SERIALIZED_BELOW:
        return "serialized"
    return "parallel native" if kind == "native" else "parallel bytecode"


# -- pyperf's stability checks (``pyperf check``) ------------------------------------------------

STDEV_WARNING = 0.10  # the standard deviation 10% of the mean or more
EXTREME_WARNING = 0.50  # the minimum or maximum 50% away from the mean or more
SHORT_RAW_SECONDS = 1e-3  # a raw value (all loops of one call) under 1 ms


def stability_warnings(
    n: int, mean: float, stdev: float, low: float, high: float, raw_min: float | None = None
) -> list[str]:
    """pyperf's checks of a benchmark's values, so that gilmatrix warns where pyperf would."""
    out = []
    if n >= 2 and mean > 0 and stdev / mean >= STDEV_WARNING:
        out.append(f"the standard deviation is {stdev / mean:.0%} of the mean")
    for label, value in (("minimum", low), ("maximum", high)):
        if mean > 0 and abs(value - mean) / mean >= EXTREME_WARNING:
            side = "greater" if value > mean else "smaller"
            out.append(f"the {label} is {abs(value - mean) / mean:.0%} {side} than the mean")
    if raw_min is not None and raw_min < SHORT_RAW_SECONDS:
        out.append(f"the shortest raw value is only {raw_min * 1e3:.3f} ms")
    return out


# -- gilmatrix's pyperf metadata ------------------------------------------------------------------


class Key(NamedTuple):
    name: str
    type: type
    default: Any  # what a result written before the key existed reads as
    where: str  # "benchmark": the cell's, written once; "run": each worker process'
    doc: str


METADATA: dict[str, Key] = {
    k.name: k
    for k in (
        Key("gilmatrix_interpreter", str, "", "benchmark", "the matrix' interpreter id"),
        Key("gilmatrix_workload", str, "", "benchmark", "the matrix' workload id"),
        Key("gilmatrix_implementation", str, "", "benchmark", "the harness workload it runs"),
        Key("gilmatrix_workload_kind", str, "", "benchmark", "cpu, io, native, ...: what bounds it"),
        Key("gilmatrix_executor", str, "", "benchmark", "the executor (EXECUTORS)"),
        Key("gilmatrix_model", str, "", "benchmark", "its execution model"),
        Key("gilmatrix_workers", int, 1, "benchmark", "the worker count"),
        Key("gilmatrix_params", str, "{}", "benchmark", "the workload's parameters, JSON"),
        Key("gilmatrix_tasks", int, 1, "benchmark", "tasks per timed call"),
        Key(
            "gilmatrix_pool_in_timing",
            str,
            "",
            "benchmark",
            "yes: the pool's creation and shutdown are timed",
        ),
        Key("gilmatrix_py_gil_disabled", int, 0, "benchmark", "Py_GIL_DISABLED of the build"),
        Key(
            "gilmatrix_gil_enabled",
            str,
            "n/a",
            "benchmark",
            "sys._is_gil_enabled() at run time: true, false, n/a",
        ),
        Key(
            "gilmatrix_gil_before_import",
            str,
            "",
            "benchmark",
            "user module: sys._is_gil_enabled() before importing it: true, false",
        ),
        Key(
            "gilmatrix_gil_reenabled_by",
            str,
            "",
            "benchmark",
            "user module: the modules whose import turned the GIL back on",
        ),
        Key("gilmatrix_module", str, "", "benchmark", "user module: its file, as the matrix names it"),
        Key("gilmatrix_sys_version", str, "", "benchmark", "sys.version"),
        Key("gilmatrix_config_args", str, "", "benchmark", "sysconfig's CONFIG_ARGS"),
        Key("gilmatrix_start_method", str, "", "benchmark", "processes: the start method"),
        Key("gilmatrix_async_mode", str, "", "benchmark", "asyncio: native or to_thread"),
        Key(
            "gilmatrix_cpu_time",
            float,
            float("nan"),
            "run",
            "median CPU seconds of one timed call (all its loops; the pool's processes too)",
        ),
        Key("gilmatrix_parallelism", float, float("nan"), "run", "median CPU / wall of a call"),
        Key("gilmatrix_class", str, "", "run", "classify() of the parallelism"),
        Key("gilmatrix_children_max_rss", int, 0, "run", "processes: the pool's peak RSS, bytes"),
        Key(
            "gilmatrix_reference",
            float,
            float("nan"),
            "run",
            "median seconds of the fixed reference loop timed around each call: the machine's speed",
        ),
        Key(
            "gilmatrix_references",
            str,
            "",
            "run",
            "each call's reference seconds, space-separated, in call order (the values are the last)",
        ),
        Key(
            "gilmatrix_waits",
            str,
            "",
            "run",
            "each call's seconds waiting on a run queue per second on a CPU (the cell's threads and"
            " pool processes, Linux schedstat), space-separated, in call order; only where the"
            " cell's workers fit the CPUs it may use",
        ),
        Key(
            "gilmatrix_others",
            str,
            "",
            "run",
            "each call's share of the worker's CPUs that other work used: the CPUs' busy seconds"
            " (Linux /proc/stat, clock ticks) less the cell's own CPU seconds, per second of the"
            " call and CPU; space-separated, in call order",
        ),
        Key("gilmatrix_round", int, 0, "run", "the host's round of this worker process (0: none)"),
        Key(
            "gilmatrix_partners",
            str,
            "",
            "run",
            "pairing: the seconds per loop of the workload's sequential run, timed in this process"
            " just before and just after each call (their mean), space-separated, in call order",
        ),
    )
}
RUN_KEYS = tuple(k.name for k in METADATA.values() if k.where == "run")


def partner_ratios(bench: Any) -> list[float]:
    """Pairing: each value of a pyperf benchmark over its partner's figure around the same call
    (``gilmatrix_partners``: every call's at the final loop count, the values last), for every
    run that recorded them; [] when a run has none (the cell was not paired)."""
    ratios: list[float] = []
    for run in bench.get_runs():
        if not run.values:
            continue
        text = run.get_metadata().get("gilmatrix_partners", "")
        try:
            partners = [float(x) for x in str(text).split()][-len(run.values) :]
        except ValueError:
            return []
        if len(partners) < len(run.values) or not all(p > 0 for p in partners):
            return []
        ratios.extend(v / p for v, p in zip(run.values, partners, strict=True))
    return ratios


def meta(metadata: Mapping[str, Any], name: str, fallback: Any = None) -> Any:
    """A gilmatrix key of pyperf metadata, as its registered type; ``fallback`` (else the
    registry's default) when it is absent, empty or not of that type."""
    key = METADATA[name]
    value = metadata.get(name)
    default = key.default if fallback is None else fallback
    if value is None or value == "":
        return default
    try:
        return key.type(value)
    except (TypeError, ValueError, OverflowError):  # int(inf): a damaged file's figure
        return default
