"""Stage 2 of the report, analysis: a loaded run (reports.results) and its baselines turned into
every judgement the page shows — the cell table, the verdict cards, the version changes, the
changes against baseline runs (one, or several pooled: the run-to-run component) and the
verdicts of each replicate. Pure: no files written (render.py does that)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from gilmatrix.confidence import within_run_floor
from gilmatrix.errors import UserError
from gilmatrix.reports.compare import (
    FTSCALING,
    baseline_changes,
    replicated_changes,
    version_changes,
)
from gilmatrix.reports.replicates import (
    Replicate,
    ReplicateAnalysis,
    ReplicateCells,
    analyse,
    movement,
)
from gilmatrix.reports.results import (
    RunResults,
    baseline_drift,
    baseline_floor,
    load_run,
    noise_floor,
    replicate_runs,
    scaling_workloads,
)
from gilmatrix.reports.stats import cell_table, pool_baselines
from gilmatrix.reports.verdicts import Card, decide

ADVISED_BASELINES = 4  # measured: 2% of unchanged cells called changes with 4, 6% with 2


@dataclass(frozen=True)
class RunAnalysis:
    """Everything the report judged of one run."""

    results: RunResults
    cells: pd.DataFrame = field(compare=False)  # the cell table (stats.cell_table)
    cards: list[Card]
    versions: pd.DataFrame | None = field(compare=False)  # each release against the previous
    base_runs: list[RunResults]
    base_changes: pd.DataFrame | None = field(compare=False)  # this run against its baselines
    base_how: str  # how the baseline comparison was made, in words
    replicates: ReplicateAnalysis | None


def analyse_run(results: RunResults, base_runs: Sequence[RunResults] = ()) -> RunAnalysis:
    """Judge a loaded run, against ``base_runs`` if any."""
    cells = cell_table(results.frame)
    if cells.empty:
        cells = cells.astype({"workers": "int64", "n": "int64", "tasks": "int64", "processes": "int64"})
    floor = within_run_floor(results.facts.floor)  # inside one run: 1%, not the band
    cards = decide(cells, _descriptions(results.facts.workloads), floor) if len(cells) else []
    versions = version_changes(cells, floor) if len(cells) else None
    base_changes, how = None, ""
    if base_runs and len(cells):
        base_changes, how = compare_with_baselines(results, cells, base_runs)
    replicates = replicate_analysis(results, cells) if len(cells) else None
    return RunAnalysis(results, cells, cards, versions, list(base_runs), base_changes, how, replicates)


def run_to_run_summary(pooled: pd.DataFrame) -> str:
    """The run-to-run component the baseline runs showed, in words: its median and largest sd
    over the groups of cells (the largest named), and where there was none."""
    m = movement(pooled)
    if m is None:
        return "no cell was in every baseline run"
    workload, executor, interp = m.worst
    return (
        f"{m.moved} of {m.groups} groups moved, median ±{m.median:.1%}, most "
        f"{workload} under {executor} on {interp} ±{m.largest:.1%}"
    )


def compare_with_baselines(
    results: Any, cells: pd.DataFrame, base_runs: Sequence[Any]
) -> tuple[pd.DataFrame, str]:
    """This run's cells against one baseline run, or against two or more (replicates of one
    baseline) pooled, whose differences measure the machine's run-to-run component; and a
    sentence saying which, for the report."""
    floor = max(baseline_floor(results.manifest, b.manifest) for b in base_runs)
    if len(base_runs) == 1:
        (base,) = base_runs
        changes = baseline_changes(
            cells, cell_table(base.frame), floor, baseline_drift(results.manifest, base.manifest)
        )
        how = (
            "One baseline run: how far this machine moves a cell's mean from one run to the next "
            "is not known, and no single run can measure it (on a shared or virtual machine it "
            "can exceed a cell's interval). Changes are called against the intervals, each "
            f"cell's drift within its runs and a floor of {floor:.1%}; give the baseline "
            "twice (--baseline A --baseline A2, the same cells run again unchanged) and the "
            "report measures that run-to-run component and widens every test by it."
        )
        return changes, how
    pooled = pool_baselines([cell_table(b.frame) for b in base_runs])
    changes = replicated_changes(cells, pooled, floor)
    how = (
        f"{len(base_runs)} baseline runs, pooled: their cells' differences measured this "
        f"machine's run-to-run component (sd of a cell's mean between runs, beyond its "
        f"interval), per workload, execution model and interpreter, in two parts: a shift "
        f"the cells of a group share in a run, and each cell's own; {run_to_run_summary(pooled)}. "
        f"Every test adds it, for this run and for the baseline's mean, and a change must exceed "
        f"the floor of {floor:.1%}."
    )
    if len(base_runs) < ADVISED_BASELINES:
        how += (
            f" A shift common to a group is one draw per run, so {len(base_runs)} runs measure it "
            f"with {len(base_runs) - 1} degree{'s' if len(base_runs) > 2 else ''} of freedom: "
            f"when they happen to agree, several cells of a group can be called changed together; "
            f"{ADVISED_BASELINES} or more baseline runs make that rare."
        )
    return changes, how


def replicate_analysis(results: RunResults, cells: pd.DataFrame) -> ReplicateAnalysis | None:
    """The run's replicates (a merged CI run's ``replicates/<r>/``), each loaded and read, and
    every verdict made on each (reports/replicates.py); None for a run that names none. A
    replicate folder that cannot be read is a problem the page lists, not a failed report."""
    info = replicate_runs(results)
    if info is None:
        return None
    one = ReplicateCells(1, results.run_id, cells, within_run_floor(noise_floor(results.manifest)))
    if info.count < 2:
        machines = tuple(sorted({str(m) for m in cells["machine"]} - {""})) if "machine" in cells else ()
        only = (Replicate(1, results.run_id, machines),)
        return ReplicateAnalysis(info.count, only, (), None, info.problems)
    replicates, problems = [one], list(info.problems)
    for number, path in info.runs:
        try:
            run = load_run(path)
        except UserError as exc:
            problems.append(f"replicate {number}: {exc}")
            continue
        table = cell_table(run.frame)
        if table.empty:
            problems.append(f"replicate {number}: no cell has a result")
            continue
        replicates.append(
            ReplicateCells(number, run.run_id, table, within_run_floor(noise_floor(run.manifest)))
        )
    return analyse(
        replicates,
        info.count,
        scaling_workloads=scaling_workloads(results.facts, FTSCALING),
        problems=problems,
    )


def _descriptions(workloads: Mapping[str, Any]) -> dict[str, str]:
    """Workload descriptions, if the runner recorded them (the manifest's 'workloads' entry)."""
    return {
        str(k): str(v.get("description"))
        for k, v in workloads.items()
        if isinstance(v, Mapping) and v.get("description")
    }
