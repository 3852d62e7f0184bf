"""The run loop: for each interpreter, prepare its environment, hand the harness its job, follow
its progress, merge its cells into a pyperf suite and keep the manifest current.

The manifest is rewritten after every interpreter and on interrupt, so a run stopped at any
point leaves a folder that ``gilmatrix report`` and ``gilmatrix run --resume`` understand.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

import gilmatrix
from gilmatrix.backends.base import Backend
from gilmatrix.errors import EnvironmentUnavailable, UserError
from gilmatrix.matrix import Matrix
from gilmatrix.plan import Cell, Plan
from gilmatrix.results import RunDir, host_facts, load_average, new_run_id, now


class Interrupted(Exception):
    """SIGINT or SIGTERM: stop after saving what finished."""


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted(signal.Signals(signum).name)


def fmt_duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60:02d}:{seconds % 60:02d}"


class Progress:
    """One line per finished cell: where we are, how long it took, roughly how long is left."""

    def __init__(self, total: int, stream: TextIO = sys.stderr) -> None:
        self.total, self.done, self.stream = total, 0, stream
        self.start = time.monotonic()
        self.measured = 0.0  # seconds spent in cells that ran (cached ones take none)
        self.ran = 0

    def line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def cell(self, interp: str, event: dict[str, Any]) -> None:
        self.done += 1
        if event.get("elapsed") is not None:
            self.measured += event["elapsed"]
            self.ran += 1
        elapsed = time.monotonic() - self.start
        left = ""
        if self.ran:
            left = f", ~{fmt_duration(self.measured / self.ran * (self.total - self.done))} left"
        took = f" {event['elapsed']:.1f}s" if event.get("elapsed") is not None else ""
        reason = f" — {event['reason']}" if event.get("reason") else ""
        self.line(f"[{self.done:>{len(str(self.total))}}/{self.total} {fmt_duration(elapsed)}{left}] "
                  f"{interp} {event['id']}: {event['status']}{took}{reason}")

    def skip(self, interp: str, count: int, reason: str) -> None:
        self.done += count
        self.line(f"[{self.done}/{self.total}] {interp}: {count} cells skipped — {reason}")


def make_job(plan: Plan, interp_id: str, cells: list[Cell], run_id: str) -> dict[str, Any]:
    return {
        "format": gilmatrix.FORMAT_VERSION,
        "run_id": run_id,
        "interpreter": interp_id,
        "pyperf": {k: v for k, v in asdict(plan.profile.pyperf).items() if v is not None},
        "timeout": plan.profile.timeout,
        "memory_mb": plan.profile.memory_mb,
        "cells": [{k: v for k, v in c.to_json().items() if k not in ("status", "reason")}
                  for c in cells],
    }


class MatrixRun:
    def __init__(self, matrix: Matrix, plan: Plan, backend: Backend, run_dir: RunDir,
                 run_id: str, only: list[str], log: Callable[[str], None]) -> None:
        self.matrix, self.plan, self.backend, self.run_dir = matrix, plan, backend, run_dir
        self.run_id, self.only, self.log = run_id, only, log
        self.interpreters: dict[str, dict[str, Any]] = {}
        self.stages: dict[str, float] = {}
        self.started = now()
        self.state = "running"
        self.warnings: list[str] = []

    # -- manifest ------------------------------------------------------------------------

    def manifest(self) -> dict[str, Any]:
        cells = []
        for cell in self.plan.cells:
            outcome = self.run_dir.outcome(cell)
            interp = self.interpreters.get(cell.interpreter, {})
            if outcome.status == "missing" and interp.get("status") == "skipped":
                outcome = type(outcome)("skipped", interp["reason"], None, None)
            cells.append({"interpreter": cell.interpreter, "id": cell.id, "workload": cell.workload,
                          "executor": cell.executor, "workers": cell.workers, **asdict(outcome)})
        return {
            "format": gilmatrix.FORMAT_VERSION,
            "tool": {"name": "gilmatrix", "version": gilmatrix.__version__},
            "run_id": self.run_id,
            "started": self.started,
            "finished": None if self.state == "running" else now(),
            "state": self.state,
            "matrix": {"path": str(self.matrix.path), "sha256": self.matrix.sha256,
                       "overrides": [str(o) for o in self.matrix.overrides],
                       "profile": self.plan.profile.name, "only": self.only,
                       "settings": {**asdict(self.plan.profile.pyperf),
                                    "timeout": self.plan.profile.timeout,
                                    "memory_mb": self.plan.profile.memory_mb}},
            "backend": self.backend.describe(),
            "host": host_facts(),
            "warnings": self.warnings,
            "stages": {k: round(v, 3) for k, v in self.stages.items()},
            "interpreters": self.interpreters,
            "cells": cells,
        }

    def save(self) -> None:
        self.run_dir.write_manifest(self.manifest())

    # -- running -------------------------------------------------------------------------

    def execute(self) -> int:
        planned = [c for c in self.plan.cells if c.status == "planned"]
        progress = Progress(len(planned))
        top = max((c.workers for c in planned), default=1)
        cpus = host_facts()["usable_cpus"] or 1
        if top > cpus:
            self.warnings.append(f"this machine has {cpus} usable CPUs, fewer than the largest "
                                 f"worker count ({top}): cells above {cpus} workers cannot scale")
            self.log(f"warning: {self.warnings[-1]}")
        self.save()
        previous = {s: signal.signal(s, _raise_interrupted) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            for interp in self.plan.interpreters:
                cells = self.plan.cells_for(interp.id)
                if not cells:
                    self.interpreters[interp.id] = {"status": "skipped", "reason": "no runnable cells"}
                    continue
                self.run_interpreter(interp, cells, progress)
                self.save()
            statuses = {cell["status"] for cell in self.manifest()["cells"]}
            self.state = "complete" if statuses <= {"ok", "skipped"} else "partial"
            return 0
        except Interrupted as exc:
            self.state = "interrupted"
            self.log(f"\ninterrupted ({exc}): finished cells are kept; continue with "
                     f"`gilmatrix run --resume {self.run_dir.path}`")
            return 130
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for interp_id in self.interpreters:
                self.run_dir.merge_suite(interp_id, self.plan.cells_for(interp_id))
            self.save()

    def run_interpreter(self, interp: Any, cells: list[Cell], progress: Progress) -> None:
        entry: dict[str, Any] = {"status": "running", "reason": None, "results": None,
                                 "environment": None, "load_before": None, "load_after": None,
                                 "elapsed": None}
        self.interpreters[interp.id] = entry
        progress.line(f"== {interp.id}: preparing ({self.backend.name} backend)")
        t0 = time.monotonic()
        try:
            env = self.backend.prepare(interp)
        except EnvironmentUnavailable as exc:
            entry.update(status="skipped", reason=str(exc))
            progress.skip(interp.id, len(cells), str(exc))
            return
        finally:
            self.stages["prepare"] = self.stages.get("prepare", 0.0) + time.monotonic() - t0
        entry["environment"] = env.describe()
        job_name = self.run_dir.write_job(interp.id, make_job(self.plan, interp.id, cells, self.run_id))
        command = self.backend.harness_command(env, self.run_dir.path, job_name)
        progress.line(f"== {interp.id}: {env.facts.get('version')} — {len(cells)} cells")
        entry["load_before"] = load_average()
        t0 = time.monotonic()
        returncode, stderr_tail = self._follow(interp.id, command, job_name, len(cells), progress)
        entry["elapsed"] = round(time.monotonic() - t0, 3)
        self.stages["run"] = self.stages.get("run", 0.0) + entry["elapsed"]
        entry["load_after"] = load_average()
        t0 = time.monotonic()
        suite = self.run_dir.merge_suite(interp.id, cells)
        self.stages["merge"] = self.stages.get("merge", 0.0) + time.monotonic() - t0
        entry["results"] = suite.name if suite else None
        if returncode == 0:
            entry["status"] = "ran"
        else:
            entry.update(status="failed", reason=f"harness exited with {returncode}: {stderr_tail}")
            progress.line(f"== {interp.id}: harness failed ({returncode}): {stderr_tail}")

    def _follow(self, interp_id: str, command: list[str], job_name: str, n_cells: int,
                progress: Progress) -> tuple[int, str]:
        """Run the harness, echoing its progress events; returns (exit code, stderr tail)."""
        log_path = self.run_dir.path / "cells" / f"{interp_id}.harness.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        # A ceiling for the whole job, so that a stuck container cannot hang the run forever.
        ceiling = n_cells * (self.plan.profile.timeout + 30) + 120
        with open(log_path, "w") as stderr:
            proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True,
                                    stdin=subprocess.DEVNULL)
            stuck = threading.Event()

            def kill_stuck() -> None:
                stuck.set()
                proc.kill()

            watchdog = threading.Timer(ceiling, kill_stuck)
            watchdog.start()
            try:
                assert proc.stdout is not None
                for line in proc.stdout:
                    try:
                        event = json.loads(line)
                    except ValueError:
                        continue
                    if event.get("event") == "cell":
                        progress.cell(interp_id, event)
                returncode = proc.wait()
            except Interrupted:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    self.backend.cleanup(self.run_dir.path, job_name)
                raise
            finally:
                watchdog.cancel()
        if stuck.is_set():
            self.backend.cleanup(self.run_dir.path, job_name)
            with open(log_path, "a") as stderr:
                stderr.write(f"gilmatrix: no progress within {ceiling:.0f} s; the harness was killed\n")
        tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
        return returncode, " | ".join(tail)[-500:]


def start_run(matrix: Matrix, plan: Plan, backend: Backend, out: Path, *,
              only: list[str], run_id: str | None = None,
              log: Callable[[str], None] = print) -> tuple[RunDir, int]:
    run_id = run_id or new_run_id(plan.profile.name)
    t0 = time.monotonic()
    run_dir = RunDir.create(out, run_id)
    run = MatrixRun(matrix, plan, backend, run_dir, run_id, only, log)
    run.stages["plan"] = time.monotonic() - t0
    return run_dir, run.execute()


def resume_run(matrix: Matrix, plan: Plan, backend: Backend, run_dir: RunDir,
               log: Callable[[str], None] = print) -> int:
    manifest = run_dir.manifest()
    if manifest["matrix"]["sha256"] != matrix.sha256:
        given = manifest["matrix"].get("overrides") or []
        raise UserError(f"{run_dir.path}: {matrix.path} changed since this run started; resume "
                        "needs the same matrix file"
                        + (f" and overrides ({', '.join(given)})" if given else "")
                        + " (or start a new run)")
    run = MatrixRun(matrix, plan, backend, run_dir, manifest["run_id"],
                    manifest["matrix"].get("only", []), log)
    run.started = manifest["started"]
    return run.execute()
