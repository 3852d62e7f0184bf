"""Selfbench's ``noisy`` section: verdicts on a machine made noisy on purpose, by each estimator.

A seeded burner (``Burner``: one process, bursts of pure-Python work of random length and random
pauses, the same bursts for the same seed) runs during the whole section. Under it, runs of the
within-run matrix (verdicts.within_matrix: ``crunch`` and ``sum_squares``, their identical twins,
and ``crunch_plus`` with 5% more work) alternate between the two orders of a round
(``blocks``: each workload's cells side by side, and ``shuffle``: every cell mixed, the order
before) — blocks, shuffle, blocks, shuffle — so that both meet the same noise. Every run is
then judged by every estimator, on the same processes:

- ``welch``: Welch's test on the raw process means (the report's test until now);
- ``welch+ref``: the same on the process means adjusted by the reference covariate;
- ``paired``: the per-round log ratios of the two cells (paired t), raw;
- ``paired+ref``: the same, adjusted;

each with the run's noise floor (scaled to the means, as the report does) and without it. For
each: the A/A rate (twins called a change), the power (crunch_plus called slower than crunch),
and the median half-width of the comparison intervals (every execution model and worker count
against sequential, of crunch and sum_squares: the report's comparisons).
"""

from __future__ import annotations

import math
import os
import statistics
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

BURNER = r"""
import os, random, signal, sys, time
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
rng = random.Random(int(sys.argv[1]))
parent = os.getppid()
start = time.monotonic(); busy = 0.0
try:
    while os.getppid() == parent:  # the benchmark that started it is gone: stop
        burst = rng.uniform(0.2, 2.0); t0 = time.monotonic(); x = 0
        while time.monotonic() - t0 < burst:
            for i in range(10000): x += i * i
        busy += time.monotonic() - t0
        time.sleep(rng.uniform(0.0, 1.0))
finally:
    total = time.monotonic() - start
    print(f"{busy / max(total, 1e-9):.4f} {total:.1f}", flush=True)
"""


class Burner:
    """A seeded CPU burner on one core, for the duration of a ``with`` block: bursts of 0.2-2 s
    of pure-Python work, pauses of 0-1 s (busy ~70% of one core). ``busy`` and ``seconds`` are
    read when it stops."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.busy: float | None = None
        self.seconds: float | None = None
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> Burner:
        self._process = subprocess.Popen(
            [sys.executable, "-c", BURNER, str(self.seed)], stdout=subprocess.PIPE, text=True
        )
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._process is not None
        self._process.terminate()
        out, _ = self._process.communicate(timeout=30)
        fields = out.split()
        if len(fields) == 2:
            self.busy, self.seconds = float(fields[0]), float(fields[1])


def noisy_matrix(within: Path, dest: Path, order: str, minutes: float) -> Path:
    """The within-run matrix whose default profile has this round ``order`` and run budget."""
    data = yaml.safe_load(within.read_text())
    profile = data["profiles"]["default"]
    profile["order"] = order
    profile["precision"] = {**profile["precision"], "run_minutes": minutes}
    dest.write_text(yaml.safe_dump(data, sort_keys=False))
    return dest


def _welch(adjusted: bool) -> Callable[[Any, Any, float], Any]:
    from gilmatrix.reports.stats import compare_cells, welch_from_stats

    def compare(a: Any, b: Any, floor: float) -> Any:
        if adjusted:
            return compare_cells(a, b, floor)  # the report's: adjusted where it can
        return welch_from_stats(
            a.mean, a.proc_sd, int(a.processes), b.mean, b.proc_sd, int(b.processes), floor
        )

    return compare


def _paired(adjusted: bool) -> Callable[[Any, Any, float], Any]:
    from gilmatrix.reports.stats import paired

    def compare(a: Any, b: Any, floor: float) -> Any:
        return paired(a.series, b.series, floor, adjusted=adjusted)

    return compare


ESTIMATORS = {
    "welch": _welch(False),
    "welch+ref": _welch(True),
    "welch+ref/process": _welch(True),
    "paired": _paired(False),
    "paired+ref": _paired(True),
}


def half_width(cmp: Any) -> float | None:
    """The interval's half-width on the log scale, as a relative figure (±x%)."""
    if not (cmp.ratio_low > 0 and math.isfinite(cmp.ratio_high)):
        return None
    return math.sqrt(cmp.ratio_high / cmp.ratio_low) - 1.0


def judged(
    compare: Callable[[Any, Any, float], Any], pairs: list[tuple[Any, Any]], floor: float, fallback: list[int]
) -> list[Any]:
    """Each pair by ``compare``; one it cannot judge (too few common rounds) by today's test,
    counted in ``fallback``."""
    found = []
    for a, b in pairs:
        cmp = compare(a, b, floor)
        if cmp is None:
            fallback[0] += 1
            cmp = ESTIMATORS["welch"](a, b, floor)
        found.append(cmp)
    return found


def comparisons(table: Any) -> tuple[list[Any], list[Any], list[Any]]:
    """(twins, plus, models): the pairs of cell-table rows each figure judges."""
    from devtools.selfbench.verdicts import AFFECTED, PLUS, TWINS, WORKLOADS

    rows = {(r.workload, r.executor, int(r.workers)): r for r in table.itertuples(index=False)}
    twins = [
        (rows[(t, e, w)], rows[(of, e, w)])
        for t, of in TWINS.items()
        for (name, e, w) in rows
        if name == t and (of, e, w) in rows
    ]
    plus = [
        (rows[k], rows[(AFFECTED, k[1], k[2])]) for k in rows if k[0] == PLUS and (AFFECTED, *k[1:]) in rows
    ]
    models = [
        (rows[k], rows[(k[0], "sequential", 1)])
        for k in rows
        if k[0] in WORKLOADS and k[1] != "sequential" and (k[0], "sequential", 1) in rows
    ]
    return twins, plus, models


# which cell table each estimator reads: "value" (each value adjusted by its own call's
# reference, the report's), "process" (every value of a process by the process' median reference)
TABLE_OF = {"welch": "value", "welch+ref": "value", "welch+ref/process": "process", "paired": "value"}


def _trimmed(values: Sequence[float], cut: float = 0.2) -> float:
    ordered = sorted(values)
    k = int(len(ordered) * cut)
    return statistics.fmean(ordered[k : len(ordered) - k] or ordered)


# a cell's location from its process means: which is the most efficient here is a question of
# data (the "estimators that survive bursts"); twins answer it, their true ratio being 1
LOCATIONS: dict[str, Callable[[Any], float]] = {
    "mean": lambda s: statistics.fmean(s.raw),
    "median": lambda s: statistics.median(s.raw),
    "trimmed 20%": lambda s: _trimmed(s.raw),
    "mean, adjusted": lambda s: statistics.fmean(s.adjusted),
    "median, adjusted": lambda s: statistics.median(s.adjusted),
    "trimmed 20%, adjusted": lambda s: _trimmed(s.adjusted),
}


def twin_errors(twins: Sequence[tuple[Any, Any]]) -> dict[str, list[float]]:
    """Per location estimator, log(twin / original) of every twin pair: 0 is the truth, so the
    root mean square of these is the estimator's error on this run's noise."""
    out: dict[str, list[float]] = {name: [] for name in LOCATIONS}
    for a, b in twins:
        for name, location in LOCATIONS.items():
            la, lb = location(a.series), location(b.series)
            if la > 0 and lb > 0:
                out[name].append(math.log(la / lb))
    return out


def run_figures(run_dir: Path) -> dict[str, Any]:
    """Every estimator, with and without the run's floor, on one run of the noisy matrix."""
    from gilmatrix.reports.results import load_run, noise, noise_floor
    from gilmatrix.reports.stats import cell_table

    run = load_run(run_dir)
    floor = noise_floor(run.manifest)
    frame = run.frame
    per_process = frame.assign(
        reference=frame.groupby(["interpreter", "cell", "run"], observed=True)["reference"].transform(
            "median"
        )
    )
    tables = {"value": cell_table(frame), "process": cell_table(per_process)}
    pairs = {name: comparisons(table) for name, table in tables.items()}
    out: dict[str, Any] = {
        "floor": floor,
        "noise": dict(noise(run.manifest)),
        "order": (run.manifest.get("schedule") or {}).get("order", "shuffle"),
        "processes_median": float(tables["value"]["processes"].median()) if len(tables["value"]) else None,
        "twin_errors": twin_errors(pairs["value"][0]),
        "estimators": {},
    }
    for name, compare in ESTIMATORS.items():
        twins, plus, models = pairs[TABLE_OF.get(name.split(", ")[0], "value")]
        for with_floor in (True, False):
            f = floor if with_floor else 0.0
            fallback = [0]
            t, p, m = (judged(compare, chosen, f, fallback) for chosen in (twins, plus, models))
            widths = [h for h in (half_width(c) for c in m) if h is not None]
            entry = dict(
                fallback=fallback[0],
                twins=len(t),
                twins_flagged=sum(c.significant for c in t),
                plus=len(p),
                plus_detected=sum(c.significant and c.ratio > 1.0 for c in p),
                models=len(m),
                models_tied=sum(not c.significant for c in m),
                half_width_median=statistics.median(widths) if widths else None,
                twin_half_width_median=statistics.median(
                    [h for h in (half_width(c) for c in t) if h is not None] or [math.nan]
                ),
            )
            out["estimators"][f"{name}{'' if with_floor else ', no floor'}"] = entry
    return out


def pooled(figures: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per order and estimator, the runs pooled: A/A rate, power, median half-widths."""
    out: dict[str, dict[str, Any]] = {}
    for run in figures:
        for name, e in run["estimators"].items():
            key = f"{run['order']}: {name}"
            acc = out.setdefault(
                key, {"twins": 0, "flagged": 0, "plus": 0, "detected": 0, "widths": [], "twin_widths": []}
            )
            acc["twins"] += e["twins"]
            acc["flagged"] += e["twins_flagged"]
            acc["plus"] += e["plus"]
            acc["detected"] += e["plus_detected"]
            acc["widths"].append(e["half_width_median"])
            acc["twin_widths"].append(e["twin_half_width_median"])
    for acc in out.values():
        acc["aa_rate"] = acc["flagged"] / acc["twins"] if acc["twins"] else None
        acc["power"] = acc["detected"] / acc["plus"] if acc["plus"] else None
        widths = [w for w in acc.pop("widths") if w is not None]
        twin_widths = [w for w in acc.pop("twin_widths") if w is not None and math.isfinite(w)]
        acc["half_width"] = statistics.median(widths) if widths else None
        acc["twin_half_width"] = statistics.median(twin_widths) if twin_widths else None
    return out


def location_rms(figures: Sequence[Mapping[str, Any]]) -> dict[str, tuple[float, int]]:
    """Per location estimator, over every run's twin pairs: (root mean square error, pairs)."""
    pooled_errors: dict[str, list[float]] = {}
    for run in figures:
        for name, errors in (run.get("twin_errors") or {}).items():
            pooled_errors.setdefault(name, []).extend(errors)
    return {
        name: (math.sqrt(statistics.fmean(e * e for e in errors)), len(errors))
        for name, errors in pooled_errors.items()
        if errors
    }


def load_now() -> float:
    return os.getloadavg()[0]


def matrix_figures(run_dir: Path) -> dict[str, Any]:
    """A whole run (the full default matrix) judged twice on the same processes: on the raw
    means (the report before) and adjusted for the machine's speed (the report now). For each:
    the verdict cards' ties, the median half-width of every execution model against sequential
    and of every cell against the previous release, and how many of those are changes."""
    from gilmatrix.reports.compare import version_changes
    from gilmatrix.reports.results import load_run, noise_floor
    from gilmatrix.reports.stats import cell_table, compare_cells
    from gilmatrix.reports.verdicts import decide

    run = load_run(run_dir)
    floor = noise_floor(run.manifest)
    adjusted = cell_table(run.frame)
    out: dict[str, Any] = {
        "run": run_dir.name,
        "floor": floor,
        "cells": len(adjusted),
        "precision_median": float(adjusted["precision"].median()),
        "processes_median": float(adjusted["processes"].median()),
    }
    for name, table in (("raw", adjusted.drop(columns=["adj_mean", "adj_sd"])), ("adjusted", adjusted)):
        cards = decide(table, None, floor)
        rows = list(table.itertuples(index=False))
        seq = {(r.interpreter, r.workload): r for r in rows if r.executor == "sequential"}
        models = [
            compare_cells(r, seq[(r.interpreter, r.workload)], floor)
            for r in rows
            if r.executor != "sequential" and (r.interpreter, r.workload) in seq
        ]
        widths = [h for h in (half_width(c) for c in models) if h is not None]
        versions = version_changes(table, floor)
        version_widths = [
            math.sqrt(h / lo) - 1.0
            for lo, h in zip(versions["ratio_low"], versions["ratio_high"], strict=True)
            if lo > 0 and math.isfinite(h)
        ]
        out[name] = {
            "cards": len(cards),
            "ties": sum(card.is_tie for card in cards),
            "models": len(models),
            "models_changed": sum(c.significant for c in models),
            "models_half_width": statistics.median(widths) if widths else None,
            "versions": len(versions),
            "versions_changed": int(versions["significant"].fillna(False).astype(bool).sum()),
            "versions_half_width": statistics.median(version_widths) if version_widths else None,
        }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m devtools.selfbench.noisy RUN_DIR...``: the section's figures again, from kept
    run folders (``_build/selfbench/runs/selfbench-<stamp>-noisy-*``), by today's estimators."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m devtools.selfbench.noisy", description=main.__doc__)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    parser.add_argument(
        "--matrix",
        action="store_true",
        help="the runs are whole matrices: raw against adjusted (matrix_figures)",
    )
    args = parser.parse_args(argv)
    if args.matrix:
        for run_dir in args.runs:
            print(json.dumps(matrix_figures(run_dir), indent=1, default=str))
        return 0
    found = []
    for run_dir in args.runs:
        figures = run_figures(run_dir)
        figures["run"] = run_dir.name
        found.append(figures)
        print(
            f"{run_dir.name}: order {figures['order']}, floor {figures['floor']:.1%}, "
            f"median processes {figures['processes_median']}"
        )
    table = pooled(found)
    width = max(len(k) for k in table)
    print(f"{'order: estimator':<{width}}  A/A         power       ±model-vs-seq  ±twins")
    for key, acc in table.items():
        print(
            f"{key:<{width}}  {acc['flagged']:>3}/{acc['twins']:<3} {100 * (acc['aa_rate'] or 0):4.1f}%"
            f"  {acc['detected']:>3}/{acc['plus']:<3} {100 * (acc['power'] or 0):3.0f}%"
            f"  {100 * (acc['half_width'] or math.nan):6.1f}%"
            f"        {100 * (acc['twin_half_width'] or math.nan):5.1f}%"
        )
    errors = location_rms(found)
    print("a cell's location (twins: log ratio, truth 0): root mean square over the pairs")
    for name, (rms, n) in errors.items():
        print(f"  {name:<22} ±{100 * rms:5.2f}%  ({n} pairs)")
    if args.json:
        payload = {"runs": found, "pooled": table, "locations": errors}
        args.json.write_text(json.dumps(payload, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
