"""The measuring side of ``python -m devtools.selfbench``: gilmatrix commands in child processes,
timed from the outside, each reporting its own peak RSS.

Every command runs as ``python -m devtools.selfbench.measure cli ARGS...``: the real CLI
(``gilmatrix.cli.main``) in a process that, on its way out, writes ``getrusage`` of itself (the
host process' peak RSS) and of its waited-for descendants (harness, pyperf workers, docker
client: the largest of them) to a file. The report scale is measured the same way by
``... report N WORK``: a synthetic N-cell run (devtools.synthetic), then its report, timed as
devtools.report_bench times it (the page only: no chart image files; the JavaScript bundle is built
before the clock starts).
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

RUSAGE_ENV = "GILMATRIX_SELFBENCH_RUSAGE"
ROOT = Path(__file__).resolve().parents[2]  # the repository (or the copy of it) running


@dataclass(frozen=True, slots=True)
class Measured:
    """A child command: its wall time, exit code, peak RSS (bytes) and output."""

    command: tuple[str, ...]
    wall: float
    returncode: int
    self_rss: int | None  # the host process itself
    children_rss: int | None  # its largest waited-for descendant
    stdout: str
    stderr: str

    def tail(self, lines: int = 5) -> str:
        return " | ".join(self.stderr.strip().splitlines()[-lines:])


def run_measured(
    args: Sequence[str], *, cwd: Path = ROOT, timeout: float = 3600, log: Any = None
) -> Measured:
    """``python -m devtools.selfbench.measure ARGS`` in ``cwd``, timed, with its peak RSS."""
    with tempfile.NamedTemporaryFile(prefix="selfbench-rusage-", suffix=".json", delete=False) as f:
        rusage_path = f.name
    command = (sys.executable, "-m", "devtools.selfbench.measure", *args)
    env = {**os.environ, RUSAGE_ENV: rusage_path}
    env.pop("PYTHONPATH", None)  # the copy under test must import its own package
    if log:
        log(f"$ {' '.join(args)}")
    started = time.perf_counter()
    proc = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    wall = time.perf_counter() - started
    try:
        usage = json.loads(Path(rusage_path).read_text() or "{}")
    except (OSError, ValueError):
        usage = {}
    finally:
        Path(rusage_path).unlink(missing_ok=True)
    return Measured(
        command, wall, proc.returncode, usage.get("self"), usage.get("children"), proc.stdout, proc.stderr
    )


def _write_rusage() -> None:
    path = os.environ.get(RUSAGE_ENV)
    if not path:
        return
    # ru_maxrss is in KiB on Linux, and a process' starts at its parent's size (Linux carries it
    # across fork and exec): the process' own high-water mark is VmHWM, where /proc has it
    usage = {
        "self": _own_peak() or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "children": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
    }
    Path(path).write_text(json.dumps(usage))


def _own_peak() -> int | None:
    """This process' peak resident size in bytes (VmHWM), or None without /proc."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    found = re.search(r"^VmHWM:\s+(\d+)\s+kB", status, re.M)
    return int(found.group(1)) * 1024 if found else None


# -- the commands --------------------------------------------------------------------------------


def gilmatrix_run(
    *,
    out: Path,
    run_id: str,
    profile: str,
    backend: str,
    only: Sequence[str] = (),
    sources: Path | None = None,
    matrix: Path | None = None,
    log: Any = None,
) -> tuple[Measured, Path]:
    """``gilmatrix run`` of one profile and backend; the measurement and the run folder."""
    args = ["cli", "run", "--profile", profile, "--backend", backend, "--out", str(out), "--run-id", run_id]
    for item in only:
        args += ["--only", item]
    if sources:
        args += ["--sources", str(sources)]
    if matrix:
        args += ["--matrix", str(matrix)]
    return run_measured(args, log=log), out / "results" / run_id


def gilmatrix_report(run_dir: Path, out: Path, log: Any = None) -> Measured:
    return run_measured(["cli", "report", str(run_dir), "--out", str(out)], log=log)


def gilmatrix_images(
    interpreter: str, *, out: Path, sources: Path | None, cwd: Path = ROOT, log: Any = None
) -> tuple[Measured, dict[str, Any] | None]:
    """``gilmatrix images --only INTERPRETER --json`` run from ``cwd``; the result entry."""
    args = [
        "cli",
        "images",
        "--only",
        interpreter,
        "--out",
        str(out),
        "--json",
        "--matrix",
        str(cwd / "matrix.yaml"),
    ]
    if sources:
        args += ["--sources", str(sources)]
    measured = run_measured(args, cwd=cwd, log=log)
    start = measured.stdout.find("\n[")
    try:
        entries = json.loads(measured.stdout[start + 1 :]) if start >= 0 else []
    except ValueError:
        entries = []
    return measured, (entries[0] if entries else None)


# What a pyperf worker does before its first run, step by step: each step's command includes the
# previous ones, so the differences are each step's own cost.
START_UP_STEPS = (
    ("interpreter", "pass"),
    ("pyperf", "import pyperf"),
    ("harness", "import gilmatrix.harness.bench"),
)


def start_up_costs(python: str, repeat: int = 7, pythonpath: str | None = None) -> dict[str, float]:
    """Median seconds of ``python -c STEP`` for each of START_UP_STEPS, with the environment a
    pyperf worker gets (gilmatrix's venvs reach the harness through a .pth)."""
    from gilmatrix.harness.drive import worker_environ

    env = worker_environ()
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    costs = {}
    for name, code in START_UP_STEPS:
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            # no timeout: Popen.wait(timeout) polls, in sleeps that would quantise these times
            subprocess.run(
                [python, "-c", code],
                env=env,
                cwd=tempfile.gettempdir(),
                check=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
            )
            times.append(time.perf_counter() - start)
        costs[name] = statistics.median(times)
    return costs


def copy_with_harness_change(dest: Path, stamp: str) -> Path:
    """A copy of the repository whose only difference is a comment added to a harness file.

    The image tag hashes the harness files' contents, so the copy's image differs from the
    original's in the harness input alone; a unique ``stamp`` makes every measurement a real
    rebuild of the last layers instead of a hit of Docker's layer cache.
    """

    def ignore(directory: str, names: list[str]) -> list[str]:
        skip = {"_build", ".git", ".nox", "__pycache__", ".pytest_cache", ".ruff_cache"}
        return [n for n in names if n in skip or n.endswith(".egg-info")]

    shutil.copytree(ROOT, dest, ignore=ignore, symlinks=True)
    target = dest / "runner" / "harness" / "workloads.py"
    with open(target, "a", encoding="utf-8") as handle:
        handle.write(f"# selfbench harness-only change {stamp}\n")
    # `python -m gilmatrix...` run in the copy imports the copy's runner/ (the current folder
    # comes first on sys.path), not the editable install's.
    (dest / "gilmatrix").symlink_to("runner", target_is_directory=True)
    return dest


def current_images(interpreters: Sequence[str], *, out: Path, sources: Path | None) -> dict[str, str | None]:
    """For each interpreter id: None when its image is up to date, else why it is not.

    Runs the image builder with Docker's build step replaced by a refusal, so nothing is built:
    a docker run must not start compiling CPython in the middle of a timing (images out of date
    are left out of the runs, and the table says so).
    """
    from gilmatrix.cli import env_overrides
    from gilmatrix.images import docker as dk
    from gilmatrix.images.build import ImageBuilder, build_images
    from gilmatrix.matrix.model import load_matrix

    def refuse(*args: Any, **kwargs: Any) -> float:
        raise dk.DockerError("image out of date (would be built)")

    matrix = load_matrix(ROOT / "matrix.yaml", env_overrides())
    wanted = [i for i in matrix.interpreters if i.id in interpreters]
    builder = ImageBuilder(work_dir=out, sources=sources, log=lambda message: None)
    saved, dk.build = dk.build, refuse
    try:
        results = build_images(wanted, builder)
    finally:
        dk.build = saved
    return {r.interpreter_id: None if r.ok else (r.error or r.status).split(": ", 1)[-1] for r in results}


def matrix_interpreters() -> list[str]:
    from gilmatrix.cli import env_overrides
    from gilmatrix.matrix.model import load_matrix

    return [i.id for i in load_matrix(ROOT / "matrix.yaml", env_overrides()).interpreters]


def docker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)


def restore_tags(original_tag: str, new_tag: str | None) -> list[str]:
    """After a build from the changed copy: the floating tag back on the original image, the
    changed image untagged. Returns what was done, for the log."""
    done = []
    floating = original_tag.rsplit("-", 1)[0]  # gilmatrix/cpython:3.12-prefix
    if docker("tag", original_tag, floating).returncode == 0:
        done.append(f"{floating} -> {original_tag}")
    if new_tag and new_tag != original_tag and docker("rmi", new_tag).returncode == 0:
        done.append(f"removed {new_tag}")
    return done


# -- the child side ------------------------------------------------------------------------------


def report_scale(cells: int, work: Path) -> dict[str, Any]:
    """Build a report from a synthetic run of about ``cells`` cells (in this process)."""
    from devtools.report_bench import SPEC, cell_count
    from devtools.synthetic import write_run
    from gilmatrix.reports.bundle import javascript_bundle
    from gilmatrix.reports.render import build_report

    spec = scale_spec(SPEC, cells)
    started = time.perf_counter()
    run_dir = write_run(work / "run", spec)
    write_seconds = time.perf_counter() - started
    javascript_bundle()
    started = time.perf_counter()
    # as devtools.report_bench times it: the page alone; the SVG/PNG chart files that `gilmatrix report`
    # also renders (vl-convert, ~0.13 s per chart) are not part of the 10 s goal
    index = build_report(run_dir, work / "report", chart_images=False)
    seconds = time.perf_counter() - started
    return {
        "cells": cell_count(spec),
        "write_seconds": round(write_seconds, 3),
        "build_seconds": round(seconds, 3),
        "html_bytes": index.stat().st_size,
    }


def scale_spec(spec: Any, cells: int) -> Any:
    """devtools.report_bench's 10,000-cell spec, or a smaller one of the same shape: 100 cells are 5
    interpreters x 5 workloads x 4 executors at 1 worker, 1,000 are 10 x 25 x 4."""
    if cells >= 10_000:
        return spec
    if cells >= 1_000:
        return replace(spec, workers=(1,), run_id="selfbench-1000-cells")
    workloads = tuple(spec.workloads[:5])
    return replace(
        spec,
        interpreters=tuple(spec.interpreters[:5]),
        workloads=workloads,
        workload_kinds={w: spec.workload_kinds[w] for w in workloads},
        workers=(1,),
        run_id="selfbench-100-cells",
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["cli"]:
            from gilmatrix.cli import main as cli_main

            return cli_main(argv[1:])
        if argv[:1] == ["report"] and len(argv) == 3:
            print(json.dumps(report_scale(int(argv[1]), Path(argv[2]))))
            return 0
        print("usage: python -m devtools.selfbench.measure cli ARGS... | report CELLS WORK", file=sys.stderr)
        return 2
    finally:
        _write_rusage()


def mb(value: int | None) -> float | None:
    return None if value is None else round(value / 1e6, 1)


def describe(measured: Measured) -> Mapping[str, Any]:
    return {
        "command": " ".join(measured.command[3:]),
        "wall": round(measured.wall, 3),
        "returncode": measured.returncode,
        "self_rss": measured.self_rss,
        "children_rss": measured.children_rss,
    }


if __name__ == "__main__":
    sys.exit(main())
