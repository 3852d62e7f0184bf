"""Execution models: how a list of tasks is dispatched to ``workers`` workers.

A pool is created once per benchmark process, *outside* the timed region, and warmed up so
that all its workers exist before timing starts: cells measure the steady-state throughput of
an execution model. The fixed cost of creating a pool is a workload of its own. Benchmark
metadata records this choice as ``gilmatrix_pool_in_timing = "no"``.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple


@dataclass(frozen=True)
class Executor:
    name: str
    description: str
    uses_workers: bool  # False: one cell only, at 1 worker
    min_version: Tuple[int, int] = (3, 10)


EXECUTORS: Dict[str, Executor] = {
    e.name: e
    for e in (
        Executor("sequential", "a plain loop in the calling thread", uses_workers=False),
        Executor("threads", "concurrent.futures.ThreadPoolExecutor", uses_workers=True),
        Executor("processes", "concurrent.futures.ProcessPoolExecutor", uses_workers=True),
        Executor(
            "interpreters",
            "concurrent.futures.InterpreterPoolExecutor (PEP 734)",
            uses_workers=True,
            min_version=(3, 14),
        ),
        Executor("asyncio", "asyncio tasks on one event loop", uses_workers=True, min_version=(3, 11)),
    )
}

# Executors this harness can run today; the others are known names planned as skipped.
IMPLEMENTED = ("sequential", "threads", "processes")


def unavailable_reason(executor: str, version: Tuple[int, int]) -> Optional[str]:
    """Why ``executor`` cannot run on a CPython of ``version`` (None: it can)."""
    spec = EXECUTORS[executor]
    if version < spec.min_version:
        need = ".".join(map(str, spec.min_version))
        return f"{spec.description} needs CPython {need} or newer"
    if executor not in IMPLEMENTED:
        return f"executor {executor!r} is not implemented by this harness version yet"
    return None


class Dispatcher:
    """Runs ``fn`` over ``tasks`` with one execution model; reusable across timed calls."""

    def __init__(self, executor: str, workers: int, start_method: Optional[str] = None) -> None:
        self.executor = executor
        self.workers = workers
        self.start_method = start_method
        self._pool: Optional[cf.Executor] = None
        if executor == "threads":
            self._pool = cf.ThreadPoolExecutor(max_workers=workers)
        elif executor == "processes":
            context = multiprocessing.get_context(start_method)
            self.start_method = context.get_start_method()
            self._pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=context)
        elif executor != "sequential":
            raise ValueError(f"executor {executor!r} is not implemented")

    def warm_up(self, fn: Callable[[Any], Any], tasks: List[Any]) -> None:
        """Make every worker exist before timing: run at least ``workers`` tasks."""
        if self._pool is None:
            return
        batch = (tasks * (self.workers // max(len(tasks), 1) + 1))[: max(self.workers, len(tasks))]
        list(self._pool.map(fn, batch))

    def run(self, fn: Callable[[Any], Any], tasks: List[Any]) -> List[Any]:
        if self._pool is None:
            return [fn(task) for task in tasks]
        return list(self._pool.map(fn, tasks))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def default_start_method() -> str:
    """The start method ProcessPoolExecutor uses here (3.14 moved Linux to forkserver)."""
    return multiprocessing.get_context().get_start_method()
