from __future__ import annotations

import json
from pathlib import Path

import pytest

from gilmatrix.cli import main
from gilmatrix.errors import UserError
from gilmatrix.matrix.model import load_matrix, parse_matrix
from gilmatrix.matrix.plan import plan_cells
from tests.conftest import ROOT, small_matrix


def test_cells_have_stable_ids_and_sequential_runs_once(tmp_path: Path) -> None:
    plan = plan_cells(load_matrix(small_matrix(tmp_path, ["3.12"])))
    ids = [c.id for c in plan.cells if c.workload == "crunch"]
    assert ids == [
        "crunch/sequential/1",
        "crunch/threads/1",
        "crunch/threads/2",
        "crunch/processes/1",
        "crunch/processes/2",
    ]
    assert len(plan.cells) == 15
    assert {c.interpreter for c in plan.cells} == {"3.12"}


def test_shipped_matrix_plan_counts() -> None:
    matrix = load_matrix(ROOT / "matrix.yaml")
    plan = plan_cells(matrix, "smoke")
    # 9 interpreters x 3 workloads x (1 sequential + 2 executors x 3 worker counts)
    assert len(plan.cells) == 9 * 3 * 7
    assert all(c.status == "planned" for c in plan.cells)


def test_executor_an_interpreter_lacks_is_planned_as_skipped_with_reason(tmp_path: Path) -> None:
    path = small_matrix(tmp_path, ["3.13", "3.14"], executors="[threads, interpreters]")
    plan = plan_cells(load_matrix(path))
    skipped = [c for c in plan.cells if c.status == "skipped"]
    assert skipped, "interpreter pools must be planned, as skipped, not dropped"
    assert {c.interpreter for c in skipped} >= {"3.13"}
    assert all(c.reason for c in skipped)
    old = [c for c in skipped if c.interpreter == "3.13"]
    assert "3.14" in old[0].reason


def test_workload_that_cannot_cross_processes_is_skipped_with_reason() -> None:
    plan = plan_cells(load_matrix(ROOT / "matrix.yaml"), "default", ["3.14", "contention_lock"])
    by_id = {c.id: c for c in plan.cells}
    assert by_id["contention_lock/threads/2"].status == "planned"
    for cell_id in ("contention_lock/processes/2", "contention_lock/interpreters/2"):
        assert by_id[cell_id].status == "skipped"
        assert "contention shares its state by reference" in by_id[cell_id].reason
    old = plan_cells(load_matrix(ROOT / "matrix.yaml"), "default", ["3.13", "crunch"])
    assert {c.reason for c in old.cells if c.executor == "interpreters"} == {
        "concurrent.futures.InterpreterPoolExecutor (PEP 734) needs CPython 3.14 or newer"
    }


def test_profile_overrides_params_and_workers() -> None:
    text = (ROOT / "matrix.yaml").read_text()
    matrix = parse_matrix(text)
    smoke = plan_cells(matrix, "smoke")
    fetch = next(c for c in smoke.cells if c.workload == "fetch")
    assert fetch.params["wait_ms"] == 5  # the smoke profile's override
    default = plan_cells(matrix, "default")
    assert next(c for c in default.cells if c.workload == "fetch").params["wait_ms"] == 10


def test_only_filters_interpreters_and_workloads() -> None:
    plan = plan_cells(load_matrix(ROOT / "matrix.yaml"), "smoke", ["3.13t", "fetch"])
    assert {c.interpreter for c in plan.cells} == {"3.13t"}
    assert {c.workload for c in plan.cells} == {"fetch"}


def test_only_with_unknown_id_is_a_user_error() -> None:
    with pytest.raises(UserError, match="did you mean 'fetch'"):
        plan_cells(load_matrix(ROOT / "matrix.yaml"), "smoke", ["fech"])


def test_plan_json_cli(capsys) -> None:
    assert (
        main(
            ["plan", "--matrix", str(ROOT / "matrix.yaml"), "--profile", "smoke", "--only", "3.12", "--json"]
        )
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert data["profile"] == "smoke"
    assert data["counts"] == {"planned": 21, "skipped": 0}
    assert data["cells"][0]["id"] == "crunch/sequential/1"
    assert data["cells"][0]["interpreter"] == "3.12"


def test_unknown_profile_exits_2(capsys) -> None:
    assert main(["plan", "--matrix", str(ROOT / "matrix.yaml"), "--profile", "smok"]) == 2
    assert "did you mean 'smoke'" in capsys.readouterr().err
