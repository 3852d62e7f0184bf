"""Verdict cards: per workload x interpreter, who won, by how much, and what to say about it.

Every sentence is chosen by what the numbers show, and a claim of "faster" or "slower" is only
made when the test says the difference is significant (stats.compare_cells: Welch's test on
process means, trimmed where a pool is compared, or a run's pairs); otherwise the card says "tie" and
shows the interval. Functions take the cell table (stats.cell_table) and return values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from gilmatrix.harness.contract import executor_rank
from gilmatrix.reports.formatting import (
    TOO_FEW,
    format_interval,
    format_ms,
    format_ratio,
    format_speedup_interval,
)
from gilmatrix.reports.stats import Comparison, at_tasks, compare_cells, different_machines, machine_of

PARALLEL_GIL_FREE = ("processes", "interpreters")  # executors that never share one GIL


@dataclass(frozen=True, slots=True)
class ExecutorScore:
    """An executor at its best worker count, against sequential."""

    executor: str
    workers: int
    mean: float
    speedup: float | None  # sequential mean / this mean; None without a sequential cell
    efficiency: float | None  # speedup / workers
    vs_sequential: Comparison | None
    parallelism: float | None = None  # CPU / wall: cores kept busy on average
    cpu_class: str = ""  # waiting | serialized | parallel native | parallel bytecode | unknown
    detail: str = ""  # how it ran: the start method of processes, asyncio's mode

    @property
    def label(self) -> str:
        return f"{self.executor} ({self.detail})" if self.detail else self.executor


@dataclass(frozen=True, slots=True)
class FixedCost:
    """startup: what one executor costs to start, over the reference (threads), per workers."""

    executor: str
    reference: str
    workers: int
    mean: float
    extra: float  # seconds more than the reference at the same worker count (negative: less)
    extra_low: float
    extra_high: float
    significant: bool


@dataclass(frozen=True, slots=True)
class Sentence:
    label: str
    text: str


@dataclass(frozen=True, slots=True)
class Card:
    workload: str
    interpreter: str
    kind: str
    tasks: int
    gil: str  # "true" | "false" | "n/a": the GIL at run time
    free_threaded: bool
    winner: ExecutorScore
    tied: tuple[tuple[ExecutorScore, Comparison], ...]  # not significantly slower than winner
    runner_up: tuple[ExecutorScore, Comparison] | None
    threads_vs_sequential: tuple[int, Comparison] | None  # at the largest threads worker count
    scores: tuple[ExecutorScore, ...]
    sentences: tuple[Sentence, ...]
    # startup (pool created inside the timed region): fixed costs, not throughput
    fixed_cost: bool = False
    gil_reenabled_by: str = ""  # the modules whose import turned the GIL back on (a t build)
    fixed_costs: tuple[FixedCost, ...] = ()
    # its cells ran different numbers of tasks (tasks_per_worker): times are per this many
    # tasks (stats.at_tasks), so that worker counts compare as throughput; None: as measured
    per_tasks: int | None = None
    machine: str = ""  # the machine of the cells the card compares
    # cells of this workload and interpreter that ran on another machine: (executor, workers,
    # machine), left out of every comparison of the card (see home_machine)
    apart: tuple[tuple[str, int, str], ...] = ()

    @property
    def is_tie(self) -> bool:
        return bool(self.tied)

    @property
    def headline(self) -> str:
        w = self.winner
        per = "" if self.per_tasks is None else f" per {_tasks_text(self.per_tasks)}"
        best = f"{w.executor} {format_ms(w.mean)}{per} @ {w.workers} worker{'s' * (w.workers != 1)}"
        if self.fixed_cost:
            best = f"{w.executor} {format_ms(w.mean)} to start @ {w.workers}"
        if not self.tied:
            return best
        names = ", ".join(score.executor for score, _ in self.tied)
        return f"tie: {best} ≈ {names}"


def _tasks_text(count: int) -> str:
    return "task" if count == 1 else f"{count} tasks"


def _compare(a: Any, b: Any, floor: float) -> Comparison:
    return compare_cells(a, b, floor)


def _detail(row: Any) -> str:
    """How a cell ran, where the executor's name does not say it."""
    method = str(getattr(row, "start_method", "") or "")
    if method and method not in str(row.executor):
        return method
    return str(getattr(row, "async_mode", "") or "")


def _optional(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def _score(rows: list[Any], sequential: Any | None, floor: float) -> tuple[ExecutorScore, Any]:
    best = min(rows, key=lambda r: r.mean)
    speedup = efficiency = cmp = None
    if sequential is not None:
        speedup = float(sequential.mean / best.mean)
        efficiency = speedup / int(best.workers)
        cmp = _compare(best, sequential, floor)
    score = ExecutorScore(
        str(best.executor),
        int(best.workers),
        float(best.mean),
        speedup,
        efficiency,
        cmp,
        # "unknown": the harness' figure, if any, is not to be read
        parallelism=None
        if getattr(best, "cpu_class", "") == "unknown"
        else _optional(getattr(best, "parallelism", None)),
        cpu_class=str(getattr(best, "cpu_class", "") or ""),
        detail=_detail(best),
    )
    return score, best


def decide(
    cells: pd.DataFrame, descriptions: Mapping[str, str] | None = None, floor: float = 0.0
) -> list[Card]:
    """One card per (workload, interpreter) that has at least one measured cell; a difference
    within the run's noise ``floor`` is a tie."""
    groups: dict[tuple[str, str], list[Any]] = {}
    # plain tuples, not pandas groups: 250 cards cost milliseconds instead of seconds
    for row in cells.itertuples(index=False):
        groups.setdefault((row.workload, row.interpreter), []).append(row)
    return [
        decide_one(rows, (descriptions or {}).get(str(workload)), floor)
        for (workload, _interp), rows in groups.items()
    ]


def same_work(rows: list[Any]) -> tuple[list[Any], int | None]:
    """The rows of one card at equal work: where its cells ran different numbers of tasks
    (tasks_per_worker), each with its times for the fewest tasks any of them ran, at its own
    throughput, and that number; else the rows as measured and None."""
    counts = {int(r.tasks) for r in rows if hasattr(r, "tasks") and not pd.isna(r.tasks)}
    if len(counts) < 2:
        return rows, None
    fewest = min(counts)
    return [at_tasks(r, fewest) for r in rows], fewest


def home_machine(rows: list[Any]) -> str:
    """The machine a card's comparisons are made on, when its cells ran on several (a merge of
    pieces of one workload from different machines): the one with the most cells, on a tie the
    sequential cell's, then the first by name. A card compares only cells of one machine."""
    seq = {machine_of(r) for r in rows if r.executor == "sequential"}
    counts: dict[str, int] = {}
    for row in rows:
        counts[machine_of(row)] = counts.get(machine_of(row), 0) + 1
    return min(counts, key=lambda m: (-counts[m], m not in seq, m))


def decide_one(rows: list[Any], description: str | None = None, floor: float = 0.0) -> Card:
    """The card of one workload on one interpreter, from its cell_table rows; cells of another
    machine than the card's (:func:`home_machine`) are listed apart, never compared."""
    home = home_machine(rows) if len({machine_of(r) for r in rows}) > 1 else machine_of(rows[0])
    apart = tuple(
        (str(r.executor), int(r.workers), machine_of(r))
        for r in sorted(rows, key=lambda r: (executor_rank(r.executor), r.workers))
        if machine_of(r) != home
    )
    rows, per_tasks = same_work([r for r in rows if machine_of(r) == home])
    first = rows[0]
    fixed_cost = first.kind == "startup" or getattr(first, "pool_in_timing", "") == "yes"
    seq_rows = [r for r in rows if r.executor == "sequential"]
    sequential = min(seq_rows, key=lambda r: r.mean) if seq_rows else None
    by_executor: dict[str, list[Any]] = {}
    for row in rows:
        by_executor.setdefault(row.executor, []).append(row)
    scored = [_score(by_executor[name], sequential, floor) for name in sorted(by_executor, key=executor_rank)]
    scores = tuple(score for score, _ in scored)
    # startup: sequential creates no pool, so it would win by doing nothing; pools compete
    contenders = (
        [pair for pair in scored if pair[0].executor != "sequential"]
        if fixed_cost and len(by_executor) > 1
        else scored
    )
    winner, winner_row = min(contenders, key=lambda pair: pair[0].mean)
    others = sorted(
        ((score, _compare(best, winner_row, floor)) for score, best in contenders if score is not winner),
        key=lambda pair: pair[0].mean,
    )
    tied = tuple(pair for pair in others if not pair[1].significant)
    threads = by_executor.get("threads")
    tvs = None
    if threads and sequential is not None and not fixed_cost:
        widest = max(threads, key=lambda r: r.workers)
        tvs = (int(widest.workers), _compare(widest, sequential, floor))
    card = Card(
        workload=str(first.workload),
        interpreter=str(first.interpreter),
        kind=str(first.kind),
        tasks=int(first.tasks) if per_tasks is None else per_tasks,
        gil=str(first.gil),
        free_threaded=bool(first.free_threaded),
        winner=winner,
        tied=tied,
        runner_up=others[0] if others else None,
        threads_vs_sequential=tvs,
        scores=scores,
        sentences=(),
        fixed_cost=fixed_cost,
        fixed_costs=fixed_costs(by_executor, winner.executor, floor) if fixed_cost else (),
        gil_reenabled_by=str(getattr(first, "gil_reenabled_by", "") or ""),
        per_tasks=per_tasks,
        machine=home,
        apart=apart,
    )
    return _with_sentences(card, description)


def fixed_costs(
    by_executor: Mapping[str, list[Any]], cheapest: str, floor: float = 0.0
) -> tuple[FixedCost, ...]:
    """Each pool executor against threads (else the cheapest) at every common worker count."""
    reference = "threads" if "threads" in by_executor else cheapest
    ref_rows = {int(r.workers): r for r in by_executor.get(reference, [])}
    out = []
    for name in sorted(by_executor, key=executor_rank):
        if name in ("sequential", reference):
            continue
        for row in sorted(by_executor[name], key=lambda r: r.workers):
            ref = ref_rows.get(int(row.workers))
            if ref is None:
                continue
            cmp = _compare(row, ref, floor)
            base = float(ref.mean)
            out.append(
                FixedCost(
                    name,
                    reference,
                    int(row.workers),
                    float(row.mean),
                    float(row.mean - ref.mean),
                    (cmp.ratio_low - 1.0) * base,
                    (cmp.ratio_high - 1.0) * base,
                    cmp.significant,
                )
            )
    return tuple(out)


# -- sentences ---------------------------------------------------------------------------------

WHAT = {
    "cpu": "CPU-bound: {tasks} tasks of pure-Python arithmetic; every executor does the same work,"
    " so the question is whether more workers buy throughput on this interpreter.",
    "io": "I/O-bound: {tasks} tasks that each block in a wait, as a network or disk call would;"
    " the question is how well each executor overlaps the waits.",
    "data": "Data-heavy: {tasks} batches of integers handed to the workers and reduced there;"
    " what it costs to ship data to a worker counts as much as the arithmetic.",
    "native": "Native code: {tasks} tasks of hashing in C, which releases the GIL while it"
    " works on a buffer; the question is whether threads then use several cores.",
    "contention": "Shared state: {tasks} tasks updating one shared object; what sharing costs,"
    " and where a free-threaded build stops scaling.",
    "mixed": "Part CPU, part wait: {tasks} tasks each run a Python loop, then block; the waits"
    " overlap on any executor, the loops only where bytecode runs in parallel.",
    "startup": "Fixed cost, not throughput: each timed call creates a pool, runs one trivial"
    " task and shuts the pool down - what a short-lived pool costs.",
}
WAITING_KINDS = ("io", "mixed")


def _gil_off(card: Card) -> bool:
    return card.gil == "false"


def gil_back_text(subject: str, modules: str) -> str:
    """What a free-threaded build whose GIL a user module's import turned back on ran like
    (``subject``: the interpreter, or "interpreter, workload")."""
    return (
        f"{subject}: importing {modules} re-enabled the GIL: threads are serialized. These "
        "are not free-threaded results: the extension does not declare that it runs without "
        "the GIL (PYTHON_GIL=0 forces it off, at your own risk)."
    )


def _gil_back(card: Card) -> list[Sentence]:
    if not (card.free_threaded and card.gil_reenabled_by):
        return []
    return [Sentence("The GIL is back", gil_back_text(card.interpreter, card.gil_reenabled_by))]


def _why(card: Card) -> str:
    w = card.winner
    if card.tied:
        other, cmp = card.tied[0]
        return (
            f"No executor is significantly faster: {other.executor} took "
            f"{format_ratio(cmp.ratio)} the time of {w.executor} ({format_interval(cmp)}), "
            "which the noise of the values does not separate."
        )
    if len(card.scores) == 1:
        if card.apart:
            return (
                f"Only {w.executor} was measured on {card.machine} for this workload on this "
                "interpreter; its other cells ran on another machine (below)."
            )
        return f"Only {w.executor} was measured for this workload on this interpreter."
    if w.executor == "sequential":
        return (
            "Handing tasks to a pool did not pay: each task is too short for the dispatch "
            "cost to be won back by running tasks at the same time."
        )
    if w.executor in ("threads", "asyncio") and card.kind in WAITING_KINDS:
        return (
            "Blocking waits release the GIL, so the waits overlap; threads cost less to hand "
            "work to than processes, which must pickle every task and result."
        )
    if w.executor in ("threads", "asyncio") and card.kind == "native" and not _gil_off(card):
        return (
            "hashlib releases the GIL while it hashes a buffer, so threads run the native "
            "code on several cores at once" + _cores(w) + ", and share the buffers instead "
            "of pickling them to another process."
        )
    if w.executor in PARALLEL_GIL_FREE and card.kind == "native":
        return (
            f"Each of the {w.workers} {w.executor} hashes on its own core{_cores(w)}; "
            "threads could too, as hashlib releases the GIL - compare the cores each kept "
            "busy in the numbers below."
        )
    if w.executor == "threads" and _gil_off(card):
        return (
            "This build runs with the GIL off: threads execute Python bytecode on several "
            "cores at once and share the data instead of pickling it to another process."
        )
    if w.executor == "threads":
        return (
            "Threads won although the GIL lets only one of them run bytecode at a time: the "
            "other executors' dispatch costs more here than their parallelism gains."
        )
    if w.executor in PARALLEL_GIL_FREE and card.kind in ("cpu", "data") and not _gil_off(card):
        what = "process" if w.executor == "processes" else "sub-interpreter"
        return (
            "The GIL lets one thread at a time execute bytecode in an interpreter; each "
            f"{what} has its own interpreter and GIL, so its {w.workers} workers run "
            "bytecode on separate cores at the same time."
        )
    if w.executor in PARALLEL_GIL_FREE and _gil_off(card):
        return (
            f"Even with the GIL off, {w.executor} beat threads here: separate interpreters "
            "avoid the contention free-threaded threads still have on shared objects."
        )
    return f"{w.executor} had the lowest mean time of the executors measured."


def _cores(score: ExecutorScore | None, lead: str = " (measured: ", end: str = ")") -> str:
    """' (measured: 1.93 cores busy)' when the harness measured it, else nothing."""
    if score is None or score.parallelism is None:
        return ""
    return f"{lead}{score.parallelism:.2f} cores busy{end}"


def _surprise(card: Card) -> str | None:
    tvs = card.threads_vs_sequential
    if tvs is not None:
        workers, cmp = tvs
        if card.kind == "native" and not _gil_off(card):
            if cmp.direction == "faster":
                return (
                    f"Even with the GIL, threads run this native code {1 / cmp.ratio:.2f}x "
                    f"faster than sequential at {workers} workers "
                    f"({format_speedup_interval(cmp)}): the GIL is released while hashing."
                )
            threads = next((s for s in card.scores if s.executor == "threads"), None)
            return (
                f"Threads at {workers} workers are {format_ratio(cmp.ratio)} of sequential "
                f"({cmp.direction}, {format_interval(cmp)})"
                f"{_cores(threads, ', keeping ', ' at their best')}: native code that "
                "releases the GIL can scale on threads, but only on cores that are free."
            )
        if card.kind == "contention" and cmp.direction == "slower":
            return (
                f"More threads made it slower: {format_ratio(cmp.ratio)} the sequential time"
                f" at {workers} workers - the workers queue for the same shared object."
            )
        if card.kind in ("cpu", "data") and not _gil_off(card):
            work = "CPU-bound work" if card.kind == "cpu" else "this data-heavy work"
            if cmp.direction == "slower":
                return (
                    f"Threads at {workers} workers take {format_ratio(cmp.ratio)} the "
                    f"sequential time: more threads made {work} slower, not faster."
                )
            if cmp.direction == "tie":
                return (
                    f"Threads at {workers} workers are {format_ratio(cmp.ratio)} of sequential "
                    f"(a tie, {format_interval(cmp)}): under the GIL, threads add no "
                    f"throughput to {work}."
                )
        if card.kind in ("cpu", "data") and _gil_off(card) and cmp.direction == "faster":
            return (
                f"Threads scale on this free-threaded build: {1 / cmp.ratio:.2f}x faster than "
                f"sequential at {workers} workers ({format_speedup_interval(cmp)})."
            )
        if card.kind in WAITING_KINDS and cmp.direction == "faster" and not _gil_off(card):
            return (
                f"Even with the GIL, threads finish waiting work {1 / cmp.ratio:.2f}x faster "
                f"than sequential at {workers} workers ({format_speedup_interval(cmp)}): "
                "a wait does not hold the GIL."
            )
    for score in card.scores:
        vs_seq = score.vs_sequential
        if score.executor == "processes" and vs_seq is not None and vs_seq.direction == "slower":
            return (
                f"Processes are slower than sequential even at their best ({score.workers} "
                f"workers, {format_ratio(vs_seq.ratio)} the time): shipping tasks and results "
                "between processes costs more than the parallel work saves."
            )
    return None


def _takeaway(card: Card) -> str:
    w = card.winner
    if card.tied:
        names = " and ".join([w.executor, *(s.executor for s, _ in card.tied)])
        return (
            f"On time alone the data does not separate {names}: choose by other costs "
            "(memory, start-up, sharing data), or measure with more values."
        )
    if w.executor == "sequential":
        return "At this task size parallelism does not pay: give each task more work first."
    if w.executor in PARALLEL_GIL_FREE and card.kind in ("cpu", "data") and not _gil_off(card):
        return (
            f"For CPU-bound Python on {card.interpreter}, use {w.executor} (or native code "
            "that releases the GIL); threads do not add throughput here."
        )
    if w.executor in ("threads", "asyncio") and card.kind in WAITING_KINDS:
        return "For waiting-heavy work, threads are enough: they overlap the waits at least cost."
    if w.executor in ("threads", "asyncio") and card.kind == "native":
        return (
            "For native code that releases the GIL, threads are enough: they use several "
            "cores without pickling the data."
        )
    if w.executor == "threads" and _gil_off(card):
        return (
            f"On {card.interpreter} with the GIL off, threads are the cheapest way to use "
            "several cores for CPU-bound Python - if the extensions you use support it."
        )
    return f"Here {w.executor} was fastest; measure your own workload before switching executors."


def format_cost(fc: FixedCost, at: str) -> str:
    """'5.41 ms more than threads to start at 1 worker (95% interval ...)'."""
    size = format_ms(abs(fc.extra))
    interval = (
        TOO_FEW
        if not math.isfinite(fc.extra_low) or not math.isfinite(fc.extra_high)
        else f"95% interval {fc.extra_low * 1e3:+.3g} to {fc.extra_high * 1e3:+.3g} ms"
    )
    if not fc.significant:
        return f"the same as {fc.reference}{at} within the noise ({size} apart, {interval})"
    return f"{size} {'more' if fc.extra > 0 else 'less'} than {fc.reference}{at} ({interval})"


def _startup_sentences(card: Card, what: str) -> list[Sentence]:
    w = card.winner
    names = {fc.executor for fc in card.fixed_costs}
    costs = []
    for name in sorted(names, key=executor_rank):
        rows = [fc for fc in card.fixed_costs if fc.executor == name]
        low, high = rows[0], rows[-1]
        text = (
            f"{name} cost{'s' * (not name.endswith('s'))} "
            f"{format_cost(low, f' to start at {low.workers} worker' + 's' * (low.workers != 1))}"
        )
        if high is not low:
            text += f"; {format_cost(high, f' at {high.workers} workers')}"
        costs.append(text + ".")
    why = f"{w.executor} had the lowest start-up time of the pools measured."
    if w.executor == "threads":
        slower = [
            n
            for n in ("processes", "interpreters")
            if any(fc.executor.startswith(n) and fc.extra > 0 for fc in card.fixed_costs)
        ]
        costlier = {
            "processes": "a process must be forked or spawned and import its modules",
            "interpreters": "a sub-interpreter must build its own modules",
        }
        why = (
            "A thread shares its process' interpreter and memory: starting one is little "
            "more than a system call" + "".join(f"; {costlier[n]}" for n in slower) + "."
        )
    sentences = [
        Sentence("What this tests", what),
        Sentence(("Tie" if card.tied else "Cheapest") + f" to start: {w.executor}", why),
    ]
    if costs:
        sentences.append(Sentence("What starting costs", " ".join(costs)))
    sentences.append(
        Sentence(
            "Takeaway",
            "Pay the start-up once: create a pool when the "
            "program starts and reuse it; a pool per request pays this fixed "
            "cost every time, however fast its workers then run.",
        )
    )
    return sentences


def _apart(card: Card) -> list[Sentence]:
    """The cells of the card's workload and interpreter that ran on another machine."""
    by_machine: dict[str, list[str]] = {}
    for executor, workers, machine in card.apart:
        by_machine.setdefault(machine, []).append(f"{executor} @ {workers}")
    return [
        Sentence(
            "Not compared",
            f"{', '.join(cells)}: {different_machines(card.machine, machine)}; "
            "left out of this card's verdicts.",
        )
        for machine, cells in by_machine.items()
    ]


def _with_sentences(card: Card, description: str | None) -> Card:
    # a matrix' own description is the user's text, not a template (it may hold braces)
    what = description or WHAT.get(
        card.kind, "{tasks} tasks of the '" + card.workload + "' workload, run through each executor."
    ).format(tasks=card.tasks)
    if card.per_tasks is not None:
        per = "task (a cell's time / its tasks)"
        if card.per_tasks != 1:
            per = f"{card.per_tasks} tasks (a cell's time / its tasks x {card.per_tasks})"
        what += (
            " Each worker gets the same work here (a cell's tasks grow with its workers), so "
            f"executors and worker counts are compared by throughput: times are per {per}."
        )
    if card.fixed_cost:
        return replace(card, sentences=tuple([*_startup_sentences(card, what), *_apart(card)]))
    sentences = [
        *_gil_back(card),
        Sentence("What this tests", what),
        Sentence("Why " + ("no winner" if card.tied else f"{card.winner.executor} won"), _why(card)),
    ]
    surprise = _surprise(card)
    if surprise:
        sentences.append(Sentence("The surprise", surprise))
    sentences.append(Sentence("Takeaway", _takeaway(card)))
    return replace(card, sentences=tuple([*sentences, *_apart(card)]))
