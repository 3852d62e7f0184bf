"""Execution models: how a list of tasks is dispatched to ``workers`` workers.

A pool is created once per benchmark process, *outside* the timed region, and warmed up so that
all its workers exist before timing starts: cells measure the steady-state throughput of an
execution model. The fixed cost of creating a pool is what the ``startup`` workload measures
(its pool is created inside the timed region). Metadata records which: ``gilmatrix_pool_in_timing``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from gilmatrix.harness.contract import EXECUTORS

if TYPE_CHECKING:
    import asyncio
    import concurrent.futures as cf

# asyncio, concurrent.futures and multiprocessing are imported where they are used, not here:
# every cell starts one or more pyperf worker processes, and each of them imports this module
# before its first run (asyncio alone ~15 ms; NamedTuple rather than dataclasses for the same
# reason: dataclasses pulls in inspect). `nox -s selfbench` prints a worker's start-up, by step.


def unavailable_reason(
    executor: str, version: tuple[int, int], unsupported: Mapping[str, str] | None = None
) -> str | None:
    """Why ``executor`` cannot run a workload on a CPython of ``version`` (None: it can).

    ``unsupported`` is the workload's own map of execution models it cannot run on.
    """
    spec = EXECUTORS[executor]
    if version < spec.min_version:
        need = ".".join(map(str, spec.min_version))
        return f"{spec.description} needs CPython {need} or newer"
    if unsupported and spec.model in unsupported:
        return unsupported[spec.model]
    return None


def default_start_method() -> str:
    """The start method ProcessPoolExecutor uses here (3.14 moved Linux to forkserver)."""
    import multiprocessing

    return multiprocessing.get_context().get_start_method()


class Dispatcher:
    """Runs a task function over tasks with one execution model; reusable across timed calls."""

    def __init__(
        self, executor: str, workers: int, *, async_fn: Callable[[Any], Awaitable[Any]] | None = None
    ) -> None:
        spec = EXECUTORS[executor]
        self.model, self.workers, self.async_fn = spec.model, workers, async_fn
        self.start_method: str | None = None
        self._pool: cf.Executor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        if self.model != "sequential":
            import concurrent.futures as cf
        if self.model == "threads":
            self._pool = cf.ThreadPoolExecutor(max_workers=workers)
        elif self.model == "processes":
            import multiprocessing

            context = multiprocessing.get_context(spec.start_method)
            self.start_method = context.get_start_method()
            self._pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=context)
        elif self.model == "interpreters":
            self._pool = cf.InterpreterPoolExecutor(max_workers=workers)  # type: ignore[attr-defined]
        elif self.model == "asyncio":
            import asyncio

            self._loop = asyncio.new_event_loop()
            # to_thread() runs on the loop's default executor: size it to the worker count.
            self._pool = cf.ThreadPoolExecutor(max_workers=workers)
            self._loop.set_default_executor(self._pool)

    def warm_up(self, fn: Callable[[Any], Any], tasks: list[Any]) -> None:
        """Make every worker exist before timing: run at least ``workers`` tasks."""
        if self._pool is None:
            return
        count = max(self.workers, len(tasks))
        self.run(fn, [tasks[i % len(tasks)] for i in range(count)])

    def run(self, fn: Callable[[Any], Any], tasks: list[Any]) -> list[Any]:
        if self._loop is not None:
            return self._loop.run_until_complete(self._gather(fn, tasks))
        if self._pool is None:
            return [fn(task) for task in tasks]
        return list(self._pool.map(fn, tasks))

    async def _gather(self, fn: Callable[[Any], Any], tasks: list[Any]) -> list[Any]:
        import asyncio  # loaded by __init__: a dictionary lookup

        limit = asyncio.Semaphore(self.workers)
        async_fn = self.async_fn

        async def one(task: Any) -> Any:
            async with limit:
                if async_fn is not None:
                    return await async_fn(task)
                return await asyncio.to_thread(fn, task)

        if sys.version_info >= (3, 11):
            async with asyncio.TaskGroup() as group:  # structured: one failure cancels the rest
                futures = [group.create_task(one(task)) for task in tasks]
            return [future.result() for future in futures]
        return list(await asyncio.gather(*(one(task) for task in tasks)))

    def worker_pids(self) -> list[int]:
        """Pids of pool processes (for their CPU time and memory)."""
        if self.model != "processes" or self._pool is None:
            return []
        return list(getattr(self._pool, "_processes", None) or {})

    def close(self) -> None:
        if self._loop is not None:
            self._loop.close()
            self._loop = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def process_cpu_seconds(pid: int) -> float | None:
    """CPU time (user+system, all threads) of another process, from its Linux CPU clock."""
    try:
        return time.clock_gettime((~pid << 3) | 2)  # clock_getcpuclockid(pid), CPUCLOCK_SCHED
    except (OSError, OverflowError, AttributeError):
        return None


def _schedstat(task_dir: str) -> tuple[int, int]:
    """(nanoseconds on a CPU, nanoseconds runnable but waiting on a run queue) summed over the
    threads of one process (``/proc/<pid>/task``): Linux's schedstat, first two fields."""
    on = wait = 0
    for tid in os.listdir(task_dir):
        try:
            with open(f"{task_dir}/{tid}/schedstat") as stat:
                fields = stat.read().split()
        except OSError:  # a thread that ended meanwhile
            continue
        on += int(fields[0])
        wait += int(fields[1])
    return on, wait


def run_queue_seconds(pids: Iterable[int] = ()) -> tuple[float, float] | None:
    """(seconds on a CPU, seconds waiting on a run queue) of every thread of this process and
    of the processes ``pids`` (a pool's) so far; None where Linux's schedstat cannot be read."""
    try:
        on, wait = _schedstat("/proc/self/task")
        for pid in pids:
            more = _schedstat(f"/proc/{pid}/task")
            on, wait = on + more[0], wait + more[1]
    except (OSError, ValueError, IndexError):
        return None
    return on * 1e-9, wait * 1e-9


# /proc/stat's per-CPU columns that are work (user nice system idle iowait irq softirq steal ...):
# steal is the hypervisor's other guests; guest time is inside user already
_BUSY_COLUMNS = (0, 1, 2, 5, 6, 7)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100  # /proc/stat's per second


def busy_cpu_seconds(cpus: frozenset[int]) -> float | None:
    """Seconds the CPUs ``cpus`` have been busy so far, whoever ran (Linux ``/proc/stat``, in
    clock ticks: 10 ms where USER_HZ is 100); None where it cannot be read."""
    total = 0
    try:
        with open("/proc/stat") as stat:
            for line in stat:
                if not line.startswith("cpu") or line[3] == " ":
                    continue
                name, *fields = line.split()
                if int(name[3:]) in cpus:
                    total += sum(int(fields[i]) for i in _BUSY_COLUMNS if i < len(fields))
    except (OSError, ValueError, IndexError):
        return None
    return total / CLOCK_TICKS


def peak_rss_bytes(pid: int) -> int | None:
    """Peak resident set size of a process (VmHWM), Linux only."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
