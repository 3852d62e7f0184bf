"""`gilmatrix plan --github`: the GitHub Actions job matrix is the plan, per interpreter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devtools.rehearsal import Expression, RehearsalError, _read_outputs
from gilmatrix.errors import UserError
from gilmatrix.github import (
    DEFAULT_RUNS_ON,
    github_outputs,
    job_matrix,
    matrix_json,
    parse_runner_labels,
    runner_facts,
)
from gilmatrix.matrix.model import load_matrix, parse_matrix
from gilmatrix.matrix.plan import plan_cells
from tests.conftest import ROOT, gilmatrix

MATRIX = ROOT / "matrix.yaml"
LABELS = ("self-hosted", "linux", "x64", "bare-metal")


def expected_jobs(matrix, profile: str | None, only: list[str]) -> dict[str, int]:
    """What the job matrix must hold, counted from the plan's cells independently:
    {interpreter: runnable cells} for every interpreter with at least one."""
    counts: dict[str, int] = {}
    for cell in plan_cells(matrix, profile, only).cells:
        if cell.status == "planned":
            counts[cell.interpreter] = counts.get(cell.interpreter, 0) + 1
    return counts


def filters(matrix) -> list[list[str]]:
    interps = [i.id for i in matrix.interpreters]
    workloads = [w.id for w in matrix.workloads]
    return [
        [],
        [interps[0]],
        [interps[-1], interps[0]],
        [workloads[0]],
        [interps[1], workloads[-1]],
        [i for i in interps if i.endswith("t")],
    ]


@pytest.mark.parametrize("profile", [None, *load_matrix(MATRIX).profiles])
def test_job_matrix_matches_matrix_yaml_for_every_profile_and_filter(profile) -> None:
    matrix = load_matrix(MATRIX)
    for only in filters(matrix):
        plan = plan_cells(matrix, profile, only)
        jobs = job_matrix(plan, None, only)
        expected = expected_jobs(matrix, profile, only)
        assert [j.interpreter for j in jobs] == [i.id for i in matrix.interpreters if i.id in expected], only
        for job in jobs:
            assert job.cells == expected[job.interpreter]
            assert job.profile == matrix.profile(profile).name
            assert job.runs_on == (matrix.interpreter(job.interpreter).runs_on or DEFAULT_RUNS_ON)
            assert job.artifact == f"results-{job.interpreter}"
            # the job's own run plans exactly its cells
            job_plan = plan_cells(matrix, profile, job.only.split())
            assert [c.key for c in job_plan.cells] == [
                c.key for c in plan.cells if c.interpreter == job.interpreter
            ]


def test_cli_prints_and_writes_github_output(tmp_path: Path) -> None:
    output, summary = tmp_path / "output", tmp_path / "summary.md"
    proc = gilmatrix(
        "plan",
        "--github",
        "--profile",
        "smoke",
        "--only",
        "3.13t",
        "--only",
        "crunch",
        "--runner-labels",
        ",".join(LABELS),
        env={"GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(summary), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    lines = dict(line.split("=", 1) for line in output.read_text().splitlines())
    assert json.loads(lines["matrix"]) == printed
    assert lines["count"] == "1" and lines["interpreters"] == "3.13t"
    assert lines["profile"] == "smoke"
    (job,) = printed["include"]
    assert job["runs_on"] == list(LABELS) and job["self_hosted"] is True
    assert job["only"] == "3.13t crunch"
    assert "3.13t" in summary.read_text() and "self-hosted" in summary.read_text()


def test_runs_on_from_matrix_wins_over_the_input_and_default(tmp_path: Path) -> None:
    text = """format: 1
interpreters:
  - id: "3.12"
    runs_on: [self-hosted, linux, x64, bare-metal]
  - id: "3.13"
  - id: "3.13t"
workloads: {crunch: {params: {tasks: 2, size: 100}}}
executors: [sequential, threads, interpreters]
workers: [1, 2]
profiles: {default: {timeout: 10}}
"""
    matrix = parse_matrix(text, tmp_path / "m.yaml")
    plan = plan_cells(matrix)
    by_id = {j.interpreter: j for j in job_matrix(plan, ("gpu-box", "self-hosted"))}
    assert by_id["3.12"].runs_on == LABELS and by_id["3.12"].self_hosted
    assert by_id["3.13"].runs_on == ("gpu-box", "self-hosted")
    default = {j.interpreter: j for j in job_matrix(plan)}
    assert default["3.13"].runs_on == ("ubuntu-latest",) and not default["3.13"].self_hosted
    # interpreter pools need 3.14: those cells are skipped, the jobs still exist
    assert default["3.13"].skipped == 2 and default["3.13"].cells == 3


def test_interpreters_without_runnable_cells_get_no_job(tmp_path: Path) -> None:
    text = """format: 1
interpreters: [{id: "3.12"}, {id: "3.14"}]
workloads: {crunch: {params: {tasks: 2, size: 100}}}
executors: [interpreters]
workers: [2]
profiles: {default: {timeout: 10}}
"""
    plan = plan_cells(parse_matrix(text, tmp_path / "m.yaml"))
    jobs = job_matrix(plan)
    assert [j.interpreter for j in jobs] == ["3.14"]
    outputs = github_outputs(plan, jobs)
    assert outputs["not_runnable"] == "3.12" and outputs["count"] == "1"
    assert matrix_json([]) == {"include": []}


@pytest.mark.parametrize(
    ("text", "labels"),
    [
        ('["self-hosted", "linux", "x64"]', ("self-hosted", "linux", "x64")),
        ("self-hosted, linux ,x64", ("self-hosted", "linux", "x64")),
        ('"ubuntu-24.04"', ("ubuntu-24.04",)),
        ("ubuntu-latest", ("ubuntu-latest",)),
        ("", None),
        ("   ", None),
        (None, None),
    ],
)
def test_parse_runner_labels(text, labels) -> None:
    assert parse_runner_labels(text) == labels


@pytest.mark.parametrize("text", ['["a", 1]', "[broken", ", ,", '{"a": 1}'])
def test_bad_runner_labels_are_user_errors(text) -> None:
    with pytest.raises(UserError):
        parse_runner_labels(text)


def test_bad_runner_labels_exit_2() -> None:
    proc = gilmatrix("plan", "--github", "--runner-labels", "[oops")
    assert proc.returncode == 2 and "--runner-labels" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_runner_facts_from_the_environment() -> None:
    facts = runner_facts(
        {
            "RUNNER_NAME": "bench-1",
            "RUNNER_ENVIRONMENT": "self-hosted",
            "GITHUB_SERVER_URL": "https://github.example",
            "GITHUB_RUN_ID": "7",
            "GITHUB_REPOSITORY": "o/r",
            "GILMATRIX_RUNS_ON": '[\n  "self-hosted",\n  "x64"\n]',
        }
    )
    assert facts["name"] == "bench-1" and facts["labels"] == ["self-hosted", "x64"]
    assert facts["run_url"] == "https://github.example/o/r/actions/runs/7"
    guessed = runner_facts({"GILMATRIX_RUNS_ON": '["ubuntu-latest"]'})
    assert guessed["environment"] == "github-hosted" and guessed["run_url"] is None


# -- the rehearsal's expression evaluator ----------------------------------------------------

CTX = {
    "matrix": {"self_hosted": False, "runs_on": ["ubuntu-latest"], "interpreter": "3.13t"},
    "needs": {"plan": {"result": "success", "outputs": {"count": "0", "matrix": '{"a": 1}'}}},
    "steps": {"image-cache": {"outputs": {"cache-hit": "false"}}},
    "inputs": {"deploy": True, "profile": ""},
    "github": {"event_name": "push"},
}
FUNCS = {"always": lambda: True, "fromJSON": json.loads, "toJSON": json.dumps}


@pytest.mark.parametrize(
    ("expr", "value"),
    [
        ("matrix.self_hosted == false", True),
        ("needs.plan.outputs.count != '0'", False),
        ("steps.image-cache.outputs.cache-hit != 'true'", True),
        ("always() && needs.plan.result == 'success'", True),
        ("github.event_name != 'workflow_dispatch' || inputs.deploy", True),
        ("!(matrix.interpreter == '3.13t')", False),
        ("fromJSON(needs.plan.outputs.matrix).a", None),  # member access on a call: not used
        ("inputs.profile || 'default'", "default"),
        ("toJSON(matrix.runs_on)", '["ubuntu-latest"]'),
        ("matrix['interpreter']", "3.13t"),
    ],
)
def test_rehearsal_expressions(expr, value) -> None:
    if value is None:
        with pytest.raises(RehearsalError):
            Expression(expr, CTX, FUNCS).value()
        return
    assert Expression(expr, CTX, FUNCS).value() == value


def test_rehearsal_refuses_unknown_contexts_and_functions() -> None:
    for expr in ("secrets.TOKEN", "contains(matrix.runs_on, 'x')"):
        with pytest.raises(RehearsalError):
            Expression(expr, CTX, FUNCS).value()


def test_rehearsal_reads_github_output_files() -> None:
    text = 'matrix={"include":[]}\ncount=0\nnotes<<EOF\nline 1\nline 2\nEOF\n'
    assert _read_outputs(text) == {"matrix": '{"include":[]}', "count": "0", "notes": "line 1\nline 2"}
