"""Verdict cards: per workload x interpreter, who won, by how much, and what to say about it.

Every sentence is chosen by what the numbers show, and a claim of "faster" or "slower" is only
made when Welch's test says the difference is significant; otherwise the card says "tie" and
shows the interval. Functions take the cell table (stats.cell_table) and return values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from reports.results import executor_rank
from reports.stats import Comparison, welch_from_stats

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

    @property
    def is_tie(self) -> bool:
        return bool(self.tied)

    @property
    def headline(self) -> str:
        w = self.winner
        best = f"{w.executor} {format_ms(w.mean)} @ {w.workers} worker{'s' * (w.workers != 1)}"
        if not self.tied:
            return best
        names = ", ".join(score.executor for score, _ in self.tied)
        return f"tie: {best} ≈ {names}"


def format_ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.3g} ms" if ms < 100 else f"{ms:.0f} ms"


def format_ratio(value: float) -> str:
    return f"{value:.2f}x"


def format_interval(cmp: Comparison) -> str:
    if cmp.n_a < 2 or cmp.n_b < 2:
        return "too few values for an interval"
    return f"95% interval {cmp.ratio_low:.2f}-{cmp.ratio_high:.2f}x"


def format_speedup_interval(cmp: Comparison) -> str:
    """The interval of a time ratio, turned into one of speedup (1 / ratio)."""
    if cmp.n_a < 2 or cmp.n_b < 2:
        return "too few values for an interval"
    high = f"{1 / cmp.ratio_low:.2f}" if cmp.ratio_low > 0 else "inf"
    return f"95% interval {1 / cmp.ratio_high:.2f}-{high}x"


def _compare(a: Any, b: Any) -> Comparison:
    return welch_from_stats(a.mean, a.stdev, a.n, b.mean, b.stdev, b.n)


def _score(rows: list[Any], sequential: Any | None) -> tuple[ExecutorScore, Any]:
    best = min(rows, key=lambda r: r.mean)
    speedup = efficiency = cmp = None
    if sequential is not None:
        speedup = float(sequential.mean / best.mean)
        efficiency = speedup / int(best.workers)
        cmp = _compare(best, sequential)
    score = ExecutorScore(str(best.executor), int(best.workers), float(best.mean),
                          speedup, efficiency, cmp)
    return score, best


def decide(cells: pd.DataFrame, descriptions: Mapping[str, str] | None = None) -> list[Card]:
    """One card per (workload, interpreter) that has at least one measured cell."""
    groups: dict[tuple[str, str], list[Any]] = {}
    # plain tuples, not pandas groups: 250 cards cost milliseconds instead of seconds
    for row in cells.itertuples(index=False):
        groups.setdefault((row.workload, row.interpreter), []).append(row)
    return [decide_one(rows, (descriptions or {}).get(str(workload)))
            for (workload, _interp), rows in groups.items()]


def decide_one(rows: list[Any], description: str | None = None) -> Card:
    """The card of one workload on one interpreter, from its cell_table rows."""
    first = rows[0]
    seq_rows = [r for r in rows if r.executor == "sequential"]
    sequential = min(seq_rows, key=lambda r: r.mean) if seq_rows else None
    by_executor: dict[str, list[Any]] = {}
    for row in rows:
        by_executor.setdefault(row.executor, []).append(row)
    scored = [_score(by_executor[name], sequential)
              for name in sorted(by_executor, key=executor_rank)]
    scores = tuple(score for score, _ in scored)
    winner, winner_row = min(scored, key=lambda pair: pair[0].mean)
    others = sorted(((score, _compare(best, winner_row)) for score, best in scored
                     if score is not winner), key=lambda pair: pair[0].mean)
    tied = tuple(pair for pair in others if not pair[1].significant)
    threads = by_executor.get("threads")
    tvs = None
    if threads and sequential is not None:
        widest = max(threads, key=lambda r: r.workers)
        tvs = (int(widest.workers), _compare(widest, sequential))
    card = Card(
        workload=str(first.workload), interpreter=str(first.interpreter),
        kind=str(first.kind), tasks=int(first.tasks), gil=str(first.gil),
        free_threaded=bool(first.free_threaded), winner=winner, tied=tied,
        runner_up=others[0] if others else None, threads_vs_sequential=tvs, scores=scores,
        sentences=(),
    )
    return _with_sentences(card, description)


# -- sentences ---------------------------------------------------------------------------------

WHAT = {
    "cpu": "CPU-bound: {tasks} tasks of pure-Python arithmetic; every executor does the same work,"
           " so the question is whether more workers buy throughput on this interpreter.",
    "io": "I/O-bound: {tasks} tasks that each block in a wait, as a network or disk call would;"
          " the question is how well each executor overlaps the waits.",
    "data": "Data-heavy: {tasks} batches of integers handed to the workers and reduced there;"
            " what it costs to ship data to a worker counts as much as the arithmetic.",
}


def _gil_off(card: Card) -> bool:
    return card.gil == "false"


def _why(card: Card) -> str:
    w = card.winner
    if card.tied:
        other, cmp = card.tied[0]
        return (f"No executor is significantly faster: {other.executor} took "
                f"{format_ratio(cmp.ratio)} the time of {w.executor} ({format_interval(cmp)}), "
                "which the noise of the values does not separate.")
    if len(card.scores) == 1:
        return f"Only {w.executor} was measured for this workload on this interpreter."
    if w.executor == "sequential":
        return ("Handing tasks to a pool did not pay: each task is too short for the dispatch "
                "cost to be won back by running tasks at the same time.")
    if w.executor in ("threads", "asyncio") and card.kind == "io":
        return ("Blocking waits release the GIL, so the waits overlap; threads cost less to hand "
                "work to than processes, which must pickle every task and result.")
    if w.executor == "threads" and _gil_off(card):
        return ("This build runs with the GIL off: threads execute Python bytecode on several "
                "cores at once and share the data instead of pickling it to another process.")
    if w.executor == "threads":
        return ("Threads won although the GIL lets only one of them run bytecode at a time: the "
                "other executors' dispatch costs more here than their parallelism gains.")
    if w.executor in PARALLEL_GIL_FREE and card.kind in ("cpu", "data") and not _gil_off(card):
        what = "process" if w.executor == "processes" else "sub-interpreter"
        return ("The GIL lets one thread at a time execute bytecode in an interpreter; each "
                f"{what} has its own interpreter and GIL, so its {w.workers} workers run "
                "bytecode on separate cores at the same time.")
    if w.executor in PARALLEL_GIL_FREE and _gil_off(card):
        return (f"Even with the GIL off, {w.executor} beat threads here: separate interpreters "
                "avoid the contention free-threaded threads still have on shared objects.")
    return f"{w.executor} had the lowest mean time of the executors measured."


def _surprise(card: Card) -> str | None:
    tvs = card.threads_vs_sequential
    if tvs is not None:
        workers, cmp = tvs
        if card.kind in ("cpu", "data") and not _gil_off(card):
            work = "CPU-bound work" if card.kind == "cpu" else "this data-heavy work"
            if cmp.direction == "slower":
                return (f"Threads at {workers} workers take {format_ratio(cmp.ratio)} the "
                        f"sequential time: more threads made {work} slower, not faster.")
            if cmp.direction == "tie":
                return (f"Threads at {workers} workers are {format_ratio(cmp.ratio)} of sequential "
                        f"(a tie, {format_interval(cmp)}): under the GIL, threads add no "
                        f"throughput to {work}.")
        if card.kind in ("cpu", "data") and _gil_off(card) and cmp.direction == "faster":
            return (f"Threads scale on this free-threaded build: {1 / cmp.ratio:.2f}x faster than "
                    f"sequential at {workers} workers ({format_speedup_interval(cmp)}).")
        if card.kind == "io" and cmp.direction == "faster" and not _gil_off(card):
            return (f"Even with the GIL, threads finish waiting work {1 / cmp.ratio:.2f}x faster "
                    f"than sequential at {workers} workers ({format_speedup_interval(cmp)}): "
                    "a wait does not hold the GIL.")
    for score in card.scores:
        cmp = score.vs_sequential
        if score.executor == "processes" and cmp is not None and cmp.direction == "slower":
            return (f"Processes are slower than sequential even at their best ({score.workers} "
                    f"workers, {format_ratio(cmp.ratio)} the time): shipping tasks and results "
                    "between processes costs more than the parallel work saves.")
    return None


def _takeaway(card: Card) -> str:
    w = card.winner
    if card.tied:
        names = " and ".join([w.executor, *(s.executor for s, _ in card.tied)])
        return (f"On time alone the data does not separate {names}: choose by other costs "
                "(memory, start-up, sharing data), or measure with more values.")
    if w.executor == "sequential":
        return "At this task size parallelism does not pay: give each task more work first."
    if w.executor in PARALLEL_GIL_FREE and card.kind in ("cpu", "data") and not _gil_off(card):
        return (f"For CPU-bound Python on {card.interpreter}, use {w.executor} (or native code "
                "that releases the GIL); threads do not add throughput here.")
    if w.executor in ("threads", "asyncio") and card.kind == "io":
        return "For waiting-heavy work, threads are enough: they overlap the waits at least cost."
    if w.executor == "threads" and _gil_off(card):
        return (f"On {card.interpreter} with the GIL off, threads are the cheapest way to use "
                "several cores for CPU-bound Python - if the extensions you use support it.")
    return f"Here {w.executor} was fastest; measure your own workload before switching executors."


def _with_sentences(card: Card, description: str | None) -> Card:
    what = description or WHAT.get(card.kind, "{tasks} tasks of the '" + card.workload +
                                    "' workload, run through each executor.")
    sentences = [Sentence("What this tests", what.format(tasks=card.tasks)),
                 Sentence("Why " + ("no winner" if card.tied else f"{card.winner.executor} won"),
                          _why(card))]
    surprise = _surprise(card)
    if surprise:
        sentences.append(Sentence("The surprise", surprise))
    sentences.append(Sentence("Takeaway", _takeaway(card)))
    return replace(card, sentences=tuple(sentences))
