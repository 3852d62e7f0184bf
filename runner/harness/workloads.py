"""Workloads: the work each cell does, split into tasks, and the check of its answer.

Every workload verifies its own result, so a fast wrong answer fails the cell instead of
winning it. Task functions are module-level so that processes (and sub-interpreters) can
import them by name.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Tuple


class WrongAnswer(AssertionError):
    """A workload computed a result that is not the expected one."""


@dataclass(frozen=True)
class Param:
    default: Any
    minimum: float
    maximum: float
    doc: str


@dataclass(frozen=True)
class Workload:
    name: str
    kind: str  # cpu | io | data: what bounds it, used to classify and explain results
    description: str
    params: Mapping[str, Param]
    make_tasks: Callable[[Mapping[str, Any]], List[Any]]
    run_task: Callable[[Any], Any]
    check: Callable[[Mapping[str, Any], List[Any], List[Any]], None]


# -- crunch: pure-Python CPU loop (holds the GIL the whole time) -------------------------------


def crunch_task(size: int) -> int:
    total = 0
    for value in range(size):
        total += value * value
    return total


def _sum_of_squares_below(n: int) -> int:
    return (n - 1) * n * (2 * n - 1) // 6


def _crunch_tasks(params: Mapping[str, Any]) -> List[int]:
    return [int(params["size"])] * int(params["tasks"])


def _crunch_check(params: Mapping[str, Any], tasks: List[int], results: List[Any]) -> None:
    expected = [_sum_of_squares_below(size) for size in tasks]
    if list(results) != expected:
        raise WrongAnswer(f"crunch: got {list(results)[:3]}..., expected {expected[:3]}...")


# -- fetch: a blocking wait per request (releases the GIL while sleeping) ----------------------


def fetch_task(request: Tuple[str, float]) -> str:
    name, wait_seconds = request
    time.sleep(wait_seconds)
    return name


def _fetch_tasks(params: Mapping[str, Any]) -> List[Tuple[str, float]]:
    wait = float(params["wait_ms"]) / 1000.0
    return [(f"request-{index}", wait) for index in range(int(params["tasks"]))]


def _fetch_check(params: Mapping[str, Any], tasks: List[Any], results: List[Any]) -> None:
    expected = [name for name, _ in tasks]
    if list(results) != expected:
        raise WrongAnswer(f"fetch: got {list(results)[:3]}..., expected {expected[:3]}...")


# -- sum_squares: tuple batches shipped to the workers (serialization cost) --------------------


def sum_squares_task(batch: Tuple[int, ...]) -> int:
    return sum(value * value for value in batch)


def _sum_squares_tasks(params: Mapping[str, Any]) -> List[Tuple[int, ...]]:
    size = int(params["batch"])
    return [tuple(range(i * size, (i + 1) * size)) for i in range(int(params["tasks"]))]


def _sum_squares_check(params: Mapping[str, Any], tasks: List[Any], results: List[Any]) -> None:
    expected = [
        _sum_of_squares_below(batch[-1] + 1) - _sum_of_squares_below(batch[0]) for batch in tasks
    ]
    if list(results) != expected:
        raise WrongAnswer(f"sum_squares: got {list(results)[:3]}..., expected {expected[:3]}...")


_TASKS = Param(8, 1, 4096, "tasks per timed call, spread over the workers")

WORKLOADS: Dict[str, Workload] = {
    w.name: w
    for w in (
        Workload(
            name="crunch",
            kind="cpu",
            description="Sum of squares in a pure-Python loop: CPU-bound bytecode.",
            params={"tasks": _TASKS, "size": Param(20_000, 1, 100_000_000, "loop iterations per task")},
            make_tasks=_crunch_tasks,
            run_task=crunch_task,
            check=_crunch_check,
        ),
        Workload(
            name="fetch",
            kind="io",
            description="A blocking sleep per request: waiting, the GIL released.",
            params={"tasks": _TASKS, "wait_ms": Param(10.0, 0, 60_000, "milliseconds each request waits")},
            make_tasks=_fetch_tasks,
            run_task=fetch_task,
            check=_fetch_check,
        ),
        Workload(
            name="sum_squares",
            kind="data",
            description="Sum of squares over tuple batches shipped to the workers: data transfer cost.",
            params={"tasks": _TASKS, "batch": Param(10_000, 1, 10_000_000, "integers per batch")},
            make_tasks=_sum_squares_tasks,
            run_task=sum_squares_task,
            check=_sum_squares_check,
        ),
    )
}


def resolve_params(workload: Workload, given: Mapping[str, Any]) -> Dict[str, Any]:
    """Defaults overlaid with ``given`` (already validated by the matrix loader)."""
    params = {name: spec.default for name, spec in workload.params.items()}
    params.update(given)
    return params
