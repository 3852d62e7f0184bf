"""Selfbench's ``verdicts`` section: are gilmatrix's verdicts robust to noise? Real runs, figures
printed (never asserted in tests):

- **A/A false-positive rate**: the same cells run twice, same everything (run A, run B); the
  fraction of cells ``gilmatrix report B --baseline A`` calls a significant change. Target ≤ 5%.
- **power**: a third run C in which the ``crunch`` cells do 5% more work (``size`` × 1.05), the
  others unchanged; the fraction of crunch cells C-vs-B calls a regression (target ≥ 90%), and
  the fraction of unchanged cells it flags (should stay at the A/A rate).
- **within one run** (the comparisons the report makes between interpreters are of this kind:
  interleaved, the same minutes): one run holding ``crunch`` and ``sum_squares`` twice each,
  identical (``*_twin``: an A/A inside the run), and ``crunch`` with 5% more work
  (``crunch_plus``); the fraction of twin pairs called a change, and of crunch_plus cells called
  a regression against crunch, by the same test and floor as the report's.
- **against replicated baselines**: runs D, E and F, unchanged; D against A and B pooled (the
  report's ``--baseline A --baseline B``: their differences measure the run-to-run component)
  and against A, B, E and F pooled for the A/A rate, C against the same for the power; and each
  of the five unchanged runs against the other four (100 cells: the A/A rate with 4 baselines).
- **run-to-run |Δ|**: the median |mean_B / mean_A - 1| of the CPU-bound cells. Target ≤ 3%.
- **precision per second against plain pyperf**: each of four cells run by pyperf's own manager
  with its defaults (20 processes × 3 values, the same bench module), then by gilmatrix (its
  own CLI run) with a precision target equal to the precision pyperf reached on that cell;
  gilmatrix's wall time / pyperf's, summed over the cells, and both precisions. Target ≤ 0.5.
- **settings** (its own section, ``--only settings``): what a process costs and how much its
  mean scatters, with the default profile's pyperf settings (2 values, min time 0.05 s) and
  with pyperf's (3 values, 0.1 s): the same four cells, a fixed number of processes, the two
  alternating. The cost of a given precision is scatter² × seconds per process; the figure is
  pyperf's settings' cost / the default profile's (> 1: the default buys precision cheaper).

Cells: the matrix' ``crunch`` and ``sum_squares`` workloads on one local interpreter (3.13 by
default), default profile — 20 cells, as in the issue that asked for these figures.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from devtools.selfbench import measure as sm

WORKLOADS = ("crunch", "sum_squares")
AFFECTED = "crunch"
POWER_FACTOR = 1.05
PYPERF_CELLS = (
    "crunch/sequential/1",
    "crunch/threads/2",
    "sum_squares/sequential/1",
    "sum_squares/threads/2",
)
SETTINGS_PROCESSES = 16  # processes of each settings run (fixed: no optional stopping)
SETTINGS_REPEATS = 3  # runs of each cell and side, alternating


def matrix_with(
    source: Path, dest: Path, scale: float = 1.0, profile: Mapping[str, Any] | None = None
) -> Path:
    """A copy of the matrix whose ``crunch`` does ``scale`` times the work (and, if given, an
    extra profile ``selfbench``), beside the original so that its images/ folder is found."""
    data = yaml.safe_load(source.read_text())
    if scale != 1.0:
        params = data["workloads"][AFFECTED].setdefault("params", {})
        params["size"] = round(params.get("size", 50000) * scale)
    if profile is not None:
        data["profiles"]["selfbench"] = dict(profile)
    dest.write_text(yaml.safe_dump(data, sort_keys=False))
    return dest


def cell_means(run_dir: Path) -> dict[tuple[str, str], float]:
    from gilmatrix.reports.results import load_run
    from gilmatrix.reports.stats import cell_table

    table = cell_table(load_run(run_dir).frame)
    return {(r.interpreter, r.cell): float(r.mean) for r in table.itertuples(index=False)}


def changes(new: Path, *olds: Path) -> list[dict[str, Any]]:
    """Every cell of run ``new`` against the baseline run(s) ``olds``, as the report decides it
    (two or more baselines: pooled, their run-to-run component measured and added)."""
    from gilmatrix.reports.analysis import compare_with_baselines
    from gilmatrix.reports.results import load_run
    from gilmatrix.reports.stats import cell_table

    a = load_run(new)
    table, _ = compare_with_baselines(a, cell_table(a.frame), [load_run(o) for o in olds])
    return [
        {
            "cell": r.cell,
            "interpreter": r.interpreter,
            "ratio": float(r.ratio),
            "significant": bool(r.significant),
            "below_floor": bool(r.below_floor),
            "p_value": float(r.p_value),
            "floor": float(r.floor),
        }
        for r in table.itertuples(index=False)
    ]


def aa_figures(a: Path, b: Path, kinds: Mapping[str, str], *more: Path) -> dict[str, Any]:
    """B against A; with ``more`` baselines, B against A and them pooled."""
    rows = changes(b, a, *more)
    flagged = [r for r in rows if r["significant"]]
    means_a, means_b = cell_means(a), cell_means(b)
    cpu = [
        abs(means_b[k] / means_a[k] - 1.0)
        for k in means_a
        if k in means_b and kinds.get(k[1].split("/")[0]) == "cpu"
    ]
    return {
        "compared": len(rows),
        "flagged": len(flagged),
        "rate": len(flagged) / len(rows) if rows else None,
        "flagged_cells": [f"{r['cell']} {r['ratio']:.3f}x" for r in flagged],
        "below_floor": sum(r["below_floor"] for r in rows),
        "floor": rows[0]["floor"] if rows else None,
        "cpu_median_abs_delta": statistics.median(cpu) if cpu else None,
        "cpu_cells": len(cpu),
    }


def power_figures(c: Path, b: Path, *more: Path) -> dict[str, Any]:
    rows = changes(c, b, *more)
    affected = [r for r in rows if r["cell"].startswith(f"{AFFECTED}/")]
    others = [r for r in rows if not r["cell"].startswith(f"{AFFECTED}/")]
    detected = [r for r in affected if r["significant"] and r["ratio"] > 1.0]
    return {
        "affected": len(affected),
        "detected": len(detected),
        "power": len(detected) / len(affected) if affected else None,
        "missed": [f"{r['cell']} {r['ratio']:.3f}x" for r in affected if r not in detected],
        "unaffected": len(others),
        "unaffected_flagged": sum(r["significant"] for r in others),
        "ratios": {r["cell"]: round(r["ratio"], 4) for r in affected},
        "floor": rows[0]["floor"] if rows else None,
    }


def leave_one_out(unchanged: Sequence[Path]) -> dict[str, Any]:
    """Each of the unchanged runs against all the others pooled (k = len - 1 baselines): the
    A/A rate over every cell of every run, and which runs' cells were called changes."""
    per_run: dict[str, dict[str, Any]] = {}
    for i, run in enumerate(unchanged):
        rows = changes(run, *(o for j, o in enumerate(unchanged) if j != i))
        per_run[run.name] = {
            "compared": len(rows),
            "flagged": [f"{r['cell']} {r['ratio']:.3f}x" for r in rows if r["significant"]],
        }
    compared = sum(r["compared"] for r in per_run.values())
    flagged = sum(len(r["flagged"]) for r in per_run.values())
    return {
        "baselines": len(unchanged) - 1,
        "compared": compared,
        "flagged": flagged,
        "rate": flagged / compared if compared else None,
        "runs": per_run,
    }


TWINS = {"crunch_twin": "crunch", "sum_squares_twin": "sum_squares"}
PLUS = "crunch_plus"


def within_matrix(source: Path, dest: Path) -> Path:
    """The matrix with the within-run workloads added: twins (same workload, same params) and
    ``crunch_plus`` (crunch with ``POWER_FACTOR`` times its size)."""
    data = yaml.safe_load(source.read_text())
    workloads = data["workloads"]
    for twin, of in TWINS.items():
        workloads[twin] = {"workload": of, "params": dict(workloads[of].get("params") or {})}
    params = dict(workloads[AFFECTED].get("params") or {})
    params["size"] = round(params.get("size", 50000) * POWER_FACTOR)
    workloads[PLUS] = {"workload": AFFECTED, "params": params}
    data["profiles"]["default"]["workloads"] = [*WORKLOADS, *TWINS, PLUS]
    dest.write_text(yaml.safe_dump(data, sort_keys=False))
    return dest


def within_figures(run_dir: Path) -> dict[str, Any]:
    """Twins against their originals and crunch_plus against crunch, cell by cell of one run,
    by the report's test (Welch on process means) and the run's own floor."""
    from gilmatrix.reports.results import load_run, noise_floor
    from gilmatrix.reports.stats import cell_table, compare_cells

    run = load_run(run_dir)
    floor = noise_floor(run.manifest)
    rows = {
        (r.workload, r.executor, int(r.workers)): r for r in cell_table(run.frame).itertuples(index=False)
    }

    def pairs(new: str, old: str) -> list[tuple[str, Any]]:
        out = []
        for (workload, executor, workers), row in rows.items():
            if workload == new and (old, executor, workers) in rows:
                out.append(
                    (f"{executor}/{workers}", compare_cells(row, rows[(old, executor, workers)], floor))
                )
        return out

    twins = [(f"{t}/{c}", cmp) for t, of in TWINS.items() for c, cmp in pairs(t, of)]
    plus = pairs(PLUS, AFFECTED)
    flagged = [f"{c} {cmp.ratio:.3f}x" for c, cmp in twins if cmp.significant]
    detected = [c for c, cmp in plus if cmp.significant and cmp.ratio > 1.0]
    return {
        "floor": floor,
        "twins": len(twins),
        "twins_flagged": flagged,
        "aa_rate": len(flagged) / len(twins) if twins else None,
        "twins_below_floor": sum(cmp.below_floor for _, cmp in twins),
        "affected": len(plus),
        "detected": len(detected),
        "power": len(detected) / len(plus) if plus else None,
        "missed": [f"{c} {cmp.ratio:.3f}x" for c, cmp in plus if c not in detected],
        "ratios": {c: round(cmp.ratio, 4) for c, cmp in plus},
    }


# -- plain pyperf, the reference -----------------------------------------------------------------


def pyperf_reference(
    python: str, cells: Sequence[Mapping[str, Any]], work: Path, log: Callable[[str], None]
) -> dict[str, Any]:
    """Each cell by pyperf's own manager with its default settings (processes, values,
    warm-ups, min time), in ``python`` (a gilmatrix venv: pyperf and the harness importable):
    the wall time and the precision it reached (from the process means)."""
    from gilmatrix.run.schedule import relative_precision

    work.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"cells": {}}
    total = 0.0
    for cell in cells:
        target = work / f"{cell['id'].replace('/', '__')}.json"
        target.unlink(missing_ok=True)
        started = time.perf_counter()
        subprocess.run(
            [
                python,
                "-m",
                "gilmatrix.harness.bench",
                "--cell",
                json.dumps(cell),
                "--quiet",
                "-o",
                str(target),
            ],
            cwd=work,
            check=True,
            timeout=3600,
            capture_output=True,
        )
        wall = time.perf_counter() - started
        total += wall
        import pyperf

        bench = pyperf.Benchmark.load(str(target))
        means = [statistics.fmean(r.values) for r in bench.get_runs() if r.values]
        precision = relative_precision(means)
        out["cells"][cell["id"]] = {
            "seconds": round(wall, 2),
            "processes": len(means),
            "precision": precision,
        }
        log(f"  pyperf {cell['id']}: {wall:.1f} s, {len(means)} processes, ±{(precision or math.nan):.2%}")
    precisions = [c["precision"] for c in out["cells"].values() if c["precision"] is not None]
    out.update(seconds=round(total, 2), precision_median=statistics.median(precisions))
    return out


def planned_cells(matrix: Path, profile: str, interpreter: str, ids: Sequence[str]) -> list[dict[str, Any]]:
    from gilmatrix.matrix.model import load_matrix
    from gilmatrix.matrix.plan import plan_cells

    plan = plan_cells(load_matrix(matrix), profile, [interpreter, *WORKLOADS])
    by_id = {c.id: c for c in plan.cells_for(interpreter)}
    return [
        {k: v for k, v in by_id[i].to_json().items() if k not in ("status", "reason")}
        for i in ids
        if i in by_id
    ]


def run_cli(
    out: Path,
    run_id: str,
    matrix: Path,
    profile: str,
    interpreter: str,
    only: Sequence[str],
    log: Callable[[str], None],
) -> tuple[Any, Path]:
    return sm.gilmatrix_run(
        out=out,
        run_id=run_id,
        profile=profile,
        backend="local",
        only=[interpreter, *only],
        matrix=matrix,
        log=log,
    )


def local_python(out: Path, interpreter: str) -> str:
    """The local backend's venv python of ``interpreter`` (pyperf and the harness in it)."""
    from gilmatrix.backends.base import BackendOptions
    from gilmatrix.backends.local import LocalBackend
    from gilmatrix.matrix.model import Interpreter, parse_interpreter_id

    version, free_threaded = parse_interpreter_id(interpreter)
    env = LocalBackend(BackendOptions(work_dir=out, log=lambda s: None)).prepare(
        Interpreter(interpreter, version, free_threaded)
    )
    return env.python


# -- per-process settings: the default profile's against pyperf's ------------------------------


def process_means(run_dir: Path) -> list[float]:
    """The process means of a one-cell run's cell (its pyperf runs that have values)."""
    import pyperf

    (path,) = [p for p in (run_dir / "cells").glob("*/*.json") if not p.name.endswith(".status.json")]
    (bench,) = pyperf.BenchmarkSuite.load(str(path)).get_benchmarks()
    return [statistics.fmean(r.values) for r in bench.get_runs() if r.values]


def settings_cost(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Each cell's cost of precision on each side, and pyperf's / the default's.

    ``runs``: one entry per run, ``cell``, ``side`` (``default`` or ``pyperf``), ``means`` (its
    process means) and ``per_process`` (seconds of wall time per process). A side's cost is its
    pooled relative variance of a process mean × its mean seconds per process: the time to a
    given precision is proportional to it. Cells missing a side are left out."""
    sides: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for run in runs:
        if len(run["means"]) >= 2:
            sides.setdefault((run["cell"], run["side"]), []).append(run)
    cells: dict[str, dict[str, Any]] = {}
    for cell in dict.fromkeys(run["cell"] for run in runs):
        entry: dict[str, Any] = {}
        for side in ("default", "pyperf"):
            mine = sides.get((cell, side))
            if not mine:
                break
            variances = [
                statistics.variance([m / statistics.fmean(r["means"]) for m in r["means"]]) for r in mine
            ]
            variance = statistics.fmean(variances)
            seconds = statistics.fmean(r["per_process"] for r in mine)
            entry[side] = {"sd": math.sqrt(variance), "per_process": seconds, "cost": variance * seconds}
        else:
            entry["ratio"] = entry["pyperf"]["cost"] / entry["default"]["cost"]
            cells[cell] = entry
    ratios = [c["ratio"] for c in cells.values()]
    geomean = math.exp(statistics.fmean(math.log(r) for r in ratios)) if ratios else None
    return {"cells": cells, "geomean": geomean}
