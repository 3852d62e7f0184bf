"""Replicates: the same cells run on K runners of one CI label (a merged CI run's
``replicates/<r>/``), and whether the report's verdicts hold on each of them.

Every comparison family of the report is made on each replicate apart, from that replicate's own
cells and noise floor — the verdict cards (the fastest executor, each execution model against
sequential), version over version, free-threaded against default, ftscaling's scaling — and each
verdict is then read across the replicates: it *holds* when every replicate made the same one,
*differs* when two replicates made different ones. How far the cells themselves moved between
the runners is :func:`stats.pool_baselines`' run-to-run component over the replicates' cell
tables, the machinery that measures it between baseline runs.

Data in, values out: no I/O (render.py loads the runs), no wording (page.py says it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from gilmatrix.reports.compare import free_threading, ft_scaling_table, version_changes
from gilmatrix.reports.stats import NOT_COMPARED, pool_baselines
from gilmatrix.reports.verdicts import decide

# the comparison families, in the order the page lists them
WINNER = "fastest executor"
VS_SEQUENTIAL = "vs sequential"
VERSIONS = "version over version"
FREE_THREADED = "free-threaded vs default"
SCALING = "ftscaling scaling"
FAMILIES = (WINNER, VS_SEQUENTIAL, VERSIONS, FREE_THREADED, SCALING)
CARD_FAMILIES = (WINNER, VS_SEQUENTIAL)  # the verdicts a workload's card shows

HOLDS, DIFFERS, SOME = "holds", "differs", "some"  # SOME: made on some replicates only, alike


@dataclass(frozen=True, slots=True)
class Reading:
    """One replicate's verdict on one comparison: "" when the replicate has no such comparison
    (a cell without a result there), NOT_COMPARED when its two cells ran on different machines."""

    verdict: str
    ratio: float | None = None  # the comparison's time ratio (scaling: T1 / TN), when it has one
    machine: str = ""  # the machine its cells ran on ("A vs B" when not compared)
    detail: str = ""  # what else tells the reading apart (the worker count of a best cell)

    @property
    def made(self) -> bool:
        return bool(self.verdict) and self.verdict != NOT_COMPARED


@dataclass(frozen=True, slots=True)
class ReplicatedVerdict:
    """One comparison, read on every replicate."""

    family: str
    interpreter: str
    workload: str
    subject: str  # what is compared, e.g. "threads vs sequential" or "3.14 vs 3.13: crunch/threads/2"
    readings: tuple[Reading, ...]  # one per replicate, in replicate order

    @property
    def outcome(self) -> str:
        """HOLDS: the same verdict on every replicate; DIFFERS: two replicates made different
        ones; SOME: made on only some replicates, and alike there."""
        made = {r.verdict for r in self.readings if r.made}
        if len(made) > 1:
            return DIFFERS
        return HOLDS if all(r.made for r in self.readings) else SOME

    @property
    def agreeing(self) -> int:
        """On how many replicates the most frequent verdict was made."""
        counts: dict[str, int] = {}
        for r in self.readings:
            if r.made:
                counts[r.verdict] = counts.get(r.verdict, 0) + 1
        return max(counts.values(), default=0)


@dataclass(frozen=True, slots=True)
class Replicate:
    number: int  # 1: the run the page shows
    run_id: str
    machines: tuple[str, ...]  # where its cells ran, by name


@dataclass(frozen=True, slots=True)
class Movement:
    """How far cells moved between the replicates: per group of cells (workload, execution
    model, interpreter), the sd of a cell's mean between runs beyond its interval
    (stats.pool_baselines: the shift the group shares, and each cell's own), relative."""

    groups: int
    moved: int  # groups with any movement
    median: float
    largest: float
    worst: tuple[str, str, str]  # (workload, executor, interpreter) that moved the most


@dataclass(frozen=True, slots=True)
class ReplicateAnalysis:
    count: int  # K, as the run says
    replicates: tuple[Replicate, ...]  # the replicates read (1 and those whose folder loaded)
    verdicts: tuple[ReplicatedVerdict, ...]  # those made on at least one replicate
    movement: Movement | None  # None with fewer than two replicates read
    problems: tuple[str, ...] = ()
    # per workload, per replicate read: the machines its cells ran on
    workload_machines: Mapping[str, tuple[tuple[str, ...], ...]] | None = None

    def outcomes(self, family: str | None = None) -> dict[str, int]:
        out = {HOLDS: 0, DIFFERS: 0, SOME: 0}
        for v in self.verdicts:
            if family is None or v.family == family:
                out[v.outcome] += 1
        return out

    def of_card(self, workload: str, interpreter: str) -> list[ReplicatedVerdict]:
        return [
            v
            for v in self.verdicts
            if v.family in CARD_FAMILIES and (v.workload, v.interpreter) == (workload, interpreter)
        ]


@dataclass(frozen=True, slots=True)
class ReplicateCells:
    """One replicate as the analysis takes it: its cell table (stats.cell_table) and floor."""

    number: int
    run_id: str
    cells: pd.DataFrame
    floor: float = 0.0


Key = tuple[str, str, str, str]  # family, interpreter, workload, subject


def readings(cells: pd.DataFrame, floor: float, scaling_workloads: Iterable[str] = ()) -> dict[Key, Reading]:
    """Every verdict the report makes on one run's cells, by what it compares."""
    out: dict[Key, Reading] = {}
    if cells.empty:
        return out
    for card in decide(cells, None, floor):
        interp, workload = card.interpreter, card.workload
        if card.tied:
            verdict = "tie: " + ", ".join(sorted([card.winner.executor, *(s.executor for s, _ in card.tied)]))
        else:
            verdict = card.winner.executor
        ratio = card.runner_up[1].ratio if card.runner_up else None  # runner-up / winner
        detail = f"{card.winner.executor} @ {card.winner.workers}"
        out[(WINNER, interp, workload, "")] = Reading(verdict, ratio, card.machine, detail)
        if card.fixed_cost:
            continue  # start-up cost: sequential starts no pool; the card compares pools
        for score in card.scores:
            cmp = score.vs_sequential
            if score.executor == "sequential" or cmp is None:
                continue
            key = (VS_SEQUENTIAL, interp, workload, f"{score.executor} vs sequential")
            out[key] = Reading(cmp.direction, cmp.ratio, card.machine, f"@ {score.workers}")
        for executor, _workers, machine in card.apart:
            key = (VS_SEQUENTIAL, interp, workload, f"{executor} vs sequential")
            out.setdefault(key, Reading(NOT_COMPARED, None, f"{card.machine} vs {machine}"))
    for r in version_changes(cells, floor).itertuples(index=False):
        compared = bool(getattr(r, "compared", True))
        machine = str(getattr(r, "machine", "") or "")
        old_machine = str(getattr(r, "machine_old", "") or "")
        key = (VERSIONS, str(r.interpreter), str(r.workload), f"{r.interpreter} vs {r.previous}: {r.cell}")
        out[key] = Reading(
            str(r.change) if compared else NOT_COMPARED,
            float(r.ratio) if compared else None,
            machine if compared else f"{old_machine} vs {machine}",
        )
    for r in free_threading(cells, floor).itertuples(index=False):
        key = (FREE_THREADED, str(r.free_threaded), str(r.workload), f"{r.free_threaded} vs {r.default}")
        if not r.compared:
            out[key] = Reading(NOT_COMPARED, None, f"{r.machine_default} vs {r.machine_ft}")
            continue
        verdict = "tie" if not r.significant else ("slower" if r.overhead > 0 else "faster")
        out[key] = Reading(verdict, 1.0 + float(r.overhead), str(r.machine_ft))
    wanted = set(scaling_workloads)
    if wanted:
        for r in ft_scaling_table(cells, wanted).itertuples(index=False):
            key = (SCALING, str(r.interpreter), str(r.workload), f"threads @ {r.workers} vs @ 1")
            if r.verdict == NOT_COMPARED:
                out[key] = Reading(NOT_COMPARED, None, f"{r.machine_one} vs {r.machine}")
            else:
                out[key] = Reading(str(r.verdict), float(r.scaling), str(r.machine))
    return out


def movement(pooled: pd.DataFrame) -> Movement | None:
    """The run-to-run component of pooled runs (stats.pool_baselines), summarised over its
    groups: the estimates (shift + own), not a test's figure, which keeps the shift's noise."""
    groups = pooled.drop_duplicates(["interpreter", "workload", "executor"])
    if groups.empty:
        return None
    sd = np.sqrt((groups["shift"] + groups["own"]).to_numpy(float))
    worst = groups.iloc[int(np.argmax(sd))]
    return Movement(
        groups=len(groups),
        moved=int((sd > 0).sum()),
        median=float(np.median(sd)),
        largest=float(sd.max()),
        worst=(str(worst.workload), str(worst.executor), str(worst.interpreter)),
    )


def _machines(cells: pd.DataFrame) -> tuple[str, ...]:
    if "machine" not in cells.columns:
        return ()
    return tuple(sorted({str(m) for m in cells["machine"]}))


def analyse(
    replicates: Sequence[ReplicateCells],
    count: int,
    *,
    scaling_workloads: Iterable[str] = (),
    problems: Sequence[str] = (),
) -> ReplicateAnalysis:
    """Every verdict on every replicate (replicate 1 first: the run the page shows), read across
    them; and how far the cells moved between them (with two or more)."""
    wanted = tuple(scaling_workloads)
    per = [readings(r.cells, r.floor, wanted) for r in replicates]
    keys: dict[Key, None] = {}
    for found in per:
        keys.update(dict.fromkeys(found))
    order = {family: n for n, family in enumerate(FAMILIES)}
    verdicts = []
    for key in sorted(keys, key=lambda k: order[k[0]]):  # stable: each family in the order found
        row = tuple(found.get(key, Reading("")) for found in per)
        if any(r.made for r in row):
            family, interp, workload, subject = key
            verdicts.append(ReplicatedVerdict(family, interp, workload, subject, row))
    tables = [r.cells for r in replicates if not r.cells.empty]
    moved = movement(pool_baselines(tables)) if len(tables) >= 2 else None
    workloads: dict[str, list[tuple[str, ...]]] = {}
    for r in replicates:
        for workload in dict.fromkeys(r.cells["workload"]) if not r.cells.empty else ():
            workloads.setdefault(str(workload), [])
    for workload, lines in workloads.items():
        for r in replicates:
            part = r.cells[r.cells["workload"] == workload] if not r.cells.empty else r.cells
            lines.append(_machines(part))
    return ReplicateAnalysis(
        count=count,
        replicates=tuple(Replicate(r.number, r.run_id, _machines(r.cells)) for r in replicates),
        verdicts=tuple(verdicts),
        movement=moved,
        problems=tuple(problems),
        workload_machines={w: tuple(lines) for w, lines in workloads.items()},
    )
