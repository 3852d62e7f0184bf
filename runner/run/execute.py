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
import random
import shutil
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gilmatrix.backends.base import Backend, Environment, WorkloadSetup
from gilmatrix.errors import EnvironmentUnavailable
from gilmatrix.harness.contract import (
    JOB_FORMAT,
    CellId,
    Op,
    Status,
    Stopped,
    WorkerFile,
    partner_ratios,
    status_record,
)
from gilmatrix.harness.drive import NO_SPACE, is_no_space, write_atomic
from gilmatrix.matrix.model import Matrix
from gilmatrix.matrix.plan import Cell, Plan
from gilmatrix.run.decide import decided_cells
from gilmatrix.run.driver import Driver, DriverDied, DriverFactory, HarnessDriver
from gilmatrix.run.estimate import estimate_seconds
from gilmatrix.run.manifest import COMPLETE, new_manifest, run_state, workload_entries
from gilmatrix.run.progress import Progress
from gilmatrix.run.schedule import (
    WINDOW_SECONDS,
    CellState,
    NoiseMonitor,
    Sampling,
    Window,
    round_order,
    sentinel_monitor,
    typical_scatter,
)
from gilmatrix.run.store import RunDir, host_facts, load_average, new_run_id, now


class Interrupted(Exception):
    """SIGINT or SIGTERM: stop after saving what finished."""


class DiskFull(Exception):
    """No space left on the disk of the run folder: the run stops, what is whole is kept."""


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted(signal.Signals(signum).name)


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
        if plan.profile.pairing == "calls" and cell.executor != "sequential":
            entry["partner"] = "sequential"  # harness/bench.py Partner
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
    """One run of a plan: its interpreters prepared, their drivers, the cells' states and the
    rounds. ``driver_factory`` starts an interpreter's driver and ``monitor`` opens the noise
    monitor (the real ones by default: tests drive the loop with drivers that answer without
    an interpreter, and scripted sentinel readings)."""

    def __init__(
        self,
        matrix: Matrix,
        plan: Plan,
        backend: Backend,
        run_dir: RunDir,
        run_id: str,
        only: list[str],
        log: Callable[[str], None],
        *,
        driver_factory: DriverFactory = Driver,
        monitor: Callable[[], AbstractContextManager[NoiseMonitor]] = sentinel_monitor,
        progress: Progress | None = None,
    ) -> None:
        self.matrix, self.plan, self.backend, self.run_dir = matrix, plan, backend, run_dir
        self.run_id, self.only, self.log = run_id, only, log
        self.driver_factory, self.open_monitor = driver_factory, monitor
        self.progress = progress or Progress()
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
        self.drivers: dict[str, HarnessDriver] = {}
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
                "pairing": self.plan.profile.pairing,
                "window_seconds": WINDOW_SECONDS,
                "rounds": self.rounds,
                "windows": self.windows,
                "noise": self.monitor.summary(list(self.states.values())) if self.monitor else self.noise,
            },
            backend={**self.backend.describe(), "settings": self.backend.options.recorded()},
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
        planned = [c for c in self.plan.cells if c.status == Status.PLANNED]
        progress = self.progress
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
        done_before = sum(s.status == Status.DONE for s in self.states.values())
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
            "status": Status.RUNNING,
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
            entry["status"] = Status.RAN

    def load_state(self, cell: Cell) -> CellState:
        """What a cell has on disk: done, or the worker processes kept so far (a resumed run);
        a cell that failed before starts again from nothing."""
        import pyperf

        store = self.run_dir.cell_store(cell)
        state = CellState(cell.interpreter, cell.id)
        if Path(store.result).exists():
            state.status = Status.DONE
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
            number = WorkerFile.number(Path(path).name)
            if values and number is not None:
                state.add(number, values, (), partner_ratios(bench))
        runs = Path(store.runs)
        state.discarded = len(list(runs.glob("*" + WorkerFile.DISCARDED))) if runs.is_dir() else 0
        return state

    def start_driver(self, interp_id: str, env: Environment, cells: list[Cell]) -> HarnessDriver:
        job = make_job(self.plan, interp_id, cells, self.run_id, self.setups.get(interp_id))
        job_name = self.run_dir.write_job(interp_id, job)
        command = self.backend.harness_command(env, self.run_dir.path, job_name)
        log_path = self.run_dir.path / "cells" / f"{interp_id}.harness.log"
        return self.driver_factory(interp_id, command, log_path, job_name)

    def stop_driver(self, interp_id: str, driver: HarnessDriver, interrupted: bool = False) -> None:
        if self.drivers.pop(interp_id, None) is None:
            return
        clean = driver.close(interrupted=interrupted)
        if not clean:
            self.backend.cleanup(self.run_dir.path, driver.job_name)
        entry = self.interpreters[interp_id]
        entry["load_after"] = load_average()
        if entry["status"] == Status.RUNNING:
            entry["status"] = Status.RAN

    # -- the rounds ----------------------------------------------------------------------

    def measure(self, progress: Progress) -> None:
        with self.open_monitor() as monitor:
            self.monitor = monitor
            self.rounds_loop(monitor, self.sampling, progress)

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
                state.typical = typical.get(state.key)
            decided = self.decided(monitor) if sampling.decide else set()
            for state in order:
                if state.status == Status.PENDING:
                    state.rounds += 1
                    why = sampling.stop(
                        state.measured, state.kept_seconds, spent, state.typical, state.key in decided
                    )
                    if why:
                        state.stopped = why
                        self.finish(state, progress)
            progress.remaining = self.estimate(
                [s for s in self.states.values() if s.status == Status.PENDING]
            )
            self.save()
        self.stages["run"] = self.stages.get("run", 0.0) + time.monotonic() - started

    def decided(self, monitor: NoiseMonitor) -> set[tuple[str, str]]:
        """The cells whose every comparison is decided (run/decide.py), on the process means
        of every measured cell so far and the run's floor so far."""
        floor = float(monitor.summary()["floor"])
        means = {
            key: state.means
            for key, state in self.states.items()
            if state.status in (Status.PENDING, Status.DONE) and state.means
        }
        return decided_cells(means, floor)

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
            self.fail(state, Status.FAILED, self.harness_gone(state.interpreter), progress)
            return
        try:
            reply = driver.request(
                Op.worker(state.cell_id, window.round),
                timeout=self.plan.profile.timeout * 2 + 60,
            )
        except DriverDied as exc:
            self.fail(state, Status.FAILED, self.driver_died(state.interpreter, str(exc)), progress)
            return
        if reply.get("status") == Status.OK:
            state.add(
                int(reply["worker"]), reply["values"], reply.get("seconds", ()), reply.get("ratios") or ()
            )
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
                            driver.request(Op.discard(state.cell_id, worker), timeout=60)
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
            self.fail(state, Status.FAILED, self.harness_gone(state.interpreter), progress)
            return
        try:
            reply = driver.request(Op.finish(state.cell_id, summary), timeout=120)
        except DriverDied as exc:
            self.fail(state, Status.FAILED, self.driver_died(state.interpreter, str(exc)), progress)
            return
        if reply.get("disk_full"):
            self.out_of_space(state, reply, progress)
        state.status = Status.DONE if reply.get("status") == Status.OK else Status.FAILED
        precision = summary["precision"]
        note = (
            f"±{precision:.1%}" if precision is not None else "no interval"
        ) + f" from {summary['processes']} processes"
        if state.stopped != Stopped.FIXED:
            note += (
                " ("
                + {
                    Stopped.PRECISION: "target met",
                    Stopped.DECIDED: "its comparisons decided",
                    Stopped.RUN_BUDGET: "the run's budget spent",
                }.get(state.stopped or "", "budget spent")
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
            state.status = Status.DONE
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
        record = status_record(
            state.cell_id,
            status,
            reason,
            elapsed=round(sum(state.seconds), 3),
            worker_seconds=state.seconds,
        )
        write_atomic(path, json.dumps(record, indent=1) + "\n")

    def harness_gone(self, interp_id: str) -> str:
        """The reason a cell fails whose interpreter's driver is gone: why it stopped."""
        return self.interpreters[interp_id].get("reason") or "the interpreter's harness stopped"

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
