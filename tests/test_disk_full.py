"""A full disk, for real: the run folder on a small tmpfs that fills up part-way.

The results folder (``OUT/results``) is a 600 kB tmpfs mounted for the test (root only; skipped
with the reason where mounting is not permitted); the venvs stay on the ordinary disk. A full
disk must fail the cell being written with "no space left on device" as its reason (not a
traceback), keep every file written before whole, stop the run non-zero and say what to free;
once space is freed, ``--resume`` goes on from what was kept.
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyperf
import pytest

from gilmatrix.harness.contract import JOB_FORMAT
from gilmatrix.harness.drive import CellRunner, CellStore
from tests.conftest import ROOT, RUNNING_ID, local_run, small_matrix

pytestmark = pytest.mark.integration

SIZE = "600k"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """OUT with OUT/results on a 600 kB tmpfs; unmounted afterwards."""
    out = tmp_path / "out"
    results = out / "results"
    results.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(results)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield out
    finally:
        if subprocess.run(["umount", str(results)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(results)], check=True)


def fill(folder: Path) -> Path:
    """Write a ballast file into ``folder`` until the disk refuses: no block is left."""
    ballast = folder / "ballast"
    with open(ballast, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return ballast


def whole_files(run: Path) -> list[Path]:
    """Every JSON file of the run; each must load (written whole or not at all)."""
    paths = sorted(run.rglob("*.json"))
    for path in paths:
        json.loads(path.read_text())
    return paths


def leftovers(run: Path) -> list[Path]:
    """Half-written files: temporary names of atomic writes, a worker's own output."""
    return [p for p in run.rglob("*") if ".tmp-" in p.name or p.name.endswith((".w", ".part", ".tmp"))]


def run_command(matrix: Path, out: Path, resume: Path | None = None) -> list[str]:
    """``gilmatrix run`` of the run ``full`` (or ``--resume`` of it) on the local backend."""
    return [
        sys.executable,
        "-m",
        "gilmatrix.cli",
        *local_run(matrix, out, "full", resume=resume),
    ]


def test_disk_full_while_cells_are_written(tmp_path: Path, small_disk: Path) -> None:
    """The disk fills up between two rounds (the host stopped with SIGSTOP while a ballast
    takes every block): the next cell written fails with the reason, the run stops with exit 1
    and says what to free; the round before is intact and a resume after freeing finishes."""
    matrix = small_matrix(tmp_path)
    matrix.write_text(matrix.read_text().replace("processes: 1", "processes: 2"))
    run = small_disk / "results" / "full"
    proc = subprocess.Popen(
        run_command(matrix, small_disk),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if " round 2: " in line:  # round 1's worker files and manifest are on disk
                os.kill(proc.pid, signal.SIGSTOP)
                try:
                    # kept or set aside (a window a busy machine disturbed): files all the same
                    before = {
                        p: p.read_bytes() for p in run.rglob("w*") if p.suffix in (".json", ".discarded")
                    }
                    ballast = fill(small_disk / "results")
                finally:
                    os.kill(proc.pid, signal.SIGCONT)
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = "".join(lines)
    assert "Traceback" not in stderr, stderr
    assert proc.returncode == 1, stderr
    assert before, "round 1 left no worker files"
    failed = [line for line in lines if re.search(r": failed [^—]*— no space left on device", line)]
    assert len(failed) == 1, stderr  # the run stopped at the first cell that found no room
    message = [line for line in lines if line.startswith("error: no space left on device")]
    assert len(message) == 1, stderr
    assert f"this run's folder {run} holds " in message[0]
    assert f"the 1 other entry of {run.parent} holds " in message[0]
    assert "(the largest: ballast, 4" in message[0]  # the ballast: about 470 kB
    assert " free of " in message[0] and f"gilmatrix run --resume {run}" in message[0]

    # what was written before is whole: round 1's workers unchanged, every JSON loads
    for path, content in before.items():
        if path.exists():  # a cell may have moved on (round 2) before the disk filled
            assert path.read_bytes() == content
            pyperf.BenchmarkSuite.load(str(path))
    whole_files(run)
    assert leftovers(run) == []
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["run_id"] == "full"

    # A resume on the still full disk: its first write is the manifest's (a temporary file
    # renamed over it), which finds no room: the manifest stays as it was, byte for byte.
    kept = (run / "manifest.json").read_bytes()
    resume = run_command(matrix, small_disk, resume=run)
    still_full = subprocess.run(resume, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "Traceback" not in still_full.stderr, still_full.stderr
    assert still_full.returncode == 1, still_full.stderr
    assert f"error: no space left on device while writing {run / 'manifest.json'}: the run stopped." in (
        still_full.stderr
    )
    assert f"this run's folder {run} holds " in still_full.stderr
    assert (run / "manifest.json").read_bytes() == kept
    assert leftovers(run) == []

    ballast.unlink()  # space freed: the resumed run finishes from what was kept
    resumed = subprocess.run(resume, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["state"] == "complete"
    assert [c["status"] for c in manifest["cells"]] == ["ok"] * len(manifest["cells"])
    for cell in manifest["cells"]:
        assert cell["processes"] == 2, cell  # a cell's round-1 worker kept, not measured again
    assert leftovers(run) == []


def test_a_cell_merged_on_a_full_disk_keeps_its_workers(small_disk: Path) -> None:
    """The harness merging a cell (``finish``) on a full disk: the cell fails with the reason,
    no half-written result or status is left, its worker files stay whole; once space is freed
    the same merge succeeds from them."""
    cell_id = "crunch/threads/2"
    job = {"format": JOB_FORMAT, "interpreter": RUNNING_ID, "cells": [{"id": cell_id}], "pyperf": {}}
    runner = CellRunner(job, str(small_disk / "results"))
    store = CellStore(runner.cells_dir, cell_id)
    os.makedirs(store.runs)
    for number, values in ((1, [0.10, 0.11]), (2, [0.12, 0.10])):
        run = pyperf.Run(values, metadata={"name": cell_id, "loops": 1}, collect_metadata=False)
        pyperf.Benchmark([run]).dump(os.path.join(store.runs, f"w{number:04d}.json"))
    workers = {p: Path(p).read_bytes() for p in store.workers()}
    ballast = fill(small_disk / "results")

    reply = runner.finish(cell_id, {"processes": 2})
    assert reply["status"] == "failed" and reply["disk_full"] is True, reply
    assert reply["reason"].startswith("no space left on device while writing "), reply
    assert {p: Path(p).read_bytes() for p in store.workers()} == workers
    assert not os.path.exists(store.result) and not os.path.exists(store.status)
    assert leftovers(small_disk / "results") == []

    ballast.unlink()
    reply = runner.finish(cell_id, {"processes": 2})
    assert reply["status"] == "ok", reply
    (bench,) = pyperf.BenchmarkSuite.load(store.result).get_benchmarks()
    assert bench.get_nrun() == 2
    assert json.loads(Path(store.status).read_text())["processes"] == 2
