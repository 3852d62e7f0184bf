"""The page's content as plain values: what the template shows, already ordered and formatted.

No I/O here; render.py reads the files and writes the outputs. The template escapes everything
it is given (jinja2 autoescape), so labels from matrix.yaml never become markup.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from gilmatrix.confidence import ALPHA, MIN_FLOOR, t_quantile, within_run_floor
from gilmatrix.harness.contract import CellId, Status, Stopped, executor_rank, interpreter_key
from gilmatrix.reports.charts import ChartSet, ChartSpec, workload_slug
from gilmatrix.reports.compare import (
    FTSCALING,
    PEP779_MEMORY,
    PEP779_TIME,
    PUBLISHED_BENCH_RUNNER,
    free_threading,
    ft_scaling_table,
    order_cells,
    scaling_changes,
    with_speedup,
)
from gilmatrix.reports.power import CHANGE, MOST, POWER, RunReach, run_reach
from gilmatrix.reports.replicates import (
    DIFFERS,
    FAMILIES,
    HOLDS,
    SOME,
    WINNER,
    Reading,
    ReplicateAnalysis,
    ReplicatedVerdict,
)
from gilmatrix.reports.results import (
    CellProblem,
    Interpreter,
    RunFacts,
    RunResults,
    scaling_workloads,
)
from gilmatrix.reports.stats import NOT_COMPARED, different_machines
from gilmatrix.reports.verdicts import Card, gil_back_text

MAX_LISTED = 200  # rows of long lists (unstable cells, changes) shown before "and N more"


@dataclass(frozen=True, slots=True)
class WorkloadSection:
    name: str
    slug: str
    kind: str
    params: str
    cards: tuple[Card, ...]
    charts: tuple[ChartSpec, ...]
    rows: tuple[tuple[str, ...], ...]  # the numbers table
    notes: tuple[str, ...] = ()  # how the cells ran, and which were skipped here and why
    machine: str = ""  # where its cells ran: one line (machine_line)
    replicates: Mapping[str, str] = field(default_factory=dict)  # interpreter -> its card's line


@dataclass(frozen=True, slots=True)
class Page:
    title: str
    run: Mapping[str, Any]
    host: tuple[tuple[str, str], ...]
    interpreters: tuple[Mapping[str, Any], ...]
    interpreter_ids: tuple[str, ...]
    executors: tuple[str, ...]
    overview: tuple[tuple[str, tuple[Card | None, ...]], ...]  # workload -> card per interpreter
    workloads: tuple[WorkloadSection, ...]
    version_charts: tuple[ChartSpec, ...]
    ft_rows: tuple[tuple[str, ...], ...]
    change_rows: tuple[tuple[str, ...], ...]
    change_total: int
    baseline: Mapping[str, Any] | None
    problems: tuple[CellProblem, ...]
    problem_groups: tuple[ProblemGroup, ...]  # failed, timed out, missing: per interpreter
    skipped_groups: tuple[SkippedGroup, ...]  # skipped by the plan: per reason
    warnings: tuple[str, ...]
    unstable: tuple[tuple[str, str, str], ...]
    unstable_total: int
    downloads: tuple[tuple[str, str], ...]
    libraries: Mapping[str, str] = field(default_factory=dict)
    measurement: Mapping[str, Any] = field(default_factory=dict)
    scaling: Mapping[str, Any] = field(default_factory=dict)  # ftscaling: see scaling_section
    overheads: tuple[tuple[str, ...], ...] = ()  # free-threaded overheads vs their targets
    machines: tuple[str, ...] = ()  # the machines the run's cells ran on
    not_compared: tuple[tuple[str, ...], ...] = ()  # version pairs of different machines
    replicates: Mapping[str, Any] = field(default_factory=dict)  # see replicates_section

    @property
    def many_machines(self) -> bool:
        """More than one machine: the change tables say which one a change was measured on."""
        return len(self.machines) > 1


TABLE_HEADER = (
    "interpreter",
    "executor",
    "workers",
    "mean (ms)",
    "median (ms)",
    "stdev (ms)",
    "processes × values",
    "95% interval of the mean (ms)",
    "precision",
    "speedup",
    "efficiency",
    "parallel efficiency",
    "CPU (ms)",
    "parallelism",
    "class",
    "peak RSS (MB)",
    "warnings",
)
NONE = "—"  # a figure this run did not record (results from before the harness measured it)


def _ms(seconds: float, missing: str = "") -> str:
    """Milliseconds, unit in the column header: 10,000 rows of " ms" are 30 kB."""
    return f"{seconds * 1e3:.4g}" if pd.notna(seconds) else missing


Rows = tuple[tuple[str, ...], ...]


def budget_outcome(precision: float | None, sampled: Mapping[str, Any] | None) -> str | None:
    """What a cell stopped by a budget has to show for it: ``"missed"`` when its interval is
    wider than the target (or it has none), ``"unconfirmed"`` when its own interval is within
    the target but the stopping rule had not yet accepted it (a cell quieter than its execution
    model's typical scatter needs a few processes more to show it: ``schedule.pooled_precision``);
    None when the cell was not stopped by a budget or had no target."""
    sampled = sampled or {}
    target = sampled.get("target")
    if not target or sampled.get("stopped") not in Stopped.OUT_OF_BUDGET:
        return None
    if precision is None or pd.isna(precision) or float(precision) > float(target):
        return "missed"
    return "unconfirmed"


def precision_text(precision: float, sampled: Mapping[str, Any] | None) -> str:
    """ "±1.3%", and whether the cell met the profile's target or ran out of budget."""
    if pd.isna(precision):
        return "too few processes for an interval"
    text = f"±{precision:.1%}"
    outcome = budget_outcome(precision, sampled)
    if outcome is None:
        return text
    target = float((sampled or {})["target"])  # budget_outcome: there is one
    if outcome == "missed":
        return text + f" (target ±{target:.1%} missed)"
    return text + f" (within ±{target:.1%}, not confirmed before the budget ran out)"


def table_rows(
    cells: pd.DataFrame, sampled: Mapping[tuple[str, str], Mapping[str, Any]] | None = None
) -> Rows:
    speed = with_speedup(cells)
    rows = []
    for r in speed.itertuples(index=False):
        interval = "" if r.processes < 2 else f"{_ms(r.ci_low)}-{_ms(r.ci_high)}"
        per = f"{int(r.processes)} × {r.n / r.processes:.3g}"
        rows.append(
            (
                r.interpreter,
                r.executor,
                str(r.workers),
                _ms(r.mean),
                _ms(r.median),
                _ms(r.stdev),
                per,
                interval,
                precision_text(r.precision, (sampled or {}).get((r.interpreter, r.cell))),
                "" if pd.isna(r.speedup) else f"{r.speedup:.2f}x",
                "" if pd.isna(r.efficiency) else f"{r.efficiency:.0%}",
                "" if pd.isna(r.parallel_efficiency) else f"{r.parallel_efficiency:.0%}",
                _ms(r.cpu_time, NONE),
                NONE if pd.isna(r.parallelism) else f"{r.parallelism:.2f}",
                r.cpu_class or NONE,
                NONE if pd.isna(r.peak_rss) else f"{r.peak_rss / 1e6:.1f}",
                "; ".join(r.warnings),
            )
        )
    return tuple(rows)


def _interp_list(interps: set[str], everyone: Sequence[str]) -> str:
    if set(everyone) <= interps:
        return ""
    return " (" + ", ".join(sorted(interps, key=interpreter_key)) + ")"


def section_notes(
    part: pd.DataFrame, skipped: Sequence[CellProblem], interps: Sequence[str]
) -> tuple[str, ...]:
    """How the cells of one workload ran (start method, asyncio mode, pool in the timing),
    and which of its cells the plan skipped and why - said where the reader misses them."""
    notes = []
    if (part["pool_in_timing"] == "yes").any():
        notes.append(
            "Each timed call creates the pool and shuts it down: times are fixed costs, not throughput."
        )
    ran = part["interpreter"].unique()
    for column, label in (("start_method", "start method"), ("async_mode", "mode")):
        used = part[part[column] != ""]
        for executor in sorted(used["executor"].unique(), key=executor_rank):
            rows = used[used["executor"] == executor]
            kinds = {
                value: set(rows.loc[rows[column] == value, "interpreter"]) for value in rows[column].unique()
            }
            text = ", ".join(f"{value}{_interp_list(where, ran)}" for value, where in kinds.items())
            notes.append(f"{executor}: {label} {text}.")
    reasons: dict[tuple[str, str], set[str]] = {}
    for problem in skipped:
        named = CellId.maybe(problem.cell)
        executor = named.executor if named else "*"
        reasons.setdefault((executor, problem.reason), set()).add(problem.interpreter)
    for (executor, reason), where in sorted(reasons.items(), key=lambda item: executor_rank(item[0][0])):
        notes.append(f"Not run: {executor}{_interp_list(where, interps)} - {reason}.")
    return tuple(notes)


def interpreter_rows(interpreters: Sequence[Interpreter]) -> tuple[Mapping[str, Any], ...]:
    rows = []
    for i in sorted(interpreters, key=lambda i: interpreter_key(i.id)):
        digest = f" ({i.image_id[:19]})" if i.image_id else ""
        where = i.image + digest if i.image else i.executable
        rows.append(
            {
                "id": i.id,
                "status": i.status,
                "reason": i.reason or "",
                "version": i.version,
                "sys_version": i.sys_version,
                "config_args": i.config_args,
                "py_gil_disabled": ""
                if i.py_gil_disabled is None
                else ("yes" if i.py_gil_disabled else "no"),
                "gil_enabled": i.gil_enabled,
                "where": where,
                "backend": i.backend,
                "build": i.build,
                "load": _load(i.load_before, i.load_after),
                "elapsed": "" if i.elapsed is None else f"{float(i.elapsed):.1f} s",
            }
        )
    return tuple(rows)


def _load(before: Sequence[float] | None, after: Sequence[float] | None) -> str:
    def fmt(v: Sequence[float] | None) -> str:
        return "?" if not v else " / ".join(f"{x:.2f}" for x in v)

    return "" if before is None and after is None else f"{fmt(before)} -> {fmt(after)}"


NOISY_FLOOR = 0.05  # a noise floor above this: the machine was noisy; said first, with what to do


DISTURBED_SHARE = 0.25  # a quarter of the windows disturbed or more: the machine was busy
WIDE_PRECISION = 2.0  # the cells' median interval twice the target or more


def noise_banner(
    floor: float,
    cards: Sequence[Card],
    quiet_floor: float,
    facts: RunFacts | None = None,
    cells: pd.DataFrame | None = None,
    reached: RunReach | None = None,
) -> str | None:
    """When the machine's noise made the verdicts say little: what it did and what to do. Three
    signs, each said when present: a high noise floor (the sentinel's spread in quiet windows: the
    machine's own variation, which widens every interval), many windows disturbed (the floor
    leaves those out, so a machine busy in bursts can have a low floor and still have spoiled most
    processes), and cells whose intervals stayed wide (the run budget spent before they reached
    the target). ``quiet_floor``: the least floor a run can have. ``reached``: what the run
    could find (reports/power.py), said with what to do."""
    ties = sum(card.is_tie for card in cards)
    signs = []
    if floor >= NOISY_FLOOR:
        signs.append(
            f"this run's noise floor was ±{floor:.1%} (a quiet machine's is ±{quiet_floor:.0%}): the "
            "machine's own speed varied that much from one window of worker processes to the next"
        )
    windows = [w for w in (facts.schedule.get("windows") or []) if isinstance(w, Mapping)] if facts else []
    disturbed = [w for w in windows if w.get("disturbed")]
    if windows and len(disturbed) >= DISTURBED_SHARE * len(windows):
        slowest = max((float(w.get("sentinel_after_ms") or 0) for w in disturbed), default=0.0)
        median = float(facts.noise.get("sentinel_median_ms") or 0) if facts else 0.0
        worst = f", the sentinel up to {slowest / median - 1:+.0%}" if median > 0 and slowest > 0 else ""
        signs.append(
            f"{len(disturbed)} of {len(windows)} windows of worker processes ran on a disturbed "
            f"machine{worst} (their processes were measured again while redoing was cheap, then "
            "kept and flagged)"
        )
    target = (facts.schedule.get("sampling") or {}).get("target") if facts else None
    precisions = cells["precision"].dropna() if cells is not None and "precision" in cells else None
    if target and precisions is not None and len(precisions):
        median = float(precisions.median())
        if median >= WIDE_PRECISION * float(target):
            missed = int((precisions > float(target)).sum())
            processes = int(cells["processes"].median()) if cells is not None and "processes" in cells else 0
            signs.append(
                f"the cells' intervals stayed wide: median ±{median:.1%} against the ±{float(target):.0%} "
                f"target, {missed} of {len(precisions)} cells missed it, most with {processes} processes "
                + stopped_by(facts)
            )
    if not signs:
        return None
    quieter = "run on a quieter machine (a self-hosted runner, nothing else running)"
    if reached is not None and reached.kinds and max(r.detectable for r in reached.kinds) <= CHANGE:
        # the noise was there, and the run measured enough to see through it
        ties_text = (
            f". {ties} of the {len(cards)} fastest-execution-model verdicts are ties, and yet the "
            f"median comparison of each kind would have found a {CHANGE:.0%} change {POWER:.0%} of "
            "the time: a tie here says the models are within its interval of each other. "
        )
        advice = f"To find smaller changes: {quieter} or use the rigorous profile."
    else:
        ties_text = (
            f". So {ties} of the {len(cards)} fastest-execution-model verdicts are ties: the "
            "intervals are too wide to tell the models apart, not a finding that they perform alike. "
        )
        shards = shards_needed(reached)
        in_shards = f"{shards or 'more'} CI shards (each shard's cells get more of the run budget)"
        if reached is not None and reached.beyond_cap() is not None:
            # more minutes or shards alone end at the profile's cap (reach_advice names the cap
            # that would do); shards too where the run's budget stopped the cells
            remedy = "a profile of your own as above" + (f", in {in_shards}" if shards else "")
        else:
            remedy = f"split the matrix into {in_shards}"
        advice = f"To say more: {quieter}, use the rigorous profile, or {remedy}."
    return (
        "Noisy machine: "
        + "; ".join(signs)
        + ties_text
        + "The floor comes from the run's own sentinel, timed around every window of worker "
        "processes; it speaks of the whole run, not of the load before it. " + reach_advice(reached) + advice
    )


def stopped_by(facts: RunFacts | None) -> str:
    """What stopped most of the cells that stopped short of their target: the run's budget
    (run_minutes) or each cell's own (max_processes, max_seconds)."""
    reasons = [
        entry.get("stopped")
        for entry in (facts.sampled.values() if facts is not None else ())
        if entry.get("stopped") in Stopped.OUT_OF_BUDGET
    ]
    if not reasons:
        return "when their budget ran out"
    if 2 * reasons.count(Stopped.RUN_BUDGET) >= len(reasons):
        return "when the run's budget ran out"
    return "when their own budget ran out (the profile's max_processes or max_seconds), not the run's"


def _processes(n: int) -> str:
    return f"more than {MOST}" if n > MOST else str(n)


def reach_text(reached: RunReach | None) -> str:
    """What a tie in this run rules out (the smallest change its median comparison of each kind
    found 9 times in 10) and what finding a 5% change would take; "" without comparisons."""
    if reached is None or not reached.kinds:
        return ""
    kinds = {"one worker": "of cells of one in-process worker", "pools": "with a pool on either side"}
    found = " or ".join(
        f"{r.detectable:.1%} ({r.comparisons} comparison{'' if r.comparisons == 1 else 's'} "
        f"{kinds[r.kind]}, {r.processes:g} processes a cell)"
        for r in reached.kinds
    )
    needs = " and ".join(_processes(r.needed) for r in reached.kinds)
    minutes = (
        f": about {_minutes(reached.minutes_needed)} minutes of measuring at this run's noise, "
        f"against the {reached.measured_minutes:.1f} it measured"
        if reached.minutes_needed is not None and reached.measured_minutes
        else ""
    )
    return (
        f"A tie here rules out only larger changes: the median comparison would have found, "
        f"{POWER:.0%} of the time, a change of {found}. To find a {CHANGE:.0%} change as often it "
        f"needs {needs} processes a cell{minutes}{cap_text(reached)}"
    )


def cap_text(reached: RunReach) -> str:
    """Said where a kind needs more processes than the profile lets a cell have."""
    most = reached.beyond_cap()
    if most is None:
        return ""
    if reached.fixed:
        return (
            f"; the profile gives every cell {reached.max_processes} processes: a profile of your "
            f"own with precision (docs/matrix.md) or pyperf processes of {_processes(most)}"
        )
    return (
        f"; the profile stops a cell at {reached.max_processes} processes, so more minutes or "
        f"shards alone do not get there: a profile of your own with max_processes of {_processes(most)}"
    )


def _minutes(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def reach_advice(reached: RunReach | None) -> str:
    """The banner's sentence on what the run could find ("" without figures)."""
    if reached is None or not reached.kinds:
        return ""
    widest = max(r.detectable for r in reached.kinds)
    minutes = (
        f"; finding a {CHANGE:.0%} change {POWER:.0%} of the time would take about "
        f"{_minutes(reached.minutes_needed)} minutes of measuring at this noise (this run: "
        f"{_minutes(reached.measured_minutes)})"
        if reached.minutes_needed is not None and reached.measured_minutes
        else ""
    )
    return f"A tie here rules out only changes above about {widest:.0%}{minutes}{cap_text(reached)}. "


def shards_needed(reached: RunReach | None) -> int | None:
    """Shards of this run's size that would measure what finding a 5% change takes (None: not
    known, this run was enough, or its profile has no run budget for shards to widen)."""
    if (
        reached is None
        or not reached.budgeted
        or reached.minutes_needed is None
        or not reached.measured_minutes
    ):
        return None
    shards = math.ceil(reached.minutes_needed / reached.measured_minutes)
    return shards if shards > 1 else None


def environment_warnings(results: RunResults) -> tuple[str, ...]:
    """What makes the numbers less trustworthy, said where the reader sees the numbers."""
    facts, out = results.facts, []
    if facts.synthetic:
        out.append(
            "SYNTHETIC DATA: these numbers come from a toy model written by "
            "devtools.synthetic, not from a measurement."
        )
    if facts.state not in ("complete", "?"):
        out.append(f"The run is {facts.state}: some cells have no result (listed below).")
    out.extend(facts.warnings)  # the runner's own
    cores = facts.host.get("cpu_count")
    busy = []
    for interp in results.interpreters:
        if interp.py_gil_disabled and interp.gil_enabled == "true":
            out.append(
                f"{interp.id}: a free-threaded build that ran with the GIL enabled; its "
                "threads did not run in parallel."
            )
        if cores and interp.load_before and interp.load_before[0] > 0.5 * float(cores):
            busy.append(f"{interp.id} ({interp.load_before[0]:.2f})")
    python_gil = facts.python_gil
    if python_gil is not None:
        out.append(
            f"Every worker process ran with PYTHON_GIL={python_gil} (the profile's python_gil): "
            + (
                "free-threaded builds kept the GIL off even for extensions that do not declare "
                "free-threading support."
                if str(python_gil) == "0"
                else "free-threaded builds ran with the GIL on."
            )
        )
    frame = results.frame
    if len(frame) and "gil_reenabled_by" in frame:
        back = frame[frame["free_threaded"] & (frame["gil_reenabled_by"] != "")]
        for (interp_id, workload), rows in back.groupby(["interpreter", "workload"], sort=True):
            modules = ", ".join(sorted(set(rows["gil_reenabled_by"])))
            out.append(gil_back_text(f"{interp_id}, {workload}", modules))
    copied = [i.id for i in results.interpreters if i.build.startswith("copied prefix")]
    built = [i.id for i in results.interpreters if i.build.startswith("built from")]
    if copied and built:
        out.append(
            f"{', '.join(copied)}: copied install prefixes with their own build flags "
            f"(CONFIG_ARGS below), the others built from source by gilmatrix: comparisons "
            "between the two groups mix build flags with version."
        )
    if busy:
        out.append(
            f"The machine was busy before these interpreters ran (1-minute load on "
            f"{cores} cores): {', '.join(busy)}; their timings may be inflated."
        )
    return tuple(out)


@dataclass(frozen=True, slots=True)
class ProblemGroup:
    """Cells without a result that share interpreter, status and reason: one line, not 21."""

    interpreter: str
    status: str
    reason: str
    cells: tuple[str, ...]
    output_tail: str | None


@dataclass(frozen=True, slots=True)
class SkippedGroup:
    """Cells the plan skipped for one reason, on whichever interpreters."""

    reason: str
    interpreters: tuple[str, ...]
    cells: tuple[str, ...]  # "interpreter cell" when several interpreters share the reason
    executors: tuple[str, ...] = ()
    workloads: tuple[str, ...] = ()


def group_skipped(problems: Sequence[CellProblem]) -> tuple[SkippedGroup, ...]:
    groups: dict[str, list[CellProblem]] = {}
    for p in problems:
        if p.status == Status.SKIPPED:
            groups.setdefault(p.reason, []).append(p)
    out = []
    for reason, ps in groups.items():
        interps = tuple(sorted({p.interpreter for p in ps}, key=interpreter_key))
        cells = tuple(p.cell if len(interps) == 1 else f"{p.interpreter} {p.cell}" for p in ps)
        named = [n for n in (CellId.maybe(p.cell) for p in ps) if n is not None]
        executors = tuple(sorted({n.executor for n in named}, key=executor_rank))
        workloads = tuple(dict.fromkeys(n.workload for n in named))
        out.append(SkippedGroup(reason, interps, cells, executors, workloads))
    return tuple(out)


def group_problems(problems: Sequence[CellProblem]) -> tuple[ProblemGroup, ...]:
    groups: dict[tuple[str, str, str], list[CellProblem]] = {}
    for p in problems:
        if p.status == Status.SKIPPED:
            continue
        groups.setdefault((p.interpreter, p.status, p.reason), []).append(p)
    return tuple(
        ProblemGroup(
            i, s, r, tuple(p.cell for p in ps), next((p.output_tail for p in ps if p.output_tail), None)
        )
        for (i, s, r), ps in groups.items()
    )


def unstable_cells(cells: pd.DataFrame) -> list[tuple[str, str, str]]:
    flagged = cells[cells["warnings"].map(bool)]
    return [(r.interpreter, r.cell, "; ".join(r.warnings)) for r in flagged.itertuples()]


def ft_rows(cells: pd.DataFrame, floor: float = 0.0) -> tuple[tuple[str, ...], ...]:
    ft = free_threading(cells, floor)
    rows = []
    for r in ft.itertuples(index=False):
        if not r.compared:
            rows.append(
                (
                    f"{r.default} vs {r.free_threaded}",
                    r.workload,
                    different_machines(r.machine_default, r.machine_ft),
                    "",
                    "",
                    r.published,
                )
            )
            continue
        sig = "" if r.significant else " (not significant)"
        speed = (
            ""
            if pd.isna(r.threads_speedup_default) or pd.isna(r.threads_speedup_ft)
            else f"{r.threads_speedup_default:.2f}x -> {r.threads_speedup_ft:.2f}x @ {int(r.threads_workers)}"
        )
        rows.append(
            (
                f"{r.default} vs {r.free_threaded}",
                r.workload,
                f"{r.overhead:+.1%}{sig}",
                f"{r.overhead_low:+.1%} .. {r.overhead_high:+.1%}",
                speed,
                r.published,
            )
        )
    return tuple(rows)


def scaling_section(cells: pd.DataFrame, facts: RunFacts) -> dict[str, Any]:
    """ "Where free-threading stops scaling": the ftscaling workloads' scaling on threads, per
    interpreter (free-threaded builds first) at each worker count, and how it changed between
    consecutive free-threaded versions. {} when the run has none of them."""
    workloads = scaling_workloads(facts, FTSCALING)
    table = ft_scaling_table(cells, workloads) if workloads and len(cells) else pd.DataFrame()
    if table.empty:
        return {}
    interps = sorted(set(table["interpreter"]), key=lambda i: (not i.endswith("t"), interpreter_key(i)))
    counts = sorted(set(table["workers"]))
    header = [f"{i} @ {n}" for i in interps for n in counts]
    rows = []
    for workload in dict.fromkeys(table["workload"]):
        line: list[tuple[str, str]] = []
        for interp in interps:
            for n in counts:
                hit = table[
                    (table["workload"] == workload)
                    & (table["interpreter"] == interp)
                    & (table["workers"] == n)
                ]
                if hit.empty:
                    line.append(("", ""))
                    continue
                r = hit.iloc[0]
                if r.verdict == NOT_COMPARED:
                    line.append((different_machines(r.machine_one, r.machine), ""))
                    continue
                line.append((f"{r.scaling:.2f}x ({r.scaling_low:.2f}-{r.scaling_high:.2f})", str(r.verdict)))
        rows.append((workload, tuple(line)))
    physical = facts.host.get("physical_cores")
    notes = []
    if physical and max(counts) > int(physical):
        notes.append(
            f"Worker counts above {physical} exceed this machine's physical cores: threads share "
            "cores there, and scaling stops for that reason too."
        )
    gil_on = sorted(set(table[table["free_threaded"] & (table["gil"] == "true")]["interpreter"]))
    if gil_on:
        notes.append(f"{', '.join(gil_on)}: the GIL was enabled at run time: not free-threaded results.")
    compared = scaling_changes(table)
    changes = [
        f"{c['workload']}: {c['old']} {c['old_scaling']:.2f}x -> {c['new']} {c['new_scaling']:.2f}x "
        f"@ {c['workers']} ({c['change']})"
        for c in compared
        if c["change"] not in ("unchanged", NOT_COMPARED)
    ]
    changes += [
        f"{c['workload']}: {c['old']} -> {c['new']} @ {c['workers']}: "
        + different_machines(c["old_machine"], c["new_machine"])
        for c in compared
        if c["change"] == NOT_COMPARED
    ]
    unchanged = sum(c["change"] == "unchanged" for c in compared)
    verdicts = sum(c["change"] != NOT_COMPARED for c in compared)
    if verdicts:
        changes.append(f"{unchanged} of {verdicts} comparisons unchanged (their intervals overlap)")
    apart = int((table["verdict"] == NOT_COMPARED).sum())
    apart += sum(c["change"] == NOT_COMPARED for c in compared)
    return {"header": header, "rows": rows, "changes": changes, "notes": notes, "apart": apart}


def overhead_rows(cells: pd.DataFrame, floor: float = 0.0) -> tuple[tuple[str, ...], ...]:
    """Per version with both builds: the free-threaded build's single-thread time and peak
    memory over the default build's (median over the workloads both ran, with their range),
    next to PEP 779's targets and bench_runner's published figures."""
    ft = free_threading(cells, floor)
    if ft.empty:
        return ()
    rows = []
    for version, everything in ft.groupby("version", sort=False):
        group = everything[everything["compared"].astype(bool)]
        if group.empty:  # every workload's builds ran on different machines
            apart = everything.iloc[0]
            text = different_machines(apart["machine_default"], apart["machine_ft"])
            targets = f"≤ {PEP779_TIME:.0%}", f"≤ {PEP779_MEMORY:.0%}"
            rows.append((f"{version} vs {version}t", text, targets[0], text, targets[1]))
            continue
        memory = group["memory"].dropna() if "memory" in group else pd.Series(dtype=float)
        time_text = (
            f"{group['overhead'].median():+.1%} (workloads {group['overhead'].min():+.1%} .. "
            f"{group['overhead'].max():+.1%}; {len(group)})"
        )
        memory_text = (
            f"{memory.median():+.1%} ({memory.min():+.1%} .. {memory.max():+.1%})"
            if len(memory)
            else "not recorded"
        )
        rows.append(
            (
                f"{version} vs {version}t",
                time_text,
                f"≤ {PEP779_TIME:.0%}",
                memory_text,
                f"≤ {PEP779_MEMORY:.0%}",
            )
        )
    if rows:
        published = PUBLISHED_BENCH_RUNNER
        rows.append(
            (
                f"published: {published['what']}",
                f"{published['time']:+.0%}",
                f"≤ {PEP779_TIME:.0%}",
                f"{published['memory']:+.0%}",
                f"≤ {PEP779_MEMORY:.0%}",
            )
        )
    return tuple(rows)


def change_rows(
    changes: pd.DataFrame, previous: str = "previous", machine: bool = False
) -> tuple[list[tuple[Any, ...]], int]:
    """Significant changes only, largest first; with ``machine``, the machine both cells ran
    on before the change (a significant change is always of one machine)."""
    if changes is None or changes.empty:
        return [], 0
    sig = changes[changes["significant"].astype(bool)].copy()
    sig["size"] = (sig["ratio"] - 1.0).abs()
    sig = sig.sort_values("size", ascending=False)
    rows = [
        (
            r.interpreter,
            str(getattr(r, previous, "")),
            r.cell,
            f"{r.ratio:.3f}x",
            f"{r.ratio_low:.3f} - {r.ratio_high:.3f}",
            *((str(getattr(r, "machine", "")),) if machine else ()),
            r.change,
        )
        for r in sig.head(MAX_LISTED).itertuples(index=False)
    ]
    return rows, len(sig)


def not_compared_rows(versions: pd.DataFrame | None) -> tuple[tuple[str, ...], ...]:
    """Version-over-version pairs of cells that ran on different machines, one line per pair
    of interpreters and machines: (interpreter, previous, how many cells, why not compared)."""
    if versions is None or versions.empty or "compared" not in versions.columns:
        return ()
    apart = versions[~versions["compared"].astype(bool)]
    if apart.empty:
        return ()
    keys = ["interpreter", "previous", "machine_old", "machine"]
    return tuple(
        (str(new), str(old), str(len(group)), different_machines(str(m_old), str(m_new)))
        for (new, old, m_old, m_new), group in apart.groupby(keys, sort=False)
    )


def cross_machine_warning(counts: Mapping[str, int]) -> str | None:
    """The comparisons the report did not make because their cells ran on different machines,
    counted apart, per family; None when there are none."""
    total = sum(counts.values())
    if not total:
        return None
    parts = ", ".join(f"{n} {family}" for family, n in counts.items() if n)
    return (
        f"{total} comparison{'s' * (total != 1)} between cells of different machines "
        f"{'are' if total != 1 else 'is'} not {'verdicts' if total != 1 else 'a verdict'} "
        f"({parts}): hardware would be read as a change, so each is shown as \u201cnot "
        "compared: different machines (A vs B)\u201d."
    )


def machine_line(
    part: pd.DataFrame, numbers: Sequence[int] = (), lines: Sequence[tuple[str, ...]] | None = None
) -> str:
    """Where a workload's cells ran: "Ran on A." (by interpreter when on several); with
    replicates (``lines``: per replicate read, numbered ``numbers``, its machines), each one's."""
    if "machine" not in part.columns or part.empty:
        return ""
    where: dict[str, list[str]] = {}
    for interp in sorted(part["interpreter"].unique(), key=interpreter_key):
        for machine in dict.fromkeys(part.loc[part["interpreter"] == interp, "machine"]):
            where.setdefault(str(machine), []).append(str(interp))
    if list(where) == [""]:
        return ""
    if len(where) == 1:
        text = f"Ran on {next(iter(where)) or '?'}"
    else:
        text = "Ran on " + "; ".join(f"{m or '?'} ({', '.join(i)})" for m, i in where.items())
    if lines and len(lines) > 1:
        text += " (replicate 1); " + "; ".join(
            f"replicate {n} on {', '.join(ms) or 'nothing'}"
            for n, ms in zip(numbers[1:], lines[1:], strict=True)
        )
    return text + "."


# -- replicates: what the page says of them (the analysis is reports/replicates.py) -----------

ONE_REPLICATE = (
    "One replicate: this report cannot know how far its verdicts would move on another runner "
    "of this label; `replicates: 2` (or more) measures it."
)
FAMILY_LABELS = {WINNER: "fastest executor"}


def reading_text(v: ReplicatedVerdict, r: Reading) -> str:
    """One replicate's verdict: "faster, 0.55x", "threads (runner-up 1.20x its time)", "not
    compared: different machines (A vs B)", "no result"."""
    if not r.verdict:
        return "no result"
    if r.verdict == NOT_COMPARED:
        return f"{NOT_COMPARED}: different machines ({r.machine})"
    ratio = "" if r.ratio is None or not math.isfinite(r.ratio) else f"{r.ratio:.2f}x"
    if v.family == WINNER:
        return r.verdict + (f" (runner-up {ratio} its time)" if ratio else "")
    return f"{r.verdict}, {ratio}" if ratio else r.verdict


def readings_text(v: ReplicatedVerdict, numbers: Sequence[int]) -> str:
    """ "replicate 1 (A): faster, 0.55x; replicate 2 (B): slower, 1.38x"."""
    return "; ".join(
        f"replicate {n}" + (f" ({r.machine})" if r.made and r.machine else "") + f": {reading_text(v, r)}"
        for n, r in zip(numbers, v.readings, strict=True)
    )


def subject_text(v: ReplicatedVerdict) -> str:
    if v.family == FAMILIES[2]:  # version over version: "3.14 vs 3.13: crunch/threads/2"
        return v.subject
    if v.family == FAMILIES[3]:  # free-threaded vs default
        return f"{v.workload}: {v.subject}"
    return f"{v.workload} on {v.interpreter}: {FAMILY_LABELS.get(v.family, v.subject)}"


def card_replicate_line(verdicts: Sequence[ReplicatedVerdict], numbers: Sequence[int]) -> str:
    """What the replicates say of one card's verdicts (its fastest executor, each execution
    model against sequential): all hold, or which differ and how on each replicate."""
    if not verdicts:
        return ""
    k = len(numbers)
    differ = [v for v in verdicts if v.outcome == DIFFERS]
    some = [v for v in verdicts if v.outcome == SOME]
    if not differ and not some:
        return f"Replicates: this card's verdicts hold on {k} of {k} replicates."
    held = len(verdicts) - len(differ) - len(some)
    parts = [f"{FAMILY_LABELS.get(v.family, v.subject)} ({readings_text(v, numbers)})" for v in differ]
    text = "Replicates: " + (
        f"{len(differ)} of this card's {len(verdicts)} verdicts differ between replicates: "
        + "; ".join(parts)
        + "."
        if differ
        else ""
    )
    for v in some:
        text += (
            f" {FAMILY_LABELS.get(v.family, v.subject)} holds on {v.agreeing} of {k} replicates "
            f"({readings_text(v, numbers)})."
        )
    if held:
        text += f" The other {held} hold{'s' * (held == 1)} on {k} of {k} replicates."
    return text.replace("Replicates:  ", "Replicates: ")


def movement_text(analysis: ReplicateAnalysis) -> str:
    m = analysis.movement
    if m is None:
        return ""
    k = len(analysis.replicates)
    how = (
        "the sd of a cell's mean between replicates beyond its own interval, per workload, "
        "execution model and interpreter, as between baseline runs"
        + (f"; {k} replicates measure it with {k - 1} degree{'s' * (k > 2)} of freedom" if k < 4 else "")
    )
    if not m.moved:
        return (
            "Between runners of this label, no group of cells moved beyond its intervals "
            f"({m.groups} groups; {how})."
        )
    workload, executor, interp = m.worst
    return (
        f"Between runners of this label, cells moved by median ±{m.median:.1%}, most {workload} "
        f"under {executor} on {interp} ±{m.largest:.1%} ({m.moved} of {m.groups} groups moved; {how})."
    )


def replicates_section(analysis: ReplicateAnalysis | None) -> dict[str, Any]:
    """The "Replicates" section: {} for a run that is not a merged CI run."""
    if analysis is None:
        return {}
    numbers = [r.number for r in analysis.replicates]
    machines = [
        f"replicate {r.number}{' (this page)' if r.number == 1 else ''}: {', '.join(r.machines) or '?'}"
        for r in analysis.replicates
    ]
    out: dict[str, Any] = {
        "count": analysis.count,
        "machines": machines,
        "problems": list(analysis.problems),
        "families": [],
        "header": [],
        "differs": [],
        "differs_total": 0,
    }
    k = len(numbers)
    if k < 2:
        lead = (
            f"{analysis.count} replicates were run, but only replicate 1 could be read (see below). "
            if analysis.count >= 2
            else ""
        )
        out["lines"] = [lead + ONE_REPLICATE]
        out["summary"] = lead + ONE_REPLICATE
        return out
    counts = analysis.outcomes()
    total = sum(counts.values())
    held = f"{counts[HOLDS]} of {total} verdicts hold on {k} of {k} replicates"
    lines = [
        f"{analysis.count} replicates: each shard ran on {analysis.count} runners of its label, the same "
        "cells on each; this page's figures are replicate 1's. Every verdict was made on each "
        "replicate apart, from its own cells (on one machine per shard), then read across them.",
        f"{held} (the same verdict on every one); {counts[DIFFERS]} differ"
        + (" (below)" if counts[DIFFERS] else "")
        + (
            f"; {counts[SOME]} were made on only some replicates (on the others a cell had no "
            "result, or the two cells ran on different machines)"
            if counts[SOME]
            else ""
        )
        + ".",
    ]
    if k < analysis.count:
        lines.append(f"Only {k} of the {analysis.count} replicates could be read: the figures are of those.")
    moved = movement_text(analysis)
    if moved:
        lines.append(moved)
    differ = [v for v in analysis.verdicts if v.outcome == DIFFERS]
    out.update(
        lines=lines,
        families=[
            (family, sum(c.values()), c[HOLDS], c[DIFFERS], c[SOME])
            for family, c in ((f, analysis.outcomes(f)) for f in FAMILIES)
            if sum(c.values())
        ],
        header=["comparison", "family", *(f"replicate {n}" for n in numbers)],
        differs=[
            (
                subject_text(v),
                v.family,
                *(
                    reading_text(v, r) + (f" ({r.machine})" if r.made and r.machine else "")
                    for r in v.readings
                ),
            )
            for v in differ[:MAX_LISTED]
        ],
        differs_total=len(differ),
        summary=f"{analysis.count}"
        + (f", {k} of them read" if k < analysis.count else "")
        + f" ({'; '.join(machines)}): {held}, {counts[DIFFERS]} differ"
        + (f", {counts[SOME]} made on only some" if counts[SOME] else "")
        + (f". {moved}" if moved else "."),
    )
    return out


CROSS_FAMILIES = ("version-over-version", "free-threaded vs default", "within a verdict card", "ftscaling")


def build_page(
    results: RunResults,
    cells: pd.DataFrame,
    cards: Sequence[Card],
    charts: ChartSet,
    versions: pd.DataFrame,
    baseline: Mapping[str, Any] | None,
    downloads: Sequence[tuple[str, str]],
    libraries: Mapping[str, str],
    replicates: ReplicateAnalysis | None = None,
) -> Page:
    facts = results.facts
    cells = order_cells(cells)
    reached = run_reach(cells, facts.schedule, facts.sampled)
    machines = tuple(sorted({str(m) for m in cells["machine"]} - {""})) if "machine" in cells else ()
    numbers = [r.number for r in replicates.replicates] if replicates else []
    replicated = replicates is not None and len(numbers) > 1
    interps = charts.interpreters
    by_key = {(c.workload, c.interpreter): c for c in cards}
    skipped_by_workload: dict[str, list[CellProblem]] = {}
    for problem in results.problems:
        # an interpreter that did not run at all is explained once, in the skipped list
        if problem.status == Status.SKIPPED and problem.interpreter in interps:
            workload = (CellId.maybe(problem.cell) or CellId(problem.cell, "", 0)).workload
            skipped_by_workload.setdefault(workload, []).append(problem)
    sampled = facts.sampled
    sections, overview = [], []
    for index, workload in enumerate(dict.fromkeys(cells["workload"])):
        part = cells[cells["workload"] == workload]
        rows = table_rows(part, sampled)
        first = part.iloc[0]
        params = str(first["params"])
        section_cards = tuple(by_key[(workload, i)] for i in interps if (workload, i) in by_key)
        lines = (replicates.workload_machines or {}).get(workload) if replicated and replicates else None
        sections.append(
            WorkloadSection(
                name=workload,
                slug=workload_slug(index, workload),
                kind=str(first["kind"]),
                params=params,
                cards=section_cards,
                charts=tuple(c for c in charts.charts if c.workload == workload),
                rows=rows,
                notes=section_notes(part, skipped_by_workload.get(workload, ()), interps),
                machine=machine_line(part, numbers, lines),
                replicates={
                    c.interpreter: card_replicate_line(replicates.of_card(workload, c.interpreter), numbers)
                    for c in section_cards
                }
                if replicated and replicates
                else {},
            )
        )
        overview.append((workload, tuple(by_key.get((workload, i)) for i in interps)))
    changes, change_total = change_rows(versions, machine=len(machines) > 1)
    unstable = unstable_cells(cells)
    band = facts.floor  # the machine's noise, said in the banner
    floor = within_run_floor(band)  # what a comparison inside the run must exceed
    scaling = scaling_section(cells, facts)
    ft = free_threading(cells, floor) if len(cells) else pd.DataFrame()
    apart = {
        CROSS_FAMILIES[0]: 0
        if versions is None or "compared" not in versions
        else int((~versions["compared"].astype(bool)).sum()),
        CROSS_FAMILIES[1]: 0 if ft.empty else int((~ft["compared"].astype(bool)).sum()),
        CROSS_FAMILIES[2]: sum(len(c.apart) for c in cards),
        CROSS_FAMILIES[3]: int(scaling.get("apart", 0)),
    }
    cross = cross_machine_warning(apart)
    run = {
        "id": results.run_id,
        "state": facts.state,
        "started": facts.started,
        "finished": facts.finished,
        "profile": facts.profile,
        "matrix_path": facts.matrix_path,
        "matrix_sha256": facts.matrix_sha256,
        "settings": ", ".join(f"{k}={v}" for k, v in facts.settings.items()),
        "backend": facts.backend,
        "tool": " ".join(str(v) for k, v in facts.tool.items() if k in ("name", "version")),
        "stages": ", ".join(f"{k} {float(v):.1f} s" for k, v in facts.stages.items() if v is not None),
    }
    host = tuple((str(k), str(v)) for k, v in facts.host.items())
    return Page(
        measurement=measurement(facts, cells, reached),
        title=f"gilmatrix report: {results.run_id}",
        run=run,
        host=host,
        interpreters=interpreter_rows(results.interpreters),
        interpreter_ids=interps,
        executors=charts.executors,
        overview=tuple(overview),
        workloads=tuple(sections),
        version_charts=tuple(c for c in charts.charts if c.section == "versions"),
        ft_rows=ft_rows(cells, floor),
        scaling=scaling,
        overheads=overhead_rows(cells, floor),
        change_rows=tuple(changes),
        change_total=change_total,
        baseline=baseline,
        problems=results.problems,
        problem_groups=group_problems(results.problems),
        skipped_groups=group_skipped(results.problems),
        warnings=(
            *((banner,) if (banner := noise_banner(band, cards, MIN_FLOOR, facts, cells, reached)) else ()),
            *environment_warnings(results),
            *((cross,) if cross else ()),
        ),
        unstable=tuple(unstable[:MAX_LISTED]),
        unstable_total=len(unstable),
        downloads=tuple(downloads),
        libraries=dict(libraries),
        machines=machines,
        not_compared=not_compared_rows(versions),
        replicates=replicates_section(replicates),
    )


def _budget_rows(rows: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [
        (i, c, "—" if p is None else f"±{float(p):.1%}", "—" if t is None else f"±{float(t):.1%}", n)
        for i, c, p, t, n in rows
    ]


def speed_adjustment(cells: pd.DataFrame) -> str:
    """What taking the machine's speed out of each value (reports/sidebyside.py) did: the median
    over cells of the scatter of their adjusted process means over their raw scatter."""
    if "adj_sd" not in cells or not len(cells):
        return ""
    both = cells[(cells["processes"] > 1) & (cells["proc_sd"] > 0)]
    changed = both[(both["adj_sd"] - both["proc_sd"]).abs() > 1e-12 * both["proc_sd"]]
    if changed.empty:
        return (
            "not applied: no reference loop was recorded around the calls (results of an older "
            "gilmatrix), or too few processes to measure how the cells follow it"
        )
    ratio = float((both["adj_sd"] / both["proc_sd"]).median())
    paired = "pair_n" in cells and bool((cells["pair_n"] > 1).any())
    return (
        (
            "every comparison within this run that is not made by pairs (below)"
            if paired
            else "every comparison within this run"
        )
        + " is made on values adjusted for the machine's speed "
        "around each call (a fixed loop timed just before and after it and, where Linux reports "
        "it and the cell's one worker runs in its own process, the time the call's thread waited "
        "for a CPU while other work ran; the slopes of each execution model measured on the "
        "run's own data), the figures "
        "shown stay as measured: "
        f"the scatter of the process means was {ratio:.0%} of the raw one (median of "
        f"{len(both)} cells); and tested by Welch's test on the process means, where a pool is "
        "compared on the 20%-trimmed means (Yuen's test), so that a burst of other work on a few "
        "of a pool's processes does not decide it (a cell of fewer than 5 processes has nothing "
        "trimmed)"
    )


def pairing_summary(cells: pd.DataFrame) -> str:
    """What call-by-call pairing (reports/pairs.py) gave: how many cells were paired, and the
    median precision of their ratio to the sequential run against that of their raw means."""
    if "pair_n" not in cells or not (cells["pair_n"] > 1).any():
        return ""
    paired = cells[cells["pair_n"] > 1]
    quantiles = paired["pair_n"].map(lambda n: t_quantile(1.0 - ALPHA / 2.0, n - 1))
    half = np.expm1(quantiles * paired["pair_sd"] / np.sqrt(paired["pair_n"]))
    return (
        f"{len(paired)} cells timed their workload's sequential run around every call, in their "
        "own process: the cells of one workload on one interpreter are compared by those "
        "per-call ratios, and across interpreters through each workload's sequential level "
        f"(pooled over its paired processes); median precision of a cell's ratio ±{float(half.median()):.1%} "
        f"against ±{float(paired['precision'].median()):.1%} of its raw mean"
    )


def measurement(facts: RunFacts, cells: pd.DataFrame, reached: RunReach | None = None) -> dict[str, Any]:
    """How the run measured: the sampling policy, the rounds, the noise sentinels and the
    windows they found disturbed, the noise floor, and the cells that missed the target."""
    schedule, sampled = facts.schedule, facts.sampled
    if not schedule:
        return {}
    policy = schedule.get("sampling") or {}
    if policy.get("mode") == "adaptive":
        how = (
            f"adaptive: worker processes, one per round, until the 95% interval of a cell's "
            f"mean is within ±{float(policy['target']):.1%} (from at least "
            f"{policy.get('min_processes')} processes), or {policy.get('max_processes')} "
            "processes"
            + (f" or {policy['max_seconds']:g} s of worker time" if policy.get("max_seconds") else "")
            + ", whichever comes first"
            + (
                "; a cell looking quieter than its execution model's typical scatter in the run "
                f"was pooled with it (as {policy['prior_processes']} more processes) before it "
                "could stop"
                if policy.get("prior_processes")
                else ""
            )
            + (
                f"; once the run had measured for {float(policy['run_minutes']):g} minutes, "
                "every cell with its minimum of processes stopped"
                if policy.get("run_minutes")
                else ""
            )
            + (
                "; a cell with its minimum of processes also stopped once every comparison the "
                "report makes of it was decided at 99% (beyond its 1% floor, or within it), "
                "so that the rounds went to the comparisons still open"
                if policy.get("decide")
                else ""
            )
        )
    else:
        how = f"fixed: {policy.get('processes', '?')} worker processes per cell"
    noise_figures = facts.noise
    windows = [w for w in schedule.get("windows") or [] if isinstance(w, Mapping)]
    disturbed = [w for w in windows if w.get("disturbed")]
    stopped = sorted(
        (
            budget_outcome(c.get("precision"), c),
            interp,
            cell,
            c.get("precision"),
            c.get("target"),
            c.get("processes"),
        )
        for (interp, cell), c in sampled.items()
        if c.get("stopped") in Stopped.OUT_OF_BUDGET and c.get("status") == Status.OK
    )
    missed = [row[1:] for row in stopped if row[0] == "missed"]
    unconfirmed = [row[1:] for row in stopped if row[0] == "unconfirmed"]
    precisions = cells["precision"].dropna() if "precision" in cells else pd.Series(dtype=float)
    return {
        "sampling": how,
        "order": schedule.get("order") or "shuffle",
        "speed": speed_adjustment(cells),
        "pairing": pairing_summary(cells),
        "seed": schedule.get("seed"),
        "rounds": len(schedule.get("rounds") or []),
        "windows": len(windows),
        "window_seconds": schedule.get("window_seconds"),
        "floor": noise_figures.get("floor"),
        "sentinel_ms": noise_figures.get("sentinel_median_ms"),
        "spread": noise_figures.get("sentinel_spread"),
        "rule": noise_figures.get("rule", ""),
        "drift": noise_figures.get("drift"),
        "drift_cells": noise_figures.get("drift_cells"),
        "disturbed": [
            (
                w.get("index"),
                w.get("round"),
                w.get("started"),
                w.get("why"),
                w.get("workers"),
                w.get("action"),
            )
            for w in disturbed[:MAX_LISTED]
        ],
        "disturbed_total": len(disturbed),
        "missed": _budget_rows(missed),
        "unconfirmed": _budget_rows(unconfirmed),
        "precision_median": None if precisions.empty else float(precisions.median()),
        "precision_max": None if precisions.empty else float(precisions.max()),
        "reach": reach_text(reached),
    }
