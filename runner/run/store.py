"""The results store: one folder per run.

```
OUT/results/<run-id>/
  manifest.json            what ran where, what was skipped or failed and why, stage timings
  <interpreter>.json       pyperf BenchmarkSuite: one benchmark per finished cell
  jobs/<interpreter>.json  the job handed to the harness
  cells/<interpreter>/     per-cell result, status and log, as the harness wrote them
```

The per-interpreter suites are merged from the per-cell files, so whatever finished before a
crash, a hang or an interrupt is kept; ``pyperf compare_to a.json b.json`` works on them.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import platform
import shutil
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyperf

from gilmatrix.errors import UserError
from gilmatrix.harness.contract import Status, cell_slug
from gilmatrix.harness.drive import CellStore, write_atomic
from gilmatrix.harness.facts import CpuTopology, cpu_topology
from gilmatrix.matrix.plan import Cell
from gilmatrix.run.manifest import (
    CELL_STATUS,
    FileProblem,
    Spec,
    read_json,
    read_manifest,
    shape_problem,
    write_manifest,
)

# pyperf refuses times of 0 and below (and NaN); gilmatrix refuses infinite ones too, and any
# beyond a billion seconds (no cell runs 30 years: such a figure only overflows the statistics)
LONGEST = 1e9


def _time_problem(value: Any, zero: bool = False) -> bool:
    """Whether ``value`` is not a time pyperf keeps: above 0 (a warmup's: from 0), finite."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return True
    lowest = value >= 0 if zero else value > 0
    return not (lowest and value < LONGEST)  # NaN: not a time


def _loops_problem(metadata: dict[str, Any]) -> str | None:
    """loops and inner_loops: whole numbers from 1, up to 2**31 (their product, an int64)."""
    for key in ("loops", "inner_loops"):
        value = metadata.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 2**31:
            return f"{key}: expected a whole number from 1, found {json.dumps(value)[:40]}"
    return None


def suite_problem(data: Any) -> str | None:
    """What is wrong with the parsed JSON of a pyperf suite file (``<interp>.json``, a cell's
    ``<slug>.json``) as far as gilmatrix reads it; None when its shape is right."""
    if not isinstance(data, dict):
        return f"expected a pyperf suite (a JSON mapping), found a {type(data).__name__}"
    suite_md = data.get("metadata", {})
    if not isinstance(suite_md, dict):
        return "metadata: expected a mapping"
    problem = _loops_problem(suite_md)
    if problem is not None:
        return f"metadata.{problem}"
    benchmarks = data.get("benchmarks")
    if not isinstance(benchmarks, list):
        return "benchmarks: expected a list of benchmarks"
    names: dict[Any, int] = {}
    for index, bench in enumerate(benchmarks):
        if not isinstance(bench, dict) or not isinstance(bench.get("metadata", {}), dict):
            return f"benchmarks[{index}]: expected a mapping with a metadata mapping"
        problem = _loops_problem(bench.get("metadata", {}))
        if problem is not None:
            return f"benchmarks[{index}].metadata.{problem}"
        name = bench.get("metadata", {}).get("name", suite_md.get("name"))
        if isinstance(name, str) and name in names:  # pyperf refuses it too
            return f"benchmarks[{index}]: {json.dumps(name)[:60]} is there twice (also [{names[name]}])"
        names[name] = index
        runs = bench.get("runs")
        if not isinstance(runs, list):
            return f"benchmarks[{index}].runs: expected a list of runs"
        for number, run in enumerate(runs):
            where = f"benchmarks[{index}].runs[{number}]"
            if not isinstance(run, dict) or not isinstance(run.get("metadata", {}), dict):
                return f"{where}: expected a mapping with a metadata mapping"
            problem = _loops_problem(run.get("metadata", {}))
            if problem is not None:
                return f"{where}.metadata.{problem}"
            for key in ("values", "warmups"):
                items = run.get(key, [])
                if not isinstance(items, list):
                    return f"{where}.{key}: expected a list"
            if any(_time_problem(v) for v in run.get("values", [])):
                return f"{where}.values: expected times in seconds (numbers above 0 and below {LONGEST:g})"
            for warmup in run.get("warmups", []):
                pair = isinstance(warmup, list) and len(warmup) == 2
                if not pair or _time_problem(warmup[1], zero=True):
                    return f"{where}.warmups: expected [loops, time] pairs"
    return None


def _read_json(path: Path, root: Path | None) -> tuple[Any, str | None]:
    try:
        return read_json(path, path.parent if root is None else root), None
    except FileProblem as exc:
        return None, str(exc)


def load_suite(data: Any) -> pyperf.BenchmarkSuite:
    """pyperf's own reading of a suite already read by :func:`read_json` (pyperf never opens
    the file: it could have been swapped for a FIFO since)."""
    return pyperf.BenchmarkSuite.load(io.StringIO(json.dumps(data)))


def result_problem(path: Path, root: Path | None = None) -> str | None:
    """What is wrong with a pyperf result file of the run folder ``root`` (default: the file's
    own folder), or None when pyperf loads it."""
    data, problem = _read_json(path, root)
    problem = problem or suite_problem(data)
    if problem is not None:
        return problem
    try:
        load_suite(data)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        return f"not a pyperf suite pyperf can load ({type(exc).__name__}: {exc})"
    return None


def status_problem(path: Path, root: Path | None = None) -> str | None:
    """What is wrong with a cell's ``.status.json``, or None."""
    data, problem = _read_json(path, root)
    return problem or shape_problem(data, CELL_STATUS)


def read_facts(path: Path, root: Path, spec: Spec) -> tuple[dict[str, Any] | None, str | None]:
    """A small JSON mapping of a run folder (``github-runner.json``): (it, None) when it reads
    and has the shape ``spec``, (None, None) when it is absent, else (None, what is wrong)."""
    if not os.path.lexists(path):
        return None, None
    data, problem = _read_json(path, root)
    problem = problem or shape_problem(data, spec)
    return (None, problem) if problem is not None else (data, None)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def new_run_id(profile: str) -> str:
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{profile}"


def host_facts(topology: CpuTopology | None = None) -> dict[str, Any]:
    """This machine, for the manifest; ``topology``: its CPUs when already read (the plan's)."""
    topology = topology if topology is not None else cpu_topology()
    cpu_model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "physical_cores": len(topology.physical),  # of one socket: see cpu_topology
        "smt": topology.smt,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def folder_bytes(path: Path) -> int:
    """The disk space the files below ``path`` take (allocated blocks, as ``du`` counts)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total


def fmt_bytes(count: float) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


@dataclass(frozen=True, slots=True)
class CellOutcome:
    status: str  # ok | failed | timeout | skipped | missing
    reason: str | None
    elapsed: float | None
    output_tail: str | None
    warnings: tuple[str, ...] = ()  # pyperf's stability checks, for cells that ran
    # seconds each pyperf worker process lived (spawn to exit), in the order they ran
    worker_seconds: tuple[float, ...] = ()
    processes: int | None = None  # worker processes whose values were kept
    precision: float | None = None  # relative half-width of the 95% interval reached
    target: float | None = None  # what the profile asked for (None: fixed processes)
    stopped: str | None = None  # fixed | precision | budget
    rounds: int | None = None  # rounds the cell took part in
    discarded: int = 0  # worker processes set aside (taken on a disturbed machine)


LOCK = ".lock"


class RunLock:
    """One writer per run folder: an exclusive ``flock`` on ``RUN/.lock``, held by the run (or
    resume) for as long as it writes the folder. The kernel drops it when the process ends,
    however it ends (SIGKILL included), so a stale file never blocks a resume; the file's
    content (pid, start time) only names the holder in the refusal."""

    def __init__(self, path: Path, what: str) -> None:
        self.path = path / LOCK
        try:
            self.fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise UserError(f"cannot lock {path}: {exc.strerror}") from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            self.fd = None
            try:
                holder = json.loads(self.path.read_text())
                who = f"process {holder['pid']} (started {holder['started']}, {holder['what']})"
            except (OSError, ValueError, KeyError, TypeError):
                who = "another process"
            raise UserError(
                f"{path} is being written by {who}: one run at a time per run folder; wait "
                "for it to end, or stop it (its finished cells are kept) and --resume"
            ) from None
        os.ftruncate(self.fd, 0)
        os.write(self.fd, json.dumps({"pid": os.getpid(), "started": now(), "what": what}).encode())

    def release(self) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)  # no stale holder named once released
            os.close(self.fd)
            self.fd = None


class RunDir:
    """A run's folder: paths, the manifest, and reading back what the harness wrote."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock: RunLock | None = None  # held while this process writes the run

    def acquire(self, what: str) -> None:
        """Take the run folder's writer lock (UserError, exit 2, when another process has it)."""
        if self.lock is None:
            self.lock = RunLock(self.path, what)

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    @classmethod
    def create(cls, out: Path, run_id: str) -> RunDir:
        return cls.create_at(out / "results" / run_id)

    @classmethod
    def create_at(cls, path: Path) -> RunDir:
        """A new run folder at ``path`` (a merged run's replicates live inside it)."""
        try:
            (path / "jobs").mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            raise UserError(f"{path} exists already: pick another --run-id or --resume it") from None
        except OSError as exc:
            raise UserError(f"cannot create the results folder {path}: {exc.strerror}") from None
        return cls(path)

    @classmethod
    def open(cls, path: Path) -> RunDir:
        """An existing run (for resume and report); refuses folders it cannot read."""
        read_manifest(path)
        return cls(path)

    def manifest(self) -> dict[str, Any]:
        return read_manifest(self.path)

    def check_cells(self) -> None:
        """Before a resume: every finished cell's files (``cells/<interp>/<slug>.json`` and
        ``.status.json``) must read back, else a UserError names the file and what is wrong —
        before anything runs, rather than a traceback when the suites are merged at the end."""
        for path in sorted(self.path.glob("cells/*/*.json")):
            slug = path.name.removesuffix(".status.json").removesuffix(".json")
            problem = (
                status_problem(path, self.path)
                if path.name.endswith(".status.json")
                else result_problem(path, self.path)
            )
            if problem is not None:
                raise UserError(
                    f"{path}: {problem} (cut off or edited by hand?): this cell's result cannot be "
                    f"read back; restore the file, or delete {slug}.json and {slug}.status.json "
                    f"in {path.parent} to measure the cell again"
                )

    def space_report(self) -> str:
        """What to free when the disk of the run is full: how much is free there, what this run
        and the other folders of its output folder hold, and how to go on."""
        out = self.path.parent.parent  # OUT/results/<run-id>
        usage = shutil.disk_usage(self.path)
        device = self.path.stat().st_dev  # only what is on the full disk counts

        def here(folder: Path) -> bool:
            return folder.is_dir() and folder.stat().st_dev == device

        def size(entry: Path) -> int:
            return folder_bytes(entry) if entry.is_dir() else entry.lstat().st_blocks * 512

        beside = [p for p in self.path.parent.iterdir() if p != self.path and p.stat().st_dev == device]
        others = [p for p in out.iterdir() if here(p) and p.name != "results"]
        parts = [f"this run's folder {self.path} holds {fmt_bytes(folder_bytes(self.path))}"]
        if beside:  # older runs (and whatever else is there) next to it
            sizes = sorted(((size(p), p.name) for p in beside), reverse=True)
            largest, name = sizes[0]
            parts.append(
                f"the {len(beside)} other {'entry' if len(beside) == 1 else 'entries'} of {self.path.parent} "
                f"{'holds' if len(beside) == 1 else 'hold'} "
                f"{fmt_bytes(sum(n for n, _ in sizes))} (the largest: {name}, {fmt_bytes(largest)})"
            )
        for other in sorted(others):
            parts.append(f"{other} holds {fmt_bytes(folder_bytes(other))}")
        return (
            f"The disk of {self.path} has {fmt_bytes(usage.free)} free of {fmt_bytes(usage.total)}; "
            + "; ".join(parts)
            + f". Free space there, then continue with `gilmatrix run --resume {self.path}`: "
            "the finished cells and worker processes on disk are kept."
        )

    def write_manifest(self, data: dict[str, Any]) -> None:
        write_manifest(self.path, data)

    def write_job(self, interpreter: str, job: dict[str, Any]) -> str:
        name = f"{interpreter}.json"
        write_atomic(str(self.path / "jobs" / name), json.dumps(job, indent=1) + "\n")
        return name

    def cell_base(self, cell: Cell) -> Path:
        return self.path / "cells" / cell.interpreter / cell_slug(cell.id)

    def cell_store(self, cell: Cell) -> CellStore:
        return CellStore(str(self.path / "cells" / cell.interpreter), cell.id)

    def outcome(self, cell: Cell) -> CellOutcome:
        if cell.status == Status.SKIPPED:
            return CellOutcome(Status.SKIPPED, cell.reason, None, None)
        base = self.cell_base(cell)
        status_file = base.with_name(base.name + ".status.json")
        if status_file.exists():
            status = json.loads(status_file.read_text())
            if status["status"] != Status.OK or base.with_name(base.name + ".json").exists():
                return CellOutcome(
                    status["status"],
                    status.get("reason"),
                    status.get("elapsed"),
                    status.get("output_tail"),
                    tuple(status.get("warnings", ())),
                    tuple(status.get("worker_seconds", ())),
                    status.get("processes"),
                    status.get("precision"),
                    status.get("target"),
                    status.get("stopped"),
                    status.get("rounds"),
                    int(status.get("discarded") or 0),
                )
        return CellOutcome(Status.MISSING, "did not run to the end (interrupted or crashed run)", None, None)

    def merge_suite(self, interpreter: str, cells: Iterable[Cell]) -> Path | None:
        """Merge the finished cells of ``interpreter`` into ``<interpreter>.json`` (plan order)."""
        benchmarks = []
        for cell in cells:
            result = self.cell_base(cell).with_name(self.cell_base(cell).name + ".json")
            if result.exists():
                benchmarks.extend(pyperf.BenchmarkSuite.load(str(result)).get_benchmarks())
        target = self.path / f"{interpreter}.json"
        if not benchmarks:
            target.unlink(missing_ok=True)
            return None
        suite = pyperf.BenchmarkSuite(benchmarks)
        tmp = target.with_name(target.name + ".tmp")
        tmp.unlink(missing_ok=True)
        try:
            suite.dump(str(tmp), replace=True)
            os.replace(tmp, target)
        except OSError:
            tmp.unlink(missing_ok=True)  # a full disk: no half-written file, the old one stays
            raise
        return target
