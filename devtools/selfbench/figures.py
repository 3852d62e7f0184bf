"""The figures of ``python -m devtools.selfbench``, computed from run folders: pure functions.

Everything here takes data (manifests, pyperf suites, timings) and returns data (figures, table
rows, JSON), so that tests run it on real small runs without measuring anything.

The floor of a run is what pyperf itself spent benchmarking: the sum, over every cell and every
pyperf run (worker process) of the cell, of pyperf's ``duration`` run metadata — the worker's
calibration, warm-ups, timed values and metadata collection, without the start-up of its
processes. The time inside the timed function alone (values and warm-ups × loops) is reported
next to it as ``timed``, and the time pyperf's worker processes lived (spawn to exit, measured by
the harness driver: the floor plus each worker's interpreter start-up, imports and exit) as
``pyperf_processes``: pyperf runs every run in a fresh process by design, so no tool built on it
can go below that; ``wall / pyperf_processes`` is the share that is gilmatrix's own.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyperf

JSON_FORMAT = 1
CPU_KIND = "cpu"  # the harness' workload kind of CPU-bound cells


@dataclass(frozen=True, slots=True)
class CellFigures:
    """One finished cell of a run, as the self-benchmark sees it."""

    interpreter: str
    cell_id: str
    kind: str  # the workload kind: cpu, io, data, native, contention, mixed, startup
    median: float  # seconds: pyperf's median of the cell's values
    duration: float  # seconds: sum of pyperf's ``duration`` over the cell's runs (the floor)
    timed: float  # seconds: sum of (values + warm-ups) × loops × inner loops over its runs
    elapsed: float | None  # seconds: the harness' wall time for the cell (manifest)
    worker_seconds: tuple[float, ...] = ()  # each pyperf worker's life, spawn to exit (manifest)


def bench_floor(bench: pyperf.Benchmark) -> tuple[float, float]:
    """(sum of pyperf ``duration``, time in the timed function) of one benchmark, in seconds."""
    duration = timed = 0.0
    for run in bench.get_runs():
        duration += float(run.get_metadata().get("duration", 0.0))
        loops = run.get_loops() * run.get_inner_loops()
        timed += sum(value * loops for value in run.values)
        inner = run.get_inner_loops()
        timed += sum(warm_loops * inner * value for warm_loops, value in run.warmups)
    return duration, timed


def cell_figures(
    manifest: Mapping[str, Any], suites: Mapping[str, pyperf.BenchmarkSuite]
) -> list[CellFigures]:
    """The finished cells of a run (plan order), from its manifest and its pyperf suites."""
    cells = []
    for cell in manifest["cells"]:
        suite = suites.get(cell["interpreter"])
        if cell["status"] != "ok" or suite is None:
            continue
        try:
            bench = suite.get_benchmark(cell["id"])
        except KeyError:
            continue
        duration, timed = bench_floor(bench)
        cells.append(
            CellFigures(
                interpreter=cell["interpreter"],
                cell_id=cell["id"],
                kind=str(bench.get_metadata().get("gilmatrix_workload_kind", "unknown")),
                median=bench.median(),
                duration=duration,
                timed=timed,
                elapsed=cell.get("elapsed"),
                worker_seconds=tuple(cell.get("worker_seconds", ())),
            )
        )
    return cells


def load_run(run_dir: Path) -> tuple[dict[str, Any], list[CellFigures]]:
    """A run folder's manifest and cell figures."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    suites = {}
    for interp, entry in manifest.get("interpreters", {}).items():
        name = entry.get("results")
        if name and (run_dir / name).is_file():
            suites[interp] = pyperf.BenchmarkSuite.load(str(run_dir / name))
    return manifest, cell_figures(manifest, suites)


# -- the figures ---------------------------------------------------------------------------------


def overhead(wall: float, manifest: Mapping[str, Any], cells: Sequence[CellFigures]) -> dict[str, Any]:
    """Where a run's wall time went, against the floor (pyperf's own benchmarking time)."""
    floor = sum(c.duration for c in cells)
    timed = sum(c.timed for c in cells)
    cells_elapsed = sum(c.elapsed or 0.0 for c in cells)
    stages = dict(manifest.get("stages", {}))
    in_harness = float(stages.get("run", 0.0))
    workers = sum(len(c.worker_seconds) for c in cells)
    # Only when every cell has its workers' times (runs before the driver recorded them do not).
    processes = (
        sum(sum(c.worker_seconds) for c in cells) if cells and all(c.worker_seconds for c in cells) else None
    )
    return {
        "wall": round(wall, 3),
        "floor": round(floor, 3),
        "timed": round(timed, 3),
        "ratio": round(wall / floor, 3) if floor > 0 else None,
        "ratio_timed": round(wall / timed, 3) if timed > 0 else None,
        "cells": len(cells),
        "interpreters": sorted({c.interpreter for c in cells}),
        # the three places the rest of the time goes
        "cell_processes": round(cells_elapsed - floor, 3),  # pyperf's process start-ups, imports
        "harness_loop": round(in_harness - cells_elapsed, 3),  # containers, harness start, merges
        "outside_harness": round(wall - in_harness, 3),  # CLI start-up, plan, prepare, report-free
        "per_cell_process_overhead": round((cells_elapsed - floor) / len(cells), 3) if cells else None,
        # pyperf's process model: each worker's life, and what it cost beyond its runs' duration
        "pyperf_processes": round(processes, 3) if processes else None,
        "ratio_processes": round(wall / processes, 3) if processes else None,
        "workers": workers,
        "per_worker_start_exit": round((processes - floor) / workers, 3) if processes and workers else None,
        "driver": round(cells_elapsed - processes, 3) if processes else None,
        "stages": stages,
    }


def paired_ratios(
    base: Sequence[CellFigures], other: Sequence[CellFigures], interpreter: str
) -> list[dict[str, Any]]:
    """other / base of the median of every cell of ``interpreter`` both runs finished."""
    mine = {c.cell_id: c for c in base if c.interpreter == interpreter}
    pairs = []
    for cell in other:
        if cell.interpreter != interpreter or cell.cell_id not in mine:
            continue
        first = mine[cell.cell_id]
        if first.median > 0:
            pairs.append(
                {
                    "cell": cell.cell_id,
                    "kind": first.kind,
                    "base": first.median,
                    "other": cell.median,
                    "ratio": cell.median / first.median,
                }
            )
    return pairs


def fidelity(
    host: Sequence[CellFigures],
    container: Sequence[CellFigures],
    interpreter: str,
    host_again: Sequence[CellFigures] | None = None,
    container_again: Sequence[CellFigures] | None = None,
) -> dict[str, Any]:
    """Container / host time per cell of the same interpreter build; medians, all and CPU-bound.

    With a second run of each side (made in the order host, container, host, container, so that
    a drift of the machine weighs on both), a cell's ratio is the geometric mean of the two
    pairs' ratios, and the same-side repeats (host / host, container / container) give the noise
    that a container/host difference has to stand out of.
    """
    pairs = paired_ratios(host, container, interpreter)
    repeats: dict[str, list[dict[str, Any]]] = {}
    if host_again is not None and container_again is not None:
        second = {p["cell"]: p["ratio"] for p in paired_ratios(host_again, container_again, interpreter)}
        pairs = [
            {
                **p,
                "ratio_first": p["ratio"],
                "ratio_second": second[p["cell"]],
                "ratio": (p["ratio"] * second[p["cell"]]) ** 0.5,
            }
            for p in pairs
            if p["cell"] in second
        ]
        repeats = {
            "host": paired_ratios(host, host_again, interpreter),
            "container": paired_ratios(container, container_again, interpreter),
        }
    cpu = [p["ratio"] for p in pairs if p["kind"] == CPU_KIND]
    figures: dict[str, Any] = {
        "interpreter": interpreter,
        "cells": len(pairs),
        "median_ratio": _median([p["ratio"] for p in pairs]),
        "cpu_cells": len(cpu),
        "cpu_median_ratio": _median(cpu),
        "per_cell": [{**p, **{k: round(v, 4) for k, v in p.items() if k.startswith("ratio")}} for p in pairs],
    }
    for side, same in repeats.items():  # the A/A noise: |Δ| between two runs of one side
        deltas = [abs(p["ratio"] - 1.0) for p in same if p["kind"] == CPU_KIND]
        figures[f"{side}_repeat_cpu_median_abs_delta"] = _median(deltas)
    return figures


def stability(first: Sequence[CellFigures], second: Sequence[CellFigures]) -> dict[str, Any]:
    """|Δ| of every cell's median between two runs, by workload kind: cells, median, worst."""
    before = {(c.interpreter, c.cell_id): c for c in first}
    deltas: dict[str, list[tuple[float, str]]] = {}
    for cell in second:
        prior = before.get((cell.interpreter, cell.cell_id))
        if prior is None or prior.median <= 0:
            continue
        delta = abs(cell.median / prior.median - 1.0)
        deltas.setdefault(cell.kind, []).append((delta, f"{cell.interpreter} {cell.cell_id}"))
    by_kind = {}
    for kind in sorted(deltas):
        values = deltas[kind]
        worst = max(values)
        by_kind[kind] = {
            "cells": len(values),
            "median_abs_delta": _median([d for d, _ in values]),
            "worst_abs_delta": worst[0],
            "worst_cell": worst[1],
        }
    return by_kind


def _median(values: Iterable[float]) -> float | None:
    values = list(values)
    return statistics.median(values) if values else None


# -- the table -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """``value <= bound`` (op "max"), ``value >= bound`` (op "min") or ``|value - 1| <= bound``
    (op "near1", for ratios)."""

    op: str
    bound: float
    text: str

    def met(self, value: float) -> bool:
        slack = 1e-9  # 0.97 is within ±3% although abs(0.97 - 1.0) is 0.030000000000000027
        if self.op == "max":
            return value <= self.bound + slack
        if self.op == "min":
            return value >= self.bound - slack
        if self.op == "near1":
            return abs(value - 1.0) <= self.bound + slack
        raise ValueError(self.op)


TARGETS = {
    "overhead": Target("max", 1.10, "<= 1.10x"),
    "fidelity": Target("near1", 0.03, "1.00 ± 3%"),
    "stability_cpu": Target("max", 3.0, "<= 3%"),
    "image_unchanged": Target("max", 5.0, "<= 5 s"),
    "image_harness": Target("max", 30.0, "<= 30 s"),
    "report_seconds_10000": Target("max", 10.0, "<= 10 s"),
    "report_mb_10000": Target("max", 5.0, "<= 5 MB"),
    "step_found": Target("min", 90.0, ">= 90%"),
    "flat_flagged": Target("max", 5.0, "<= 5%"),
    "site_seconds": Target("max", 15.0, "<= 15 s"),
    "site_mb": Target("max", 20.0, "<= 20 MB"),
    "site_filter_ms": Target("max", 1000.0, "< 1 s"),
    "aa_rate": Target("max", 5.0, "<= 5%"),
    "power": Target("min", 90.0, ">= 90%"),
    "pyperf_time": Target("max", 0.5, "<= 0.50x"),
    "matrix_minutes": Target("max", 30.0, "<= 30 min"),
}


@dataclass(frozen=True, slots=True)
class Row:
    section: str
    figure: str
    value: float | None
    unit: str
    target: str = ""  # the target's text, "" when the figure has none
    status: str = ""  # met | missed | not measured | "" (no target)
    note: str = ""

    @property
    def key(self) -> str:
        return f"{self.section}: {self.figure}"


def row(
    section: str, figure: str, value: float | None, unit: str, target: str | None = None, note: str = ""
) -> Row:
    """A table row; ``target`` names an entry of TARGETS, whose verdict the row carries."""
    if target is None:
        return Row(section, figure, value, unit, note=note)
    goal = TARGETS[target]
    status = "not measured" if value is None else ("met" if goal.met(value) else "missed")
    return Row(section, figure, value, unit, goal.text, status, note)


def overhead_rows(label: str, figures: Mapping[str, Any], note: str = "") -> list[Row]:
    ratio = figures.get("ratio")
    per = figures.get("per_cell_process_overhead")
    detail = (
        f"wall {figures['wall']:.1f} s / floor {figures['floor']:.1f} s "
        f"({figures['cells']} cells, {len(figures['interpreters'])} interp.); "
        f"rest: cell processes {figures['cell_processes']:.1f} s"
        + (f" ({per:.2f} s/cell)" if per is not None else "")
        + f", harness loop {figures['harness_loop']:.1f} s, "
        f"outside harness {figures['outside_harness']:.1f} s"
    )
    rows = [
        row(
            "overhead",
            f"{label} wall/floor",
            ratio,
            "x",
            "overhead",
            "; ".join(x for x in (detail, note) if x),
        ),
        row(
            "overhead",
            f"{label} wall/timed",
            figures.get("ratio_timed"),
            "x",
            note="floor = only values+warm-ups x loops",
        ),
    ]
    if figures.get("ratio_processes") is not None:
        rows.append(
            row(
                "overhead",
                f"{label} wall/pyperf processes",
                figures["ratio_processes"],
                "x",
                note=(
                    f"floor + pyperf's process model: {figures['workers']} worker processes lived "
                    f"{figures['pyperf_processes']:.1f} s, {figures['per_worker_start_exit']:.3f} s "
                    f"each beyond their runs (interpreter start, imports, exit); the driver's own "
                    f"work per cell {figures['driver']:.1f} s in all"
                ),
            )
        )
    return rows


def fidelity_rows(label: str, figures: Mapping[str, Any]) -> list[Row]:
    ratios = [p["ratio"] for p in figures["per_cell"]]
    spread = f"per cell {min(ratios):.3f}…{max(ratios):.3f}" if ratios else "no paired cells"
    twice = any("ratio_second" in p for p in figures["per_cell"])
    how = "geometric mean of 2 host/container pairs run H C H C, " if twice else ""
    cpu = [p for p in figures["per_cell"] if p["kind"] == CPU_KIND]
    cpu_note = f"median of {figures['cpu_cells']} cells"
    if twice and cpu:
        first = _median(p["ratio_first"] for p in cpu)
        second = _median(p["ratio_second"] for p in cpu)
        cpu_note += f"; pair 1 {first:.3f}, pair 2 {second:.3f}"
    rows = [
        row(
            "fidelity",
            f"{label} container/host, all cells",
            figures["median_ratio"],
            "x",
            "fidelity",
            f"{how}median of {figures['cells']} cells, {spread}",
        ),
        row(
            "fidelity",
            f"{label} container/host, CPU-bound",
            figures["cpu_median_ratio"],
            "x",
            "fidelity",
            cpu_note,
        ),
    ]
    for side in ("host", "container"):
        noise = figures.get(f"{side}_repeat_cpu_median_abs_delta")
        if noise is not None:
            rows.append(
                row(
                    "fidelity",
                    f"{label} {side}/{side} repeat, CPU-bound median |Δ|",
                    round(100 * noise, 2),
                    "%",
                    note="the noise floor: the same side run twice",
                )
            )
    return rows


def stability_rows(label: str, by_kind: Mapping[str, Mapping[str, Any]]) -> list[Row]:
    rows = []
    for kind, figures in by_kind.items():
        median = figures["median_abs_delta"]
        rows.append(
            row(
                "stability",
                f"{label} {kind} median |Δ|",
                None if median is None else round(100 * median, 2),
                "%",
                "stability_cpu" if kind == CPU_KIND else None,
                f"{figures['cells']} cells; worst {100 * figures['worst_abs_delta']:.1f}% "
                f"({figures['worst_cell']})",
            )
        )
    return rows


def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "x":
        return f"{value:.3f}x"
    if unit in ("s", "%"):
        return f"{value:.2f} {unit}" if unit == "s" else f"{value:.2f}%"
    if unit == "MB":
        return f"{value:.2f} MB"
    return f"{value:g} {unit}".strip()


def format_table(rows: Sequence[Row], previous: Mapping[str, Row] | None = None) -> str:
    """The one table: section, figure, value, target, met/missed, (previous value), note."""
    head = ["section", "figure", "value", "target", "status"]
    if previous is not None:
        head.append("previous")
    head.append("note")
    lines = []
    for r in rows:
        cells = [r.section, r.figure, format_value(r.value, r.unit), r.target, r.status]
        if previous is not None:
            old = previous.get(r.key)
            cells.append(format_value(old.value, old.unit) if old else "")
        cells.append(r.note)
        lines.append(cells)
    widths = [max(len(str(x)) for x in column) for column in zip(head, *lines, strict=True)]
    widths[-1] = 0  # the note runs on
    out = [_line(head, widths), _line(["-" * w for w in widths[:-1]] + ["----"], widths)]
    out += [_line(cells, widths) for cells in lines]
    return "\n".join(out)


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()


def summary(rows: Sequence[Row]) -> str:
    met = sum(r.status == "met" for r in rows)
    missed = [r.key for r in rows if r.status == "missed"]
    text = f"targets: {met} met, {len(missed)} missed"
    return text + (": " + "; ".join(missed) if missed else "")


def to_json(rows: Sequence[Row], *, context: Mapping[str, Any], details: Mapping[str, Any]) -> dict[str, Any]:
    """The table as JSON: rows, plus how it was made and the per-cell figures behind it."""
    return {
        "format": JSON_FORMAT,
        "tool": "gilmatrix selfbench",
        **context,
        "rows": [{**asdict(r), "key": r.key} for r in rows],
        "details": dict(details),
    }


def rows_from_json(data: Mapping[str, Any]) -> dict[str, Row]:
    """The rows of a previous selfbench JSON, by key (for the `previous` column)."""
    if data.get("format") != JSON_FORMAT:
        raise ValueError(f"selfbench JSON format {data.get('format')!r}, expected {JSON_FORMAT}")
    fields = Row.__dataclass_fields__
    rows = [Row(**{k: v for k, v in item.items() if k in fields}) for item in data["rows"]]
    return {r.key: r for r in rows}
