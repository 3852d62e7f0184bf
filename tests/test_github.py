"""`gilmatrix plan --github`: the workflow's job matrices are the plan, in shards of workloads
that each run every interpreter, times replicates, and one image job per interpreter."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from devtools.rehearsal import Expression, RehearsalError, _read_outputs
from gilmatrix.errors import UserError
from gilmatrix.github import github_outputs, job_matrices, parse_runner_labels, runner_facts
from gilmatrix.matrix.model import load_matrix, parse_matrix
from gilmatrix.matrix.plan import plan_cells
from gilmatrix.shards import DEFAULT_RUNS_ON, balance, plan_shards, recorded_seconds
from tests.conftest import ROOT, gilmatrix

MATRIX = ROOT / "matrix.yaml"
LABELS = ("self-hosted", "linux", "x64", "bare-metal")


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
@pytest.mark.parametrize("shards", [1, 2, 3])
def test_shards_cover_the_plan_once_and_run_every_interpreter(profile, shards) -> None:
    """Every runnable cell of the plan is in exactly one shard; every bench job's own run plans
    exactly its shard's cells, on every interpreter; replicates repeat the same cells."""
    matrix = load_matrix(MATRIX)
    for only in filters(matrix):
        plan = plan_cells(matrix, profile, only)
        ci = plan_shards(matrix, plan, shards=shards, replicates=2, only=only)
        runnable = [c.key for c in plan.cells if c.status == "planned"]
        if not runnable:
            assert ci.shards == () and ci.bench_jobs() == []
            continue
        seen: list[tuple[str, str]] = []
        for job in ci.bench_jobs():
            assert job["profile"] == matrix.profile(profile).name
            job_plan = plan_cells(matrix, profile, job["only"].split())
            cells = [c.key for c in job_plan.cells if c.status == "planned"]
            assert {k[0] for k in cells} == set(ci.interpreters), only  # every interpreter
            assert len(cells) == job["cells"]
            assert job["artifact"] == f"results-{job['shard']}-r{job['replicate']}"
            if job["replicate"] == 1:
                seen += cells
        assert sorted(seen) == sorted(runnable), only  # each cell once per replicate
        assert len(ci.bench_jobs()) == 2 * len(ci.shards)
        assert len(ci.shards) == min(shards, len({c.workload for c in plan.cells if c.status == "planned"}))
        hosted = [i for i in ci.interpreters if any(not s.self_hosted for s in ci.shards)]
        assert ci.image_jobs() == [{"interpreter": i, "artifact": f"image-{i}"} for i in hosted]


def test_shards_are_balanced_and_split_the_run_budget() -> None:
    matrix = load_matrix(MATRIX)
    plan = plan_cells(matrix, "default")
    budget = matrix.profile("default").precision.run_minutes
    for count in (2, 3, 4):
        ci = plan_shards(matrix, plan, shards=count)
        seconds = [s.seconds for s in ci.shards]
        assert max(seconds) / min(seconds) < 1.5, seconds  # 8 workloads of similar cost
        assert sum(s.run_minutes for s in ci.shards) == pytest.approx(budget)
        for shard in ci.shards:  # each shard's share of the budget is its share of the time
            assert shard.run_minutes == pytest.approx(budget * shard.seconds / sum(seconds))
    # the estimate: a budget stops no cell before its fewest processes, so the whole run's
    # minutes are at least those (738 cells x 4 processes of ~0.53 s: 26 min, as measured here)
    (whole,) = plan_shards(matrix, plan, shards=1).shards
    assert whole.minutes == pytest.approx(max(budget, whole.floor_seconds / 60))
    assert 20 < whole.minutes < 30
    # --job-minutes picks the count: the run's minutes in jobs of about 5
    assert len(plan_shards(matrix, plan, job_minutes=5).shards) == math.ceil(whole.minutes / 5)
    assert len(plan_shards(matrix, plan, job_minutes=60).shards) == 1


def test_balance_is_longest_first_onto_the_lightest() -> None:
    bins = balance({"a": 5.0, "b": 4.0, "c": 3.0, "d": 3.0, "e": 1.0}, 2)
    loads = sorted(sum({"a": 5, "b": 4, "c": 3, "d": 3, "e": 1}[k] for k in b) for b in bins)
    assert loads == [8, 8]
    assert balance({"a": 1.0}, 3) == [["a"]]
    assert balance({"x": 1.0, "y": 1.0, "z": 1.0}, 3) == [["x"], ["y"], ["z"]]


def test_recorded_worker_times_steer_the_balance(tmp_path: Path) -> None:
    """Given an earlier run's worker lives, a workload that took 10x longer gets a shard alone."""
    matrix = load_matrix(MATRIX)
    plan = plan_cells(matrix, "smoke", ["3.13"])
    manifest = {
        "cells": [
            {
                "interpreter": c.interpreter,
                "id": c.id,
                "worker_seconds": [10.0 if c.workload == "crunch" else 1.0],
            }
            for c in plan.cells
            if c.status == "planned"
        ]
    }
    recorded = recorded_seconds(manifest)
    ci = plan_shards(matrix, plan, shards=2, recorded=recorded)
    assert [s.workloads for s in ci.shards] == [("crunch",), ("fetch", "sum_squares")]
    assert recorded_seconds({"cells": [{"interpreter": "3.13", "id": "x", "worker_seconds": ["bad"]}]}) == {}


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
        "3.14",
        "--runner-labels",
        ",".join(LABELS),
        "--shards",
        "2",
        "--replicates",
        "2",
        env={"GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(summary), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    lines = dict(line.split("=", 1) for line in output.read_text().splitlines())
    assert json.loads(lines["bench"]) == printed["bench"]
    assert json.loads(lines["images"]) == printed["images"]
    assert lines["count"] == "4" and lines["interpreters"] == "3.13t,3.14"
    assert lines["profile"] == "smoke" and lines["replicates"] == "2"
    assert lines["images_count"] == "0"  # self-hosted runners build or find their own images
    jobs = printed["bench"]["include"]
    assert [(j["shard"], j["replicate"]) for j in jobs] == [("s1", 1), ("s1", 2), ("s2", 1), ("s2", 2)]
    for job in jobs:
        assert job["runs_on"] == list(LABELS) and job["self_hosted"] is True
        assert job["only"].split()[:2] == ["3.13t", "3.14"]
        assert job["run_minutes"] == ""  # smoke has no run budget
    text = summary.read_text()
    assert "2 shards x 2 replicates = 4 bench jobs" in text and "self-hosted" in text
    assert "--runner-labels" in text  # why the jobs run there
    assert "s1:" in proc.stderr and "interleaved on one runner" in proc.stderr
    proc = gilmatrix("plan", "--shards", "2")
    assert proc.returncode == 2 and "--shards goes with --github" in proc.stderr
    proc = gilmatrix("plan", "--github", "--replicates", "0")
    assert proc.returncode == 2 and "--replicates 0" in proc.stderr


def test_runner_labels_per_workload_and_profile(tmp_path: Path) -> None:
    text = """format: 1
interpreters:
  - id: "3.12"
    runs_on: [gpu-box]
  - id: "3.13"
  - id: "3.13t"
workloads:
  crunch: {params: {tasks: 2, size: 100}, runs_on: [self-hosted, many-core]}
  fetch: {params: {tasks: 2, wait_ms: 1}}
  sum_squares: {params: {tasks: 2, batch: 10}}
executors: [sequential, threads]
workers: [1, 2]
profiles:
  default: {timeout: 10}
  ci: {timeout: 10, ci: {runs_on: [ubuntu-24.04], replicates: 3, shards: 3}}
"""
    matrix = parse_matrix(text, tmp_path / "m.yaml")
    ci = plan_shards(matrix, plan_cells(matrix), runner_labels=("from-input",))
    by_workload = {w: s for s in ci.shards for w in s.workloads}
    assert by_workload["crunch"].runs_on == ("self-hosted", "many-core")
    assert "workload crunch's runs_on" in by_workload["crunch"].why
    assert by_workload["fetch"].runs_on == ("from-input",)
    assert by_workload["crunch"] is not by_workload["fetch"]  # other labels: its own shard
    assert any("runs_on of interpreters 3.12 is not used" in w for w in ci.warnings)
    assert ci.image_interpreters == ("3.12", "3.13", "3.13t")  # a hosted shard needs them
    profiled = plan_shards(matrix, plan_cells(matrix, "ci"))
    assert profiled.replicates == 3 and len(profiled.shards) == 3
    assert {s.runs_on for s in profiled.shards} == {("self-hosted", "many-core"), ("ubuntu-24.04",)}
    assert plan_shards(matrix, plan_cells(matrix, "ci"), replicates=1).replicates == 1  # argument wins
    assert DEFAULT_RUNS_ON == ("ubuntu-latest",)
    only_self_hosted = plan_shards(matrix, plan_cells(matrix, only=["crunch"]))
    assert only_self_hosted.image_interpreters == ()


def test_interpreters_without_runnable_cells_get_no_job(tmp_path: Path) -> None:
    text = """format: 1
interpreters: [{id: "3.12"}, {id: "3.14"}]
workloads: {crunch: {params: {tasks: 2, size: 100}}}
executors: [interpreters]
workers: [2]
profiles: {default: {timeout: 10}}
"""
    matrix = parse_matrix(text, tmp_path / "m.yaml")
    ci = plan_shards(matrix, plan_cells(matrix))
    assert ci.interpreters == ("3.14",)
    outputs = github_outputs(ci)
    assert outputs["count"] == "1" and outputs["interpreters"] == "3.14"
    assert job_matrices(ci)["images"] == {"include": [{"interpreter": "3.14", "artifact": "image-3.14"}]}


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


def test_rehearsal_templates_of_one_and_of_several_expressions(tmp_path) -> None:
    from devtools.rehearsal import Rehearsal

    workflow = tmp_path / "w.yml"
    workflow.write_text("jobs: {}\n")
    rehearsal = Rehearsal(workflow, tmp_path, tmp_path / "out", inputs={}, env={})
    ctx = {**CTX, "github": {"run_id": "7", "run_attempt": "2"}}
    assert rehearsal.evaluate("${{ github.run_id }}", ctx) == "7"
    assert rehearsal.evaluate("${{ github.run_id }}-${{ github.run_attempt }}", ctx) == "7-2"
    assert rehearsal.evaluate("${{ matrix.self_hosted }}", ctx) is False  # a whole one keeps its type
