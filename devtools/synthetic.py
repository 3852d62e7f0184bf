"""SYNTHETIC result sets: genuine pyperf files holding made-up numbers.

Nothing here is a measurement. The numbers come from a toy cost model (below) plus seeded noise,
so that tests and the report benchmark can exercise the loader, the statistics, the verdict
sentences and the page on inputs whose right answers are known in advance - including the cases
real runs produce rarely on demand: a tie, an unstable cell, a failed or skipped cell, an
interpreter that never ran. Every file written here says so in its metadata
(``gilmatrix_synthetic``) and in the manifest's ``tool`` entry.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyperf

from gilmatrix.harness.contract import CellId, classify, model_of
from gilmatrix.harness.workloads import WORKLOADS
from gilmatrix.run.manifest import new_manifest, write_manifest

KINDS = {"crunch": "cpu", "fetch": "io", "sum_squares": "data"}
PARAMS = {
    "crunch": {"tasks": 8, "size": 20000},
    "fetch": {"tasks": 8, "wait_ms": 10},
    "sum_squares": {"tasks": 8, "batch": 10000},
}
CORES = 4  # the toy machine's cores: parallel executors stop scaling past this


@dataclass(frozen=True, slots=True)
class SyntheticRun:
    """What to fabricate: which interpreters, workloads, executors, worker counts, how noisy."""

    interpreters: Sequence[str] = ("3.12", "3.13", "3.13t", "3.14", "3.14t")
    workloads: Sequence[str] = ("crunch", "fetch", "sum_squares")
    executors: Sequence[str] = ("sequential", "threads", "processes")
    workers: Sequence[int] = (1, 2, 4)
    runs: int = 2  # pyperf worker processes per cell
    values: int = 5  # values per process
    noise: float = 0.02  # relative standard deviation of the values
    # per-run CPU time, parallelism, class and memory, as the harness writes them since it
    # measures them; False writes results as older harness versions did (wall time only)
    cpu_metadata: bool = True
    seed: int = 1
    run_id: str = "synthetic"
    # interpreter id -> (status, reason) for interpreters that did not run
    not_run: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    # (interpreter, cell id) -> (status, reason, output tail) for cells without a result
    cell_failures: Mapping[tuple[str, str], tuple[str, str, str | None]] = field(default_factory=dict)
    # (interpreter, cell id) -> multiplier of the noise, to force overlapping intervals
    noisy_cells: Mapping[tuple[str, str], float] = field(default_factory=dict)
    # (interpreter, cell id) -> multiplier of the modelled time (a regression, an outlier...)
    slow_cells: Mapping[tuple[str, str], float] = field(default_factory=dict)
    workload_kinds: Mapping[str, str] = field(default_factory=dict)  # extra workload -> kind


def free_threaded(interpreter: str) -> bool:
    return interpreter.endswith("t")


def model_seconds(interpreter: str, kind: str, executor: str, workers: int, tasks: int = 8) -> float:
    """Toy cost model: the shape of the seed's claims, with made-up constants."""
    ft = free_threaded(interpreter)
    minor = int(interpreter.rstrip("t").split(".")[1])
    speed = 1.0 - 0.03 * (minor - 10)  # each release a little faster
    if ft:
        speed *= 1.4 if minor <= 13 else 1.08  # single-thread overhead of the free-threaded build
    per_task = {"cpu": 1.2e-3, "io": 10e-3, "data": 0.8e-3}.get(kind, 1e-3)
    # a wait does not get faster with the interpreter
    per_task_time = per_task if kind == "io" else per_task * speed
    sequential = tasks * per_task_time
    parallel = min(workers, CORES, tasks)
    if executor == "sequential":
        return sequential
    if executor in ("threads", "asyncio"):
        if kind == "io":
            return math.ceil(tasks / min(workers, tasks)) * per_task + 0.05e-3 * tasks
        if ft or executor == "asyncio":
            return sequential / (parallel if ft else 1) * 1.05
        return sequential * (1.01 + 0.02 * (workers - 1))  # GIL: time slices, a little contention
    # processes, interpreters: true parallelism, paying dispatch and (for data) pickling
    dispatch = 0.15e-3 * tasks
    shipping = 0.9e-3 * tasks if kind == "data" and executor == "processes" else 0.0
    if kind == "io":
        return math.ceil(tasks / min(workers, tasks)) * per_task + dispatch
    return sequential / parallel + dispatch + shipping


def model_parallelism(interpreter: str, kind: str, executor: str, workers: int, tasks: int = 8) -> float:
    """Toy CPU/wall of a cell: cores kept busy, in the same made-up world as model_seconds."""
    if kind == "io":
        return 0.05
    parallel = min(workers, CORES, tasks)
    if executor == "sequential":
        return 1.0
    if executor in ("threads", "asyncio"):
        return parallel * 0.95 if free_threaded(interpreter) or kind == "native" else 1.0
    return parallel * 0.9


def cell_ids(workload: str, executors: Iterable[str], workers: Iterable[int]) -> list[tuple[str, int]]:
    """(executor, workers) pairs: sequential only at one worker, as the planner does."""
    pairs: list[tuple[str, int]] = []
    for executor in executors:
        counts = [1] if executor == "sequential" else list(workers)
        pairs.extend((executor, count) for count in counts)
    return pairs


def facts_for(interpreter: str) -> dict[str, Any]:
    minor = int(interpreter.rstrip("t").split(".")[1])
    ft = free_threaded(interpreter)
    version = f"3.{minor}.{2 if minor < 15 else 0}"
    config = "'--enable-optimizations' '--with-lto'" + (" '--disable-gil'" if ft else "")
    return {
        "version": version,
        "sys_version": f"{version} (synthetic, Nov 25 2026, 12:00:00) [GCC 12.2.0]",
        "config_args": config,
        "py_gil_disabled": int(ft),
        "gil_enabled": None if minor < 13 else (not ft),
        "executable": f"/opt/python/{interpreter}/bin/python3",
    }


def _benchmark(
    interp: str, workload: str, kind: str, executor: str, workers: int, spec: SyntheticRun, rng: random.Random
) -> pyperf.Benchmark:
    facts = facts_for(interp)
    cell = str(CellId(workload, executor, workers))
    params = PARAMS.get(workload, {"tasks": 8})
    mean = model_seconds(interp, kind, executor, workers, int(params["tasks"]))
    mean *= spec.slow_cells.get((interp, cell), 1.0)
    sigma = spec.noise * spec.noisy_cells.get((interp, cell), 1.0)
    gil = facts["gil_enabled"]
    metadata: dict[str, Any] = {
        "name": cell,
        "loops": 1,
        "gilmatrix_synthetic": "yes",
        "gilmatrix_interpreter": interp,
        "gilmatrix_workload": workload,
        "gilmatrix_implementation": workload,
        "gilmatrix_workload_kind": kind,
        "gilmatrix_executor": executor,
        "gilmatrix_workers": workers,
        "gilmatrix_params": json.dumps(params, sort_keys=True),
        "gilmatrix_tasks": int(params["tasks"]),
        "gilmatrix_pool_in_timing": "no",
        "gilmatrix_py_gil_disabled": facts["py_gil_disabled"],
        "gilmatrix_gil_enabled": "n/a" if gil is None else str(gil).lower(),
        "gilmatrix_config_args": facts["config_args"],
        "gilmatrix_sys_version": facts["sys_version"],
        "python_version": f"{facts['version']} (64-bit)",
        "python_implementation": "cpython",
        "cpu_model_name": "Synthetic CPU @ 3.0GHz",
        "cpu_count": CORES,
        "platform": "Linux-6.1.0-synthetic-x86_64-with-glibc2.36",
        "hostname": "synthetic-host",
    }
    if executor == "processes":
        metadata["gilmatrix_start_method"] = "forkserver"
    metadata["gilmatrix_model"] = model_of(executor)
    if executor == "asyncio":
        metadata["gilmatrix_async_mode"] = "native" if kind == "io" else "to_thread"
    parallelism = model_parallelism(interp, kind, executor, workers, int(params["tasks"]))
    runs = []
    for _ in range(spec.runs):
        # multiplicative noise: timings are positive and skewed, like real ones
        values = [mean * math.exp(rng.gauss(0.0, sigma)) for _ in range(spec.values)]
        run_md = dict(metadata)
        if spec.cpu_metadata:
            busy = parallelism * math.exp(rng.gauss(0.0, sigma))
            run_md.update(
                {
                    "gilmatrix_cpu_time": busy * sum(values) / len(values),
                    "gilmatrix_parallelism": round(busy, 4),
                    "gilmatrix_class": classify(kind, busy),
                    "mem_max_rss": int(
                        30e6 * (1 + 0.01 * rng.random())
                        + (8e6 * workers if executor == "interpreters" else 0)
                    ),
                }
            )
            if executor.startswith("processes"):
                run_md["gilmatrix_children_max_rss"] = int(22e6 * workers)
        runs.append(
            pyperf.Run(values, warmups=[(1, values[0] * 1.1)], metadata=run_md, collect_metadata=False)
        )
    return pyperf.Benchmark(runs)


def write_run(run_dir: Path, spec: SyntheticRun = SyntheticRun()) -> Path:
    """Write ``<interpreter>.json`` suites and ``manifest.json`` into run_dir; returns run_dir."""
    run_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(spec.seed)
    kinds = {**KINDS, **spec.workload_kinds}
    interpreters: dict[str, Any] = {}
    cells: list[dict[str, Any]] = []
    for interp in spec.interpreters:
        status, reason = spec.not_run.get(interp, ("ran", None))
        benchmarks = []
        for workload in spec.workloads:
            for executor, workers in cell_ids(workload, spec.executors, spec.workers):
                cell = str(CellId(workload, executor, workers))
                entry = {
                    "interpreter": interp,
                    "id": cell,
                    "workload": workload,
                    "executor": executor,
                    "workers": workers,
                    "status": "ok",
                    "reason": None,
                    "elapsed": 1.0,
                    "output_tail": None,
                }
                if status != "ran":
                    entry.update(status="skipped", reason=reason, elapsed=None)
                elif (interp, cell) in spec.cell_failures:
                    cstatus, creason, tail = spec.cell_failures[(interp, cell)]
                    entry.update(status=cstatus, reason=creason, output_tail=tail)
                else:
                    benchmarks.append(
                        _benchmark(interp, workload, kinds.get(workload, "cpu"), executor, workers, spec, rng)
                    )
                cells.append(entry)
        results = None
        if benchmarks:
            results = f"{interp}.json"
            pyperf.BenchmarkSuite(benchmarks).dump(str(run_dir / results), replace=True)
        ran = status == "ran"
        interpreters[interp] = {
            "status": status,
            "reason": reason,
            "results": results,
            "environment": {
                "backend": "docker",
                "python": f"/opt/python/{interp}/bin/python3",
                "image": f"gilmatrix/cpython:{interp}-synthetic",
                "image_id": "sha256:" + "0" * 64,
                "facts": facts_for(interp),
            }
            if ran
            else None,
            "load_before": [0.2, 0.3, 0.3] if ran else None,
            "load_after": [1.9, 1.1, 0.6] if ran else None,
            "elapsed": 12.5 if ran else None,
        }
    manifest = new_manifest(
        run_id=spec.run_id,
        tool={"synthetic": True},
        started="2026-11-25T18:15:00+00:00",
        finished="2026-11-25T18:17:30+00:00",
        state="complete" if not spec.cell_failures and not spec.not_run else "partial",
        matrix={
            "path": "matrix.yaml",
            "sha256": "f" * 64,
            "profile": "synthetic",
            "settings": {"processes": spec.runs, "values": spec.values, "warmups": 1, "timeout": 60},
        },
        workloads={
            w: {"description": WORKLOADS[w].description, "kind": WORKLOADS[w].kind, "implementation": w}
            for w in spec.workloads
            if w in WORKLOADS
        },
        backend={"name": "docker"},
        host={
            "hostname": "synthetic-host",
            "platform": "Linux-6.1.0-synthetic-x86_64",
            "machine": "x86_64",
            "cpu_model": "Synthetic CPU @ 3.0GHz",
            "cpu_count": CORES,
            "kernel": "6.1.0-synthetic",
            "python": "3.11.7",
        },
        stages={"plan": 0.01, "prepare": 3.2, "run": 140.0, "merge": 0.2},
        interpreters=interpreters,
        cells=cells,
    )
    write_manifest(run_dir, manifest)
    return run_dir
