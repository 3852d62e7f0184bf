"""Faults injected into real runs: the failing cell is recorded with its reason and output, every
other cell still runs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gilmatrix.harness.faults import parse_faults
from tests.conftest import RUNNING_ID, gilmatrix, local_run, small_matrix

pytestmark = pytest.mark.integration

FAULTS = {
    "crunch/threads/1": ("raise", "failed", "InjectedFault: injected fault"),
    "crunch/threads/2": ("abort", "failed", "exit code -6"),
    "fetch/sequential/1": ("hang", "timeout", "took longer than the timeout of 8 s"),
    "sum_squares/sequential/1": ("memory", "failed", "MemoryError"),
}


def test_each_fault_fails_only_its_cell(tmp_path: Path) -> None:
    matrix = small_matrix(
        tmp_path, [RUNNING_ID], executors="[sequential, threads]", extra_profile="    memory_mb: 1024"
    )
    text = matrix.read_text().replace("timeout: 60", "timeout: 8")
    matrix.write_text(text)
    out = tmp_path / "out"
    env = {**os.environ, "GILMATRIX_FAULTS": ",".join(f"{c}={m}" for c, (m, _, _) in FAULTS.items())}
    proc = gilmatrix(
        *local_run(matrix, out, "f", command="matrix"),
        env=env,
    )
    assert proc.returncode == 1, proc.stderr  # finished, with failed cells
    manifest = json.loads((out / "results" / "f" / "manifest.json").read_text())
    assert manifest["state"] == "partial"
    by_id = {c["id"]: c for c in manifest["cells"]}
    assert len(by_id) == 9
    for cell_id, (_, status, reason) in FAULTS.items():
        cell = by_id[cell_id]
        assert cell["status"] == status, cell
        assert reason in cell["reason"], cell
        assert cell["output_tail"] is not None, cell  # may be empty: a hang prints nothing
    others = [c for c in manifest["cells"] if c["id"] not in FAULTS]
    assert others and all(c["status"] == "ok" for c in others), others
    assert "3 failed" in proc.stderr and "1 timeout" in proc.stderr
    html = (out / "report" / "index.html").read_text()
    for cell_id in FAULTS:
        assert cell_id in html


def test_bad_fault_spec_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="CELL=MODE"):
        parse_faults("crunch/threads/1=explode")
    proc = gilmatrix(
        "run", "--backend", "local", "--only", "3.12", env={**os.environ, "GILMATRIX_FAULTS": "oops"}
    )
    assert proc.returncode == 2 and "GILMATRIX_FAULTS" in proc.stderr
