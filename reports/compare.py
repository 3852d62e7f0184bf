"""Derived tables: speedup over sequential, free-threaded vs default build, version over version,
and this run against a baseline run. Each takes cell tables (stats.cell_table) and returns one.
"""

from __future__ import annotations

from dataclasses import replace
from itertools import pairwise
from types import SimpleNamespace
from typing import Any

import pandas as pd

from gilmatrix.harness.contract import executor_rank, interpreter_key
from gilmatrix.reports.sidebyside import in_process
from gilmatrix.reports.stats import (
    NOT_COMPARED,
    REPLICATE_KEYS,
    TRIMMED,
    Comparison,
    at_tasks,
    compare_cells,
    compare_levels,
    machine_of,
    replicated_comparison,
    welch_from_stats,
)

# Single-thread overhead of the free-threaded build as published in the CPython docs (average
# over pyperformance); drawn as reference marks, not used in any verdict.
PUBLISHED_FT_OVERHEAD = {
    "3.13": (0.40, 0.40, "about 40% (3.13 free-threading HOWTO)"),
    "3.14": (0.05, 0.10, "about 5-10% (3.14 free-threading HOWTO)"),
}
# PEP 779's targets for free-threading's phase II, and bench_runner's published figures for the
# free-threaded build against the default one on the same commit (Linux x86-64, 3.15.0a1+):
# marks next to what this run measured, never inputs of a verdict.
PEP779_TIME, PEP779_MEMORY = 0.15, 0.20
PUBLISHED_BENCH_RUNNER = {"time": 0.09, "memory": 0.21, "what": "bench_runner, 3.15.0a1+, Linux x86-64"}
# The ftscaling workloads (CPython's Tools/ftscalingbench patterns): their harness workloads.
FTSCALING = ("ftscaling", "ftscaling_shared")
CHANGE_COLUMNS = [
    "ratio",
    "ratio_low",
    "ratio_high",
    "p_value",
    "significant",
    "direction",
    "floor",
    "below_floor",
]


def _machine_keys(cells: pd.DataFrame) -> list[str]:
    """["machine"] when the table says where its cells ran: a join on it keeps every ratio on
    one machine."""
    return ["machine"] if "machine" in cells.columns else []


def with_speedup(cells: pd.DataFrame) -> pd.DataFrame:
    """Add to each cell: speedup over sequential, efficiency (speedup / workers) and parallel
    efficiency against the same executor at one worker, all as throughput (tasks per second)
    ratios: speedup = (tasks / mean) / (sequential's tasks / its mean). Each against a cell of
    its own machine: a cell whose sequential (or one-worker) cell ran on another machine gets
    none (NaN), as a ratio across machines would read hardware as speedup.

    Where a workload runs the same tasks in every cell (a fixed ``tasks``), that is sequential
    mean / mean, and parallel efficiency t1 / (N * tN): 1 when N workers take 1/N of one
    worker's time, whatever the executor's fixed cost; efficiency also counts what the
    executor costs over a plain loop. Where every worker gets the same work
    (``tasks_per_worker``: N workers run N times one worker's tasks) it is ftscalingbench's
    T1 * N / TN, and parallel efficiency t1 / tN. Sequential gets no parallel efficiency: it
    does not use workers."""
    by = ["interpreter", "workload", *_machine_keys(cells)]
    seq = cells[cells["executor"] == "sequential"].sort_values("mean").drop_duplicates(by).set_index(by)
    one = (
        cells[(cells["workers"] == 1) & (cells["executor"] != "sequential")]
        .sort_values("mean")
        .drop_duplicates([*by, "executor"])
        .set_index([*by, "executor"])
    )
    with_tasks = "tasks" in cells.columns
    extra = ["mean", "tasks"] if with_tasks else ["mean"]
    out = cells.join(seq[extra].add_prefix("seq_"), on=by)
    out = out.join(one[extra].add_prefix("one_"), on=[*by, "executor"])
    # the work of a cell over the work of its reference: exactly 1.0 where they ran the same tasks
    seq_work = out["tasks"] / out["seq_tasks"] if with_tasks else 1.0
    one_work = out["tasks"] / out["one_tasks"] if with_tasks else 1.0
    out["speedup"] = out["seq_mean"] / out["mean"] * seq_work
    out["efficiency"] = out["speedup"] / out["workers"]
    out["parallel_efficiency"] = out["one_mean"] / (out["workers"] * out["mean"]) * one_work
    return out.drop(columns=[c for c in ("one_mean", "one_tasks", "seq_tasks") if c in out.columns])


def order_cells(cells: pd.DataFrame) -> pd.DataFrame:
    """Workload as given, then interpreter by version, executor by usual order, then workers."""
    keys = pd.DataFrame(
        {
            "i": cells["interpreter"].map(interpreter_key),
            "e": cells["executor"].map(executor_rank),
        },
        index=cells.index,
    )
    workload_order = {w: n for n, w in enumerate(dict.fromkeys(cells["workload"]))}
    keys["w"] = cells["workload"].map(workload_order)
    keys["k"] = cells["workers"]
    return cells.loc[keys.sort_values(["w", "i", "e", "k"]).index]


STATS = ["mean", "proc_sd", "processes"]  # what a comparison needs of a cell
# within one run: the means adjusted for the machine's speed, and what is tested (stats.location_stats)
ADJUSTED = ["adj_mean", "adj_sd", *TRIMMED]
# within one run, with pairing: what a comparison through the workloads' levels needs (pairs.py)
LEVELS = ["pair_mean", "pair_sd", "pair_n", "level_mean", "level_var", "level_n"]


def with_changes(pairs: pd.DataFrame, rows: list[Any]) -> pd.DataFrame:
    """The comparisons ``rows`` (stats.Comparison, one per pair) as columns of ``pairs``, and
    their "change": "faster" / "slower" of new relative to old, an improvement or a regression."""
    for column in CHANGE_COLUMNS:
        pairs[column] = [getattr(c, column) for c in rows]
    pairs["change"] = pairs["direction"].map(
        {"faster": "improvement", "slower": "regression", "tie": "no significant change"}
    )
    return pairs


def across_machines(pairs: pd.DataFrame) -> pd.DataFrame:
    """Pairs (columns ``machine`` and ``machine_old``) whose two cells ran on different
    machines are no verdict: direction and change "not compared", nothing significant, no
    ratio (NaN); ``compared`` says which pairs are verdicts. Pairs without machines are."""
    if "machine" not in pairs.columns or "machine_old" not in pairs.columns:
        pairs["compared"] = True
        return pairs
    apart = (pairs["machine"] != pairs["machine_old"]).to_numpy()
    pairs["compared"] = ~apart
    if apart.any():
        pairs.loc[apart, ["significant", "below_floor"]] = False
        pairs.loc[apart, ["ratio", "ratio_low", "ratio_high", "p_value"]] = float("nan")
        pairs.loc[apart, ["direction", "change"]] = NOT_COMPARED
    return pairs


def _compare(
    new: pd.DataFrame,
    old: pd.DataFrame,
    on: list[str],
    floor: float,
    drift: float = 0.0,
    per_mean: bool = True,
    adjusted: bool = False,
) -> pd.DataFrame:
    """Welch's test of every cell in new against the same cell in old (joined on `on`), on
    their process means; a difference within ``floor`` is no change. ``adjusted`` (two cells of
    one run): as stats.compare_cells tests them — their process means adjusted for the machine's
    speed, and of a pool the trimmed means (Yuen's test), where both have them."""
    pairs = new.merge(old, on=on, suffixes=("", "_old"))
    tested = pairs[[*STATS, *(f"{c}_old" for c in STATS)]].copy()
    for side in ("", "_old"):
        tested[f"df{side}"] = pairs[f"processes{side}"] - 1.0
    # each later figure replaces the earlier where a cell has it (stats.location_stats): the
    # trimmed ones for pools only (stats.pool_compared; a cell and itself in an older release
    # are of one kind)
    pools = (
        ~in_process(pairs["model"], pairs["workers"])
        if "model" in pairs and "workers" in pairs
        else pd.Series(True, index=pairs.index)
    )
    for columns, where in ((("adj_mean", "adj_sd"), True), ((*TRIMMED,), pools)):
        if not (adjusted and columns[0] in pairs and f"{columns[0]}_old" in pairs):
            continue
        for side in ("", "_old"):  # the figures shown stay the raw ones
            ok = (pairs[f"{columns[0]}{side}"] > 0) & (pairs[f"{columns[1]}{side}"] >= 0) & where
            for column, into in zip(columns, ("mean", "proc_sd", "df"), strict=False):
                tested[f"{into}{side}"] = pairs[f"{column}{side}"].where(ok, tested[f"{into}{side}"])
    # each cell's own drift in either run (stats.split_half_drift), at least the runs' own
    own = (
        (pairs["drift"] + pairs["drift_old"]) / 2.0
        if "drift_old" in pairs
        else pd.Series(0.0, index=pairs.index)
    )
    rows = [
        welch_from_stats(
            r.mean,
            r.proc_sd,
            int(r.processes),
            r.mean_old,
            r.proc_sd_old,
            int(r.processes_old),
            floor,
            max(drift, float(cell_drift)),
            per_mean,
            df_a=float(r.df),
            df_b=float(r.df_old),
        )
        for r, cell_drift in zip(
            tested.itertuples(index=False),
            own.fillna(0.0),
            strict=True,
        )
    ]
    has_levels = all(f"{c}_old" in pairs for c in LEVELS) and bool((pairs["level_n"] > 1).any())
    if adjusted and "executor" in pairs and has_levels:  # only a run made with pairing
        rows = [  # paired cells of one run: through their workloads' levels (pairs.py)
            by_levels(merged, row, floor)
            for merged, row in zip(pairs.itertuples(index=False), rows, strict=True)
        ]
    return with_changes(pairs, rows)


def by_levels(merged: Any, fallback: Comparison, floor: float) -> Comparison:
    """A merged row (the new side's columns, the old side's with ``_old``) compared through the
    two workloads' levels (reports/pairs.py) where both sides have them; else ``fallback``."""
    fields = ["mean", *LEVELS]
    new = SimpleNamespace(executor=merged.executor, **{f: getattr(merged, f) for f in fields})
    old = SimpleNamespace(executor=merged.executor, **{f: getattr(merged, f"{f}_old") for f in fields})
    found = compare_levels(new, old, floor)
    return found if found is not None else fallback


def version_changes(cells: pd.DataFrame, floor: float = 0.0) -> pd.DataFrame:
    """Each cell on one interpreter against the same cell on the previous version of the same
    build kind (3.13 -> 3.14, 3.13t -> 3.14t), so a build change is never read as a version one.
    Two cells of different machines are not compared (:func:`across_machines`): ``machine`` is
    the new cell's, ``machine_old`` the previous one's."""
    interps = sorted(cells["interpreter"].unique(), key=interpreter_key)
    steps: list[tuple[str, str]] = []
    for build in (False, True):
        line = [i for i in interps if i.endswith("t") == build]
        steps.extend(pairwise(line))
    frames = []
    keep = ["workload", "executor", "workers", "cell", *STATS, *_machine_keys(cells)]
    keep += [c for c in ("model", *ADJUSTED, *LEVELS) if c in cells]  # model: pools are trimmed
    for old, new in steps:
        pairs = _compare(
            cells.loc[cells["interpreter"] == new, keep],
            cells.loc[cells["interpreter"] == old, keep],
            ["workload", "executor", "workers", "cell"],
            floor,
            adjusted=True,
        )
        frames.append(across_machines(pairs).assign(interpreter=new, previous=old))
    if not frames:
        columns = ["interpreter", "previous", "cell", *CHANGE_COLUMNS, "change", "compared"]
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)


def baseline_changes(
    cells: pd.DataFrame, baseline: pd.DataFrame, floor: float = 0.0, drift: float = 0.0
) -> pd.DataFrame:
    """Every cell of this run against the same interpreter and cell in the baseline run; the
    runs' ``drift`` (relative variance, results.baseline_drift) widens each test."""
    keep = [*REPLICATE_KEYS, *STATS]
    keep += ["drift"] if "drift" in cells and "drift" in baseline else []
    return _compare(
        cells[keep],
        baseline[keep],
        REPLICATE_KEYS,
        floor,
        drift,
        per_mean=False,  # one baseline: the whole band is all that guards against run-to-run moves
    )


def replicated_changes(cells: pd.DataFrame, pooled: pd.DataFrame, floor: float = 0.0) -> pd.DataFrame:
    """Every cell of this run against replicated baseline runs pooled (stats.pool_baselines):
    the run-to-run component they measured widens each test."""
    keep = [*REPLICATE_KEYS, *STATS]
    pairs = cells[keep].merge(pooled, on=REPLICATE_KEYS, suffixes=("", "_old"))
    rows = [
        replicated_comparison(r.mean, r.proc_sd, int(r.processes), base, floor)
        for r, base in zip(
            pairs[STATS].itertuples(index=False),
            pairs[["mean_old", "runs", "processes_old", "within", "within_df", "between", "between_df"]]
            .rename(columns={"mean_old": "mean", "processes_old": "processes"})
            .itertuples(index=False),
            strict=True,
        )
    ]
    return with_changes(pairs, rows)


def free_threading(cells: pd.DataFrame, floor: float = 0.0) -> pd.DataFrame:
    """Per version with both builds and per workload: the free-threaded build's single-thread
    overhead (sequential cell, ft / default - 1, with Welch's interval) and threads' speedup
    at the largest worker count on each build. A free-threaded build whose sequential cell ran
    on another machine than the default build's is not compared (``compared`` False, no
    overhead or memory figure): ``machine_default`` and ``machine_ft`` say where each ran."""
    speed = with_speedup(cells)
    seq = {
        (r.interpreter, r.workload): r
        for r in speed[speed["executor"] == "sequential"].itertuples(index=False)
    }
    threads: dict[Any, Any] = {}
    for r in speed[speed["executor"] == "threads"].itertuples(index=False):
        key = (r.interpreter, r.workload)
        if key not in threads or r.workers > threads[key].workers:
            threads[key] = r
    interps = set(cells["interpreter"])
    rows = []
    for ft in sorted((i for i in interps if i.endswith("t")), key=interpreter_key):
        default = ft[:-1]
        if default not in interps:
            continue
        for workload in dict.fromkeys(cells["workload"]):
            seq_ft, seq_def = seq.get((ft, workload)), seq.get((default, workload))
            if seq_ft is None or seq_def is None:
                continue
            cmp = compare_cells(seq_ft, seq_def, floor)
            thr_ft, thr_def = threads.get((ft, workload)), threads.get((default, workload))
            ref = PUBLISHED_FT_OVERHEAD.get(default)
            rss_ft = float(getattr(seq_ft, "peak_rss", None) or "nan")
            rss_def = float(getattr(seq_def, "peak_rss", None) or "nan")
            memory = rss_ft / rss_def - 1.0 if rss_def > 0 and rss_ft > 0 else None  # NaN: False
            compared = machine_of(seq_ft) == machine_of(seq_def)
            if not compared:
                nan = float("nan")
                cmp = replace(cmp, ratio=nan, ratio_low=nan, ratio_high=nan, significant=False)
                memory = None
            rows.append(
                {
                    "version": default,
                    "default": default,
                    "free_threaded": ft,
                    "workload": workload,
                    "overhead": cmp.ratio - 1.0,
                    "overhead_low": cmp.ratio_low - 1.0,
                    "overhead_high": cmp.ratio_high - 1.0,
                    "significant": cmp.significant,
                    "threads_workers": None if thr_ft is None else int(thr_ft.workers),
                    "threads_speedup_default": None if thr_def is None else float(thr_def.speedup),
                    "threads_speedup_ft": None if thr_ft is None else float(thr_ft.speedup),
                    "memory": memory,  # peak RSS of the sequential cell, ft / default - 1
                    "published_low": ref[0] if ref else None,
                    "published_high": ref[1] if ref else None,
                    "published": ref[2] if ref else "",
                    "compared": compared,
                    "machine_default": machine_of(seq_def),
                    "machine_ft": machine_of(seq_ft),
                }
            )
    return pd.DataFrame(rows)


def heatmap_table(cells: pd.DataFrame) -> pd.DataFrame:
    """Speedup of each executor at its largest worker count, per workload and interpreter."""
    speed = with_speedup(cells)
    speed = speed[speed["executor"] != "sequential"]
    if speed.empty:
        return speed
    widest = speed.groupby(["workload", "interpreter", "executor"])["workers"].transform("max")
    return speed[speed["workers"] == widest]


def ft_scaling_table(cells: pd.DataFrame, workloads: set[str]) -> pd.DataFrame:
    """ftscalingbench's scaling of ``workloads`` on threads, per interpreter and worker count N:
    throughput at N threads over throughput at 1 thread, from the tasks each cell ran — T1 * N
    / TN where every thread gets the same work (``tasks_per_worker``, as ftscalingbench's
    threads: the N-thread cell runs N times the tasks), T1 / TN where one cell spreads fixed
    tasks over N threads — with the 95% interval of that ratio (Welch, from the process means
    per task), the efficiency (scaling / N: T1 / TN for equal work per thread) and what it
    says: scales (efficiency at least 0.75 at the interval's low end), no scaling (at most
    1.25x at its high end), partly. A cell of another machine than its one-worker cell is not
    compared (verdict "not compared", no figures; ``machine_one`` and ``machine`` say where
    each ran)."""
    rows = []
    threads = cells[(cells["executor"] == "threads") & cells["workload"].isin(workloads)]
    for (interp, workload), group in threads.groupby(["interpreter", "workload"], sort=False):
        by_workers = {int(r.workers): r for r in group.itertuples(index=False)}
        one = by_workers.get(1)
        if one is None:
            continue
        for workers, row in sorted(by_workers.items()):
            if workers == 1:
                continue
            # the N-thread cell's times for the 1-thread cell's tasks: a throughput ratio
            same_work = at_tasks(row, int(one.tasks)) if hasattr(one, "tasks") else row
            cmp = compare_cells(one, same_work)
            low, high = cmp.ratio_low, cmp.ratio_high
            verdict = "scales" if low / workers >= 0.75 else ("no scaling" if high <= 1.25 else "partly")
            if machine_of(one) != machine_of(row):
                nan = float("nan")
                cmp, low, high, verdict = replace(cmp, ratio=nan), nan, nan, NOT_COMPARED
            rows.append(
                {
                    "interpreter": interp,
                    "workload": workload,
                    "workers": workers,
                    "scaling": cmp.ratio,
                    "scaling_low": low,
                    "scaling_high": high,
                    "efficiency": cmp.ratio / workers,
                    "verdict": verdict,
                    "free_threaded": bool(row.free_threaded),
                    "gil": str(row.gil),
                    "machine_one": machine_of(one),
                    "machine": machine_of(row),
                }
            )
    columns = ["interpreter", "workload", "workers", "scaling", "scaling_low", "scaling_high"]
    columns += ["efficiency", "verdict", "free_threaded", "gil", "machine_one", "machine"]
    return pd.DataFrame(rows, columns=columns)


def scaling_changes(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Between consecutive free-threaded versions, per workload at the largest N both have:
    improved / regressed when the scaling intervals do not overlap, else unchanged; "not
    compared" when the two ran on different machines (or either was not compared itself)."""
    out = []
    ft = table[table["free_threaded"]]
    versions = sorted(set(ft["interpreter"]), key=interpreter_key)
    for old, new in pairwise(versions):
        for workload in dict.fromkeys(ft["workload"]):
            a = ft[(ft["interpreter"] == old) & (ft["workload"] == workload)]
            b = ft[(ft["interpreter"] == new) & (ft["workload"] == workload)]
            common = sorted(set(a["workers"]) & set(b["workers"]))
            if not common:
                continue
            ra = a[a["workers"] == common[-1]].iloc[0]
            rb = b[b["workers"] == common[-1]].iloc[0]
            change = "unchanged"
            if ra["machine"] != rb["machine"] or NOT_COMPARED in (ra["verdict"], rb["verdict"]):
                change = NOT_COMPARED
            elif rb["scaling_low"] > ra["scaling_high"]:
                change = "improved"
            elif rb["scaling_high"] < ra["scaling_low"]:
                change = "regressed"
            out.append(
                {
                    "workload": workload,
                    "old": old,
                    "new": new,
                    "workers": common[-1],
                    "old_scaling": float(ra["scaling"]),
                    "new_scaling": float(rb["scaling"]),
                    "change": change,
                    "old_machine": str(ra["machine"]),
                    "new_machine": str(rb["machine"]),
                }
            )
    return out
