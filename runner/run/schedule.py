"""How a run spends its time: interleaved rounds, adaptive sampling and noise sentinels.

A run is a sequence of **rounds**. Each round gives every pending cell of every interpreter one
pyperf worker process, in an order shuffled afresh each round (seeded, and the seed recorded),
so a busy minute or a slow drift of the machine lands on every cell a little instead of on a few
cells entirely, and cross-version comparisons are interleaved as well as within-version ones.

After each round a cell stops when

- its 95% interval is tight enough: ``precision.target`` (e.g. 0.02: ±2% of the mean), from at
  least ``min_processes`` worker processes — the unit of replication is the process, whose mean
  is one observation (values inside one process share its memory layout, its hash seed and its
  minute of noise, so they are not independent);
- or its budget is spent: ``max_processes`` processes or ``max_seconds`` of worker time;
- or the run's budget is spent (``run_minutes`` of rounds in all) and it has ``min_processes``:
  a big matrix then ends in a time known beforehand, each cell with the precision it reached
  (the report lists the cells that missed the target);
- or, without a ``precision`` policy, after the profile's fixed ``pyperf.processes``.

**Noise sentinels**: rounds are cut into windows of about ``WINDOW_SECONDS``. Before and after
each window the host times a fixed pure-Python loop on every usable core at once (one pinned
helper process per core, best of three each; the slowest core counts) and reads the load average
and the CPU time stolen by the hypervisor (``/proc/stat``). A window whose sentinel is more than
``DISTURBED_RATIO`` slower than the machine's undisturbed speed (:func:`undisturbed_speed`: the
fast mode of every reading so far), or in which more than ``STEAL_LIMIT`` of the
CPU time was stolen, was taken on a disturbed machine: its worker processes are set aside and
their cells measured again in a later round — unless so many windows are disturbed that redoing
them would never end, then they are kept and flagged. The sentinels' spread over the run is the
run's **noise floor**: what the report holds a comparison with another run to, and says.
"""

from __future__ import annotations

import math
import os
import random
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from gilmatrix.confidence import CONFIDENCE, MIN_FLOOR, t_quantile
from gilmatrix.harness.contract import CellId, Status, Stopped
from gilmatrix.matrix.model import Profile

WINDOW_SECONDS = 10.0
DISTURBED_RATIO = 1.20  # the sentinel 20% slower than the machine's undisturbed speed: something else ran
STEAL_LIMIT = 0.05  # 5% of the CPU time stolen by the hypervisor
REDO_SHARE = 0.34  # redo disturbed windows while they are at most a third of all windows
PRIOR_PROCESSES = 4  # the typical scatter of a cell's execution model counts as 4 processes
SENTINEL_LOOPS = 100_000  # about 4 ms on a 2020s x86-64 core
# A cell's ``stopped`` when it ran out of budget before reaching the target: its own, the run's.


def interval(means: Sequence[float]) -> tuple[float, float] | None:
    """The mean of process means and the half-width of its 95% t-interval (None below 2)."""
    if len(means) < 2:
        return None
    mean = statistics.fmean(means)
    sd = statistics.stdev(means)
    half = t_quantile(0.5 + CONFIDENCE / 2.0, len(means) - 1) * sd / math.sqrt(len(means))
    return mean, half


def relative_precision(means: Sequence[float]) -> float | None:
    """Half-width of the 95% interval as a fraction of the mean (0.02: ±2%)."""
    found = interval(means)
    if found is None or found[0] <= 0:
        return None
    return found[1] / found[0]


def pooled_precision(means: Sequence[float], typical: float | None) -> float | None:
    """The precision a cell is *stopped* on: its own (:func:`relative_precision`), or wider when
    its scatter looks smaller than is typical of its execution model in this run.

    Four processes can look quiet by chance: a pool cell whose processes scatter by 5% shows
    1% in a few of every hundred sets of four, and stopping it there keeps the four least
    representative processes it will ever have (measured: such a cell, stopped at 4 processes
    at ±1.7%, then differed by 5% from its unchanged re-run). So its relative scatter s (n - 1
    degrees of freedom) is pooled with the typical one τ (:func:`typical_scatter`) as if τ came
    from ``PRIOR_PROCESSES`` more: s² ← ((n - 1) s² + k τ²) / (n - 1 + k). The pooled interval
    is never taken when narrower than the cell's own: a cell noisier than typical is judged
    on its own scatter; one quieter than typical needs a few processes more to show it."""
    own = relative_precision(means)
    if own is None or not typical:
        return own
    if math.isinf(typical):  # its model's other cells have not shown their scatter yet
        return math.inf
    n = len(means)
    mean = statistics.fmean(means)
    s = statistics.stdev(means) / mean
    pooled = math.sqrt(((n - 1) * s * s + PRIOR_PROCESSES * typical * typical) / (n - 1 + PRIOR_PROCESSES))
    half = t_quantile(0.5 + CONFIDENCE / 2.0, n - 1) * pooled / math.sqrt(n)
    return max(own, half)


def executor_of(cell_id: str) -> str:
    """The execution model in a cell id (``workload/executor/workers``)."""
    parsed = CellId.maybe(cell_id)
    return parsed.executor if parsed is not None else cell_id


def typical_scatter(states: Sequence[CellState]) -> dict[tuple[str, str], float | None]:
    """Per cell (interpreter, cell id), the relative scatter (sd / mean) of the process means
    typical of the *other* cells of its interpreter and execution model: what
    :func:`pooled_precision` pools the cell's own scatter with.

    Pooled as variances are, each weighted by its degrees of freedom, over the other cells with
    at least 3 processes (at least 2 of them, or the one there will be). Not the cell's own: a
    lucky cell cannot vouch for itself. Not a median: the median of scatters from three or four
    processes each is the typical *luck* (measured on stored runs, results log 2026-12-05,
    session 19: with it, a cell stopped at 5 processes on a third of its model's scatter, the
    few others the first rounds had shown being as lucky). A cell whose model has other cells
    yet to show a scatter (pending, under 3 processes) gets ``math.inf``: it waits for them
    (:func:`pooled_precision` never lets it stop on precision); one with no other cell of its
    model that has or will have a scatter gets None (nothing to pool with)."""
    groups: dict[tuple[str, str], list[CellState]] = {}
    for state in states:
        groups.setdefault((state.interpreter, executor_of(state.cell_id)), []).append(state)
    typical: dict[tuple[str, str], float | None] = {}
    for members in groups.values():
        shown: dict[tuple[str, str], tuple[int, float]] = {}  # key: (degrees of freedom, df × s²)
        for state in members:
            means = state.measured
            mean = statistics.fmean(means) if len(means) >= 3 else 0.0
            if mean > 0:
                df = len(means) - 1
                shown[state.key] = (df, df * (statistics.stdev(means) / mean) ** 2)
        coming = {s.key for s in members if s.status == Status.PENDING and s.key not in shown}
        dfs, squares = sum(df for df, _ in shown.values()), sum(sq for _, sq in shown.values())
        for state in members:
            own_df, own_square = shown.get(state.key, (0, 0.0))
            others = len(shown) - (state.key in shown)
            if others >= 2 or (others and not coming - {state.key}):
                typical[state.key] = math.sqrt(max(squares - own_square, 0.0) / (dfs - own_df))
            elif coming - {state.key}:
                typical[state.key] = math.inf
            else:
                typical[state.key] = None
    return typical


@dataclass(frozen=True, slots=True)
class Sampling:
    """When a cell has been measured enough."""

    processes: int  # fixed mode: this many processes; adaptive mode: unused
    target: float | None = None  # adaptive: relative half-width of the 95% interval
    min_processes: int = 3
    max_processes: int = 20
    max_seconds: float | None = None
    run_seconds: float | None = None  # the run's measuring time, all rounds
    decide: bool = False  # a cell stops once its comparisons are decided (run/decide.py)

    @classmethod
    def of(cls, profile: Profile) -> Sampling:
        policy = profile.precision
        if policy is None:
            return cls(processes=profile.pyperf.processes)
        return cls(
            processes=policy.min_processes,
            target=policy.target,
            min_processes=policy.min_processes,
            max_processes=policy.max_processes,
            max_seconds=policy.max_seconds,
            run_seconds=None if policy.run_minutes is None else policy.run_minutes * 60,
            decide=policy.decide,
        )

    @property
    def adaptive(self) -> bool:
        return self.target is not None

    def stop(
        self,
        means: Sequence[float],
        seconds: float,
        run_seconds: float = 0.0,
        typical: float | None = None,
        decided: bool = False,
    ) -> str | None:
        """Why the cell is done ("fixed", "precision", "decided", "budget", "run-budget"), or
        None: it needs more (``seconds``: its worker time; ``run_seconds``: the run's rounds so
        far; ``typical``: the scatter typical of its execution model, :func:`pooled_precision`;
        ``decided``: every comparison it is part of is decided, run/decide.py)."""
        n = len(means)
        if not self.adaptive:
            return Stopped.FIXED if n >= self.processes else None
        assert self.target is not None
        if n >= self.min_processes:
            precision = pooled_precision(means, typical)
            if precision is not None and precision <= self.target:
                return Stopped.PRECISION
            if self.decide and decided:
                return Stopped.DECIDED
        if n >= self.max_processes or (self.max_seconds is not None and seconds >= self.max_seconds):
            return Stopped.BUDGET
        if n >= self.min_processes and self.run_seconds is not None and run_seconds >= self.run_seconds:
            return Stopped.RUN_BUDGET
        return None

    def expected_more(self, n: int) -> int:
        """A guess of how many more processes a pending cell takes (for the time estimate)."""
        return max(self.min_processes - n, 1) if self.adaptive else max(self.processes - n, 0)

    def to_json(self) -> dict[str, Any]:
        if not self.adaptive:
            return {"mode": "fixed", "processes": self.processes}
        return {
            "mode": "adaptive",
            "target": self.target,
            "confidence": CONFIDENCE,
            "min_processes": self.min_processes,
            "max_processes": self.max_processes,
            "max_seconds": self.max_seconds,
            "run_minutes": None if self.run_seconds is None else self.run_seconds / 60,
            "prior_processes": PRIOR_PROCESSES,
            "decide": self.decide,
        }


@dataclass
class CellState:
    """What the host knows of a cell while it is measured: one mean per kept worker process."""

    interpreter: str
    cell_id: str
    means: list[float] = field(default_factory=list)
    # pairing: each kept process' mean of value / partner (harness/bench.py Partner), same order
    ratios: list[float] = field(default_factory=list)
    workers: list[int] = field(default_factory=list)  # the driver's worker numbers, same order
    seconds: list[float] = field(default_factory=list)  # every worker process' life (all kept)
    discarded: int = 0
    # the lives of processes set aside (taken on a disturbed machine): the machine's cost, not
    # the cell's, so they do not count against its max_seconds (redoing is bounded by REDO_SHARE)
    set_aside_seconds: float = 0.0
    _lives: dict[int, float] = field(default_factory=dict, repr=False)
    rounds: int = 0
    stopped: str | None = None  # fixed | precision | budget, once done
    typical: float | None = None  # the scatter typical of its execution model (typical_scatter)
    status: str = Status.PENDING  # PENDING | DONE | FAILED

    @property
    def key(self) -> tuple[str, str]:
        return (self.interpreter, self.cell_id)

    def add(
        self, worker: int, values: Sequence[float], seconds: Sequence[float], ratios: Sequence[float] = ()
    ) -> None:
        self.means.append(statistics.fmean(values))
        if ratios:
            self.ratios.append(statistics.fmean(ratios))
        self.workers.append(worker)
        self.seconds.extend(seconds)
        self._lives[worker] = sum(seconds)

    def drop(self, worker: int) -> None:
        index = self.workers.index(worker)
        del self.workers[index], self.means[index]
        if len(self.ratios) > index:
            del self.ratios[index]
        self.discarded += 1
        self.set_aside_seconds += self._lives.pop(worker, 0.0)

    @property
    def measured(self) -> list[float]:
        """What the cell's precision is judged on: with pairing, its processes' ratios to the
        partner (what its comparisons use: reports/pairs.py), else its process means."""
        return self.ratios if self.ratios and len(self.ratios) == len(self.means) else self.means

    @property
    def kept_seconds(self) -> float:
        """Worker time that counts against the cell's budget: every life but the set-aside ones."""
        return max(sum(self.seconds) - self.set_aside_seconds, 0.0)

    def summary(self, sampling: Sampling) -> dict[str, Any]:
        """The figures the host hands the driver for the cell's status file."""
        precision = relative_precision(self.measured)
        return {
            "processes": len(self.means),
            "paired": self.measured is self.ratios,
            "rounds": self.rounds,
            "stopped": self.stopped,
            "precision": None if precision is None else round(precision, 5),
            "target": sampling.target,
            "discarded": self.discarded,
            "worker_seconds": [round(s, 4) for s in self.seconds],
            "elapsed": round(sum(self.seconds), 3),
        }


ORDERS = ("blocks", "shuffle")  # a profile's ``order``: see round_order


def round_order(
    pending: Sequence[CellState], seed: int, number: int, block_of: Callable[[CellState], str] | None = None
) -> list[CellState]:
    """The round's order: a shuffle seeded by the run's seed and the round number.

    With ``block_of`` (order ``blocks``, the default), the cells the report compares run side by
    side: the cells of one block (one workload's code: every interpreter, execution model and
    worker count of it) run one after another, in a shuffled order, and the blocks in a shuffled
    order — two compared cells' processes of one round are then seconds apart, not anywhere in
    a round of minutes, and the report pairs them by round (reports/stats.py)."""
    order = sorted(pending, key=lambda c: c.key)
    rng = random.Random(f"{seed}-{number}")
    rng.shuffle(order)
    if block_of is None:
        return order
    blocks: dict[str, list[CellState]] = {}
    for state in order:
        blocks.setdefault(block_of(state), []).append(state)
    names = sorted(blocks)
    rng.shuffle(names)
    return [state for name in names for state in blocks[name]]


# -- sentinels ----------------------------------------------------------------------------------


def _sentinel_loop(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def _cpu_times() -> tuple[float, float] | None:
    """(steal, total) jiffies of all CPUs, from /proc/stat; None where there is none."""
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            fields = handle.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    numbers = [float(x) for x in fields[1:9]]
    return (numbers[7] if len(numbers) > 7 else 0.0), sum(numbers)


@dataclass(frozen=True, slots=True)
class Reading:
    at: float  # time.monotonic()
    loop_seconds: float  # best of three of the fixed loop
    load1: float | None
    cpu: tuple[float, float] | None  # (steal, total) jiffies


def _core_helper(cpu: int | None, conn: Any) -> None:
    """A sentinel helper process, pinned to one core: times the loop whenever asked."""
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})
    while conn.recv() is not None:
        best = math.inf
        for _ in range(3):
            start = time.perf_counter()
            _sentinel_loop(SENTINEL_LOOPS)
            best = min(best, time.perf_counter() - start)
        conn.send(best)


class CoreSentinels:
    """One helper process per usable core, timing the fixed loop all at once: a core taken by
    someone else (another tenant, a build) slows one of them even when a single-threaded loop
    would still find a free core."""

    def __init__(self) -> None:
        import multiprocessing

        cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [None]
        context = multiprocessing.get_context("spawn")  # the host has threads: no fork
        self.helpers = []
        for cpu in cpus:
            ours, theirs = context.Pipe()
            process = context.Process(target=_core_helper, args=(cpu, theirs), daemon=True)
            process.start()
            self.helpers.append((process, ours))

    def time(self) -> list[float]:
        for _, conn in self.helpers:
            conn.send(True)
        return [conn.recv() for _, conn in self.helpers]

    def close(self) -> None:
        for process, conn in self.helpers:
            try:
                conn.send(None)
            except OSError:
                pass
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
        self.helpers = []


_CORES: list[CoreSentinels] = []


def start_sentinels() -> None:
    """Start the per-core helpers (once per run); without them the loop runs in this process."""
    if not _CORES:
        _CORES.append(CoreSentinels())


def stop_sentinels() -> None:
    while _CORES:
        _CORES.pop().close()


def read_sentinel() -> Reading:
    """The loop's time: the slowest core's best of three when the helpers run, else this
    process' best of three."""
    if _CORES:
        best = max(_CORES[0].time())
    else:
        best = math.inf
        for _ in range(3):
            start = time.perf_counter()
            _sentinel_loop(SENTINEL_LOOPS)
            best = min(best, time.perf_counter() - start)
    try:
        load1: float | None = os.getloadavg()[0]
    except OSError:
        load1 = None
    return Reading(time.monotonic(), best, load1, _cpu_times())


@contextmanager
def sentinel_monitor() -> Iterator[NoiseMonitor]:
    """The run's monitor, its per-core sentinel helpers running while it is open."""
    start_sentinels()
    try:
        yield NoiseMonitor()
    finally:
        stop_sentinels()


@dataclass
class Window:
    """The workers run between two sentinel readings."""

    index: int
    round: int
    before: Reading
    started: float = field(default_factory=time.time)
    workers: list[tuple[CellState, int]] = field(default_factory=list)


def near(reading: float, speed: float) -> bool:
    """Whether a sentinel reading is within DISTURBED_RATIO of ``speed``, either way."""
    return speed / DISTURBED_RATIO <= reading <= DISTURBED_RATIO * speed


def undisturbed_speed(loops: Sequence[float]) -> float:
    """The machine's undisturbed sentinel time among ``loops`` (seconds): the median of the
    readings within DISTURBED_RATIO of it (:func:`near`), found from the fast end — a fixed point
    reached from the readings' tenth percentile. Other work only ever slows the sentinel, so a run that starts
    in a burst of it does not take the burst for the machine's speed: a median of the readings so
    far did, and then called no window of the run disturbed (4 of 12 runs of one seeded noise,
    results log, session 21). On a machine whose readings scatter less than DISTURBED_RATIO it
    is their median. A lone reading faster than all others by more than that does not start it."""
    ordered = sorted(loops)
    start = int(0.1 * (len(ordered) - 1))
    while start + 1 < len(ordered) and ordered[start + 1] > DISTURBED_RATIO * ordered[start]:
        start += 1  # nothing else within DISTURBED_RATIO of it: an odd fast reading
    speed = ordered[start]
    for _ in ordered:  # a fixed point within a few steps; at most len(loops) of them
        found = statistics.median(x for x in ordered if near(x, speed))
        if found == speed:
            break
        speed = found
    return speed


class NoiseMonitor:
    """Keeps the sentinel readings, judges windows, and gives the run's noise figures.
    ``read``: how a reading is taken (default :func:`read_sentinel`; tests give scripted ones)."""

    def __init__(self, read: Callable[[], Reading] | None = None) -> None:
        self._read = read
        read = self.read
        read()  # warm-up: freshly started helpers run their first loop slower
        first = [read() for _ in range(3)]
        self.loops: list[float] = [r.loop_seconds for r in first]  # every reading since
        self.last = first[-1]
        self.windows: list[dict[str, Any]] = []
        self.redone = 0

    def read(self) -> Reading:
        return (self._read or read_sentinel)()

    @property
    def speed(self) -> float:
        """The machine's undisturbed sentinel time so far (:func:`undisturbed_speed`)."""
        return undisturbed_speed(self.loops)

    def judge(self, window: Window) -> dict[str, Any]:
        """Close ``window``: a new reading, and whether the machine was disturbed during it."""
        after = self.read()
        before = window.before
        slow = max(before.loop_seconds, after.loop_seconds) / self.speed
        steal = None
        if before.cpu and after.cpu and after.cpu[1] > before.cpu[1]:
            steal = (after.cpu[0] - before.cpu[0]) / (after.cpu[1] - before.cpu[1])
        reasons = []
        if slow > DISTURBED_RATIO:
            reasons.append(f"sentinel {slow - 1:+.0%}")
        if steal is not None and steal > STEAL_LIMIT:
            reasons.append(f"CPU steal {steal:.0%}")
        action = None
        if reasons and window.workers:
            # at most a third of the windows so far are redone (the first one always may be)
            redo_ok = self.redone < max(1.0, REDO_SHARE * (len(self.windows) + 1))
            action = "redone" if redo_ok else "flagged"
            self.redone += redo_ok
        self.loops.append(after.loop_seconds)
        record = {
            "index": window.index,
            "round": window.round,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(window.started)),
            "seconds": round(after.at - before.at, 3),
            "sentinel_before_ms": round(before.loop_seconds * 1e3, 3),
            "sentinel_after_ms": round(after.loop_seconds * 1e3, 3),
            "load1": None if after.load1 is None else round(after.load1, 2),
            "steal": None if steal is None else round(steal, 4),
            "workers": len(window.workers),
            "disturbed": bool(reasons),
            "why": ", ".join(reasons) or None,
            "action": action,
        }
        self.windows.append(record)
        self.last = after
        return record

    def summary(self, states: Sequence[CellState] = ()) -> dict[str, Any]:
        """The run's noise: the sentinel's undisturbed speed and spread, the floor derived from it, and
        how much the cells' means drifted within the run (see :func:`drift`)."""
        speed = self.speed  # recorded as sentinel_median_ms: the median of the undisturbed readings
        # a robust 95% band of the sentinel's own noise: 2 x 1.4826 x the median absolute
        # deviation of the undisturbed readings (one odd reading among a dozen windows does not
        # set the floor); every reading counts, whenever it came: the same readings in another
        # order give the same floor
        mad = statistics.median(abs(x / speed - 1.0) for x in self.loops if near(x, speed))
        spread = 2.0 * 1.4826 * mad
        disturbed = [w for w in self.windows if w["disturbed"]]
        found = drift(states)
        return {
            "sentinel_median_ms": round(speed * 1e3, 4),
            "sentinel_spread": round(spread, 4),
            "floor": round(max(MIN_FLOOR, spread), 4),
            "drift": None if found is None else round(found[0], 5),
            "drift_cells": 0 if found is None else found[1],
            "windows": len(self.windows),
            "disturbed_windows": len(disturbed),
            "redone_windows": sum(w["action"] == "redone" for w in disturbed),
            "flagged_windows": sum(w["action"] == "flagged" for w in disturbed),
            "rule": (
                f"disturbed: sentinel > {DISTURBED_RATIO:.2f}x the machine's undisturbed speed "
                f"(the median of the readings within {DISTURBED_RATIO:.2f}x of it, found from "
                f"the fast end) or CPU steal > {STEAL_LIMIT:.0%}; floor: 2 x 1.4826 x the "
                f"median absolute deviation of those readings (a robust 95% band), at least "
                f"{MIN_FLOOR:.1%}; drift: how far a cell's mean moves between the first "
                "and the second half of its processes beyond their own noise (the "
                "variance a comparison with another run adds)"
            ),
        }


def drift(states: Sequence[CellState]) -> tuple[float, int] | None:
    """How much a cell's mean wanders over the run beyond what its processes' scatter says:
    an A/A test inside the run. For each cell with at least 4 kept processes (in the order they
    ran), d = mean(second half) / mean(first half) - 1; process noise alone gives d a variance
    of s² (1/h1 + 1/h2) / mean², s² the processes' variance within the halves (pooled); the
    median of the excess over that, across cells, is the relative variance that two means
    measured at different times differ by beyond their intervals. Returns (its square root,
    the cells it came from), None without such cells."""
    excess = []
    for state in states:
        means = state.means
        if len(means) < 4:
            continue
        half = len(means) // 2
        first, second = statistics.fmean(means[:half]), statistics.fmean(means[half:])
        if first <= 0:
            continue
        d = second / first - 1.0
        rest = len(means) - half
        # the processes' scatter within each half (pooled): a shift between halves is not noise
        within = (
            statistics.variance(means[:half]) * (half - 1) + statistics.variance(means[half:]) * (rest - 1)
        ) / (len(means) - 2)
        noise = within * (1 / half + 1 / rest) / first**2
        excess.append(d * d - noise)
    if not excess:
        return None
    return math.sqrt(max(0.0, statistics.median(excess))), len(excess)
