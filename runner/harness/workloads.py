"""Workloads: the work each cell does, split into tasks, and the check of its answer.

Every workload verifies its own result, so a fast wrong answer fails the cell instead of
winning it. Task functions are module-level so that processes (and sub-interpreters) can
import them by name.
"""

from __future__ import annotations

import math
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

# -- ftscaling: small operations that should scale on free-threaded threads, but may not -----------
#
# The patterns of CPython's Tools/ftscalingbench (method and function calls, object creation,
# closures, dicts, tuples, generators, thread-locals, dataclasses, namedtuples, enum attributes,
# deepcopy, module functions, constants), written anew here, each a loop per task with an answer
# its check can compute; and shared-object variants that scale badly on purpose (every task on
# one list, one dict, one object). ftscalingbench gives each of N threads the same work as its
# one thread and reports T1 * N / TN; the matrix does the same with `tasks_per_worker` (a cell's
# tasks = workers x it), and the report computes every speedup as a throughput ratio, from the
# tasks each cell ran: T1 * N / TN for these, T1 / TN where a cell spreads fixed tasks.

_FT_LOCAL = threading.local()
_FT_LAZY: dict[str, Any] = {}  # classes made on first use: dataclasses, collections, enum, copy


def _ft_lazy(name: str) -> Any:
    """A class or module the patterns use, made on first use (a worker's start-up imports
    neither dataclasses nor enum nor copy otherwise; see executors)."""
    if name not in _FT_LAZY:
        if name == "dataclass":
            import dataclasses

            _FT_LAZY[name] = dataclasses.make_dataclass("FtPoint", [("x", int), ("y", int)])
        elif name == "namedtuple":
            import collections

            _FT_LAZY[name] = collections.namedtuple("FtPair", ["x", "y"])
        elif name == "enum":
            import enum

            _FT_LAZY[name] = enum.Enum("FtColor", {"RED": 1, "GREEN": 2})
        elif name == "copy":
            import copy

            _FT_LAZY[name] = copy
    return _FT_LAZY[name]


class _FtCounter:
    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    def bump(self) -> None:
        self.count += 1


class _FtPoint:
    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y


class _FtShared:
    def __init__(self) -> None:
        self.value = 1


def _ft_add_one(value: int) -> int:
    return value + 1


def _ft_closure_of(value: int) -> Callable[[], int]:
    def inner() -> int:
        return value

    return inner


def _ft_items(count: int) -> Any:
    yield from range(count)


def _ft_method_call(n: int, shared: Any) -> int:
    counter = _FtCounter()
    for _ in range(n):
        counter.bump()
    return counter.count


def _ft_function_call(n: int, shared: Any) -> int:
    total = 0
    for _ in range(n):
        total = _ft_add_one(total)
    return total


def _ft_object_create(n: int, shared: Any) -> int:
    made = 0
    for i in range(n):
        made += _FtPoint(i, i).y - i + 1
    return made


def _ft_closure(n: int, shared: Any) -> int:
    total = 0
    for _ in range(n):
        total += _ft_closure_of(1)()  # a new closure each time, called once
    return total


def _ft_dict_create(n: int, shared: Any) -> int:
    total = 0
    for i in range(n):
        total += len({"a": i, "b": i}) - 1
    return total


def _ft_tuple_create(n: int, shared: Any) -> int:
    total = 0
    for i in range(n):
        total += len((i, i, i)) - 2
    return total


def _ft_generator(n: int, shared: Any) -> int:
    """n items from generators of 4 (and one of the remainder): the answer is the items seen."""
    items = 0
    for _ in range(n // 4):
        for _value in _ft_items(4):
            items += 1
    for _value in _ft_items(n % 4):
        items += 1
    return items


def _ft_thread_local(n: int, shared: Any) -> int:
    _FT_LOCAL.value = 1
    total = 0
    for _ in range(n):
        total += _FT_LOCAL.value
    return total


def _ft_dataclass_create(n: int, shared: Any) -> int:
    point = _ft_lazy("dataclass")
    total = 0
    for i in range(n):
        total += point(i, 1).y
    return total


def _ft_namedtuple_create(n: int, shared: Any) -> int:
    pair = _ft_lazy("namedtuple")
    total = 0
    for i in range(n):
        total += pair(i, 1).y
    return total


def _ft_enum_attr(n: int, shared: Any) -> int:
    color = _ft_lazy("enum")
    total = 0
    for _ in range(n):
        total += color.RED.value
    return total


def _ft_deepcopy(n: int, shared: Any) -> int:
    copy = _ft_lazy("copy")
    document = {"a": [1, 2, {"b": (3, 4)}], "c": "text"}
    total = 0
    for _ in range(n):
        total += len(copy.deepcopy(document)) - 1
    return total


def _ft_module_function(n: int, shared: Any) -> int:
    total = 0
    for i in range(n):
        total += math.floor(1.5) + math.gcd(i, 0) - i  # C functions through a module attribute
    return total


def _ft_load_const(n: int, shared: Any) -> int:
    total = 0
    for _ in range(n):
        total += len(("a", "b", 3.5, None)) - 3
    return total


def _ft_shared_list_append(n: int, shared: Any) -> int:
    append = shared.append
    for i in range(n):
        append(i)
    return n


def _ft_shared_dict_read(n: int, shared: Any) -> int:
    total = 0
    for _ in range(n):
        total += shared["one"]
    return total


def _ft_shared_attr(n: int, shared: Any) -> int:
    total = 0
    for _ in range(n):
        total += shared.value
    return total


# pattern -> (its loop, iterations per task: 8 tasks take ~0.1 s on one worker)
FT_PATTERNS: dict[str, tuple[Callable[[int, Any], int], int]] = {
    "method_call": (_ft_method_call, 200_000),
    "function_call": (_ft_function_call, 250_000),
    "object_create": (_ft_object_create, 60_000),
    "closure": (_ft_closure, 80_000),
    "dict_create": (_ft_dict_create, 120_000),
    "tuple_create": (_ft_tuple_create, 200_000),
    "generator": (_ft_generator, 150_000),
    "thread_local": (_ft_thread_local, 250_000),
    "dataclass_create": (_ft_dataclass_create, 60_000),
    "namedtuple_create": (_ft_namedtuple_create, 40_000),
    "enum_attr": (_ft_enum_attr, 60_000),
    "deepcopy": (_ft_deepcopy, 3_000),
    "module_function": (_ft_module_function, 120_000),
    "load_const": (_ft_load_const, 300_000),
}
FT_SHARED_PATTERNS: dict[str, tuple[Callable[[int, Any], int], int]] = {
    "shared_list_append": (_ft_shared_list_append, 300_000),
    "shared_dict_read": (_ft_shared_dict_read, 300_000),
    "shared_attr": (_ft_shared_attr, 450_000),
}
_FT_ALL = {**FT_PATTERNS, **FT_SHARED_PATTERNS}


def ftscaling_task(task: tuple[str, int, Any]) -> int:
    pattern, iterations, shared = task
    return _FT_ALL[pattern][0](iterations, shared)


def _ft_iterations(params: Mapping[str, Any]) -> int:
    return int(params["iterations"]) or _FT_ALL[str(params["pattern"])][1]


def _ft_tasks(params: Mapping[str, Any]) -> list[tuple[str, int, Any]]:
    pattern = str(params["pattern"])
    shared: Any = None
    if pattern == "shared_list_append":
        shared = []
    elif pattern == "shared_dict_read":
        shared = {"one": 1, "two": 2}
    elif pattern == "shared_attr":
        shared = _FtShared()
    return [(pattern, _ft_iterations(params), shared)] * int(params["tasks"])


def _ft_check(params: Mapping[str, Any], tasks: list[Any], results: list[Any]) -> None:
    iterations = _ft_iterations(params)
    if list(results) != [iterations] * len(tasks):
        raise WrongAnswer(f"ftscaling {params['pattern']}: got {list(results)[:3]}..., expected {iterations}")
    shared = tasks[0][2] if tasks else None
    if isinstance(shared, list) and len(shared) != iterations * len(tasks):
        raise WrongAnswer(f"shared_list_append: {len(shared)} items, expected {iterations * len(tasks)}")


def _ft_params(patterns: Mapping[str, Any]) -> dict[str, Param]:
    return {
        "tasks": _TASKS,
        "pattern": Param(
            next(iter(patterns)), doc="the operation each task repeats", choices=tuple(patterns)
        ),
        "iterations": Param(0, 0, 100_000_000, "repetitions per task (0: the pattern's own, ~0.1 s a call)"),
    }


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
            name="ftscaling",
            kind="cpu",
            description="A small operation repeated per task (CPython's ftscalingbench patterns): "
            "it should scale on free-threaded threads.",
            params=_ft_params(FT_PATTERNS),
            make_tasks=_ft_tasks,
            run_task=ftscaling_task,
            check=_ft_check,
        ),
        Workload(
            name="ftscaling_shared",
            kind="contention",
            description="Every task on one shared object (a list, a dict, an attribute): "
            "scales badly on purpose.",
            params=_ft_params(FT_SHARED_PATTERNS),
            make_tasks=_ft_tasks,
            run_task=ftscaling_task,
            check=_ft_check,
            fresh_tasks=True,
            unsupported={"processes": _NOT_SHARED, "interpreters": _NOT_SHARED},
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
