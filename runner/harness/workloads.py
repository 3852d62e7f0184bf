"""Workloads: the work each cell does, split into tasks, and the check of its answer.

Every workload verifies its own result, so a fast wrong answer fails the cell instead of
winning it. Task functions are module-level so that processes (and sub-interpreters) can
import them by name.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple


class WrongAnswer(AssertionError):
    """A workload computed a result that is not the expected one."""


# NamedTuple, not dataclasses: see executors (a worker's start-up imports).
class Param(NamedTuple):
    default: Any
    minimum: float = 0
    maximum: float = 0
    doc: str = ""
    choices: tuple[str, ...] = ()  # a string parameter: one of these


class Workload(NamedTuple):
    name: str
    kind: str  # cpu | io | data | native | mixed | contention | startup: what bounds it
    description: str
    params: Mapping[str, Param]
    make_tasks: Callable[[Mapping[str, Any]], list[Any]]
    run_task: Callable[[Any], Any]
    check: Callable[[Mapping[str, Any], list[Any], list[Any]], None]
    # A native awaitable doing the same work, for the asyncio executor (else: to_thread).
    async_task: Callable[[Any], Awaitable[Any]] | None = None
    # Tasks carry state that one call mutates: make them anew for every timed call.
    fresh_tasks: bool = False
    # The pool's creation and shutdown are what is measured (inside the timed region).
    pool_in_timing: bool = False
    # Executor kinds this workload cannot run on, with the reason.
    unsupported: Mapping[str, str] = MappingProxyType({})


# -- crunch: pure-Python CPU loop (holds the GIL the whole time) -------------------------------


def crunch_task(size: int) -> int:
    total = 0
    for value in range(size):
        total += value * value
    return total


def _sum_of_squares_below(n: int) -> int:
    return (n - 1) * n * (2 * n - 1) // 6


def _crunch_tasks(params: Mapping[str, Any]) -> list[int]:
    return [int(params["size"])] * int(params["tasks"])


def _crunch_check(params: Mapping[str, Any], tasks: list[int], results: list[Any]) -> None:
    expected = [_sum_of_squares_below(size) for size in tasks]
    if list(results) != expected:
        raise WrongAnswer(f"crunch: got {list(results)[:3]}..., expected {expected[:3]}...")


# -- fetch: a blocking wait per request (releases the GIL while sleeping) ----------------------


def fetch_task(request: tuple[str, float]) -> str:
    name, wait_seconds = request
    time.sleep(wait_seconds)
    return name


async def fetch_task_async(request: tuple[str, float]) -> str:
    import asyncio  # not at module level: see executors (loaded by then: a dictionary lookup)

    name, wait_seconds = request
    await asyncio.sleep(wait_seconds)
    return name


def _fetch_tasks(params: Mapping[str, Any]) -> list[tuple[str, float]]:
    wait = float(params["wait_ms"]) / 1000.0
    return [(f"request-{index}", wait) for index in range(int(params["tasks"]))]


def _fetch_check(params: Mapping[str, Any], tasks: list[Any], results: list[Any]) -> None:
    expected = [name for name, _ in tasks]
    if list(results) != expected:
        raise WrongAnswer(f"fetch: got {list(results)[:3]}..., expected {expected[:3]}...")


# -- sum_squares: tuple batches shipped to the workers (serialization cost) --------------------


def sum_squares_task(batch: tuple[int, ...]) -> int:
    return sum(value * value for value in batch)


def _sum_squares_tasks(params: Mapping[str, Any]) -> list[tuple[int, ...]]:
    size = int(params["batch"])
    return [tuple(range(i * size, (i + 1) * size)) for i in range(int(params["tasks"]))]


def _sum_squares_check(params: Mapping[str, Any], tasks: list[Any], results: list[Any]) -> None:
    expected = [_sum_of_squares_below(batch[-1] + 1) - _sum_of_squares_below(batch[0]) for batch in tasks]
    if list(results) != expected:
        raise WrongAnswer(f"sum_squares: got {list(results)[:3]}..., expected {expected[:3]}...")


# -- hash_native: hashlib over a large buffer (C code that releases the GIL) -------------------

_BUFFERS: dict[int, bytes] = {}


def _buffer(size_kb: int) -> bytes:
    # Built once per process (or interpreter), outside the timed calls after the warm-up: the
    # task ships only its size, so processes pay no transfer for it.
    if size_kb not in _BUFFERS:
        _BUFFERS[size_kb] = bytes(range(256)) * (size_kb * 4)
    return _BUFFERS[size_kb]


def hash_native_task(task: tuple[int, int, int]) -> str:
    import hashlib  # imported by the warm-up already: a dictionary lookup (see executors)

    index, size_kb, rounds = task
    digest = hashlib.sha256(index.to_bytes(4, "little"))
    buffer = _buffer(size_kb)
    for _ in range(rounds):
        digest.update(buffer)  # hashlib drops the GIL for inputs above 2 KiB
    return digest.hexdigest()


def _hash_tasks(params: Mapping[str, Any]) -> list[tuple[int, int, int]]:
    return [(i, int(params["size_kb"]), int(params["rounds"])) for i in range(int(params["tasks"]))]


def _hash_check(params: Mapping[str, Any], tasks: list[Any], results: list[Any]) -> None:
    import hashlib

    buffer = bytes(range(256)) * (int(params["size_kb"]) * 4)
    expected = []
    for index, _, rounds in tasks:
        digest = hashlib.sha256(index.to_bytes(4, "little"))
        for _ in range(rounds):
            digest.update(buffer)
        expected.append(digest.hexdigest())
    if list(results) != expected:
        raise WrongAnswer("hash_native: digests differ from hashlib's")


# -- contention: workers updating one shared object ---------------------------------------------


class SharedCounter:
    def __init__(self) -> None:
        self.value = 0
        self.lock = threading.Lock()
        self.table: dict[int, int] = {}


def contention_task(task: tuple[SharedCounter, int, int, str]) -> int:
    shared, index, increments, mode = task
    if mode == "lock":  # one counter, every update under one lock
        lock = shared.lock
        for _ in range(increments):
            with lock:
                shared.value += 1
    else:  # "dict": one shared dict, each task its own key, no lock of ours
        table = shared.table
        for _ in range(increments):
            table[index] = table.get(index, 0) + 1
    return index


def _contention_tasks(params: Mapping[str, Any]) -> list[tuple[SharedCounter, int, int, str]]:
    shared = SharedCounter()
    return [(shared, i, int(params["increments"]), str(params["mode"])) for i in range(int(params["tasks"]))]


def _contention_check(params: Mapping[str, Any], tasks: list[Any], results: list[Any]) -> None:
    shared = tasks[0][0]
    increments, count = int(params["increments"]), len(tasks)
    if params["mode"] == "lock":
        if shared.value != increments * count:
            raise WrongAnswer(f"contention: counter {shared.value} != {increments * count}")
    elif shared.table != {i: increments for i in range(count)}:
        raise WrongAnswer("contention: lost updates in the shared dict")


_NOT_SHARED = (
    "contention shares its state by reference, which workers in other processes or "
    "interpreters cannot do: each would update a copy"
)


# -- mixed: part CPU, part wait ----------------------------------------------------------------


def mixed_task(task: tuple[int, float]) -> int:
    size, wait_seconds = task
    result = crunch_task(size)
    time.sleep(wait_seconds)
    return result


async def mixed_task_async(task: tuple[int, float]) -> int:
    import asyncio  # see fetch_task_async

    size, wait_seconds = task
    result = crunch_task(size)
    await asyncio.sleep(wait_seconds)
    return result


def _mixed_tasks(params: Mapping[str, Any]) -> list[tuple[int, float]]:
    return [(int(params["size"]), float(params["wait_ms"]) / 1000.0)] * int(params["tasks"])


def _mixed_check(params: Mapping[str, Any], tasks: list[Any], results: list[Any]) -> None:
    _crunch_check(params, [size for size, _ in tasks], results)


# -- startup: the fixed cost of an execution model ----------------------------------------------


def startup_task(token: int) -> int:
    return token + 1


def _startup_tasks(params: Mapping[str, Any]) -> list[int]:
    return list(range(int(params["tasks"])))


def _startup_check(params: Mapping[str, Any], tasks: list[Any], results: list[Any]) -> None:
    if list(results) != [t + 1 for t in tasks]:
        raise WrongAnswer("startup: wrong results")


_TASKS = Param(8, 1, 4096, "tasks per timed call, spread over the workers")

WORKLOADS: dict[str, Workload] = {
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
            async_task=fetch_task_async,
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
        Workload(
            name="hash_native",
            kind="native",
            description="SHA-256 over a large buffer: C code that releases the GIL.",
            params={
                "tasks": _TASKS,
                "size_kb": Param(1024, 4, 1_048_576, "KiB hashed per round"),
                "rounds": Param(4, 1, 100_000, "rounds per task"),
            },
            make_tasks=_hash_tasks,
            run_task=hash_native_task,
            check=_hash_check,
        ),
        Workload(
            name="contention",
            kind="contention",
            description="Workers updating one shared object: a counter under a lock, or a dict.",
            params={
                "tasks": _TASKS,
                "increments": Param(20_000, 1, 100_000_000, "updates per task"),
                "mode": Param("lock", doc="what is shared", choices=("lock", "dict")),
            },
            make_tasks=_contention_tasks,
            run_task=contention_task,
            check=_contention_check,
            fresh_tasks=True,
            unsupported={"processes": _NOT_SHARED, "interpreters": _NOT_SHARED},
        ),
        Workload(
            name="mixed",
            kind="mixed",
            description="Part CPU loop, part blocking wait, per task.",
            params={
                "tasks": _TASKS,
                "size": Param(20_000, 0, 100_000_000, "loop iterations per task"),
                "wait_ms": Param(5.0, 0, 60_000, "milliseconds each task waits"),
            },
            make_tasks=_mixed_tasks,
            run_task=mixed_task,
            check=_mixed_check,
            async_task=mixed_task_async,
        ),
        Workload(
            name="startup",
            kind="startup",
            description="Create a pool, run trivial tasks, shut it down: an execution model's fixed cost.",
            params={"tasks": Param(1, 1, 4096, "trivial tasks per pool")},
            make_tasks=_startup_tasks,
            run_task=startup_task,
            check=_startup_check,
            pool_in_timing=True,
        ),
    )
}


def resolve_params(workload: Workload, given: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults overlaid with ``given`` (already validated by the matrix loader)."""
    params = {name: spec.default for name, spec in workload.params.items()}
    params.update(given)
    return params
