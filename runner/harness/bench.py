"""One cell as one pyperf benchmark: ``python -m gilmatrix.harness.bench --cell JSON [pyperf options]``.

The harness driver (``drive``, acting as pyperf's manager) or, when this module is run by
hand, pyperf's own manager spawns fresh worker processes that re-run it with ``--worker``; each worker
builds the cell's pool once, warms it up, then times ``loops`` calls of the workload. The
answer of the last timed call is checked outside the timed region: a wrong answer fails the
cell (non-zero exit) instead of producing a number.

Beyond pyperf's wall time, each timed call's CPU time (this process' threads plus the pool's
processes) is sampled; a pyperf hook writes the medians into each run's metadata:
``gilmatrix_cpu_time`` (CPU seconds per call of the time function, i.e. for ``loops``
iterations: divide by the run's ``loops`` to compare with pyperf's values),
``gilmatrix_parallelism`` (CPU / wall: ≈1 when one core works, ≈N when N do, ≪1 when
waiting), ``gilmatrix_class`` and, for processes,
``gilmatrix_children_max_rss`` (bytes; pyperf's own ``mem_max_rss`` covers this process).

The machine's speed at the moment of each timed call is taken too: a fixed pure-Python loop
(``reference_seconds``, the sentinel's) is timed just before and just after every call, in this
process; each call's (the mean of its two) are the run's ``gilmatrix_references`` (in call order,
the calls at the worker's final loop count: its values are the last ones), their median its
``gilmatrix_reference``. The report uses it as a covariate (reports/stats.py: a process whose
calls ran while the machine was slow has a slow reference too), and keeps the raw figures.
What other work took from each timed call is read too, where the kernel says it (Linux
schedstat): the seconds the cell's threads (and its pool's processes) spent runnable but waiting
on a run queue, per second they ran (``gilmatrix_waits``, in call order like the references).
A one-thread call's wall time is its CPU time plus that wait, so the report uses it as a second
covariate in the cells whose one worker runs in this process (reports/sidebyside.py). It is
recorded only where the cell's workers fit the CPUs the
process may use: with more workers than CPUs the cell's threads wait for each other, which is
the cell's own behaviour, not the machine's noise. And what other work used of the worker's CPUs
during each call, whatever the cell's threads did meanwhile: the seconds those CPUs were busy
(``/proc/stat``) less the cell's own CPU seconds, per second of the call and CPU
(``gilmatrix_others``, in call order): the report's second covariate in the other cells, pools
whose threads wait for each other as well as for other work.
The host's round number, when it gives one (``cell["round"]``), is the run's ``gilmatrix_round``:
processes of two cells taken in one round are a pair.

**Pairing** (the profile's ``pairing: calls``, the host sets ``cell["partner"]``): a cell that is
not sequential times its workload's sequential run — the same tasks, in this process, no pool —
just before its first call and just after each call (``Partner``), so that every call sits
between two partner calls of the same seconds of machine. Each call's partner figure (seconds
per loop, the mean of the two around it) goes into ``gilmatrix_partners`` (in call order, like
``gilmatrix_references``): the report compares the cells of one workload by their per-call
ratios to it (reports/pairs.py), which cancel what the machine did to both.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import pyperf

from gilmatrix.harness.contract import EXECUTORS, classify
from gilmatrix.harness.executors import (
    CLOCK_TICKS,
    Dispatcher,
    busy_cpu_seconds,
    default_start_method,
    peak_rss_bytes,
    process_cpu_seconds,
    run_queue_seconds,
)
from gilmatrix.harness.facts import gil_enabled, interpreter_facts
from gilmatrix.harness.faults import inject
from gilmatrix.harness.workloads import WORKLOADS, Workload, resolve_params

MODULE = "gilmatrix.harness.bench"
HOOK_NAME = "gilmatrix"

_IMPORTED: dict[str, Any] = {}  # a user module's name -> usercode.Imported (one per process)


def workload_of(cell: Mapping[str, Any]) -> Workload:
    """The cell's workload: a built-in, or the user's module the cell names (``module``)."""
    name = cell.get("module")
    if not name:
        return WORKLOADS[cell["implementation"]]
    if name not in _IMPORTED:
        from gilmatrix.harness.usercode import Imported

        _IMPORTED[name] = Imported(name)
    return _IMPORTED[name].workload  # type: ignore[no-any-return]


def cell_metadata(cell: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """The cell's parameters and the interpreter's build facts, as pyperf metadata."""
    facts = interpreter_facts()
    enabled = gil_enabled()
    workload = workload_of(cell)
    spec = EXECUTORS[cell["executor"]]
    metadata: dict[str, Any] = {
        "gilmatrix_interpreter": cell["interpreter"],
        "gilmatrix_workload": cell["workload"],
        "gilmatrix_implementation": cell["implementation"],
        "gilmatrix_workload_kind": workload.kind,
        "gilmatrix_executor": cell["executor"],
        "gilmatrix_model": spec.model,
        "gilmatrix_workers": int(cell["workers"]),
        "gilmatrix_params": json.dumps(dict(params), sort_keys=True),
        "gilmatrix_tasks": int(params.get("tasks", 1)),
        "gilmatrix_pool_in_timing": "yes" if workload.pool_in_timing else "no",
        "gilmatrix_py_gil_disabled": facts["py_gil_disabled"],
        "gilmatrix_gil_enabled": "n/a" if enabled is None else ("true" if enabled else "false"),
        "gilmatrix_sys_version": facts["sys_version"],
    }
    if cell.get("module"):  # what importing the user's module did to the GIL
        metadata.update(_IMPORTED[cell["module"]].metadata())
        if cell.get("module_file"):
            metadata["gilmatrix_module"] = cell["module_file"]
    if facts["config_args"]:  # pyperf rejects empty metadata strings
        metadata["gilmatrix_config_args"] = facts["config_args"]
    if spec.model == "processes":
        metadata["gilmatrix_start_method"] = spec.start_method or default_start_method()
    if cell.get("round") is not None:  # the host's round: this process' pair in other cells
        metadata["gilmatrix_round"] = int(cell["round"])
    if spec.model == "asyncio":
        metadata["gilmatrix_async_mode"] = "native" if workload.async_task else "to_thread"
    return metadata


REFERENCE_ITERATIONS = 10_000  # ~0.4 ms on 3.13 on a 2.6 GHz EPYC: twice per timed call


def reference_seconds() -> float:
    """One timing of the fixed reference loop (the host's sentinel loop, shorter)."""
    start = time.perf_counter()
    total = 0
    for i in range(REFERENCE_ITERATIONS):
        total += i * i
    return time.perf_counter() - start


PARTNER_MAX_LOOPS = 1 << 20


class Partner:
    """The workload's sequential run in the cell's own process (pairing): the same tasks, no
    pool, its answer checked outside the timing. Its loop count is calibrated on its first call
    (doubled until a call lasts ``min_time``) and then fixed for the process.

    It runs in a thread of its own, not the main thread: a process' main-thread stack starts at
    a randomised, unaligned address, and a pure-Python loop's speed there moves by ±4% from one
    process to the next (measured, crunch on 3.11: a pool thread against the main thread, eight
    processes, sd 4%; two runs in the main thread, 0.8%); a thread's stack is page-aligned."""

    def __init__(self, workload: Workload, params: Mapping[str, Any], min_time: float) -> None:
        import concurrent.futures

        self.workload, self.params, self.min_time = workload, params, min_time
        self.tasks: list[Any] = workload.make_tasks(params)
        self.loops: int | None = None
        self.last: float | None = None  # the call after the previous timed call: before the next
        self.thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="gilmatrix-partner")

    def close(self) -> None:
        self.thread.shutdown(wait=True)

    def _call(self, loops: int) -> float:
        return self.thread.submit(self._timed, loops).result()

    def _timed(self, loops: int) -> float:
        fn, make_tasks, params = self.workload.run_task, self.workload.make_tasks, self.params
        fresh, tasks = self.workload.fresh_tasks, self.tasks
        results: list[Any] = []
        start = time.perf_counter()
        for _ in range(loops):
            if fresh:
                tasks = make_tasks(params)
            results = [fn(task) for task in tasks]
        elapsed = time.perf_counter() - start
        self.workload.check(params, tasks, results)
        return elapsed

    def seconds(self) -> float:
        """One partner call: its seconds per loop."""
        if self.loops is None:
            loops = 1
            while (elapsed := self._call(loops)) < self.min_time and loops < PARTNER_MAX_LOOPS:
                loops *= 2
            self.loops = loops
            return elapsed / loops
        return self._call(self.loops) / self.loops

    def around(self, timed: Callable[[], float]) -> tuple[float, float]:
        """``timed()`` between two partner calls (the one before is the previous call's after):
        (its result, the partner's seconds per loop around it)."""
        before = self.last if self.last is not None else self.seconds()
        result = timed()
        self.last = self.seconds()
        return result, (before + self.last) / 2.0


def cpu_set() -> frozenset[int]:
    """The CPUs this process may run on (its affinity: a container's cpuset, a taskset)."""
    try:
        return frozenset(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return frozenset(range(os.cpu_count() or 1))


def others_share(busy: float, own: float, wall: float, cpus: int) -> float | None:
    """The share of the worker's CPUs that other work used during a call: the seconds those
    CPUs were busy (``busy``: busy_cpu_seconds' difference) less the cell's own CPU seconds, per
    second of the call and CPU. Clock ticks make it jitter by ±1 tick per CPU (it can come out
    a little below 0, and a short call's reading coarse); None for a call under 2 ticks."""
    if cpus <= 0 or wall < 2.0 / CLOCK_TICKS:
        return None
    return (busy - own) / (wall * cpus)


def run_queue_share(before: tuple[float, float], after: tuple[float, float] | None) -> float | None:
    """Seconds waited on a run queue per second on a CPU between two run_queue_seconds()
    readings: how much of a call other work took from its threads (Linux schedstat). None when
    unreadable, or when the threads ran too little to say."""
    if after is None:
        return None
    on, wait = after[0] - before[0], after[1] - before[1]
    if on <= 0.0:
        return None
    return max(wait, 0.0) / on


class CellTimer:
    """The pyperf time function of one cell; the pool lives as long as the worker process."""

    # (wall, cpu) of each timed call since the hook last read them; one timer per process.
    samples: ClassVar[list[tuple[float, float | None, int]]] = []  # (wall, cpu, loops)
    # (reference loop seconds: the mean of its timings before and after the call, loops)
    references: ClassVar[list[tuple[float, int]]] = []
    # (the partner's seconds per loop around the call, loops): pairing only
    partners: ClassVar[list[tuple[float, int]]] = []
    # (seconds the cell's threads waited on a run queue during the call / their seconds on a CPU,
    # loops): where the cell's workers fit the CPUs it may use (see run_queue_share)
    waits: ClassVar[list[tuple[float, int]]] = []
    # (the share of the worker's CPUs other work used during the call, loops): see others_share
    others: ClassVar[list[tuple[float, int]]] = []
    children_rss: int | None = None

    def __init__(self, cell: Mapping[str, Any], min_time: float = 0.1) -> None:
        self.workload = workload_of(cell)
        self.params = resolve_params(self.workload, cell["params"])
        self.tasks: list[Any] = self.workload.make_tasks(self.params)
        self.cell = cell
        self.dispatcher: Dispatcher | None = None
        paired = cell.get("partner") and EXECUTORS[cell["executor"]].model != "sequential"
        self.partner = Partner(self.workload, self.params, min_time) if paired else None
        self.cpus = cpu_set()
        self.watch_queue = int(cell["workers"]) <= len(self.cpus)

    def close(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.close()
            self.dispatcher = None
        if self.partner is not None:
            self.partner.close()

    def _new_dispatcher(self) -> Dispatcher:
        return Dispatcher(self.cell["executor"], int(self.cell["workers"]), async_fn=self.workload.async_task)

    def _warm_up(self) -> None:
        assert self.dispatcher is not None
        try:
            self.dispatcher.warm_up(self.workload.run_task, self.tasks)
        except Exception as exc:
            if self.cell.get("module") and self.dispatcher.model == "interpreters":
                from gilmatrix.harness import usercode

                # A user module whose import a sub-interpreter refuses: the cell is unsupported.
                reason = usercode.refusal(exc)
                if reason:
                    self.close()
                    usercode.refuse(reason)
                hint = usercode.missing_global_hint(exc)
                if hint:
                    raise usercode.SubinterpreterGlobalsError(hint) from exc
            raise

    def _cpu_now(self) -> float | None:
        total = time.process_time()  # every thread of this process
        for pid in self.dispatcher.worker_pids() if self.dispatcher else ():
            seconds = process_cpu_seconds(pid)
            if seconds is None:
                return None
            total += seconds
        return total

    def __call__(self, loops: int) -> float:
        before = reference_seconds()
        if self.partner is None:
            elapsed = self._timed(loops)
        else:
            elapsed, partner = self.partner.around(lambda: self._timed(loops))
            self.partners.append((partner, loops))
        self.references.append(((before + reference_seconds()) / 2.0, loops))
        if not HOOKS[0]:
            _record_without_hooks()
        return elapsed

    def _timed(self, loops: int) -> float:
        if self.cell.get("fault"):
            inject(self.cell["fault"])
        workload = self.workload
        if workload.pool_in_timing:
            return self._time_startup(loops)
        if self.dispatcher is None:
            self.dispatcher = self._new_dispatcher()
            self._warm_up()
        run, fn = self.dispatcher.run, workload.run_task
        make_tasks, params = workload.make_tasks, self.params
        fresh = workload.fresh_tasks
        tasks = self.tasks
        results: list[Any] = []
        pids = self.dispatcher.worker_pids()
        queue_start = run_queue_seconds(pids) if self.watch_queue else None
        busy_start = busy_cpu_seconds(self.cpus)
        cpu_start = self._cpu_now()
        start = time.perf_counter()
        for _ in range(loops):
            if fresh:
                tasks = make_tasks(params)
            results = run(fn, tasks)
        elapsed = time.perf_counter() - start
        cpu_end = self._cpu_now()
        busy_end = busy_cpu_seconds(self.cpus)
        if queue_start is not None:
            share = run_queue_share(queue_start, run_queue_seconds(pids))
            if share is not None:
                self.waits.append((share, loops))
        workload.check(params, tasks, results)
        cpu = cpu_end - cpu_start if cpu_start is not None and cpu_end is not None else None
        if cpu is not None and busy_start is not None and busy_end is not None:
            others = others_share(busy_end - busy_start, cpu, elapsed, len(self.cpus))
            if others is not None:
                self.others.append((others, loops))
        self.samples.append((elapsed, cpu, loops))
        if pids:
            sizes = [peak_rss_bytes(pid) for pid in pids]
            if all(size is not None for size in sizes):
                type(self).children_rss = sum(sizes)  # type: ignore[arg-type]
        return elapsed

    def _time_startup(self, loops: int) -> float:
        fn, tasks = self.workload.run_task, self.tasks
        results: list[Any] = []
        cpu_start = time.process_time()
        start = time.perf_counter()
        for _ in range(loops):
            dispatcher = self._new_dispatcher()
            results = dispatcher.run(fn, tasks)
            dispatcher.close()
        elapsed = time.perf_counter() - start
        self.workload.check(self.params, tasks, results)
        # The pool's processes are gone by now: their CPU time cannot be read, so no ratio.
        cpu = (
            None if EXECUTORS[self.cell["executor"]].model == "processes" else time.process_time() - cpu_start
        )
        self.samples.append((elapsed, cpu, loops))
        return elapsed


class CpuHook:
    """pyperf hook: after a worker's values, summarise CellTimer's samples into run metadata."""

    kind = "cpu"

    def __enter__(self) -> None:
        pass

    def __exit__(self, *exc: Any) -> None:
        pass

    def teardown(self, metadata: dict[str, Any]) -> None:
        samples, CellTimer.samples = CellTimer.samples, []
        references, CellTimer.references = CellTimer.references, []
        partners, CellTimer.partners = CellTimer.partners, []
        waits, CellTimer.waits = CellTimer.waits, []
        others, CellTimer.others = CellTimer.others, []
        # A loop calibration's calls double ``loops`` until one is long enough: the figures are
        # those of the calls at the final count (all calls of any other worker).
        most = max((n for _, _, n in samples), default=0)
        samples = [sample for sample in samples if sample[2] == most]
        kept = [seconds for seconds, n in references if n == most]
        if kept:
            metadata["gilmatrix_reference"] = statistics.median(kept)
            # each call's, in order: the last ones are the run's values (warm-ups come first)
            metadata["gilmatrix_references"] = " ".join(f"{seconds:.4e}" for seconds in kept)
        paired = [seconds for seconds, n in partners if n == most]
        if paired:  # each call's, in order, like the references
            metadata["gilmatrix_partners"] = " ".join(f"{seconds:.6e}" for seconds in paired)
        shares = [share for share, n in waits if n == most]
        if shares and len(shares) == len(kept):  # each call's, in order, like the references
            metadata["gilmatrix_waits"] = " ".join(f"{share:.4e}" for share in shares)
        taken = [share for share, n in others if n == most]
        if taken and len(taken) == len(kept):  # each call's, in order, like the references
            metadata["gilmatrix_others"] = " ".join(f"{share:.4f}" for share in taken)
        cpus = [cpu for _, cpu, _ in samples if cpu is not None]
        ratios = [cpu / wall for wall, cpu, _ in samples if cpu is not None and wall > 0]
        if cpus and len(cpus) == len(samples):
            metadata["gilmatrix_cpu_time"] = statistics.median(cpus)
            metadata["gilmatrix_parallelism"] = round(statistics.median(ratios), 4)
        kind = metadata.get("gilmatrix_workload_kind", "")
        parallelism = metadata.get("gilmatrix_parallelism")
        wall = statistics.median(w / n for w, _, n in samples) if samples else None
        metadata["gilmatrix_class"] = classify(kind, parallelism, wall)
        if CellTimer.children_rss:
            metadata["gilmatrix_children_max_rss"] = CellTimer.children_rss


# [True] when this pyperf takes custom hooks (2.11+); else the fallback below is used.
HOOKS = [True]


def _record_without_hooks() -> None:
    """pyperf before 2.11 (the last for 3.10 is 2.10) has no custom hooks: find the pyperf
    worker task that called us (bench_time_func's wrapper holds it as ``task``) and update
    its metadata, which becomes the run's, after every timed call."""
    frame: Any = sys._getframe(1)
    while frame is not None:
        task: Any = frame.f_locals.get("task")
        if isinstance(getattr(task, "metadata", None), dict) and hasattr(task, "loops"):
            lists = ("samples", "references", "partners", "waits", "others")
            kept = [list(getattr(CellTimer, name)) for name in lists]
            CpuHook().teardown(task.metadata)  # consumes the samples: give them back
            for name, values in zip(lists, kept, strict=True):
                setattr(CellTimer, name, values)
            return
        frame = frame.f_back


class _HookEntry:
    """What pyperf expects of a hook entry point: a name, and load() giving the class."""

    name = HOOK_NAME

    @staticmethod
    def load() -> type:
        return CpuHook


def make_runner() -> tuple[pyperf.Runner, bool]:
    add_args = lambda cmd, args: cmd.extend(("--cell", args.cell))  # noqa: E731
    try:
        return pyperf.Runner(program_args=("-m", MODULE), add_cmdline_args=add_args, hooks=[_HookEntry]), True
    except TypeError:  # pyperf without custom hooks: see _record_without_hooks
        HOOKS[0] = False
        return pyperf.Runner(program_args=("-m", MODULE), add_cmdline_args=add_args), False


def main(argv: list[str] | None = None) -> None:
    runner, has_hooks = make_runner()
    runner.argparser.add_argument("--cell", required=True, help="the cell, as JSON")
    argv = list(sys.argv[1:] if argv is None else argv)
    if has_hooks and "--hook" not in argv:
        argv += ["--hook", HOOK_NAME]  # pyperf's manager passes --hook on to its workers
    args = runner.parse_args(argv)
    cell = json.loads(args.cell)
    timer = CellTimer(cell, float(args.min_time or 0.1))
    try:
        runner.bench_time_func(cell["id"], timer, metadata=cell_metadata(cell, timer.params))
    finally:
        # Shut the pool down here, results written: left to interpreter exit, a process pool's
        # exit hook races its manager thread (seen on 3.10 to 3.13.0) ("Exception ignored
        # ... OSError: [Errno 9] Bad file descriptor" in cell logs of processes cells).
        timer.close()


if __name__ == "__main__":
    main()
