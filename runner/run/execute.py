"""The run loop: prepare every interpreter, start one harness driver per interpreter (a process,
or a container, that lives for the whole run), then measure in interleaved rounds
(runner/run/schedule.py): each round gives every pending cell of every interpreter one pyperf
worker process, in a shuffled order, until each cell's interval is tight enough or its budget
is spent.

Every worker's runs are on disk as soon as it exits and the manifest is rewritten after every
round and on interrupt, so a run stopped at any point leaves a folder that ``gilmatrix report``
and ``gilmatrix run --resume`` understand; a resumed run picks each cell up where it stopped.
"""

from __future__ import annotations

import json
import math
import queue
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from gilmatrix.backends.base import Backend, BackendOptions, Environment, WorkloadSetup
from gilmatrix.errors import EnvironmentUnavailable, UserError
from gilmatrix.harness.contract import JOB_FORMAT, CellId, Status
from gilmatrix.harness.drive import NO_SPACE, is_no_space, write_atomic
from gilmatrix.matrix.model import Matrix
from gilmatrix.matrix.plan import Cell, Plan
from gilmatrix.run.manifest import COMPLETE, new_manifest, run_state, workload_entries
from gilmatrix.run.schedule import (
    WINDOW_SECONDS,
    CellState,
    NoiseMonitor,
    Sampling,
    Window,
    executor_of,
    pooled_precision,
    round_order,
    start_sentinels,
    stop_sentinels,
    typical_scatter,
)
from gilmatrix.run.store import RunDir, host_facts, load_average, new_run_id, now


class Interrupted(Exception):
    """SIGINT or SIGTERM: stop after saving what finished."""


class DiskFull(Exception):
    """No space left on the disk of the run folder: the run stops, what is whole is kept."""


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted(signal.Signals(signum).name)


def fmt_duration(seconds: float) -> str:
    seconds = int(seconds)
    return (
        f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        if seconds >= 3600
        else f"{seconds // 60:02d}:{seconds % 60:02d}"
    )


class Progress:
    """One line per finished cell and per round (and window): where we are, how long it took,
    roughly how long is left (the scheduler's estimate). ``total`` is the cells that will
    really run — known once every interpreter is prepared (skipped cells, and a resumed run's
    cells done before, are announced apart and never counted)."""

    def __init__(self, total: int = 0, stream: TextIO = sys.stderr) -> None:
        self.total, self.done, self.stream = total, 0, stream
        self.start = time.monotonic()
        self.remaining: float | None = None  # the scheduler's estimate of the time left

    def line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def cell(self, interp: str, event: dict[str, Any]) -> None:
        self.done += 1
        elapsed = time.monotonic() - self.start
        left = "" if self.remaining is None else f", ~{fmt_duration(self.remaining)} left"
        took = f" {event['elapsed']:.1f}s" if event.get("elapsed") is not None else ""
        took += f", {event['note']}" if event.get("note") else ""
        reason = f" — {event['reason']}" if event.get("reason") else ""
        self.line(
            f"[{self.done:>{len(str(self.total))}}/{self.total} {fmt_duration(elapsed)}{left}] "
            f"{interp} {event['id']}: {event['status']}{took}{reason}"
        )

    def skip(self, interp: str, count: int, reason: str) -> None:
        self.line(f"== {interp}: {count} cells skipped — {reason}")

    def status(self, text: str, remaining_seconds: float | None) -> None:
        """A line between cell completions (rounds are long): where the run is, time left."""
        left = "" if remaining_seconds is None else f", ~{fmt_duration(remaining_seconds)} left"
        self.line(
            f"[{self.done:>{len(str(self.total))}}/{self.total} "
            f"{fmt_duration(time.monotonic() - self.start)}{left}] {text}"
        )


def needed_processes(sampling: Sampling, means: Sequence[float], typical: float | None = None) -> int:
    """How many worker processes a cell will have in all, as far as can be told now: the fixed
    count; adaptive, from its interval so far (the half-width shrinks as 1/sqrt(n): n × (p /
    target)², between min_processes and max_processes), min_processes before it has one."""
    if not sampling.adaptive:
        return sampling.processes
    assert sampling.target is not None
    precision = pooled_precision(means, typical)
    if precision is None:
        return sampling.min_processes
    wanted = math.ceil(len(means) * (precision / sampling.target) ** 2) if sampling.target > 0 else 10**9
    return min(max(wanted, sampling.min_processes), sampling.max_processes)


def estimate_seconds(
    sampling: Sampling,
    states: list[CellState],
    coming: Sequence[CellState],
    ran: Sequence[CellState] = (),
    *,
    overhead: float = 1.0,
    run_left: float | None = None,
) -> float | None:
    """Seconds the pending cells still need: ``coming``, those that get a worker process in the
    current (or next) round, at least that one; ``ran``, those that had theirs in the current
    round already. From the worker processes' lives so far (``states``: every cell of the run);
    None before any worker has run.

    A cell's first worker calibrates the loops (unless the profile fixes them) and lives longer
    than its later ones: a cell that has run gets its own later workers' mean life (else the
    run's), a cell that has not one first worker (the run's mean first life) then later ones.
    Each cell takes the processes :func:`needed_processes` expects, within its own budget
    (``max_seconds`` of worker time); ``overhead`` (wall time per second of worker life) adds
    the host's share. ``run_left``, the run's budget left (``run_minutes``): once it is spent,
    cells with their minimum of processes stop after that round."""
    firsts = [state.seconds[0] for state in states if state.seconds]
    if not firsts:
        return None
    laters = [s for state in states for s in state.seconds[1:]]
    first = sum(firsts) / len(firsts)
    later = sum(laters) / len(laters) if laters else first
    total = one_round = to_minimum = 0.0
    for cell, least in [(c, 1) for c in coming] + [(c, 0) for c in ran]:
        n = len(cell.means)
        more = max(needed_processes(sampling, cell.means, cell.typical) - n, least)
        if not more:
            continue
        own = cell.seconds[1:]
        per = sum(own) / len(own) if own else later
        start = first if not cell.means and not cell.seconds else per
        need = start + (more - 1) * per
        if sampling.max_seconds is not None:
            need = min(need, max(sampling.max_seconds - cell.kept_seconds, start))
        total += need
        one_round += start * least
        to_minimum += per * max(sampling.min_processes - n - least, 0) if sampling.adaptive else 0.0
    if run_left is not None:
        total = min(total, max(run_left, 0.0) + one_round + to_minimum)
    return total * overhead


def make_job(
    plan: Plan,
    interp_id: str,
    cells: list[Cell],
    run_id: str,
    setups: Mapping[str, WorkloadSetup] | None = None,
) -> dict[str, Any]:
    """The job file of one interpreter's driver: its cells, and how to import user workloads."""
    setups = setups or {}

    def job_cell(cell: Cell) -> dict[str, Any]:
        entry = {k: v for k, v in cell.to_json().items() if k not in ("status", "reason")}
        if cell.workload in setups:
            entry.update(setups[cell.workload].cell_fields())
        if plan.profile.python_gil is not None:
            entry["environ"] = {"PYTHON_GIL": str(plan.profile.python_gil)}
        return entry

    return {
        "format": JOB_FORMAT,
        "run_id": run_id,
        "interpreter": interp_id,
        "pyperf": {k: v for k, v in asdict(plan.profile.pyperf).items() if v is not None},
        "timeout": plan.profile.timeout,
        "memory_mb": plan.profile.memory_mb,
        "cells": [job_cell(c) for c in cells],
    }


class MatrixRun:
    def __init__(
        self,
        matrix: Matrix,
        plan: Plan,
        backend: Backend,
        run_dir: RunDir,
        run_id: str,
        only: list[str],
        log: Callable[[str], None],
    ) -> None:
        self.matrix, self.plan, self.backend, self.run_dir = matrix, plan, backend, run_dir
        self.run_id, self.only, self.log = run_id, only, log
        self.interpreters: dict[str, dict[str, Any]] = {}
        self.stages: dict[str, float] = {}
        self.started = now()
        self.state = "running"
        self.warnings: list[str] = []
        self.sampling = Sampling.of(plan.profile)
        self.seed = random.SystemRandom().randrange(2**32)
        self.rounds: list[dict[str, Any]] = []
        self.windows: list[dict[str, Any]] = []
        self.states: dict[tuple[str, str], CellState] = {}
        self.cells: dict[tuple[str, str], Cell] = {}
        self.drivers: dict[str, Driver] = {}
        self.monitor: NoiseMonitor | None = None
        self.noise: dict[str, Any] | None = None  # a resumed run's earlier noise figures
        self.disk_full: str | None = None  # why the run stopped for lack of space
        self.lost: dict[tuple[str, str], str] = {}  # cells whose files found no room: why
        self.unavailable: dict[tuple[str, str], str] = {}  # cells whose workload could not be set up
        self.setups: dict[str, dict[str, WorkloadSetup]] = {}  # interpreter -> user workloads
        self.measuring: tuple[float, float] | None = None  # rounds' start, worker lives then
        self.ci: dict[str, Any] | None = None  # a CI bench job's shard, replicate and budget

    # -- manifest ------------------------------------------------------------------------

    def manifest(self) -> dict[str, Any]:
        cells = []
        for cell in self.plan.cells:
            outcome = self.run_dir.outcome(cell)
            interp = self.interpreters.get(cell.interpreter, {})
            if outcome.status == Status.MISSING and interp.get("status") == Status.SKIPPED:
                outcome = type(outcome)(Status.SKIPPED, interp["reason"], None, None)
            elif outcome.status == Status.MISSING and (cell.interpreter, cell.id) in self.lost:
                outcome = type(outcome)(Status.FAILED, self.lost[cell.interpreter, cell.id], None, None)
            elif outcome.status == Status.MISSING and cell.key in self.unavailable:
                outcome = type(outcome)(Status.SKIPPED, self.unavailable[cell.key], None, None)
            cells.append(
                {
                    "interpreter": cell.interpreter,
                    "id": cell.id,
                    "workload": cell.workload,
                    "executor": cell.executor,
                    "workers": cell.workers,
                    **asdict(outcome),
                }
            )
        planned = {cell.workload for cell in self.plan.cells}
        sections = {"ci": self.ci} if self.ci else {}
        return new_manifest(
            run_id=self.run_id,
            started=self.started,
            finished=None if self.state == "running" else now(),
            state=self.state,
            workloads=workload_entries(w for w in self.matrix.workloads if w.id in planned),
            matrix={
                "path": str(self.matrix.path),
                "sha256": self.matrix.sha256,
                "overrides": [str(o) for o in self.matrix.overrides],
                "profile": self.plan.profile.name,
                "only": self.only,
                "settings": {
                    **asdict(self.plan.profile.pyperf),
                    "timeout": self.plan.profile.timeout,
                    "memory_mb": self.plan.profile.memory_mb,
                    "python_gil": self.plan.profile.python_gil,
                },
            },
            schedule={
                "sampling": self.sampling.to_json(),
                "seed": self.seed,
                "order": self.plan.profile.order,
                "window_seconds": WINDOW_SECONDS,
                "rounds": self.rounds,
                "windows": self.windows,
                "noise": self.monitor.summary(list(self.states.values())) if self.monitor else self.noise,
            },
            backend={**self.backend.describe(), "settings": backend_settings(self.backend.options)},
            host=host_facts(self.plan.topology),
            warnings=self.warnings,
            stages={k: round(v, 3) for k, v in self.stages.items()},
            interpreters=self.interpreters,
            cells=cells,
            **sections,
        )

    def save(self) -> None:
        try:
            self.run_dir.write_manifest(self.manifest())
        except OSError as exc:
            if not is_no_space(exc):
                raise
            # write_atomic left the previous manifest whole and removed its temporary file
            raise DiskFull(f"{NO_SPACE} while writing {self.run_dir.path / 'manifest.json'}") from None

    # -- running -------------------------------------------------------------------------

    def execute(self) -> int:
        """Run the plan; 0 when it ran to the end, 130 when interrupted, 1 when the disk filled
        up (the message says what to free; ``--resume`` goes on from what is on disk)."""
        try:
            code = self._execute()
        except DiskFull as exc:  # the very first manifest found no room
            self.disk_full = str(exc)
        if self.disk_full is not None:
            self.log(f"error: {self.disk_full}: the run stopped. {self.run_dir.space_report()}")
            return 1
        return code

    def _execute(self) -> int:
        planned = [c for c in self.plan.cells if c.status == "planned"]
        progress = Progress()
        top = max((c.workers for c in planned), default=1)
        cpus = host_facts(self.plan.topology)["usable_cpus"] or 1
        if top > cpus:
            self.warnings.append(
                f"this machine has {cpus} usable CPUs, fewer than the largest "
                f"worker count ({top}): cells above {cpus} workers cannot scale"
            )
            self.log(f"warning: {self.warnings[-1]}")
        self.save()
        previous = {s: signal.signal(s, _raise_interrupted) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.backend.reclaim(self.run_dir.path)  # leftovers of an earlier, killed process
            for interp in self.plan.interpreters:
                cells = self.plan.cells_for(interp.id)
                if not cells:
                    self.interpreters[interp.id] = {"status": Status.SKIPPED, "reason": "no runnable cells"}
                    continue
                self.start_interpreter(interp, cells, progress)
            self.save()
            progress.total = self.announce(progress)
            self.measure(progress)
            for interp_id, driver in list(self.drivers.items()):
                self.stop_driver(interp_id, driver)
            self.state = run_state(cell["status"] for cell in self.manifest()["cells"])
            return 0 if self.state == COMPLETE else 1
        except Interrupted as exc:
            self.state = "interrupted"
            self.log(
                f"\ninterrupted ({exc}): finished cells and finished worker processes are "
                f"kept; continue with `gilmatrix run --resume {self.run_dir.path}`"
            )
            return 130
        except DiskFull as exc:
            self.state = "disk-full"
            self.disk_full = str(exc)
            return 1
        except OSError as exc:  # the host's own files (a job, a status) found no room
            if not is_no_space(exc):
                raise
            self.state = "disk-full"
            self.disk_full = f"{NO_SPACE} while writing {exc.filename or self.run_dir.path}"
            return 1
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for interp_id, driver in list(self.drivers.items()):
                self.stop_driver(interp_id, driver, interrupted=True)
            try:
                self.wrap_up()
            except DiskFull as exc:
                self.state = "disk-full"
                self.disk_full = self.disk_full or str(exc)

    def wrap_up(self) -> None:
        """The per-interpreter suites and the last manifest (DiskFull if there is no room)."""
        t0 = time.monotonic()
        for interp_id, entry in self.interpreters.items():
            try:
                suite = self.run_dir.merge_suite(interp_id, self.plan.cells_for(interp_id))
            except OSError as exc:
                if not is_no_space(exc):
                    raise
                suite = None
                self.disk_full = self.disk_full or f"{NO_SPACE} while writing {interp_id}.json"
                self.state = "disk-full"
            if "environment" in entry:  # prepared: its results file, if any cell finished
                entry["results"] = suite.name if suite else None
                entry["elapsed"] = round(
                    sum(sum(s.seconds) for k, s in self.states.items() if k[0] == interp_id), 3
                )
        self.stages["merge"] = time.monotonic() - t0
        self.save()

    def announce(self, progress: Progress) -> int:
        """Say what will really run, once every interpreter is prepared: the plan's cells, to
        run + done before + skipped (with the reasons), adding up. Returns the cells to run."""
        to_run = sum(s.status == Status.PENDING for s in self.states.values())
        done_before = sum(s.status == "done" for s in self.states.values())
        skipped: dict[str, int] = {}
        for cell in self.plan.cells:
            if cell.status == Status.SKIPPED:
                reason = f"not supported: {cell.reason}"
            elif cell.key in self.states:
                continue
            elif cell.key in self.unavailable:  # its workload's requirements did not install
                reason = f"{cell.interpreter}, {cell.workload}: {self.unavailable[cell.key]}"
            else:  # its interpreter could not be prepared
                reason = f"{cell.interpreter} not available: {self.interpreters[cell.interpreter]['reason']}"
            skipped[reason] = skipped.get(reason, 0) + 1
        progress.line(
            f"{len(self.plan.cells)} cells planned: {to_run} to run"
            + (f", {done_before} done before" if done_before else "")
            + f", {sum(skipped.values())} skipped"
            + "".join(f"\n   {n} skipped, {reason}" for reason, n in skipped.items())
        )
        return to_run

    def start_interpreter(self, interp: Any, cells: list[Cell], progress: Progress) -> None:
        """Prepare the interpreter's environment, load what its cells have on disk, start its
        driver (unless every cell is done already)."""
        entry: dict[str, Any] = {
            "status": "running",
            "reason": None,
            "results": None,
            "environment": None,
            "load_before": None,
            "load_after": None,
            "elapsed": None,
        }
        self.interpreters[interp.id] = entry
        progress.line(f"== {interp.id}: preparing ({self.backend.name} backend)")
        t0 = time.monotonic()
        try:
            env = self.backend.prepare(interp)
            used = {c.workload for c in cells}
            setups = self.backend.prepare_workloads(env, [w for w in self.matrix.workloads if w.id in used])
        except EnvironmentUnavailable as exc:
            entry.update(status=Status.SKIPPED, reason=str(exc))
            progress.skip(interp.id, len(cells), str(exc))
            return
        finally:
            self.stages["prepare"] = self.stages.get("prepare", 0.0) + time.monotonic() - t0
        entry["environment"] = self.backend.describe_environment(env)
        self.setups[interp.id] = setups
        if setups:
            entry["environment"]["workloads"] = {
                wl: {"pythonpath": list(s.pythonpath), "problem": s.problem} for wl, s in setups.items()
            }
        pending = 0
        runnable = []
        for cell in cells:
            setup = setups.get(cell.workload)
            if setup is not None and setup.problem:
                self.unavailable[cell.key] = setup.problem
                continue
            runnable.append(cell)
        for reason in sorted({self.unavailable[c.key] for c in cells if c not in runnable}):
            progress.line(f"== {interp.id}: cells skipped — {reason}")
        cells = runnable
        for cell in cells:
            state = self.load_state(cell)
            self.states[state.key] = state
            self.cells[state.key] = cell
            pending += state.status == Status.PENDING
        progress.line(
            f"== {interp.id}: {env.facts.get('version')} — {len(cells)} cells"
            + (f", {len(cells) - pending} done before" if pending < len(cells) else "")
        )
        entry["load_before"] = load_average()
        if pending:
            self.drivers[interp.id] = self.start_driver(interp.id, env, cells)
        else:
            entry["status"] = "ran"

    def load_state(self, cell: Cell) -> CellState:
        """What a cell has on disk: done, or the worker processes kept so far (a resumed run);
        a cell that failed before starts again from nothing."""
        import pyperf

        store = self.run_dir.cell_store(cell)
        state = CellState(cell.interpreter, cell.id)
        if Path(store.result).exists():
            state.status = "done"
            shutil.rmtree(store.runs, ignore_errors=True)  # merged before the stop: tidy up
            return state
        if Path(store.status).exists():
            if json.loads(Path(store.status).read_text()).get("status") != Status.OK:
                shutil.rmtree(store.runs, ignore_errors=True)  # failed last time: start again
            Path(store.status).unlink()  # "ok" without a result: stopped while merging
        for path in store.workers():
            try:
                (bench,) = pyperf.BenchmarkSuite.load(path).get_benchmarks()
            except (OSError, ValueError, KeyError):
                continue  # a damaged worker file is measured again
            values = [v for run in bench.get_runs() for v in run.values]
            if values:
                state.add(int(Path(path).name[1:5]), values, ())
        runs = Path(store.runs)
        state.discarded = len(list(runs.glob("*.discarded"))) if runs.is_dir() else 0
        return state

    def start_driver(self, interp_id: str, env: Environment, cells: list[Cell]) -> Driver:
        job = make_job(self.plan, interp_id, cells, self.run_id, self.setups.get(interp_id))
        job_name = self.run_dir.write_job(interp_id, job)
        command = self.backend.harness_command(env, self.run_dir.path, job_name)
        log_path = self.run_dir.path / "cells" / f"{interp_id}.harness.log"
        return Driver(interp_id, command, log_path, job_name)

    def stop_driver(self, interp_id: str, driver: Driver, interrupted: bool = False) -> None:
        if self.drivers.pop(interp_id, None) is None:
            return
        clean = driver.close(interrupted=interrupted)
        if not clean:
            self.backend.cleanup(self.run_dir.path, driver.job_name)
        entry = self.interpreters[interp_id]
        entry["load_after"] = load_average()
        if entry["status"] == "running":
            entry["status"] = "ran"

    # -- the rounds ----------------------------------------------------------------------

    def measure(self, progress: Progress) -> None:
        sampling = self.sampling
        start_sentinels()
        try:
            monitor = NoiseMonitor()
            self.monitor = monitor
            self.rounds_loop(monitor, sampling, progress)
        finally:
            stop_sentinels()

    def rounds_loop(self, monitor: NoiseMonitor, sampling: Sampling, progress: Progress) -> None:
        started = time.monotonic()
        self.measuring = (started, sum(s for state in self.states.values() for s in state.seconds))
        number = len(self.rounds)
        windows = len(self.windows)
        while True:
            pending = [s for s in self.states.values() if s.status == Status.PENDING]
            if not pending:
                break
            number += 1
            order = round_order(pending, self.seed, number, self.block_of())
            round_start = time.monotonic()
            round_date = datetime.now(UTC).isoformat(timespec="milliseconds")
            load = monitor.last.load1
            progress.status(
                f"round {number}: {len(order)} cells pending; sentinel "
                f"{monitor.last.loop_seconds * 1e3:.2f} ms, load " + ("?" if load is None else f"{load:.2f}"),
                self.estimate(pending, round_start=round_start),
            )
            window = Window(windows, number, monitor.last)
            for index, state in enumerate(order, 1):
                self.one_worker(state, window, progress)
                if time.monotonic() - window.before.at >= WINDOW_SECONDS:
                    self.close_window(window, monitor, progress)
                    windows += 1
                    window = Window(windows, number, monitor.last)
                    progress.remaining = self.estimate(
                        order[index:],
                        [s for s in order[:index] if s.status == Status.PENDING],
                        round_start=round_start,
                    )
                    progress.status(
                        f"round {number}: {index}/{len(order)} worker processes", progress.remaining
                    )
            self.close_window(window, monitor, progress)
            windows += 1
            self.rounds.append(
                {
                    "round": number,
                    "started": round_date,
                    "cells": len(order),
                    "seconds": round(time.monotonic() - round_start, 3),
                }
            )
            spent = sum(r["seconds"] for r in self.rounds)  # a resumed run's rounds too
            typical = typical_scatter(list(self.states.values()))
            for state in self.states.values():
                state.typical = typical.get((state.interpreter, executor_of(state.cell_id)))
            for state in order:
                if state.status == Status.PENDING:
                    state.rounds += 1
                    why = sampling.stop(state.means, state.kept_seconds, spent, state.typical)
                    if why:
                        state.stopped = why
                        self.finish(state, progress)
            progress.remaining = self.estimate(
                [s for s in self.states.values() if s.status == Status.PENDING]
            )
            self.save()
        self.stages["run"] = self.stages.get("run", 0.0) + time.monotonic() - started

    def block_of(self) -> Callable[[CellState], str] | None:
        """The profile's order: "blocks" keeps each workload's code's cells side by side."""
        if self.plan.profile.order != "blocks":
            return None
        code = {w.id: w.implementation for w in self.matrix.workloads}
        return lambda state: code.get(CellId.parse(state.cell_id).workload, state.cell_id)

    def estimate(
        self, coming: Sequence[CellState], ran: Sequence[CellState] = (), round_start: float | None = None
    ) -> float | None:
        """Seconds the pending cells still need (``coming``: they get a worker in this round or
        the next; ``ran``: they had theirs in this round); None before any worker has run. See
        :func:`estimate_seconds`."""
        run_left = None
        if self.sampling.run_seconds is not None:
            spent = sum(r["seconds"] for r in self.rounds)  # a resumed run's rounds too
            spent += time.monotonic() - round_start if round_start is not None else 0.0
            run_left = self.sampling.run_seconds - spent
        return estimate_seconds(
            self.sampling,
            list(self.states.values()),
            coming,
            ran,
            overhead=self.overhead_ratio(),
            run_left=run_left,
        )

    def overhead_ratio(self) -> float:
        """This process' measuring wall time per second of worker life (sentinels, the host's
        round trips with the drivers): at least 1; 1 until a worker has run here."""
        if self.measuring is None:
            return 1.0
        started, lives_before = self.measuring
        lives = sum(s for state in self.states.values() for s in state.seconds) - lives_before
        wall = time.monotonic() - started
        return max(wall / lives, 1.0) if lives > 0 else 1.0

    def one_worker(self, state: CellState, window: Window, progress: Progress) -> None:
        driver = self.drivers.get(state.interpreter)
        if driver is None:
            self.fail(
                state,
                Status.FAILED,
                self.interpreters[state.interpreter].get("reason") or "the interpreter's harness stopped",
                progress,
            )
            return
        try:
            reply = driver.request(
                {"op": "worker", "cell": state.cell_id, "round": window.round},
                timeout=self.plan.profile.timeout * 2 + 60,
            )
        except DriverDied as exc:
            self.fail(state, Status.FAILED, self.driver_died(state.interpreter, str(exc)), progress)
            return
        if reply.get("status") == Status.OK:
            state.add(int(reply["worker"]), reply["values"], reply.get("seconds", ()))
            window.workers.append((state, int(reply["worker"])))
        elif reply.get("status") == Status.INTERRUPTED:
            raise Interrupted("the harness was interrupted")
        elif reply.get("disk_full"):
            self.out_of_space(state, reply, progress)
        else:  # the driver wrote the cell's status file: failed, timeout or unsupported (skipped)
            state.seconds.extend(reply.get("seconds", ()))
            state.status = Status.FAILED
            progress.cell(
                state.interpreter,
                {
                    "id": state.cell_id,
                    "status": reply["status"],
                    "elapsed": reply.get("elapsed"),
                    "reason": reply.get("reason"),
                },
            )

    def close_window(self, window: Window, monitor: NoiseMonitor, progress: Progress) -> None:
        record = monitor.judge(window)
        self.windows.append(record)
        if not record["disturbed"]:
            return
        if record["action"] == "redone":
            for state, worker in window.workers:
                if state.status == Status.PENDING and worker in state.workers:
                    driver = self.drivers.get(state.interpreter)
                    if driver is not None:
                        try:
                            driver.request(
                                {"op": "discard", "cell": state.cell_id, "worker": worker}, timeout=60
                            )
                        except DriverDied as exc:
                            self.driver_died(state.interpreter, str(exc))
                            continue
                    state.drop(worker)
        if record["workers"]:
            what = (
                "set aside, their cells measured again later"
                if record["action"] == "redone"
                else "kept and flagged (too many disturbed windows to redo)"
            )
            progress.line(
                f"   machine disturbed ({record['why']}) during window "
                f"{record['index']}: its {record['workers']} worker processes {what}"
            )

    def finish(self, state: CellState, progress: Progress) -> None:
        driver = self.drivers.get(state.interpreter)
        summary = state.summary(self.sampling)
        if driver is None:
            self.fail(state, Status.FAILED, "the interpreter's harness stopped", progress)
            return
        try:
            reply = driver.request({"op": "finish", "cell": state.cell_id, "status": summary}, timeout=120)
        except DriverDied as exc:
            self.fail(state, Status.FAILED, self.driver_died(state.interpreter, str(exc)), progress)
            return
        if reply.get("disk_full"):
            self.out_of_space(state, reply, progress)
        state.status = "done" if reply.get("status") == Status.OK else Status.FAILED
        precision = summary["precision"]
        note = (
            f"±{precision:.1%}" if precision is not None else "no interval"
        ) + f" from {summary['processes']} processes"
        if state.stopped != "fixed":
            note += (
                " ("
                + {"precision": "target met", "run-budget": "the run's budget spent"}.get(
                    state.stopped or "", "budget spent"
                )
                + ")"
            )
        progress.cell(
            state.interpreter,
            {
                "id": state.cell_id,
                "status": reply.get("status"),
                "elapsed": summary["elapsed"],
                "note": note,
                "reason": reply.get("reason"),
            },
        )

    def out_of_space(self, state: CellState, reply: dict[str, Any], progress: Progress) -> None:
        """The harness found no room for a cell's files: that cell fails with the reason and
        the run stops (every other cell would fail the same way)."""
        state.seconds.extend(reply.get("seconds", ()))
        state.status = Status.FAILED
        self.lost[state.key] = reply["reason"]
        progress.cell(
            state.interpreter,
            {
                "id": state.cell_id,
                "status": Status.FAILED,
                "elapsed": reply.get("elapsed"),
                "reason": reply["reason"],
            },
        )
        raise DiskFull(reply["reason"])

    def fail(self, state: CellState, status: str, reason: str, progress: Progress) -> None:
        """A cell the host fails itself (its driver is gone): a status file says why."""
        store = self.run_dir.cell_store(self.cells[state.key])
        if Path(store.result).exists():  # merged by its driver, which stopped before it answered
            state.status = "done"
            progress.cell(state.interpreter, {"id": state.cell_id, "status": Status.OK, "note": "kept"})
            return
        state.status = Status.FAILED
        no_room = None
        try:
            Path(store.status).parent.mkdir(parents=True, exist_ok=True)
            self.write_status(store.status, state, status, reason)
        except OSError as exc:
            if not is_no_space(exc):
                raise
            self.lost[state.key] = reason  # in the manifest, if there is room for that
            no_room = f"{NO_SPACE} while writing {store.status}"
        progress.cell(
            state.interpreter, {"id": state.cell_id, "status": status, "elapsed": None, "reason": reason}
        )
        if no_room is not None:
            raise DiskFull(no_room)

    @staticmethod
    def write_status(path: str, state: CellState, status: str, reason: str) -> None:
        write_atomic(
            path,
            json.dumps(
                {
                    "format": 1,
                    "id": state.cell_id,
                    "status": status,
                    "reason": reason,
                    "elapsed": round(sum(state.seconds), 3),
                    "returncode": None,
                    "output_tail": None,
                    "worker_seconds": state.seconds,
                },
                indent=1,
            )
            + "\n",
        )

    def driver_died(self, interp_id: str, reason: str) -> str:
        reason = self.backend.explain_stop(self.run_dir.path, reason)  # e.g. the engine went away
        driver = self.drivers.pop(interp_id, None)
        if driver is not None:
            driver.close(interrupted=True)
            self.backend.cleanup(self.run_dir.path, driver.job_name)
        entry = self.interpreters[interp_id]
        entry.update(status=Status.FAILED, reason=f"the harness stopped: {reason}", load_after=load_average())
        self.log(f"== {interp_id}: the harness stopped: {reason}")
        return reason


class DriverDied(Exception):
    """The harness driver exited, or did not answer in time; the message says what it said."""


class Driver:
    """One interpreter's harness driver (``python -m gilmatrix.harness serve``, in a container
    with the docker backend), spoken to in JSON lines: a command on stdin, its answer on
    stdout. Its stderr goes to ``cells/<interpreter>.harness.log``."""

    def __init__(self, interp_id: str, command: list[str], log_path: Path, job_name: str) -> None:
        self.interp_id, self.job_name, self.log_path = interp_id, job_name, log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.stderr = open(log_path, "a")  # noqa: SIM115 - open for the driver's whole life
        self.proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True, bufsize=1
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def tail(self) -> str:
        self.stderr.flush()
        lines = self.log_path.read_text(errors="replace").strip().splitlines()[-3:]
        return " | ".join(lines)[-500:]

    def request(self, payload: dict[str, Any], timeout: float) -> dict[str, Any]:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(payload) + "\n")
            self.proc.stdin.flush()
        except OSError:
            raise DriverDied(f"the harness exited ({self.proc.poll()}): {self.tail()}") from None
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.001))
            except queue.Empty:
                self.proc.kill()
                raise DriverDied(f"no answer within {timeout:.0f} s; the harness was killed") from None
            if line is None:
                code = self.proc.wait()
                raise DriverDied(f"the harness exited with {code}: {self.tail()}")
            try:
                reply = json.loads(line)
            except ValueError:
                self.stderr.write(line)  # stray output: kept in the log, not an answer
                continue
            if isinstance(reply, dict):
                return reply

    def close(self, interrupted: bool = False) -> bool:
        """Stop the driver; True when it exited by itself."""
        clean = True
        try:
            if self.proc.poll() is None:
                assert self.proc.stdin is not None
                if interrupted:
                    self.proc.send_signal(signal.SIGTERM)
                else:
                    self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                    self.proc.stdin.flush()
                self.proc.stdin.close()
            self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
            clean = False
        self.stderr.close()
        return clean


def backend_settings(options: BackendOptions) -> dict[str, Any]:
    """The options that decide what a run measures (the manifest's ``backend.settings``): a
    resume keeps them, so one run's cells are never measured two ways."""
    return {
        "python": dict(options.explicit_pythons),
        "cpuset": options.cpuset,
        "build_profile": options.build_profile,
    }


def resumed_settings(
    manifest: dict[str, Any],
    run_path: Path,
    *,
    backend: str | None,
    pythons: dict[str, str],
    cpuset: str | None,
    build_profile: str | None,
) -> tuple[str, dict[str, str], str | None, str]:
    """The backend and settings a resume continues with: the run's own, from its manifest. An
    explicit option that differs is refused (UserError): the run's remaining cells would be
    measured elsewhere, or another way, than its finished ones (``--backend auto`` means
    "the run's own"). Returns (backend name, --python map, cpuset, build profile)."""
    recorded = manifest.get("backend") or {}
    name = recorded.get("name")
    if name not in ("local", "docker"):
        raise UserError(
            f"{run_path}: its manifest's backend.name is {name!r}, not local or docker (a merged "
            "run?): it cannot be resumed"
        )
    if backend not in (None, "auto", name):
        raise UserError(
            f"{run_path}: this run was made with the {name} backend; --resume continues with it "
            f"(its finished cells were measured there), not --backend {backend}: drop --backend, "
            "or start a new run"
        )
    settings = recorded.get("settings") or {}  # absent in manifests of earlier versions
    kept_pythons = dict(settings.get("python") or {})
    for interp, path in pythons.items():
        if interp in kept_pythons and kept_pythons[interp] != path:
            raise UserError(
                f"{run_path}: this run measured {interp} with --python {interp}={kept_pythons[interp]}; "
                f"--resume continues with it, not {path} (or start a new run)"
            )
    for option, given in (("cpuset", cpuset), ("build_profile", build_profile)):
        if name == "docker" and given is not None and option in settings and settings[option] != given:
            flag = "--" + option.replace("_", "-")
            raise UserError(
                f"{run_path}: this run was made with {flag} {settings[option] or '(none)'}; "
                f"--resume continues with it, not {flag} {given} (or start a new run)"
            )
    return (
        name,
        {**kept_pythons, **pythons},
        settings.get("cpuset", cpuset),
        settings.get("build_profile") or build_profile or "fast",
    )


def exit_code(code: int, counts: dict[str, int]) -> int:
    """The command's exit code from the run loop's and the manifest's cell statuses: 0 only when
    every cell is ok or skipped (with its reason); 1 when the run ended with cells failed, timed
    out or missing; 130 (interrupted) and 2 (user error) as they came."""
    if code == 0 and any(n and status not in (Status.OK, Status.SKIPPED) for status, n in counts.items()):
        return 1
    return code


def nothing_measured(plan: Plan, manifest: Mapping[str, Any]) -> tuple[str, str] | None:
    """Why a run that ended without failures measured no cell at all, as (what, why): ``what``
    is ``"interpreters"`` when no interpreter with runnable cells could be had, ``"unsupported"``
    when every cell of the plan is unsupported, ``"workloads"`` when the runnable cells'
    workloads could not be set up. None when some cell was measured (or one failed: exit_code
    says so)."""
    statuses = {cell["status"] for cell in manifest["cells"]}
    if Status.OK in statuses or not statuses <= {Status.SKIPPED}:
        return None
    unsupported = [c for c in plan.cells if c.status == Status.SKIPPED]
    if len(unsupported) == len(plan.cells):
        reasons = sorted({f"{c.executor}: {c.reason}" for c in unsupported})
        return "unsupported", "every cell of the plan is unsupported (" + "; ".join(reasons) + ")"
    interpreters = manifest["interpreters"]
    missing = {
        interp_id: entry.get("reason") or "not available"
        for interp_id, entry in interpreters.items()
        if entry.get("status") == Status.SKIPPED and plan.cells_for(interp_id)
    }
    if missing:
        return "interpreters", "no interpreter could be had: " + "; ".join(
            f"{interp_id}: {reason}" for interp_id, reason in missing.items()
        )
    reasons = sorted({c["reason"] for c in manifest["cells"] if c.get("reason")})
    return "workloads", "the runnable cells' workloads could not be set up: " + "; ".join(reasons)


def start_run(
    matrix: Matrix,
    plan: Plan,
    backend: Backend,
    out: Path,
    *,
    only: list[str],
    run_id: str | None = None,
    log: Callable[[str], None] = print,
    ci: Mapping[str, Any] | None = None,
) -> tuple[RunDir, int]:
    run_id = run_id or new_run_id(plan.profile.name)
    t0 = time.monotonic()
    run_dir = RunDir.create(out, run_id)
    run_dir.acquire("run")
    try:
        run = MatrixRun(matrix, plan, backend, run_dir, run_id, only, log)
        run.ci = dict(ci) if ci else None
        run.stages["plan"] = time.monotonic() - t0
        return run_dir, run.execute()
    finally:
        run_dir.release()


def resume_run(
    matrix: Matrix, plan: Plan, backend: Backend, run_dir: RunDir, log: Callable[[str], None] = print
) -> int:
    run_dir.acquire("resume")  # taken already by the command, before the backend started
    try:
        return _resume(matrix, plan, backend, run_dir, log)
    finally:
        run_dir.release()


def _resume(matrix: Matrix, plan: Plan, backend: Backend, run_dir: RunDir, log: Callable[[str], None]) -> int:
    manifest = run_dir.manifest()
    if manifest["matrix"]["sha256"] != matrix.sha256:
        given = manifest["matrix"].get("overrides") or []
        raise UserError(
            f"{run_dir.path}: {matrix.path} changed since this run started; resume "
            "needs the same matrix file"
            + (f" and overrides ({', '.join(given)})" if given else "")
            + " (or start a new run)"
        )
    memory = (manifest.get("backend") or {}).get("memory")
    current = getattr(backend, "memory", None)  # docker: $GILMATRIX_DOCKER_MEMORY
    if backend.name == "docker" and memory is not None and current != memory:
        raise UserError(
            f"{run_dir.path}: this run's containers had --memory {memory}; --resume continues "
            f"with it, not {current}: set GILMATRIX_DOCKER_MEMORY={memory} (or start a new run)"
        )
    run = MatrixRun(
        matrix, plan, backend, run_dir, manifest["run_id"], manifest["matrix"].get("only", []), log
    )
    run.started = manifest["started"]
    schedule = manifest.get("schedule") or {}
    if "seed" in schedule:
        run.seed = int(schedule["seed"])
    run.rounds = list(schedule.get("rounds") or [])
    run.windows = list(schedule.get("windows") or [])
    run.noise = schedule.get("noise")
    run.ci = manifest.get("ci")
    return run.execute()
